//! Wangiri ("one ring and cut"): a number, or a narrow range of numbers, ringing many callees and
//! hanging up within seconds so that people call back a premium number. Fed by call ends (a
//! CANCEL after a short ring, or an answered call that ends at once); consulted when that number
//! or range calls again.
//!
//! Two things must hold, so that a legitimate sender's occasional missed calls do not trip it:
//! the number (or range) rang-and-cut enough distinct callees (the fan-out), *and* such calls
//! are most of its finished calls (`min_short_share`). A wangiri number's calls are nearly all
//! one-rings; a pharmacy's reminder line that cancels a few calls early among hundreds talked
//! through is not one. Once a number has cut a call short, every later end of its calls is
//! counted for that share; numbers that never did cost nothing here. A call the agent refused
//! itself is no evidence either way.
//!
//! Knows nothing of clocks (times are handed in), SIP or lists.

use std::sync::Arc;

use serde::Deserialize;

use super::bounded::{Aging, BoundedMap};
use super::shared::{self, Counter, Family, Sharing, Slot, Windows};
use super::velocity::Level;
use crate::screening::Action;

/// `[signals.wangiri]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WangiriConfig {
    pub enabled: bool,
    /// A call cancelled by the caller within this many seconds of ringing counts as a one-ring.
    pub max_ring_secs: u64,
    /// An answered call that ends within this many seconds counts too.
    pub max_talk_secs: u64,
    /// How far back one-rings count.
    pub window_secs: u64,
    /// The range key is the number without its last this-many digits.
    pub range_tail_digits: usize,
    /// Distinct callees rung-and-cut by one number.
    pub number: Level,
    /// The same for a number from abroad. Wangiri pays only when the callee rings back a
    /// number that earns international termination or premium fees, so a foreign number that
    /// rang-and-cut a few callees is already the whole pattern, while a domestic one may be a
    /// person who misdialled twice.
    pub foreign_number: Level,
    /// Distinct callees rung-and-cut by one range.
    pub range: Level,
    /// The share of the number's (or range's) finished calls that must be one-rings.
    pub min_short_share: f64,
    pub max_keys: usize,
    pub shards: usize,
}

impl Default for WangiriConfig {
    fn default() -> Self {
        WangiriConfig {
            enabled: true,
            max_ring_secs: 6,
            max_talk_secs: 3,
            window_secs: 3_600,
            range_tail_digits: 3,
            number: Level::new(5, 15),
            foreign_number: Level::new(3, 10),
            range: Level::new(10, 30),
            min_short_share: 0.5,
            max_keys: 100_000,
            shards: 16,
        }
    }
}

impl WangiriConfig {
    /// Every problem, each saying what is wrong and what was expected.
    pub fn validate(&self) -> Vec<String> {
        if (0.0..=1.0).contains(&self.min_short_share) {
            Vec::new()
        } else {
            vec![format!(
                "signals.wangiri.min_short_share is {}; expected a share from 0 to 1",
                self.min_short_share
            )]
        }
    }
}

/// How a call ended, as wangiri and velocity care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// The caller gave up before an answer (CANCEL).
    Cancelled,
    /// The callee or the network refused it (a final non-2xx answer other than a cancel or a
    /// 607), or nothing answered in time.
    Rejected,
    /// The callee answered `607 Unwanted` (RFC 8197).
    Unwanted,
    /// The agent refused the call itself: no callee saw it, so it says nothing of the caller.
    Refused,
    /// Answered, then ended (BYE) after `talk_ms`.
    Answered { talk_ms: u64 },
}

/// One threshold reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// `number` or `range`
    pub scope: &'static str,
    pub key: String,
    pub callees: u32,
    /// One-rings and all finished calls counted for the share.
    pub short: u32,
    pub ended: u32,
    pub action: Action,
    /// When the fleet's count of callees decided: the agents that counted them (0 when not
    /// known).
    pub fleet: Option<u32>,
}

const MAX_TRACKED: usize = 1_024;
/// Slots per window for the share: it slides in twelfths.
const SLOTS: usize = 12;

pub struct ShortCalls {
    callees: Vec<(u32, u32)>,
    /// Per slot of the window: its number, finished calls, and one-rings among them.
    stamps: [u32; SLOTS],
    ended: [u16; SLOTS],
    short: [u16; SLOTS],
    last_ms: u64,
    keep_ms: u64,
    /// The key as text, its deltas and the fleet's totals, when counts are shared.
    fleet: Option<Box<Slot>>,
}

