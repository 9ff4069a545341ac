//! Store entries as rules for the hot path: compiled per-list indexes plus a small overlay of
//! live edits, so an API write is enforced on the next call without recompiling millions of
//! entries.
//!
//! The effective store rules are `(base - edited keys) ∪ overlay puts`, where a key is
//! `(list, pattern)`. One compiled [`RuleIndex`] per store list makes "the best match once an
//! edited entry is removed" cheap to answer: within one list a pattern appears once, so when the
//! list's winner is an edited entry, only that list's few non-exact entries can take its place,
//! and those are scanned linearly (rare: only until the next fold). The overlay is immutable and
//! swapped whole on each edit (copy-on-write, bounded by the fold threshold), so the hot path
//! takes no lock: it loads two `Arc`s. A background fold rebuilds the base from the store and
//! drops the overlay edits it now contains.
//!
//! Knows nothing of HTTP, files of lists, or what a verdict does with a match; SQLite is reached
//! only through [`Store`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::metrics::{Collect, Counter, Exposition, Gauge};
use crate::screening::{
    Entry, EntryMeta, IndexBuilder, Listed, Match, Number, Pattern, RuleIndex, Rules, ThousandBlock,
};

use super::store::{Change, Store, StoreError, StoredEntry, Who};

/// A compiled store list: its index and its non-exact entries for the fallback scan.
struct ListBase {
    name: Arc<str>,
    index: RuleIndex,
    others: Vec<(Pattern, Arc<EntryMeta>)>,
}

#[derive(Default)]
struct Base {
    lists: Vec<Arc<ListBase>>,
}

type Key = (Arc<str>, Pattern);

/// A list being compiled: its name, its builder, its non-exact entries.
type Staged = (Arc<str>, IndexBuilder, Vec<(Pattern, Arc<EntryMeta>)>);

#[derive(Default, Clone)]
struct Overlay {
    /// Every edited key (put or removal) with the sequence number of its latest edit.
    edits: HashMap<Key, u64>,
    /// Puts of exact numbers, by number value, for one probe per call.
    exact: HashMap<u64, Vec<(Pattern, Arc<EntryMeta>)>>,
    /// Puts of prefixes, digit patterns and regexes: scanned (the overlay is small).
    others: Vec<(Key, Arc<EntryMeta>)>,
}

impl Overlay {
    fn unindex(&mut self, key: &Key) {
        match &key.1 {
            Pattern::Exact(n) => {
                if let Some(v) = self.exact.get_mut(&n.value()) {
                    v.retain(|(_, m)| m.list != key.0);
                    if v.is_empty() {
                        self.exact.remove(&n.value());
                    }
                }
            }
            _ => self.others.retain(|(k, _)| k != key),
        }
    }

    fn set(&mut self, key: Key, put: Option<Arc<EntryMeta>>, seq: u64) {
        self.unindex(&key);
        if let Some(m) = &put {
            match &key.1 {
                Pattern::Exact(n) => self
                    .exact
                    .entry(n.value())
                    .or_default()
                    .push((key.1.clone(), m.clone())),
                _ => self.others.push((key.clone(), m.clone())),
            }
        }
        self.edits.insert(key, seq);
    }

    fn prune(&mut self, upto: u64) {
        let old: Vec<Key> = self
            .edits
            .iter()
            .filter(|(_, s)| **s <= upto)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.unindex(&k);
            self.edits.remove(&k);
        }
    }

    fn prune_list(&mut self, list: &Arc<str>, upto: u64) {
        let old: Vec<Key> = self
            .edits
            .iter()
            .filter(|(k, s)| **s <= upto && k.0 == *list)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.unindex(&k);
            self.edits.remove(&k);
        }
    }

    fn edited(&self, list: &Arc<str>, p: &Pattern) -> bool {
        !self.edits.is_empty() && self.edits.contains_key(&(list.clone(), p.clone()))
    }
}

/// Counters of the store rules.
#[derive(Debug, Default)]
pub struct StoreRulesStats {
    pub folds: Counter,
    pub fallback_scans: Counter,
    pub overlay_edits: Gauge,
    pub base_entries: Gauge,
}

