//! Call velocity: how fast one caller number, one source address or one number prefix places
//! calls (per second, per minute, at once, to how many distinct callees), weighed against how
//! those calls went.
//!
//! Rate alone does not tell a robocaller from an appointment-reminder line, a pharmacy, a school
//! or a bank's fraud team: all of them call many people a minute. What differs is what happens
//! to the calls. So each key also keeps the outcomes of its recent calls ([`outcomes`]): talked
//! through, hung up within seconds of the answer, cancelled within seconds of ringing,
//! unanswered, or refused with `607 Unwanted`. The levels then apply like this:
//!
//! | the key's outcomes | `per_second` and `concurrent` block levels | every other level |
//! | --- | --- | --- |
//! | bad: few talked, many quick hang-ups or cancels, or a 607 | as configured | as configured |
//! | too few to judge (fewer than `min_outcomes`; the first minute of a burst) | as configured | × `rate_alone_factor` (× `attested_factor` more for an A-attested caller) |
//! | healthy: enough calls, answered and talked through | as configured | not applied |
//!
//! The two block levels that act on rate alone are the burst and flood protection: tens of
//! calls a second, or dozens at once, from one number are refused whatever the outcomes.
//!
//! Operators register verified high-volume senders (`verified_senders`). Their volume is not
//! evidence: it applies no level and is not counted in their prefix's or source's tables. Their
//! outcomes still are: once they turn bad (a 607, mostly hang-ups), the sender is judged like any
//! other caller. That is why a registered sender is not an allow entry of a list, which would
//! pass its calls whatever else they showed (a spoofed caller id, a failed PASSporT, 607s).
//!
//! Every caller-minute also leaves one sample in small fixed histograms ([`suggest`]), from
//! which [`Velocity::suggested_thresholds`] derives caller thresholds fitted to the carrier's own
//! traffic, for the log-only period of a roll-out.
//!
//! Tables are [`BoundedMap`]s, so a flood of random numbers costs a fixed amount of memory.
//! Knows nothing of clocks (times are handed in), SIP or lists.

mod outcomes;
mod suggest;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;

use self::suggest::{Observed, Sample, Seen};
use super::bounded::{Aging, BoundedMap};
use super::shared::{self, Counter, Family, Sharing, Slot, Totals, Windows};
use super::wangiri::CallEnd;
use crate::screening::Action;

pub use self::outcomes::{Health, Outcome, Tally};
pub use self::suggest::{Suggested, Suggestion};

/// A warn and a block level for one measure; `None` switches that level off. Written in config
/// as `[warn, block]` with 0 for off, so that one line always sets both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "[u32; 2]")]
pub struct Level {
    pub warn: Option<u32>,
    pub block: Option<u32>,
}

impl From<[u32; 2]> for Level {
    fn from([warn, block]: [u32; 2]) -> Level {
        Level {
            warn: (warn > 0).then_some(warn),
            block: (block > 0).then_some(block),
        }
    }
}

impl Level {
    pub const fn new(warn: u32, block: u32) -> Level {
        Level {
            warn: Some(warn),
            block: Some(block),
        }
    }

    /// The action the observed value reaches, if any.
    pub fn reached(&self, value: u32) -> Option<Action> {
        if self.block.is_some_and(|b| value >= b) {
            Some(Action::Block)
        } else if self.warn.is_some_and(|w| value >= w) {
            Some(Action::Warn)
        } else {
            None
        }
    }

    /// Both levels multiplied by `f` (rounded up).
    pub fn scaled(self, f: f64) -> Level {
        let s = |v: u32| (f64::from(v) * f).ceil().min(f64::from(u32::MAX)) as u32;
        Level {
            warn: self.warn.map(s),
            block: self.block.map(s),
        }
    }

    fn highest(self) -> Option<u32> {
        self.block.or(self.warn)
    }
}

/// Thresholds for one key kind (caller, source address, prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub per_second: Level,
    pub per_minute: Level,
    pub concurrent: Level,
    pub distinct_callees: Level,
}

/// Thresholds as written in config: a measure left out keeps the default of its key kind
/// (serde's own defaults would reset it to "off").
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ThresholdsPatch {
    per_second: Option<Level>,
    per_minute: Option<Level>,
    concurrent: Option<Level>,
    distinct_callees: Option<Level>,
}

impl ThresholdsPatch {
    fn over(self, d: Thresholds) -> Thresholds {
        Thresholds {
            per_second: self.per_second.unwrap_or(d.per_second),
            per_minute: self.per_minute.unwrap_or(d.per_minute),
            concurrent: self.concurrent.unwrap_or(d.concurrent),
            distinct_callees: self.distinct_callees.unwrap_or(d.distinct_callees),
        }
    }
}

/// A high-volume sender the operator has verified (a contract, a call to the business): its
/// volume is not evidence, its outcomes are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedSender {
    /// `+12025550143` (one number) or `+1202555*` (every number starting with those digits).
    pub pattern: String,
    /// Who it is, shown in reasons: `Riverside Pharmacy reminders`.
    pub name: String,
    /// Why it is registered, for the next operator: `ticket OPS-1234, contract until 2027`.
    pub reason: String,
}

