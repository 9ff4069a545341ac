//! Callers' reports as the running agent takes them: a callee's `607 Unwanted` and
//! `POST /v1/reports`. Each report is made durable in the store first, then counted in the report
//! book; a promotion becomes an entry of the store list `reports` with its expiry and evidence,
//! so it is enforced, audited and removable like any operator edit. At start the book is rebuilt
//! from the stored reports still inside the window; a periodic sweep deletes older rows.
//!
//! 607s arrive on the SIP path, which must never wait for a disk: they go through a bounded queue
//! drained on a blocking thread, and are dropped (and counted) when it is full. API reports are
//! written on the request's blocking thread, so a `201` means stored and counted.
//!
//! In a fleet ([`SharedReports`], given by the app when `[fleet]` is on) the reports are also
//! counted fleet-wide, and while the fleet answers, a promotion is the fleet's: the desk hands
//! stored reports on instead of promoting on its own count, and writes a promotion only when the
//! fleet says this agent is the one to write it ([`ReportDesk::promote_for_fleet`]). The entry
//! then reaches the other agents as any list edit does. While the fleet is away the desk promotes
//! on its own counts, as a lone agent.
//!
//! Knows nothing of SIP syntax or HTTP: reports arrive here in domain words.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::overlay::{Live, WriteError};
use super::store::{StoreError, StoredEntry, StoredReport};
use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::signals::report_book::{
    Promotion, Report, ReportBook, ReportSource, ReportStore, ReportsConfig,
};
use crate::screening::{Action, EntryAction};

/// The store list that report promotions are written to.
pub const REPORTS_LIST: &str = "reports";

/// Who the audit trail names for a callee's 607 and for the promotions themselves.
const WHO_607: &str = "607";
const WHO_PROMOTION: &str = "reports";

/// The store refuses longer reasons (`MAX_FIELD`); evidence is cut to fit below it.
const MAX_REASON: usize = 500;

/// Most reports written in one transaction when the 607 queue is drained.
const BATCH: usize = 256;

/// What happened to reports.
#[derive(Debug, Default)]
pub struct ReportStats {
    /// Reports committed to the store.
    pub stored: Counter,
    /// 607 reports dropped because the queue was full (or the agent stopping).
    pub dropped: Counter,
    /// Reports lost because the store write failed.
    pub failed: Counter,
    /// Promotion entries written to the `reports` list.
    pub promotions: Counter,
    /// Rows deleted by the window sweep.
    pub swept: Counter,
}

impl Collect for ReportStats {
    fn collect(&self, out: &mut Exposition) {
        let help = "Callers' reports by what became of them.";
        for (k, c) in [
            ("stored", &self.stored),
            ("dropped", &self.dropped),
            ("failed", &self.failed),
        ] {
            out.counter("scamguard_reports_total", help, &[("outcome", k)], c.get());
        }
        out.counter(
            "scamguard_report_promotions_total",
            "Warn or block entries written to the reports list by distinct reporters.",
            &[],
            self.promotions.get(),
        );
        out.counter(
            "scamguard_reports_swept_total",
            "Stored reports deleted because they left the report window.",
            &[],
            self.swept.get(),
        );
    }
}

/// Reports counted fleet-wide (the app's, when `[fleet]` is on).
pub trait SharedReports: Send + Sync {
    /// Whether the fleet counts reports and decides promotions now.
    fn in_force(&self) -> bool;
    /// Hands stored reports on to be counted fleet-wide; never waits.
    fn relay(&self, reports: &[Report]);
}

/// A promotion that a batch of reports brought about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub caller: String,
    pub promotion: Promotion,
}

