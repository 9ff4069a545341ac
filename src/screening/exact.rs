//! The exact-number table of the rule index: millions of E.164 numbers, each with a `u32` slot,
//! laid out so that a lookup, hit or miss, nearly always reads one cache line.
//!
//! Numbers are hashed to a 64-byte bucket of five (number, slot) ways. A full bucket hands a
//! newcomer to the next one and remembers that it did (its overflow flag), so a lookup stops at
//! its home bucket unless that bucket overflowed: with the table half full that is about one
//! lookup in 25. A linear-probing table of single entries (the previous layout) needed three to
//! four probes for a miss at its load, often across a line boundary, so a miss cost about two
//! cache misses and several times the instructions of a hit.
//!
//! Knows nothing of what a slot means (the index's metadata and groups) nor of prefixes,
//! patterns or expiry.

/// Ways per bucket: five `u64` keys and five `u32` slots fill 60 of the 64 bytes.
const WAYS: usize = 5;

/// Marks an empty way; no E.164 number has the value 0.
const EMPTY: u64 = 0;

/// One cache line of the table.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; WAYS],
    slots: [u32; WAYS],
    /// Non-zero when some entry that hashed to this bucket or an earlier one lives past it.
    overflow: u32,
}

/// Exact numbers (as [`super::Number::value`]) to slots; immutable once built.
#[derive(Default)]
pub(crate) struct ExactTable {
    buckets: Box<[Bucket]>,
    len: usize,
}

impl std::fmt::Debug for ExactTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactTable")
            .field("len", &self.len)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

/// The same multiply-xorshift the index uses for its other maps: the keys are phone numbers,
/// not hostile hash inputs in any way that matters for a table built from an operator's lists.
#[inline]
fn mix(k: u64) -> u64 {
    let k = (k ^ (k >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    k ^ (k >> 29)
}

/// The bucket a key starts at: the hash's high bits scaled to the bucket count (no power of two
/// needed, so the table's size follows the entry count instead of doubling past it).
#[inline]
fn home(key: u64, buckets: usize) -> usize {
    ((u128::from(mix(key)) * buckets as u128) >> 64) as usize
}

impl ExactTable {
    /// Build from distinct non-zero keys (the index sorts and groups duplicates first). A zero
    /// key is skipped: it cannot be a number.
    pub(crate) fn build(entries: &[(u64, u32)]) -> ExactTable {
        let count = entries.iter().filter(|e| e.0 != EMPTY).count();
        if count == 0 {
            return ExactTable::default();
        }
        // Half full on average (2.5 of 5 ways): about 25.6 bytes per entry, and a bucket
        // overflows with probability ~4% (Poisson tail), so misses rarely read a second line.
        let n = (count * 2).div_ceil(WAYS).max(1);
        let mut buckets = vec![Bucket::default(); n].into_boxed_slice();
        for &(key, slot) in entries {
            if key == EMPTY {
                continue;
            }
            let mut i = home(key, n);
            loop {
                let b = &mut buckets[i];
                if let Some(w) = b.keys.iter().position(|&k| k == EMPTY) {
                    b.keys[w] = key;
                    b.slots[w] = slot;
                    break;
                }
                // Full: the entry moves on, and lookups that reach here must follow it. The
                // table is never full (at most half its ways are used), so this ends.
                b.overflow = 1;
                i = if i + 1 == n { 0 } else { i + 1 };
            }
        }
        ExactTable {
            buckets,
            len: count,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the buckets.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    /// The slot of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<u32> {
        let n = self.buckets.len();
        if n == 0 || key == EMPTY {
            return None;
        }
        let mut i = home(key, n);
        loop {
            let b = &self.buckets[i];
            // All five compared without early exit: branch-free, and the line is loaded anyway.
            let mut found = None;
            for w in 0..WAYS {
                if b.keys[w] == key {
                    found = Some(b.slots[w]);
                }
            }
            if found.is_some() || b.overflow == 0 {
                // A bucket with a free way never overflowed, so this loop ends there at latest.
                return found;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Every (key, slot), in table order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buckets.iter().flat_map(|b| {
            b.keys
                .iter()
                .zip(b.slots.iter())
                .filter(|(k, _)| **k != EMPTY)
                .map(|(k, s)| (*k, *s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn lookups_by_size() {
        // (entries, key spacing): tiny tables wrap around at the end; a spacing of 1 gives runs
        // of neighbouring numbers, as real lists have.
        let cases: &[(u64, u64)] = &[(1, 1), (2, 1), (3, 7), (7, 1), (1000, 1), (50_000, 13)];
        for &(count, step) in cases {
            let base = 12_025_550_000u64;
            let entries: Vec<(u64, u32)> =
                (0..count).map(|i| (base + i * step, i as u32)).collect();
            let t = ExactTable::build(&entries);
            assert_eq!(t.len(), count as usize);
            for &(k, s) in &entries {
                assert_eq!(t.get(k), Some(s), "{count} entries: hit {k}");
            }
            for i in 0..count {
                let miss = base + i * step + step.max(2) / 2 + count * step;
                assert_eq!(t.get(miss), None, "{count} entries: miss {miss}");
            }
            assert_eq!(t.get(0), None);
            let mut seen: Vec<(u64, u32)> = t.iter().collect();
            seen.sort_unstable();
            assert_eq!(seen, entries, "{count} entries: iter");
        }
    }

    #[test]
    fn overflowing_buckets_stay_reachable() {
        // Every key in one bucket: a table of many buckets whose keys all share a home forces
        // chains through the overflow flags, including the wrap from the last bucket to 0.
        let n_keys = 40u64;
        let probe = ExactTable::build(&(1..=n_keys).map(|k| (k, 0)).collect::<Vec<_>>());
        let buckets = probe.buckets.len();
        let last: Vec<u64> = (1..u64::MAX)
            .filter(|&k| home(k, buckets) == buckets - 1)
            .take(n_keys as usize)
            .collect();
        let entries: Vec<(u64, u32)> = last.iter().map(|&k| (k, k as u32)).collect();
        let t = ExactTable::build(&entries);
        assert_eq!(t.buckets.len(), buckets);
        for &(k, s) in &entries {
            assert_eq!(t.get(k), Some(s), "{k}");
        }
        let absent = (1..u64::MAX)
            .filter(|&k| home(k, buckets) == buckets - 1 && !last.contains(&k))
            .take(5);
        for k in absent {
            assert_eq!(t.get(k), None, "{k}");
        }
    }

    #[test]
    fn empty_table() {
        let t = ExactTable::build(&[]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.get(12_025_550_143), None);
        assert_eq!(t.iter().count(), 0);
    }

    #[test]
    fn about_26_bytes_per_entry() {
        let entries: Vec<(u64, u32)> = (0..100_000u64)
            .map(|i| (10_000_000_000 + i * 3, 1))
            .collect();
        let t = ExactTable::build(&entries);
        let per = t.bytes() as f64 / t.len() as f64;
        assert!((25.0..27.0).contains(&per), "{per}");
    }
}