impl VerifiedSender {
    /// The digits with their `+`, and whether they are a prefix; `None` when malformed.
    fn parsed(&self) -> Option<(&str, bool)> {
        let p = self.pattern.trim();
        let (digits, prefix) = match p.strip_suffix('*') {
            Some(d) => (d, true),
            None => (p, false),
        };
        let body = digits.strip_prefix('+')?;
        (!body.is_empty() && body.len() <= 15 && body.bytes().all(|b| b.is_ascii_digit()))
            .then_some((digits, prefix))
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct VelocityFile {
    enabled: bool,
    prefix_digits: usize,
    distinct_window_secs: u64,
    max_keys: usize,
    shards: usize,
    outcome_window_secs: u64,
    min_outcomes: u32,
    hang_up_secs: u64,
    short_ring_secs: u64,
    min_talked_ratio: f64,
    max_hang_up_ratio: f64,
    unwanted_calls: u32,
    rate_alone_factor: f64,
    attested_factor: f64,
    verified_senders: Vec<VerifiedSender>,
    caller: ThresholdsPatch,
    source: ThresholdsPatch,
    prefix: ThresholdsPatch,
}

impl Default for VelocityFile {
    fn default() -> Self {
        let d = VelocityConfig::default();
        VelocityFile {
            enabled: d.enabled,
            prefix_digits: d.prefix_digits,
            distinct_window_secs: d.distinct_window_secs,
            max_keys: d.max_keys,
            shards: d.shards,
            outcome_window_secs: d.outcome_window_secs,
            min_outcomes: d.min_outcomes,
            hang_up_secs: d.hang_up_secs,
            short_ring_secs: d.short_ring_secs,
            min_talked_ratio: d.min_talked_ratio,
            max_hang_up_ratio: d.max_hang_up_ratio,
            unwanted_calls: d.unwanted_calls,
            rate_alone_factor: d.rate_alone_factor,
            attested_factor: d.attested_factor,
            verified_senders: d.verified_senders,
            caller: ThresholdsPatch::default(),
            source: ThresholdsPatch::default(),
            prefix: ThresholdsPatch::default(),
        }
    }
}

impl From<VelocityFile> for VelocityConfig {
    fn from(f: VelocityFile) -> VelocityConfig {
        let d = VelocityConfig::default();
        VelocityConfig {
            enabled: f.enabled,
            prefix_digits: f.prefix_digits,
            distinct_window_secs: f.distinct_window_secs,
            max_keys: f.max_keys,
            shards: f.shards,
            outcome_window_secs: f.outcome_window_secs,
            min_outcomes: f.min_outcomes,
            hang_up_secs: f.hang_up_secs,
            short_ring_secs: f.short_ring_secs,
            min_talked_ratio: f.min_talked_ratio,
            max_hang_up_ratio: f.max_hang_up_ratio,
            unwanted_calls: f.unwanted_calls,
            rate_alone_factor: f.rate_alone_factor,
            attested_factor: f.attested_factor,
            verified_senders: f.verified_senders,
            caller: f.caller.over(d.caller),
            source: f.source.over(d.source),
            prefix: f.prefix.over(d.prefix),
        }
    }
}

/// `[signals.velocity]`; thresholds are `[warn, block]` pairs, e.g.
/// `[signals.velocity.caller] per_second = [3, 10]`. `config/scamguard.toml` explains each key
/// and its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "VelocityFile")]
pub struct VelocityConfig {
    pub enabled: bool,
    /// Digits (after `+`, country code included) that make a prefix key; 7 is NANP's +1NPANXX.
    pub prefix_digits: usize,
    /// Window for counting distinct callees.
    pub distinct_window_secs: u64,
    /// Slots per table (caller, source, prefix); the oldest go first beyond it.
    pub max_keys: usize,
    pub shards: usize,
    /// How far back the outcomes of a key's calls count.
    pub outcome_window_secs: u64,
    /// Calls with an outcome a key needs before its outcomes count (a 607 counts at once).
    pub min_outcomes: u32,
    /// An answered call that ends sooner than this was hung up on.
    pub hang_up_secs: u64,
    /// A call the caller cancels sooner than this after it started ringing was a quick cancel.
    pub short_ring_secs: u64,
    /// Outcomes are bad below this share of calls talked through...
    pub min_talked_ratio: f64,
    /// ...or at this share of hang-ups and quick cancels...
    pub max_hang_up_ratio: f64,
    /// ...or with this many 607s in the window (0: 607s are left to the reports signal).
    pub unwanted_calls: u32,
    /// With too few outcomes, the levels (but the two block levels that act on rate alone) are
    /// multiplied by this.
    pub rate_alone_factor: f64,
    /// And multiplied again by this for a caller with an A attestation (verified by us, or
    /// `verstat=TN-Validation-Passed` from a trusted peer): the caller id is its own.
    pub attested_factor: f64,
    pub verified_senders: Vec<VerifiedSender>,
    pub caller: Thresholds,
    /// Off by default: a carrier trunk is one address carrying thousands of callers.
    pub source: Thresholds,
    pub prefix: Thresholds,
}

impl Default for VelocityConfig {
    fn default() -> Self {
        VelocityConfig {
            enabled: true,
            prefix_digits: 7,
            distinct_window_secs: 60,
            max_keys: 100_000,
            shards: 16,
            outcome_window_secs: 300,
            min_outcomes: 5,
            hang_up_secs: 6,
            short_ring_secs: 6,
            min_talked_ratio: 0.2,
            max_hang_up_ratio: 0.5,
            unwanted_calls: 1,
            rate_alone_factor: 2.0,
            attested_factor: 2.0,
            verified_senders: Vec::new(),
            caller: Thresholds {
                per_second: Level::new(3, 10),
                per_minute: Level::new(20, 60),
                concurrent: Level::new(10, 30),
                distinct_callees: Level::new(10, 30),
            },
            source: Thresholds::default(),
            prefix: Thresholds {
                per_second: Level::new(20, 60),
                per_minute: Level::new(300, 1_000),
                concurrent: Level::default(),
                distinct_callees: Level::new(100, 300),
            },
        }
    }
}

impl VelocityConfig {
    /// Every problem, each saying what is wrong and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let at = "signals.velocity";
        if !(10..=86_400).contains(&self.outcome_window_secs) {
            p.push(format!(
                "{at}.outcome_window_secs is {}; expected 10 to 86400 seconds",
                self.outcome_window_secs
            ));
        }
        if self.min_outcomes == 0 {
            p.push(format!(
                "{at}.min_outcomes is 0; expected at least 1 call with an outcome"
            ));
        }
        for (k, v) in [
            ("min_talked_ratio", self.min_talked_ratio),
            ("max_hang_up_ratio", self.max_hang_up_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                p.push(format!("{at}.{k} is {v}; expected a share from 0 to 1"));
            }
        }
        for (k, v) in [
            ("rate_alone_factor", self.rate_alone_factor),
            ("attested_factor", self.attested_factor),
        ] {
            if !(1.0..=1_000.0).contains(&v) {
                p.push(format!(
                    "{at}.{k} is {v}; expected a factor from 1 (no change) to 1000"
                ));
            }
        }
        for (i, s) in self.verified_senders.iter().enumerate() {
            if s.parsed().is_none() {
                p.push(format!(
                    "{at}.verified_senders[{i}].pattern {:?} is not a number; expected E.164 such as \"+12025550143\", or a prefix such as \"+1202555*\"",
                    s.pattern
                ));
            }
            for (k, v) in [("name", &s.name), ("reason", &s.reason)] {
                if v.trim().is_empty() {
                    p.push(format!(
                        "{at}.verified_senders[{i}].{k} is empty; expected who the sender is and why it is registered"
                    ));
                }
            }
        }
        p
    }
}

/// What kind of key a velocity finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Caller,
    Source,
    Prefix,
}