impl Collect for StoreRulesStats {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            "scamguard_store_folds_total",
            "Rebuilds of the compiled store rules from the store",
            &[],
            self.folds.get(),
        );
        out.counter(
            "scamguard_store_fallback_scans_total",
            "Lookups whose winner was edited since the last fold and needed a scan",
            &[],
            self.fallback_scans.get(),
        );
        out.gauge(
            "scamguard_store_overlay_edits",
            "Live store edits not yet folded into the compiled rules",
            &[],
            self.overlay_edits.get(),
        );
        out.gauge(
            "scamguard_store_rule_entries",
            "Store entries in the compiled rules",
            &[],
            self.base_entries.get(),
        );
    }
}

/// Compiled store entries plus live edits; implements [`Rules`] for the store's part.
pub struct StoreRules {
    base: ArcSwap<Base>,
    overlay: ArcSwap<Overlay>,
    /// Serialises overlay edits and prunes (the hot path never takes it).
    edit_lock: Mutex<()>,
    /// Serialises folds so two never race to swap the base.
    fold_lock: Mutex<()>,
    seq: AtomicU64,
    pub stats: StoreRulesStats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Canonical text of a pattern (`x` -> `X`, trimmed), the store's key; or why it is refused.
pub fn canonical_pattern(text: &str) -> Result<String, String> {
    Pattern::parse(text).map(|p| p.to_string()).map_err(|e| e.0)
}

/// A store entry as a screening entry.
pub fn to_entry(e: &StoredEntry) -> Result<Entry, String> {
    Ok(Entry {
        pattern: Pattern::parse(&e.pattern).map_err(|e| e.0)?,
        action: e.action,
        category: e.category.clone(),
        reason: e.reason.clone(),
        source: e.source.clone(),
        expires: e.expires,
    })
}

fn meta_of(e: &StoredEntry, list: &Arc<str>) -> EntryMeta {
    EntryMeta {
        list: list.clone(),
        action: e.action,
        category: e.category.as_str().into(),
        reason: e.reason.as_str().into(),
        source: e.source.as_str().into(),
        expires: e.expires,
    }
}

impl Default for StoreRules {
    fn default() -> Self {
        StoreRules {
            base: ArcSwap::from_pointee(Base::default()),
            overlay: ArcSwap::from_pointee(Overlay::default()),
            edit_lock: Mutex::new(()),
            fold_lock: Mutex::new(()),
            seq: AtomicU64::new(0),
            stats: StoreRulesStats::default(),
        }
    }
}

impl StoreRules {
    /// Compile every store entry (the start-up load).
    pub fn load(store: &Store) -> Result<StoreRules, StoreError> {
        let r = StoreRules::default();
        r.fold(store)?;
        Ok(r)
    }

    /// Live edits not yet folded.
    pub fn overlay_len(&self) -> usize {
        self.overlay.load().edits.len()
    }

    /// Make committed store changes visible to the next lookup. Call after the store write has
    /// returned, under the same write lock, so the overlay order is the commit order.
    pub fn apply(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let _g = lock(&self.edit_lock);
        let mut ov = Overlay::clone(&self.overlay.load());
        for c in changes {
            let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
            let (e, put) = match c {
                Change::Added(e) | Change::Updated { after: e, .. } => (e, true),
                Change::Removed(e) => (e, false),
            };
            // Patterns in the store were checked on the way in; one that no longer parses
            // (a newer build refusing it) simply cannot match.
            let Ok(p) = Pattern::parse(&e.pattern) else {
                continue;
            };
            let list: Arc<str> = e.list.as_str().into();
            let meta = put.then(|| Arc::new(meta_of(e, &list)));
            ov.set((list, p), meta, seq);
        }
        self.stats.overlay_edits.set(ov.edits.len() as i64);
        self.overlay.store(Arc::new(ov));
    }