impl Aging for ShortCalls {
    fn idle_after_ms(&self) -> u64 {
        self.last_ms.saturating_add(self.keep_ms)
    }
}

impl ShortCalls {
    fn count(&self, horizon: u32) -> u32 {
        self.callees.iter().filter(|(_, t)| *t > horizon).count() as u32
    }

    fn end(&mut self, slot: u32, short: bool) {
        let i = slot as usize % SLOTS;
        if self.stamps[i] != slot {
            if self.stamps[i] != u32::MAX && self.stamps[i] > slot {
                return;
            }
            self.stamps[i] = slot;
            self.ended[i] = 0;
            self.short[i] = 0;
        }
        self.ended[i] = self.ended[i].saturating_add(1);
        if short {
            self.short[i] = self.short[i].saturating_add(1);
        }
    }

    /// (one-rings, finished calls) within the window ending at `slot`.
    fn share(&self, slot: u32) -> (u32, u32) {
        let mut out = (0, 0);
        for i in 0..SLOTS {
            if self.stamps[i] != u32::MAX && slot.saturating_sub(self.stamps[i]) < SLOTS as u32 {
                out.0 += u32::from(self.short[i]);
                out.1 += u32::from(self.ended[i]);
            }
        }
        out
    }
}

pub struct Wangiri {
    cfg: WangiriConfig,
    numbers: BoundedMap<ShortCalls>,
    ranges: BoundedMap<ShortCalls>,
    cap: usize,
    /// Present when counts are shared with a fleet.
    sharing: Option<Arc<Sharing>>,
}

