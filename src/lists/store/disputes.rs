//! Disputes of wrongly blocked callers (the redress the 603+ `Reason` points at) in the store's
//! SQLite file: one row each, opened by the public form and resolved by an operator, every step
//! in one durable transaction with its audit record (`what` = `dispute-open`, `dispute-lift`,
//! `dispute-uphold`; an empty list name, as for refused requests, so no feed ever reads them).
//!
//! Bounded: at most `max_open` disputes wait at once (then new ones are refused, and the form
//! says so), and resolved ones are deleted `keep_resolved_days` after their resolution. Rows are
//! plain strings the caller validated; this knows nothing of HTTP, forms or what lifting means
//! for the lists (the caller writes the allow entry).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{lock, Store, StoreError, Who, INSERT_AUDIT};

/// What a dispute is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisputeStatus {
    Open,
    /// The block was lifted: an allow entry names the dispute.
    Lifted,
    /// The block stands.
    Upheld,
}

impl DisputeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Lifted => "lifted",
            DisputeStatus::Upheld => "upheld",
        }
    }

    pub fn parse(s: &str) -> Option<DisputeStatus> {
        match s {
            "open" => Some(DisputeStatus::Open),
            "lifted" => Some(DisputeStatus::Lifted),
            "upheld" => Some(DisputeStatus::Upheld),
            _ => None,
        }
    }
}

/// A dispute as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispute {
    pub id: i64,
    /// The caller's number, E.164.
    pub number: String,
    /// How to reach the disputing party (as given).
    pub contact: String,
    pub statement: String,
    /// The address the form was sent from.
    pub source: Option<String>,
    /// Unix seconds.
    pub opened: i64,
    pub status: DisputeStatus,
    pub resolved: Option<i64>,
    /// The operator (API token name) who resolved it.
    pub resolved_by: Option<String>,
}

/// A dispute as the form took it.
#[derive(Debug, Clone, Copy)]
pub struct NewDispute<'a> {
    pub number: &'a str,
    pub contact: &'a str,
    pub statement: &'a str,
}

const COLUMNS: &str =
    "id, number, contact, statement, source, opened, status, resolved, resolved_by";

fn row_to_dispute(r: &rusqlite::Row<'_>) -> rusqlite::Result<Dispute> {
    let status: String = r.get(6)?;
    let status = DisputeStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            format!("unknown dispute status {status:?}").into(),
        )
    })?;
    Ok(Dispute {
        id: r.get(0)?,
        number: r.get(1)?,
        contact: r.get(2)?,
        statement: r.get(3)?,
        source: r.get(4)?,
        opened: r.get(5)?,
        status,
        resolved: r.get(7)?,
        resolved_by: r.get(8)?,
    })
}

/// The disputes table joined the schema after version 2 files were written: created when
/// missing, as the audit trail's `source` column is, so the schema version need not move and
/// older builds read the file unchanged.
pub(super) fn add_disputes(conn: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    let has: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'disputes'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(
            "CREATE TABLE disputes (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                number      TEXT NOT NULL,
                contact     TEXT NOT NULL,
                statement   TEXT NOT NULL,
                source      TEXT,
                opened      INTEGER NOT NULL,
                status      TEXT NOT NULL,
                resolved    INTEGER,
                resolved_by TEXT
            );
            CREATE INDEX disputes_status ON disputes(status, id);",
        )?;
    }
    Ok(())
}

/// What the store bounds disputes by.
#[derive(Debug, Clone, Copy)]
pub struct DisputeLimits {
    pub max_open: u64,
    pub keep_resolved_secs: i64,
}

impl Store {
    /// Open a dispute, durable and audited. Refused (`Full`) while `max_open` wait already;
    /// resolved disputes past their keeping time are deleted in the same transaction.
    pub fn open_dispute(
        &self,
        d: NewDispute<'_>,
        source: Option<&str>,
        limits: DisputeLimits,
        now: i64,
    ) -> Result<Dispute, StoreError> {
        self.counted(|| {
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let open: i64 = tx.query_row(
                "SELECT count(*) FROM disputes WHERE status = 'open'",
                [],
                |r| r.get(0),
            )?;
            if open as u64 >= limits.max_open {
                return Err(StoreError::Full(format!(
                    "{open} disputes are waiting for an operator; try again later"
                )));
            }
            tx.execute(
                "DELETE FROM disputes WHERE status != 'open' AND resolved < ?1",
                params![now.saturating_sub(limits.keep_resolved_secs)],
            )?;
            tx.execute(
                "INSERT INTO disputes (number, contact, statement, source, opened, status)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
                params![d.number, d.contact, d.statement, source, now],
            )?;
            let id = tx.last_insert_rowid();
            let dispute = Dispute {
                id,
                number: d.number.to_string(),
                contact: d.contact.to_string(),
                statement: d.statement.to_string(),
                source: source.map(str::to_string),
                opened: now,
                status: DisputeStatus::Open,
                resolved: None,
                resolved_by: None,
            };
            let who = Who {
                name: "redress-form",
                source,
            };
            audit(&tx, who, "dispute-open", None, &dispute, now)?;
            tx.commit()?;
            Ok(dispute)
        })
    }