    /// Rebuild the compiled base from the store and drop the edits it now holds. Runs off the
    /// hot path (seconds for millions of entries); lookups go on meanwhile.
    pub fn fold(&self, store: &Store) -> Result<(), StoreError> {
        let _f = lock(&self.fold_lock);
        // Edits numbered up to here were committed before the read below starts, so the read
        // contains them and they can be dropped once the new base is in place.
        let upto = self.seq.load(Ordering::SeqCst);
        let mut builders: Vec<Staged> = Vec::new();
        let mut total = 0i64;
        let mut bad = 0u64;
        store.for_each(None, |e| {
            if builders.last().map(|b| *b.0 != e.list).unwrap_or(true) {
                builders.push((e.list.as_str().into(), IndexBuilder::new(), Vec::new()));
            }
            let Some((list, b, others)) = builders.last_mut() else {
                return false;
            };
            match to_entry(&e) {
                Ok(entry) => {
                    if !matches!(entry.pattern, Pattern::Exact(_)) {
                        others.push((entry.pattern.clone(), Arc::new(meta_of(&e, list))));
                    }
                    b.add(list, &entry);
                    total += 1;
                }
                Err(_) => bad += 1,
            }
            true
        })?;
        if bad > 0 {
            tracing::warn!(
                bad,
                "store entries whose pattern no longer parses were skipped"
            );
        }
        let lists = builders
            .into_iter()
            .map(|(name, b, others)| {
                Arc::new(ListBase {
                    name,
                    index: b.build(),
                    others,
                })
            })
            .collect();
        self.base.store(Arc::new(Base { lists }));
        {
            let _g = lock(&self.edit_lock);
            let mut ov = Overlay::clone(&self.overlay.load());
            ov.prune(upto);
            self.stats.overlay_edits.set(ov.edits.len() as i64);
            self.overlay.store(Arc::new(ov));
        }
        self.stats.folds.inc();
        self.stats.base_entries.set(total);
        Ok(())
    }
}

impl StoreRules {
    /// Rebuild one list's compiled rules (after an import), leaving the others as they are.
    pub fn fold_list(&self, store: &Store, list: &str) -> Result<(), StoreError> {
        let _f = lock(&self.fold_lock);
        let upto = self.seq.load(Ordering::SeqCst);
        let name: Arc<str> = list.into();
        let mut b = IndexBuilder::new();
        let mut others = Vec::new();
        let mut count = 0i64;
        store.for_each(Some(list), |e| {
            if let Ok(entry) = to_entry(&e) {
                if !matches!(entry.pattern, Pattern::Exact(_)) {
                    others.push((entry.pattern.clone(), Arc::new(meta_of(&e, &name))));
                }
                b.add(list, &entry);
                count += 1;
            }
            true
        })?;
        let old = self.base.load();
        let mut lists: Vec<Arc<ListBase>> = Vec::with_capacity(old.lists.len() + 1);
        let mut previous = 0i64;
        for l in &old.lists {
            if &*l.name == list {
                previous = l.index.stats().entries() as i64;
            } else {
                lists.push(l.clone());
            }
        }
        if count > 0 {
            lists.push(Arc::new(ListBase {
                name: name.clone(),
                index: b.build(),
                others,
            }));
        }
        self.base.store(Arc::new(Base { lists }));
        {
            let _g = lock(&self.edit_lock);
            let mut ov = Overlay::clone(&self.overlay.load());
            ov.prune_list(&name, upto);
            self.stats.overlay_edits.set(ov.edits.len() as i64);
            self.overlay.store(Arc::new(ov));
        }
        self.stats
            .base_entries
            .set(self.stats.base_entries.get() - previous + count);
        self.stats.folds.inc();
        Ok(())
    }
}

impl StoreRules {
    /// The winning entry among caller entries, or among callback entries with `callback`: the
    /// compiled lists keep the two apart, the overlay's puts and the fallback scan are filtered.
    fn best(&self, n: Number, now: i64, callback: bool) -> Option<Match> {
        let base = self.base.load();
        let ov = self.overlay.load();
        let mut best: Option<Match> = None;
        let kind = |meta: &EntryMeta| meta.is_callback() == callback;
        for l in &base.lists {
            let found = if callback {
                l.index.lookup_callback(n, now)
            } else {
                l.index.lookup(n, now)
            };
            let Some(m) = found else {
                continue;
            };
            if !ov.edited(&l.name, &m.pattern) {
                best = Match::best(best, Some(m));
                continue;
            }
            // The list's winner was edited: the next best of this list is among its
            // non-exact entries (a list holds each pattern once).
            self.stats.fallback_scans.inc();
            for (p, meta) in &l.others {
                if kind(meta) && meta.is_live(now) && p.matches(n) && !ov.edited(&l.name, p) {
                    best = Match::best(best, Some(make_match(p, meta)));
                }
            }
        }
        if let Some(v) = ov.exact.get(&n.value()) {
            for (p, meta) in v {
                if kind(meta) && meta.is_live(now) {
                    best = Match::best(best, Some(make_match(p, meta)));
                }
            }
        }
        for ((_, p), meta) in &ov.others {
            if kind(meta) && meta.is_live(now) && p.matches(n) {
                best = Match::best(best, Some(make_match(p, meta)));
            }
        }
        best
    }
}

impl Rules for StoreRules {
    fn lookup(&self, n: Number, now: i64) -> Option<Match> {
        self.best(n, now, false)
    }