impl KeyKind {
    fn family(self) -> Family {
        match self {
            KeyKind::Caller => Family::Caller,
            KeyKind::Source => Family::Source,
            KeyKind::Prefix => Family::Prefix,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Caller => "caller",
            KeyKind::Source => "source",
            KeyKind::Prefix => "prefix",
        }
    }
}

/// One threshold reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossed {
    pub kind: KeyKind,
    pub measure: &'static str,
    pub value: u32,
    pub action: Action,
}

/// Everything velocity holds against one key of a call: the thresholds reached, strongest
/// first, and the outcomes they were weighed with.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub kind: KeyKind,
    pub action: Action,
    pub findings: Vec<Crossed>,
    pub tally: Tally,
    pub health: Health,
    /// The levels' factor when the outcomes were too few (1 otherwise).
    pub factor: f64,
    /// The registered sender the caller is, when its outcomes made it count after all.
    pub verified: Option<String>,
    /// The sentence for the verdict's reason.
    pub reason: String,
}

const MINUTE: usize = 60;
/// Distinct callees remembered per key at most; enough to see any sane block threshold.
const MAX_DISTINCT: usize = 1_024;
/// The measures in the order [`Counts::measures`] gives them.
const MEASURES: [&str; 4] = [
    "calls-per-second",
    "calls-per-minute",
    "concurrent-calls",
    "distinct-callees",
];
/// Measures whose block level acts on rate alone (burst and flood protection).
const HARD_BLOCK: [bool; 4] = [true, false, true, false];

/// Counts for one key: a ring of one-second buckets covering a minute, concurrency, the recent
/// distinct callees (hashes) with the second each was last called, the outcomes of recent calls
/// and (for callers) this minute's sample for the suggested thresholds.
pub struct Counts {
    stamps: [u32; MINUTE],
    buckets: [u16; MINUTE],
    concurrent: u32,
    callees: Vec<(u32, u32)>,
    outcomes: outcomes::Ring,
    sample: Sample,
    last_ms: u64,
    keep_ms: u64,
    /// The key as text, its deltas and the fleet's totals, when counts are shared.
    fleet: Option<Box<Slot>>,
}

impl Counts {
    fn new(keep_ms: u64) -> Counts {
        Counts {
            stamps: [u32::MAX; MINUTE],
            buckets: [0; MINUTE],
            concurrent: 0,
            callees: Vec::new(),
            outcomes: outcomes::Ring::default(),
            sample: Sample::default(),
            last_ms: 0,
            keep_ms,
            fleet: None,
        }
    }

