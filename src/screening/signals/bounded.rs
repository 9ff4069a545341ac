//! A sharded map with a hard cap per shard, for the per-number and per-address tables that
//! signals keep. Keys are 64-bit hashes, so a flood of long random numbers costs a fixed amount of
//! memory per slot; when a shard is full the least recently used slot goes (CLOCK second-chance,
//! O(1) amortised), and every insert also frees up to two idle slots, so tables shrink again after
//! a burst without a timer task.
//!
//! Knows nothing of what it stores beyond the last time a slot was active.

use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

/// Something stored in a [`BoundedMap`] that knows when it was last useful.
pub trait Aging {
    /// Unix milliseconds after which the slot holds nothing worth keeping.
    fn idle_after_ms(&self) -> u64;
}

/// The keys are already hashes: hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Slot<V> {
    value: V,
    referenced: bool,
}

struct Shard<V> {
    map: HashMap<u64, Slot<V>, BuildHasherDefault<KeyHasher>>,
    clock: VecDeque<u64>,
}

/// A capped, sharded table of `V` keyed by 64-bit hashes.
pub struct BoundedMap<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    cap_per_shard: usize,
    keys: RandomState,
}

impl<V: Aging> BoundedMap<V> {
    /// `cap` is the total number of slots (rounded up to a multiple of the shard count).
    pub fn new(shards: usize, cap: usize) -> Self {
        let shards = shards.clamp(1, 256);
        let cap_per_shard = cap.div_ceil(shards).max(1);
        let v: Vec<_> = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(BuildHasherDefault::default()),
                    clock: VecDeque::new(),
                })
            })
            .collect();
        BoundedMap {
            shards: v.into_boxed_slice(),
            cap_per_shard,
            keys: RandomState::new(),
        }
    }

    /// The table's hash of a string key. Seeded per table so outsiders cannot aim collisions.
    pub fn key(&self, s: &str) -> u64 {
        self.keys.hash_one(s)
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, Shard<V>> {
        let i = (key.rotate_right(17) as usize) % self.shards.len();
        // A poisoned shard only means another thread panicked mid-update of plain counters;
        // the data is still usable, and screening must not stop.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the slot for `key`, creating it with `init` when missing. Returns `f`'s result
    /// and the values pushed out to make room or found idle, so the caller can undo their effects.
    pub fn upsert<R>(
        &self,
        key: u64,
        now_ms: u64,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, Vec<V>) {
        let mut sh = self.shard(key);
        let mut evicted = Vec::new();
        sh.free_idle(now_ms, 2, &mut evicted);
        if !sh.map.contains_key(&key) && sh.map.len() >= self.cap_per_shard {
            sh.evict_one(&mut evicted);
        }
        let sh = &mut *sh;
        let r = match sh.map.entry(key) {
            MapEntry::Occupied(mut o) => {
                let slot = o.get_mut();
                slot.referenced = true;
                f(&mut slot.value)
            }
            MapEntry::Vacant(v) => {
                sh.clock.push_back(key);
                let slot = v.insert(Slot {
                    value: init(),
                    referenced: false,
                });
                f(&mut slot.value)
            }
        };
        (r, evicted)
    }

    /// Reads the slot for `key` without creating it.
    pub fn peek<R>(&self, key: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        let sh = self.shard(key);
        sh.map.get(&key).map(|s| f(&s.value))
    }

    /// Changes the slot for `key` only when it exists.
    pub fn update<R>(&self, key: u64, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut sh = self.shard(key);
        sh.map.get_mut(&key).map(|s| f(&mut s.value))
    }

    /// Removes and returns the slot for `key`.
    pub fn remove(&self, key: u64) -> Option<V> {
        let mut sh = self.shard(key);
        // The key stays in the clock queue until its turn comes; it is skipped there.
        sh.map.remove(&key).map(|s| s.value)
    }

    /// Frees every idle slot; for a periodic sweep by whoever owns a timer.
    pub fn sweep(&self, now_ms: u64) -> Vec<V> {
        let mut out = Vec::new();
        for sh in self.shards.iter() {
            let mut sh = sh.lock().unwrap_or_else(|e| e.into_inner());
            let idle: Vec<u64> = sh
                .map
                .iter()
                .filter(|(_, s)| s.value.idle_after_ms() <= now_ms)
                .map(|(k, _)| *k)
                .collect();
            for k in idle {
                if let Some(s) = sh.map.remove(&k) {
                    out.push(s.value);
                }
            }
            let live: VecDeque<u64> = sh
                .clock
                .iter()
                .copied()
                .filter(|k| sh.map.contains_key(k))
                .collect();
            sh.clock = live;
        }
        out
    }

    /// Slots in use over all shards.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hard cap over all shards.
    pub fn capacity(&self) -> usize {
        self.cap_per_shard * self.shards.len()
    }

    /// Entries in the clock queues (slots plus removed keys not yet skipped); bounded by twice the
    /// capacity because removals are rare next to inserts and the queue is compacted when long.
    pub fn queued(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clock.len())
            .sum()
    }
}

