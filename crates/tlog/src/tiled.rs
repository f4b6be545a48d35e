//! A log stored as C2SP tiles and entry bundles behind a small [`TileStore`] trait (a directory
//! on disk in the server, memory in tests). Appending a batch writes every new or grown tile and
//! bundle (c2sp.org/tlog-tiles, "Partial Tiles": partial tiles are written for each size a
//! checkpoint can name); proofs are computed from the stored tiles.

use std::collections::HashMap;

use tlog_tiles::{HASH_SIZE, Hash, Tile, stored_hash_count, stored_hash_index};

use crate::merkle::{self, HashStore, MerkleError};
use crate::tiles::{self, TILE_WIDTH};

/// Where tiles live: keys are C2SP resource paths (`tile/0/000`, `tile/entries/000.p/3`, ...).
pub trait TileStore {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, MerkleError>;
    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), MerkleError>;
}

/// An in-memory [`TileStore`].
#[derive(Default, Debug, Clone)]
pub struct MemoryTiles(pub HashMap<String, Vec<u8>>);

impl TileStore for MemoryTiles {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, MerkleError> {
        Ok(self.0.get(path).cloned())
    }
    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), MerkleError> {
        self.0.insert(path.to_owned(), data.to_vec());
        Ok(())
    }
}

const H: u8 = 8;

/// Width of tile `n` at `level` in a tree of `size` leaves (0 when it does not exist yet).
fn width_at(level: u8, n: u64, size: u64) -> u64 {
    let count = size >> (H as u32 * level as u32);
    count.saturating_sub(n * TILE_WIDTH).min(TILE_WIDTH)
}

/// The log: its tiles and its size.
#[derive(Debug)]
pub struct TiledLog<S: TileStore> {
    store: S,
    size: u64,
}

/// Reads stored hashes from the tiles of a tree of `size`, with not-yet-written hashes on top.
struct TileHashes<'a, S: TileStore> {
    store: &'a S,
    size: u64,
    pending: &'a HashMap<u64, Hash>,
}

impl<S: TileStore> HashStore for TileHashes<'_, S> {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let mut cache: HashMap<(u8, u64), Vec<u8>> = HashMap::new();
        indexes
            .iter()
            .map(|&i| {
                if let Some(h) = self.pending.get(&i) {
                    return Ok(*h);
                }
                let t = Tile::from_index(H, i);
                let (level, n) = (t.level(), t.level_index());
                let w = width_at(level, n, self.size);
                if w < t.width() as u64 {
                    return Err(MerkleError::Store(format!(
                        "stored hash {i} is not in the tiles"
                    )));
                }
                let data = match cache.get(&(level, n)) {
                    Some(d) => d.clone(),
                    None => {
                        let path = tiles::tile_path(level, n, w);
                        let d = self
                            .store
                            .read(&path)?
                            .ok_or_else(|| MerkleError::Store(format!("missing tile {path}")))?;
                        if d.len() != w as usize * HASH_SIZE {
                            return Err(MerkleError::Store(format!(
                                "tile {path} has the wrong size"
                            )));
                        }
                        cache.insert((level, n), d.clone());
                        d
                    }
                };
                Tile::new(H, level, n, w as u32, false)
                    .hash_at_index(&data, i)
                    .map_err(|e| MerkleError::Store(e.to_string()))
            })
            .collect()
    }
}

