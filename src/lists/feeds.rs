//! Shared blocklists between organisations: signed, versioned feeds.
//!
//! A publisher serves one store list as a feed: a full snapshot, or the changes after a version
//! (tombstones for removals and expiries). The version is the store's audit sequence (SQLite
//! `AUTOINCREMENT`, so it never goes back, even after the audit trail is trimmed); the changes
//! after `V` are the audit records of the list with `id > V`, resolved against the entries table
//! in one read transaction. When those records cannot tell the whole story (an import, records
//! trimmed away, a version from the future) the answer is a full snapshot, marked `full`. Each
//! answer is signed with Ed25519 over `version || "\n" || body`.
//!
//! A subscriber polls each `[[feeds]]` source off the hot path (jitter, hard timeout), verifies
//! the signature, refuses a feed whole when it is forged, malformed or goes backwards, persists
//! the entries and the version it reached in `feeds.db` in one transaction, then swaps the feed's
//! compiled [`RuleIndex`] whole. [`FeedRules`] implements [`Rules`] over every trusted feed.
//!
//! Knows nothing of HTTP routing, tokens, SIP or what a verdict does with a match; the HTTP client
//! here only fetches bytes from a configured `http://` URL.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::metrics::{Collect, Counter, Exposition, Gauge};
use crate::screening::{
    EntryAction, EntryMeta, IndexBuilder, Match, Number, Pattern, RuleIndex, Rules,
};

use super::overlay::{FileLists, ListStatus};
pub use super::store::{FeedEntry, Tombstone, FEEDS_DB};
use super::store::{FeedReader, FeedState, FeedUpdate, FeedsDb, StoreError};

/// Header carrying the version an answer brings the subscriber to.
pub const VERSION_HEADER: &str = "x-feed-version";
/// Header carrying `base64(Ed25519(version || "\n" || body))`.
pub const SIGNATURE_HEADER: &str = "x-feed-signature";
/// Past this many audit records an increment is answered with a full snapshot instead.
const MAX_INCREMENT_RECORDS: usize = 1_000_000;
/// Caps on free-text fields, as the store has.
const MAX_FIELD: usize = 512;

// ---------------------------------------------------------------------------------------------
// Config

/// How far a subscriber trusts a partner's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Entries act as the partner wrote them (block blocks, warn warns).
    #[default]
    Block,
    /// Block entries only warn.
    BlockAsWarn,
    /// Entries are kept and shown but never decide a call.
    LogOnly,
}

/// One `[[feeds]]` subscription.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// Local list name the feed's entries appear under.
    pub name: String,
    /// `http://host:port/v1/feeds/NAME` of the publisher (https is not supported yet).
    pub url: String,
    /// The publisher's Ed25519 public key, base64 of 32 bytes.
    pub public_key: String,
    pub poll_interval_secs: u64,
    /// Bearer token sent to the publisher.
    pub token: Option<String>,
    pub trust: Trust,
    /// Hard limit on one whole poll (connect, request, body).
    pub timeout_secs: u64,
    pub max_body_bytes: usize,
    /// Most entries accepted from this feed.
    pub max_entries: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            name: String::new(),
            url: String::new(),
            public_key: String::new(),
            poll_interval_secs: 300,
            token: None,
            trust: Trust::Block,
            timeout_secs: 30,
            max_body_bytes: 512 << 20,
            max_entries: 5_000_000,
        }
    }
}

/// One feed this agent publishes.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PublishedFeed {
    /// Name in the URL: `GET /v1/feeds/{name}`.
    pub name: String,
    /// Store list served.
    pub list: String,
    /// Tokens that may read this feed only (besides any `read` API token).
    pub tokens: Vec<String>,
}

/// The `[publish]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Private key file written by `scamguard feeds keygen`.
    pub key_file: Option<PathBuf>,
    pub feeds: Vec<PublishedFeed>,
}

impl PublishConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.feeds.is_empty() && self.key_file.is_none() {
            p.push("publish.key_file is not set; expected the private key from `scamguard feeds keygen`".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.feeds {
            if super::store::valid_list_name(&f.name).is_err() || !seen.insert(&f.name) {
                p.push(format!(
                    "publish.feeds: bad or repeated feed name {:?}",
                    f.name
                ));
            }
            if super::store::valid_list_name(&f.list).is_err() {
                p.push(format!(
                    "publish.feeds {:?}: bad list name {:?}",
                    f.name, f.list
                ));
            }
        }
        p
    }
}