    /// Counts a call; whether its callee is new within the window.
    fn record(&mut self, now_ms: u64, callee: u32, distinct_cap: usize, window_s: u32) -> bool {
        let sec = (now_ms / 1000) as u32;
        let i = sec as usize % MINUTE;
        if self.stamps[i] != sec {
            self.stamps[i] = sec;
            self.buckets[i] = 0;
        }
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.concurrent = self.concurrent.saturating_add(1);
        self.last_ms = self.last_ms.max(now_ms);
        let horizon = sec.saturating_sub(window_s);
        self.callees.retain(|(_, t)| *t > horizon);
        if let Some(c) = self.callees.iter_mut().find(|(h, _)| *h == callee) {
            c.1 = sec;
            return false;
        } else if self.callees.len() < distinct_cap {
            self.callees.push((callee, sec));
        } else if let Some(oldest) = self.callees.iter_mut().min_by_key(|(_, t)| *t) {
            *oldest = (callee, sec);
        }
        true
    }

    /// Per second, per minute, concurrent, distinct callees: in the order of [`MEASURES`].
    fn measures(&self, now_ms: u64, window_s: u32) -> [u32; 4] {
        let sec = (now_ms / 1000) as u32;
        let per_second = {
            let i = sec as usize % MINUTE;
            if self.stamps[i] == sec {
                u32::from(self.buckets[i])
            } else {
                0
            }
        };
        let per_minute = self
            .stamps
            .iter()
            .zip(self.buckets.iter())
            .filter(|(s, _)| **s != u32::MAX && **s <= sec && sec - **s < MINUTE as u32)
            .map(|(_, b)| u32::from(*b))
            .sum();
        let horizon = sec.saturating_sub(window_s);
        let distinct = self.callees.iter().filter(|(_, t)| *t > horizon).count() as u32;
        [per_second, per_minute, self.concurrent, distinct]
    }
}

impl Aging for Counts {
    fn idle_after_ms(&self) -> u64 {
        if self.concurrent > 0 {
            // A call in progress keeps its key; the calls table bounds how long that can be.
            u64::MAX
        } else {
            self.last_ms.saturating_add(self.keep_ms)
        }
    }
}

/// The registered senders, for a lookup per call that costs a hash per distinct prefix length.
#[derive(Default)]
struct Registry {
    exact: HashMap<Box<str>, usize>,
    prefixes: HashMap<Box<str>, usize>,
    /// Prefix lengths present, longest first.
    lens: Vec<usize>,
}

impl Registry {
    fn new(senders: &[VerifiedSender]) -> Registry {
        let mut r = Registry::default();
        // Malformed patterns are reported by `validate`; here they simply match nothing.
        for (i, s) in senders.iter().enumerate() {
            match s.parsed() {
                Some((d, false)) => {
                    r.exact.entry(d.into()).or_insert(i);
                }
                Some((d, true)) => {
                    r.prefixes.entry(d.into()).or_insert(i);
                    if !r.lens.contains(&d.len()) {
                        r.lens.push(d.len());
                    }
                }
                None => {}
            }
        }
        r.lens.sort_unstable_by(|a, b| b.cmp(a));
        r
    }

    /// The index of the sender `caller` is: its exact number, else its longest prefix.
    fn find(&self, caller: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(caller) {
            return Some(*i);
        }
        self.lens
            .iter()
            .filter(|l| **l <= caller.len())
            .find_map(|l| caller.get(..*l).and_then(|p| self.prefixes.get(p)).copied())
    }
}

/// The three velocity tables, the registered senders and the traffic's histograms.
pub struct Velocity {
    cfg: VelocityConfig,
    caller: BoundedMap<Counts>,
    source: BoundedMap<Counts>,
    prefix: BoundedMap<Counts>,
    /// Distinct callees remembered per key, by kind (caller, source, prefix).
    distinct_cap: [usize; 3],
    registry: Registry,
    observed: Observed,
    slot_secs: u32,
    /// Present when counts are shared with a fleet.
    sharing: Option<Arc<Sharing>>,
    /// Whether the calls in progress of each kind (caller, source, prefix) are shared: only
    /// where a concurrent level is set, since nothing else reads them.
    share_concurrent: [bool; 3],
}

/// The keys one call was counted under, so its answer and end can be counted against the same
/// ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallKeys {
    caller: Option<u64>,
    source: Option<u64>,
    prefix: Option<u64>,
}

/// The facts of a new call velocity looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Start<'a> {
    pub caller: Option<&'a str>,
    pub source: Option<&'a str>,
    pub callee: &'a str,
    /// The caller id is verified: an A attestation, or a trusted peer's passed `verstat`.
    pub attested: bool,
}

/// How one call ended, for its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    pub end: CallEnd,
    /// When it was answered, if it was (counted as talked then).
    pub answered_ms: Option<u64>,
    /// From the start to the answer, or to the end when unanswered.
    pub ring_ms: u64,
    pub now_ms: u64,
}

