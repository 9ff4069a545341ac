//! The rule index's count of listed numbers per thousand-block: which exact numbers of one block
//! an index lists, found with one directory probe instead of a thousand number lookups.
//!
//! Compiled with the index from its sorted exact numbers, so the work is done once per build,
//! off the hot path. Only exact numbers count: a prefix, a digit pattern or a regex already
//! covers its whole range, and saying that its neighbours are "near a listed number" would only
//! repeat it. A number whose entries all allow is left out at build time; expiry and the
//! block-or-warn test are left to the index at lookup, through the number's slot, so an entry
//! that expires stops counting at the same moment it stops matching.
//!
//! Layout, chosen so that a list of millions of numbers spread thinly over a country's numbering
//! costs about 4 bytes per number rather than a directory entry (26 bytes) per thousand-block: a
//! directory of million-blocks (an [`ExactTable`] from `value / 1_000_000` to a run), and per run
//! one `u32` per number, its last six digits (sorted) with its slot packed above them. A
//! thousand-block is a sub-range of one run, found by one binary search within the run.
//!
//! Knows nothing of countries' numbering (which blocks mean something is the block signal's
//! business), nor of what a slot's metadata says.

use super::super::exact::ExactTable;
use super::super::number::{Number, POW10};

/// Shortest number with a thousand-block: below 8 digits the last three are a large share of a
/// small plan, and `value / 1_000_000` could be 0, the directory's empty key.
const MIN_DIGITS: usize = 8;

/// The thousand numbers of one length whose digits agree but for the last three: NANP's pooling
/// unit (`+1 202 555 0xxx`), and the unit most regulators allocate in or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThousandBlock {
    /// The number's value without its last three digits.
    head: u64,
    /// Digits of the block's numbers.
    len: u8,
}

impl ThousandBlock {
    /// The block holding `n`; `None` for numbers shorter than 8 digits.
    pub fn of(n: Number) -> Option<ThousandBlock> {
        (n.len() >= MIN_DIGITS).then(|| ThousandBlock {
            head: n.value() / 1000,
            len: n.len() as u8,
        })
    }

    /// `n`'s place in its block: its last three digits.
    pub fn place(n: Number) -> u16 {
        (n.value() % 1000) as u16
    }

    /// The value of every number of the block without its last three digits.
    pub fn head(self) -> u64 {
        self.head
    }

    /// Digits of the block's numbers.
    pub fn len(self) -> usize {
        usize::from(self.len)
    }

    /// Never true; present for clippy's `len` convention.
    pub fn is_empty(self) -> bool {
        false
    }

    /// The number at `place` (0 to 999) of the block.
    pub fn number(self, place: u16) -> Option<Number> {
        if place >= 1000 {
            return None;
        }
        Number::from_value(self.head * 1000 + u64::from(place), self.len())
    }
}

/// A set of places (0 to 999) in one thousand-block: which of its numbers are listed. Sources
/// add to one set, so a number listed by a file, the store and a feed is still one number.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Listed {
    bits: [u64; 16],
}

impl std::fmt::Debug for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Listed {
    /// Adds `place`; places of 1000 and above are ignored.
    pub fn insert(&mut self, place: u16) {
        if place < 1000 {
            self.bits[usize::from(place / 64)] |= 1 << (place % 64);
        }
    }

    pub fn remove(&mut self, place: u16) {
        if place < 1000 {
            self.bits[usize::from(place / 64)] &= !(1 << (place % 64));
        }
    }

    pub fn contains(&self, place: u16) -> bool {
        place < 1000 && self.bits[usize::from(place / 64)] & (1 << (place % 64)) != 0
    }

