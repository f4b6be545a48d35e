//! A bounded local cache of ranged reads of immutable objects (block chunks and indexes read
//! from a bucket). Blocks never change once created, so a cached range never goes stale; what
//! is cached is the object's bytes as stored (AES-256-GCM ciphertext), so the cache is
//! encrypted like its source. Files are named by a hash of the key and range (no tenant or block
//! name on disk), 0600 under a 0700 directory, emptied at start, evicted least recently used.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tv_crypto::fsio;

use super::{ObjectError, ObjectMeta, Objects, PutMode, SharedObjects};

/// Which keys are immutable block objects (`blocks/...`, also under a node's prefix).
fn cacheable(key: &str) -> bool {
    key.starts_with("blocks/") || key.contains("/blocks/")
}

struct Entry {
    bytes: u64,
    used: u64,
    /// The object it is a range of.
    key: String,
}

/// Cached ranges by name, their total size, and the names of each object's ranges.
#[derive(Default)]
struct Cached {
    ranges: HashMap<String, Entry>,
    total: u64,
    by_key: HashMap<String, Vec<String>>,
}

impl Cached {
    fn remove(&mut self, name: &str) -> Option<Entry> {
        let e = self.ranges.remove(name)?;
        self.total -= e.bytes;
        if let Some(v) = self.by_key.get_mut(&e.key) {
            v.retain(|n| n != name);
            if v.is_empty() {
                self.by_key.remove(&e.key);
            }
        }
        Some(e)
    }
}

/// A read cache in front of another store.
pub struct RangeCache {
    inner: SharedObjects,
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<Cached>,
    clock: AtomicU64,
    /// Reads served from the cache, and from the store.
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl std::fmt::Debug for RangeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeCache")
            .field("inner", &self.inner.describe())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl RangeCache {
    /// A cache of at most `max_bytes` under `dir` (emptied now).
    pub fn new(inner: SharedObjects, dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        fsio::create_private_dir(&dir)?;
        Ok(RangeCache {
            inner,
            dir,
            max_bytes,
            state: Mutex::new(Cached::default()),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn name(key: &str, range: &std::ops::Range<u64>) -> String {
        hex::encode(tv_tlog::commit::sha256(
            format!("{key}\n{}-{}", range.start, range.end).as_bytes(),
        ))
    }

    fn remember(&self, key: &str, name: String, data: &[u8]) {
        let len = data.len() as u64;
        if len > self.max_bytes / 4 {
            return;
        }
        let mut st = self.state.lock().expect("cache lock poisoned");
        // Written under the lock, so a concurrent forget() of the key cannot be overtaken.
        if fsio::atomic_write(&self.dir.join(&name), data, 0o600).is_err() {
            return;
        }
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        st.remove(&name);
        st.ranges.insert(
            name.clone(),
            Entry {
                bytes: len,
                used: now,
                key: key.to_owned(),
            },
        );
        st.total += len;
        st.by_key.entry(key.to_owned()).or_default().push(name);
        while st.total > self.max_bytes {
            let Some(oldest) = st
                .ranges
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            st.remove(&oldest);
            let _ = std::fs::remove_file(self.dir.join(&oldest));
        }
    }

    /// Drops every cached range of `key` (deleted, or about to be created again: a block
    /// rewritten after a crash has another data key under the same name).
    fn forget(&self, key: &str) {
        let mut st = self.state.lock().expect("cache lock poisoned");
        for name in st.by_key.get(key).cloned().unwrap_or_default() {
            st.remove(&name);
            let _ = std::fs::remove_file(self.dir.join(&name));
        }
    }

    fn recall(&self, name: &str) -> Option<Vec<u8>> {
        {
            let mut st = self.state.lock().expect("cache lock poisoned");
            let e = st.ranges.get_mut(name)?;
            e.used = self.clock.fetch_add(1, Ordering::Relaxed);
        }
        std::fs::read(self.dir.join(name)).ok()
    }
}

impl Objects for RangeCache {
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta, ObjectError> {
        self.forget(key);
        self.inner.put(key, data, mode)
    }
    fn get(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), ObjectError> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, ObjectError> {
        if !cacheable(key) {
            return self.inner.get_range(key, range);
        }
        let name = Self::name(key, &range);
        if let Some(b) = self.recall(&name) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let b = self.inner.get_range(key, range)?;
        self.remember(key, name, &b);
        Ok(b)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.forget(key);
        self.inner.delete(key)
    }
    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        self.inner.list_dirs(prefix)
    }
    fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        mode: PutMode,
    ) -> Result<ObjectMeta, ObjectError> {
        self.forget(key);
        self.inner.put_file(key, path, mode)
    }
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.inner.local_path(key)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::LocalDir;
    use std::sync::Arc;

    #[test]
    fn ranges_of_blocks_are_served_from_the_cache_and_evicted_oldest_first() {
        let t = tempfile::tempdir().unwrap();
        let store: SharedObjects = Arc::new(LocalDir::new(t.path().join("bucket")));
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        store
            .put("nodes/a/blocks/acme/1.tvb", &data, PutMode::Create)
            .unwrap();
        store
            .put("nodes/a/log/checkpoint", b"cp", PutMode::Create)
            .unwrap();
        let c = RangeCache::new(store.clone(), t.path().join("cache"), 1000).unwrap();
        let r = c.get_range("nodes/a/blocks/acme/1.tvb", 0..200).unwrap();
        assert_eq!(r, &data[..200]);
        assert_eq!(c.get_range("nodes/a/blocks/acme/1.tvb", 0..200).unwrap(), r);
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
        // What is cached is the stored bytes, under a name that says nothing about the key.
        let files: Vec<_> = std::fs::read_dir(t.path().join("cache"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        assert!(!files[0].file_name().to_string_lossy().contains("acme"));
        assert_eq!(
            tv_crypto::fsio::mode_of(&files[0].path()).unwrap() & 0o777,
            0o600
        );
        // Bounded: older ranges go first.
        for i in 1..8u64 {
            c.get_range("nodes/a/blocks/acme/1.tvb", i * 200..i * 200 + 200)
                .unwrap();
        }
        let st = c.state.lock().unwrap();
        assert!(st.total <= 1000, "{} bytes cached", st.total);
        assert!(
            !st.ranges
                .contains_key(&RangeCache::name("nodes/a/blocks/acme/1.tvb", &(0..200)))
        );
        drop(st);
        // A block deleted and written again under its name (a re-seal after a crash) is never
        // served from the old bytes.
        c.delete("nodes/a/blocks/acme/1.tvb").unwrap();
        let other = vec![7u8; 4000];
        c.put("nodes/a/blocks/acme/1.tvb", &other, PutMode::Create)
            .unwrap();
        assert_eq!(
            c.get_range("nodes/a/blocks/acme/1.tvb", 1400..1600)
                .unwrap(),
            &other[1400..1600]
        );
        // Mutable objects are never cached.
        c.get_range("nodes/a/log/checkpoint", 0..2).unwrap();
        c.get_range("nodes/a/log/checkpoint", 0..2).unwrap();
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
    }
}
