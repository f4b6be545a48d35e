//! A map of the most recently inserted entries, bounded in two generations instead of evicting
//! one entry per insert (issue 22).
//!
//! The behavioural detectors and the service graph remember the last spans they saw (200,000
//! per tenant) to find a child's parent and a reused span id. Kept as one hash map with a queue
//! of keys to remove, every insert past the cap removed one entry; the removals leave tombstones,
//! so the table doubled (34 MB for 200,000 spans where 17 MB hold them) and each span paid a
//! removal and two queue operations. Here the newer generation takes inserts until it holds half
//! the cap; then the older one is dropped and the newer becomes the older. A lookup sees between
//! half the cap and the cap of the latest entries.

use std::collections::HashMap;
use std::hash::Hash;

pub struct Recent<K, V> {
    newer: HashMap<K, V, ahash::RandomState>,
    older: HashMap<K, V, ahash::RandomState>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            newer: HashMap::default(),
            older: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn get(&self, k: &K) -> Option<&V> {
        self.newer.get(k).or_else(|| self.older.get(k))
    }

    /// Inserts (or replaces) `k`, keeping at most `cap` entries (at least the latest `cap / 2`).
    pub fn insert(&mut self, k: K, v: V, cap: usize) {
        if self.newer.len() >= (cap / 2).max(1) && !self.newer.contains_key(&k) {
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.clear();
        }
        self.newer.insert(k, v);
    }

    /// Entries held (a key in both generations counts twice).
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newer.is_empty() && self.older.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_between_half_the_cap_and_the_cap_of_the_latest() {
        let mut r: Recent<u32, u32> = Recent::default();
        for i in 0..10_000u32 {
            assert_eq!(r.get(&i), None);
            r.insert(i, i * 2, 1_000);
            assert!(r.len() <= 1_000, "{} held at {i}", r.len());
            // The latest half of the cap is always there, with its value.
            for back in 0..500.min(i + 1) {
                assert_eq!(r.get(&(i - back)), Some(&((i - back) * 2)));
            }
            // Nothing older than the cap.
            if i >= 1_000 {
                assert_eq!(r.get(&(i - 1_000)), None);
            }
        }
        assert!(r.len() >= 500);
        // Replacing a held key keeps one entry for it, with the new value.
        let held = r.len();
        r.insert(9_999, 7, 1_000);
        assert_eq!((r.get(&9_999), r.len()), (Some(&7), held));
        // A key held only by the older generation answers with its new value.
        let older_key = (0..10_000u32)
            .rev()
            .find(|k| r.older.contains_key(k) && !r.newer.contains_key(k))
            .unwrap();
        r.insert(older_key, 1, 1_000);
        assert_eq!(r.get(&older_key), Some(&1));
    }
}
