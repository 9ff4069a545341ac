//! Reports against callers: a callee's `607 Unwanted` or a `POST /v1/reports`. When enough
//! distinct reporters report one caller within a window, the caller is promoted to a warn entry,
//! and with more to a block entry, each with an expiry and the evidence in its reason. One
//! reporter, however often it reports, counts once.
//!
//! [`ReportBook`] is pure and in memory; durability sits behind [`ReportStore`], which the store
//! implements: a report is appended there first and counted here only once it is durable, and at
//! start [`ReportBook::restore`] replays the stored reports still inside the window, so the
//! distinct-reporter counts go on across a restart. Knows nothing of SIP, HTTP or SQLite.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::blocks::BlockBook;
use super::bounded::{Aging, BoundedMap};
use crate::screening::Action;

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportSource {
    /// The callee answered `607 Unwanted`; the reporter is the callee.
    Sip607,
    /// `POST /v1/reports`.
    Api,
}

/// One report against a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// E.164 of the reported caller.
    pub caller: String,
    pub callee: Option<String>,
    /// `robocall`, `scam`, `spoofed`, `unwanted` ...
    pub category: String,
    /// Who reported: the callee's number for a 607, the API client's reporter id otherwise.
    pub reporter: String,
    /// Unix seconds.
    pub at: i64,
    pub source: ReportSource,
}

/// Durability for reports; the store module implements it (SQLite). `ReportBook` never appends:
/// the caller appends first, then records, and [`ReportBook::restore`] replays at start.
pub trait ReportStore: Send + Sync {
    /// Store `reports` durably (all or none); `who` is the client or event that reported.
    fn append(&self, who: &str, reports: &[Report], now_unix: i64) -> Result<(), String>;
    /// Visit every stored report made after `since_unix`, in the order they were stored.
    fn replay(&self, since_unix: i64, each: &mut dyn FnMut(Report)) -> Result<u64, String>;
}

/// `[signals.reports]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    pub enabled: bool,
    /// Reports older than this do not count towards a promotion.
    pub window_secs: i64,
    /// Distinct reporters within the window for a warn entry.
    pub warn_reporters: u32,
    /// Distinct reporters within the window for a block entry.
    pub block_reporters: u32,
    /// How long a promoted warn entry lasts after the latest report.
    pub warn_ttl_secs: i64,
    pub block_ttl_secs: i64,
    pub max_callers: usize,
    pub shards: usize,
    /// Reports from `607 Unwanted` waiting to be stored; past it they are dropped and counted,
    /// so a slow disk never holds up a call.
    pub queue: usize,
    /// Largest report accepted ahead of the agent's clock (clients' clocks drift).
    pub max_future_secs: i64,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            enabled: true,
            window_secs: 7 * 86_400,
            warn_reporters: 3,
            block_reporters: 10,
            warn_ttl_secs: 7 * 86_400,
            block_ttl_secs: 30 * 86_400,
            max_callers: 200_000,
            shards: 16,
            queue: 4096,
            max_future_secs: 300,
        }
    }
}

impl ReportsConfig {
    /// Every problem with this section.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("window_secs", self.window_secs),
            ("warn_ttl_secs", self.warn_ttl_secs),
            ("block_ttl_secs", self.block_ttl_secs),
            ("warn_reporters", i64::from(self.warn_reporters)),
            ("block_reporters", i64::from(self.block_reporters)),
            ("max_callers", self.max_callers as i64),
            ("shards", self.shards as i64),
            ("queue", self.queue as i64),
        ] {
            if v <= 0 {
                p.push(format!(
                    "signals.reports.{k} is {v}; expected a positive number"
                ));
            }
        }
        // One reporter must never promote a caller alone.
        if self.warn_reporters < 2 {
            p.push(format!(
                "signals.reports.warn_reporters is {}; expected at least 2 distinct reporters",
                self.warn_reporters
            ));
        }
        if self.block_reporters < self.warn_reporters {
            p.push(format!(
                "signals.reports.block_reporters ({}) is below warn_reporters ({}); expected at least as many",
                self.block_reporters, self.warn_reporters
            ));
        }
        if self.max_future_secs < 0 {
            p.push("signals.reports.max_future_secs is negative; expected seconds".into());
        }
        p
    }
}

