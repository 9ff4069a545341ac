//! Callers' reports in the store's SQLite file: one row per report, appended in one durable
//! transaction with an audit record each, replayed at start into the in-memory report book, and
//! bounded twice: rows older than the report window are swept, and past the row cap the oldest
//! rows go as new ones arrive.
//!
//! Rows are plain strings as the caller validated them; this knows nothing of how reports are
//! counted or promoted (that is [`crate::screening::signals::report_book`]), nor of HTTP or SIP.

use rusqlite::params;
use serde::Serialize;

use super::{lock, Store, StoreError, INSERT_AUDIT, MAX_FIELD};
use crate::screening::signals::report_book::{Report, ReportSource, ReportStore};

/// A stored report with who sent it and when it was stored, for `GET /v1/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredReport {
    #[serde(flatten)]
    pub report: Report,
    /// The API token's name, or `607` for a callee's answer.
    pub who: String,
    /// Unix seconds when the row was committed.
    pub received: i64,
}

/// Reports against one caller, summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportGroup {
    pub caller: String,
    pub reports: u64,
    /// Distinct reporters: what promotes a caller.
    pub reporters: u64,
    /// The categories reported, comma-separated.
    pub categories: String,
    /// Unix seconds of the newest report.
    pub last: i64,
}

fn source_str(s: ReportSource) -> &'static str {
    match s {
        ReportSource::Sip607 => "sip607",
        ReportSource::Api => "api",
    }
}

fn row_to_report(r: &rusqlite::Row<'_>) -> rusqlite::Result<Report> {
    let source: String = r.get(5)?;
    let source = match source.as_str() {
        "sip607" => ReportSource::Sip607,
        "api" => ReportSource::Api,
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown report source {other:?}").into(),
            ))
        }
    };
    Ok(Report {
        at: r.get(0)?,
        caller: r.get(1)?,
        callee: r.get(2)?,
        category: r.get(3)?,
        reporter: r.get(4)?,
        source,
    })
}

const REPORT_COLUMNS: &str = "at, caller, callee, category, reporter, source";

fn check_report(r: &Report) -> Result<(), StoreError> {
    if r.caller.trim().is_empty() || r.reporter.trim().is_empty() || r.category.is_empty() {
        return Err(StoreError::Invalid(
            "a report needs a caller, a reporter and a category".into(),
        ));
    }
    for (name, v) in [
        ("caller", r.caller.as_str()),
        ("callee", r.callee.as_deref().unwrap_or("")),
        ("category", r.category.as_str()),
        ("reporter", r.reporter.as_str()),
    ] {
        if v.len() > MAX_FIELD {
            return Err(StoreError::Invalid(format!(
                "report {name} longer than {MAX_FIELD} bytes"
            )));
        }
    }
    Ok(())
}