/// Every problem with the `[[feeds]]` sections.
pub fn validate_feeds(feeds: &[FeedConfig]) -> Vec<String> {
    let mut p = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in feeds {
        let at = format!("feeds {:?}", f.name);
        if super::store::valid_list_name(&f.name).is_err() || !seen.insert(&f.name) {
            p.push(format!(
                "{at}: bad or repeated name; expected 1-64 of A-Z a-z 0-9 - _ ."
            ));
        }
        if let Err(e) = HttpUrl::parse(&f.url) {
            p.push(format!("{at}: url: {e}"));
        }
        if let Err(e) = parse_public_key(&f.public_key) {
            p.push(format!("{at}: public_key: {e}"));
        }
        if f.poll_interval_secs == 0 || f.timeout_secs == 0 || f.max_body_bytes == 0 {
            p.push(format!(
                "{at}: poll_interval_secs, timeout_secs and max_body_bytes must be > 0"
            ));
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures

/// Write a new key pair into `dir`: `feed.key` (base64 seed, mode 0600) and `feed.pub`.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    use std::io::{Read, Write};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let priv_path = dir.join("feed.key");
    let pub_path = dir.join("feed.pub");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&priv_path).map_err(|e| {
        format!(
            "{}: {e} (an existing key is never overwritten)",
            priv_path.display()
        )
    })?;
    writeln!(f, "{}", B64.encode(seed)).map_err(|e| format!("{}: {e}", priv_path.display()))?;
    f.sync_all()
        .map_err(|e| format!("{}: {e}", priv_path.display()))?;
    std::fs::write(
        &pub_path,
        format!("{}\n", B64.encode(key.verifying_key().as_bytes())),
    )
    .map_err(|e| format!("{}: {e}", pub_path.display()))?;
    Ok((priv_path, pub_path))
}

/// Read a private key file written by [`keygen`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw = B64.decode(text.trim()).map_err(|e| {
        format!(
            "{}:1: expected base64 of a 32-byte key: {e}",
            path.display()
        )
    })?;
    let seed: [u8; 32] = raw
        .try_into()
        .map_err(|_| format!("{}:1: expected base64 of exactly 32 bytes", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key as written in config: base64 of 32 bytes.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let raw = B64
        .decode(b64.trim())
        .map_err(|e| format!("expected base64 of a 32-byte Ed25519 key: {e}"))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| "expected base64 of exactly 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

fn signed_message(version: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 24);
    m.extend_from_slice(version.to_string().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m
}

/// `base64(Ed25519(version || "\n" || body))`.
pub fn sign(key: &SigningKey, version: u64, body: &[u8]) -> String {
    B64.encode(key.sign(&signed_message(version, body)).to_bytes())
}

/// Does `sig` (base64) sign `version || "\n" || body` under `key`?
pub fn verify(key: &VerifyingKey, version: u64, body: &[u8], sig: &str) -> bool {
    let Ok(raw) = B64.decode(sig.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else {
        return false;
    };
    key.verify(
        &signed_message(version, body),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

// ---------------------------------------------------------------------------------------------
// Wire format

/// The body of a feed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBody {
    pub feed: String,
    pub version: u64,
    /// A full snapshot replaces everything the subscriber has; otherwise an increment.
    pub full: bool,
    /// The version an increment applies on top of.
    pub since: Option<u64>,
    pub entries: Vec<FeedEntry>,
    #[serde(default)]
    pub removed: Vec<Tombstone>,
}

// ---------------------------------------------------------------------------------------------
// Publisher

/// A signed answer ready to send.
#[derive(Debug, Clone)]
pub struct Answer {
    pub version: u64,
    /// Strong ETag of the list's state (its last change).
    pub etag: String,
    /// `None` when the caller's `If-None-Match` already names this state.
    pub body: Option<Bytes>,
    pub signature: String,
}

/// Counters of the publisher.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub snapshots: Counter,
    pub increments: Counter,
    pub not_modified: Counter,
}

impl Collect for PublishStats {
    fn collect(&self, out: &mut Exposition) {
        let h = "Feed answers served by kind";
        for (k, c) in [
            ("snapshot", &self.snapshots),
            ("increment", &self.increments),
            ("not_modified", &self.not_modified),
        ] {
            out.counter("scamguard_feed_answers_total", h, &[("kind", k)], c.get());
        }
    }
}

/// Serves store lists as signed feeds, from its own read connection to the store file.
pub struct Publisher {
    store: FeedReader,
    key: SigningKey,
    feeds: Vec<PublishedFeed>,
    pub stats: PublishStats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    /// Open the publisher over the store file at `store_path` with the configured key.
    pub fn open(cfg: &PublishConfig, store_path: &Path) -> Result<Publisher, String> {
        let key_file = cfg
            .key_file
            .as_ref()
            .ok_or_else(|| "publish.key_file is not set".to_string())?;
        let key = load_signing_key(key_file)?;
        let store = FeedReader::open(store_path).map_err(StoreError::detail)?;
        Ok(Publisher {
            store,
            key,
            feeds: cfg.feeds.clone(),
            stats: PublishStats::default(),
        })
    }

    pub fn feed(&self, name: &str) -> Option<&PublishedFeed> {
        self.feeds.iter().find(|f| f.name == name)
    }

    /// Is `token` one of the feed's own tokens? (Compared in constant time per token.)
    pub fn feed_token_ok(&self, feed: &str, token: &str) -> bool {
        self.feed(feed).is_some_and(|f| {
            f.tokens.iter().fold(false, |ok, t| {
                ok | (t.len() == token.len()
                    && t.bytes()
                        .zip(token.bytes())
                        .fold(0u8, |a, (x, y)| a | (x ^ y))
                        == 0)
            })
        })
    }

    /// The answer for `feed`: a snapshot (no `since`) or the changes after `since`. Blocking.
    pub fn answer(
        &self,
        feed: &str,
        since: Option<u64>,
        if_none_match: Option<&str>,
        now: i64,
    ) -> Result<Option<Answer>, String> {
        let Some(f) = self.feed(feed) else {
            return Ok(None);
        };
        // One read transaction: the version and the entries are of the same instant.
        let read = self.store.read(|r| {
            let version = r.version()?;
            let etag = format!("\"{}-{}\"", f.list, r.last_change(&f.list)?);
            if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
                return Ok((version, etag, None));
            }
            let inc = match since {
                Some(v) if v <= version => {
                    r.changes_since(&f.list, v, now, MAX_INCREMENT_RECORDS)?
                }
                _ => None,
            };
            let body = match inc {
                Some((entries, removed)) => {
                    self.stats.increments.inc();
                    FeedBody {
                        feed: f.name.clone(),
                        version,
                        full: false,
                        since,
                        entries,
                        removed,
                    }
                }
                None => {
                    self.stats.snapshots.inc();
                    FeedBody {
                        feed: f.name.clone(),
                        version,
                        full: true,
                        since: None,
                        entries: r.live_entries(&f.list, now)?,
                        removed: vec![],
                    }
                }
            };
            Ok((version, etag, Some(body)))
        });
        let (version, etag, body) = read.map_err(StoreError::detail)?;
        let Some(body) = body else {
            self.stats.not_modified.inc();
            return Ok(Some(Answer {
                version,
                etag,
                body: None,
                signature: String::new(),
            }));
        };
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
        let signature = sign(&self.key, version, &body);
        Ok(Some(Answer {
            version,
            etag,
            body: Some(body),
            signature,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber: checking an answer

/// Why an answer was refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Signature,
    Backwards { have: u64, got: u64 },
    Malformed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Signature => f.write_str("signature does not verify"),
            Refusal::Backwards { have, got } => {
                write!(f, "version went backwards: have {have}, got {got}")
            }
            Refusal::Malformed(m) => write!(f, "malformed: {m}"),
        }
    }
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Refusal::Signature => "signature",
            Refusal::Backwards { .. } => "backwards",
            Refusal::Malformed(_) => "malformed",
        }
    }
}

/// A verified, validated answer, ready to apply.
#[derive(Debug)]
pub struct Checked {
    pub body: FeedBody,
}

/// Verify and validate an answer against the version the subscriber holds. Pure.
pub fn check_answer(
    key: &VerifyingKey,
    have: u64,
    version_header: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    max_entries: usize,
) -> Result<Checked, Refusal> {
    let version: u64 = version_header
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Refusal::Malformed(format!("missing or bad {VERSION_HEADER}")))?;
    let sig = signature.ok_or(Refusal::Signature)?;
    if !verify(key, version, body, sig) {
        return Err(Refusal::Signature);
    }
    let b: FeedBody =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(format!("body: {e}")))?;
    if b.version != version {
        return Err(Refusal::Malformed(format!(
            "body version {} differs from header {version}",
            b.version
        )));
    }
    if version < have {
        return Err(Refusal::Backwards { have, got: version });
    }
    if !b.full && b.since != Some(have) {
        return Err(Refusal::Malformed(format!(
            "increment since {:?} does not apply on version {have}",
            b.since
        )));
    }
    if b.entries.len() > max_entries {
        return Err(Refusal::Malformed(format!(
            "{} entries exceed max_entries = {max_entries}",
            b.entries.len()
        )));
    }
    for (i, e) in b.entries.iter().enumerate() {
        Pattern::parse(&e.pattern).map_err(|x| {
            Refusal::Malformed(format!("entry {i}: pattern {:?}: {}", e.pattern, x.0))
        })?;
        if EntryAction::parse(&e.action).is_none() {
            return Err(Refusal::Malformed(format!(
                "entry {i}: action {:?}; expected allow, warn or block",
                e.action
            )));
        }
        if [&e.pattern, &e.category, &e.reason, &e.source]
            .iter()
            .any(|s| s.len() > MAX_FIELD)
        {
            return Err(Refusal::Malformed(format!(
                "entry {i}: a field exceeds {MAX_FIELD} bytes"
            )));
        }
    }
    for (i, t) in b.removed.iter().enumerate() {
        if t.pattern.trim().is_empty() || t.pattern.len() > MAX_FIELD {
            return Err(Refusal::Malformed(format!("removal {i}: bad pattern")));
        }
    }
    Ok(Checked { body: b })
}