    /// Disputes of one status (all without), oldest first, with `id > after`, at most `limit`.
    pub fn disputes(
        &self,
        status: Option<DisputeStatus>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Dispute>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM disputes WHERE (?1 IS NULL OR status = ?1) AND id > ?2
             ORDER BY id LIMIT ?3"
        ))?;
        let rows = st.query_map(
            params![status.map(DisputeStatus::as_str), after, limit as i64],
            row_to_dispute,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One dispute, if it exists.
    pub fn dispute(&self, id: i64) -> Result<Option<Dispute>, StoreError> {
        let conn = lock(&self.reader);
        let mut st =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM disputes WHERE id = ?1"))?;
        Ok(st.query_row(params![id], row_to_dispute).optional()?)
    }

    /// Resolve an open dispute (`Lifted` or `Upheld`), durable and audited; the dispute before
    /// and after. `Invalid` when it does not exist or is resolved already.
    pub fn resolve_dispute(
        &self,
        id: i64,
        to: DisputeStatus,
        who: Who<'_>,
        now: i64,
    ) -> Result<(Dispute, Dispute), StoreError> {
        self.counted(|| {
            if to == DisputeStatus::Open {
                return Err(StoreError::Invalid(
                    "a dispute is resolved as lifted or upheld".into(),
                ));
            }
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let before = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM disputes WHERE id = ?1"),
                    params![id],
                    row_to_dispute,
                )
                .optional()?
                .ok_or_else(|| StoreError::Invalid(format!("no dispute {id}")))?;
            if before.status != DisputeStatus::Open {
                return Err(StoreError::Invalid(format!(
                    "dispute {id} is {} already",
                    before.status.as_str()
                )));
            }
            tx.execute(
                "UPDATE disputes SET status = ?2, resolved = ?3, resolved_by = ?4 WHERE id = ?1",
                params![id, to.as_str(), now, who.name],
            )?;
            let after = Dispute {
                status: to,
                resolved: Some(now),
                resolved_by: Some(who.name.to_string()),
                ..before.clone()
            };
            let what = match to {
                DisputeStatus::Lifted => "dispute-lift",
                _ => "dispute-uphold",
            };
            audit(&tx, who, what, Some(&before), &after, now)?;
            tx.commit()?;
            Ok((before, after))
        })
    }
}

fn audit(
    tx: &rusqlite::Transaction<'_>,
    who: Who<'_>,
    what: &str,
    before: Option<&Dispute>,
    after: &Dispute,
    now: i64,
) -> Result<(), StoreError> {
    let json = |d: &Dispute| serde_json::to_string(d).unwrap_or_default();
    tx.prepare_cached(INSERT_AUDIT)?.execute(params![
        now,
        who.name,
        what,
        "",
        after.number,
        before.map(json),
        Some(json(after)),
        who.source
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::StoreConfig;
    use super::*;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&StoreConfig {
            data_dir: dir.to_path_buf(),
            ..StoreConfig::default()
        })
        .unwrap()
    }

    const LIMITS: DisputeLimits = DisputeLimits {
        max_open: 2,
        keep_resolved_secs: 100,
    };

    fn new(number: &str) -> NewDispute<'_> {
        NewDispute {
            number,
            contact: "ana@example.org",
            statement: "I run a bakery; my calls are refused.",
        }
    }

    #[test]
    fn disputes_open_resolve_survive_reopen_and_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = s
            .open_dispute(new("+12025550143"), Some("192.0.2.1:4000"), LIMITS, 1000)
            .unwrap();
        assert_eq!((a.id, a.status), (1, DisputeStatus::Open));
        let b = s
            .open_dispute(new("+12025550144"), None, LIMITS, 1001)
            .unwrap();
        let full = s.open_dispute(new("+12025550145"), None, LIMITS, 1002);
        assert!(matches!(full, Err(StoreError::Full(_))), "{full:?}");
        let ops = Who {
            name: "ops",
            source: Some("127.0.0.1:9"),
        };
        let (before, after) = s
            .resolve_dispute(a.id, DisputeStatus::Lifted, ops, 1500)
            .unwrap();
        assert_eq!(before, a);
        assert_eq!(
            (after.status, after.resolved, after.resolved_by.as_deref()),
            (DisputeStatus::Lifted, Some(1500), Some("ops"))
        );
        let again = s.resolve_dispute(a.id, DisputeStatus::Upheld, ops, 1501);
        assert!(matches!(again, Err(StoreError::Invalid(m)) if m.contains("lifted already")));
        assert!(matches!(
            s.resolve_dispute(99, DisputeStatus::Upheld, ops, 1501),
            Err(StoreError::Invalid(m)) if m == "no dispute 99"
        ));
        drop(s);
        let s = store(dir.path());
        assert_eq!(s.disputes(Some(DisputeStatus::Open), 0, 10).unwrap(), [b]);
        assert_eq!(s.disputes(None, 0, 10).unwrap().len(), 2);
        assert_eq!(s.dispute(a.id).unwrap(), Some(after));
        let audit = s.audit(0, 10).unwrap();
        let whats: Vec<&str> = audit.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(whats, ["dispute-open", "dispute-open", "dispute-lift"]);
        assert_eq!(audit[0].source.as_deref(), Some("192.0.2.1:4000"));
        assert_eq!(audit[2].who, "ops");
        assert!(audit.iter().all(|r| r.list.is_empty()), "no feed sees them");
        // A resolved dispute is kept for its time, then deleted with the next one opened.
        s.open_dispute(new("+12025550146"), None, LIMITS, 1601)
            .unwrap();
        assert_eq!(s.dispute(a.id).unwrap(), None);
    }
}