impl Velocity {
    pub fn new(cfg: VelocityConfig) -> Velocity {
        let rate_alone = cfg.rate_alone_factor.clamp(1.0, 1_000.0);
        let attested = cfg.attested_factor.clamp(1.0, 1_000.0);
        // Enough distinct callees to reach the highest level in force, raised levels included.
        let cap = |t: &Thresholds, f: f64| {
            t.distinct_callees.highest().map_or(1, |h| {
                (f64::from(h) * f).ceil().clamp(1.0, MAX_DISTINCT as f64) as usize
            })
        };
        Velocity {
            caller: BoundedMap::new(cfg.shards, cfg.max_keys),
            source: BoundedMap::new(cfg.shards, cfg.max_keys),
            prefix: BoundedMap::new(cfg.shards, cfg.max_keys),
            distinct_cap: [
                cap(&cfg.caller, rate_alone * attested),
                cap(&cfg.source, rate_alone),
                cap(&cfg.prefix, rate_alone),
            ],
            registry: Registry::new(&cfg.verified_senders),
            observed: Observed::default(),
            slot_secs: outcomes::slot_secs(cfg.outcome_window_secs),
            sharing: None,
            share_concurrent: [&cfg.caller, &cfg.source, &cfg.prefix]
                .map(|t| t.concurrent.highest().is_some()),
            cfg,
        }
    }

    /// Counts are shared with a fleet from now on: each key keeps its deltas for
    /// [`Velocity::drain_shared`] and weighs the fleet's totals once installed.
    pub fn share(&mut self, sharing: Arc<Sharing>) {
        self.sharing = Some(sharing);
    }

    fn table(&self, kind: KeyKind) -> (&BoundedMap<Counts>, &Thresholds, usize) {
        match kind {
            KeyKind::Caller => (&self.caller, &self.cfg.caller, 0),
            KeyKind::Source => (&self.source, &self.cfg.source, 1),
            KeyKind::Prefix => (&self.prefix, &self.cfg.prefix, 2),
        }
    }

    fn kind_of(family: Family) -> Option<KeyKind> {
        match family {
            Family::Caller => Some(KeyKind::Caller),
            Family::Source => Some(KeyKind::Source),
            Family::Prefix => Some(KeyKind::Prefix),
            Family::Number | Family::Range => None,
        }
    }

    /// The windows of a family's shared counts; `None` for a family velocity does not keep.
    pub fn windows(&self, family: Family) -> Option<Windows> {
        let kind = Velocity::kind_of(family)?;
        let (_, th, n) = self.table(kind);
        Some(Windows {
            callee_ms: self.cfg.distinct_window_secs.clamp(1, 3_600) * 1000,
            callee_cap: self.distinct_cap[n],
            calls_secs: shared::CALLS_SLOT_SECS,
            outcome_secs: self.slot_secs,
            share_secs: self.slot_secs,
            ttl_ms: self.keep_ms(),
            watch_from: shared::watch_from(&[th.per_minute, th.distinct_callees, th.concurrent]),
        })
    }

    /// This agent's calls in progress under a shared key, to state them again: 0 when the key
    /// is no longer tracked here (its calls were forgotten with it) or its concurrency is not
    /// shared.
    pub fn concurrent_now(&self, family: Family, token: u64, key: &str) -> u32 {
        let Some(kind) = Velocity::kind_of(family) else {
            return 0;
        };
        let (table, _, n) = self.table(kind);
        if !self.share_concurrent[n] {
            return 0;
        }
        table
            .peek(token, |c| {
                c.fleet
                    .as_ref()
                    .filter(|s| &*s.key == key)
                    .map_or(0, |_| c.concurrent)
            })
            .unwrap_or(0)
    }

    /// Runs `f` on the shared slot of a key, if the key is still tracked.
    pub fn with_slot<R>(
        &self,
        family: Family,
        token: u64,
        f: impl FnOnce(&mut Slot) -> R,
    ) -> Option<R> {
        let (table, _, _) = self.table(Velocity::kind_of(family)?);
        table
            .update(token, |c| c.fleet.as_deref_mut().map(f))
            .flatten()
    }

    pub fn config(&self) -> &VelocityConfig {
        &self.cfg
    }

    /// The registered sender `caller` is, if any.
    pub fn verified_sender(&self, caller: &str) -> Option<&VerifiedSender> {
        self.registry
            .find(caller)
            .and_then(|i| self.cfg.verified_senders.get(i))
    }

    fn slot(&self, now_ms: u64) -> u32 {
        ((now_ms / 1000) as u32) / self.slot_secs
    }

    fn keep_ms(&self) -> u64 {
        let window = self.cfg.distinct_window_secs.clamp(1, 3_600);
        window
            .max(MINUTE as u64)
            .max(self.cfg.outcome_window_secs.clamp(1, 86_400))
            * 1000
    }