impl Wangiri {
    pub fn new(cfg: WangiriConfig) -> Wangiri {
        let cap = [
            cfg.number.block,
            cfg.number.warn,
            cfg.foreign_number.block,
            cfg.foreign_number.warn,
            cfg.range.block,
            cfg.range.warn,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(1) as usize;
        Wangiri {
            numbers: BoundedMap::new(cfg.shards, cfg.max_keys),
            ranges: BoundedMap::new(cfg.shards, cfg.max_keys),
            cap: cap.clamp(1, MAX_TRACKED),
            sharing: None,
            cfg,
        }
    }

    /// Counts are shared with a fleet from now on (see [`shared`]).
    pub fn share(&mut self, sharing: Arc<Sharing>) {
        self.sharing = Some(sharing);
    }

    fn table(&self, family: Family) -> Option<&BoundedMap<ShortCalls>> {
        match family {
            Family::Number => Some(&self.numbers),
            Family::Range => Some(&self.ranges),
            Family::Caller | Family::Source | Family::Prefix => None,
        }
    }

    /// The windows of a family's shared counts; `None` for a family wangiri does not keep.
    pub fn windows(&self, family: Family) -> Option<Windows> {
        let levels: &[Level] = match self.table(family).map(|_| family) {
            Some(Family::Number) => &[self.cfg.number, self.cfg.foreign_number],
            Some(_) => &[self.cfg.range],
            None => return None,
        };
        let window = u64::from(self.window_secs());
        Some(Windows {
            callee_ms: window * 1000,
            callee_cap: self.cap,
            calls_secs: shared::CALLS_SLOT_SECS,
            outcome_secs: self.slot_width(),
            share_secs: self.slot_width(),
            ttl_ms: window * 1000,
            watch_from: shared::watch_from(levels),
        })
    }

    /// Runs `f` on the shared slot of a key, if the key is still tracked.
    pub fn with_slot<R>(
        &self,
        family: Family,
        token: u64,
        f: impl FnOnce(&mut Slot) -> R,
    ) -> Option<R> {
        self.table(family)?
            .update(token, |s| s.fleet.as_deref_mut().map(f))
            .flatten()
    }

    fn range_of<'a>(&self, caller: &'a str) -> Option<&'a str> {
        let t = self.cfg.range_tail_digits;
        (t > 0 && caller.len() > t + 5).then(|| &caller[..caller.len() - t])
    }

    fn window_secs(&self) -> u32 {
        self.cfg.window_secs.clamp(1, 7 * 86_400) as u32
    }

    fn slot_width(&self) -> u32 {
        self.window_secs().div_ceil(SLOTS as u32).max(1)
    }

    fn slot(&self, now_ms: u64) -> u32 {
        (now_ms / 1000) as u32 / self.slot_width()
    }

    /// Whether a call that rang for `ring_ms` and ended as `end` was a one-ring-and-cut.
    pub fn is_short(&self, ring_ms: u64, end: CallEnd) -> bool {
        match end {
            CallEnd::Cancelled => ring_ms <= self.cfg.max_ring_secs * 1000,
            CallEnd::Answered { talk_ms } => talk_ms <= self.cfg.max_talk_secs * 1000,
            CallEnd::Rejected | CallEnd::Unwanted | CallEnd::Refused => false,
        }
    }

    /// Records the end of a call from `caller` to `callee`: a one-ring counts its callee and
    /// opens the number's (and range's) slot; any other end only counts towards the share of a
    /// number already holding one.
    pub fn call_ended(&self, caller: &str, callee: &str, ring_ms: u64, end: CallEnd, now_ms: u64) {
        if !self.cfg.enabled || end == CallEnd::Refused {
            return;
        }
        let short = self.is_short(ring_ms, end);
        let sec = (now_ms / 1000) as u32;
        let slot = self.slot(now_ms);
        let window = self.window_secs();
        let callee_h = self.numbers.key(callee) as u32;
        let stable_callee = self.sharing.as_ref().map(|_| shared::callee_hash(callee));
        let cap = self.cap;
        let add = |s: &mut ShortCalls| {
            s.last_ms = s.last_ms.max(now_ms);
            s.end(slot, short);
            if !short {
                return false;
            }
            let horizon = sec.saturating_sub(window);
            s.callees.retain(|(_, t)| *t > horizon);
            if let Some(c) = s.callees.iter_mut().find(|(h, _)| *h == callee_h) {
                c.1 = sec;
                return false;
            } else if s.callees.len() < cap {
                s.callees.push((callee_h, sec));
            } else if let Some(o) = s.callees.iter_mut().min_by_key(|(_, t)| *t) {
                *o = (callee_h, sec);
            }
            true
        };
        // With sharing on, the same end among the key's deltas.
        let shared = |s: &mut ShortCalls, family: Family, token: u64, key: &str, new: bool| {
            let Some(sharing) = &self.sharing else { return };
            let f = s.fleet.get_or_insert_with(|| Box::new(Slot::new(key)));
            f.pending.add(Counter::Ended, slot, 1);
            if short {
                f.pending.add(Counter::Short, slot, 1);
                if let Some(h) = stable_callee {
                    f.pending.callee(h, now_ms, new, cap);
                }
            }
            sharing.touched(family, token, f);
        };
        let init = || ShortCalls {
            callees: Vec::new(),
            stamps: [u32::MAX; SLOTS],
            ended: [0; SLOTS],
            short: [0; SLOTS],
            last_ms: now_ms,
            keep_ms: u64::from(window) * 1000,
            fleet: None,
        };
        let mut keys = vec![(Family::Number, &self.numbers, caller)];
        if let Some(r) = self.range_of(caller) {
            keys.push((Family::Range, &self.ranges, r));
        }
        for (family, table, key) in keys {
            let k = table.key(key);
            let count = |s: &mut ShortCalls| {
                let new = add(s);
                shared(s, family, k, key, new);
            };
            if short {
                table.upsert(k, now_ms, init, count);
            } else {
                table.update(k, count);
            }
        }
    }

    /// The thresholds `caller` (and its range) has reached, strongest first; `foreign` says
    /// whether the number belongs to no home country, asked only of a number with one-rings.
    pub fn check(&self, caller: &str, foreign: impl Fn() -> bool, now_ms: u64) -> Vec<FanOut> {
        let mut out = Vec::new();
        if !self.cfg.enabled {
            return out;
        }
        let sec = (now_ms / 1000) as u32;
        let slot = self.slot(now_ms);
        let horizon = sec.saturating_sub(self.window_secs());
        let mut scopes = vec![("number", &self.numbers, caller)];
        if let Some(r) = self.range_of(caller) {
            scopes.push(("range", &self.ranges, r));
        }
        for (scope, table, key) in scopes {
            let sharing = self.sharing.as_deref();
            let Some((local, (short, ended), seen)) = table.peek(table.key(key), |s| {
                let seen = sharing
                    .zip(s.fleet.as_deref())
                    .and_then(|(sh, f)| sh.seen(f, now_ms));
                (s.count(horizon), s.share(slot), seen)
            }) else {
                continue;
            };
            // The fleet's counts when they know of more, as velocity does.
            let fleet = seen.filter(|f| f.callees > local).map(|f| f.agents);
            let callees = seen.map_or(local, |f| f.callees.max(local));
            let (short, ended) = match seen {
                Some(f) if f.ended > ended => (f.short, f.ended),
                _ => (short, ended),
            };
            if f64::from(short) < self.cfg.min_short_share * f64::from(ended) {
                continue;
            }
            let level = match scope {
                "number" if foreign() => self.cfg.foreign_number,
                "number" => self.cfg.number,
                _ => self.cfg.range,
            };
            if let Some(action) = level.reached(callees) {
                let shown = if scope == "number" {
                    key.to_string()
                } else {
                    format!("{key}{}", "X".repeat(self.cfg.range_tail_digits))
                };
                out.push(FanOut {
                    scope,
                    key: shown,
                    callees,
                    short,
                    ended,
                    action,
                    fleet,
                });
            }
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.action));
        out
    }

    pub fn sizes(&self) -> (usize, usize) {
        (self.numbers.len(), self.ranges.len())
    }

    pub fn sweep(&self, now_ms: u64) {
        self.numbers.sweep(now_ms);
        self.ranges.sweep(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (caller pattern, calls, ring ms, end, expected number finding, expected range finding)
    #[test]
    fn one_ring_and_cut() {
        type Case = (
            &'static str,
            u32,
            u64,
            CallEnd,
            Option<(u32, Action)>,
            Option<(u32, Action)>,
        );
        let cases: &[Case] = &[
            (
                "+2693591000",
                5,
                2_000,
                CallEnd::Cancelled,
                Some((5, Action::Warn)),
                None,
            ),
            ("+2693591000", 4, 2_000, CallEnd::Cancelled, None, None),
            (
                "+2693591000",
                15,
                3_000,
                CallEnd::Cancelled,
                Some((15, Action::Block)),
                Some((15, Action::Warn)),
            ),
            // Rang long enough to be a normal unanswered call.
            ("+2693591000", 20, 25_000, CallEnd::Cancelled, None, None),
            ("+2693591000", 20, 2_000, CallEnd::Rejected, None, None),
            (
                "+2693591000",
                6,
                4_000,
                CallEnd::Answered { talk_ms: 1_000 },
                Some((6, Action::Warn)),
                None,
            ),
            (
                "+2693591000",
                6,
                4_000,
                CallEnd::Answered { talk_ms: 90_000 },
                None,
                None,
            ),
            // A range: each number calls twice, the range collects them all.
            (
                "+44207946{:03}",
                30,
                2_000,
                CallEnd::Cancelled,
                None,
                Some((30, Action::Block)),
            ),
            (
                "+3491234{:04}",
                12,
                1_000,
                CallEnd::Cancelled,
                None,
                Some((12, Action::Warn)),
            ),
            (
                "+61291234{:03}",
                10,
                1_000,
                CallEnd::Cancelled,
                None,
                Some((10, Action::Warn)),
            ),
        ];
        for (i, (pat, n, ring, end, want_n, want_r)) in cases.iter().enumerate() {
            let w = Wangiri::new(WangiriConfig::default());
            let mut caller = String::new();
            for c in 0..*n {
                caller = if pat.contains("{:03}") {
                    pat.replace("{:03}", &format!("{:03}", c / 2))
                } else if pat.contains("{:04}") {
                    pat.replace("{:04}", &format!("{:04}", c / 2))
                } else {
                    pat.to_string()
                };
                let callee = format!("+1202762{:04}", 2000 + c);
                w.call_ended(
                    &caller,
                    &callee,
                    *ring,
                    *end,
                    10_000_000 + u64::from(c) * 10_000,
                );
            }
            let f = w.check(&caller, || false, 10_000_000 + u64::from(*n) * 10_000);
            let got_n = f
                .iter()
                .find(|x| x.scope == "number")
                .map(|x| (x.callees, x.action));
            let got_r = f
                .iter()
                .find(|x| x.scope == "range")
                .map(|x| (x.callees, x.action));
            assert_eq!((got_n, got_r), (*want_n, *want_r), "case {i}: {f:?}");
        }
    }

    #[test]
    fn a_legitimate_senders_occasional_short_calls_do_not_trip_it() {
        let w = Wangiri::new(WangiriConfig::default());
        // A reminder line: 300 calls in an hour; 20 of them cut short (the dialer gave up early,
        // or the callee answered and hung up at once), each to a different callee: past the
        // block level of 15 distinct callees, but a small share of its calls.
        let caller = "+12025550143";
        for c in 0..300u64 {
            let callee = format!("+1312555{c:04}");
            let (ring, end) = match c % 15 {
                0 => (2_000, CallEnd::Cancelled),
                1 if c < 150 => (5_000, CallEnd::Answered { talk_ms: 1_000 }),
                2..=9 => (8_000, CallEnd::Answered { talk_ms: 60_000 }),
                _ => (30_000, CallEnd::Cancelled),
            };
            w.call_ended(caller, &callee, ring, end, 10_000_000 + c * 12_000);
        }
        let now = 10_000_000 + 300 * 12_000;
        assert!(
            w.check(caller, || false, now).is_empty(),
            "{:?}",
            w.check(caller, || false, now)
        );

        // The same fan-out from a number whose calls are mostly one-rings is wangiri.
        let caller = "+2693591000";
        for c in 0..30u64 {
            let callee = format!("+1312555{c:04}");
            let end = if c % 3 == 0 {
                CallEnd::Rejected
            } else {
                CallEnd::Cancelled
            };
            w.call_ended(caller, &callee, 2_000, end, 10_000_000 + c * 10_000);
        }
        let f = w.check(caller, || false, 10_000_000 + 30 * 10_000);
        assert_eq!(
            f.iter()
                .map(|f| (f.scope, f.callees, f.short, f.ended, f.action))
                .collect::<Vec<_>>(),
            // The first call, a rejection, came before any one-ring: it is not in the share.
            [
                ("number", 20, 20, 29, Action::Block),
                ("range", 20, 20, 29, Action::Warn)
            ],
            "{f:?}"
        );

        // The agent's own blocks are no evidence: they neither count nor dilute.
        let caller = "+2693591999";
        for c in 0..6u64 {
            let callee = format!("+1312555{c:04}");
            w.call_ended(caller, &callee, 1_000, CallEnd::Cancelled, 20_000_000 + c);
            w.call_ended(caller, &callee, 1_000, CallEnd::Refused, 20_000_100 + c);
        }
        let f = w.check(caller, || false, 20_001_000);
        assert_eq!((f[0].short, f[0].ended, f[0].action), (6, 6, Action::Warn));
    }

    #[test]
    fn one_rings_age_out_of_the_window() {
        let w = Wangiri::new(WangiriConfig {
            window_secs: 600,
            ..WangiriConfig::default()
        });
        for c in 0..10u64 {
            w.call_ended(
                "+2693591000",
                &format!("+4930123{c:03}"),
                1_000,
                CallEnd::Cancelled,
                c * 1000,
            );
        }
        assert_eq!(
            w.check("+2693591000", || false, 20_000)[0].action,
            Action::Warn
        );
        assert!(w.check("+2693591000", || false, 700_000).is_empty());
    }

    #[test]
    fn a_number_from_abroad_needs_fewer_one_rings() {
        const T: u64 = 10_000_000;
        let w = Wangiri::new(WangiriConfig::default());
        let caller = "+221771234567";
        for c in 0..3u64 {
            w.call_ended(
                caller,
                &format!("+1202762{c:04}"),
                1_500,
                CallEnd::Cancelled,
                T + c * 3_000,
            );
        }
        // Three one-rings: the pattern for a number that earns on calls back from abroad, not
        // yet for a domestic number (which may be a person who misdialled).
        assert!(w.check(caller, || false, T + 10_000).is_empty());
        let f = w.check(caller, || true, T + 10_000);
        assert_eq!((f[0].callees, f[0].action), (3, Action::Warn));
        for c in 3..10u64 {
            w.call_ended(
                caller,
                &format!("+1202762{c:04}"),
                1_500,
                CallEnd::Cancelled,
                T + c * 3_000,
            );
        }
        assert_eq!(
            w.check(caller, || true, T + 40_000)[0].action,
            Action::Block
        );
        // A foreign caller whose calls are mostly talked through is no wangiri, however many.
        let talker = "+221779999999";
        for c in 0..20u64 {
            let end = if c % 4 == 0 {
                CallEnd::Cancelled
            } else {
                CallEnd::Answered { talk_ms: 60_000 }
            };
            w.call_ended(
                talker,
                &format!("+1202763{c:04}"),
                1_500,
                end,
                T + c * 3_000,
            );
        }
        assert!(w.check(talker, || true, T + 70_000).is_empty());
    }
}