/// A caller promoted by reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub action: Action,
    /// Unix seconds.
    pub expires: i64,
    pub reporters: u32,
    /// Why, for the verdict's reason: counts per category, the window and the latest report.
    pub evidence: String,
}

struct Seen {
    reporter: u64,
    at: i64,
    category: String,
}

pub struct Reported {
    seen: Vec<Seen>,
    promoted: Option<(Action, i64)>,
    latest: i64,
    window: i64,
}

impl Aging for Reported {
    fn idle_after_ms(&self) -> u64 {
        let until = self
            .promoted
            .map_or(0, |p| p.1)
            .max(self.latest + self.window);
        (until.max(0) as u64).saturating_mul(1000)
    }
}

/// Reports held in memory, bounded, with their promotions.
pub struct ReportBook {
    cfg: ReportsConfig,
    callers: BoundedMap<Reported>,
    cap_reporters: usize,
    /// Told of every report counted, for the reputation of the caller's number block.
    blocks: Option<Arc<BlockBook>>,
}

impl ReportBook {
    pub fn new(cfg: ReportsConfig) -> ReportBook {
        ReportBook {
            callers: BoundedMap::new(cfg.shards, cfg.max_callers),
            cap_reporters: (cfg.block_reporters.max(cfg.warn_reporters) as usize).clamp(1, 256),
            cfg,
            blocks: None,
        }
    }

    /// Tell `blocks` of every report counted from now on (restored ones included).
    pub fn with_blocks(mut self, blocks: Arc<BlockBook>) -> ReportBook {
        self.blocks = Some(blocks);
        self
    }

    /// Counts a report; returns the caller's promotion after it, if any.
    pub fn record(&self, r: &Report, now_unix: i64) -> Option<Promotion> {
        if !self.cfg.enabled || r.caller.is_empty() || r.reporter.is_empty() {
            return None;
        }
        // A reporter reporting itself proves nothing.
        if r.reporter == r.caller {
            return self.lookup(&r.caller, now_unix);
        }
        let window = self.cfg.window_secs.max(1);
        if r.at < now_unix - window {
            return self.lookup(&r.caller, now_unix);
        }
        if let Some(b) = &self.blocks {
            b.reported(&r.caller, &r.reporter, r.at, now_unix);
        }
        let key = self.callers.key(&r.caller);
        let reporter = self.callers.key(&r.reporter);
        let cfg = &self.cfg;
        let cap = self.cap_reporters;
        let (p, _) = self.callers.upsert(
            key,
            (now_unix.max(0) as u64) * 1000,
            || Reported {
                seen: Vec::new(),
                promoted: None,
                latest: r.at,
                window,
            },
            |e| {
                e.seen.retain(|s| s.at > now_unix - window);
                e.latest = e.latest.max(r.at);
                if let Some(s) = e.seen.iter_mut().find(|s| s.reporter == reporter) {
                    s.at = s.at.max(r.at);
                    s.category.clone_from(&r.category);
                } else {
                    if e.seen.len() >= cap {
                        // Enough reporters to block are already here; keep the newest.
                        if let Some(i) = e
                            .seen
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, s)| s.at)
                            .map(|(i, _)| i)
                        {
                            e.seen.swap_remove(i);
                        }
                    }
                    e.seen.push(Seen {
                        reporter,
                        at: r.at,
                        category: r.category.clone(),
                    });
                }
                let n = e.seen.len() as u32;
                let reached = if n >= cfg.block_reporters {
                    Some((Action::Block, e.latest + cfg.block_ttl_secs))
                } else if n >= cfg.warn_reporters {
                    Some((Action::Warn, e.latest + cfg.warn_ttl_secs))
                } else {
                    None
                };
                if let Some((action, expires)) = reached {
                    e.promoted = match e.promoted {
                        // A block stays a block until it expires.
                        Some((Action::Block, until))
                            if until > now_unix && action == Action::Warn =>
                        {
                            Some((Action::Block, until))
                        }
                        _ => Some((action, expires)),
                    };
                }
                promotion_of(e, cfg, now_unix)
            },
        );
        p
    }

    /// The caller's promotion by reports, if it has one in force.
    pub fn lookup(&self, caller: &str, now_unix: i64) -> Option<Promotion> {
        if !self.cfg.enabled {
            return None;
        }
        self.callers
            .peek(self.callers.key(caller), |e| {
                promotion_of(e, &self.cfg, now_unix)
            })
            .flatten()
    }

    /// Callers tracked.
    pub fn len(&self) -> usize {
        self.callers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    pub fn sweep(&self, now_unix: i64) {
        self.callers.sweep((now_unix.max(0) as u64) * 1000);
    }

    /// The window reports count in, in seconds.
    pub fn window_secs(&self) -> i64 {
        self.cfg.window_secs.max(1)
    }

    /// Rebuild the counts from the reports `store` holds inside the window (at start, on an
    /// empty book). Returns how many were replayed.
    pub fn restore(&self, store: &dyn ReportStore, now_unix: i64) -> Result<u64, String> {
        if !self.cfg.enabled {
            return Ok(0);
        }
        store.replay(now_unix - self.window_secs(), &mut |r| {
            self.record(&r, now_unix);
        })
    }
}