// ---------------------------------------------------------------------------------------------
// Subscriber: state, persistence, rules

/// What `scamguard feeds status` and `GET /v1/lists` show of a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedStatus {
    pub name: String,
    pub url: String,
    pub version: u64,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub entries: u64,
}

/// Counters of one subscribed feed.
#[derive(Debug, Default)]
pub struct FeedStats {
    pub polls: Counter,
    pub applied: Counter,
    pub not_modified: Counter,
    pub fetch_errors: Counter,
    pub refused_signature: Counter,
    pub refused_backwards: Counter,
    pub refused_malformed: Counter,
    pub version: Gauge,
    pub entries: Gauge,
}

struct Slot {
    cfg: FeedConfig,
    key: Option<VerifyingKey>,
    index: ArcSwap<RuleIndex>,
    /// The feed's entries by pattern: the source of each rebuild. Only the poller writes it.
    entries: Mutex<HashMap<String, FeedEntry>>,
    status: Mutex<FeedStatus>,
    etag: Mutex<Option<String>>,
    stats: FeedStats,
}

/// Every subscribed feed: the persisted state, the compiled rules, the pollers.
pub struct FeedRules {
    slots: Vec<Slot>,
    db: FeedsDb,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The persisted status of every feed in `data_dir` (for `scamguard feeds status`).
pub fn read_status(data_dir: &Path) -> Result<Vec<FeedStatus>, String> {
    let saved = FeedsDb::open(data_dir)
        .and_then(|db| db.saved())
        .map_err(StoreError::detail)?;
    Ok(saved
        .into_iter()
        .map(|f| FeedStatus {
            name: f.name,
            url: f.url,
            version: f.state.version,
            last_success: f.state.last_success,
            last_error: f.state.last_error,
            last_error_at: f.state.last_error_at,
            entries: f.entries,
        })
        .collect())
}

/// Compile a feed's entries as the trust mapping says. Partner allow entries are dropped: a
/// partner must not be able to exempt numbers from our own lists.
pub fn build_index<'a>(
    name: &str,
    trust: Trust,
    entries: impl IntoIterator<Item = &'a FeedEntry>,
) -> RuleIndex {
    let mut b = IndexBuilder::new();
    if trust == Trust::LogOnly {
        return b.build();
    }
    let list: Arc<str> = name.into();
    let source: Arc<str> = "feed".into();
    // Interned per (category, reason) so a million entries share a few metas' strings.
    let mut strings: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: &str| -> Arc<str> {
        if let Some(a) = strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        strings.insert(s.to_string(), a.clone());
        a
    };
    for e in entries {
        let (Ok(p), Some(action)) = (Pattern::parse(&e.pattern), EntryAction::parse(&e.action))
        else {
            continue;
        };
        let action = match (action, trust) {
            (EntryAction::Allow, _) => continue,
            (EntryAction::Block, Trust::BlockAsWarn) => EntryAction::Warn,
            (a, _) => a,
        };
        let meta = EntryMeta {
            list: list.clone(),
            action,
            category: intern(&e.category),
            reason: intern(&e.reason),
            source: source.clone(),
            expires: e.expires,
        };
        b.add_with_meta(&p, &meta);
    }
    b.build()
}