impl Store {
    /// Append reports in one durable transaction (all or none), each with an audit record
    /// (`what` = `report`, list `reports`, pattern = caller). Past the row cap the oldest rows
    /// are deleted in the same transaction, so the table never holds more than the cap.
    pub fn append_reports<'w>(
        &self,
        who: impl Into<super::Who<'w>>,
        reports: &[Report],
        now: i64,
    ) -> Result<(), StoreError> {
        self.counted(|| {
            let who = who.into();
            for r in reports {
                check_report(r)?;
            }
            if reports.is_empty() {
                return Ok(());
            }
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            {
                let mut put = tx.prepare_cached(
                "INSERT INTO reports (at, caller, callee, category, reporter, source, who, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
                let mut audit = tx.prepare_cached(INSERT_AUDIT)?;
                for r in reports {
                    put.execute(params![
                        r.at,
                        r.caller,
                        r.callee,
                        r.category,
                        r.reporter,
                        source_str(r.source),
                        who.name,
                        now
                    ])?;
                    audit.execute(params![
                        now,
                        who.name,
                        "report",
                        "reports",
                        r.caller,
                        None::<String>,
                        serde_json::to_string(r).ok(),
                        who.source
                    ])?;
                }
            }
            // Row ids only grow, so the newest `max_reports` rows are the ids above this line.
            tx.execute(
                "DELETE FROM reports WHERE id <= (SELECT max(id) FROM reports) - ?1",
                params![self.max_reports as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Visit every report made after `since` in the order stored; returns how many.
    pub fn replay_reports(
        &self,
        since: i64,
        mut each: impl FnMut(Report),
    ) -> Result<u64, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE at > ?1 ORDER BY id"
        ))?;
        let mut rows = st.query(params![since])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            each(row_to_report(r)?);
            n += 1;
        }
        Ok(n)
    }

    /// Reports against `caller` made after `since`, newest first, at most `limit`.
    pub fn reports_of(
        &self,
        caller: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<StoredReport>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(&format!(
            "SELECT {REPORT_COLUMNS}, who, received FROM reports
             WHERE caller = ?1 AND at > ?2 ORDER BY at DESC, id DESC LIMIT ?3"
        ))?;
        let rows = st.query_map(params![caller, since, limit as i64], |r| {
            Ok(StoredReport {
                report: row_to_report(r)?,
                who: r.get(6)?,
                received: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Callers reported after `since`, most distinct reporters first, at most `limit`: the
    /// report desk's queue as an operator reads it.
    pub fn report_groups(&self, since: i64, limit: usize) -> Result<Vec<ReportGroup>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(
            "SELECT caller, count(*), count(DISTINCT reporter), group_concat(DISTINCT category), max(at)
             FROM reports WHERE at > ?1 GROUP BY caller
             ORDER BY count(DISTINCT reporter) DESC, max(at) DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![since, limit as i64], |r| {
            Ok(ReportGroup {
                caller: r.get(0)?,
                reports: r.get::<_, i64>(1)?.max(0) as u64,
                reporters: r.get::<_, i64>(2)?.max(0) as u64,
                categories: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                last: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An operator dismissed the reports against `caller`: its stored rows go, in one
    /// transaction with an audit record (`what` = `dismiss`) saying how many. Returns how many.
    pub fn dismiss_reports<'w>(
        &self,
        who: impl Into<super::Who<'w>>,
        caller: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.counted(|| {
            let who = who.into();
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let n = tx.execute("DELETE FROM reports WHERE caller = ?1", params![caller])?;
            tx.execute(
                INSERT_AUDIT,
                params![
                    now,
                    who.name,
                    "dismiss",
                    "reports",
                    caller,
                    serde_json::json!({ "reports": n }).to_string(),
                    None::<String>,
                    who.source
                ],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
    }

    /// Delete reports made at or before `before` (outside the window: they count for nothing).
    /// Returns how many went.
    pub fn sweep_reports(&self, before: i64) -> Result<u64, StoreError> {
        self.counted(|| {
            let conn = lock(&self.writer);
            let n = conn.execute("DELETE FROM reports WHERE at <= ?1", params![before])?;
            Ok(n as u64)
        })
    }

    /// Rows in the reports table.
    pub fn report_rows(&self) -> Result<u64, StoreError> {
        let conn = lock(&self.reader);
        let n: i64 = conn.query_row("SELECT count(*) FROM reports", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }
}

impl ReportStore for Store {
    fn append(&self, who: &str, reports: &[Report], now_unix: i64) -> Result<(), String> {
        self.append_reports(who, reports, now_unix)
            .map_err(|e| e.to_string())
    }

    fn replay(&self, since_unix: i64, each: &mut dyn FnMut(Report)) -> Result<u64, String> {
        self.replay_reports(since_unix, each)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::StoreConfig;
    use super::*;
    use crate::screening::signals::report_book::{ReportBook, ReportsConfig};
    use crate::screening::Action;

    fn report(caller: &str, reporter: &str, at: i64) -> Report {
        Report {
            caller: caller.into(),
            callee: Some(reporter.into()),
            category: "scam".into(),
            reporter: reporter.into(),
            at,
            source: ReportSource::Api,
        }
    }

    fn open(dir: &std::path::Path, max_reports: u64) -> Store {
        Store::open(&StoreConfig {
            data_dir: dir.to_path_buf(),
            max_reports,
            ..StoreConfig::default()
        })
        .unwrap()
    }

    const T: i64 = 1_800_000_000;

    #[test]
    fn reports_survive_reopen_and_rebuild_the_book() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = open(d.path(), 100);
            s.append_reports(
                "bot",
                &[
                    report("+447911123456", "+442071838750", T - 10),
                    report("+447911123456", "+442071838751", T - 5),
                ],
                T,
            )
            .unwrap();
            // Outside a 7-day window: stored, but it must not count after the restart.
            s.append_reports(
                "bot",
                &[report("+447911123456", "+34912345678", T - 8 * 86_400)],
                T,
            )
            .unwrap();
        }
        let s = open(d.path(), 100);
        assert_eq!(s.report_rows().unwrap(), 3);
        let book = ReportBook::new(ReportsConfig::default());
        assert_eq!(book.restore(&s, T).unwrap(), 2);
        assert!(book.lookup("+447911123456", T).is_none());
        // A third distinct reporter after the restart completes the promotion.
        let p = book
            .record(&report("+447911123456", "+61291234567", T), T)
            .unwrap();
        assert_eq!(p.action, Action::Warn);
        assert_eq!(p.reporters, 3);
        // Audited like any write.
        let audit = s.audit(0, 10).unwrap();
        assert_eq!(audit.len(), 3);
        assert_eq!(
            (audit[0].who.as_str(), audit[0].what.as_str()),
            ("bot", "report")
        );
        assert_eq!(
            audit[0].after.as_ref().unwrap()["reporter"],
            "+442071838750"
        );
        // Newest first, with who sent it.
        let of = s.reports_of("+447911123456", T - 86_400, 10).unwrap();
        assert_eq!(
            of.iter()
                .map(|r| r.report.reporter.as_str())
                .collect::<Vec<_>>(),
            ["+442071838751", "+442071838750"]
        );
        assert_eq!((of[0].who.as_str(), of[0].received), ("bot", T));
    }

    #[test]
    fn rows_are_bounded_by_the_cap_and_the_window() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 5);
        for i in 0..12 {
            s.append_reports(
                "607",
                &[report("+12027620143", &format!("+1202555{i:04}"), T + i)],
                T + i,
            )
            .unwrap();
        }
        assert_eq!(s.report_rows().unwrap(), 5);
        let mut kept = Vec::new();
        s.replay_reports(0, |r| kept.push(r.at)).unwrap();
        assert_eq!(kept, [T + 7, T + 8, T + 9, T + 10, T + 11]);
        assert_eq!(s.sweep_reports(T + 9).unwrap(), 3);
        assert_eq!(s.report_rows().unwrap(), 2);
    }

    #[test]
    fn a_bad_report_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), 100);
        let mut bad = report("+12027620143", "", T);
        bad.reporter.clear();
        let r = s.append_reports("bot", &[report("+12027620143", "+15550001", T), bad], T);
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        assert_eq!(s.report_rows().unwrap(), 0);
        assert!(s.audit(0, 10).unwrap().is_empty());
    }

    #[test]
    fn a_version_1_store_gains_the_reports_table() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = open(d.path(), 100);
            let c = lock(&s.writer);
            c.execute_batch("DROP TABLE reports; PRAGMA user_version = 1;")
                .unwrap();
        }
        let s = open(d.path(), 100);
        s.append_reports("bot", &[report("+12027620143", "+15550001", T)], T)
            .unwrap();
        assert_eq!(s.report_rows().unwrap(), 1);
    }
}