    /// Adds every place of `other`.
    pub fn union(&mut self, other: &Listed) {
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a |= b;
        }
    }

    /// Places in `lo..hi`. Reads only the words the range touches (two for a 100-block).
    pub fn count(&self, lo: u16, hi: u16) -> u32 {
        let (lo, hi) = (usize::from(lo.min(1000)), usize::from(hi.min(1000)));
        if lo >= hi {
            return 0;
        }
        let (first, last) = (lo / 64, (hi - 1) / 64);
        let mut n = 0;
        for (w, &word) in self.bits.iter().enumerate().take(last + 1).skip(first) {
            let mut word = word;
            if w == first {
                word &= u64::MAX << (lo % 64);
            }
            let end = hi - w * 64;
            if end < 64 {
                word &= (1u64 << end) - 1;
            }
            n += word.count_ones();
        }
        n
    }

    pub fn len(&self) -> u32 {
        self.count(0, 1000)
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// Every place, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..1000u16).filter(|p| self.contains(*p))
    }
}

/// Bits of a member holding its place in its million-block (0 to 999,999).
const PLACE_BITS: u32 = 20;
const PLACE_MASK: u32 = (1 << PLACE_BITS) - 1;
/// Slots below this are kept in the member's high bits (as slot + 1); the rest (groups, and
/// metadata ids past it, both rare) are found again through the exact table.
const INLINE_SLOTS: u32 = (1 << (32 - PLACE_BITS)) - 1;

/// Exact numbers by thousand-block, with their index slots; immutable once built.
#[derive(Debug, Default)]
pub(crate) struct BlockTable {
    /// `value / 1_000_000` to a run index.
    dir: ExactTable,
    /// Run `r` is `starts[r]..starts[r + 1]` of `members`.
    starts: Box<[u32]>,
    /// Per number: its place in its million-block (ascending within a run) and, above it, its
    /// slot + 1, or 0 when the slot did not fit.
    members: Box<[u32]>,
}

impl BlockTable {
    /// From the index's exact numbers, sorted by value and one per number, keeping those whose
    /// slot `may_count` (some entry of it blocks or warns).
    pub(crate) fn build(exact: &[(u64, u32)], may_count: impl Fn(u32) -> bool) -> BlockTable {
        let low = POW10[MIN_DIGITS - 1];
        let mut dir: Vec<(u64, u32)> = Vec::new();
        let mut starts: Vec<u32> = Vec::new();
        let mut members: Vec<u32> = Vec::new();
        let mut run: Option<u64> = None;
        for &(v, slot) in exact
            .iter()
            .filter(|(v, slot)| *v >= low && may_count(*slot))
        {
            let key = v / 1_000_000;
            if run != Some(key) {
                run = Some(key);
                dir.push((key, starts.len() as u32));
                starts.push(members.len() as u32);
            }
            let inline = if slot < INLINE_SLOTS { slot + 1 } else { 0 };
            members.push((v % 1_000_000) as u32 | inline << PLACE_BITS);
        }
        starts.push(members.len() as u32);
        BlockTable {
            dir: ExactTable::build(&dir),
            starts: starts.into_boxed_slice(),
            members: members.into_boxed_slice(),
        }
    }

    /// Calls `each(place, slot)` for every member of `block`, in ascending place; the slot is
    /// `None` when the caller must look the number up in the exact table.
    #[inline]
    pub(crate) fn visit(&self, block: ThousandBlock, mut each: impl FnMut(u16, Option<u32>)) {
        let Some(run) = self.dir.get(block.head / 1000) else {
            return;
        };
        let run = run as usize;
        let (Some(&a), Some(&b)) = (self.starts.get(run), self.starts.get(run + 1)) else {
            return;
        };
        // Runs hold numbers of one length only: a shorter or longer number has a key with a
        // different digit count, so the head alone picks the run.
        let members = &self.members[a as usize..b as usize];
        let base = (block.head % 1000) as u32 * 1000;
        // One binary search to the block's start; its members (rarely more than a few) follow.
        let lo = members.partition_point(|m| m & PLACE_MASK < base);
        for m in members[lo..]
            .iter()
            .take_while(|m| *m & PLACE_MASK < base + 1000)
        {
            let inline = m >> PLACE_BITS;
            each(((m & PLACE_MASK) - base) as u16, inline.checked_sub(1));
        }
    }