impl FeedRules {
    /// Load every configured feed's persisted entries and version from `data_dir/feeds.db`,
    /// compile them, and drop the state of feeds no longer configured.
    pub fn open(data_dir: &Path, feeds: &[FeedConfig]) -> Result<FeedRules, String> {
        let db = FeedsDb::open(data_dir).map_err(StoreError::detail)?;
        let names: Vec<&str> = feeds.iter().map(|f| f.name.as_str()).collect();
        db.keep_only(&names).map_err(StoreError::detail)?;
        let mut slots = Vec::new();
        for f in feeds {
            let mut map = HashMap::new();
            db.for_each_entry(&f.name, |e| {
                map.insert(e.pattern.clone(), e);
            })
            .map_err(StoreError::detail)?;
            let FeedState {
                version,
                etag,
                last_success,
                last_error,
                last_error_at,
            } = db
                .state(&f.name)
                .map_err(StoreError::detail)?
                .unwrap_or_default();
            let index = build_index(&f.name, f.trust, map.values());
            let stats = FeedStats::default();
            stats.version.set(version as i64);
            stats.entries.set(map.len() as i64);
            slots.push(Slot {
                key: parse_public_key(&f.public_key).ok(),
                index: ArcSwap::from_pointee(index),
                status: Mutex::new(FeedStatus {
                    name: f.name.clone(),
                    url: f.url.clone(),
                    version,
                    last_success,
                    last_error,
                    last_error_at,
                    entries: map.len() as u64,
                }),
                entries: Mutex::new(map),
                etag: Mutex::new(etag),
                cfg: f.clone(),
                stats,
            });
        }
        Ok(FeedRules { slots, db })
    }

