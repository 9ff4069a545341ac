//! The compiled, immutable rule index: every list entry, arranged so one caller lookup is a few
//! hash probes.
//!
//! Built off the hot path by [`IndexBuilder`] from entries tagged with their list name, then
//! shared read-only (`Arc`) and replaced whole on reload. Layout, chosen for 10 million exact
//! numbers:
//! - exact numbers: [`super::exact::ExactTable`], 64-byte buckets of five (number, slot) ways,
//!   half full, about 26 bytes per entry; a hit or a miss reads one cache line (rarely two);
//! - entry metadata (list, action, category, reason, source, expiry) is interned: millions of
//!   entries share a handful of [`EntryMeta`] values, and a slot is an index into them;
//! - prefixes: one hash map per prefix length, probed from the longest length present;
//! - digit patterns: grouped by (length, fixed positions), one hash probe per group of the
//!   caller's length, skipped at once for lengths no group has;
//! - regexes: one `RegexSet`, run last and only when nothing more specific can win; a caller
//!   that no regex can match (none unanchored, no anchored prefix shared) costs no text at all.
//!
//! Precedence: the most specific matching entry wins (see [`Specificity`]); at equal specificity
//! allow beats block beats warn. Expired entries (`expires <= now`) never match.
//!
//! Callback entries (category `callback` or `callback-*`, see
//! [`super::entry::is_callback_category`]) are compiled into an index of their own inside this
//! one: [`Rules::lookup`] never sees them (a caller is never matched against a number scammers
//! ask victims to call), only [`Rules::lookup_callback`] does, for the number a protected
//! subscriber dials.
//!
//! The build also counts exact numbers per thousand-block ([`blocks`]), so that "which numbers
//! near the caller are listed" is one probe per call ([`Rules::listed_in`]).
//!
//! Knows nothing of files, feeds, the overlay of live edits, or what a verdict does with a match.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::entry::{
    is_callback_category, DigitPattern, Entry, EntryAction, Pattern, RegexPattern, Specificity,
};
use super::exact::ExactTable;
use super::number::{Number, MAX_DIGITS, POW10};

mod blocks;

use self::blocks::BlockTable;
pub use self::blocks::{Listed, ThousandBlock};

/// What every entry sharing it has in common; interned so that millions of entries cost one
/// `u32` each for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryMeta {
    pub list: Arc<str>,
    pub action: EntryAction,
    pub category: Arc<str>,
    pub reason: Arc<str>,
    pub source: Arc<str>,
    /// Unix seconds at which the entry stops matching.
    pub expires: Option<i64>,
}

impl EntryMeta {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires.map_or(true, |e| now < e)
    }

    /// A callback entry: it matches dialled numbers of protected subscribers, never callers.
    pub fn is_callback(&self) -> bool {
        is_callback_category(&self.category)
    }

    /// Rank among entries of one pattern: a Do-Not-Originate block (category `dno`) first,
    /// since a call from an inbound-only number is spoofed whoever vouches for the number, then
    /// allow, block and warn ([`EntryAction::rank`]).
    pub fn rank(&self) -> u8 {
        if self.action == EntryAction::Block && self.category.eq_ignore_ascii_case("dno") {
            3
        } else {
            self.action.rank()
        }
    }
}

/// One matching entry, owned (cheap `Arc` clones) so that a match from this index and one from a
/// live overlay can be compared with [`Match::beats`] and the winner kept.
#[derive(Debug, Clone)]
pub struct Match {
    pub specificity: Specificity,
    pub action: EntryAction,
    /// The entry's pattern as the operator wrote it (prints back to the same text).
    pub pattern: Pattern,
    pub meta: Arc<EntryMeta>,
}

impl Match {
    /// Does `self` take precedence over `other`? More specific first; at equal specificity
    /// a Do-Not-Originate block, then allow, block and warn ([`EntryMeta::rank`]). A full tie
    /// keeps `other` (the earlier one found).
    pub fn beats(&self, other: &Match) -> bool {
        (self.specificity, self.meta.rank()) > (other.specificity, other.meta.rank())
    }

    /// The winner of two optional matches.
    pub fn best(a: Option<Match>, b: Option<Match>) -> Option<Match> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.beats(&a) { b } else { a }),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Rebuild the entry this match came from.
    pub fn to_entry(&self) -> Entry {
        meta_entry(self.pattern.clone(), &self.meta)
    }
}

fn meta_entry(pattern: Pattern, m: &EntryMeta) -> Entry {
    Entry {
        pattern,
        action: m.action,
        category: m.category.to_string(),
        reason: m.reason.to_string(),
        source: m.source.to_string(),
        expires: m.expires,
    }
}

/// Anything that can answer "which entry wins for this number": the compiled index alone, or
/// the index combined with a live overlay. [`crate::screening::Engine::decide`] takes one of these.
pub trait Rules {
    fn lookup(&self, number: Number, now: i64) -> Option<Match>;

    /// Adds to `into` the places of the numbers of `block` that these rules list as exact numbers
    /// with a block or warn entry in force at `now`. Allow entries never count, and neither do
    /// prefixes, digit patterns or regexes: they cover their range already. Sources without
    /// such counts add nothing.
    fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        let _ = (block, now, into);
    }

    /// The winning callback entry for `number` dialled by a protected subscriber, with the same
    /// precedence as [`Rules::lookup`] among callback entries only. Sources that hold none
    /// answer `None`.
    fn lookup_callback(&self, number: Number, now: i64) -> Option<Match> {
        let _ = (number, now);
        None
    }
}

