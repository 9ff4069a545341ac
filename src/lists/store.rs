//! The durable store of operator-managed list entries and the audit trail of every change.
//!
//! One SQLite file in the configured data directory, in WAL mode with `synchronous=FULL`, so a
//! call into this module that returns `Ok` has reached the disk: a `kill -9` right after loses
//! nothing acknowledged. Each write (one entry, a batch, a whole import, an expiry sweep) is one
//! transaction, so an interrupted import leaves no trace. Opening runs `PRAGMA quick_check` and
//! refuses a damaged or foreign file with a clear error instead of acting as an empty blocklist.
//!
//! The same file holds callers' reports (the `reports` table, see
//! [`report_rows`](self::report_rows)): each is durable before it counts, and the table is
//! bounded by a row cap and the report window.
//!
//! Disputes of wrongly blocked callers are here too (see [`disputes`](self::disputes)), opened
//! by the redress form and resolved by operators.
//!
//! The SQL of signed feeds is here too (see [`feeds`](self::feeds)): the publisher's reads of
//! this file, and the subscriber's own `feeds.db`.
//!
//! Every write counts itself when SQLite fails it (`scamguard_store_errors_total`): a full or
//! failing disk shows on a dashboard and in an alert, not only in the log.
//!
//! Entries here are plain validated strings; this module knows nothing of how patterns are
//! compiled or matched, nor of HTTP, files of lists or the hot path. Every call blocks: async
//! callers run it on a blocking thread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::EntryAction;

mod disputes;
mod feeds;
mod fleet_rows;
mod report_rows;
pub use disputes::{Dispute, DisputeLimits, DisputeStatus, NewDispute};
pub use feeds::{
    FeedEntry, FeedRead, FeedReader, FeedState, FeedUpdate, FeedsDb, SavedFeed, Tombstone, FEEDS_DB,
};
pub use report_rows::{ReportGroup, StoredReport};

/// The `[store]` config section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory holding `scamguard.db` (created if missing).
    pub data_dir: PathBuf,
    /// Seconds between sweeps that delete expired entries (each removal is audited).
    pub sweep_interval_secs: u64,
    /// Most entries the store holds over all lists; writes past it are refused.
    pub max_entries: u64,
    /// Most audit records kept; the oldest are trimmed at each sweep.
    pub max_audit_records: u64,
    /// Most callers' reports kept; past it the oldest are deleted as new ones arrive.
    pub max_reports: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("data"),
            sweep_interval_secs: 60,
            max_entries: 20_000_000,
            max_audit_records: 1_000_000,
            max_reports: 1_000_000,
        }
    }
}

impl StoreConfig {
    /// Every problem with this section.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            p.push("store.data_dir is empty; expected a directory for scamguard.db".to_string());
        }
        for (k, v) in [
            ("sweep_interval_secs", self.sweep_interval_secs),
            ("max_entries", self.max_entries),
            ("max_audit_records", self.max_audit_records),
            ("max_reports", self.max_reports),
        ] {
            if v == 0 {
                p.push(format!("store.{k} is 0; expected a positive number"));
            }
        }
        p
    }
}

/// The database file name inside `data_dir`.
pub const DB_FILE: &str = "scamguard.db";