    /// Each feed's status.
    pub fn status(&self) -> Vec<FeedStatus> {
        self.slots.iter().map(|s| lock(&s.status).clone()).collect()
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.cfg.name == name)
    }

    /// Record a failed poll: the last good state stays active.
    fn record_error(&self, s: &Slot, msg: String) {
        tracing::warn!(feed = %s.cfg.name, "feed refused or unreachable: {msg}");
        let now = now_unix();
        {
            let mut st = lock(&s.status);
            st.last_error = Some(msg.clone());
            st.last_error_at = Some(now);
        }
        let _ = self.db.record_error(&s.cfg.name, &s.cfg.url, &msg, now);
    }

    /// Apply a checked answer to feed `name`: persist entries and version in one transaction,
    /// then swap the compiled rules. Blocking (seconds for a million entries).
    pub fn apply(&self, name: &str, checked: Checked, etag: Option<String>) -> Result<(), String> {
        let s = self.slot(name).ok_or_else(|| format!("no feed {name}"))?;
        let b = checked.body;
        let now = now_unix();
        let mut map = lock(&s.entries);
        // The cap holds for the result, not only for one answer: increments add up.
        let after = if b.full {
            b.entries.len()
        } else {
            let added = b
                .entries
                .iter()
                .filter(|e| !map.contains_key(&e.pattern))
                .count();
            let gone = b
                .removed
                .iter()
                .filter(|t| map.contains_key(&t.pattern))
                .count();
            map.len() + added - gone.min(map.len() + added)
        };
        if after > s.cfg.max_entries {
            s.stats.refused_malformed.inc();
            return Err(format!(
                "refused (malformed): {after} entries would exceed max_entries = {}",
                s.cfg.max_entries
            ));
        }
        self.db
            .apply(
                name,
                &FeedUpdate {
                    url: &s.cfg.url,
                    version: b.version,
                    etag: etag.as_deref(),
                    full: b.full,
                    removed: &b.removed,
                    entries: &b.entries,
                },
                now,
            )
            .map_err(StoreError::detail)?;
        if b.full {
            map.clear();
        }
        for t in &b.removed {
            map.remove(&t.pattern);
        }
        for e in b.entries {
            map.insert(e.pattern.clone(), e);
        }
        s.index
            .store(Arc::new(build_index(name, s.cfg.trust, map.values())));
        *lock(&s.etag) = etag;
        let mut st = lock(&s.status);
        st.version = b.version;
        st.last_success = Some(now);
        st.last_error = None;
        st.last_error_at = None;
        st.entries = map.len() as u64;
        s.stats.version.set(b.version as i64);
        s.stats.entries.set(map.len() as i64);
        s.stats.applied.inc();
        Ok(())
    }

    /// Poll feed `name` once: fetch, verify, apply. Errors are recorded and returned.
    pub async fn poll_once(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let s = self.slot(name).ok_or_else(|| format!("no feed {name}"))?;
        s.stats.polls.inc();
        let have = lock(&s.status).version;
        let etag = lock(&s.etag).clone();
        let since = (have > 0).then_some(have);
        let fetched = tokio::time::timeout(
            Duration::from_secs(s.cfg.timeout_secs.max(1)),
            fetch(&s.cfg, since, etag.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", s.cfg.timeout_secs)));
        let resp = match fetched {
            Ok(r) => r,
            Err(e) => {
                s.stats.fetch_errors.inc();
                self.record_error(s, e.clone());
                return Err(e);
            }
        };
        if resp.status == 304 {
            s.stats.not_modified.inc();
            let now = now_unix();
            lock(&s.status).last_success = Some(now);
            let _ = self.db.record_unchanged(name, now);
            return Ok(());
        }
        if resp.status != 200 {
            let e = format!("publisher answered HTTP {}", resp.status);
            s.stats.fetch_errors.inc();
            self.record_error(s, e.clone());
            return Err(e);
        }
        let Some(key) = s.key else {
            let e = "public_key is not a valid Ed25519 key".to_string();
            self.record_error(s, e.clone());
            return Err(e);
        };
        let me = self.clone();
        let name2 = name.to_string();
        let max = s.cfg.max_entries;
        let r = tokio::task::spawn_blocking(move || {
            let s = me.slot(&name2).ok_or("feed vanished")?;
            match check_answer(
                &key,
                have,
                resp.version.as_deref(),
                resp.signature.as_deref(),
                &resp.body,
                max,
            ) {
                Ok(c) => me.apply(&name2, c, resp.etag),
                Err(r) => {
                    match r {
                        Refusal::Signature => s.stats.refused_signature.inc(),
                        Refusal::Backwards { .. } => s.stats.refused_backwards.inc(),
                        Refusal::Malformed(_) => s.stats.refused_malformed.inc(),
                    }
                    Err(format!("refused ({}): {r}", r.label()))
                }
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("apply task failed: {e}")));
        if let Err(e) = &r {
            self.record_error(s, e.clone());
        }
        r
    }

    /// Poll every feed until `stop` completes: each on its own interval with ±20 % jitter.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()> + Send) {
        let mut set = tokio::task::JoinSet::new();
        for s in &self.slots {
            let me = self.clone();
            let name = s.cfg.name.clone();
            let every = Duration::from_secs(s.cfg.poll_interval_secs.max(1));
            set.spawn(async move {
                // A first poll soon after start, spread so that many agents do not stampede.
                let mut wait = every
                    .mul_f64(fastrand::f64() * 0.2)
                    .min(Duration::from_secs(2));
                loop {
                    tokio::time::sleep(wait).await;
                    let _ = me.poll_once(&name).await;
                    wait = every.mul_f64(0.8 + fastrand::f64() * 0.4);
                }
            });
        }
        stop.await;
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

impl Rules for FeedRules {
    fn lookup(&self, n: Number, now: i64) -> Option<Match> {
        let mut best = None;
        for s in &self.slots {
            best = Match::best(best, s.index.load().lookup(n, now));
        }
        best
    }
}

impl Collect for FeedRules {
    fn collect(&self, out: &mut Exposition) {
        for s in &self.slots {
            let f = [("feed", s.cfg.name.as_str())];
            out.counter(
                "scamguard_feed_polls_total",
                "Feed polls",
                &f,
                s.stats.polls.get(),
            );
            out.counter(
                "scamguard_feed_applied_total",
                "Feed answers applied",
                &f,
                s.stats.applied.get(),
            );
            out.counter(
                "scamguard_feed_not_modified_total",
                "Feed polls answered 304",
                &f,
                s.stats.not_modified.get(),
            );
            out.counter(
                "scamguard_feed_fetch_errors_total",
                "Feed polls that got no usable answer",
                &f,
                s.stats.fetch_errors.get(),
            );
            for (why, c) in [
                ("signature", &s.stats.refused_signature),
                ("backwards", &s.stats.refused_backwards),
                ("malformed", &s.stats.refused_malformed),
            ] {
                out.counter(
                    "scamguard_feed_refused_total",
                    "Feed answers refused whole, by reason",
                    &[("feed", s.cfg.name.as_str()), ("reason", why)],
                    c.get(),
                );
            }
            out.gauge(
                "scamguard_feed_version",
                "Feed version applied",
                &f,
                s.stats.version.get(),
            );
            out.gauge(
                "scamguard_feed_entries",
                "Entries held from the feed",
                &f,
                s.stats.entries.get(),
            );
        }
    }
}

/// The file lists and the feeds together, as `GET /v1/lists` shows them.
pub struct WithFeeds {
    pub files: Arc<dyn FileLists>,
    pub feeds: Arc<FeedRules>,
}

impl FileLists for WithFeeds {
    fn reload(&self) -> Vec<String> {
        self.files.reload()
    }
    fn status(&self) -> Vec<ListStatus> {
        let mut v = self.files.status();
        v.extend(self.feeds.status().into_iter().map(|f| ListStatus {
            name: f.name,
            source: "feed".into(),
            entries: f.entries,
            error: f.last_error,
        }));
        v
    }
    fn ready(&self) -> bool {
        self.files.ready()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// An `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub authority: String,
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: expected http://host:port/... (https is not supported)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(HttpUrl {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

struct Fetched {
    status: u16,
    version: Option<String>,
    signature: Option<String>,
    etag: Option<String>,
    body: Bytes,
}

async fn fetch(
    cfg: &FeedConfig,
    since: Option<u64>,
    etag: Option<&str>,
) -> Result<Fetched, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let url = HttpUrl::parse(&cfg.url)?;
    let stream = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|e| format!("connect {}: {e}", url.authority))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let mut path = url.path.clone();
    if let Some(v) = since {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&format!("since={v}"));
    }
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, &url.authority);
    if let Some(t) = &cfg.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let (Some(e), Some(_)) = (etag, since) {
        req = req.header(hyper::header::IF_NONE_MATCH, e);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, version, signature, etag) = (
        resp.status().as_u16(),
        h(VERSION_HEADER),
        h(SIGNATURE_HEADER),
        h("etag"),
    );
    let body = Limited::new(resp.into_body(), cfg.max_body_bytes)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    conn_task.abort();
    Ok(Fetched {
        status,
        version,
        signature,
        etag,
        body,
    })
}

impl Collect for Publisher {
    fn collect(&self, out: &mut Exposition) {
        self.stats.collect(out);
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

/// `scamguard feeds ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FeedsCmd {
    /// Write a new Ed25519 key pair (feed.key, mode 0600, and feed.pub) into DIR.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Show each subscribed feed's version, last success, last error and entry count.
    Status {
        #[arg(long)]
        config: PathBuf,
    },
}

fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "never".into())
}

