//! Call velocity: how fast one caller number, one source address or one number prefix places
//! calls — per second, per minute, how many at once, and to how many distinct callees — compared
//! with warn and block thresholds.
//!
//! Tables are [`BoundedMap`]s, so a flood of random numbers costs a fixed amount of memory.
//! Knows nothing of clocks (times are handed in), SIP or lists.

use serde::Deserialize;

use super::bounded::{Aging, BoundedMap};
use crate::screening::Action;

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

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct VelocityFile {
    enabled: bool,
    prefix_digits: usize,
    distinct_window_secs: u64,
    max_keys: usize,
    shards: usize,
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
            caller: f.caller.over(d.caller),
            source: f.source.over(d.source),
            prefix: f.prefix.over(d.prefix),
        }
    }
}

/// `[signals.velocity]`; thresholds are `[warn, block]` pairs, e.g.
/// `[signals.velocity.caller] per_second = [3, 10]`.
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

/// What kind of key a velocity finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Caller,
    Source,
    Prefix,
}

impl KeyKind {
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
pub struct Finding {
    pub kind: KeyKind,
    pub measure: &'static str,
    pub value: u32,
    pub action: Action,
}

const MINUTE: usize = 60;
/// Distinct callees remembered per key; enough to see any sane block threshold.
const MAX_DISTINCT: usize = 1_024;

/// Counts for one key: a ring of one-second buckets covering a minute, concurrency, and the
/// recent distinct callees (hashes) with the second each was last called.
pub struct Counts {
    stamps: [u32; MINUTE],
    buckets: [u16; MINUTE],
    concurrent: u32,
    callees: Vec<(u32, u32)>,
    last_ms: u64,
    keep_ms: u64,
}

impl Counts {
    fn new(keep_ms: u64) -> Counts {
        Counts {
            stamps: [u32::MAX; MINUTE],
            buckets: [0; MINUTE],
            concurrent: 0,
            callees: Vec::new(),
            last_ms: 0,
            keep_ms,
        }
    }

    fn record(&mut self, now_ms: u64, callee: u32, distinct_cap: usize, window_s: u32) {
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
        } else if self.callees.len() < distinct_cap {
            self.callees.push((callee, sec));
        } else if let Some(oldest) = self.callees.iter_mut().min_by_key(|(_, t)| *t) {
            *oldest = (callee, sec);
        }
    }

