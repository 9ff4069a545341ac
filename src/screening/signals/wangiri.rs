//! Wangiri ("one ring and cut"): a number, or a narrow range of numbers, ringing many callees and
//! hanging up within seconds so that people call back a premium number. Fed by call ends (a
//! CANCEL after a short ring, or an answered call that ends at once); consulted when that number
//! or range calls again.
//!
//! Knows nothing of clocks (times are handed in), SIP or lists.

use serde::Deserialize;

use super::bounded::{Aging, BoundedMap};
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
    /// Distinct callees rung-and-cut by one range.
    pub range: Level,
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
            range: Level::new(10, 30),
            max_keys: 100_000,
            shards: 16,
        }
    }
}

/// How a call ended, as far as wangiri cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// The caller gave up before an answer (CANCEL).
    Cancelled,
    /// The callee or the network refused it (a final non-2xx answer other than a cancel).
    Rejected,
    /// Answered, then ended (BYE) after `talk_ms`.
    Answered { talk_ms: u64 },
}

/// One threshold reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `number` or `range`
    pub scope: &'static str,
    pub key: String,
    pub callees: u32,
    pub action: Action,
}

const MAX_TRACKED: usize = 1_024;

pub struct ShortCalls {
    callees: Vec<(u32, u32)>,
    last_ms: u64,
    keep_ms: u64,
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
}

pub struct Wangiri {
    cfg: WangiriConfig,
    numbers: BoundedMap<ShortCalls>,
    ranges: BoundedMap<ShortCalls>,
    cap: usize,
}

impl Wangiri {
    pub fn new(cfg: WangiriConfig) -> Wangiri {
        let cap = [
            cfg.number.block,
            cfg.number.warn,
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
            cfg,
        }
    }

    fn range_of<'a>(&self, caller: &'a str) -> Option<&'a str> {
        let t = self.cfg.range_tail_digits;
        (t > 0 && caller.len() > t + 5).then(|| &caller[..caller.len() - t])
    }

    /// Whether a call that rang for `ring_ms` and ended as `end` was a one-ring-and-cut.
    pub fn is_short(&self, ring_ms: u64, end: CallEnd) -> bool {
        match end {
            CallEnd::Cancelled => ring_ms <= self.cfg.max_ring_secs * 1000,
            CallEnd::Answered { talk_ms } => talk_ms <= self.cfg.max_talk_secs * 1000,
            CallEnd::Rejected => false,
        }
    }

    /// Records the end of a call from `caller` to `callee`; counts it when it was short.
    pub fn call_ended(&self, caller: &str, callee: &str, ring_ms: u64, end: CallEnd, now_ms: u64) {
        if !self.cfg.enabled || !self.is_short(ring_ms, end) {
            return;
        }
        let sec = (now_ms / 1000) as u32;
        let window = self.cfg.window_secs.clamp(1, 7 * 86_400) as u32;
        let keep_ms = u64::from(window) * 1000;
        let callee_h = self.numbers.key(callee) as u32;
        let cap = self.cap;
        let add = |s: &mut ShortCalls| {
            s.last_ms = s.last_ms.max(now_ms);
            let horizon = sec.saturating_sub(window);
            s.callees.retain(|(_, t)| *t > horizon);
            if let Some(c) = s.callees.iter_mut().find(|(h, _)| *h == callee_h) {
                c.1 = sec;
            } else if s.callees.len() < cap {
                s.callees.push((callee_h, sec));
            } else if let Some(o) = s.callees.iter_mut().min_by_key(|(_, t)| *t) {
                *o = (callee_h, sec);
            }
        };
        let init = || ShortCalls {
            callees: Vec::new(),
            last_ms: now_ms,
            keep_ms,
        };
        self.numbers
            .upsert(self.numbers.key(caller), now_ms, init, add);
        if let Some(r) = self.range_of(caller) {
            self.ranges.upsert(self.ranges.key(r), now_ms, init, add);
        }
    }

    /// The thresholds `caller` (and its range) has reached, strongest first.
    pub fn check(&self, caller: &str, now_ms: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        if !self.cfg.enabled {
            return out;
        }
        let sec = (now_ms / 1000) as u32;
        let horizon = sec.saturating_sub(self.cfg.window_secs.clamp(1, 7 * 86_400) as u32);
        let n = self
            .numbers
            .peek(self.numbers.key(caller), |s| s.count(horizon))
            .unwrap_or(0);
        if let Some(action) = self.cfg.number.reached(n) {
            out.push(Finding {
                scope: "number",
                key: caller.to_string(),
                callees: n,
                action,
            });
        }
        if let Some(r) = self.range_of(caller) {
            let n = self
                .ranges
                .peek(self.ranges.key(r), |s| s.count(horizon))
                .unwrap_or(0);
            if let Some(action) = self.cfg.range.reached(n) {
                out.push(Finding {
                    scope: "range",
                    key: format!("{r}{}", "X".repeat(self.cfg.range_tail_digits)),
                    callees: n,
                    action,
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
            let f = w.check(&caller, 10_000_000 + u64::from(*n) * 10_000);
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
        assert_eq!(w.check("+2693591000", 20_000)[0].action, Action::Warn);
        assert!(w.check("+2693591000", 700_000).is_empty());
    }
}