impl<S: TileStore> TiledLog<S> {
    /// Opens a log of `size` leaves already in `store` (the size comes from the latest checkpoint).
    pub fn open(store: S, size: u64) -> Self {
        Self { store, size }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, e.g. to make its writes durable after an append.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    fn hashes<'a>(&'a self, pending: &'a HashMap<u64, Hash>) -> TileHashes<'a, S> {
        TileHashes {
            store: &self.store,
            size: self.size,
            pending,
        }
    }

    /// Appends `entries` (each at most 65535 bytes) and writes the tiles and bundles they
    /// change. Returns the new size.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<u64, MerkleError> {
        if entries.is_empty() {
            return Ok(self.size);
        }
        if let Some(e) = entries.iter().find(|e| e.len() > tiles::MAX_ENTRY_LEN) {
            return Err(MerkleError::Store(format!(
                "entry of {} bytes is over the {} byte limit of entry bundles",
                e.len(),
                tiles::MAX_ENTRY_LEN
            )));
        }
        let old = self.size;
        let mut pending: HashMap<u64, Hash> = HashMap::new();
        for (k, e) in entries.iter().enumerate() {
            let n = old + k as u64;
            let new = merkle::hashes_to_store(n, e, &self.hashes(&pending))?;
            let first = stored_hash_count(n);
            for (j, h) in new.into_iter().enumerate() {
                pending.insert(first + j as u64, h);
            }
        }
        let new_size = old + entries.len() as u64;
        // Tiles: everything that grew, read through the pending hashes.
        let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
        for t in Tile::new_tiles(H, old, new_size) {
            let (level, n, w) = (t.level(), t.level_index(), t.width() as u64);
            let idx: Vec<u64> = (0..w)
                .map(|i| stored_hash_index(H * level, n * TILE_WIDTH + i))
                .collect();
            let hashes = self.hashes(&pending).read(&idx)?;
            writes.push((
                tiles::tile_path(level, n, w),
                hashes.iter().flat_map(|h| h.0).collect(),
            ));
            if level == 0 {
                // The bundle for the same range: earlier entries from the old partial bundle.
                let start = n * TILE_WIDTH;
                let mut bundle = Vec::new();
                if start < old {
                    let had = old - start;
                    let path = tiles::entries_path(n, had);
                    let prev = self
                        .store
                        .read(&path)?
                        .ok_or_else(|| MerkleError::Store(format!("missing bundle {path}")))?;
                    let count = tiles::split_bundle(&prev)
                        .ok_or_else(|| MerkleError::Store(format!("bundle {path} is malformed")))?
                        .len();
                    if count as u64 != had {
                        return Err(MerkleError::Store(format!(
                            "bundle {path} has {count} entries"
                        )));
                    }
                    bundle = prev;
                }
                for i in start.max(old)..start + w {
                    tiles::push_entry(&mut bundle, &entries[(i - old) as usize])
                        .map_err(|len| MerkleError::Store(format!("entry of {len} bytes")))?;
                }
                writes.push((tiles::entries_path(n, w), bundle));
            }
        }
        for (path, data) in writes {
            self.store.write(&path, &data)?;
        }
        self.size = new_size;
        Ok(new_size)
    }