    /// Counts a new call and judges each of its keys; returns the keys to count its answer and
    /// end against, and one [`Judged`] per key that reached a level, strongest first.
    pub fn call_started(&self, call: &Start<'_>, now_ms: u64) -> (CallKeys, Vec<Judged>) {
        let mut keys = CallKeys::default();
        let mut out = Vec::new();
        if !self.cfg.enabled {
            return (keys, out);
        }
        let window = self.cfg.distinct_window_secs.clamp(1, 3_600) as u32;
        let keep_ms = self.keep_ms();
        let slot = self.slot(now_ms);
        let minute = (now_ms / 60_000) as u32;
        let callee_h = self.caller.key(call.callee) as u32;
        let stable_callee = self
            .sharing
            .as_ref()
            .map(|_| shared::callee_hash(call.callee));
        let verified = call.caller.and_then(|c| self.registry.find(c));
        let prefix = call.caller.and_then(|c| {
            let digits = self.cfg.prefix_digits;
            (digits > 0 && c.len() > digits + 1).then(|| &c[..digits + 1])
        });
        let tables = [
            (KeyKind::Caller, &self.caller, call.caller, &self.cfg.caller),
            (KeyKind::Source, &self.source, call.source, &self.cfg.source),
            (KeyKind::Prefix, &self.prefix, prefix, &self.cfg.prefix),
        ];
        for (n, (kind, table, key, th)) in tables.into_iter().enumerate() {
            let Some(key) = key else { continue };
            // A registered sender's volume is not evidence against its range or trunk either.
            if *th == Thresholds::default() || (verified.is_some() && kind != KeyKind::Caller) {
                continue;
            }
            let k = table.key(key);
            let ((measures, tally, fleet), evicted) = table.upsert(
                k,
                now_ms,
                || Counts::new(keep_ms),
                |c| {
                    let new = c.record(now_ms, callee_h, self.distinct_cap[n], window);
                    let fleet = self.count_shared(c, kind, k, key, now_ms, stable_callee, new);
                    let m = c.measures(now_ms, window);
                    let tally = c.outcomes.tally(slot);
                    if kind == KeyKind::Caller {
                        let seen = match (verified, tally.health(&self.cfg)) {
                            (Some(_), _) => Seen::Skip,
                            (None, Health::Bad) => Seen::Exclude,
                            (None, _) => Seen::Include,
                        };
                        c.sample.observe(minute, m, seen, &self.observed);
                    }
                    (m, tally, fleet)
                },
            );
            drop(evicted);
            match kind {
                KeyKind::Caller => keys.caller = Some(k),
                KeyKind::Source => keys.source = Some(k),
                KeyKind::Prefix => keys.prefix = Some(k),
            }
            let attested = call.attested && kind == KeyKind::Caller;
            let sender = verified
                .filter(|_| kind == KeyKind::Caller)
                .and_then(|i| self.cfg.verified_senders.get(i));
            let (measures, tally, from_fleet) = with_fleet(measures, tally, fleet);
            if let Some(mut j) = self.judge(kind, th, measures, tally, attested, sender) {
                if let Some(seen) = fleet {
                    self.note_fleet(&mut j, &from_fleet, &seen);
                }
                out.push(j);
            }
        }
        out.sort_by_key(|j| std::cmp::Reverse(j.action));
        (keys, out)
    }

    /// With sharing on: counts the call among the key's deltas and returns the fleet's view of
    /// the key, if fresh.
    #[allow(clippy::too_many_arguments)]
    fn count_shared(
        &self,
        c: &mut Counts,
        kind: KeyKind,
        token: u64,
        key: &str,
        now_ms: u64,
        callee: Option<u64>,
        new_callee: bool,
    ) -> Option<Totals> {
        let sharing = self.sharing.as_ref()?;
        let concurrent = c.concurrent;
        let slot = c.fleet.get_or_insert_with(|| Box::new(Slot::new(key)));
        if self.share_concurrent[self.table(kind).2] {
            slot.pending.concurrent = Some(concurrent);
        }
        let calls_slot = (now_ms / 1000) as u32 / shared::CALLS_SLOT_SECS;
        slot.pending.add(Counter::Calls, calls_slot, 1);
        if let Some(h) = callee {
            let cap = self.distinct_cap[self.table(kind).2];
            slot.pending.callee(h, now_ms, new_callee, cap);
        }
        sharing.touched(kind.family(), token, slot);
        sharing.seen(slot, now_ms)
    }

    /// Says in the reason which of the levels reached the fleet's totals decided.
    fn note_fleet(&self, j: &mut Judged, from_fleet: &FromFleet, seen: &Totals) {
        let mut parts = Vec::new();
        for f in &j.findings {
            match f.measure {
                "calls-per-minute" if from_fleet.calls => {
                    parts.push(format!("{} calls in 60 s", seen.calls));
                }
                "concurrent-calls" if from_fleet.concurrent => {
                    parts.push(format!("{} calls at once", f.value));
                }
                "distinct-callees" if from_fleet.callees => parts.push(format!(
                    "{} distinct callees in {} s",
                    seen.callees,
                    self.cfg.distinct_window_secs.clamp(1, 3_600)
                )),
                _ => {}
            }
        }
        if from_fleet.outcomes {
            parts.push(format!("{} calls with an outcome", seen.tally.settled()));
        }
        if parts.is_empty() {
            return;
        }
        let across = shared::across(seen.agents);
        let _ = write!(j.reason, "; fleet: {} {across}", parts.join(", "));
    }

