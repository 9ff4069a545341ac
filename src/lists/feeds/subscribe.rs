//! The subscriber: each feed's kept entries, state and compiled rules, and the pollers that
//! keep them current. A poll fetches, checks, persists (in `feeds.db`, through the store) and
//! only then swaps the feed's compiled index; any failure leaves the last good state in force.
//!
//! Trust is applied here, when compiling: a partner's allow entries never apply, and
//! `block-as-warn` and `log-only` soften or silence the rest, so [`FeedRules`] can be layered
//! with the operator's own rules like any other source. [`WithFeeds`] adds the feeds' rows to
//! the file lists' in `GET /v1/lists`. Knows nothing of signatures beyond calling
//! [`check`](super::check), nor of HTTP beyond calling [`fetch`](super::fetch).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::lists::overlay::{FileLists, ListStatus};
use crate::lists::store::{FeedState, FeedUpdate, FeedsDb, StoreError};
use crate::metrics::{Collect, Counter, Exposition, Gauge};
use crate::screening::{
    EntryAction, EntryMeta, IndexBuilder, Listed, Match, Number, Pattern, RuleIndex, Rules,
    ThousandBlock,
};

use super::check::{check_answer, Checked, Refusal};
use super::fetch::fetch;
use super::keys::{parse_public_key, VerifyingKey};
use super::{FeedConfig, FeedEntry, Trust};

// Nothing held under these locks is left half-changed by a panic, so a poisoned one is usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
    /// Unix seconds of the last poll that succeeded (applied, or 304), kept across restarts;
    /// 0 when none ever did. How an alert sees a feed going stale.
    pub last_success: Gauge,
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
            stats.last_success.set(last_success.unwrap_or(0));
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
        s.stats.last_success.set(now);
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
            s.stats.last_success.set(now);
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

    /// A partner's callback entries, under the same trust as the rest of its feed.
    fn lookup_callback(&self, n: Number, now: i64) -> Option<Match> {
        let mut best = None;
        for s in &self.slots {
            best = Match::best(best, s.index.load().lookup_callback(n, now));
        }
        best
    }

    /// Each feed's numbers as its trust compiled them: a log-only feed counts none, a
    /// block-as-warn feed's count as warnings do, a partner's allow entries never reach here.
    fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        for s in &self.slots {
            s.index.load().listed_in(block, now, into);
        }
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
            out.gauge(
                "scamguard_feed_last_success_timestamp_seconds",
                "Unix time of the feed's last successful poll (0: never)",
                &f,
                s.stats.last_success.get(),
            );
            out.gauge(
                "scamguard_feed_poll_interval_seconds",
                "The feed's configured poll interval",
                &f,
                s.cfg.poll_interval_secs.max(1) as i64,
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

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    use super::*;
    use crate::lists::feeds::testing::{body, key};
    use crate::lists::feeds::{read_status, sign};

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
            // A feed's numbers count towards their block as its trust compiled them: a
            // log-only feed's not at all, a partner's allow never.
            let mut near = Listed::default();
            idx.listed_in(ThousandBlock::of(n("+12025550100")).unwrap(), 0, &mut near);
            let counted: Vec<u16> = near.iter().collect();
            let want_counted: &[u16] = if want.is_some() { &[143] } else { &[] };
            assert_eq!(counted, want_counted, "{trust:?}");
        }
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