    /// The root hash of the first `size` leaves (at most the current size).
    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        if size > self.size {
            return Err(MerkleError::OutOfRange {
                index: size,
                size: self.size,
            });
        }
        merkle::root(size, &self.hashes(&HashMap::new()))
    }

    pub fn prove_inclusion(&self, size: u64, index: u64) -> Result<Vec<Hash>, MerkleError> {
        if size > self.size {
            return Err(MerkleError::OutOfRange {
                index: size,
                size: self.size,
            });
        }
        merkle::prove_inclusion(size, index, &self.hashes(&HashMap::new()))
    }

    pub fn prove_consistency(&self, new: u64, old: u64) -> Result<Vec<Hash>, MerkleError> {
        if new > self.size {
            return Err(MerkleError::OutOfRange {
                index: new,
                size: self.size,
            });
        }
        merkle::prove_consistency(new, old, &self.hashes(&HashMap::new()))
    }

    /// The entries of bundle `n` (all of them for a full bundle, the stored ones for the last).
    pub fn bundle(&self, n: u64) -> Result<Vec<Vec<u8>>, MerkleError> {
        let w = width_at(0, n, self.size);
        if w == 0 {
            return Err(MerkleError::OutOfRange {
                index: n * TILE_WIDTH,
                size: self.size,
            });
        }
        let path = tiles::entries_path(n, w);
        let b = self
            .store
            .read(&path)?
            .ok_or_else(|| MerkleError::Store(format!("missing bundle {path}")))?;
        let parts = tiles::split_bundle(&b)
            .ok_or_else(|| MerkleError::Store(format!("bundle {path} is malformed")))?;
        if parts.len() as u64 != w {
            return Err(MerkleError::Store(format!(
                "bundle {path} has {} entries",
                parts.len()
            )));
        }
        Ok(parts.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// Entry `index`, read back from its bundle.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, MerkleError> {
        if index >= self.size {
            return Err(MerkleError::OutOfRange {
                index,
                size: self.size,
            });
        }
        let mut b = self.bundle(index / TILE_WIDTH)?;
        Ok(b.swap_remove((index % TILE_WIDTH) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, leaf_hash, verify_consistency, verify_inclusion};
    use proptest::prelude::*;

    fn entry(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    #[test]
    fn tiles_follow_the_spec_example_shape() {
        // 70,000 leaves: 273 full level-0 tiles + one of width 112, one full level-1 tile + one
        // of width 17, one level-2 tile of width 1 (c2sp.org/tlog-tiles, "Partial Tiles").
        let mut log = TiledLog::open(MemoryTiles::default(), 0);
        let all: Vec<Vec<u8>> = (0..70_000).map(entry).collect();
        for chunk in all.chunks(7_001) {
            log.append(chunk).unwrap();
        }
        let s = &log.store().0;
        assert!(s.contains_key("tile/0/272"));
        assert!(s.contains_key("tile/0/273.p/112"));
        assert!(s.contains_key("tile/1/000"));
        assert!(s.contains_key("tile/1/001.p/17"));
        assert!(s.contains_key("tile/2/000.p/1"));
        assert!(s.contains_key("tile/entries/273.p/112"));
        assert_eq!(s["tile/0/000"].len(), 8192);
        let mut mem = MemoryTree::default();
        for e in &all {
            mem.append(e).unwrap();
        }
        assert_eq!(log.root(70_000).unwrap(), mem.root(70_000).unwrap());
        assert_eq!(log.root(12_345).unwrap(), mem.root(12_345).unwrap());
        assert_eq!(log.entry(69_999).unwrap(), entry(69_999));
        assert_eq!(log.entry(256).unwrap(), entry(256));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn tiled_log_matches_the_memory_tree(batches in proptest::collection::vec(1usize..700, 1..8), i in any::<u64>(), j in any::<u64>()) {
            let mut log = TiledLog::open(MemoryTiles::default(), 0);
            let mut mem = MemoryTree::default();
            let mut n = 0u64;
            for b in batches {
                let es: Vec<Vec<u8>> = (n..n + b as u64).map(entry).collect();
                for e in &es {
                    mem.append(e).unwrap();
                }
                n = log.append(&es).unwrap();
                prop_assert_eq!(log.root(n).unwrap(), mem.root(n).unwrap());
            }
            // Reopening from the store alone gives the same answers.
            let log = TiledLog::open(log.store().clone(), n);
            let root = log.root(n).unwrap();
            let idx = i % n;
            let p = log.prove_inclusion(n, idx).unwrap();
            prop_assert!(verify_inclusion(&p, n, root, idx, leaf_hash(&entry(idx))).is_ok());
            let old = 1 + j % n;
            let c = log.prove_consistency(n, old).unwrap();
            prop_assert!(verify_consistency(&c, n, root, old, mem.root(old).unwrap()).is_ok());
            prop_assert_eq!(log.entry(idx).unwrap(), entry(idx));
        }
    }

    #[test]
    fn oversized_entries_are_refused_before_anything_is_written() {
        let mut log = TiledLog::open(MemoryTiles::default(), 0);
        assert!(log.append(&[vec![0u8; 70_000]]).is_err());
        assert_eq!(log.size(), 0);
        assert!(log.store().0.is_empty());
    }
}
