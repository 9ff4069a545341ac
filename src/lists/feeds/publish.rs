//! The publisher: answers `GET /v1/feeds/{feed}` with a signed snapshot or increment of one
//! store list, read in one transaction of the store so the version and the entries agree.
//!
//! Whether the audit trail can tell an increment is the store's question
//! ([`FeedRead::changes_since`](crate::lists::store::FeedRead::changes_since)); this module only
//! decides what to send, and signs it. Knows nothing of HTTP routing or tokens beyond comparing
//! a feed's own ones, nor of subscribers.

use std::path::Path;

use bytes::Bytes;

use crate::lists::store::{FeedReader, StoreError};
use crate::metrics::{Collect, Counter, Exposition};

use super::keys::{load_signing_key, sign, SigningKey};
use super::{FeedBody, PublishConfig, PublishedFeed};

/// Past this many audit records an increment is answered with a full snapshot instead.
const MAX_INCREMENT_RECORDS: usize = 1_000_000;

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

    /// Every feed this agent publishes.
    pub fn feeds(&self) -> &[PublishedFeed] {
        &self.feeds
    }

    /// The version a subscriber would be handed now (the store's, which grows with every
    /// change) and the audit id of `list`'s last change (0 when none is on record).
    pub fn freshness(&self, list: &str) -> Result<(u64, i64), StoreError> {
        self.store
            .read(|r| Ok((r.version()?, r.last_change(list)?)))
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

impl Collect for Publisher {
    fn collect(&self, out: &mut Exposition) {
        self.stats.collect(out);
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    use super::*;
    use crate::lists::feeds::testing::key;
    use crate::lists::feeds::verify;
    use crate::lists::store::{Store, StoreConfig, StoredEntry};
    use crate::screening::EntryAction;

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
}
