//! The store's side of a fleet (`[fleet]` on): the few values an agent keeps about the fleet's
//! edit stream (how far it has published its own changes, how far it has applied the fleet's,
//! and the fleet's epoch), and the reads that make the audit trail the **outbox**.
//!
//! Every change to an entry is already written with its audit record in one durable
//! transaction, numbered by the record's id. So the outbox needs no table and no second write:
//! the changes not yet handed to the fleet are the audit records after the published mark. A
//! change made while Redis is down simply waits there, across restarts too; the mark moves only
//! once Redis has taken the changes. The `fleet_state` table is created on first use, so a store
//! that never joins a fleet is not touched.
//!
//! Knows nothing of Redis or of what the values mean.

use rusqlite::{params, OptionalExtension};

use super::{audit_row, lock, AuditRecord, Store, StoreError};

const FLEET_TABLE: &str = "CREATE TABLE IF NOT EXISTS fleet_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID";

impl Store {
    fn fleet_table(&self) -> Result<(), StoreError> {
        lock(&self.writer).execute_batch(FLEET_TABLE)?;
        Ok(())
    }

    /// A value kept for the fleet, if set.
    pub fn fleet_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.fleet_table()?;
        let conn = lock(&self.writer);
        let v = conn
            .query_row(
                "SELECT value FROM fleet_state WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v)
    }

    /// Sets values kept for the fleet, all in one durable transaction.
    pub fn fleet_set(&self, values: &[(&str, &str)]) -> Result<(), StoreError> {
        self.counted(|| {
            self.fleet_table()?;
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT INTO fleet_state (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                )?;
                for (k, v) in values {
                    put.execute(params![k, v])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The changes audited after record `after` (refused requests are not changes), oldest
    /// first, at most `limit`.
    pub fn changes_after(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(
            "SELECT id, at, who, what, list, pattern, before, after, source FROM audit
             WHERE id > ?1 AND what != 'refused' ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after, limit as i64], audit_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The lowest and highest audit record ids (0 when there are none): the outbox's extent,
    /// and whether the trail was trimmed past a mark.
    pub fn audit_span(&self) -> Result<(i64, i64), StoreError> {
        let conn = lock(&self.reader);
        let span = conn.query_row(
            "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM audit",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(span)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{StoreConfig, StoredEntry};
    use super::*;
    use crate::screening::EntryAction;

    #[test]
    fn the_outbox_is_the_audit_trail_after_the_mark_and_the_mark_survives_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            data_dir: d.path().to_path_buf(),
            ..StoreConfig::default()
        };
        let e = StoredEntry {
            list: "main".into(),
            pattern: "+12025550143".into(),
            action: EntryAction::Block,
            category: "scam".into(),
            reason: "r".into(),
            source: String::new(),
            expires: None,
            created: 0,
            updated: 0,
        };
        {
            let s = Store::open(&cfg).unwrap();
            assert_eq!(s.fleet_get("published").unwrap(), None);
            assert_eq!(s.audit_span().unwrap(), (0, 0));
            s.upsert("alice", "main", std::slice::from_ref(&e), 10)
                .unwrap();
            let refused = serde_json::json!({"asked": "x"});
            s.audit_refused(&[(11, "".into(), refused)]).unwrap();
            s.remove("bob", "main", "+12025550143", 12).unwrap();
            let all = s.changes_after(0, 10).unwrap();
            let whats: Vec<&str> = all.iter().map(|r| r.what.as_str()).collect();
            assert_eq!(whats, ["add", "remove"], "refused requests are not changes");
            assert_eq!(s.audit_span().unwrap(), (1, 3));
            let after_first = s.changes_after(all[0].id, 10).unwrap();
            assert_eq!(after_first.len(), 1);
            assert_eq!(after_first[0].who, "bob");
            s.fleet_set(&[("published", "1"), ("epoch", "e1")]).unwrap();
            s.fleet_set(&[("published", "3")]).unwrap();
        }
        let s = Store::open(&cfg).unwrap();
        assert_eq!(s.fleet_get("published").unwrap().as_deref(), Some("3"));
        assert_eq!(s.fleet_get("epoch").unwrap().as_deref(), Some("e1"));
    }
}