/// Schema version written to `PRAGMA user_version`; a newer file is refused, not guessed at.
/// 2 added the `reports` table; every statement of [`SCHEMA`] is idempotent, so a version-1
/// file is brought up to date by running it again.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    list     TEXT NOT NULL,
    pattern  TEXT NOT NULL,
    action   TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    reason   TEXT NOT NULL DEFAULT '',
    source   TEXT NOT NULL DEFAULT '',
    expires  INTEGER,
    created  INTEGER NOT NULL,
    updated  INTEGER NOT NULL,
    PRIMARY KEY (list, pattern)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    who     TEXT NOT NULL,
    what    TEXT NOT NULL,
    list    TEXT NOT NULL,
    pattern TEXT,
    before  TEXT,
    after   TEXT,
    source  TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE TABLE IF NOT EXISTS reports (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    caller   TEXT NOT NULL,
    callee   TEXT,
    category TEXT NOT NULL,
    reporter TEXT NOT NULL,
    source   TEXT NOT NULL,
    who      TEXT NOT NULL,
    received INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_at ON reports(at);
CREATE INDEX IF NOT EXISTS reports_caller ON reports(caller, at);
";

/// Why a store operation failed. `Corrupt` and `Open` mean the agent must not start.
#[derive(Debug)]
pub enum StoreError {
    /// The data directory or file cannot be opened or created.
    Open(String),
    /// The file exists but is not a healthy scamguard store.
    Corrupt(String),
    /// The request itself is wrong (bad list name, empty pattern, ...): the operator's error.
    Invalid(String),
    /// A cap would be exceeded.
    Full(String),
    /// SQLite failed while serving a request (disk full, I/O error).
    Db(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open(m) => write!(f, "cannot open the store: {m}"),
            StoreError::Corrupt(m) => write!(f, "the store is damaged, refusing to use it: {m}"),
            StoreError::Invalid(m) => write!(f, "{m}"),
            StoreError::Full(m) => write!(f, "store full: {m}"),
            StoreError::Db(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The message without the kind's preamble, for callers that say themselves what failed
    /// (the feeds, whose messages name their own file rather than "the store").
    pub fn detail(self) -> String {
        match self {
            StoreError::Open(m)
            | StoreError::Corrupt(m)
            | StoreError::Invalid(m)
            | StoreError::Full(m)
            | StoreError::Db(m) => m,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// One entry as the store keeps it. The pattern is kept as the operator wrote it (trimmed);
/// the caller has already checked that it parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub list: String,
    pub pattern: String,
    #[serde(deserialize_with = "de_action")]
    pub action: EntryAction,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub source: String,
    /// Unix seconds after which the entry stops matching.
    #[serde(default)]
    pub expires: Option<i64>,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub updated: i64,
}

/// One audit record: who changed what, when, from where, with the entry before and after. A
/// refused request is recorded too, as `what` = `refused` with an empty `list` (no list name
/// is empty, so a feed's changes never see it) and what was asked in `after`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub who: String,
    pub what: String,
    pub list: String,
    pub pattern: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The address a request came from (`ip:port`); none for the CLI and the agent's own work.
    pub source: Option<String>,
}

/// Who makes a change, for the audit trail: a name (an API token's, an operator's, `expiry`)
/// and, for a request from the network, the address it came from. A bare name converts into
/// one without an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    pub name: &'a str,
    pub source: Option<&'a str>,
}

impl<'a> From<&'a str> for Who<'a> {
    fn from(name: &'a str) -> Who<'a> {
        Who { name, source: None }
    }
}

impl<'a> From<&'a String> for Who<'a> {
    fn from(name: &'a String) -> Who<'a> {
        Who::from(name.as_str())
    }
}

/// What one entry write did, for the live overlay and the HTTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(StoredEntry),
    Updated {
        before: StoredEntry,
        after: StoredEntry,
    },
    Removed(StoredEntry),
}

/// Summary of a finished import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub list: String,
    /// Entries written (added or replaced).
    pub written: u64,
    /// Entries of the list deleted first because `replace` was asked.
    pub replaced: u64,
}

/// How entries are listed: by pattern order, starting after `cursor`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery<'a> {
    pub prefix: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub limit: usize,
}

/// The durable store. Writes are serialised on one connection; reads use a second one so a
/// long import never blocks a listing (WAL lets readers proceed during a write).
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    total: AtomicI64,
    /// `PRAGMA data_version` of the writer when last looked at: it moves only when another
    /// connection (a CLI in another process) commits.
    seen_version: AtomicI64,
    max_entries: u64,
    max_audit: u64,
    max_reports: u64,
    /// Writes SQLite failed (disk full, I/O error, a lock held past the busy timeout): each is
    /// an edit, report, dispute, audit record or sweep that did not happen. Refusals of the
    /// request itself (`Invalid`, `Full`) are the caller's answer, not the store's failure, and
    /// are not counted.
    errors: Counter,
}

impl Collect for Store {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            "scamguard_store_errors_total",
            "Store writes (entries, reports, disputes, audit records, sweeps) that SQLite failed",
            &[],
            self.errors.get(),
        );
        out.gauge(
            "scamguard_store_entries",
            "Entries in the store over all its lists",
            &[],
            self.total() as i64,
        );
    }
}