/// Multiply-shift hashing for `u64` keys: the keys are phone numbers, not attacker-chosen hash
/// inputs in any way that matters for these build-time maps, and SipHash would dominate lookups.
#[derive(Default)]
struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = mix(k);
    }
}

type FastMap<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

#[inline]
fn mix(k: u64) -> u64 {
    let k = (k ^ (k >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    k ^ (k >> 29)
}

/// A slot: either one meta id, or (high bit set) a group of entries sharing the pattern.
pub(crate) const GROUP_BIT: u32 = 1 << 31;

/// The compiled, immutable index.
#[derive(Debug, Default)]
pub struct RuleIndex {
    metas: Vec<Arc<EntryMeta>>,
    /// Meta ids of entries sharing one pattern, strongest action first.
    groups: Vec<Box<[u32]>>,
    /// Exact numbers to slots.
    exact: ExactTable,
    /// `prefixes[len]` holds prefixes of `len` digits.
    prefixes: Vec<FastMap<u32>>,
    /// Bit `len` set when `prefixes[len]` is not empty.
    prefix_lengths: u16,
    prefix_count: usize,
    digit_groups: Vec<DigitGroup>,
    /// Bit `len` set when some digit group has patterns of `len` digits.
    digit_lengths: u16,
    digit_count: usize,
    /// Every regex entry with its slot.
    regexes: Vec<(Arc<RegexPattern>, u32)>,
    /// Exact numbers by thousand-block, for the block signal.
    blocks: BlockTable,
    /// The callback entries, compiled apart (see the module doc).
    callback: Option<Box<RuleIndex>>,
    /// Regexes anchored on literal digits (`^\+2126...`): (required prefix, index in
    /// `regexes`); run only for numbers with that prefix.
    regex_prefixed: Vec<(Number, usize)>,
    /// The other regexes as one set, with the index in `regexes` of each member.
    regex_set: Option<(regex::RegexSet, Vec<usize>)>,
}

#[derive(Debug)]
struct DigitGroup {
    len: u8,
    mask: u16,
    /// `Some(k)` when the fixed positions are exactly the first `k` (`+4420790XXXXX`, the usual
    /// shape): the masked key is then one division instead of a loop over every digit.
    leading: Option<u8>,
    map: FastMap<u32>,
}

impl DigitGroup {
    #[inline]
    fn key(&self, n: Number) -> u64 {
        match self.leading {
            Some(k) => {
                let free = POW10[usize::from(self.len - k)];
                n.value() / free * free
            }
            None => DigitPattern::masked(self.mask, n),
        }
    }
}

/// Sizes and memory of an index, for the bench, the admin API and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    pub exact: usize,
    pub prefixes: usize,
    pub digit_patterns: usize,
    pub regexes: usize,
    /// Distinct interned metadata records.
    pub metas: usize,
    /// Bytes held by the exact table (keys and slots), the part that scales.
    pub exact_bytes: usize,
    /// Approximate bytes held by everything else.
    pub other_bytes: usize,
    /// Exact numbers that may count towards their block (those with a block or warn entry).
    pub block_numbers: usize,
    /// Bytes of the per-block count of exact numbers (part of neither figure above).
    pub block_bytes: usize,
}

impl IndexStats {
    /// Both indexes' figures added up (the caller index and its callback index).
    fn plus(self, o: &IndexStats) -> IndexStats {
        IndexStats {
            exact: self.exact + o.exact,
            prefixes: self.prefixes + o.prefixes,
            digit_patterns: self.digit_patterns + o.digit_patterns,
            regexes: self.regexes + o.regexes,
            metas: self.metas + o.metas,
            exact_bytes: self.exact_bytes + o.exact_bytes,
            other_bytes: self.other_bytes + o.other_bytes,
            block_numbers: self.block_numbers + o.block_numbers,
            block_bytes: self.block_bytes + o.block_bytes,
        }
    }

    pub fn entries(&self) -> usize {
        self.exact + self.prefixes + self.digit_patterns + self.regexes
    }
    /// Bytes of the exact table per exact entry (0 when there are none).
    pub fn bytes_per_exact(&self) -> f64 {
        if self.exact == 0 {
            0.0
        } else {
            self.exact_bytes as f64 / self.exact as f64
        }
    }
}

impl RuleIndex {
    /// An index with no entries.
    pub fn empty() -> RuleIndex {
        IndexBuilder::new().build()
    }

    pub fn stats(&self) -> IndexStats {
        let map_bytes = |n: usize| n * (8 + 4 + 8);
        let other = self.metas.len() * (std::mem::size_of::<EntryMeta>() + 64)
            + self.groups.iter().map(|g| g.len() * 4 + 16).sum::<usize>()
            + self
                .prefixes
                .iter()
                .map(|m| map_bytes(m.capacity()))
                .sum::<usize>()
            + self
                .digit_groups
                .iter()
                .map(|g| map_bytes(g.map.capacity()))
                .sum::<usize>()
            + self.regexes.len() * 256;
        let own = IndexStats {
            exact: self.exact.len(),
            prefixes: self.prefix_count,
            digit_patterns: self.digit_count,
            regexes: self.regexes.len(),
            metas: self.metas.len(),
            exact_bytes: self.exact.bytes(),
            other_bytes: other,
            block_numbers: self.blocks.len(),
            block_bytes: self.blocks.bytes(),
        };
        match &self.callback {
            Some(c) => own.plus(&c.stats()),
            None => own,
        }
    }

    /// Entry count by list name.
    pub fn count_by_list(&self) -> HashMap<Arc<str>, usize> {
        let mut out: HashMap<Arc<str>, usize> = HashMap::new();
        self.for_each(|_, meta| *out.entry(meta.list.clone()).or_default() += 1);
        out
    }

    /// Visit every entry (pattern, metadata); an entry listed twice is visited twice.
    pub fn for_each(&self, mut f: impl FnMut(Pattern, &Arc<EntryMeta>)) {
        self.visit(&mut f);
    }

    // Not generic, so that visiting the callback index inside is no recursion of types.
    fn visit(&self, f: &mut dyn FnMut(Pattern, &Arc<EntryMeta>)) {
        let mut each_slot = |slot: u32, pat: &dyn Fn() -> Pattern| {
            if slot & GROUP_BIT != 0 {
                if let Some(g) = self.groups.get((slot & !GROUP_BIT) as usize) {
                    for &m in g.iter() {
                        f(pat(), &self.metas[m as usize]);
                    }
                }
            } else {
                f(pat(), &self.metas[slot as usize]);
            }
        };
        for (k, slot) in self.exact.iter() {
            if let Some(n) = number_from_value(k) {
                each_slot(slot, &|| Pattern::Exact(n));
            }
        }
        for (len, map) in self.prefixes.iter().enumerate() {
            for (&v, &slot) in map {
                if let Some(n) = number_with_len(v, len) {
                    each_slot(slot, &|| Pattern::Prefix(n));
                }
            }
        }
        for g in &self.digit_groups {
            for (&v, &slot) in &g.map {
                let d = DigitPattern::from_parts(g.len, g.mask, v);
                each_slot(slot, &|| Pattern::Digits(d));
            }
        }
        for (r, slot) in &self.regexes {
            each_slot(*slot, &|| Pattern::Regex(r.clone()));
        }
        if let Some(c) = &self.callback {
            c.visit(f);
        }
    }

    /// Every entry of one list, to carry a list over a reload that failed for its file.
    pub fn entries_of(&self, list: &str) -> Vec<(Pattern, Arc<EntryMeta>)> {
        let mut out = Vec::new();
        self.for_each(|p, m| {
            if &*m.list == list {
                out.push((p, m.clone()));
            }
        });
        out
    }

    /// The first live meta of a slot (groups are ordered strongest action first).
    #[inline]
    fn live(&self, slot: u32, now: i64) -> Option<&Arc<EntryMeta>> {
        if slot & GROUP_BIT == 0 {
            let m = self.metas.get(slot as usize)?;
            return m.is_live(now).then_some(m);
        }
        let g = self.groups.get((slot & !GROUP_BIT) as usize)?;
        g.iter()
            .filter_map(|&id| self.metas.get(id as usize))
            .find(|m| m.is_live(now))
    }

    /// The winning entry for a number at `now`, if any entry matches.
    pub fn lookup(&self, n: Number, now: i64) -> Option<Match> {
        if let Some(slot) = self.exact.get(n.value()) {
            if let Some(m) = self.live(slot, now) {
                return Some(Match {
                    specificity: Specificity::exact(n.len()),
                    action: m.action,
                    pattern: Pattern::Exact(n),
                    meta: m.clone(),
                });
            }
        }
        let mut best: Option<Match> = None;
        let groups = if self.digit_lengths & (1 << n.len()) != 0 {
            &self.digit_groups[..]
        } else {
            &[]
        };
        for g in groups {
            if usize::from(g.len) != n.len() {
                continue;
            }
            let key = g.key(n);
            if let Some(&slot) = g.map.get(&key) {
                if let Some(m) = self.live(slot, now) {
                    let d = DigitPattern::from_parts(g.len, g.mask, key);
                    let cand = Match {
                        specificity: Specificity::digits(d.fixed()),
                        action: m.action,
                        pattern: Pattern::Digits(d),
                        meta: m.clone(),
                    };
                    best = Match::best(best, Some(cand));
                }
            }
        }
        if best.is_some() {
            // Any digit pattern beats any prefix or regex.
            return best;
        }
        let mut lengths = self.prefix_lengths;
        while lengths != 0 {
            let len = 15 - lengths.leading_zeros() as usize;
            lengths &= !(1 << len);
            if len > n.len() {
                continue;
            }
            if let Some(&slot) = self.prefixes[len].get(&n.leading(len)) {
                if let Some(m) = self.live(slot, now) {
                    let p = number_with_len(n.leading(len), len)?;
                    return Some(Match {
                        specificity: Specificity::prefix(len),
                        action: m.action,
                        pattern: Pattern::Prefix(p),
                        meta: m.clone(),
                    });
                }
            }
        }
        self.lookup_regex(n, now)
    }

    fn lookup_regex(&self, n: Number, now: i64) -> Option<Match> {
        if self.regexes.is_empty() {
            return None;
        }
        let prefixed =
            |&&(p, _): &&(Number, usize)| n.len() >= p.len() && n.leading(p.len()) == p.value();
        if self.regex_set.is_none() && !self.regex_prefixed.iter().any(|p| prefixed(&p)) {
            // Nothing could match: skip writing the number out as text.
            return None;
        }
        let (buf, len) = n.to_buf();
        let text = std::str::from_utf8(&buf[..len]).ok()?;
        let mut best: Option<Match> = None;
        let consider = |i: usize, best: &mut Option<Match>| {
            let (r, slot) = &self.regexes[i];
            if let Some(m) = self.live(*slot, now) {
                let cand = Match {
                    specificity: Specificity::REGEX,
                    action: m.action,
                    pattern: Pattern::Regex(r.clone()),
                    meta: m.clone(),
                };
                *best = Match::best(best.take(), Some(cand));
            }
        };
        for r in self.regex_prefixed.iter().filter(|r| prefixed(r)) {
            if self.regexes[r.1].0.regex().is_match(text) {
                consider(r.1, &mut best);
            }
        }
        if let Some((set, members)) = &self.regex_set {
            // `is_match` does not allocate; the full set match only runs when something matched.
            if set.is_match(text) {
                for k in set.matches(text).iter() {
                    consider(members[k], &mut best);
                }
            }
        }
        best
    }
}

impl RuleIndex {
    /// See [`Rules::listed_in`]: an exact number counts when its winning entry in this index
    /// (the first live one, allow first) blocks or warns.
    pub fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        self.blocks.visit(block, |place, slot| {
            let slot = slot.or_else(|| {
                let n = block.number(place)?;
                self.exact.get(n.value())
            });
            if slot
                .and_then(|s| self.live(s, now))
                .is_some_and(|m| m.action != EntryAction::Allow)
            {
                into.insert(place);
            }
        });
    }
}