    fn lookup_callback(&self, n: Number, now: i64) -> Option<Match> {
        self.best(n, now, true)
    }

    /// The compiled lists' numbers, less those edited since the last fold (a removed entry
    /// stops counting at once). Numbers put since the fold count from the next one (within a
    /// minute): finding them here would mean scanning the overlay on every call.
    fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        let base = self.base.load();
        let ov = self.overlay.load();
        for l in &base.lists {
            if ov.edits.is_empty() {
                l.index.listed_in(block, now, into);
                continue;
            }
            let mut mine = Listed::default();
            l.index.listed_in(block, now, &mut mine);
            let found = mine;
            for place in found.iter() {
                if let Some(n) = block.number(place) {
                    if ov.edited(&l.name, &Pattern::Exact(n)) {
                        mine.remove(place);
                    }
                }
            }
            into.union(&mine);
        }
    }
}

fn make_match(p: &Pattern, meta: &Arc<EntryMeta>) -> Match {
    Match {
        specificity: p.specificity(),
        action: meta.action,
        pattern: p.clone(),
        meta: meta.clone(),
    }
}

/// Several rule sources (file lists, store rules, subscribed feeds...) as one, with the index's
/// precedence across all of them: the most specific entry wins, and at equal specificity allow
/// beats block beats warn. Each source applies its own policy before this sees a match (feeds,
/// for one, never yield a partner's allow), so any source can be layered without this module
/// knowing what it is.
pub struct Layered<'a> {
    /// In the order the caller lists them; a full tie goes to the earlier source.
    pub sources: &'a [&'a dyn Rules],
}

impl Rules for Layered<'_> {
    fn lookup(&self, n: Number, now: i64) -> Option<Match> {
        self.sources
            .iter()
            .fold(None, |best, s| Match::best(best, s.lookup(n, now)))
    }

    fn lookup_callback(&self, n: Number, now: i64) -> Option<Match> {
        self.sources
            .iter()
            .fold(None, |best, s| Match::best(best, s.lookup_callback(n, now)))
    }

    /// Every source's listed numbers as one set: a number listed by two sources is one number.
    fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        for s in self.sources {
            s.listed_in(block, now, into);
        }
    }
}

/// What the admin side needs from the file (and feed) lists: the list loader implements it.
pub trait FileLists: Send + Sync {
    /// Re-read every list file now. Returns the errors as `file:line: ...`; a file with errors
    /// keeps its previous version.
    fn reload(&self) -> Vec<String>;
    /// Each file or feed list with its entry count and last load error.
    fn status(&self) -> Vec<ListStatus>;
    /// Have the lists been loaded once?
    fn ready(&self) -> bool;
}

