//! Counts shared with the other agents of a fleet: what one agent has counted since it last
//! handed its counts on (the *deltas*), and the last totals the fleet reported back (the
//! *view*), per velocity key (caller, source, prefix) and per wangiri key (number, range).
//!
//! Counting stays local first. Each key's slot in the velocity and wangiri tables carries a
//! [`Slot`] when sharing is on: its key as text, the deltas not yet drained and the last fleet
//! totals. Whoever talks to the fleet (the app) drains the deltas every few hundred
//! milliseconds ([`crate::screening::signals::SignalState::drain_shared`]), sends them, and
//! installs the totals it reads back ([`crate::screening::signals::SignalState::install_shared`]).
//! A decision then takes, per measure, the larger of the local count and the last fleet total
//! plus the local part not yet drained.
//!
//! The windows of the shared counts are chosen here ([`Windows`]), beside the local ones they
//! mirror, so that the fleet's totals mean what the local counts mean: calls per minute in
//! 5-second slots (only slots wholly inside the minute count, so the fleet total never exceeds
//! the true one), outcomes and one-ring shares in the same slots as the local rings, and distinct
//! callees as an exact set of stable callee hashes with the time each was last called.
//!
//! Concurrent calls are not a count that slides: each agent states its own number of calls in
//! progress per key (the last value, not a change, so sending it twice is harmless), stamped
//! with the second it was sent, and the others add up the states of the agents still alive
//! ([`Windows::totals`], given who is). An agent that dies stops being alive within seconds,
//! and its calls stop counting: nothing leaks.
//!
//! Pure: no sockets, clocks or tokio. Knows nothing of Redis beyond the shape of what is sent and
//! read back (callee hashes with times, and counters named by a letter and a slot).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::velocity::{Level, Tally};

/// What a shared key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Velocity of one caller number.
    Caller,
    /// Velocity of one source address.
    Source,
    /// Velocity of one number prefix.
    Prefix,
    /// One-rings of one number (wangiri).
    Number,
    /// One-rings of one range of numbers (wangiri).
    Range,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Caller,
        Family::Source,
        Family::Prefix,
        Family::Number,
        Family::Range,
    ];

    /// A short, stable name for keys in the shared store.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Caller => "vc",
            Family::Source => "vs",
            Family::Prefix => "vp",
            Family::Number => "wn",
            Family::Range => "wr",
        }
    }
}

/// A shared counter, written as its letter and a slot number (`c:35812345`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// New calls (velocity, calls per minute).
    Calls,
    Talked,
    HungUp,
    QuickCancel,
    Unanswered,
    Unwanted,
    /// One-rings (wangiri share).
    Short,
    /// Finished calls (wangiri share).
    Ended,
}

impl Counter {
    pub const ALL: [Counter; 8] = [
        Counter::Calls,
        Counter::Talked,
        Counter::HungUp,
        Counter::QuickCancel,
        Counter::Unanswered,
        Counter::Unwanted,
        Counter::Short,
        Counter::Ended,
    ];

    pub fn letter(self) -> char {
        match self {
            Counter::Calls => 'c',
            Counter::Talked => 't',
            Counter::HungUp => 'h',
            Counter::QuickCancel => 'q',
            Counter::Unanswered => 'u',
            Counter::Unwanted => 'w',
            Counter::Short => 's',
            Counter::Ended => 'e',
        }
    }

    fn from_letter(c: char) -> Option<Counter> {
        Counter::ALL.into_iter().find(|k| k.letter() == c)
    }
}

/// The letter of the agents' marks in the counters (`a:<agent id>` = the last second it wrote).
pub const AGENT_LETTER: char = 'a';

/// The letter of each agent's calls in progress (`n:<agent id>` = [`concurrent_field`]).
pub const CONCURRENT_LETTER: char = 'n';

/// An agent's state of its calls in progress as stored: the second it was sent and the count
/// (at most 99,999) in one integer, so the shared store can forget old states by their second
/// as it forgets old slots.
pub fn concurrent_field(count: u32, now_ms: u64) -> u64 {
    (now_ms / 1000) * CONCURRENT_SCALE + u64::from(count.min(99_999))
}