    /// The levels one key reached, weighed with its outcomes (the table in the module doc).
    fn judge(
        &self,
        kind: KeyKind,
        th: &Thresholds,
        measures: [u32; 4],
        tally: Tally,
        attested: bool,
        sender: Option<&VerifiedSender>,
    ) -> Option<Judged> {
        let health = tally.health(&self.cfg);
        let mut factor = 1.0;
        if health == Health::TooFew {
            factor = self.cfg.rate_alone_factor.clamp(1.0, 1_000.0);
            if attested {
                factor *= self.cfg.attested_factor.clamp(1.0, 1_000.0);
            }
        }
        let levels = [
            th.per_second,
            th.per_minute,
            th.concurrent,
            th.distinct_callees,
        ];
        let mut findings = Vec::new();
        let mut weighed = false;
        for i in 0..4 {
            let configured = levels[i];
            let level = match (health, sender) {
                (Health::Bad, _) => configured,
                // A registered sender's volume is evidence only once its outcomes are bad.
                (_, Some(_)) => continue,
                (Health::Healthy, None) if HARD_BLOCK[i] => Level {
                    warn: None,
                    block: configured.block,
                },
                (Health::Healthy, None) => continue,
                (Health::TooFew, None) => Level {
                    block: if HARD_BLOCK[i] {
                        configured.block
                    } else {
                        configured.scaled(factor).block
                    },
                    ..configured.scaled(factor)
                },
            };
            let Some(action) = level.reached(measures[i]) else {
                continue;
            };
            weighed |= !(HARD_BLOCK[i] && action == Action::Block);
            findings.push(Crossed {
                kind,
                measure: MEASURES[i],
                value: measures[i],
                action,
            });
        }
        findings.sort_by_key(|f| std::cmp::Reverse(f.action));
        let action = findings.first()?.action;
        let mut j = Judged {
            kind,
            action,
            findings,
            tally,
            health,
            factor,
            verified: sender.map(|s| s.name.clone()),
            reason: String::new(),
        };
        j.reason = self.reason(&j, health == Health::Bad || weighed);
        Some(j)
    }