/// One list as `GET /v1/lists` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListStatus {
    pub name: String,
    /// `file`, `store` or `feed`.
    pub source: String,
    pub entries: u64,
    pub error: Option<String>,
}

/// Why a write through [`Live`] was refused.
#[derive(Debug)]
pub enum WriteError {
    /// Entries that do not validate, one message per bad entry (`entry 3: ...`).
    Rejected(Vec<String>),
    Store(StoreError),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Rejected(v) => write!(f, "{} invalid entries: {}", v.len(), v.join("; ")),
            WriteError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// Check and canonicalise one entry for the store: the pattern parses (and is stored in its
/// canonical text), the category is one word (defaulting to `operator`), the reason and source
/// hold no control character.
pub fn validate_entry(e: &mut StoredEntry) -> Result<(), String> {
    e.pattern = canonical_pattern(&e.pattern)?;
    if e.category.trim().is_empty() {
        e.category = "operator".into();
    }
    crate::screening::entry::check_category(&e.category)?;
    crate::screening::entry::check_text("reason", &e.reason)?;
    crate::screening::entry::check_text("source", &e.source)?;
    Ok(())
}

/// The operator's side of the lists: store writes made live at once, imports, reloads and
/// status. Writes are serialised so the overlay sees them in commit order.
pub struct Live {
    pub store: Arc<Store>,
    pub rules: Arc<StoreRules>,
    files: Option<Arc<dyn FileLists>>,
    write_lock: Mutex<()>,
    /// Overlay edits past which a maintenance pass folds them into the compiled rules.
    pub fold_threshold: usize,
}

impl Live {
    pub fn new(
        store: Arc<Store>,
        rules: Arc<StoreRules>,
        files: Option<Arc<dyn FileLists>>,
    ) -> Live {
        Live {
            store,
            rules,
            files,
            write_lock: Mutex::new(()),
            fold_threshold: 10_000,
        }
    }

    /// Add or replace entries of `list`, durable and enforced when this returns.
    pub fn add<'w>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        mut entries: Vec<StoredEntry>,
        now: i64,
    ) -> Result<Vec<Change>, WriteError> {
        let bad: Vec<String> = entries
            .iter_mut()
            .enumerate()
            .filter_map(|(i, e)| {
                validate_entry(e)
                    .err()
                    .map(|m| format!("entry {}: {m}", i + 1))
            })
            .collect();
        if !bad.is_empty() {
            return Err(WriteError::Rejected(bad));
        }
        let _w = lock(&self.write_lock);
        let changes = self.store.upsert(who, list, &entries, now)?;
        self.rules.apply(&changes);
        Ok(changes)
    }

