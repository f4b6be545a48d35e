//! The transparency log on disk under `DIR/log/` in the C2SP tlog-tiles layout (issue 3): tiles and
//! entry bundles at their resource paths, `checkpoint`, and `checkpoints` — the history of every
//! signed checkpoint, so consistency between successive checkpoints can be re-checked later.
//!
//! Every file is written whole (temp file, fsync, rename); directories touched by an append are
//! fsynced once per [`DirTiles::sync`], so a crash leaves either the old or the new file, never a
//! torn one. Tiles and bundles are immutable once written (a partial tile's path carries its width).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tv_crypto::fsio;
use tv_tlog::merkle::MerkleError;
use tv_tlog::tiled::TileStore;

/// Tiles and bundles in a directory.
#[derive(Debug)]
pub struct DirTiles {
    root: PathBuf,
    dirty: BTreeSet<PathBuf>,
}

impl DirTiles {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        fsio::create_private_dir(root)?;
        Ok(Self {
            root: root.to_owned(),
            dirty: BTreeSet::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, resource: &str) -> Result<PathBuf, MerkleError> {
        // Only canonical C2SP resource names, so nothing can escape the directory.
        if tv_tlog::tiles::parse_path(resource).is_none() {
            return Err(MerkleError::Store(format!("not a tile path: {resource}")));
        }
        Ok(self.root.join(resource))
    }

    /// Removes what a flush that crashed before signing left behind: tiles and bundles for more
    /// leaves than `size` (the last signed checkpoint's) and temporary files never renamed into
    /// place. Without this, a stale partial tile at a width the next appends step over stays on
    /// disk holding hashes of entries that were never signed, and `verify` rightly reports it.
    /// Returns the resource paths removed.
    pub fn discard_unsigned(&mut self, size: u64) -> std::io::Result<Vec<String>> {
        let mut files = Vec::new();
        crate::verify::walk(&self.root.join("tile"), &mut files);
        let mut removed = Vec::new();
        for p in files {
            let Ok(rel) = p.strip_prefix(&self.root) else {
                continue;
            };
            let res = rel.to_string_lossy().into_owned();
            let stale = if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
            {
                true
            } else {
                match tv_tlog::tiles::parse_path(&res) {
                    Some(tv_tlog::tiles::TileRef::Hashes { level, n, width }) => {
                        width > signed_width(level, n, size)
                    }
                    Some(tv_tlog::tiles::TileRef::Entries { n, width }) => {
                        width > signed_width(0, n, size)
                    }
                    None => false,
                }
            };
            if stale {
                std::fs::remove_file(&p)?;
                self.dirty
                    .insert(p.parent().expect("under the tile directory").to_owned());
                removed.push(res);
            }
        }
        self.sync()?;
        Ok(removed)
    }

    /// Makes every write since the last sync durable (one fsync per touched directory).
    pub fn sync(&mut self) -> std::io::Result<()> {
        for d in std::mem::take(&mut self.dirty) {
            fsio::sync_dir(&d)?;
        }
        Ok(())
    }
}

impl TileStore for DirTiles {
    fn read(&self, resource: &str) -> Result<Option<Vec<u8>>, MerkleError> {
        let p = self.path_of(resource)?;
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MerkleError::Store(format!("{}: {e}", p.display()))),
        }
    }

    fn write(&mut self, resource: &str, data: &[u8]) -> Result<(), MerkleError> {
        let p = self.path_of(resource)?;
        let err = |e: std::io::Error| MerkleError::Store(format!("{}: {e}", p.display()));
        let dir = p.parent().expect("tile paths have a parent").to_owned();
        fsio::create_private_dir(&dir).map_err(err)?;
        let tmp = p.with_extension(format!(
            "tmp-{}",
            hex::encode(tv_crypto::random_bytes::<6>())
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(data).and_then(|_| f.sync_data()).map_err(err)?;
        std::fs::rename(&tmp, &p).map_err(err)?;
        self.dirty.insert(dir);
        Ok(())
    }
}

/// Width of tile `n` at `level` in a tree of `size` leaves (0 when the tree does not reach it).
fn signed_width(level: u8, n: u64, size: u64) -> u64 {
    let count = size >> (8 * level as u32);
    count
        .saturating_sub(n * tv_tlog::tiles::TILE_WIDTH)
        .min(tv_tlog::tiles::TILE_WIDTH)
}

/// The latest checkpoint and the history of all of them.
#[derive(Debug)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fsio::create_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Records a newly signed checkpoint: appended to the history (fsynced), then made the current
    /// `checkpoint` (atomic replace).
    pub fn publish(&self, note: &[u8]) -> std::io::Result<()> {
        let hist = self.dir.join("checkpoints");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&hist)?;
        let len = u32::try_from(note.len())
            .map_err(|_| std::io::Error::other("checkpoint note too large"))?;
        let mut rec = len.to_be_bytes().to_vec();
        rec.extend_from_slice(note);
        f.write_all(&rec)?;
        f.sync_data()?;
        fsio::atomic_write(&self.dir.join("checkpoint"), note, 0o644)
    }

    /// The current checkpoint note, if any.
    pub fn latest(&self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join("checkpoint")) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every checkpoint ever published, oldest first. A torn last record (a crash while
    /// appending, before `checkpoint` was replaced) is ignored.
    pub fn history(&self) -> std::io::Result<Vec<Vec<u8>>> {
        Ok(self.history_with_tail()?.0)
    }

    /// The history and the number of bytes after its last whole record (a torn append).
    pub fn history_with_tail(&self) -> std::io::Result<(Vec<Vec<u8>>, usize)> {
        let b = match std::fs::read(self.dir.join("checkpoints")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        Ok(split_history(&b))
    }

    /// Cuts a torn last record off the history (at start, before anything is appended).
    pub fn repair(&self) -> std::io::Result<usize> {
        let (notes, torn) = self.history_with_tail()?;
        if torn > 0 {
            let keep: usize = notes.iter().map(|n| 4 + n.len()).sum();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(self.dir.join("checkpoints"))?;
            f.set_len(keep as u64)?;
            f.sync_all()?;
        }
        Ok(torn)
    }
}

/// Splits a checkpoint history file into its notes and the length of a torn tail.
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
    use tv_tlog::merkle::MemoryTree;
    use tv_tlog::tiled::TiledLog;

    #[test]
    fn a_tiled_log_on_disk_reopens_and_matches() {
        let d = tempfile::tempdir().unwrap();
        let mut log = TiledLog::open(DirTiles::open(&d.path().join("log")).unwrap(), 0);
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
        let tiles = TiledLog::open(DirTiles::open(&d.path().join("log")).unwrap(), n);
        assert_eq!(tiles.root(n).unwrap(), mem.root(n).unwrap());
        assert_eq!(tiles.entry(1000).unwrap(), b"e1000".to_vec());
        for p in [
            "tile/0/000",
            "tile/0/003.p/236",
            "tile/1/000.p/3",
            "tile/entries/003.p/236",
        ] {
            assert!(d.path().join("log").join(p).is_file(), "{p}");
        }
        // Only canonical resource names are accepted.
        let mut raw = DirTiles::open(&d.path().join("log")).unwrap();
        assert!(raw.write("../escape", b"x").is_err());
        assert!(raw.read("tile/0/../../etc").is_err());
        raw.sync().unwrap();
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
        let mut log = TiledLog::open(DirTiles::open(&root).unwrap(), 0);
        log.append(&batch(0, 300, "e")).unwrap();
        // A flush that wrote its tiles and then crashed before its checkpoint was signed, in the
        // middle of writing one more file.
        log.append(&batch(300, 20, "lost")).unwrap();
        std::fs::write(root.join("tile/entries/001.p/64.tmp-0a1b2c"), b"torn").unwrap();
        assert!(root.join("tile/0/001.p/64").is_file());

        let mut tiles = DirTiles::open(&root).unwrap();
        let mut removed = tiles.discard_unsigned(300).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                "tile/0/001.p/64",
                "tile/entries/001.p/64",
                "tile/entries/001.p/64.tmp-0a1b2c"
            ]
        );
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

    #[test]
    fn checkpoint_history_survives_a_torn_append() {
        let d = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(d.path()).unwrap();
        assert!(c.latest().unwrap().is_none());
        c.publish(b"one\n").unwrap();
        c.publish(b"two\n").unwrap();
        assert_eq!(c.latest().unwrap().unwrap(), b"two\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("checkpoints"))
            .unwrap();
        f.write_all(&[0, 0, 1, 0, b'x']).unwrap();
        assert_eq!(
            c.history().unwrap(),
            vec![b"one\n".to_vec(), b"two\n".to_vec()]
        );
        assert_eq!(c.history_with_tail().unwrap().1, 5);
        assert_eq!(c.repair().unwrap(), 5);
        assert_eq!(c.history_with_tail().unwrap().1, 0);
        c.publish(b"three\n").unwrap();
        assert_eq!(c.history().unwrap().len(), 3);
    }
}