    /// Exact numbers held.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Bytes held: the directory and the members.
    pub(crate) fn bytes(&self) -> usize {
        self.dir.bytes()
            + std::mem::size_of_val(&*self.starts)
            + std::mem::size_of_val(&*self.members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        Number::parse_e164(s).unwrap()
    }

    #[test]
    fn blocks_of_numbers() {
        let b = ThousandBlock::of(n("+12025550143")).unwrap();
        assert_eq!((b.head(), b.len()), (12_025_550, 11));
        assert_eq!(ThousandBlock::place(n("+12025550143")), 143);
        assert_eq!(b.number(143), Some(n("+12025550143")));
        assert_eq!(b.number(0), Some(n("+12025550000")));
        assert_eq!(b.number(1000), None);
        assert_eq!(
            ThousandBlock::of(n("+12025559143")).map(|x| x == b),
            Some(false)
        );
        // The same leading digits one digit longer are another block.
        assert_ne!(ThousandBlock::of(n("+120255501430")), Some(b));
        assert!(ThousandBlock::of(n("+2901234")).is_none());
        assert!(ThousandBlock::of(n("+29012345")).is_some());
    }

    #[test]
    fn listed_set_counts_ranges() {
        let mut l = Listed::default();
        for p in [0u16, 63, 64, 127, 128, 199, 999, 1000, 5000] {
            l.insert(p);
        }
        assert_eq!(l.len(), 7);
        // (lo, hi, count)
        for (lo, hi, want) in [
            (0, 1000, 7),
            (0, 100, 3),
            (100, 200, 3),
            (63, 65, 2),
            (64, 128, 2),
            (900, 1000, 1),
            (200, 999, 0),
            (500, 400, 0),
        ] {
            assert_eq!(l.count(lo, hi), want, "{lo}..{hi}");
        }
        l.remove(63);
        assert!(!l.contains(63) && l.contains(64));
        let mut m = Listed::default();
        m.insert(63);
        m.insert(0);
        l.union(&m);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            vec![0, 63, 64, 127, 128, 199, 999]
        );
        assert!(Listed::default().is_empty() && !l.is_empty());
    }

    #[test]
    fn table_finds_the_members_of_a_block() {
        let mut exact: Vec<(u64, u32)> = [
            (12_025_550_143u64, 1u32),
            (12_025_550_101, 1),
            (12_025_550_999, 1),
            (12_025_551_000, 1),
            (12_025_559_999, 1),
            // allow-only slot: left out
            (12_025_550_150, 7),
            // 12 digits: another block altogether
            (120_255_501_430, 1),
            // too short to have a block
            (1_234_567, 1),
            (12_035_550_001, super::super::GROUP_BIT | 3),
            (12_035_550_002, 4094),
            (12_035_550_003, 4095),
            (12_025_540_999, 1),
        ]
        .to_vec();
        exact.sort_unstable();
        let t = BlockTable::build(&exact, |slot| slot != 7);
        assert_eq!(t.len(), 10);
        let members = |s: &str| {
            let mut v = Vec::new();
            t.visit(ThousandBlock::of(n(s)).unwrap(), |p, slot| {
                v.push((p, slot))
            });
            v
        };
        assert_eq!(
            members("+12025550000"),
            vec![(101, Some(1)), (143, Some(1)), (999, Some(1))]
        );
        assert_eq!(members("+12025551234"), vec![(0, Some(1))]);
        assert_eq!(members("+12025559000"), vec![(999, Some(1))]);
        assert_eq!(members("+12025552000"), vec![]);
        assert_eq!(members("+12025560143"), vec![]);
        assert_eq!(members("+12025540143"), vec![(999, Some(1))]);
        assert_eq!(members("+120255501000"), vec![(430, Some(1))]);
        // Slots too large to pack (groups, many metadata records) are left to the exact table.
        assert_eq!(
            members("+12035550000"),
            vec![(1, None), (2, Some(4094)), (3, None)]
        );
        assert!(t.bytes() > 0);
        assert_eq!(BlockTable::build(&[], |_| true).len(), 0);
    }
}
