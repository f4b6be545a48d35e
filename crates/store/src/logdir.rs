//! The transparency log in the C2SP tlog-tiles layout (issue 3), stored through the storage seam
//! ([`crate::objects`]) under a key prefix (`log/` of the data directory, or of a node's prefix
//! in a bucket): tiles and entry bundles at their resource paths, `checkpoint` (the latest signed
//! note) and `history/<size>` (every signed checkpoint, so consistency between successive ones
//! can be re-checked later).
//!
//! Every object is created once: tiles and bundles are immutable (a partial tile's path carries
//! its width), and so is each history entry. `checkpoint` is the one pointer; it changes only
//! from the version this process last wrote (compare-and-swap), so a second process writing the
//! same log is refused instead of forking it. The pointer is the commit: a history entry is
//! written after it, and put back at open if a crash came between.

use tv_tlog::merkle::MerkleError;
use tv_tlog::tiled::TileStore;

use crate::StoreError;
use crate::objects::{ObjectError, PutMode, SharedObjects};

/// Tiles and bundles under a key prefix.
#[derive(Debug, Clone)]
pub struct ObjTiles {
    objects: SharedObjects,
    prefix: String,
    /// A tile another writer created first with other contents (see [`ObjTiles::take_conflict`]).
    conflict: Option<String>,
}

impl ObjTiles {
    /// `prefix` is empty or ends with `/`.
    pub fn new(objects: SharedObjects, prefix: &str) -> Self {
        Self {
            objects,
            prefix: prefix.to_owned(),
            conflict: None,
        }
    }

    fn key_of(&self, resource: &str) -> Result<String, MerkleError> {
        // Only canonical C2SP resource names.
        if tv_tlog::tiles::parse_path(resource).is_none() {
            return Err(MerkleError::Store(format!("not a tile path: {resource}")));
        }
        Ok(format!("{}{resource}", self.prefix))
    }

    /// Removes what a flush that crashed before signing left behind: tiles and bundles for more
    /// leaves than `size` (the last signed checkpoint's). Without this, a stale partial tile at
    /// a width the next appends step over stays holding hashes of entries that were never
    /// signed, and `verify` rightly reports it. Returns the resource paths removed.
    pub fn discard_unsigned(&mut self, size: u64) -> Result<Vec<String>, ObjectError> {
        let mut removed = Vec::new();
        for o in self.objects.list(&format!("{}tile/", self.prefix))? {
            let res = &o.key[self.prefix.len()..];
            let stale = match tv_tlog::tiles::parse_path(res) {
                Some(tv_tlog::tiles::TileRef::Hashes { level, n, width }) => {
                    width > signed_width(level, n, size)
                }
                Some(tv_tlog::tiles::TileRef::Entries { n, width }) => {
                    width > signed_width(0, n, size)
                }
                None => false,
            };
            if stale {
                self.objects.delete(&o.key)?;
                removed.push(res.to_owned());
            }
        }
        Ok(removed)
    }

    /// The tile a failed write found written by someone else with other contents: another
    /// process is appending to this log.
    pub fn take_conflict(&mut self) -> Option<String> {
        self.conflict.take()
    }

    /// Deletes entry bundle `n` (full and partial), for pruning.
    pub fn delete_bundle(&self, n: u64) -> Result<(), ObjectError> {
        let full = format!(
            "{}{}",
            self.prefix,
            tv_tlog::tiles::entries_path(n, tv_tlog::tiles::TILE_WIDTH)
        );
        for o in self.objects.list(&format!("{full}.p/"))? {
            self.objects.delete(&o.key)?;
        }
        self.objects.delete(&full)
    }
}

impl TileStore for ObjTiles {
    fn read(&self, resource: &str) -> Result<Option<Vec<u8>>, MerkleError> {
        let key = self.key_of(resource)?;
        match self.objects.get(&key) {
            Ok((b, _)) => Ok(Some(b)),
            Err(ObjectError::NotFound(_)) => Ok(None),
            Err(e) => Err(MerkleError::Store(e.to_string())),
        }
    }

    fn write(&mut self, resource: &str, data: &[u8]) -> Result<(), MerkleError> {
        let key = self.key_of(resource)?;
        match self.objects.put(&key, data, PutMode::Create) {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e, ObjectError::AlreadyExists(_)) {
                    self.conflict = Some(key);
                }
                Err(MerkleError::Store(e.to_string()))
            }
        }
    }
}

/// Width of tile `n` at `level` in a tree of `size` leaves (0 when the tree does not reach it).
fn signed_width(level: u8, n: u64, size: u64) -> u64 {
    let count = size >> (8 * level as u32);
    count
        .saturating_sub(n * tv_tlog::tiles::TILE_WIDTH)
        .min(tv_tlog::tiles::TILE_WIDTH)
}

/// The key of the history entry for a checkpoint of `size` leaves signed after one of `prev`
/// leaves (`None`: the log's first), under the log's prefix. Each entry names the one before it,
/// so a deleted entry leaves a gap `verify` sees.
pub fn history_key(size: u64, prev: Option<u64>) -> String {
    match prev {
        Some(p) => format!("history/{size:020}.after-{p:020}"),
        None => format!("history/{size:020}.first"),
    }
}

