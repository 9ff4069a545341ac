//! What the carrier's own traffic says the caller thresholds could be. Every caller-minute (one
//! caller number in one calendar minute) leaves one sample per measure: the highest value the
//! caller reached in that minute. Samples go into small fixed histograms, so watching weeks of
//! traffic costs the same few kilobytes as watching a minute. Caller-minutes whose outcomes were
//! bad are left out (and counted), and registered senders are not sampled at all: the suggestion
//! describes the traffic that the thresholds must let through.
//!
//! Knows nothing of clocks, SIP, or where the suggestion is shown.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Values below this have a bucket each; above it, eight buckets per doubling (at most 1/8 too
/// high, and rounded up: a suggestion errs towards fewer false alarms).
const EXACT: usize = 64;
const SUBS: usize = 8;
/// Values are capped below 2^24 (sixteen million calls a minute).
const TOP_EXP: u32 = 23;
const BUCKETS: usize = EXACT + (TOP_EXP as usize - 5) * SUBS;

/// The measures sampled, in the order of [`super::Counts::measures`], named by their config key.
pub const KEYS: [&str; 4] = ["per_second", "per_minute", "concurrent", "distinct_callees"];

/// Suggested thresholds stand this far above what the traffic showed.
const MARGIN: f64 = 1.5;
/// Below this many caller-minutes the 99.9th percentile is the busiest few callers seen.
const ENOUGH: u64 = 1_000;

fn bucket(v: u32) -> usize {
    let v = v.min((1 << (TOP_EXP + 1)) - 1);
    if (v as usize) < EXACT {
        return v as usize;
    }
    let e = 31 - v.leading_zeros();
    let sub = ((v >> (e - 3)) & 7) as usize;
    EXACT + (e as usize - 6) * SUBS + sub
}

/// The highest value bucket `i` holds.
fn upper(i: usize) -> u32 {
    if i < EXACT {
        return i as u32;
    }
    let e = ((i - EXACT) / SUBS) as u32 + 6;
    let sub = ((i - EXACT) % SUBS) as u32;
    ((SUBS as u32 + sub + 1) << (e - 3)) - 1
}

struct Histogram(Box<[AtomicU64]>);

impl Histogram {
    fn new() -> Histogram {
        Histogram((0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
    }

    fn add(&self, v: u32) {
        self.0[bucket(v)].fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, v: u32) {
        // Only what was added is removed, so this never goes below zero.
        self.0[bucket(v)].fetch_sub(1, Ordering::Relaxed);
    }

    /// (samples, the value at each quantile, the highest value); rounded up to bucket tops.
    fn read(&self, quantiles: [f64; 2]) -> (u64, [u32; 2], u32) {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper(i);
                }
            }
            0
        };
        let max = counts.iter().rposition(|c| *c > 0).map_or(0, upper);
        (n, quantiles.map(at), max)
    }
}

/// The histograms, shared by every caller slot.
pub struct Observed {
    hists: [Histogram; 4],
    excluded: AtomicU64,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            hists: std::array::from_fn(|_| Histogram::new()),
            excluded: AtomicU64::new(0),
        }
    }
}

/// How a call's caller takes part in the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Its outcomes are not bad: its minute is part of the traffic to let through.
    Include,
    /// Its outcomes are bad: its minute is left out, and counted as left out.
    Exclude,
    /// A registered sender: not sampled.
    Skip,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Empty,
    Counted,
    Excluded,
}

/// One caller's sample for its current calendar minute, kept in its velocity slot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    minute: u32,
    values: [u32; 4],
    state: State,
}

impl Sample {
    /// Raises this minute's sample to `values` (or leaves it out), moving it between buckets
    /// so that each caller-minute is one sample at its highest.
    pub fn observe(&mut self, minute: u32, values: [u32; 4], seen: Seen, obs: &Observed) {
        if minute < self.minute {
            return;
        }
        if minute > self.minute {
            *self = Sample {
                minute,
                ..Sample::default()
            };
        }
        match (seen, self.state) {
            (Seen::Skip, _) | (Seen::Include, State::Excluded) => {}
            (Seen::Exclude, State::Excluded) => {}
            (Seen::Exclude, s) => {
                if s == State::Counted {
                    for (h, v) in obs.hists.iter().zip(self.values) {
                        h.remove(v);
                    }
                }
                obs.excluded.fetch_add(1, Ordering::Relaxed);
                self.state = State::Excluded;
            }
            (Seen::Include, State::Empty) => {
                for (h, v) in obs.hists.iter().zip(values) {
                    h.add(v);
                }
                self.values = values;
                self.state = State::Counted;
            }
            (Seen::Include, State::Counted) => {
                for ((h, old), new) in obs.hists.iter().zip(self.values.iter_mut()).zip(values) {
                    if new > *old {
                        if bucket(new) != bucket(*old) {
                            h.remove(*old);
                            h.add(new);
                        }
                        *old = new;
                    }
                }
            }
        }
    }
}

/// Thresholds suggested for one measure of `[signals.velocity.caller]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggested {
    /// The config key (`per_minute`, ...).
    pub key: &'static str,
    /// The 99th and 99.9th percentiles and the highest value of the caller-minutes observed.
    pub p99: u32,
    pub p999: u32,
    pub max: u32,
    pub warn: u32,
    pub block: u32,
}

