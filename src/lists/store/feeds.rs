//! The SQL of signed feeds, on both sides, so that `lists::feeds` never touches a table.
//!
//! A publisher reads the store's own tables through [`FeedReader`]: its own read-only
//! connection to `scamguard.db`, so that reading a whole list for a snapshot never waits on the
//! connections of the [`Store`](super::Store) and can never write. A feed's version is the audit
//! trail's `AUTOINCREMENT` sequence (it never goes back, even after the trail is trimmed), which
//! is why the questions "what changed after version V" and "can the trail still tell" are
//! answered here: they are questions about the audit trail.
//!
//! A subscriber keeps what partners sent in [`FeedsDb`], a file of its own beside the store
//! (`feeds.db`): partners' entries are not the operator's, and never mix with the store's
//! entries, caps or audit trail. Its rows are [`FeedEntry`]s exactly as they arrived, which is
//! why the wire entry is defined here and re-exported by `lists::feeds`.
//!
//! Knows nothing of signatures, HTTP, trust levels or how entries are compiled; checking what a
//! partner sent is the caller's job. Every call blocks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{lock, StoreError};

/// One entry as a feed carries it, and as the subscriber keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub pattern: String,
    pub action: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub first_seen: i64,
    #[serde(default)]
    pub last_seen: i64,
    #[serde(default)]
    pub expires: Option<i64>,
}

/// A removal: `why` is `remove` or `expire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub pattern: String,
    pub why: String,
}

// ---------------------------------------------------------------------------------------------
// Publisher: reading the store

/// A read-only connection to the store file for serving feeds.
pub struct FeedReader {
    conn: Mutex<Connection>,
}

/// The changes of a list after a version: the entries as they are now, and the tombstones.
pub type Changes = (Vec<FeedEntry>, Vec<Tombstone>);

/// One read transaction over the store: everything read through it is of the same instant.
pub struct FeedRead<'c> {
    tx: rusqlite::Transaction<'c>,
}

const SELECT_ENTRY: &str =
    "SELECT pattern, action, category, reason, source, created, updated, expires FROM entries";

// A store entry as a partner sees it: created and updated become first and last seen.
fn row_to_feed_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<FeedEntry> {
    Ok(FeedEntry {
        pattern: r.get(0)?,
        action: r.get(1)?,
        category: r.get(2)?,
        reason: r.get(3)?,
        source: r.get(4)?,
        first_seen: r.get(5)?,
        last_seen: r.get(6)?,
        expires: r.get(7)?,
    })
}

impl FeedReader {
    /// Open the store file at `store_path` read-only.
    pub fn open(store_path: &Path) -> Result<FeedReader, StoreError> {
        let conn = Connection::open_with_flags(
            store_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(format!("{}: {e}", store_path.display())))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(FeedReader {
            conn: Mutex::new(conn),
        })
    }

    /// Run `f` inside one read transaction.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&FeedRead<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.conn);
        let read = FeedRead {
            tx: conn.transaction()?,
        };
        let out = f(&read);
        // Dropping the transaction rolls it back: nothing was written, so that only ends it.
        drop(read);
        out
    }
}