const CONCURRENT_SCALE: u64 = 100_000;

/// A state older than this is forgotten even from an agent still alive: it restates the states
/// that matter more often ([`CONCURRENT_REFRESH_MS`]).
pub const CONCURRENT_KEEP_SECS: u32 = 120;

/// How often an agent restates its calls in progress per key where they matter (two or more
/// here, or fleet totals worth watching), so that a state lost (a shared store restarted empty)
/// is put right and kept from ageing out.
pub const CONCURRENT_REFRESH_MS: u64 = 30_000;

/// A hash of a callee number that every agent computes alike (64-bit FNV-1a): the tables' own
/// hashes are seeded per process. The shared store sees hashes, not the callees' numbers.
pub fn callee_hash(callee: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in callee.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Deltas of one key not yet handed to the fleet. Bounded: callees up to the family's cap,
/// counters merged by slot (a window holds a dozen slots).
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// (stable callee hash, unix ms).
    pub callees: Vec<(u64, u64)>,
    /// Callees new to this agent among them: the part of the distinct count the fleet has not
    /// seen yet.
    pub new_callees: u32,
    /// (counter, slot, change).
    pub counters: Vec<(Counter, u32, i32)>,
    /// This agent's calls in progress for the key, when they changed since the last drain.
    pub concurrent: Option<u32>,
}

/// Counters kept per key at most; more only if slots were reported far out of order.
const MAX_PENDING_COUNTERS: usize = 64;

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.callees.is_empty() && self.counters.is_empty() && self.concurrent.is_none()
    }

    pub fn add(&mut self, c: Counter, slot: u32, change: i32) {
        if let Some(e) = self
            .counters
            .iter_mut()
            .find(|(k, s, _)| *k == c && *s == slot)
        {
            e.2 = e.2.saturating_add(change);
        } else if self.counters.len() < MAX_PENDING_COUNTERS {
            self.counters.push((c, slot, change));
        }
    }

    /// A callee called at `ms`; `new` when this agent had not seen it in the window.
    pub fn callee(&mut self, hash: u64, ms: u64, new: bool, cap: usize) {
        if let Some(e) = self.callees.iter_mut().find(|(h, _)| *h == hash) {
            e.1 = e.1.max(ms);
            return;
        }
        if self.callees.len() < cap {
            self.callees.push((hash, ms));
            if new {
                self.new_callees += 1;
            }
        }
    }

    /// The sum of one counter's changes, never below 0.
    pub fn sum(&self, c: Counter) -> u32 {
        let s: i64 = self
            .counters
            .iter()
            .filter(|(k, _, _)| *k == c)
            .map(|(_, _, v)| i64::from(*v))
            .sum();
        s.clamp(0, i64::from(u32::MAX)) as u32
    }

    fn tally(&self) -> Tally {
        Tally {
            talked: self.sum(Counter::Talked),
            hung_up: self.sum(Counter::HungUp),
            quick_cancel: self.sum(Counter::QuickCancel),
            unanswered: self.sum(Counter::Unanswered),
            unwanted: self.sum(Counter::Unwanted),
        }
    }
}

/// The fleet's totals for one key, as last read back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls within the last minute (velocity).
    pub calls: u32,
    /// Distinct callees within the family's window (velocity: every call's callee; wangiri:
    /// the callees rung and cut).
    pub callees: u32,
    /// Outcomes within the outcome window (velocity).
    pub tally: Tally,
    /// One-rings and finished calls within the window (wangiri).
    pub short: u32,
    pub ended: u32,
    /// Calls in progress on the other agents still alive (this agent's own are always local).
    pub concurrent: u32,
    /// This agent's own, as the shared store holds them: only to tell whether the key is worth
    /// reading back every flush (the fleet's whole count is).
    pub concurrent_here: u32,
    /// Agents that wrote this key within the window.
    pub agents: u32,
    /// When it was read (unix ms).
    pub read_ms: u64,
}