/// Print `status` as one block per feed.
pub fn write_status(status: &[FeedStatus], out: &mut impl std::io::Write) -> std::io::Result<()> {
    if status.is_empty() {
        writeln!(out, "no feed has been polled yet")?;
    }
    for s in status {
        writeln!(out, "{}  {}", s.name, s.url)?;
        writeln!(out, "  version       {}", s.version)?;
        writeln!(out, "  entries       {}", s.entries)?;
        writeln!(out, "  last success  {}", fmt_time(s.last_success))?;
        match &s.last_error {
            Some(e) => writeln!(out, "  last error    {} ({e})", fmt_time(s.last_error_at))?,
            None => writeln!(out, "  last error    none")?,
        }
    }
    Ok(())
}

/// A signing key behind a plain struct, so callers outside need not name the crate's types.
pub struct SigningKeyHolder(pub SigningKey);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::store::{Store, StoreConfig, StoredEntry};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn body(version: u64, full: bool, since: Option<u64>, patterns: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&FeedBody {
            feed: "f".into(),
            version,
            full,
            since,
            entries: patterns
                .iter()
                .map(|p| FeedEntry {
                    pattern: p.to_string(),
                    action: "block".into(),
                    category: "scam".into(),
                    reason: "r".into(),
                    source: "s".into(),
                    first_seen: 1,
                    last_seen: 2,
                    expires: None,
                })
                .collect(),
            removed: vec![],
        })
        .unwrap()
    }

    #[test]
    fn answers_are_checked_whole() {
        let k = key(7);
        let pk = k.verifying_key();
        let good = body(5, false, Some(3), &["+12025550143"]);
        let sig = sign(&k, 5, &good);
        let other = sign(&key(8), 5, &good);
        let mut tampered = good.clone();
        let i = tampered.iter().position(|b| *b == b'3').unwrap();
        tampered[i] = b'4';
        let bad_pattern = body(5, true, None, &["call me maybe"]);
        let bad_sig = sign(&k, 5, &bad_pattern);
        let old = body(2, true, None, &[]);
        let old_sig = sign(&k, 2, &old);
        type Case<'a> = (
            &'a str,
            u64,
            &'a str,
            &'a str,
            &'a [u8],
            Result<(), &'a str>,
        );
        let cases: Vec<Case> = vec![
            ("genuine increment", 3, "5", &sig, &good, Ok(())),
            ("wrong key", 3, "5", &other, &good, Err("signature")),
            ("tampered body", 3, "5", &sig, &tampered, Err("signature")),
            (
                "version header changed",
                3,
                "6",
                &sig,
                &good,
                Err("signature"),
            ),
            (
                "not since our version",
                4,
                "5",
                &sig,
                &good,
                Err("malformed"),
            ),
            (
                "bad pattern",
                0,
                "5",
                &bad_sig,
                &bad_pattern,
                Err("malformed"),
            ),
            ("backwards", 3, "2", &old_sig, &old, Err("backwards")),
            ("no version", 3, "x", &sig, &good, Err("malformed")),
        ];
        for (what, have, v, s, b, want) in cases {
            let got = check_answer(&pk, have, Some(v), Some(s), b, 10).map(|_| ());
            assert_eq!(got.map_err(|r| r.label()), want, "{what}");
        }
        assert_eq!(
            check_answer(&pk, 3, Some("5"), None, &good, 10).map(|_| ()),
            Err(Refusal::Signature)
        );
        assert!(matches!(
            check_answer(&pk, 3, Some("5"), Some(&sig), &good, 0),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn trust_maps_actions_and_drops_partner_allows() {
        let e = |p: &str, a: &str| FeedEntry {
            pattern: p.into(),
            action: a.into(),
            category: String::new(),
            reason: String::new(),
            source: String::new(),
            first_seen: 0,
            last_seen: 0,
            expires: None,
        };
        let entries = [e("+12025550143", "block"), e("+12025550144", "allow")];
        let n = |s: &str| Number::parse_e164(s).unwrap();
        for (trust, want) in [
            (Trust::Block, Some(EntryAction::Block)),
            (Trust::BlockAsWarn, Some(EntryAction::Warn)),
            (Trust::LogOnly, None),
        ] {
            let idx = build_index("p", trust, entries.iter());
            assert_eq!(idx.lookup(n("+12025550143"), 0).map(|m| m.action), want);
            assert!(idx.lookup(n("+12025550144"), 0).is_none());
        }
    }

    fn entry(p: &str, expires: Option<i64>) -> StoredEntry {
        StoredEntry {
            list: "shared".into(),
            pattern: p.into(),
            action: EntryAction::Block,
            category: "scam".into(),
            reason: "r".into(),
            source: "ops".into(),
            expires,
            created: 0,
            updated: 0,
        }
    }

    fn answer(p: &Publisher, since: Option<u64>, now: i64) -> FeedBody {
        let a = p.answer("f", since, None, now).unwrap().unwrap();
        let b = a.body.unwrap();
        assert!(verify(&key(1).verifying_key(), a.version, &b, &a.signature));
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn increments_carry_changes_and_tombstones_for_removals_and_expiries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..StoreConfig::default()
        })
        .unwrap();
        let keyfile = dir.path().join("k");
        std::fs::write(&keyfile, B64.encode([1u8; 32])).unwrap();
        let p = Publisher::open(
            &PublishConfig {
                key_file: Some(keyfile),
                feeds: vec![PublishedFeed {
                    name: "f".into(),
                    list: "shared".into(),
                    tokens: vec!["t0ken".into()],
                }],
            },
            store.path(),
        )
        .unwrap();
        assert!(p.feed_token_ok("f", "t0ken") && !p.feed_token_ok("f", "t0kem"));
        let empty = answer(&p, None, 100);
        assert!(empty.full && empty.entries.is_empty() && empty.version == 0);
        store
            .upsert(
                "t",
                "shared",
                &[
                    entry("+12025550143", None),
                    entry("+12025550144", Some(150)),
                ],
                100,
            )
            .unwrap();
        store
            .upsert("t", "other", &[entry("+12025550145", None)], 100)
            .unwrap();
        let v1 = answer(&p, Some(0), 100);
        assert!(!v1.full);
        assert_eq!(v1.entries.len(), 2);
        assert_eq!(v1.version, 3);
        store.remove("t", "shared", "+12025550143", 120).unwrap();
        store.sweep_expired(200).unwrap();
        let v2 = answer(&p, Some(v1.version), 200);
        assert!(!v2.full && v2.entries.is_empty());
        let mut gone: Vec<(String, String)> =
            v2.removed.into_iter().map(|t| (t.pattern, t.why)).collect();
        gone.sort();
        assert_eq!(
            gone,
            vec![
                ("+12025550143".into(), "remove".into()),
                ("+12025550144".into(), "expire".into())
            ]
        );
        assert!(v2.version > v1.version);
        // Nothing changed for the list: the ETag answers 304.
        let a = p.answer("f", Some(v2.version), None, 200).unwrap().unwrap();
        let again = p
            .answer("f", Some(v2.version), Some(&a.etag), 200)
            .unwrap()
            .unwrap();
        assert!(again.body.is_none());
        // An import cannot be told as changes: a full snapshot.
        store
            .import(
                "t",
                "shared",
                vec![entry("+12025550146", None)],
                true,
                300,
                "",
                |_| {},
            )
            .unwrap();
        let v3 = answer(&p, Some(v2.version), 300);
        assert!(v3.full);
        assert_eq!(v3.entries.len(), 1);
        assert_eq!(v3.entries[0].first_seen, 300);
        // A version from the future (the publisher's store was reset): a snapshot, which the
        // subscriber refuses as going backwards.
        assert!(answer(&p, Some(v3.version + 10), 300).full);
    }

    #[test]
    fn subscriber_state_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(3);
        let cfg = FeedConfig {
            name: "p".into(),
            url: "http://127.0.0.1:1/v1/feeds/p".into(),
            public_key: B64.encode(k.verifying_key().as_bytes()),
            ..FeedConfig::default()
        };
        let r = FeedRules::open(dir.path(), std::slice::from_ref(&cfg)).unwrap();
        let b = body(4, true, None, &["+12025550143", "+1900*"]);
        let c = check_answer(
            &k.verifying_key(),
            0,
            Some("4"),
            Some(&sign(&k, 4, &b)),
            &b,
            10,
        )
        .unwrap();
        r.apply("p", c, Some("\"e\"".into())).unwrap();
        drop(r);
        let r = FeedRules::open(dir.path(), &[cfg]).unwrap();
        let s = &r.status()[0];
        assert_eq!((s.version, s.entries), (4, 2));
        let n = Number::parse_e164("+19005550100").unwrap();
        assert_eq!(r.lookup(n, 0).unwrap().meta.list.as_ref(), "p");
        // A feed dropped from the config leaves no rows behind.
        drop(r);
        FeedRules::open(dir.path(), &[]).unwrap();
        assert!(read_status(dir.path()).unwrap().is_empty());
    }
}