fn promotion_of(e: &Reported, cfg: &ReportsConfig, now: i64) -> Option<Promotion> {
    let (action, expires) = e.promoted?;
    if expires <= now {
        return None;
    }
    let recent: Vec<&Seen> = e
        .seen
        .iter()
        .filter(|s| s.at > now - cfg.window_secs)
        .collect();
    let mut cats: BTreeMap<&str, u32> = BTreeMap::new();
    for s in &recent {
        *cats.entry(s.category.as_str()).or_default() += 1;
    }
    let cats: Vec<String> = cats.iter().map(|(c, n)| format!("{c} x{n}")).collect();
    let evidence = format!(
        "{} distinct reporters within {} days ({}); latest report at {}",
        recent.len(),
        cfg.window_secs / 86_400,
        cats.join(", "),
        e.latest
    );
    Some(Promotion {
        action,
        expires,
        reporters: recent.len() as u32,
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(caller: &str, reporter: &str, at: i64, category: &str) -> Report {
        Report {
            caller: caller.into(),
            callee: Some(reporter.into()),
            category: category.into(),
            reporter: reporter.into(),
            at,
            source: ReportSource::Sip607,
        }
    }

    const T: i64 = 1_800_000_000;

    /// (reports as (reporter, seconds before T), expected action at T)
    #[test]
    fn distinct_reporters_promote() {
        type Case = (&'static [(&'static str, i64)], Option<Action>);
        let cases: &[Case] = &[
            (&[("+442071838750", 10), ("+442071838751", 5)], None),
            (
                &[
                    ("+442071838750", 10),
                    ("+442071838751", 5),
                    ("+34912345678", 1),
                ],
                Some(Action::Warn),
            ),
            // One reporter a hundred times is one reporter.
            (&[("+442071838750", 10); 100], None),
            (
                &[
                    ("+442071838750", 10),
                    ("+442071838750", 9),
                    ("+442071838750", 8),
                    ("+61291234567", 7),
                ],
                None,
            ),
            // The caller reporting itself does not count.
            (
                &[
                    ("+12027620143", 3),
                    ("+442071838750", 2),
                    ("+61291234567", 1),
                ],
                None,
            ),
            // Older than the 7-day window.
            (
                &[
                    ("+442071838750", 8 * 86_400),
                    ("+442071838751", 8 * 86_400),
                    ("+34912345678", 1),
                ],
                None,
            ),
            (
                &[
                    ("+4930123450", 1),
                    ("+4930123451", 2),
                    ("+4930123452", 3),
                    ("+4930123453", 4),
                    ("+4930123454", 5),
                    ("+4930123455", 6),
                    ("+4930123456", 7),
                    ("+4930123457", 8),
                    ("+4930123458", 9),
                    ("+4930123459", 10),
                ],
                Some(Action::Block),
            ),
        ];
        for (i, (reports, want)) in cases.iter().enumerate() {
            let book = ReportBook::new(ReportsConfig::default());
            for (reporter, ago) in reports.iter() {
                book.record(&report("+12027620143", reporter, T - ago, "robocall"), T);
            }
            assert_eq!(
                book.lookup("+12027620143", T).map(|p| p.action),
                *want,
                "case {i}"
            );
            assert!(book.lookup("+12027620144", T).is_none());
        }
    }

    #[test]
    fn config_problems_are_named() {
        let ok = ReportsConfig::default();
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
        // (config, text every problem list must contain)
        let cases = [
            (
                ReportsConfig {
                    warn_reporters: 1,
                    ..ok.clone()
                },
                "warn_reporters is 1; expected at least 2",
            ),
            (
                ReportsConfig {
                    block_reporters: 2,
                    ..ok.clone()
                },
                "block_reporters (2) is below warn_reporters (3)",
            ),
            (
                ReportsConfig {
                    queue: 0,
                    ..ok.clone()
                },
                "signals.reports.queue is 0",
            ),
            (
                ReportsConfig {
                    window_secs: -5,
                    ..ok.clone()
                },
                "signals.reports.window_secs is -5",
            ),
        ];
        for (cfg, want) in cases {
            let p = cfg.validate();
            assert!(p.iter().any(|m| m.contains(want)), "{want}: {p:?}");
        }
    }

    #[test]
    fn promotion_expires_and_carries_evidence() {
        let cfg = ReportsConfig {
            warn_ttl_secs: 3_600,
            ..ReportsConfig::default()
        };
        let book = ReportBook::new(cfg);
        book.record(&report("+447911123456", "+442071838750", T, "scam"), T);
        book.record(&report("+447911123456", "+442071838751", T, "scam"), T);
        let p = book
            .record(&report("+447911123456", "+34912345678", T, "robocall"), T)
            .unwrap();
        assert_eq!(p.action, Action::Warn);
        assert_eq!(p.expires, T + 3_600);
        assert_eq!(p.reporters, 3);
        assert!(
            p.evidence.contains("3 distinct reporters"),
            "{}",
            p.evidence
        );
        assert!(
            p.evidence.contains("robocall x1, scam x2"),
            "{}",
            p.evidence
        );
        assert!(book.lookup("+447911123456", T + 3_601).is_none());
    }

    #[test]
    fn block_is_not_downgraded_while_in_force() {
        let cfg = ReportsConfig {
            warn_reporters: 2,
            block_reporters: 3,
            ..ReportsConfig::default()
        };
        let book = ReportBook::new(cfg);
        for (i, r) in ["+61291234560", "+61291234561", "+61291234562"]
            .iter()
            .enumerate()
        {
            book.record(
                &report("+61412345678", r, T + i as i64, "scam"),
                T + i as i64,
            );
        }
        assert_eq!(
            book.lookup("+61412345678", T + 3).unwrap().action,
            Action::Block
        );
        // Eight days later the old reporters are outside the window; two new ones reach only
        // the warn level, which must not shorten the block still in force.
        let later = T + 8 * 86_400;
        book.record(
            &report("+61412345678", "+61291234563", later, "scam"),
            later,
        );
        let p = book
            .record(
                &report("+61412345678", "+61291234564", later, "scam"),
                later,
            )
            .unwrap();
        assert_eq!((p.action, p.expires), (Action::Block, T + 2 + 30 * 86_400));
    }
}