/// The report desk: durable first, then counted, then promoted.
pub struct ReportDesk {
    cfg: ReportsConfig,
    book: Arc<ReportBook>,
    live: Arc<Live>,
    queue: mpsc::Sender<Report>,
    /// Taken once by [`ReportDesk::run`].
    drain: Mutex<Option<mpsc::Receiver<Report>>>,
    /// One batch at a time from store to book to promotion: two batches interleaved could
    /// write an older promotion (a warn) over a newer one (a block).
    taking: Mutex<()>,
    pub stats: Arc<ReportStats>,
    /// Set once when the agent is in a fleet.
    shared: std::sync::OnceLock<Arc<dyn SharedReports>>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Cut `s` to at most `max` bytes on a character boundary, marking the cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

impl ReportDesk {
    /// Open the desk over `book` (empty) and rebuild the book from the reports the store holds
    /// inside the window.
    pub fn open(
        cfg: &ReportsConfig,
        book: Arc<ReportBook>,
        live: Arc<Live>,
    ) -> Result<ReportDesk, StoreError> {
        let (queue, drain) = mpsc::channel(cfg.queue.max(1));
        let now = unix_now();
        let n = book
            .restore(live.store.as_ref() as &dyn ReportStore, now)
            .map_err(StoreError::Db)?;
        if n > 0 {
            tracing::info!(
                reports = n,
                callers = book.len(),
                "reports inside the window restored"
            );
        }
        Ok(ReportDesk {
            cfg: cfg.clone(),
            book,
            live,
            queue,
            drain: Mutex::new(Some(drain)),
            taking: Mutex::new(()),
            stats: Arc::new(ReportStats::default()),
            shared: std::sync::OnceLock::new(),
        })
    }

    /// Counts reports fleet-wide from now on, through `shared` (once; later calls are ignored).
    pub fn share(&self, shared: Arc<dyn SharedReports>) {
        let _ = self.shared.set(shared);
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    pub fn config(&self) -> &ReportsConfig {
        &self.cfg
    }

    /// Queue a report from the SIP path; never waits. A full queue drops it (counted).
    pub fn submit(&self, r: Report) {
        if !self.cfg.enabled {
            return;
        }
        if self.queue.try_send(r).is_err() {
            self.stats.dropped.inc();
            // A flood of 607s must not become a flood of log lines: the counter has the rest.
            let n = self.stats.dropped.get();
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "607 report dropped: the report queue is full");
            }
        }
    }