impl<V: Aging> Shard<V> {
    fn free_idle(&mut self, now_ms: u64, budget: usize, out: &mut Vec<V>) {
        for _ in 0..budget {
            let Some(&k) = self.clock.front() else { return };
            match self.map.get(&k) {
                None => {
                    self.clock.pop_front();
                }
                Some(s) if s.value.idle_after_ms() <= now_ms => {
                    self.clock.pop_front();
                    if let Some(s) = self.map.remove(&k) {
                        out.push(s.value);
                    }
                }
                Some(_) => break,
            }
        }
        // Keys removed out of turn linger in the queue; compact before it outgrows the map.
        if self.clock.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.clock.retain(|k| map.contains_key(k));
        }
    }

    fn evict_one(&mut self, out: &mut Vec<V>) {
        // Each pass clears one reference bit, so this ends within two turns of the queue.
        while let Some(k) = self.clock.pop_front() {
            match self.map.get_mut(&k) {
                None => continue,
                Some(s) if s.referenced => {
                    s.referenced = false;
                    self.clock.push_back(k);
                }
                Some(_) => {
                    if let Some(s) = self.map.remove(&k) {
                        out.push(s.value);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V(u64);
    impl Aging for V {
        fn idle_after_ms(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn cap_holds_and_recent_keys_survive() {
        let m: BoundedMap<V> = BoundedMap::new(1, 100);
        let hot = m.key("hot");
        m.upsert(hot, 0, || V(u64::MAX), |_| ());
        let mut evicted = 0;
        for i in 0..10_000u64 {
            // Touch the hot key between inserts so its reference bit is always set.
            m.upsert(hot, 0, || V(u64::MAX), |_| ());
            let (_, ev) = m.upsert(m.key(&i.to_string()), 0, || V(u64::MAX), |_| ());
            evicted += ev.len();
            assert!(m.len() <= 100);
        }
        assert_eq!(evicted, 10_000 + 1 - 100);
        assert!(
            m.peek(hot, |_| ()).is_some(),
            "recently used key was evicted"
        );
        assert!(m.queued() <= 2 * m.capacity() + 64);
    }

    #[test]
    fn idle_slots_are_freed_by_later_inserts_and_sweep() {
        let m: BoundedMap<V> = BoundedMap::new(1, 100);
        for i in 0..50u64 {
            m.upsert(i, 0, || V(1_000), |_| ());
        }
        let (_, ev) = m.upsert(999, 2_000, || V(10_000), |_| ());
        assert_eq!(ev.len(), 2);
        assert_eq!(m.sweep(2_000).len(), 48);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn removals_behind_a_live_slot_do_not_grow_the_queue() {
        // A long-lived slot at the head of the queue (a call without an end event) must not stop
        // the queue from shedding the keys of slots removed behind it.
        let m: BoundedMap<V> = BoundedMap::new(1, 1_000);
        m.upsert(u64::MAX, 0, || V(u64::MAX), |_| ());
        for i in 0..100_000u64 {
            m.upsert(i, 0, || V(u64::MAX), |_| ());
            m.remove(i);
        }
        assert_eq!(m.len(), 1);
        assert!(m.queued() <= 2 * m.len() + 64 + 1, "{}", m.queued());
    }

    #[test]
    fn remove_then_reinsert_keeps_queue_bounded() {
        let m: BoundedMap<V> = BoundedMap::new(2, 10);
        for i in 0..10_000u64 {
            m.upsert(i, 0, || V(u64::MAX), |_| ());
            m.remove(i);
        }
        assert_eq!(m.len(), 0);
        assert!(m.queued() <= 2 * 64 + 2);
    }
}