impl RuleIndex {
    /// See [`Rules::lookup_callback`].
    pub fn lookup_callback(&self, n: Number, now: i64) -> Option<Match> {
        self.callback.as_ref()?.lookup(n, now)
    }
}

impl Rules for RuleIndex {
    fn lookup(&self, number: Number, now: i64) -> Option<Match> {
        RuleIndex::lookup(self, number, now)
    }

    fn listed_in(&self, block: ThousandBlock, now: i64, into: &mut Listed) {
        RuleIndex::listed_in(self, block, now, into);
    }

    fn lookup_callback(&self, number: Number, now: i64) -> Option<Match> {
        RuleIndex::lookup_callback(self, number, now)
    }
}

fn number_from_value(v: u64) -> Option<Number> {
    let len = (1..=MAX_DIGITS).find(|&l| v < super::number::POW10[l])?;
    Number::from_value(v, len)
}

fn number_with_len(v: u64, len: usize) -> Option<Number> {
    Number::from_value(v, len)
}

/// Collects entries and compiles a [`RuleIndex`]. One builder per list file lets a loader stage
/// a file and [`IndexBuilder::merge`] it only when the whole file parsed.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    interned: HashMap<Arc<EntryMeta>, u32>,
    strings: std::collections::HashSet<Arc<str>>,
    metas: Vec<Arc<EntryMeta>>,
    exact: Vec<(u64, u32)>,
    prefixes: Vec<(Number, u32)>,
    digits: Vec<(DigitPattern, u32)>,
    regexes: Vec<(Arc<RegexPattern>, u32)>,
    /// The meta id of the entry added last.
    last_meta: Option<u32>,
    /// Callback entries, staged apart (see the module doc).
    callback: Option<Box<IndexBuilder>>,
}