/// A list name: what operators type in URLs and file names, so keep it plain.
pub fn valid_list_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "bad list name {name:?}: expected 1-64 characters of A-Z a-z 0-9 - _ . (not starting with .)"
        )))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite half-written (the transaction rolls
    // back on drop), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The audit trail's `source` column (where a request came from) joined the schema after
/// version 2 files were written: add it to such a file, once. The column is nullable and every
/// statement names its columns, so builds before it read and write the file unchanged and the
/// schema version need not move (an older build would refuse a newer version).
fn add_audit_source(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'source'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE audit ADD COLUMN source TEXT")?;
    }
    Ok(())
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Store {
    /// Open (or create) the store in `cfg.data_dir`. Refuses a damaged file, a file that is
    /// not a SQLite database, or one written by a newer schema.
    pub fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", cfg.data_dir.display())))?;
        let path = cfg.data_dir.join(DB_FILE);
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt(format!("{}: {e}", path.display()));
        let writer = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        // The first statement that reads the file is where "file is not a database" shows.
        configure(&writer).map_err(corrupt)?;
        let check: Vec<String> = {
            let mut st = writer.prepare("PRAGMA quick_check").map_err(corrupt)?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(corrupt)?;
            rows.collect::<Result<_, _>>().map_err(corrupt)?
        };
        if check != ["ok"] {
            return Err(StoreError::Corrupt(format!(
                "{}: quick_check: {}",
                path.display(),
                check.join("; ")
            )));
        }
        let version: i64 = writer
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(corrupt)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "{}: schema version {version} is newer than this scamguard understands ({SCHEMA_VERSION})",
                path.display()
            )));
        }
        // Only a new file is written to here: opening an existing store must not look like a
        // change to other processes watching it.
        if version < SCHEMA_VERSION {
            writer.execute_batch(SCHEMA).map_err(corrupt)?;
            writer
                .pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(corrupt)?;
        }
        add_audit_source(&writer).map_err(corrupt)?;
        disputes::add_disputes(&writer).map_err(corrupt)?;
        let total: i64 = writer
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .map_err(corrupt)?;
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        configure(&reader).map_err(corrupt)?;
        let seen: i64 = writer
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(corrupt)?;
        Ok(Store {
            seen_version: AtomicI64::new(seen),
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            total: AtomicI64::new(total),
            max_entries: cfg.max_entries,
            max_audit: cfg.max_audit_records,
            max_reports: cfg.max_reports,
            errors: Counter::default(),
        })
    }

    /// Run one write, counting it when SQLite failed it.
    fn counted<T>(&self, write: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let r = write();
        if matches!(r, Err(StoreError::Db(_))) {
            self.errors.inc();
        }
        r
    }

    /// Writes that SQLite failed so far.
    pub fn errors(&self) -> u64 {
        self.errors.get()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Has another connection (another process) committed since the last call? Then the
    /// entry count is re-read and the caller should recompile its rules.
    pub fn changed_elsewhere(&self) -> Result<bool, StoreError> {
        let conn = lock(&self.writer);
        let v: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.seen_version.swap(v, Ordering::Relaxed) == v {
            return Ok(false);
        }
        let total: i64 = conn.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))?;
        self.total.store(total, Ordering::Relaxed);
        Ok(true)
    }

    /// Entries over all lists.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed).max(0) as u64
    }

    /// Add or replace entries of one list, all in one durable transaction, each audited.
    pub fn upsert<'w>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        entries: &[StoredEntry],
        now: i64,
    ) -> Result<Vec<Change>, StoreError> {
        self.counted(|| {
            let who = who.into();
            valid_list_name(list)?;
            for e in entries {
                check_entry(e)?;
            }
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let mut changes = Vec::with_capacity(entries.len());
            let mut added = 0i64;
            {
                let mut get = tx.prepare_cached(SELECT_ONE)?;
                let mut put = tx.prepare_cached(UPSERT)?;
                let mut audit = tx.prepare_cached(INSERT_AUDIT)?;
                for e in entries {
                    let before = get
                        .query_row(params![list, e.pattern.trim()], row_to_entry)
                        .optional()?;
                    let created = before.as_ref().map(|b| b.created).unwrap_or(now);
                    let after = StoredEntry {
                        list: list.to_string(),
                        pattern: e.pattern.trim().to_string(),
                        created,
                        updated: now,
                        ..e.clone()
                    };
                    put.execute(params![
                        after.list,
                        after.pattern,
                        after.action.as_str(),
                        after.category,
                        after.reason,
                        after.source,
                        after.expires,
                        after.created,
                        after.updated
                    ])?;
                    let what = if before.is_some() { "update" } else { "add" };
                    audit.execute(params![
                        now,
                        who.name,
                        what,
                        list,
                        after.pattern,
                        before.as_ref().map(to_json),
                        Some(to_json(&after)),
                        who.source
                    ])?;
                    changes.push(match before {
                        Some(before) => Change::Updated { before, after },
                        None => {
                            added += 1;
                            Change::Added(after)
                        }
                    });
                }
            }
            self.check_cap(added)?;
            tx.commit()?;
            self.total.fetch_add(added, Ordering::Relaxed);
            Ok(changes)
        })
    }

    fn check_cap(&self, adding: i64) -> Result<(), StoreError> {
        let after = self.total.load(Ordering::Relaxed) + adding;
        if after > self.max_entries as i64 {
            return Err(StoreError::Full(format!(
                "{after} entries would exceed max_entries = {}",
                self.max_entries
            )));
        }
        Ok(())
    }

    /// Remove one entry; `None` when it was not there (nothing is written then).
    pub fn remove<'w>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        pattern: &str,
        now: i64,
    ) -> Result<Option<StoredEntry>, StoreError> {
        self.counted(|| {
            let who = who.into();
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let before = tx
                .prepare_cached(SELECT_ONE)?
                .query_row(params![list, pattern.trim()], row_to_entry)
                .optional()?;
            if let Some(b) = &before {
                tx.execute(
                    "DELETE FROM entries WHERE list = ?1 AND pattern = ?2",
                    params![list, b.pattern],
                )?;
                tx.prepare_cached(INSERT_AUDIT)?.execute(params![
                    now,
                    who.name,
                    "remove",
                    list,
                    b.pattern,
                    Some(to_json(b)),
                    None::<String>,
                    who.source
                ])?;
                tx.commit()?;
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(before)
        })
    }

    /// Write a whole import as one transaction: either every entry is there afterwards or none.
    /// With `replace`, the list's previous entries are deleted in the same transaction. One
    /// audit record summarises the import (a per-entry record would double a million-row write).
    /// `progress` is called every 10,000 entries with the count so far.
    #[allow(clippy::too_many_arguments)]
    pub fn import<'w, I>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        entries: I,
        replace: bool,
        now: i64,
        detail: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<ImportSummary, StoreError>
    where
        I: IntoIterator<Item = StoredEntry>,
    {
        self.counted(|| {
            let who = who.into();
            valid_list_name(list)?;
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let replaced = if replace {
                tx.execute("DELETE FROM entries WHERE list = ?1", params![list])? as u64
            } else {
                0
            };
            let mut written = 0u64;
            {
                let mut put = tx.prepare_cached(UPSERT)?;
                for e in entries {
                    check_entry(&e)?;
                    put.execute(params![
                        list,
                        e.pattern.trim(),
                        e.action.as_str(),
                        e.category,
                        e.reason,
                        e.source,
                        e.expires,
                        now,
                        now
                    ])?;
                    written += 1;
                    if written % 10_000 == 0 {
                        progress(written);
                    }
                }
            }
            let total: i64 = tx.query_row("SELECT count(*) FROM entries", [], |r| r.get(0))?;
            if total as u64 > self.max_entries {
                return Err(StoreError::Full(format!(
                    "{total} entries would exceed max_entries = {}",
                    self.max_entries
                )));
            }
            let after = serde_json::json!({
                "written": written, "replaced": replaced, "replace": replace, "detail": detail,
            });
            tx.prepare_cached(INSERT_AUDIT)?.execute(params![
                now,
                who.name,
                "import",
                list,
                None::<String>,
                None::<String>,
                Some(after.to_string()),
                who.source
            ])?;
            tx.commit()?;
            self.total.store(total, Ordering::Relaxed);
            progress(written);
            Ok(ImportSummary {
                list: list.to_string(),
                written,
                replaced,
            })
        })
    }

    /// Delete every entry whose expiry has passed, auditing each removal as `expire`, and trim
    /// the audit trail to its cap. Returns the removed entries (for the live overlay).
    pub fn sweep_expired(&self, now: i64) -> Result<Vec<StoredEntry>, StoreError> {
        self.counted(|| {
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            let gone: Vec<StoredEntry> = {
                let mut st = tx.prepare_cached(
                "SELECT list, pattern, action, category, reason, source, expires, created, updated
                 FROM entries WHERE expires IS NOT NULL AND expires <= ?1",
            )?;
                let rows = st.query_map(params![now], row_to_entry)?;
                rows.collect::<Result<_, _>>()?
            };
            {
                let mut del =
                    tx.prepare_cached("DELETE FROM entries WHERE list = ?1 AND pattern = ?2")?;
                let mut audit = tx.prepare_cached(INSERT_AUDIT)?;
                for e in &gone {
                    del.execute(params![e.list, e.pattern])?;
                    audit.execute(params![
                        now,
                        "expiry",
                        "expire",
                        e.list,
                        e.pattern,
                        Some(to_json(e)),
                        None::<String>,
                        None::<String>
                    ])?;
                }
            }
            tx.execute(
                "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?1",
                params![self.max_audit as i64],
            )?;
            tx.commit()?;
            self.total.fetch_sub(gone.len() as i64, Ordering::Relaxed);
            Ok(gone)
        })
    }

    /// One page of a list in pattern order; the cursor is the last pattern of the previous page.
    pub fn page(&self, list: &str, q: &PageQuery<'_>) -> Result<Vec<StoredEntry>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(
            "SELECT list, pattern, action, category, reason, source, expires, created, updated
             FROM entries WHERE list = ?1 AND pattern > ?2 AND pattern >= ?3 AND pattern < ?5
             AND substr(pattern, 1, length(?3)) = ?3
             ORDER BY pattern LIMIT ?4",
        )?;
        let prefix = q.prefix.unwrap_or("");
        // Every text starting with `prefix` sorts below `prefix` followed by the highest char:
        // the range keeps the scan on the primary key inside the prefix.
        let upper = format!("{prefix}\u{10ffff}");
        let rows = st.query_map(
            params![list, q.cursor.unwrap_or(""), prefix, q.limit as i64, upper],
            row_to_entry,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One entry, if present.
    pub fn get(&self, list: &str, pattern: &str) -> Result<Option<StoredEntry>, StoreError> {
        let conn = lock(&self.reader);
        let e = conn
            .prepare_cached(SELECT_ONE)?
            .query_row(params![list, pattern.trim()], row_to_entry)
            .optional()?;
        Ok(e)
    }

    /// Each list with its entry count, by name.
    pub fn lists(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = lock(&self.reader);
        let mut st =
            conn.prepare_cached("SELECT list, count(*) FROM entries GROUP BY list ORDER BY list")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Visit every entry (of one list, or all) in a consistent read, for exports and for
    /// building a snapshot. Stops early when `f` returns `false`.
    pub fn for_each(
        &self,
        list: Option<&str>,
        mut f: impl FnMut(StoredEntry) -> bool,
    ) -> Result<(), StoreError> {
        let conn = lock(&self.reader);
        let sql =
            "SELECT list, pattern, action, category, reason, source, expires, created, updated
                   FROM entries WHERE (?1 IS NULL OR list = ?1) ORDER BY list, pattern";
        let mut st = conn.prepare(sql)?;
        let mut rows = st.query(params![list])?;
        while let Some(r) = rows.next()? {
            if !f(row_to_entry(r)?) {
                break;
            }
        }
        Ok(())
    }

    /// Audit records with `at >= since`, oldest first, at most `limit`.
    pub fn audit(&self, since: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_of(since, limit, None)
    }

    /// The newest `limit` records of one kind (see [`Store::audit_of`]), newest first: what an
    /// operator reads first.
    pub fn audit_newest(
        &self,
        limit: usize,
        refused: Option<bool>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(
            "SELECT id, at, who, what, list, pattern, before, after, source FROM audit
             WHERE (?2 IS NULL OR (what = 'refused') = ?2) ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit as i64, refused], audit_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Like [`Store::audit`], of one kind only: `Some(false)` the changes, `Some(true)` the
    /// refused requests, `None` both.
    pub fn audit_of(
        &self,
        since: i64,
        limit: usize,
        refused: Option<bool>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = lock(&self.reader);
        let mut st = conn.prepare_cached(
            "SELECT id, at, who, what, list, pattern, before, after, source FROM audit
             WHERE at >= ?1 AND (?3 IS NULL OR (what = 'refused') = ?3) ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![since, limit as i64, refused], audit_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record refused requests (a wrong token, a role too low, an address refused for too many
    /// of those), in one durable transaction: `what` = `refused`, an empty list, and `detail`
    /// (what was asked, why it was refused) as `after`. The caller bounds how many it writes.
    pub fn audit_refused(
        &self,
        refused: &[(i64, Who<'_>, serde_json::Value)],
    ) -> Result<(), StoreError> {
        if refused.is_empty() {
            return Ok(());
        }
        self.counted(|| {
            let mut conn = lock(&self.writer);
            let tx = conn.transaction()?;
            {
                let mut audit = tx.prepare_cached(INSERT_AUDIT)?;
                for (at, who, detail) in refused {
                    audit.execute(params![
                        at,
                        who.name,
                        "refused",
                        "",
                        None::<String>,
                        None::<String>,
                        Some(detail.to_string()),
                        who.source
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}

const SELECT_ONE: &str =
    "SELECT list, pattern, action, category, reason, source, expires, created, updated
     FROM entries WHERE list = ?1 AND pattern = ?2";

const UPSERT: &str = "INSERT INTO entries
    (list, pattern, action, category, reason, source, expires, created, updated)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT(list, pattern) DO UPDATE SET action = excluded.action,
        category = excluded.category, reason = excluded.reason, source = excluded.source,
        expires = excluded.expires, updated = excluded.updated";

/// One audit row, selected as `id, at, who, what, list, pattern, before, after, source`.
fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(AuditRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        who: r.get(2)?,
        what: r.get(3)?,
        list: r.get(4)?,
        pattern: r.get(5)?,
        before: json(r.get(6)?),
        after: json(r.get(7)?),
        source: r.get(8)?,
    })
}

const INSERT_AUDIT: &str = "INSERT INTO audit (at, who, what, list, pattern, before, after, source)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Caps on free-text fields so one request cannot bloat every snapshot.
const MAX_FIELD: usize = 512;

fn check_entry(e: &StoredEntry) -> Result<(), StoreError> {
    let p = e.pattern.trim();
    if p.is_empty() {
        return Err(StoreError::Invalid("empty pattern".into()));
    }
    for (name, v) in [
        ("pattern", p),
        ("category", e.category.as_str()),
        ("reason", e.reason.as_str()),
        ("source", e.source.as_str()),
    ] {
        if v.len() > MAX_FIELD {
            return Err(StoreError::Invalid(format!(
                "{name} longer than {MAX_FIELD} bytes"
            )));
        }
        // Whatever the caller checked, nothing stored may carry a control character into a
        // log, an export or a SIP header.
        crate::screening::entry::check_text(name, v).map_err(StoreError::Invalid)?;
    }
    Ok(())
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    let action: String = r.get(2)?;
    let action = EntryAction::parse(&action).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown action {action:?}").into(),
        )
    })?;
    Ok(StoredEntry {
        list: r.get(0)?,
        pattern: r.get(1)?,
        action,
        category: r.get(3)?,
        reason: r.get(4)?,
        source: r.get(5)?,
        expires: r.get(6)?,
        created: r.get(7)?,
        updated: r.get(8)?,
    })
}

/// `EntryAction` is serialise-only in `screening`; read it through its own parser.
fn de_action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EntryAction, D::Error> {
    let s = String::deserialize(d)?;
    EntryAction::parse(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown action {s:?}: expected allow, warn or block"
        ))
    })
}

fn to_json(e: &StoredEntry) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> StoreConfig {
        StoreConfig {
            data_dir: dir.to_path_buf(),
            ..StoreConfig::default()
        }
    }

    fn entry(p: &str, a: EntryAction) -> StoredEntry {
        StoredEntry {
            list: String::new(),
            pattern: p.into(),
            action: a,
            category: "test".into(),
            reason: "r".into(),
            source: "api".into(),
            expires: None,
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn writes_sqlite_fails_are_counted_and_refusals_are_not() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&cfg(d.path())).unwrap();
        // Another connection makes every new entry fail inside SQLite, as a full disk would.
        Connection::open(d.path().join(DB_FILE))
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER no_room BEFORE INSERT ON entries \
                 BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END",
            )
            .unwrap();
        let e = entry("+12025550143", EntryAction::Block);
        let r = s.upsert("alice", "main", std::slice::from_ref(&e), 10);
        assert!(
            matches!(r, Err(StoreError::Db(ref m)) if m.contains("disk is full")),
            "{r:?}"
        );
        assert_eq!(s.errors(), 1);
        // The operator's own mistake is an answer, not a failure of the store.
        let r = s.upsert("alice", "bad name", std::slice::from_ref(&e), 10);
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        assert_eq!(s.errors(), 1);
        let text = crate::metrics::render(&[&s]);
        assert!(
            text.contains("scamguard_store_errors_total 1\n")
                && text.contains("scamguard_store_entries 0\n"),
            "{text}"
        );
        assert_eq!(crate::metrics::problems(&text), Vec::<String>::new());
    }

    #[test]
    fn writes_survive_reopen_and_are_audited() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = Store::open(&cfg(d.path())).unwrap();
            let ch = s
                .upsert(
                    "alice",
                    "main",
                    &[entry("+12025550143", EntryAction::Block)],
                    10,
                )
                .unwrap();
            assert!(matches!(&ch[0], Change::Added(e) if e.list == "main" && e.created == 10));
            let ch = s
                .upsert(
                    "bob",
                    "main",
                    &[entry("+12025550143", EntryAction::Warn)],
                    20,
                )
                .unwrap();
            assert!(
                matches!(&ch[0], Change::Updated { before, after } if before.action == EntryAction::Block && after.action == EntryAction::Warn && after.created == 10)
            );
        }
        let s = Store::open(&cfg(d.path())).unwrap();
        assert_eq!(s.total(), 1);
        let e = s.get("main", "+12025550143").unwrap().unwrap();
        assert_eq!((e.action, e.updated), (EntryAction::Warn, 20));
        let a = s.audit(0, 10).unwrap();
        let got: Vec<_> = a
            .iter()
            .map(|r| (r.who.as_str(), r.what.as_str()))
            .collect();
        assert_eq!(got, [("alice", "add"), ("bob", "update")]);
        assert_eq!(a[1].before.as_ref().unwrap()["action"], "block");
        assert_eq!(
            s.remove("carol", "main", "+12025550143", 30)
                .unwrap()
                .unwrap()
                .pattern,
            "+12025550143"
        );
        assert!(s
            .remove("carol", "main", "+12025550143", 31)
            .unwrap()
            .is_none());
        assert_eq!(s.total(), 0);
        assert_eq!(s.audit(30, 10).unwrap().len(), 1);
    }

    #[test]
    fn sees_commits_of_other_processes() {
        let d = tempfile::tempdir().unwrap();
        let a = Store::open(&cfg(d.path())).unwrap();
        let b = Store::open(&cfg(d.path())).unwrap();
        assert!(!a.changed_elsewhere().unwrap());
        a.upsert("op", "x", &[entry("+15550001", EntryAction::Block)], 1)
            .unwrap();
        assert!(!a.changed_elsewhere().unwrap(), "own writes are not news");
        b.upsert("op", "x", &[entry("+15550002", EntryAction::Block)], 1)
            .unwrap();
        assert!(a.changed_elsewhere().unwrap());
        assert_eq!(a.total(), 2);
        assert!(!a.changed_elsewhere().unwrap());
    }

    #[test]
    fn failed_import_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&cfg(d.path())).unwrap();
        let mut items: Vec<_> = (0..100)
            .map(|i| entry(&format!("+1202555{i:04}"), EntryAction::Block))
            .collect();
        items.push(entry("  ", EntryAction::Block));
        let r = s.import("op", "bulk", items, false, 1, "", |_| {});
        assert!(matches!(r, Err(StoreError::Invalid(_))));
        assert_eq!(s.total(), 0);
        assert!(s.lists().unwrap().is_empty());
        assert!(s.audit(0, 10).unwrap().is_empty());
    }

    #[test]
    fn import_replace_and_paging() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&cfg(d.path())).unwrap();
        let a: Vec<_> = (0..25)
            .map(|i| entry(&format!("+4420{i:04}"), EntryAction::Block))
            .collect();
        let sum = s.import("op", "uk", a, false, 1, "plain", |_| {}).unwrap();
        assert_eq!((sum.written, sum.replaced), (25, 0));
        let b: Vec<_> = (0..5)
            .map(|i| entry(&format!("+4421{i:04}"), EntryAction::Warn))
            .collect();
        let sum = s.import("op", "uk", b, true, 2, "plain", |_| {}).unwrap();
        assert_eq!((sum.written, sum.replaced), (5, 25));
        assert_eq!(s.lists().unwrap(), [("uk".to_string(), 5)]);
        let p1 = s
            .page(
                "uk",
                &PageQuery {
                    prefix: Some("+4421"),
                    cursor: None,
                    limit: 3,
                },
            )
            .unwrap();
        assert_eq!(p1.len(), 3);
        let p2 = s
            .page(
                "uk",
                &PageQuery {
                    prefix: Some("+4421"),
                    cursor: Some(&p1[2].pattern),
                    limit: 3,
                },
            )
            .unwrap();
        assert_eq!(
            p2.iter().map(|e| e.pattern.as_str()).collect::<Vec<_>>(),
            ["+44210003", "+44210004"]
        );
    }

    #[test]
    fn sweep_removes_expired_with_audit() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&cfg(d.path())).unwrap();
        let mut e = entry("+15550001", EntryAction::Block);
        e.expires = Some(100);
        let keep = entry("+15550002", EntryAction::Block);
        s.upsert("op", "t", &[e, keep], 1).unwrap();
        assert!(s.sweep_expired(99).unwrap().is_empty());
        let gone = s.sweep_expired(100).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(s.total(), 1);
        let last = s.audit(100, 10).unwrap();
        assert_eq!(
            (last[0].who.as_str(), last[0].what.as_str()),
            ("expiry", "expire")
        );
    }

    #[test]
    fn refuses_garbage_and_caps() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(DB_FILE), vec![b'x'; 8192]).unwrap();
        match Store::open(&cfg(d.path())) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("scamguard.db"), "{m}"),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("opened garbage"),
        }
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&StoreConfig {
            max_entries: 2,
            ..cfg(d.path())
        })
        .unwrap();
        let three: Vec<_> = (0..3)
            .map(|i| entry(&format!("+1{i}"), EntryAction::Block))
            .collect();
        assert!(matches!(
            s.upsert("op", "x", &three, 1),
            Err(StoreError::Full(_))
        ));
        assert!(matches!(
            s.import("op", "x", three, false, 1, "", |_| {}),
            Err(StoreError::Full(_))
        ));
        assert_eq!(s.total(), 0);
        assert!(matches!(
            s.upsert("op", "../x", &[], 1),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn refuses_damaged_pages() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = Store::open(&cfg(d.path())).unwrap();
            let many: Vec<_> = (0..5000)
                .map(|i| entry(&format!("+1555{i:07}"), EntryAction::Block))
                .collect();
            s.import("op", "x", many, false, 1, "", |_| {}).unwrap();
            let c = lock(&s.writer);
            c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        }
        // Overwrite a page in the middle of the file with noise (not the header page).
        let p = d.path().join(DB_FILE);
        let mut bytes = std::fs::read(&p).unwrap();
        assert!(bytes.len() > 8 * 4096);
        for b in &mut bytes[4 * 4096..6 * 4096] {
            *b = 0xA5;
        }
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(
            Store::open(&cfg(d.path())),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn changes_and_refusals_are_audited_with_their_address() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&cfg(d.path())).unwrap();
        let api = Who {
            name: "bot",
            source: Some("192.0.2.7:40000"),
        };
        s.upsert(
            api,
            "main",
            &[entry("+12025550143", EntryAction::Block)],
            10,
        )
        .unwrap();
        s.remove("cli:op", "main", "+12025550143", 11).unwrap();
        let refused = serde_json::json!({"method": "GET", "path": "/v1/lists", "status": 401});
        let nobody = Who {
            name: "",
            source: Some("198.51.100.9:1234"),
        };
        s.audit_refused(&[(12, nobody, refused.clone())]).unwrap();
        let a = s.audit(0, 10).unwrap();
        let got: Vec<_> = a
            .iter()
            .map(|r| {
                (
                    r.who.as_str(),
                    r.what.as_str(),
                    r.list.as_str(),
                    r.source.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("bot", "add", "main", Some("192.0.2.7:40000")),
                ("cli:op", "remove", "main", None),
                ("", "refused", "", Some("198.51.100.9:1234")),
            ]
        );
        assert_eq!(a[2].after.as_ref(), Some(&refused));
        assert_eq!(a[2].pattern, None);
        let whats = |refused| -> Vec<String> {
            let v = s.audit_of(0, 10, refused).unwrap();
            v.into_iter().map(|r| r.what).collect()
        };
        assert_eq!(whats(Some(false)), ["add", "remove"]);
        assert_eq!(whats(Some(true)), ["refused"]);
        assert_eq!(whats(None).len(), 3);
    }

    #[test]
    fn an_audit_trail_from_before_sources_gains_the_column_and_keeps_its_records() {
        let d = tempfile::tempdir().unwrap();
        {
            // A version 2 file as earlier builds wrote it: no `source` in the audit trail.
            let c = Connection::open(d.path().join(DB_FILE)).unwrap();
            c.execute_batch(&SCHEMA.replace(",\n    source  TEXT\n", "\n"))
                .unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION)
                .unwrap();
            c.execute(
                "INSERT INTO audit (at, who, what, list, pattern) VALUES (1, 'old', 'add', 'l', 'p')",
                [],
            )
            .unwrap();
            let cols: i64 = c
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'source'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(cols, 0, "the old schema has no source column");
        }
        let s = Store::open(&cfg(d.path())).unwrap();
        s.upsert("new", "l", &[entry("+12025550143", EntryAction::Block)], 2)
            .unwrap();
        let a = s.audit(0, 10).unwrap();
        assert_eq!(
            a.iter()
                .map(|r| (r.who.as_str(), r.source.as_deref()))
                .collect::<Vec<_>>(),
            [("old", None), ("new", None)]
        );
        drop(s);
        // Opening it again changes nothing more.
        Store::open(&cfg(d.path())).unwrap();
    }

    #[test]
    fn control_characters_are_never_stored() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&cfg(d.path())).unwrap();
        for (field, set) in [
            (
                "reason",
                (|e: &mut StoredEntry| e.reason = "a\0b".into()) as fn(&mut StoredEntry),
            ),
            ("source", |e| e.source = "x\r\ny".into()),
            ("category", |e| e.category = "sc\u{7f}am".into()),
        ] {
            let mut e = entry("+12025550143", EntryAction::Block);
            set(&mut e);
            let r = s.upsert("op", "main", std::slice::from_ref(&e), 1);
            assert!(
                matches!(&r, Err(StoreError::Invalid(m)) if m.starts_with(&format!("{field} holds a control character"))),
                "{field}: {r:?}"
            );
            let r = s.import("op", "main", vec![e], false, 1, "", |_| {});
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{field}: {r:?}");
        }
        assert_eq!(s.total(), 0);
        assert!(s.audit(0, 10).unwrap().is_empty());
    }
}