impl FeedRead<'_> {
    /// The audit trail's sequence: the version of the whole store at this instant.
    pub fn version(&self) -> Result<u64, StoreError> {
        let v = self
            .tx
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok(v.max(0) as u64)
    }

    /// The audit id of the last change to `list` (0 when none is on record): moves exactly
    /// when the list does, which makes it an ETag.
    pub fn last_change(&self, list: &str) -> Result<i64, StoreError> {
        Ok(self.tx.query_row(
            "SELECT coalesce(max(id), 0) FROM audit WHERE list = ?1",
            params![list],
            |r| r.get(0),
        )?)
    }

    /// The entries of `list` that have not expired at `now`, by pattern.
    pub fn live_entries(&self, list: &str, now: i64) -> Result<Vec<FeedEntry>, StoreError> {
        let mut st = self.tx.prepare(&format!(
            "{SELECT_ENTRY} WHERE list = ?1 AND (expires IS NULL OR expires > ?2) ORDER BY pattern"
        ))?;
        let rows = st.query_map(params![list, now], row_to_feed_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The changes of `list` after version `since`, by pattern: the entries as they are now and
    /// tombstones for those removed or expired. `None` when the audit trail cannot tell them
    /// (an import, records trimmed away, more than `max_records`): then the caller sends
    /// the whole list instead.
    pub fn changes_since(
        &self,
        list: &str,
        since: u64,
        now: i64,
        max_records: usize,
    ) -> Result<Option<Changes>, StoreError> {
        let tx = &self.tx;
        let min: Option<i64> = tx.query_row("SELECT min(id) FROM audit", [], |r| r.get(0))?;
        let version: i64 = tx
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        // Records after `since` must all still be there: the first kept one is at most since + 1.
        let complete = match min {
            Some(m) => m as u64 <= since + 1,
            None => since as i64 >= version,
        };
        if !complete {
            return Ok(None);
        }
        let mut st = tx.prepare_cached(
            "SELECT what, pattern FROM audit WHERE list = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut rows = st.query(params![list, since as i64, max_records as i64 + 1])?;
        let mut last: HashMap<String, String> = HashMap::new();
        let mut n = 0usize;
        while let Some(r) = rows.next()? {
            n += 1;
            let what: String = r.get(0)?;
            let pattern: Option<String> = r.get(1)?;
            match (what.as_str(), pattern) {
                ("add" | "update" | "remove" | "expire", Some(p)) if n <= max_records => {
                    last.insert(p, what);
                }
                _ => return Ok(None),
            }
        }
        let mut get =
            tx.prepare_cached(&format!("{SELECT_ENTRY} WHERE list = ?1 AND pattern = ?2"))?;
        let mut entries = Vec::new();
        let mut removed = Vec::new();
        let mut touched: Vec<(String, String)> = last.into_iter().collect();
        touched.sort();
        for (p, what) in touched {
            match get
                .query_row(params![list, p], row_to_feed_entry)
                .optional()?
            {
                Some(e) if e.expires.map_or(true, |x| x > now) => entries.push(e),
                Some(_) => removed.push(Tombstone {
                    pattern: p,
                    why: "expire".into(),
                }),
                None => removed.push(Tombstone {
                    pattern: p,
                    why: if what == "expire" { "expire" } else { "remove" }.into(),
                }),
            }
        }
        Ok(Some((entries, removed)))
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber: feeds.db

/// The subscriber's database file inside the data directory.
pub const FEEDS_DB: &str = "feeds.db";

const FEEDS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feed_state (
    feed TEXT PRIMARY KEY, url TEXT NOT NULL, version INTEGER NOT NULL, etag TEXT,
    last_success INTEGER, last_error TEXT, last_error_at INTEGER
);
CREATE TABLE IF NOT EXISTS feed_entries (
    feed TEXT NOT NULL, pattern TEXT NOT NULL, action TEXT NOT NULL, category TEXT NOT NULL,
    reason TEXT NOT NULL, source TEXT NOT NULL, first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL, expires INTEGER, PRIMARY KEY (feed, pattern)
) WITHOUT ROWID;
";

/// What the subscriber remembers of one feed between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedState {
    /// The version last applied (0: none yet).
    pub version: u64,
    pub etag: Option<String>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// A remembered feed with its URL and how many entries are kept of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFeed {
    pub name: String,
    pub url: String,
    pub state: FeedState,
    pub entries: u64,
}

/// A checked answer to persist: what it brings and the version it reaches.
#[derive(Debug, Clone, Copy)]
pub struct FeedUpdate<'a> {
    /// The URL it came from, kept for `scamguard feeds status`.
    pub url: &'a str,
    pub version: u64,
    pub etag: Option<&'a str>,
    /// A full snapshot replaces every entry kept of the feed.
    pub full: bool,
    pub removed: &'a [Tombstone],
    pub entries: &'a [FeedEntry],
}

/// The subscriber's `feeds.db`.
pub struct FeedsDb {
    conn: Mutex<Connection>,
}

impl FeedsDb {
    /// Open (or create) `feeds.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<FeedsDb, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join(FEEDS_DB);
        let err = |e: rusqlite::Error| StoreError::Open(format!("{}: {e}", path.display()));
        let c = Connection::open(&path).map_err(err)?;
        c.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        c.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        c.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        c.execute_batch(FEEDS_SCHEMA).map_err(err)?;
        Ok(FeedsDb {
            conn: Mutex::new(c),
        })
    }

    /// Forget every feed not named in `feeds`, so that only configured feeds keep rows.
    pub fn keep_only(&self, feeds: &[&str]) -> Result<(), StoreError> {
        let names = serde_json::to_string(feeds).map_err(|e| StoreError::Db(e.to_string()))?;
        let db = lock(&self.conn);
        db.execute(
            "DELETE FROM feed_entries WHERE feed NOT IN (SELECT value FROM json_each(?1))",
            params![names],
        )?;
        db.execute(
            "DELETE FROM feed_state WHERE feed NOT IN (SELECT value FROM json_each(?1))",
            params![names],
        )?;
        Ok(())
    }

    /// Visit every entry kept of `feed`.
    pub fn for_each_entry(
        &self,
        feed: &str,
        mut f: impl FnMut(FeedEntry),
    ) -> Result<(), StoreError> {
        let db = lock(&self.conn);
        let mut st = db.prepare(
            "SELECT pattern, action, category, reason, source, first_seen, last_seen,
             expires FROM feed_entries WHERE feed = ?1",
        )?;
        let rows = st.query_map(params![feed], row_to_feed_entry)?;
        for r in rows {
            f(r?);
        }
        Ok(())
    }

    /// What is remembered of `feed`, if it was ever polled.
    pub fn state(&self, feed: &str) -> Result<Option<FeedState>, StoreError> {
        let db = lock(&self.conn);
        Ok(db
            .query_row(
                "SELECT version, etag, last_success, last_error, last_error_at
                 FROM feed_state WHERE feed = ?1",
                params![feed],
                |r| {
                    Ok(FeedState {
                        version: r.get::<_, i64>(0)? as u64,
                        etag: r.get(1)?,
                        last_success: r.get(2)?,
                        last_error: r.get(3)?,
                        last_error_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every remembered feed, by name.
    pub fn saved(&self) -> Result<Vec<SavedFeed>, StoreError> {
        let db = lock(&self.conn);
        let mut st = db.prepare(
            "SELECT s.feed, s.url, s.version, s.etag, s.last_success, s.last_error,
             s.last_error_at, (SELECT count(*) FROM feed_entries e WHERE e.feed = s.feed)
             FROM feed_state s ORDER BY s.feed",
        )?;
        let rows = st.query_map([], |r| {
            Ok(SavedFeed {
                name: r.get(0)?,
                url: r.get(1)?,
                state: FeedState {
                    version: r.get::<_, i64>(2)? as u64,
                    etag: r.get(3)?,
                    last_success: r.get(4)?,
                    last_error: r.get(5)?,
                    last_error_at: r.get(6)?,
                },
                entries: r.get::<_, i64>(7)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remember a failed poll; the version and entries stay as they were.
    pub fn record_error(
        &self,
        feed: &str,
        url: &str,
        msg: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        lock(&self.conn).execute(
            "INSERT INTO feed_state (feed, url, version, last_error, last_error_at)
             VALUES (?1, ?2, 0, ?3, ?4)
             ON CONFLICT(feed) DO UPDATE SET last_error = ?3, last_error_at = ?4",
            params![feed, url, msg, now],
        )?;
        Ok(())
    }

    /// Remember a poll answered "not modified".
    pub fn record_unchanged(&self, feed: &str, now: i64) -> Result<(), StoreError> {
        lock(&self.conn).execute(
            "UPDATE feed_state SET last_success = ?2 WHERE feed = ?1",
            params![feed, now],
        )?;
        Ok(())
    }

    /// Persist an update of `feed` and the version it reaches, in one transaction.
    pub fn apply(&self, feed: &str, u: &FeedUpdate<'_>, now: i64) -> Result<(), StoreError> {
        let mut db = lock(&self.conn);
        let tx = db.transaction()?;
        if u.full {
            tx.execute("DELETE FROM feed_entries WHERE feed = ?1", params![feed])?;
        }
        {
            // Removals first, as in memory: a pattern both removed and put ends up put.
            let mut del =
                tx.prepare_cached("DELETE FROM feed_entries WHERE feed = ?1 AND pattern = ?2")?;
            for t in u.removed {
                del.execute(params![feed, t.pattern])?;
            }
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO feed_entries (feed, pattern, action, category,
                 reason, source, first_seen, last_seen, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in u.entries {
                put.execute(params![
                    feed,
                    e.pattern,
                    e.action,
                    e.category,
                    e.reason,
                    e.source,
                    e.first_seen,
                    e.last_seen,
                    e.expires
                ])?;
            }
        }
        tx.execute(
            "INSERT INTO feed_state (feed, url, version, etag, last_success, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)
             ON CONFLICT(feed) DO UPDATE SET url = ?2, version = ?3, etag = ?4,
             last_success = ?5, last_error = NULL, last_error_at = NULL",
            params![feed, u.url, u.version as i64, u.etag, now],
        )?;
        tx.commit()?;
        Ok(())
    }
}