    /// `caller distinct-callees 12 (warn); of 20 recent calls with an outcome: 2 talked, ...`;
    /// the outcomes are left out when only the rate-alone block levels were reached.
    fn reason(&self, j: &Judged, with_outcomes: bool) -> String {
        let mut s = String::from(j.kind.as_str());
        for (i, f) in j.findings.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(s, "{sep}{} {} ({})", f.measure, f.value, f.action.as_str());
        }
        if !with_outcomes {
            return s;
        }
        let t = &j.tally;
        let n = t.settled();
        if j.health == Health::TooFew {
            let _ = write!(
                s,
                "; {n} calls with an outcome, {} needed to judge them: levels x{} on rate alone",
                self.cfg.min_outcomes, j.factor
            );
            return s;
        }
        let _ = write!(
            s,
            "; of {n} recent calls with an outcome: {} talked",
            t.talked
        );
        for (count, what) in [
            (
                t.hung_up,
                format!("hung up within {} s", self.cfg.hang_up_secs),
            ),
            (
                t.quick_cancel,
                format!("cancelled within {} s of ringing", self.cfg.short_ring_secs),
            ),
            (t.unanswered, "unanswered".to_string()),
            (t.unwanted, "refused with 607".to_string()),
        ] {
            if count > 0 {
                let _ = write!(s, ", {count} {what}");
            }
        }
        if let Some(name) = &j.verified {
            let _ = write!(s, "; registered sender {name:?}, counted for its outcomes");
        }
        s
    }

    /// The callee answered a call started with [`Velocity::call_started`]: it counts as talked
    /// through from now, until its end says otherwise.
    pub fn call_answered(&self, keys: CallKeys, now_ms: u64) {
        let slot = self.slot(now_ms);
        self.each(keys, |c, shared| {
            c.outcomes.add(slot, Outcome::Talked);
            c.last_ms = c.last_ms.max(now_ms);
            shared(c, &[(Counter::Talked, slot, 1)]);
        });
    }

    /// Counts the end of a call started with [`Velocity::call_started`]: always its concurrency,
    /// and its outcome when `finish` says how it went (a call forgotten by the calls table has
    /// none).
    pub fn call_ended(&self, keys: CallKeys, finish: Option<Finish>) {
        let outcome = finish.and_then(|f| self.outcome(&f).map(|o| (o, f)));
        let now = self.slot(finish.map_or(0, |f| f.now_ms));
        self.each(keys, |c, shared| {
            c.concurrent = c.concurrent.saturating_sub(1);
            let Some((o, f)) = outcome else {
                // No outcome to count; the fleet still learns of one call fewer in progress.
                shared(c, &[]);
                return;
            };
            c.last_ms = c.last_ms.max(f.now_ms);
            match (o, f.answered_ms) {
                // Counted as talked at the answer.
                (Outcome::Talked, Some(_)) => {}
                (Outcome::HungUp, Some(a)) => {
                    let answered = self.slot(a);
                    c.outcomes.hung_up(answered, now);
                    // The same move for the fleet, unless the answer's slot has slid out.
                    if now.saturating_sub(answered) < outcomes::SLOTS as u32 {
                        shared(
                            c,
                            &[
                                (Counter::Talked, answered, -1),
                                (Counter::HungUp, answered, 1),
                            ],
                        );
                    } else {
                        shared(c, &[(Counter::HungUp, now, 1)]);
                    }
                }
                (o, _) => {
                    c.outcomes.add(now, o);
                    shared(c, &[(counter_of(o), now, 1)]);
                }
            }
        });
    }

    /// Runs `f` on each key of a call; `f` gets a way to add deltas for the fleet (a no-op when
    /// counts are not shared).
    fn each(
        &self,
        keys: CallKeys,
        mut f: impl FnMut(&mut Counts, &mut dyn FnMut(&mut Counts, &[(Counter, u32, i32)])),
    ) {
        for (kind, k) in [
            (KeyKind::Caller, keys.caller),
            (KeyKind::Source, keys.source),
            (KeyKind::Prefix, keys.prefix),
        ] {
            let Some(k) = k else { continue };
            let share_concurrent = self.share_concurrent[self.table(kind).2];
            let mut shared = |c: &mut Counts, deltas: &[(Counter, u32, i32)]| {
                let concurrent = c.concurrent;
                let (Some(sharing), Some(slot)) = (&self.sharing, c.fleet.as_deref_mut()) else {
                    return;
                };
                for (counter, slot_n, change) in deltas {
                    slot.pending.add(*counter, *slot_n, *change);
                }
                if share_concurrent {
                    slot.pending.concurrent = Some(concurrent);
                }
                sharing.touched(kind.family(), k, slot);
            };
            self.table(kind).0.update(k, |c| f(c, &mut shared));
        }
    }

    /// The outcome of a finished call; `None` for a call the agent refused itself, which says
    /// nothing of how callees take the caller's calls.
    pub fn outcome(&self, f: &Finish) -> Option<Outcome> {
        let short = |ms: u64, secs: u64| ms < secs.saturating_mul(1000);
        Some(match f.end {
            CallEnd::Refused => return None,
            CallEnd::Answered { talk_ms } if short(talk_ms, self.cfg.hang_up_secs) => {
                Outcome::HungUp
            }
            CallEnd::Answered { .. } => Outcome::Talked,
            CallEnd::Cancelled if f.answered_ms.is_some() => Outcome::Talked,
            CallEnd::Cancelled if short(f.ring_ms, self.cfg.short_ring_secs) => {
                Outcome::QuickCancel
            }
            CallEnd::Cancelled | CallEnd::Rejected => Outcome::Unanswered,
            CallEnd::Unwanted => Outcome::Unwanted,
        })
    }

    /// The outcomes counted against `caller` now (for `check`, tests and the curious).
    pub fn outcomes_of(&self, caller: &str, now_ms: u64) -> Tally {
        let slot = self.slot(now_ms);
        self.caller
            .peek(self.caller.key(caller), |c| c.outcomes.tally(slot))
            .unwrap_or_default()
    }

    /// Caller thresholds suggested by the traffic seen since start: see [`Suggestion`]. Pure: it
    /// reads the histograms and changes nothing.
    pub fn suggested_thresholds(&self) -> Suggestion {
        self.observed.suggestion(self.distinct_cap[0] as u32)
    }

    /// Slots in use per table (caller, source, prefix).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.caller.len(), self.source.len(), self.prefix.len())
    }

    /// The hard cap per table.
    pub fn capacity(&self) -> usize {
        self.caller.capacity()
    }

    /// Distinct callees remembered per caller at most.
    pub fn distinct_cap(&self) -> usize {
        self.distinct_cap[0]
    }

    /// Frees idle slots in every table.
    pub fn sweep(&self, now_ms: u64) {
        self.caller.sweep(now_ms);
        self.source.sweep(now_ms);
        self.prefix.sweep(now_ms);
    }
}

/// Which measures of a decision were the fleet's.
#[derive(Debug, Default)]
struct FromFleet {
    calls: bool,
    callees: bool,
    concurrent: bool,
    outcomes: bool,
}

/// The local measures and outcomes with the fleet's view: per minute and distinct callees are
/// the larger of the local count and the fleet's; concurrent calls are the local ones plus those
/// in progress on the other agents alive; the outcomes are the fleet's when it knows of more
/// calls. Per second stays local.
fn with_fleet(
    mut measures: [u32; 4],
    tally: Tally,
    seen: Option<Totals>,
) -> ([u32; 4], Tally, FromFleet) {
    let Some(s) = seen else {
        return (measures, tally, FromFleet::default());
    };
    let from = FromFleet {
        calls: s.calls > measures[1],
        callees: s.callees > measures[3],
        concurrent: s.concurrent > 0,
        outcomes: s.tally.settled() > tally.settled(),
    };
    measures[1] = measures[1].max(s.calls);
    measures[2] = measures[2].saturating_add(s.concurrent);
    measures[3] = measures[3].max(s.callees);
    let tally = if from.outcomes { s.tally } else { tally };
    (measures, tally, from)
}

fn counter_of(o: Outcome) -> Counter {
    match o {
        Outcome::Talked => Counter::Talked,
        Outcome::HungUp => Counter::HungUp,
        Outcome::QuickCancel => Counter::QuickCancel,
        Outcome::Unanswered => Counter::Unanswered,
        Outcome::Unwanted => Counter::Unwanted,
    }
}

#[cfg(test)]
mod tests;