    /// Remove one entry; `None` when it was not there.
    pub fn remove<'w>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        pattern: &str,
        now: i64,
    ) -> Result<Option<StoredEntry>, WriteError> {
        let key = canonical_pattern(pattern).unwrap_or_else(|_| pattern.trim().to_string());
        let _w = lock(&self.write_lock);
        let gone = self.store.remove(who, list, &key, now)?;
        if let Some(e) = &gone {
            self.rules.apply(&[Change::Removed(e.clone())]);
        }
        Ok(gone)
    }

    /// Import already-validated entries as one transaction, then recompile that list so the
    /// import is enforced when this returns.
    #[allow(clippy::too_many_arguments)]
    pub fn import<'w>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        entries: Vec<StoredEntry>,
        replace: bool,
        now: i64,
        detail: &str,
    ) -> Result<super::store::ImportSummary, WriteError> {
        self.import_with_progress(who, list, entries, replace, now, detail, &mut |_| {})
    }

    /// [`Live::import`], telling `progress` the entries written so far as it goes (every
    /// 10,000, and all of them once committed, before the list is compiled).
    #[allow(clippy::too_many_arguments)]
    pub fn import_with_progress<'w>(
        &self,
        who: impl Into<Who<'w>>,
        list: &str,
        entries: Vec<StoredEntry>,
        replace: bool,
        now: i64,
        detail: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<super::store::ImportSummary, WriteError> {
        let _w = lock(&self.write_lock);
        let sum = self
            .store
            .import(who, list, entries, replace, now, detail, progress)?;
        drop(_w);
        self.rules.fold_list(&self.store, list)?;
        Ok(sum)
    }

    /// Delete expired entries (audited) and fold the overlay when it has grown. Run
    /// periodically off the hot path.
    pub fn maintain(&self, now: i64) -> Result<usize, StoreError> {
        let gone = {
            let _w = lock(&self.write_lock);
            let gone = self.store.sweep_expired(now)?;
            let changes: Vec<Change> = gone.into_iter().map(Change::Removed).collect();
            self.rules.apply(&changes);
            changes.len()
        };
        if self.store.changed_elsewhere()? || self.rules.overlay_len() >= self.fold_threshold {
            self.rules.fold(&self.store)?;
        }
        Ok(gone)
    }

    /// The maintenance loop: every second, fold when the overlay has grown or another process
    /// wrote to the store; every `sweep_every`, delete expired entries; every minute, fold
    /// what the overlay holds. Runs the work on blocking threads until `shutdown` completes.
    pub async fn run_maintenance(
        self: Arc<Self>,
        sweep_every: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = std::time::Instant::now();
        let mut last_fold = std::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let sweep = last_sweep.elapsed() >= sweep_every;
            let fold_all = last_fold.elapsed() >= std::time::Duration::from_secs(60);
            let me = self.clone();
            let res = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                if sweep {
                    let n = me.maintain(unix_now())?;
                    if n > 0 {
                        tracing::info!(removed = n, "expired store entries removed");
                    }
                } else if me.store.changed_elsewhere()?
                    || me.rules.overlay_len() >= me.fold_threshold
                {
                    me.rules.fold(&me.store)?;
                }
                if fold_all {
                    me.fold()?;
                }
                Ok(())
            })
            .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "store maintenance failed"),
                Err(e) => tracing::error!(error = %e, "store maintenance task failed"),
            }
            if sweep {
                last_sweep = std::time::Instant::now();
            }
            if fold_all {
                last_fold = std::time::Instant::now();
            }
        }
    }

    /// Fold whatever the overlay holds (a quiet-time pass so it never lingers).
    pub fn fold(&self) -> Result<(), StoreError> {
        if self.rules.overlay_len() > 0 {
            self.rules.fold(&self.store)?;
        }
        Ok(())
    }

    /// File and feed lists (with their load errors) followed by store lists.
    pub fn lists(&self) -> Result<Vec<ListStatus>, StoreError> {
        let mut v = self.files.as_ref().map(|f| f.status()).unwrap_or_default();
        for (name, entries) in self.store.lists()? {
            v.push(ListStatus {
                name,
                source: "store".into(),
                entries,
                error: None,
            });
        }
        Ok(v)
    }

    /// Re-read the list files; their errors as `file:line: ...`.
    pub fn reload(&self) -> Vec<String> {
        self.files.as_ref().map(|f| f.reload()).unwrap_or_default()
    }

    /// Lists loaded (files once, and the store's rules compiled).
    pub fn ready(&self) -> bool {
        self.files.as_ref().map(|f| f.ready()).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::store::StoreConfig;
    use crate::screening::EntryAction;

    fn num(s: &str) -> Number {
        Number::parse_e164(s).unwrap()
    }

    fn e(p: &str, a: EntryAction) -> StoredEntry {
        StoredEntry {
            list: String::new(),
            pattern: p.into(),
            action: a,
            category: "scam".into(),
            reason: format!("{p} {a}"),
            source: "test".into(),
            expires: None,
            created: 0,
            updated: 0,
        }
    }

    fn verdict(r: &StoreRules, n: &str, now: i64) -> Option<(String, String, EntryAction)> {
        r.lookup(num(n), now)
            .map(|m| (m.meta.list.to_string(), m.pattern.to_string(), m.action))
    }

    /// Callback entries written through the API are enforced at once for dialled numbers, and
    /// never, before or after a fold, for callers; removing one lets the next best take over.
    #[test]
    fn store_callback_entries_match_dialled_numbers_only() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            data_dir: d.path().into(),
            ..StoreConfig::default()
        })
        .unwrap();
        let r = StoreRules::load(&store).unwrap();
        let cb = |p: &str, a| StoredEntry {
            category: "callback-refund".into(),
            ..e(p, a)
        };
        let items = [
            cb("+18885550123", EntryAction::Block),
            cb("+1888555*", EntryAction::Warn),
            e("+1888*", EntryAction::Warn),
        ];
        r.apply(&store.upsert("t", "ops", &items, 1).unwrap());
        let dialled = |r: &StoreRules| {
            r.lookup_callback(num("+18885550123"), 5)
                .map(|m| (m.pattern.to_string(), m.action))
        };
        for folded in [false, true] {
            assert_eq!(
                dialled(&r),
                Some(("+18885550123".into(), EntryAction::Block)),
                "folded: {folded}"
            );
            assert_eq!(
                verdict(&r, "+18885550123", 5),
                Some(("ops".into(), "+1888*".into(), EntryAction::Warn)),
                "a caller meets only the caller entry (folded: {folded})"
            );
            r.fold(&store).unwrap();
        }
        r.apply(&[Change::Removed(
            store
                .remove("t", "ops", "+18885550123", 2)
                .unwrap()
                .unwrap(),
        )]);
        assert_eq!(dialled(&r), Some(("+1888555*".into(), EntryAction::Warn)));
        let layered = Layered {
            sources: &[&RuleIndex::empty(), &r],
        };
        assert_eq!(
            layered
                .lookup_callback(num("+18885550999"), 5)
                .map(|m| m.pattern.to_string()),
            Some("+1888555*".into())
        );
        assert!(layered.lookup_callback(num("+18885560000"), 5).is_none());
    }

    #[test]
    fn overlay_edits_apply_at_once_and_survive_folds() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            data_dir: d.path().into(),
            ..StoreConfig::default()
        })
        .unwrap();
        let w = |list: &str, items: &[StoredEntry], r: &StoreRules| {
            r.apply(&store.upsert("t", list, items, 1).unwrap())
        };
        let r = StoreRules::load(&store).unwrap();
        assert_eq!(verdict(&r, "+12025550143", 5), None);
        w(
            "a",
            &[
                e("+12025550143", EntryAction::Block),
                e("+1202*", EntryAction::Warn),
            ],
            &r,
        );
        let want = |l: &str, p: &str, a| Some((l.to_string(), p.to_string(), a));
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("a", "+12025550143", EntryAction::Block)
        );
        r.fold(&store).unwrap();
        assert_eq!(r.overlay_len(), 0);
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("a", "+12025550143", EntryAction::Block)
        );
        // Remove the exact entry: the prefix of the same list takes over before any fold.
        r.apply(&[Change::Removed(
            store.remove("t", "a", "+12025550143", 2).unwrap().unwrap(),
        )]);
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("a", "+1202*", EntryAction::Warn)
        );
        assert!(r.stats.fallback_scans.get() > 0);
        // An allow in another list at equal specificity beats it.
        w("b", &[e("+1202*", EntryAction::Allow)], &r);
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("b", "+1202*", EntryAction::Allow)
        );
        // Replace the prefix in list a by a block: still the allow wins (allow > block).
        w("a", &[e("+1202*", EntryAction::Block)], &r);
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("b", "+1202*", EntryAction::Allow)
        );
        r.apply(&[Change::Removed(
            store.remove("t", "b", "+1202*", 3).unwrap().unwrap(),
        )]);
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("a", "+1202*", EntryAction::Block)
        );
        r.fold(&store).unwrap();
        assert_eq!(r.overlay_len(), 0);
        assert_eq!(
            verdict(&r, "+12025550143", 5),
            want("a", "+1202*", EntryAction::Block)
        );
        // Expiry stops a match at once, in the overlay and in the base.
        let mut x = e("+4420794600XX", EntryAction::Block);
        x.expires = Some(100);
        w("c", &[x], &r);
        assert!(verdict(&r, "+442079460018", 99).is_some());
        assert_eq!(verdict(&r, "+442079460018", 100), None);
        r.fold(&store).unwrap();
        assert!(verdict(&r, "+442079460018", 99).is_some());
        assert_eq!(verdict(&r, "+442079460018", 100), None);
    }

    fn listed(r: &dyn Rules, caller: &str, now: i64) -> Vec<u16> {
        let mut l = Listed::default();
        r.listed_in(ThousandBlock::of(num(caller)).unwrap(), now, &mut l);
        l.iter().collect()
    }

    /// Listed numbers per block from every source: store lists (less entries removed since the
    /// fold), file lists and feeds, one set across them.
    #[test]
    fn listed_numbers_across_sources() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            data_dir: d.path().into(),
            ..StoreConfig::default()
        })
        .unwrap();
        store
            .upsert(
                "t",
                "a",
                &[
                    e("+12025550101", EntryAction::Block),
                    e("+12025550102", EntryAction::Warn),
                    e("+12025550103", EntryAction::Allow),
                    e("+1202555011X", EntryAction::Block),
                ],
                1,
            )
            .unwrap();
        store
            .upsert("t", "b", &[e("+12025550101", EntryAction::Warn)], 1)
            .unwrap();
        let r = StoreRules::load(&store).unwrap();
        assert_eq!(listed(&r, "+12025550150", 5), vec![101, 102]);
        // Removed through the API: it stops counting before the next fold.
        r.apply(&[Change::Removed(
            store.remove("t", "a", "+12025550102", 2).unwrap().unwrap(),
        )]);
        assert_eq!(listed(&r, "+12025550150", 5), vec![101]);
        // Added through the API: counted from the next fold.
        r.apply(
            &store
                .upsert("t", "a", &[e("+12025550104", EntryAction::Block)], 3)
                .unwrap(),
        );
        assert_eq!(listed(&r, "+12025550150", 5), vec![101]);
        r.fold(&store).unwrap();
        assert_eq!(listed(&r, "+12025550150", 5), vec![101, 104]);

        let mut b = IndexBuilder::new();
        for p in ["+12025550101", "+12025550199"] {
            b.add(
                "file",
                &Entry {
                    pattern: Pattern::parse(p).unwrap(),
                    action: EntryAction::Block,
                    category: "scam".into(),
                    reason: String::new(),
                    source: String::new(),
                    expires: None,
                },
            );
        }
        let files = b.build();
        let layered = Layered {
            sources: &[&files, &r],
        };
        assert_eq!(listed(&layered, "+12025550150", 5), vec![101, 104, 199]);
        assert_eq!(listed(&layered, "+12025551150", 5), Vec::<u16>::new());
    }

    #[test]
    fn layered_uses_index_precedence() {
        let mut b = IndexBuilder::new();
        b.add(
            "file",
            &Entry {
                pattern: Pattern::parse("+1900*").unwrap(),
                action: EntryAction::Block,
                category: "premium".into(),
                reason: String::new(),
                source: String::new(),
                expires: None,
            },
        );
        let files = b.build();
        let store = StoreRules::default();
        let meta = |a| {
            Arc::new(EntryMeta {
                list: "ops".into(),
                action: a,
                category: "x".into(),
                reason: "".into(),
                source: "".into(),
                expires: None,
            })
        };
        {
            let mut ov = Overlay::default();
            ov.set(
                ("ops".into(), Pattern::parse("+19005550000").unwrap()),
                Some(meta(EntryAction::Allow)),
                1,
            );
            store.overlay.store(Arc::new(ov));
        }
        let l = Layered {
            sources: &[&files, &store],
        };
        let got = |n: &str| {
            l.lookup(num(n), 0)
                .map(|m| (m.meta.list.to_string(), m.action))
        };
        assert_eq!(
            got("+19005550000"),
            Some(("ops".into(), EntryAction::Allow))
        );
        assert_eq!(
            got("+19005550001"),
            Some(("file".into(), EntryAction::Block))
        );
        assert_eq!(got("+18005550001"), None);
    }
}