/// What a key's slot in a local table holds for the fleet.
#[derive(Debug, Clone)]
pub struct Slot {
    pub key: Box<str>,
    pub pending: Pending,
    /// Whether the key is on the list of keys to drain.
    listed: bool,
    view: Option<Totals>,
}

impl Slot {
    pub fn new(key: &str) -> Slot {
        Slot {
            key: key.into(),
            pending: Pending::default(),
            listed: false,
            view: None,
        }
    }
}

/// The windows of one family's shared counts, in the units the local tables use.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Distinct callees count within this many ms.
    pub callee_ms: u64,
    /// Callees kept per key at most: enough to reach the highest level in force.
    pub callee_cap: usize,
    /// Slot width (seconds) of the calls counter: 5 s, a minute counted.
    pub calls_secs: u32,
    /// Slot width (seconds) of the outcome counters; ten slots count.
    pub outcome_secs: u32,
    /// Slot width (seconds) of the one-ring share; twelve slots count.
    pub share_secs: u32,
    /// A key unwritten for this long is gone from the shared store.
    pub ttl_ms: u64,
    /// Totals at or above this keep the key read back every flush (half the lowest level).
    pub watch_from: u32,
}

/// Width of a calls slot, and the minute they count over.
pub const CALLS_SLOT_SECS: u32 = 5;
const MINUTE_SECS: u32 = 60;
const OUTCOME_SLOTS: u32 = 10;
const SHARE_SLOTS: u32 = 12;

impl Windows {
    /// The oldest slot of each counter that still counts at `now_ms`, and for the agents' marks
    /// the oldest second (and for the states of calls in progress the oldest second kept): what
    /// the shared store may forget.
    pub fn oldest(&self, now_ms: u64) -> Vec<(char, u32)> {
        let sec = (now_ms / 1000) as u32;
        let calls = first_slot_from(sec.saturating_sub(MINUTE_SECS - 1), self.calls_secs);
        let outcomes = (sec / self.outcome_secs.max(1)).saturating_sub(OUTCOME_SLOTS - 1);
        let share = (sec / self.share_secs.max(1)).saturating_sub(SHARE_SLOTS - 1);
        let agents = sec.saturating_sub((self.callee_ms / 1000) as u32);
        let mut out: Vec<(char, u32)> = Counter::ALL
            .into_iter()
            .map(|c| {
                let o = match c {
                    Counter::Calls => calls,
                    Counter::Short | Counter::Ended => share,
                    _ => outcomes,
                };
                (c.letter(), o)
            })
            .collect();
        out.push((AGENT_LETTER, agents));
        out.push((CONCURRENT_LETTER, sec.saturating_sub(CONCURRENT_KEEP_SECS)));
        out
    }

    /// The totals from what the shared store returned: the distinct callees counted there, and
    /// each counter field (`c:35812345`, `a:<agent>`, `n:<agent>`) with its value. Calls in
    /// progress count for the agents `alive` says are, this one (`me`) left out.
    pub fn totals(
        &self,
        callees: u32,
        fields: &[(String, i64)],
        now_ms: u64,
        me: &str,
        alive: &dyn Fn(&str) -> bool,
    ) -> Totals {
        let oldest = self.oldest(now_ms);
        let first = |l: char| oldest.iter().find(|(c, _)| *c == l).map_or(0, |(_, s)| *s);
        let mut sums = [0i64; Counter::ALL.len()];
        let mut agents = 0;
        let (mut concurrent, mut concurrent_here) = (0u32, 0u32);
        for (field, v) in fields {
            let Some((l, rest)) = field.split_once(':') else {
                continue;
            };
            let mut chars = l.chars();
            let (Some(l), None) = (chars.next(), chars.next()) else {
                continue;
            };
            if l == AGENT_LETTER {
                if *v >= i64::from(first(AGENT_LETTER)) {
                    agents += 1;
                }
                continue;
            }
            if l == CONCURRENT_LETTER {
                let v = u64::try_from(*v).unwrap_or(0);
                let (sec, n) = (v / CONCURRENT_SCALE, v % CONCURRENT_SCALE);
                if sec < u64::from(first(CONCURRENT_LETTER)) {
                    continue;
                }
                if rest == me {
                    concurrent_here = n as u32;
                } else if alive(rest) {
                    concurrent = concurrent.saturating_add(n as u32);
                }
                continue;
            }
            let (Some(c), Ok(slot)) = (Counter::from_letter(l), rest.parse::<u32>()) else {
                continue;
            };
            if slot >= first(l) {
                let i = Counter::ALL.iter().position(|k| *k == c).unwrap_or(0);
                sums[i] = sums[i].saturating_add(*v);
            }
        }
        let n = |c: Counter| {
            let i = Counter::ALL.iter().position(|k| *k == c).unwrap_or(0);
            sums[i].clamp(0, i64::from(u32::MAX)) as u32
        };
        Totals {
            calls: n(Counter::Calls),
            callees,
            tally: Tally {
                talked: n(Counter::Talked),
                hung_up: n(Counter::HungUp),
                quick_cancel: n(Counter::QuickCancel),
                unanswered: n(Counter::Unanswered),
                unwanted: n(Counter::Unwanted),
            },
            short: n(Counter::Short),
            ended: n(Counter::Ended),
            concurrent,
            concurrent_here,
            agents,
            read_ms: now_ms,
        }
    }