    /// Store `reports` durably (all or none), then count them and write any promotion they
    /// bring. Blocks on the disk: call it on a blocking thread.
    pub fn take<'w>(
        &self,
        who: impl Into<crate::lists::store::Who<'w>>,
        reports: &[Report],
        now: i64,
    ) -> Result<Vec<Promoted>, StoreError> {
        let _one = self.taking.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.live.store.append_reports(who, reports, now) {
            self.stats.failed.add(reports.len() as u64);
            return Err(e);
        }
        self.stats.stored.add(reports.len() as u64);
        if let Some(shared) = self.shared.get().filter(|s| s.in_force()) {
            // Counted here too (the evidence, the number block's reputation), but the fleet's
            // count promotes, once, on the agent it picks.
            for r in reports {
                self.book.record(r, now);
            }
            shared.relay(reports);
            return Ok(Vec::new());
        }
        let mut promoted: Vec<Promoted> = Vec::new();
        for r in reports {
            let Some(p) = self.book.record(r, now) else {
                continue;
            };
            // One write per caller per batch: the last promotion has all the evidence.
            promoted.retain(|x| x.caller != r.caller);
            promoted.push(Promoted {
                caller: r.caller.clone(),
                promotion: p,
            });
        }
        for p in &promoted {
            let source = reports
                .iter()
                .rev()
                .find(|r| r.caller == p.caller)
                .map_or(ReportSource::Api, |r| r.source);
            self.promote(p, source, now);
        }
        Ok(promoted)
    }

    /// Writes the promotion the fleet picked this agent to write: `reporters` distinct
    /// reporters across the fleet, the latest at `latest` (unix seconds). Blocks on the disk.
    pub fn promote_for_fleet(
        &self,
        caller: &str,
        action: Action,
        reporters: u32,
        latest: i64,
        source: ReportSource,
        now: i64,
    ) {
        let ttl = match action {
            Action::Block => self.cfg.block_ttl_secs,
            _ => self.cfg.warn_ttl_secs,
        };
        let p = Promoted {
            caller: caller.to_string(),
            promotion: Promotion {
                action,
                expires: latest.saturating_add(ttl),
                reporters,
                evidence: format!(
                    "{reporters} distinct reporters across the fleet within {} days; latest report at {latest}",
                    self.cfg.window_secs / 86_400
                ),
            },
        };
        let _one = self.taking.lock().unwrap_or_else(|p| p.into_inner());
        self.promote(&p, source, now);
    }

    /// Write (or refresh) the caller's entry in the `reports` list. A failure is logged, not
    /// returned: the reports themselves are stored and will promote again with the next one.
    fn promote(&self, p: &Promoted, source: ReportSource, now: i64) {
        let action = match p.promotion.action {
            Action::Block => EntryAction::Block,
            _ => EntryAction::Warn,
        };
        let reason = cut(format!("reported by {}", p.promotion.evidence), MAX_REASON);
        let entry = StoredEntry {
            list: REPORTS_LIST.into(),
            pattern: p.caller.clone(),
            action,
            category: "reported".into(),
            reason,
            source: match source {
                ReportSource::Sip607 => "607 Unwanted".into(),
                ReportSource::Api => "reports API".into(),
            },
            expires: Some(p.promotion.expires),
            created: now,
            updated: now,
        };
        // A repeat that changes nothing is not worth an audited write.
        if let Ok(Some(old)) = self.live.store.get(REPORTS_LIST, &p.caller) {
            if old.action == entry.action
                && old.expires == entry.expires
                && old.reason == entry.reason
            {
                return;
            }
        }
        match self.live.add(WHO_PROMOTION, REPORTS_LIST, vec![entry], now) {
            Ok(_) => {
                self.stats.promotions.inc();
                tracing::info!(
                    caller = %p.caller,
                    action = action.as_str(),
                    reporters = p.promotion.reporters,
                    "caller promoted by reports"
                );
            }
            Err(WriteError::Rejected(d)) => {
                tracing::warn!(caller = %p.caller, "report promotion refused: {}", d.join("; "))
            }
            Err(WriteError::Store(e)) => {
                tracing::error!(caller = %p.caller, "report promotion not stored: {e}")
            }
        }
    }

    /// Stored reports against `caller` inside the window (newest first) and its promotion.
    pub fn evidence(
        &self,
        caller: &str,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<StoredReport>, Option<Promotion>), StoreError> {
        let rows = self
            .live
            .store
            .reports_of(caller, now - self.book.window_secs(), limit)?;
        Ok((rows, self.book.lookup(caller, now)))
    }

    /// Delete stored reports that left the window and free idle book slots.
    pub fn sweep(&self, now: i64) -> Result<u64, StoreError> {
        self.book.sweep(now);
        let n = self
            .live
            .store
            .sweep_reports(now - self.book.window_secs())?;
        self.stats.swept.add(n);
        Ok(n)
    }

    /// Drain the 607 queue in batches on blocking threads, and sweep every `sweep_every`, until
    /// `shutdown`; what is queued then is still written before this returns.
    pub async fn run(
        self: Arc<Self>,
        sweep_every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let Some(mut rx) = self.drain.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut tick = tokio::time::interval(sweep_every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    let me = self.clone();
                    match tokio::task::spawn_blocking(move || me.sweep(unix_now())).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "reports outside the window deleted"),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "report sweep failed"),
                        Err(e) => tracing::error!(error = %e, "report sweep task failed"),
                    }
                    continue;
                }
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
            }
            self.write_batch(batch).await;
        }
        rx.close();
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            self.write_batch(batch).await;
        }
    }

    async fn write_batch(self: &Arc<Self>, batch: Vec<Report>) {
        let me = self.clone();
        let res = tokio::task::spawn_blocking(move || me.take(WHO_607, &batch, unix_now())).await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "607 reports not stored"),
            Err(e) => tracing::error!(error = %e, "607 report task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::overlay::StoreRules;
    use crate::lists::store::{Store, StoreConfig};

    fn desk(dir: &std::path::Path, cfg: &ReportsConfig) -> ReportDesk {
        let store = Arc::new(
            Store::open(&StoreConfig {
                data_dir: dir.to_path_buf(),
                ..StoreConfig::default()
            })
            .unwrap(),
        );
        let rules = Arc::new(StoreRules::load(&store).unwrap());
        let live = Arc::new(Live::new(store, rules, None));
        ReportDesk::open(cfg, Arc::new(ReportBook::new(cfg.clone())), live).unwrap()
    }

    fn report(reporter: &str, category: &str) -> Report {
        Report {
            caller: "+12027620143".into(),
            callee: Some("+12025550100".into()),
            category: category.into(),
            reporter: reporter.into(),
            at: unix_now(),
            source: ReportSource::Api,
        }
    }

    #[test]
    fn promotion_entry_carries_expiry_and_bounded_evidence() {
        let d = tempfile::tempdir().unwrap();
        let cfg = ReportsConfig {
            warn_reporters: 2,
            block_reporters: 200,
            ..ReportsConfig::default()
        };
        let reports = desk(d.path(), &cfg);
        let now = unix_now();
        assert!(reports
            .take("bot", &[report("alice", "scam")], now)
            .unwrap()
            .is_empty());
        let p = reports
            .take("bot", &[report("bob", "robocall")], now)
            .unwrap();
        assert_eq!(p.len(), 1);
        let e = reports
            .live
            .store
            .get(REPORTS_LIST, "+12027620143")
            .unwrap()
            .unwrap();
        assert_eq!(e.action, EntryAction::Warn);
        assert_eq!(e.expires, Some(p[0].promotion.expires));
        assert!(e.reason.contains("robocall x1, scam x1"), "{}", e.reason);
        // A hundred reporters, each with its own long category: the reason still fits the store.
        let many: Vec<Report> = (0..100)
            .map(|i| {
                report(
                    &format!("r{i}"),
                    &format!("category-{i:03}-{}", "x".repeat(20)),
                )
            })
            .collect();
        reports.take("bot", &many, now).unwrap();
        let e = reports
            .live
            .store
            .get(REPORTS_LIST, "+12027620143")
            .unwrap()
            .unwrap();
        assert!(e.reason.len() <= MAX_REASON, "{}", e.reason.len());
        assert!(
            e.reason.starts_with("reported by 102 distinct reporters"),
            "{}",
            e.reason
        );
        assert!(e.reason.ends_with('…'));
        assert_eq!(reports.stats.stored.get(), 102);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_a_stop_writes_what_is_queued() {
        let d = tempfile::tempdir().unwrap();
        let cfg = ReportsConfig {
            queue: 2,
            ..ReportsConfig::default()
        };
        let reports = Arc::new(desk(d.path(), &cfg));
        for i in 0..5 {
            let mut r = report(&format!("+1212555{i:04}"), "unwanted");
            r.source = ReportSource::Sip607;
            reports.submit(r);
        }
        assert_eq!(reports.stats.dropped.get(), 3);
        // Stopped at once: the two queued reports are still stored before `run` returns.
        reports
            .clone()
            .run(Duration::from_secs(3600), std::future::ready(()))
            .await;
        assert_eq!(reports.stats.stored.get(), 2);
        assert_eq!(reports.live.store.report_rows().unwrap(), 2);
        let (rows, promotion) = reports.evidence("+12027620143", 10, unix_now()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].who, "607");
        assert!(promotion.is_none());
    }

    #[test]
    fn cut_keeps_char_boundaries() {
        for (s, max, want) in [
            ("abc", 10, "abc"),
            ("abcdef", 5, "ab…"),
            ("ééééé", 6, "é…"),
            ("", 0, ""),
        ] {
            assert_eq!(cut(s.to_string(), max), want, "{s} {max}");
        }
    }
}