    fn measures(&self, now_ms: u64, window_s: u32) -> [(&'static str, u32); 4] {
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
        [
            ("calls-per-second", per_second),
            ("calls-per-minute", per_minute),
            ("concurrent-calls", self.concurrent),
            ("distinct-callees", distinct),
        ]
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

/// The three velocity tables.
pub struct Velocity {
    cfg: VelocityConfig,
    caller: BoundedMap<Counts>,
    source: BoundedMap<Counts>,
    prefix: BoundedMap<Counts>,
    distinct_cap: usize,
}

/// The keys one call was counted under, so its end can be counted against the same ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallKeys {
    caller: Option<u64>,
    source: Option<u64>,
    prefix: Option<u64>,
}

impl Velocity {
    pub fn new(cfg: VelocityConfig) -> Velocity {
        let max_distinct = [cfg.caller, cfg.source, cfg.prefix]
            .iter()
            .filter_map(|t| t.distinct_callees.block.or(t.distinct_callees.warn))
            .max()
            .unwrap_or(0) as usize;
        Velocity {
            caller: BoundedMap::new(cfg.shards, cfg.max_keys),
            source: BoundedMap::new(cfg.shards, cfg.max_keys),
            prefix: BoundedMap::new(cfg.shards, cfg.max_keys),
            distinct_cap: max_distinct.clamp(1, MAX_DISTINCT),
            cfg,
        }
    }

    pub fn config(&self) -> &VelocityConfig {
        &self.cfg
    }

    /// Counts a new call and returns every threshold it reaches, strongest first.
    pub fn call_started(
        &self,
        caller: Option<&str>,
        source: Option<&str>,
        callee: &str,
        now_ms: u64,
    ) -> (CallKeys, Vec<Finding>) {
        let mut keys = CallKeys::default();
        let mut found = Vec::new();
        if !self.cfg.enabled {
            return (keys, found);
        }
        let window = self.cfg.distinct_window_secs.clamp(1, 3_600) as u32;
        let keep_ms = u64::from(window.max(MINUTE as u32)) * 1000;
        let callee_h = self.caller.key(callee) as u32;
        let prefix = caller.and_then(|c| {
            let digits = self.cfg.prefix_digits;
            (digits > 0 && c.len() > digits + 1).then(|| &c[..digits + 1])
        });
        let tables = [
            (KeyKind::Caller, &self.caller, caller, &self.cfg.caller),
            (KeyKind::Source, &self.source, source, &self.cfg.source),
            (KeyKind::Prefix, &self.prefix, prefix, &self.cfg.prefix),
        ];
        for (kind, table, key, th) in tables {
            let Some(key) = key else { continue };
            if *th == Thresholds::default() {
                continue;
            }
            let k = table.key(key);
            let (measures, evicted) = table.upsert(
                k,
                now_ms,
                || Counts::new(keep_ms),
                |c| {
                    c.record(now_ms, callee_h, self.distinct_cap, window);
                    c.measures(now_ms, window)
                },
            );
            drop(evicted);
            match kind {
                KeyKind::Caller => keys.caller = Some(k),
                KeyKind::Source => keys.source = Some(k),
                KeyKind::Prefix => keys.prefix = Some(k),
            }
            let levels = [
                th.per_second,
                th.per_minute,
                th.concurrent,
                th.distinct_callees,
            ];
            for ((measure, value), level) in measures.into_iter().zip(levels) {
                if let Some(action) = level.reached(value) {
                    found.push(Finding {
                        kind,
                        measure,
                        value,
                        action,
                    });
                }
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.action));
        (keys, found)
    }

    /// Counts the end of a call started with [`Velocity::call_started`].
    pub fn call_ended(&self, keys: CallKeys) {
        let dec = |c: &mut Counts| c.concurrent = c.concurrent.saturating_sub(1);
        if let Some(k) = keys.caller {
            self.caller.update(k, dec);
        }
        if let Some(k) = keys.source {
            self.source.update(k, dec);
        }
        if let Some(k) = keys.prefix {
            self.prefix.update(k, dec);
        }
    }

    /// Slots in use per table (caller, source, prefix).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.caller.len(), self.source.len(), self.prefix.len())
    }

    /// The hard cap per table.
    pub fn capacity(&self) -> usize {
        self.caller.capacity()
    }

    /// Frees idle slots in every table.
    pub fn sweep(&self, now_ms: u64) {
        self.caller.sweep(now_ms);
        self.source.sweep(now_ms);
        self.prefix.sweep(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VelocityConfig {
        VelocityConfig {
            caller: Thresholds {
                per_second: Level::new(3, 5),
                per_minute: Level::new(10, 20),
                concurrent: Level::new(4, 8),
                distinct_callees: Level::new(6, 12),
            },
            source: Thresholds {
                per_minute: Level::new(15, 30),
                ..Thresholds::default()
            },
            prefix: Thresholds::default(),
            ..VelocityConfig::default()
        }
    }

    fn worst(f: &[Finding], measure: &str, kind: KeyKind) -> Option<(u32, Action)> {
        f.iter()
            .find(|x| x.measure == measure && x.kind == kind)
            .map(|x| (x.value, x.action))
    }

    /// (calls, spacing ms, distinct callees?, end each call?, measure, expected at the last call)
    #[test]
    fn thresholds_per_measure() {
        type Case = (
            u32,
            u64,
            bool,
            bool,
            &'static str,
            KeyKind,
            Option<(u32, Action)>,
        );
        let cases: &[Case] = &[
            (
                2,
                100,
                false,
                true,
                "calls-per-second",
                KeyKind::Caller,
                None,
            ),
            (
                3,
                100,
                false,
                true,
                "calls-per-second",
                KeyKind::Caller,
                Some((3, Action::Warn)),
            ),
            (
                5,
                100,
                false,
                true,
                "calls-per-second",
                KeyKind::Caller,
                Some((5, Action::Block)),
            ),
            // One call every 2 s: never 3 in a second, but the minute fills up.
            (
                9,
                2_000,
                false,
                true,
                "calls-per-minute",
                KeyKind::Caller,
                None,
            ),
            (
                10,
                2_000,
                false,
                true,
                "calls-per-minute",
                KeyKind::Caller,
                Some((10, Action::Warn)),
            ),
            (
                25,
                2_000,
                false,
                true,
                "calls-per-minute",
                KeyKind::Caller,
                Some((25, Action::Block)),
            ),
            // Calls spaced 10 s: the sliding minute only ever holds 6.
            (
                30,
                10_000,
                false,
                true,
                "calls-per-minute",
                KeyKind::Caller,
                None,
            ),
            (
                4,
                1_000,
                false,
                false,
                "concurrent-calls",
                KeyKind::Caller,
                Some((4, Action::Warn)),
            ),
            (
                4,
                1_000,
                false,
                true,
                "concurrent-calls",
                KeyKind::Caller,
                None,
            ),
            (
                8,
                1_000,
                true,
                false,
                "concurrent-calls",
                KeyKind::Caller,
                Some((8, Action::Block)),
            ),
            (
                6,
                1_000,
                true,
                true,
                "distinct-callees",
                KeyKind::Caller,
                Some((6, Action::Warn)),
            ),
            (
                6,
                1_000,
                false,
                true,
                "distinct-callees",
                KeyKind::Caller,
                None,
            ),
            (
                13,
                2_000,
                true,
                true,
                "distinct-callees",
                KeyKind::Caller,
                Some((12, Action::Block)),
            ),
            (
                16,
                3_000,
                true,
                true,
                "calls-per-minute",
                KeyKind::Source,
                Some((16, Action::Warn)),
            ),
        ];
        for (i, (n, gap, distinct, end, measure, kind, want)) in cases.iter().enumerate() {
            let v = Velocity::new(cfg());
            let mut last = Vec::new();
            for c in 0..*n {
                let callee = if *distinct {
                    format!("+4420718387{c:02}")
                } else {
                    "+442071838750".into()
                };
                let caller = if *kind == KeyKind::Source {
                    format!("+1202762{c:04}")
                } else {
                    "+12027620143".into()
                };
                let (keys, f) = v.call_started(
                    Some(&caller),
                    Some("192.0.2.7"),
                    &callee,
                    1_000_000 + u64::from(c) * gap,
                );
                if *end {
                    v.call_ended(keys);
                }
                last = f;
            }
            assert_eq!(worst(&last, measure, *kind), *want, "case {i}: {last:?}");
        }
    }

    #[test]
    fn prefix_key_counts_a_range() {
        let v = Velocity::new(VelocityConfig {
            caller: Thresholds::default(),
            prefix: Thresholds {
                per_minute: Level::new(5, 50),
                ..Thresholds::default()
            },
            ..VelocityConfig::default()
        });
        let mut last = Vec::new();
        for c in 0..5u64 {
            // Five different numbers of one NPA-NXX.
            let (_, f) = v.call_started(
                Some(&format!("+1202762{:04}", 100 + c)),
                None,
                "+12125550000",
                5_000 + c * 1000,
            );
            last = f;
        }
        assert_eq!(
            worst(&last, "calls-per-minute", KeyKind::Prefix),
            Some((5, Action::Warn))
        );
        let (_, f) = v.call_started(Some("+12025560100"), None, "+12125550000", 11_000);
        assert!(f.is_empty(), "another exchange: {f:?}");
    }
}