/// The (size, previous size) a history key names.
pub fn parse_history_key(name: &str) -> Option<(u64, Option<u64>)> {
    let rest = name.rsplit('/').next()?;
    let (size, tail) = rest.split_once('.')?;
    if size.len() != 20 {
        return None;
    }
    let size = size.parse().ok()?;
    if tail == "first" {
        return Some((size, None));
    }
    let p = tail.strip_prefix("after-")?;
    if p.len() != 20 {
        return None;
    }
    Some((size, Some(p.parse().ok()?)))
}

/// The latest checkpoint and the history of all of them.
#[derive(Debug)]
pub struct Checkpoints {
    objects: SharedObjects,
    prefix: String,
    /// The version and size of `checkpoint` this process last read or wrote (`None`: there is
    /// none).
    current: std::sync::Mutex<Option<(String, u64)>>,
    /// A note whose write got no answer (a timeout): it may have landed after all.
    unanswered: std::sync::Mutex<Option<(Vec<u8>, u64)>>,
}

impl Checkpoints {
    /// Opens the checkpoints under `prefix`; a history in the old single-file format
    /// (`checkpoints`, length-prefixed notes) is moved to `history/<size>` objects first, and a
    /// history entry a crash left unwritten is put back from `checkpoint`.
    pub fn open(objects: SharedObjects, prefix: &str) -> Result<Self, StoreError> {
        let c = Self {
            objects,
            prefix: prefix.to_owned(),
            current: std::sync::Mutex::new(None),
            unanswered: std::sync::Mutex::new(None),
        };
        let legacy = format!("{prefix}checkpoints");
        if let Ok((b, _)) = c.objects.get(&legacy) {
            let (notes, torn) = split_history(&b);
            let mut prev = None;
            for n in &notes {
                let size = note_size(n, &legacy)?;
                if prev == Some(size) {
                    // The same size signed twice (a crash between signing and recording): the
                    // first stays.
                    continue;
                }
                match c
                    .objects
                    .put(&c.key(&history_key(size, prev)), n, PutMode::Create)
                {
                    Ok(_) | Err(ObjectError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                prev = Some(size);
            }
            tracing::info!(
                checkpoints = notes.len(),
                torn_bytes = torn,
                "moved the checkpoint history to one object per checkpoint"
            );
            c.objects.delete(&legacy)?;
        }
        if let Some((note, version)) = c.latest_with_version()? {
            let size = note_size(&note, &c.key("checkpoint"))?;
            let recorded = !c
                .objects
                .list(&c.key(&format!("history/{size:020}.")))?
                .is_empty();
            if !recorded {
                // A crash between the pointer and its history entry: the entry before it is
                // the newest one recorded.
                let prev = c
                    .objects
                    .list(&c.key("history/"))?
                    .iter()
                    .filter_map(|o| parse_history_key(&o.key))
                    .map(|(s, _)| s)
                    .filter(|s| *s < size)
                    .max();
                match c
                    .objects
                    .put(&c.key(&history_key(size, prev)), &note, PutMode::Create)
                {
                    Ok(_) | Err(ObjectError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            *c.current.lock().expect("checkpoint lock") = Some((version, size));
        }
        Ok(c)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Records a newly signed checkpoint: the pointer first (only from the version this process
    /// holds), then its history entry.
    pub fn publish(&self, note: &[u8], size: u64) -> Result<(), StoreError> {
        let mut cur = self.current.lock().expect("checkpoint lock");
        if let Some((sent, sent_size)) = self.unanswered.lock().expect("checkpoint lock").take()
            && let Ok((landed, meta)) = self.objects.get(&self.key("checkpoint"))
            && landed == sent
        {
            // The unanswered write landed after all: it is the pointer's version now, and its
            // history entry is written if missing.
            let before = cur.as_ref().map(|c| c.1);
            self.objects
                .put(
                    &self.key(&history_key(sent_size, before)),
                    &sent,
                    PutMode::Create,
                )
                .or_else(|e| match e {
                    ObjectError::AlreadyExists(_) => Ok(Default::default()),
                    e => Err(e),
                })?;
            *cur = Some((meta.version, sent_size));
        }
        let (mode, prev) = match cur.clone() {
            None => (PutMode::Create, None),
            Some((v, prev)) => (PutMode::IfMatch(v), Some(prev)),
        };
        let meta = match self.objects.put(&self.key("checkpoint"), note, mode) {
            Ok(m) => m,
            Err(e @ ObjectError::Unavailable { .. }) => {
                *self.unanswered.lock().expect("checkpoint lock") = Some((note.to_vec(), size));
                return Err(e.into());
            }
            Err(e @ (ObjectError::Conflict { .. } | ObjectError::AlreadyExists(_))) => {
                return Err(StoreError::Fenced(format!(
                    "{}: the log's checkpoint changed under this process ({e}); another process is writing this log",
                    self.objects.describe()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        *cur = Some((meta.version, size));
        match self
            .objects
            .put(&self.key(&history_key(size, prev)), note, PutMode::Create)
        {
            Ok(_) => Ok(()),
            Err(ObjectError::AlreadyExists(k)) => Err(StoreError::Fenced(format!(
                "{k}: a checkpoint of size {size} was already recorded by another signer"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    fn latest_with_version(&self) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        match self.objects.get(&self.key("checkpoint")) {
            Ok((b, m)) => Ok(Some((b, m.version))),
            Err(ObjectError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The current checkpoint note, if any.
    pub fn latest(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.latest_with_version()?.map(|(b, _)| b))
    }

    /// Every checkpoint ever published, oldest first.
    pub fn history(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        history(&*self.objects, &self.prefix)
    }
}

/// The checkpoint history under `prefix`: (key, note), oldest first.
pub fn history_entries(
    objects: &dyn crate::objects::Objects,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for o in objects.list(&format!("{prefix}history/"))? {
        let (b, _) = objects.get(&o.key)?;
        out.push((o.key, b));
    }
    Ok(out)
}

fn history(
    objects: &dyn crate::objects::Objects,
    prefix: &str,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(history_entries(objects, prefix)?
        .into_iter()
        .map(|(_, b)| b)
        .collect())
}

fn note_size(note: &[u8], key: &str) -> Result<u64, StoreError> {
    crate::txlog::note_checkpoint(note)
        .map(|c| c.size)
        .map_err(|reason| StoreError::Corruption {
            path: key.to_owned(),
            offset: 0,
            reason,
        })
}

/// Splits a checkpoint history file in the old format into its notes and the length of a torn
/// tail.
pub fn split_history(b: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut rest = b;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len {
            break;
        }
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    (out, rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::LocalDir;
    use std::sync::Arc;
    use tv_tlog::merkle::MemoryTree;
    use tv_tlog::tiled::TiledLog;

    fn dir_tiles(root: &std::path::Path) -> ObjTiles {
        ObjTiles::new(Arc::new(LocalDir::new(root)), "")
    }

    #[test]
    fn a_tiled_log_on_disk_reopens_and_matches() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("log");
        let mut log = TiledLog::open(dir_tiles(&root), 0);
        let mut mem = MemoryTree::default();
        let mut n = 0u64;
        for batch in [3usize, 300, 1, 700] {
            let es: Vec<Vec<u8>> = (n..n + batch as u64)
                .map(|i| format!("e{i}").into_bytes())
                .collect();
            for e in &es {
                mem.append(e).unwrap();
            }
            n = log.append(&es).unwrap();
        }
        let tiles = TiledLog::open(dir_tiles(&root), n);
        assert_eq!(tiles.root(n).unwrap(), mem.root(n).unwrap());
        assert_eq!(tiles.entry(1000).unwrap(), b"e1000".to_vec());
        for p in [
            "tile/0/000",
            "tile/0/003.p/236",
            "tile/1/000.p/3",
            "tile/entries/003.p/236",
        ] {
            assert!(root.join(p).is_file(), "{p}");
        }
        // Only canonical resource names are accepted.
        let mut raw = dir_tiles(&root);
        assert!(raw.write("../escape", b"x").is_err());
        assert!(raw.read("tile/0/../../etc").is_err());
    }

    #[test]
    fn tiles_a_crashed_flush_wrote_beyond_the_signed_size_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("log");
        let batch = |from: u64, n: u64, tag: &str| -> Vec<Vec<u8>> {
            (from..from + n)
                .map(|i| format!("{tag}{i}").into_bytes())
                .collect()
        };
        let mut log = TiledLog::open(dir_tiles(&root), 0);
        log.append(&batch(0, 300, "e")).unwrap();
        // A flush that wrote its tiles and then crashed before its checkpoint was signed.
        log.append(&batch(300, 20, "lost")).unwrap();
        assert!(root.join("tile/0/001.p/64").is_file());

        let mut tiles = dir_tiles(&root);
        let mut removed = tiles.discard_unsigned(300).unwrap();
        removed.sort();
        assert_eq!(removed, ["tile/0/001.p/64", "tile/entries/001.p/64"]);
        // What the signed size needs stays.
        for p in [
            "tile/0/000",
            "tile/0/001.p/44",
            "tile/1/000.p/1",
            "tile/entries/001.p/44",
        ] {
            assert!(root.join(p).is_file(), "{p}");
        }
        // Different entries at the same indexes, stepping over the old width, hash like a log
        // that never saw the lost ones.
        let mut log = TiledLog::open(tiles, 300);
        let mut mem = MemoryTree::default();
        for e in batch(0, 300, "e").iter().chain(&batch(300, 40, "new")) {
            mem.append(e).unwrap();
        }
        log.append(&batch(300, 40, "new")).unwrap();
        assert_eq!(log.root(340).unwrap(), mem.root(340).unwrap());
        assert!(!root.join("tile/0/001.p/64").exists());
    }
}