    /// The calls slot of `sec`.
    pub fn calls_slot(&self, sec: u32) -> u32 {
        sec / self.calls_secs.max(1)
    }

    /// Whether totals this high keep the key read back every flush: only the measures a level
    /// is set on (calls a minute, distinct callees, calls in progress). Outcomes and one-rings
    /// only choose which levels apply, so they never bring a key nearer one; watched on them,
    /// every caller with five answered calls in five minutes, or two missed ones in an hour,
    /// would be read back five times a second for as long, up to `max_watched` keys.
    fn worth_watching(&self, t: &Totals) -> bool {
        let concurrent = t.concurrent.saturating_add(t.concurrent_here);
        [t.calls, t.callees, concurrent]
            .into_iter()
            .any(|v| v >= self.watch_from.max(1))
    }
}

/// Half the lowest of `levels` (warn, else block): totals from there on are worth reading back
/// every flush.
pub fn watch_from(levels: &[Level]) -> u32 {
    levels
        .iter()
        .filter_map(|l| l.warn.or(l.block))
        .map(|v| v.div_ceil(2))
        .min()
        .unwrap_or(u32::MAX)
}

/// The first slot of width `w` that starts at or after second `from`.
fn first_slot_from(from: u32, w: u32) -> u32 {
    from.div_ceil(w.max(1))
}

/// One key's deltas, drained for the fleet.
#[derive(Debug, Clone)]
pub struct Delta {
    pub family: Family,
    pub key: Box<str>,
    /// The key's slot in its local table, to install the totals read back.
    pub token: u64,
    pub pending: Pending,
}

/// The bookkeeping sharing needs beside the tables: which keys have deltas, and whether the
/// fleet's view is in force.
pub struct Sharing {
    listed: Mutex<Vec<(Family, u64)>>,
    max_listed: usize,
    /// Off while the fleet is unreachable: decisions fall back to the local counts.
    in_force: AtomicBool,
    /// A view older than this is not used.
    stale_ms: AtomicU64,
    /// Keys not listed because the list was full (their deltas wait for the next call).
    pub unlisted: AtomicU64,
}

impl Sharing {
    pub fn new(max_listed: usize) -> Sharing {
        Sharing {
            listed: Mutex::new(Vec::new()),
            max_listed: max_listed.max(1),
            in_force: AtomicBool::new(false),
            stale_ms: AtomicU64::new(1_000),
            unlisted: AtomicU64::new(0),
        }
    }

    /// Whether decisions use the fleet's view, and how old a view may be.
    pub fn set_in_force(&self, on: bool, stale_ms: u64) {
        self.stale_ms.store(stale_ms, Ordering::Relaxed);
        self.in_force.store(on, Ordering::Relaxed);
    }