/// Caller thresholds suggested by the traffic observed since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// Caller-minutes sampled (callers whose outcomes were not bad; registered senders aside).
    pub caller_minutes: u64,
    /// Caller-minutes left out because the caller's outcomes were bad.
    pub excluded_minutes: u64,
    /// One per measure; empty until a caller-minute has been observed.
    pub caller: Vec<Suggested>,
    /// What the operator should know before pasting the thresholds.
    pub notes: Vec<String>,
}

/// Rounded up to a number an operator would write: 1 to 10, then steps of 5, 50 and 500.
fn nice(v: f64) -> u32 {
    let v = v.ceil().clamp(0.0, f64::from(u32::MAX / 2)) as u32;
    let step = match v {
        0..=10 => 1,
        11..=100 => 5,
        101..=1_000 => 50,
        _ => 500,
    };
    v.div_ceil(step) * step
}

impl Observed {
    /// Warn at the 99.9th percentile plus half again; block at three times that, and never
    /// below the busiest caller-minute seen plus half again, so that the block levels (which
    /// `per_second` and `concurrent` apply on rate alone) stay clear of every caller the traffic
    /// showed. `distinct_cap` is the most distinct callees counted per caller.
    pub fn suggestion(&self, distinct_cap: u32) -> Suggestion {
        let excluded_minutes = self.excluded.load(Ordering::Relaxed);
        let mut notes = Vec::new();
        let mut caller = Vec::new();
        let mut caller_minutes = 0;
        for (key, h) in KEYS.iter().zip(&self.hists) {
            let (n, [p99, p999], max) = h.read([0.99, 0.999]);
            caller_minutes = caller_minutes.max(n);
            if n == 0 {
                continue;
            }
            let warn = nice(f64::from(p999) * MARGIN).max(2);
            let block = nice((f64::from(warn) * 3.0).max(f64::from(max) * MARGIN));
            caller.push(Suggested {
                key,
                p99,
                p999,
                max,
                warn,
                block,
            });
            if *key == "distinct_callees" && max >= distinct_cap {
                notes.push(format!(
                    "distinct callees are counted up to {distinct_cap} per caller and the busiest callers reached it: raise the distinct_callees levels and observe again"
                ));
            }
        }
        if caller_minutes == 0 {
            notes.push("no caller-minutes observed yet".into());
        } else if caller_minutes < ENOUGH {
            notes.push(format!(
                "only {caller_minutes} caller-minutes observed: the 99.9th percentile is the busiest few callers; observe longer"
            ));
        }
        Suggestion {
            caller_minutes,
            excluded_minutes,
            caller,
            notes,
        }
    }
}

impl fmt::Display for Suggestion {
    /// One line for the log, with the TOML an operator would paste.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} caller-minutes ({} left out for bad outcomes): [signals.velocity.caller]",
            self.caller_minutes, self.excluded_minutes
        )?;
        for (i, s) in self.caller.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(
                f,
                "{sep}{} = [{}, {}] (p99.9 {}, max {})",
                s.key, s.warn, s.block, s.p999, s.max
            )?;
        }
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_and_round_up() {
        let mut last = 0;
        for v in (0..70_000u32).chain([1 << 23, u32::MAX]) {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(b >= last, "{v}: buckets go up with values");
            last = b;
            assert!(
                upper(b) >= v.min((1 << 24) - 1),
                "{v} above its bucket's top"
            );
            // At most an eighth too high.
            assert!(
                u64::from(upper(b)) <= u64::from(v) + u64::from(v) / 8 + 1,
                "{v}"
            );
        }
        assert_eq!((bucket(63), upper(bucket(63))), (63, 63));
        assert_eq!(upper(bucket(64)), 71);
        assert_eq!(upper(bucket(128)), 143);
    }

    #[test]
    fn nice_rounds_up_to_what_an_operator_writes() {
        for (v, want) in [
            (0.0, 0),
            (1.5, 2),
            (10.0, 10),
            (10.2, 15),
            (18.0, 20),
            (99.0, 100),
            (101.0, 150),
            (1_001.0, 1_500),
        ] {
            assert_eq!(nice(v), want, "{v}");
        }
    }

    #[test]
    fn a_caller_minute_is_one_sample_at_its_highest() {
        let obs = Observed::default();
        let mut s = Sample::default();
        for v in 1..=12 {
            s.observe(100, [1, v, 1, v], Seen::Include, &obs);
        }
        s.observe(101, [1, 3, 1, 3], Seen::Include, &obs);
        let (n, _, max) = obs.hists[1].read([0.5, 0.999]);
        assert_eq!((n, max), (2, 12));
        // A caller that turns bad is taken out of its current minute, and stays out of it.
        s.observe(101, [1, 4, 1, 4], Seen::Exclude, &obs);
        s.observe(101, [1, 5, 1, 5], Seen::Include, &obs);
        assert_eq!(obs.hists[1].read([0.5, 0.999]).0, 1);
        assert_eq!(obs.excluded.load(Ordering::Relaxed), 1);
        // A late event for an older minute changes nothing.
        s.observe(99, [9, 99, 9, 99], Seen::Include, &obs);
        assert_eq!(obs.hists[1].read([0.5, 0.999]).2, 12);
        // Registered senders are not sampled.
        let mut r = Sample::default();
        r.observe(100, [50, 500, 50, 500], Seen::Skip, &obs);
        assert_eq!(obs.hists[1].read([0.5, 0.999]).2, 12);
    }
}