impl IndexBuilder {
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Entries added so far.
    pub fn len(&self) -> usize {
        self.exact.len()
            + self.prefixes.len()
            + self.digits.len()
            + self.regexes.len()
            + self.callback.as_ref().map_or(0, |c| c.len())
    }

    fn callback(&mut self) -> &mut IndexBuilder {
        self.callback.get_or_insert_with(Box::default)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn intern_str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    fn intern_meta(&mut self, meta: EntryMeta) -> u32 {
        if let Some(&id) = self.interned.get(&meta) {
            return id;
        }
        let id = self.metas.len() as u32;
        let meta = Arc::new(meta);
        self.metas.push(meta.clone());
        self.interned.insert(meta, id);
        id
    }

    /// Add an entry of list `list`.
    pub fn add(&mut self, list: &str, entry: &Entry) {
        if is_callback_category(&entry.category) {
            self.callback().add_here(list, entry);
        } else {
            self.add_here(list, entry);
        }
    }

    /// Add to this builder's own entries, whatever the category.
    fn add_here(&mut self, list: &str, entry: &Entry) {
        // Consecutive entries of a file nearly always share their metadata: comparing with the
        // last one is a few short string compares, where interning hashes all of it (most of
        // the load time of a million-line list).
        if let Some(id) = self.last_meta {
            let m = &self.metas[id as usize];
            if m.action == entry.action
                && m.expires == entry.expires
                && *m.list == *list
                && *m.category == *entry.category
                && *m.reason == *entry.reason
                && *m.source == *entry.source
            {
                self.push(&entry.pattern, id);
                return;
            }
        }
        let meta = EntryMeta {
            list: self.intern_str(list),
            action: entry.action,
            category: self.intern_str(&entry.category),
            reason: self.intern_str(&entry.reason),
            source: self.intern_str(&entry.source),
            expires: entry.expires,
        };
        self.add_meta_here(&entry.pattern, &meta);
    }

    /// Add a pattern with metadata taken from another index (carrying a list over a reload).
    pub fn add_with_meta(&mut self, pattern: &Pattern, meta: &EntryMeta) {
        if meta.is_callback() {
            self.callback().add_meta_here(pattern, meta);
        } else {
            self.add_meta_here(pattern, meta);
        }
    }

    fn add_meta_here(&mut self, pattern: &Pattern, meta: &EntryMeta) {
        let meta = EntryMeta {
            list: self.intern_str(&meta.list),
            category: self.intern_str(&meta.category),
            reason: self.intern_str(&meta.reason),
            source: self.intern_str(&meta.source),
            ..meta.clone()
        };
        let id = self.intern_meta(meta);
        self.last_meta = Some(id);
        self.push(pattern, id);
    }

    fn push(&mut self, pattern: &Pattern, id: u32) {
        match pattern {
            Pattern::Exact(n) => self.exact.push((n.value(), id)),
            Pattern::Prefix(p) => self.prefixes.push((*p, id)),
            Pattern::Digits(d) => self.digits.push((*d, id)),
            Pattern::Regex(r) => self.regexes.push((r.clone(), id)),
        }
    }

    /// Move every entry of `other` into this builder.
    pub fn merge(&mut self, mut other: IndexBuilder) {
        if let Some(c) = other.callback.take() {
            self.callback().merge(*c);
        }
        let map: Vec<u32> = other
            .metas
            .iter()
            .map(|m| {
                let m = EntryMeta {
                    list: self.intern_str(&m.list),
                    category: self.intern_str(&m.category),
                    reason: self.intern_str(&m.reason),
                    source: self.intern_str(&m.source),
                    ..(**m).clone()
                };
                self.intern_meta(m)
            })
            .collect();
        let remap = |id: u32| map[id as usize];
        self.exact.reserve(other.exact.len());
        self.exact
            .extend(other.exact.into_iter().map(|(k, id)| (k, remap(id))));
        self.prefixes
            .extend(other.prefixes.into_iter().map(|(k, id)| (k, remap(id))));
        self.digits
            .extend(other.digits.into_iter().map(|(k, id)| (k, remap(id))));
        self.regexes
            .extend(other.regexes.into_iter().map(|(k, id)| (k, remap(id))));
    }

    /// Compile. Entries sharing a pattern become a group ordered strongest action first, so the
    /// lookup takes the first live one.
    // Long on purpose: the index is compiled in one pass whose steps share their buffers.
    #[allow(clippy::too_many_lines)]
    pub fn build(self) -> RuleIndex {
        let IndexBuilder {
            metas,
            mut exact,
            prefixes,
            digits,
            regexes,
            callback,
            ..
        } = self;
        let callback = callback.map(|c| Box::new(c.build()));
        let mut groups: Vec<Box<[u32]>> = Vec::new();
        // Sorted by id within a rank so that `dedup` sees repeated ids side by side.
        let rank = |id: &u32| (std::cmp::Reverse(metas[*id as usize].rank()), *id);
        let make_slot = |mut ids: Vec<u32>, groups: &mut Vec<Box<[u32]>>| -> u32 {
            ids.sort_by_key(rank);
            ids.dedup();
            if ids.len() == 1 {
                ids[0]
            } else {
                groups.push(ids.into_boxed_slice());
                (groups.len() as u32 - 1) | GROUP_BIT
            }
        };

        // Exact numbers: sort to find duplicates, fold each run of one number into one slot (in
        // place: this vector is the largest thing a reload holds), then fill the table.
        exact.sort_unstable();
        let mut kept = 0;
        let mut i = 0;
        while i < exact.len() {
            let key = exact[i].0;
            let mut j = i + 1;
            while j < exact.len() && exact[j].0 == key {
                j += 1;
            }
            let slot = if j - i == 1 {
                exact[i].1
            } else {
                make_slot(exact[i..j].iter().map(|e| e.1).collect(), &mut groups)
            };
            exact[kept] = (key, slot);
            kept += 1;
            i = j;
        }
        exact.truncate(kept);
        let table = ExactTable::build(&exact);
        let blocks = BlockTable::build(&exact, |slot| {
            let ids: &[u32] = if slot & GROUP_BIT == 0 {
                std::slice::from_ref(&slot)
            } else {
                groups.get((slot & !GROUP_BIT) as usize).map_or(&[], |g| g)
            };
            ids.iter()
                .any(|&id| metas[id as usize].action != EntryAction::Allow)
        });
        drop(exact);

        let mut by_prefix: HashMap<Number, Vec<u32>> = HashMap::new();
        for (p, id) in prefixes {
            by_prefix.entry(p).or_default().push(id);
        }
        let mut prefix_maps: Vec<FastMap<u32>> =
            (0..=MAX_DIGITS).map(|_| FastMap::default()).collect();
        let mut prefix_lengths = 0u16;
        let prefix_count = by_prefix.len();
        for (p, ids) in by_prefix {
            prefix_lengths |= 1 << p.len();
            prefix_maps[p.len()].insert(p.value(), make_slot(ids, &mut groups));
        }

        let mut by_digits: HashMap<DigitPattern, Vec<u32>> = HashMap::new();
        for (d, id) in digits {
            by_digits.entry(d).or_default().push(id);
        }
        let digit_count = by_digits.len();
        let mut digit_groups: Vec<DigitGroup> = Vec::new();
        for (d, ids) in by_digits {
            let slot = make_slot(ids, &mut groups);
            let pos = digit_groups
                .iter()
                .position(|g| usize::from(g.len) == d.len() && g.mask == d.mask());
            let g = match pos {
                Some(p) => &mut digit_groups[p],
                None => {
                    let fixed = d.mask().count_ones();
                    // Bit i is digit i from the first, so "the first k fixed" is the low k bits.
                    let leading =
                        (u32::from(d.mask()) == (1u32 << fixed) - 1).then_some(fixed as u8);
                    digit_groups.push(DigitGroup {
                        len: d.len() as u8,
                        mask: d.mask(),
                        leading,
                        map: FastMap::default(),
                    });
                    let last = digit_groups.len() - 1;
                    &mut digit_groups[last]
                }
            };
            g.map.insert(d.value(), slot);
        }
        digit_groups.sort_by_key(|g| (g.len, std::cmp::Reverse(g.mask.count_ones()), g.mask));
        let digit_lengths = digit_groups.iter().fold(0u16, |m, g| m | 1 << g.len);

        let mut by_regex: Vec<(Arc<RegexPattern>, Vec<u32>)> = Vec::new();
        for (r, id) in regexes {
            match by_regex.iter_mut().find(|(x, _)| x.source() == r.source()) {
                Some((_, ids)) => ids.push(id),
                None => by_regex.push((r, vec![id])),
            }
        }
        let regexes: Vec<(Arc<RegexPattern>, u32)> = by_regex
            .into_iter()
            .map(|(r, ids)| (r, make_slot(ids, &mut groups)))
            .collect();
        let mut regex_prefixed = Vec::new();
        let mut unprefixed = Vec::new();
        for (i, (r, _)) in regexes.iter().enumerate() {
            match r.required_prefix() {
                Some(p) => regex_prefixed.push((p, i)),
                None => unprefixed.push(i),
            }
        }
        // Each expression compiled on its own at parse time, so the set compiles too; if the
        // combined automaton is refused for size, those entries cannot match rather than panic.
        let regex_set = if unprefixed.is_empty() {
            None
        } else {
            regex::RegexSetBuilder::new(unprefixed.iter().map(|&i| regexes[i].0.source()))
                .size_limit(64 << 20)
                .build()
                .ok()
                .map(|set| (set, unprefixed))
        };

        RuleIndex {
            metas,
            groups,
            exact: table,
            prefixes: prefix_maps,
            prefix_lengths,
            prefix_count,
            digit_groups,
            digit_lengths,
            digit_count,
            regexes,
            regex_prefixed,
            regex_set,
            blocks,
            callback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, action: &str, expires: Option<i64>) -> Entry {
        Entry {
            pattern: Pattern::parse(p).unwrap(),
            action: EntryAction::parse(action).unwrap(),
            category: "test".into(),
            reason: format!("{action} {p}"),
            source: "unit".into(),
            expires,
        }
    }

    fn index(entries: &[(&str, &str, Option<i64>)]) -> RuleIndex {
        let mut b = IndexBuilder::new();
        for (p, a, e) in entries {
            b.add("t", &entry(p, a, *e));
        }
        b.build()
    }

    fn win(idx: &RuleIndex, n: &str, now: i64) -> Option<String> {
        idx.lookup(Number::parse_e164(n).unwrap(), now)
            .map(|m| format!("{} {}", m.action, m.pattern))
    }

    /// (pattern, action, expires)
    type Spec<'a> = (&'a str, &'a str, Option<i64>);

    #[test]
    fn callback_entries_match_dialled_numbers_only() {
        let mut b = IndexBuilder::new();
        let mut cb = entry("+18005550199", "block", None);
        cb.category = "callback-tech-support".into();
        b.add("cb", &cb);
        b.add("t", &entry("+1800555*", "warn", None));
        let mut staged = IndexBuilder::new();
        let mut cb2 = entry("+4930*", "warn", None);
        cb2.category = "callback".into();
        staged.add("cb", &cb2);
        b.merge(staged);
        assert_eq!(b.len(), 3);
        let idx = b.build();
        let n = |s: &str| Number::parse_e164(s).unwrap();
        // As a caller, the callback number meets only the ordinary prefix entry.
        assert_eq!(
            win(&idx, "+18005550199", 0).as_deref(),
            Some("warn +1800555*")
        );
        let hit = idx.lookup_callback(n("+18005550199"), 0).unwrap();
        assert_eq!((hit.action, &*hit.meta.list), (EntryAction::Block, "cb"));
        assert_eq!(
            idx.lookup_callback(n("+493012345"), 0)
                .map(|m| m.pattern.to_string()),
            Some("+4930*".into())
        );
        assert!(idx.lookup_callback(n("+18005550100"), 0).is_none());
        // Callback entries are entries of their list for counting and carrying over.
        assert_eq!(idx.stats().entries(), 3);
        assert_eq!(idx.entries_of("cb").len(), 2);
        // No thousand-block counts them: they say nothing of callers nearby.
        let mut near = Listed::default();
        idx.listed_in(ThousandBlock::of(n("+18005550199")).unwrap(), 0, &mut near);
        assert!(near.is_empty());
    }

    #[test]
    fn precedence_table() {
        // (entries, number, winner as "action pattern")
        let cases: &[(&[Spec], &str, Option<&str>)] = &[
            (
                &[("+12025550143", "block", None)],
                "+12025550143",
                Some("block +12025550143"),
            ),
            (&[("+12025550143", "block", None)], "+12025550144", None),
            // exact beats an X-pattern
            (
                &[
                    ("+120255501XX", "allow", None),
                    ("+12025550143", "warn", None),
                ],
                "+12025550143",
                Some("warn +12025550143"),
            ),
            // an X-pattern beats a longer prefix
            (
                &[
                    ("+1202555014*", "allow", None),
                    ("+120255501XX", "warn", None),
                ],
                "+12025550143",
                Some("warn +120255501XX"),
            ),
            // more fixed digits beat fewer
            (
                &[
                    ("+12025550XXX", "allow", None),
                    ("+120255501XX", "warn", None),
                ],
                "+12025550143",
                Some("warn +120255501XX"),
            ),
            // longer prefix beats shorter
            (
                &[("+1*", "allow", None), ("+1202*", "warn", None)],
                "+12025550143",
                Some("warn +1202*"),
            ),
            // shorter prefix beats a regex
            (
                &[(r"/^\+1202555/", "allow", None), ("+1*", "warn", None)],
                "+12025550143",
                Some("warn +1*"),
            ),
            (
                &[(r"/^\+1202555/", "block", None)],
                "+12025550143",
                Some(r"block /^\+1202555/"),
            ),
            // equal specificity: allow beats block beats warn
            (
                &[
                    ("+12025550143", "block", None),
                    ("+12025550143", "allow", None),
                ],
                "+12025550143",
                Some("allow +12025550143"),
            ),
            (
                &[
                    ("+12025550143", "warn", None),
                    ("+12025550143", "block", None),
                ],
                "+12025550143",
                Some("block +12025550143"),
            ),
            (
                &[("+1900*", "warn", None), ("+1900*", "block", None)],
                "+19005550100",
                Some("block +1900*"),
            ),
            (
                &[(r"/^\+1900/", "warn", None), (r"/^\+19/", "block", None)],
                "+19005550100",
                Some(r"block /^\+19/"),
            ),
            // expired entries do not match, and fall through to the next
            (
                &[("+12025550143", "block", Some(100))],
                "+12025550143",
                None,
            ),
            (
                &[
                    ("+12025550143", "allow", Some(100)),
                    ("+12025550143", "warn", None),
                ],
                "+12025550143",
                Some("warn +12025550143"),
            ),
            (
                &[
                    ("+12025550143", "block", Some(100)),
                    ("+1202*", "warn", None),
                ],
                "+12025550143",
                Some("warn +1202*"),
            ),
            (
                &[("+12025550143", "block", Some(1001))],
                "+12025550143",
                Some("block +12025550143"),
            ),
            // X-patterns fixed only in their first digits (the one-division key) and fixed
            // elsewhere (the digit loop) compare by fixed digits alike
            (
                &[
                    ("+1202555XXXX", "allow", None),
                    ("+1X025550143", "warn", None),
                ],
                "+12025550143",
                Some("warn +1X025550143"),
            ),
            (
                &[
                    ("+1202555XXXX", "warn", None),
                    ("+1X02555XXXX", "allow", None),
                ],
                "+12025550143",
                Some("warn +1202555XXXX"),
            ),
            (&[("+1202555XXXX", "warn", None)], "+12025560143", None),
            (&[("+1X025550143", "warn", None)], "+13025550144", None),
            // patterns of another length are skipped and the prefix still found
            (
                &[("+12025550XXXX", "block", None), ("+1202*", "warn", None)],
                "+12025550143",
                Some("warn +1202*"),
            ),
            // an anchored regex off this caller's prefix does not hide an unanchored one
            (
                &[(r"/^\+2126/", "block", None), (r"/0143$/", "warn", None)],
                "+12025550143",
                Some(r"warn /0143$/"),
            ),
            (&[(r"/^\+2126/", "block", None)], "+12025550143", None),
            (
                &[(r"/^\+2126/", "block", None), (r"/^\+1202/", "warn", None)],
                "+12025550143",
                Some(r"warn /^\+1202/"),
            ),
            // a prefix as long as the number matches it
            (&[("+1900*", "warn", None)], "+1900", Some("warn +1900*")),
            (&[("+19005*", "warn", None)], "+1900", None),
        ];
        for (entries, n, want) in cases {
            let idx = index(entries);
            assert_eq!(win(&idx, n, 1000).as_deref(), *want, "{entries:?} {n}");
        }
    }

    #[test]
    fn many_exact_entries_all_found() {
        let mut b = IndexBuilder::new();
        let base = 12_025_550_000u64;
        for i in 0..5000u64 {
            let n = Number::from_digits((base + i * 7).to_string().as_bytes()).unwrap();
            b.add(
                "big",
                &Entry {
                    pattern: Pattern::Exact(n),
                    action: EntryAction::Block,
                    category: "scam".into(),
                    reason: "r".into(),
                    source: "s".into(),
                    expires: None,
                },
            );
        }
        let idx = b.build();
        for i in 0..5000u64 {
            let hit = Number::from_digits((base + i * 7).to_string().as_bytes()).unwrap();
            assert!(idx.lookup(hit, 0).is_some(), "{hit}");
            let miss = Number::from_digits((base + i * 7 + 1).to_string().as_bytes()).unwrap();
            assert!(idx.lookup(miss, 0).is_none(), "{miss}");
        }
        let s = idx.stats();
        assert_eq!(s.exact, 5000);
        assert_eq!(s.metas, 1);
        assert!(s.bytes_per_exact() <= 40.0, "{}", s.bytes_per_exact());
    }

    #[test]
    fn merge_and_entries_of_round_trip() {
        let mut a = IndexBuilder::new();
        a.add("a", &entry("+12025550143", "block", None));
        a.add("a", &entry("+1900*", "warn", Some(5)));
        let mut b = IndexBuilder::new();
        b.add("b", &entry("+4420790XXXXX", "warn", None));
        b.add("b", &entry(r"/^\+2126\d{8}$/", "block", None));
        b.add("b", &entry("+12025550143", "allow", None));
        a.merge(b);
        let idx = a.build();
        assert_eq!(idx.stats().entries(), 4);
        let mut got: Vec<String> = idx
            .entries_of("b")
            .into_iter()
            .map(|(p, m)| format!("{} {p}", m.action))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                r"block /^\+2126\d{8}$/",
                "warn +4420790XXXXX",
                "allow +12025550143",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
            .tap_sort()
        );
        let counts = idx.count_by_list();
        assert_eq!(counts.get("a").copied(), Some(2));
        assert_eq!(counts.get("b").copied(), Some(3));
        // carrying a list over into a new index keeps it intact
        let mut c = IndexBuilder::new();
        for (p, m) in idx.entries_of("a") {
            c.add_with_meta(&p, &m);
        }
        let idx2 = c.build();
        assert_eq!(
            win(&idx2, "+12025550143", 0).as_deref(),
            Some("block +12025550143")
        );
        assert_eq!(
            win(&idx2, "+19005550100", 0).as_deref(),
            Some("warn +1900*")
        );
        assert_eq!(win(&idx2, "+19005550100", 5), None);
    }

    trait TapSort {
        fn tap_sort(self) -> Self;
    }
    impl TapSort for Vec<String> {
        fn tap_sort(mut self) -> Self {
            self.sort();
            self
        }
    }

    fn listed(idx: &RuleIndex, caller: &str, now: i64) -> Vec<u16> {
        let n = Number::parse_e164(caller).unwrap();
        let mut l = Listed::default();
        idx.listed_in(ThousandBlock::of(n).unwrap(), now, &mut l);
        l.iter().collect()
    }

    #[test]
    fn listed_numbers_per_block() {
        let mut b = IndexBuilder::new();
        let mut add = |list: &str, specs: &[Spec]| {
            for (p, a, e) in specs {
                b.add(list, &entry(p, a, *e));
            }
        };
        add(
            "scam",
            &[
                ("+12025550101", "block", None),
                ("+12025550102", "warn", None),
                // allowed in the same list: the allow wins, the number does not count
                ("+12025550103", "block", None),
                ("+12025550103", "allow", None),
                // allow only
                ("+12025550104", "allow", None),
                // expired at 1000; another one expiring later
                ("+12025550105", "block", Some(1000)),
                ("+12025550106", "warn", Some(5000)),
                // ranges cover their numbers already and never count
                ("+1202555011X", "block", None),
                ("+1202555012*", "block", None),
                (r"/^\+1202555013\d$/", "block", None),
                // other blocks
                ("+12025551101", "block", None),
                ("+120255501010", "block", None),
            ],
        );
        // A second list repeating a number and adding one: still one number each.
        add(
            "feed",
            &[
                ("+12025550101", "warn", None),
                ("+12025550999", "block", None),
            ],
        );
        // An allow in one list over a block in another: this index's winner is the allow.
        add("ok", &[("+12025550102", "allow", Some(2000))]);
        let idx = b.build();
        assert_eq!(listed(&idx, "+12025550143", 0), vec![101, 105, 106, 999]);
        assert_eq!(listed(&idx, "+12025550143", 1500), vec![101, 106, 999]);
        // The allow on 102 expired at 2000: its warn counts again.
        assert_eq!(listed(&idx, "+12025550143", 2000), vec![101, 102, 106, 999]);
        assert_eq!(listed(&idx, "+12025550143", 5000), vec![101, 102, 999]);
        assert_eq!(listed(&idx, "+12025551000", 0), vec![101]);
        assert_eq!(listed(&idx, "+120255501000", 0), vec![10]);
        assert_eq!(listed(&idx, "+12025552000", 0), Vec::<u16>::new());
        let s = idx.stats();
        // 101, 102, 103, 105, 106, 999, 1101 and the 12-digit one; 104 allows only.
        assert_eq!(s.block_numbers, 8);
        assert!(s.block_bytes > 0);
        assert_eq!(RuleIndex::empty().stats().block_numbers, 0);
    }

    #[test]
    fn a_do_not_originate_block_beats_an_allow_of_the_same_pattern() {
        let dno = |p: &str| Entry {
            category: "dno".into(),
            ..entry(p, "block", None)
        };
        let mut b = IndexBuilder::new();
        b.add("ops-allow", &entry("+443007906801", "allow", None));
        b.add("do-not-originate", &dno("+443007906801"));
        b.add("ops-allow", &entry("+1800642*", "allow", None));
        b.add("do-not-originate", &dno("+1800642*"));
        b.add("do-not-originate", &dno("+1888280*"));
        b.add("ops-allow", &entry("+18882804331", "allow", None));
        let idx = b.build();
        let at = |n: &str| {
            let m = idx.lookup(Number::parse_e164(n).unwrap(), 0).unwrap();
            format!("{} {} {}", m.meta.list, m.action, m.pattern)
        };
        // Whichever list holds the allow, a call from an inbound-only number is spoofed.
        assert_eq!(at("+443007906801"), "do-not-originate block +443007906801");
        assert_eq!(at("+18006427676"), "do-not-originate block +1800642*");
        // A more specific allow inside a DNO range is the operator's deliberate carve-out.
        assert_eq!(at("+18882804331"), "ops-allow allow +18882804331");

        // The same holds between two indexes (a file and the store's live overlay).
        let one = |e: Entry| {
            let mut b = IndexBuilder::new();
            b.add(if e.category == "dno" { "dno" } else { "ops" }, &e);
            b.build()
                .lookup(Number::parse_e164("+443007906801").unwrap(), 0)
        };
        let allow = one(entry("+443007906801", "allow", None));
        let block = one(dno("+443007906801"));
        let won = Match::best(allow.clone(), block.clone()).unwrap();
        assert_eq!(&*won.meta.list, "dno");
        let won = Match::best(block, allow).unwrap();
        assert_eq!(&*won.meta.list, "dno");
    }

    #[test]
    fn match_best_prefers_specific_then_action() {
        let idx = index(&[("+1202*", "block", None)]);
        let overlay = index(&[("+12025550143", "warn", None)]);
        let n = Number::parse_e164("+12025550143").unwrap();
        let w = Match::best(idx.lookup(n, 0), overlay.lookup(n, 0)).unwrap();
        assert_eq!(w.pattern.to_string(), "+12025550143");
        assert_eq!(w.to_entry().action, EntryAction::Warn);
        assert!(Match::best(None, None).is_none());
    }
}