    pub fn in_force(&self) -> bool {
        self.in_force.load(Ordering::Relaxed)
    }

    /// Marks `slot` as holding deltas (call after adding to its pending part).
    pub fn touched(&self, family: Family, token: u64, slot: &mut Slot) {
        if slot.listed || slot.pending.is_empty() {
            return;
        }
        let mut l = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() < self.max_listed {
            l.push((family, token));
            slot.listed = true;
        } else {
            self.unlisted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the list of keys with deltas.
    pub fn take_listed(&self) -> Vec<(Family, u64)> {
        std::mem::take(&mut *self.listed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The fleet's view of `slot` at decision time: its last totals plus the local part not
    /// yet drained; `None` when sharing is not in force or the view is stale (the key was not
    /// read back lately).
    pub fn seen(&self, slot: &Slot, now_ms: u64) -> Option<Totals> {
        if !self.in_force() {
            return None;
        }
        let v = slot.view?;
        if now_ms.saturating_sub(v.read_ms) > self.stale_ms.load(Ordering::Relaxed) {
            return None;
        }
        let p = &slot.pending;
        let t = p.tally();
        Some(Totals {
            calls: v.calls.saturating_add(p.sum(Counter::Calls)),
            callees: v.callees.saturating_add(p.new_callees),
            tally: Tally {
                talked: v.tally.talked + t.talked,
                hung_up: v.tally.hung_up + t.hung_up,
                quick_cancel: v.tally.quick_cancel + t.quick_cancel,
                unanswered: v.tally.unanswered + t.unanswered,
                unwanted: v.tally.unwanted + t.unwanted,
            },
            short: v.short.saturating_add(p.sum(Counter::Short)),
            ended: v.ended.saturating_add(p.sum(Counter::Ended)),
            concurrent: v.concurrent,
            concurrent_here: v.concurrent_here,
            agents: v.agents,
            read_ms: v.read_ms,
        })
    }
}

/// How a reason says who counted: `across 3 agents`, or `across the fleet` when not known.
pub fn across(agents: u32) -> String {
    match agents {
        0 => "across the fleet".to_string(),
        1 => "on 1 agent".to_string(),
        n => format!("across {n} agents"),
    }
}

/// Takes the deltas of a listed slot.
pub fn drain(family: Family, token: u64, slot: &mut Slot) -> Option<Delta> {
    slot.listed = false;
    if slot.pending.is_empty() {
        return None;
    }
    Some(Delta {
        family,
        key: slot.key.clone(),
        token,
        pending: std::mem::take(&mut slot.pending),
    })
}

/// Installs totals read back for `slot`; whether the key is worth reading back every flush.
pub fn install(slot: &mut Slot, totals: Totals, w: &Windows) -> bool {
    slot.view = Some(totals);
    w.worth_watching(&totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Windows {
        Windows {
            callee_ms: 60_000,
            callee_cap: 30,
            calls_secs: CALLS_SLOT_SECS,
            outcome_secs: 30,
            share_secs: 300,
            ttl_ms: 300_000,
            watch_from: 2,
        }
    }

    #[test]
    fn totals_count_only_slots_inside_their_windows() {
        let w = windows();
        let now = 1_000_000_000; // second 1_000_000
        let f = |s: &str, v: i64| (s.to_string(), v);
        let fields = [
            // calls: the minute ending now is seconds 999_941 to 1_000_000; slot 199_989
            // starts at 999_945, inside it, and 199_988 at 999_940, outside.
            f("c:200000", 3),
            f("c:199989", 2),
            f("c:199988", 50),
            // outcomes: slot 33_333 is now's; 33_324 is the oldest of ten.
            f("u:33333", 4),
            f("u:33324", 1),
            f("u:33323", 9),
            f("t:33333", -1),
            // share: 3_333 is now's, 3_322 the oldest of twelve.
            f("s:3333", 2),
            f("e:3322", 5),
            f("e:3321", 7),
            f("a:agent-1", 999_990),
            f("a:agent:2", 999_950),
            f("a:old", 999_900),
            f("junk", 1),
            f("zz:1", 1),
            // Calls in progress: an agent alive, this agent (its own are local), an agent that
            // died (no longer alive), and an agent alive whose state is too old to trust.
            f("n:agent-1", concurrent_field(3, now) as i64),
            f("n:me", concurrent_field(5, now) as i64),
            f("n:dead", concurrent_field(4, now) as i64),
            f("n:agent:2", concurrent_field(6, now - 121_000) as i64),
        ];
        let alive = |a: &str| a != "dead";
        let t = w.totals(7, &fields, now, "me", &alive);
        assert_eq!(
            t,
            Totals {
                calls: 5,
                callees: 7,
                tally: Tally {
                    unanswered: 5,
                    ..Tally::default()
                },
                short: 2,
                ended: 5,
                concurrent: 3,
                concurrent_here: 5,
                agents: 2,
                read_ms: now,
            }
        );
        assert!(w.worth_watching(&t));
        assert!(!w.worth_watching(&Totals {
            calls: 1,
            ..Totals::default()
        }));
        // Outcomes and one-rings, however many, bring a key no nearer a level.
        assert!(!w.worth_watching(&Totals {
            calls: 1,
            callees: 1,
            tally: Tally {
                hung_up: 40,
                unanswered: 40,
                ..Tally::default()
            },
            short: 40,
            ended: 40,
            ..Totals::default()
        }));
    }

    #[test]
    fn the_view_counts_while_fresh_and_in_force_with_the_undrained_part() {
        let s = Sharing::new(2);
        let w = windows();
        let mut slot = Slot::new("+12025550143");
        let now = 1_000_000_000;
        slot.pending.add(Counter::Calls, 200_000, 1);
        slot.pending.callee(callee_hash("+1"), now, true, 30);
        s.touched(Family::Caller, 9, &mut slot);
        s.touched(Family::Caller, 9, &mut slot);
        assert_eq!(s.take_listed(), [(Family::Caller, 9)]);
        let d = drain(Family::Caller, 9, &mut slot).unwrap();
        assert_eq!(
            (d.pending.sum(Counter::Calls), d.pending.new_callees),
            (1, 1)
        );
        assert!(slot.pending.is_empty());
        let t = Totals {
            calls: 10,
            callees: 4,
            agents: 3,
            read_ms: now,
            ..Totals::default()
        };
        assert!(install(&mut slot, t, &w));
        // Not in force: the local counts decide.
        assert_eq!(s.seen(&slot, now), None);
        s.set_in_force(true, 1_000);
        slot.pending.add(Counter::Calls, 200_000, 1);
        slot.pending.callee(callee_hash("+2"), now, true, 30);
        slot.pending.callee(callee_hash("+2"), now + 1, true, 30);
        slot.pending.callee(callee_hash("+3"), now, false, 30);
        let seen = s.seen(&slot, now + 500).unwrap();
        assert_eq!((seen.calls, seen.callees, seen.agents), (11, 5, 3));
        assert_eq!(s.seen(&slot, now + 1_001), None, "stale");
    }

    #[test]
    fn a_full_list_leaves_the_deltas_for_later_and_counts_it() {
        let s = Sharing::new(1);
        let mut a = Slot::new("a");
        let mut b = Slot::new("b");
        a.pending.add(Counter::Calls, 1, 1);
        b.pending.add(Counter::Calls, 1, 1);
        s.touched(Family::Caller, 1, &mut a);
        s.touched(Family::Caller, 2, &mut b);
        assert_eq!(s.unlisted.load(Ordering::Relaxed), 1);
        assert_eq!(s.take_listed().len(), 1);
        s.touched(Family::Caller, 2, &mut b);
        assert_eq!(s.take_listed(), [(Family::Caller, 2)]);
        assert_eq!(
            drain(Family::Caller, 2, &mut b)
                .unwrap()
                .pending
                .sum(Counter::Calls),
            1
        );
    }

    #[test]
    fn callee_hashes_are_the_same_everywhere() {
        // FNV-1a 64's published values: fixed, so agents of different builds agree.
        assert_eq!(callee_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(callee_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
