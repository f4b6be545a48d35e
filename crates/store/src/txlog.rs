//! The store's transparency log (issue 3): entries are queued as records commit and blocks seal,
//! and made durable in `DIR/log/` (C2SP tlog-tiles layout) together with a signed checkpoint.
//!
//! Commit path: the WAL writer computes a record's leaf (a pure function of the durable WAL record)
//! and queues it before acknowledging, which fixes its position in the log. Tiles, bundles and a
//! checkpoint signed by both log keys are written at most once per `checkpoint_interval` (and
//! whenever the sealer needs its block leaf durable), so the hot path pays no extra fsync. After a
//! crash, recovery re-derives the leaves of WAL records that the log does not hold yet, in the same
//! order; a WAL segment is deleted only once its block leaves are durable, so every acknowledged
//! batch stays provable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tv_tlog::checkpoint::Checkpoint;
use tv_tlog::leaf::Leaf;
use tv_tlog::merkle::MerkleError;
use tv_tlog::note::{self, Note, NoteSigner};
use tv_tlog::tiled::TiledLog;
use tv_tlog::{Hash, tiles::TILE_WIDTH};

use crate::StoreError;
use crate::logdir::{Checkpoints, ObjTiles};
use crate::objects::{LocalDir, ObjectError, PutMode, SharedObjects};
use tv_crypto::fsio;

/// How the log signs.
#[derive(Clone)]
pub struct LogConfig {
    pub origin: String,
    /// Ed25519 note signer and ML-DSA-44 cosignature signer, in the order their lines appear.
    pub signers: Vec<Arc<dyn NoteSigner>>,
    /// At most one checkpoint per interval while leaves arrive.
    pub checkpoint_interval: Duration,
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("origin", &self.origin)
            .field("signers", &self.signers.len())
            .finish_non_exhaustive()
    }
}

struct Pending {
    entries: Vec<Vec<u8>>,
    /// Index the next queued entry gets.
    next: u64,
}

struct Tree {
    log: TiledLog<ObjTiles>,
    signed_size: u64,
    note: Option<Vec<u8>>,
}

/// What recovery learns from the tail of the log.
#[derive(Debug, Default)]
pub struct Logged {
    /// (segment, key index, counter) -> (leaf index, SHA-256 of the record body).
    pub records: HashMap<(u64, u32, u64), (u64, [u8; 32])>,
    /// SHA-256 of a block file -> leaf index.
    pub blocks: HashMap<[u8; 32], u64>,
}

pub struct TxLog {
    /// Where the log is, for messages (a directory, or a bucket URL and prefix).
    dir: PathBuf,
    objects: SharedObjects,
    /// Key prefix of the log's objects (empty, or ending with `/`).
    prefix: String,
    cfg: LogConfig,
    pending: Mutex<Pending>,
    tree: Mutex<Tree>,
    durable: (Mutex<u64>, Condvar),
    checkpoints: Checkpoints,
    /// Block file digest -> its leaf, for blocks logged by this process or found by recovery, so
    /// a block is never logged twice when sealing is retried.
    blocks: Mutex<HashMap<[u8; 32], u64>>,
    /// Entry bundles below this index are deleted (a multiple of 256; see [`TxLog::prune_below`]).
    min_index: std::sync::atomic::AtomicU64,
}

/// Another node's log, read-only (a cluster): its latest checkpoint, and inclusion proofs
/// against it for the receipts of spans that node committed.
pub struct PeerLog {
    log: TiledLog<ObjTiles>,
    note: Vec<u8>,
    size: u64,
    /// Where the log is, for messages.
    at: PathBuf,
}

impl PeerLog {
    /// Opens the log under `prefix` of `objects` at its latest checkpoint; the tiles must hash to
    /// the checkpoint's root.
    pub fn open(objects: SharedObjects, prefix: &str) -> Result<Self, StoreError> {
        let key = format!("{prefix}checkpoint");
        let (note, _) = objects.get(&key)?;
        let corrupt = |reason: String| StoreError::Corruption {
            path: format!("{}/{key}", objects.describe()),
            offset: 0,
            reason,
        };
        let cp = note_checkpoint(&note).map_err(corrupt)?;
        let log = TiledLog::open(ObjTiles::new(objects.clone(), prefix), cp.size);
        let root = log
            .root(cp.size)
            .map_err(|e| corrupt(format!("reading its tiles: {e}")))?;
        if root != cp.root {
            return Err(corrupt(format!(
                "the tiles do not hash to the checkpoint of size {}",
                cp.size
            )));
        }
        Ok(Self {
            log,
            note,
            size: cp.size,
            at: PathBuf::from(format!("{}/{prefix}", objects.describe())),
        })
    }

    /// The checkpoint (a signed note) proofs are made against.
    pub fn note(&self) -> &[u8] {
        &self.note
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The newest entries, newest first, at most `max` of them, until `f` answers false. Stops
    /// quietly at entries that are gone (a pruned log).
    pub fn scan_back(&self, max: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) {
        let min = self.size.saturating_sub(max);
        let _ = walk_back(&self.log, self.size, min, &self.at, &mut |i, e| Ok(f(i, e)));
    }

    /// Entry `index` and its inclusion proof in the checkpointed tree.
    pub fn prove(&self, index: u64) -> Result<(Vec<u8>, Vec<Hash>), StoreError> {
        let proof = self
            .log
            .prove_inclusion(self.size, index)
            .map_err(|e| merr(&self.at, e))?;
        let entry = self.log.entry(index).map_err(|e| merr(&self.at, e))?;
        Ok((entry, proof))
    }
}

/// Sees one log entry (its index and bytes); answers whether to go on.
type EntryVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<bool, StoreError> + 'a;

/// Walks the entries of `log` (a tree of `size` entries) from the newest back, down to index
/// `min` (entries below it are pruned), until `f` answers false.
fn walk_back(
    log: &TiledLog<ObjTiles>,
    size: u64,
    min: u64,
    at: &Path,
    f: &mut EntryVisitor<'_>,
) -> Result<(), StoreError> {
    if size == 0 {
        return Ok(());
    }
    let mut n = (size - 1) / TILE_WIDTH;
    loop {
        if (n + 1) * TILE_WIDTH <= min {
            return Ok(());
        }
        let entries = log.bundle(n).map_err(|e| merr(at, e))?;
        for (k, e) in entries.iter().enumerate().rev() {
            let index = n * TILE_WIDTH + k as u64;
            // A bundle may hold entries written after the size read (not signed yet).
            if index >= size {
                continue;
            }
            if index < min || !f(index, e)? {
                return Ok(());
            }
        }
        if n == 0 {
            return Ok(());
        }
        n -= 1;
    }
}

/// Digests of block files.
pub type DigestSet = std::collections::HashSet<[u8; 32]>;

/// The file holding the log's minimum index (entry bundles below it are pruned).
pub const MINIMUM_INDEX_FILE: &str = "minimum-index";

/// Reads the log's `minimum-index` (0 when absent) and its version.
pub fn read_minimum_index(
    objects: &dyn crate::objects::Objects,
    prefix: &str,
) -> Result<(u64, Option<String>), StoreError> {
    let key = format!("{prefix}{MINIMUM_INDEX_FILE}");
    match objects.get(&key) {
        Ok((b, m)) => String::from_utf8_lossy(&b)
            .trim()
            .parse()
            .map(|i| (i, Some(m.version)))
            .map_err(|_| StoreError::Corruption {
                path: key,
                offset: 0,
                reason: "not an entry index".into(),
            }),
        Err(ObjectError::NotFound(_)) => Ok((0, None)),
        Err(e) => Err(e.into()),
    }
}

fn merr(dir: &Path, e: MerkleError) -> StoreError {
    StoreError::Decode(format!("transparency log in {}: {e}", dir.display()))
}

/// The checkpoint body of a signed note (the text before the blank line).
pub fn note_checkpoint(note: &[u8]) -> Result<Checkpoint, String> {
    let text = std::str::from_utf8(note).map_err(|_| "checkpoint note is not UTF-8".to_owned())?;
    let body = text
        .split_once("\n\n")
        .map(|(b, _)| format!("{b}\n"))
        .ok_or_else(|| "checkpoint note has no signatures".to_owned())?;
    Checkpoint::parse(&body).map_err(|e| e.to_string())
}

impl TxLog {
    /// Opens the log in `dir`, at the size of the last checkpoint in its history (tiles written
    /// for a larger size by a flush that crashed before signing are removed, and rewritten by
    /// the appends that follow).
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<Self, StoreError> {
        fsio::create_private_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        Self::open_in(Arc::new(LocalDir::new(dir)), "", cfg)
    }

    /// Opens the log stored under `prefix` (empty, or ending with `/`) in `objects`.
    pub fn open_in(
        objects: SharedObjects,
        prefix: &str,
        cfg: LogConfig,
    ) -> Result<Self, StoreError> {
        let dir = PathBuf::from(format!("{}/{prefix}", objects.describe()));
        let dir = dir.as_path();
        let checkpoints = Checkpoints::open(objects.clone(), prefix)?;
        let latest = checkpoints.latest()?;
        let (size, note, root) = match &latest {
            None => (0, None, None),
            Some(n) => {
                let cp = note_checkpoint(n).map_err(|e| StoreError::Corruption {
                    path: format!("{}checkpoint", prefix),
                    offset: 0,
                    reason: e,
                })?;
                if cp.origin != cfg.origin {
                    return Err(StoreError::Corruption {
                        path: format!("{}checkpoint", prefix),
                        offset: 0,
                        reason: format!(
                            "the log's checkpoints are for origin {:?}, but the signing keys are for {:?}",
                            cp.origin, cfg.origin
                        ),
                    });
                }
                (cp.size, Some(n.clone()), Some(cp.root))
            }
        };
        let mut tiles = ObjTiles::new(objects.clone(), prefix);
        let removed = tiles.discard_unsigned(size)?;
        if !removed.is_empty() {
            tracing::warn!(
                files = removed.len(),
                size,
                "removed tiles and bundles a flush wrote but never signed (a crash before signing)"
            );
        }
        let log = TiledLog::open(tiles, size);
        if let Some(root) = root {
            let got = log.root(size).map_err(|e| merr(dir, e))?;
            if got != root {
                return Err(StoreError::Corruption {
                    path: dir.display().to_string(),
                    offset: 0,
                    reason: format!(
                        "the tiles do not hash to the last signed checkpoint (size {size}); run `tracevault verify`"
                    ),
                });
            }
        }
        let (min_index, _) = read_minimum_index(&*objects, prefix)?;
        Ok(Self {
            dir: dir.to_owned(),
            objects,
            prefix: prefix.to_owned(),
            cfg,
            pending: Mutex::new(Pending {
                entries: Vec::new(),
                next: size,
            }),
            tree: Mutex::new(Tree {
                log,
                signed_size: size,
                note,
            }),
            durable: (Mutex::new(size), Condvar::new()),
            checkpoints,
            blocks: Mutex::new(HashMap::new()),
            min_index: std::sync::atomic::AtomicU64::new(min_index),
        })
    }

    /// Entry bundles below this index were pruned (0: none).
    pub fn minimum_index(&self) -> u64 {
        self.min_index.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Prunes the log below `index` (rounded down to whole entry bundles, and never into the
    /// last, partial bundle): appends a log-prune entry and makes it durable, records the new
    /// minimum index, then deletes the entry bundles below it. The hash tiles stay, so every
    /// checkpoint, inclusion and consistency proof still verifies. Returns the new minimum index
    /// when it moved.
    pub fn prune_below(&self, index: u64) -> Result<Option<u64>, StoreError> {
        let full = self.durable_size() / TILE_WIDTH * TILE_WIDTH;
        let m = index.min(full) / TILE_WIDTH * TILE_WIDTH;
        let old = self.minimum_index();
        if m <= old {
            return Ok(None);
        }
        let i = self.push(
            Leaf::LogPrune(tv_tlog::leaf::LogPruneLeaf {
                pruned_unix_nanos: crate::now_unix_nanos(),
                minimum_index: m,
            })
            .encode(),
        );
        self.flush_through(i)?;
        let key = format!("{}{MINIMUM_INDEX_FILE}", self.prefix);
        let mode = match read_minimum_index(&*self.objects, &self.prefix)?.1 {
            Some(v) => PutMode::IfMatch(v),
            None => PutMode::Create,
        };
        self.objects
            .put(&key, format!("{m}\n").as_bytes(), mode)
            .map_err(|e| match e {
                ObjectError::Conflict { .. } | ObjectError::AlreadyExists(_) => {
                    StoreError::Fenced(format!("{key} changed under this process: {e}"))
                }
                e => e.into(),
            })?;
        self.min_index
            .store(m, std::sync::atomic::Ordering::Release);
        let tree = self.tree.lock().expect("log lock poisoned");
        for n in old / TILE_WIDTH..m / TILE_WIDTH {
            tree.log.store().delete_bundle(n)?;
        }
        drop(tree);
        tracing::info!(
            minimum_index = m,
            log_entry = i,
            "pruned the log's entry bundles below the oldest entry any tenant still retains"
        );
        Ok(Some(m))
    }

    /// A tile or entry bundle by its C2SP resource path (`None` when not written).
    pub fn read_tile(&self, resource: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use tv_tlog::tiled::TileStore;
        ObjTiles::new(self.objects.clone(), &self.prefix)
            .read(resource)
            .map_err(|e| merr(&self.dir, e))
    }

    pub fn origin(&self) -> &str {
        &self.cfg.origin
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored entries from the newest back to the minimum index, until `f` answers false.
    fn walk_back(&self, f: &mut EntryVisitor<'_>) -> Result<(), StoreError> {
        let tree = self.tree.lock().expect("log lock poisoned");
        walk_back(
            &tree.log,
            tree.log.size(),
            self.minimum_index(),
            &self.dir,
            f,
        )
    }

    /// Reads the log's tail back to the first record leaf of a segment below `min_segment`.
    pub fn logged_since(&self, min_segment: u64) -> Result<Logged, StoreError> {
        let mut out = Logged::default();
        // Below the minimum index the log is pruned: nothing there holds a record any tenant
        // still retains.
        self.walk_back(&mut |index, e| {
            match Leaf::parse(e) {
                Ok(Leaf::Record(r)) => {
                    if r.segment < min_segment {
                        return Ok(false);
                    }
                    out.records
                        .insert((r.segment, r.key_index, r.counter), (index, r.body_sha256));
                }
                Ok(
                    Leaf::Prune(_)
                    | Leaf::Erase(_)
                    | Leaf::ErasedBlock(_)
                    | Leaf::LogPrune(_)
                    | Leaf::State(_)
                    | Leaf::Replaced(_),
                ) => {}
                Ok(Leaf::Block(b)) => {
                    out.blocks.insert(b.file_sha256, index);
                    self.blocks
                        .lock()
                        .expect("log lock poisoned")
                        .insert(b.file_sha256, index);
                }
                Err(err) => {
                    return Err(StoreError::Corruption {
                        path: self.dir.display().to_string(),
                        offset: index,
                        reason: format!("log entry {index}: {err}"),
                    });
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Looks for the leaf of a merged block (compaction) whose file has digest `file_sha256`
    /// and was created at `created_unix_nanos`, from the end of the log back: its index and the
    /// digests of the blocks the log already records it replacing; `None` when it is not in the
    /// log. The search stops at a block leaf sealed well (ten minutes) before the merged block
    /// was created: its leaf can only come after.
    pub fn find_merge(
        &self,
        file_sha256: &[u8; 32],
        created_unix_nanos: u64,
    ) -> Result<Option<(u64, DigestSet)>, StoreError> {
        let stop_before = created_unix_nanos.saturating_sub(600 * 1_000_000_000);
        let mut replaced: Vec<(u64, [u8; 32])> = Vec::new();
        let mut found = None;
        self.walk_back(&mut |index, e| {
            Ok(match Leaf::parse(e) {
                Ok(Leaf::Replaced(x)) => {
                    replaced.push((x.replacement_index, x.file_sha256));
                    true
                }
                Ok(Leaf::Block(b)) if &b.file_sha256 == file_sha256 => {
                    let of_it = replaced
                        .iter()
                        .filter(|(i, _)| *i == index)
                        .map(|(_, d)| *d)
                        .collect();
                    found = Some((index, of_it));
                    false
                }
                Ok(Leaf::Block(b)) => b.sealed_unix_nanos >= stop_before,
                _ => true,
            })
        })?;
        Ok(found)
    }

    /// Queues an entry; returns its index in the log.
    pub fn push(&self, entry: Vec<u8>) -> u64 {
        let mut p = self.pending.lock().expect("log lock poisoned");
        let i = p.next;
        p.next += 1;
        p.entries.push(entry);
        i
    }

    /// Queues a block's leaf (once per block file); returns its index.
    pub fn push_block(&self, file_sha256: [u8; 32], entry: Vec<u8>) -> u64 {
        let mut blocks = self.blocks.lock().expect("log lock poisoned");
        if let Some(i) = blocks.get(&file_sha256) {
            return *i;
        }
        let i = self.push(entry);
        blocks.insert(file_sha256, i);
        i
    }

    /// The leaf of a block file already logged (by this process or found at recovery).
    pub fn block_leaf(&self, file_sha256: &[u8; 32]) -> Option<u64> {
        self.blocks
            .lock()
            .expect("log lock poisoned")
            .get(file_sha256)
            .copied()
    }

    /// Entries queued or stored.
    pub fn len(&self) -> u64 {
        self.pending.lock().expect("log lock poisoned").next
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size covered by the latest signed checkpoint.
    pub fn durable_size(&self) -> u64 {
        *self.durable.0.lock().expect("log lock poisoned")
    }

    /// Writes queued entries as tiles and signs a checkpoint over them (when the log grew, or
    /// when there is no checkpoint yet). Returns the signed size.
    pub fn flush(&self) -> Result<u64, StoreError> {
        let mut tree = self.tree.lock().expect("log lock poisoned");
        let entries = std::mem::take(&mut self.pending.lock().expect("log lock poisoned").entries);
        if !entries.is_empty() {
            let res = tree.log.append(&entries).map(|_| ()).map_err(|e| {
                match tree.log.store_mut().take_conflict() {
                    Some(k) => StoreError::Fenced(format!(
                        "{k} was written by another process with other contents; another process is writing this log"
                    )),
                    None => merr(&self.dir, e),
                }
            });
            if let Err(e) = res {
                // Put them back in front of anything queued since; a later flush retries.
                let mut p = self.pending.lock().expect("log lock poisoned");
                let mut back = entries;
                back.append(&mut p.entries);
                p.entries = back;
                return Err(e);
            }
        }
        let size = tree.log.size();
        if size > tree.signed_size || tree.note.is_none() {
            let t = Instant::now();
            let root = tree.log.root(size).map_err(|e| merr(&self.dir, e))?;
            let note = self.sign(size, root)?;
            self.checkpoints.publish(&note, size)?;
            tracing::debug!(
                size,
                us = t.elapsed().as_micros() as u64,
                "signed and published a checkpoint"
            );
            tree.signed_size = size;
            tree.note = Some(note);
        }
        drop(tree);
        let (lock, cv) = &self.durable;
        *lock.lock().expect("log lock poisoned") = size;
        cv.notify_all();
        Ok(size)
    }

    fn sign(&self, size: u64, root: Hash) -> Result<Vec<u8>, StoreError> {
        let text = Checkpoint {
            origin: self.cfg.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        }
        .to_text();
        let signers: Vec<&dyn NoteSigner> = self.cfg.signers.iter().map(|s| s.as_ref()).collect();
        note::sign(
            &Note {
                text,
                ..Default::default()
            },
            &signers,
        )
        .map_err(|e| StoreError::Decode(format!("signing a checkpoint: {e}")))
    }

    /// Makes entry `index` durable (flushing now if it is not yet).
    pub fn flush_through(&self, index: u64) -> Result<(), StoreError> {
        if self.durable_size() > index {
            return Ok(());
        }
        self.flush()?;
        if self.durable_size() > index {
            Ok(())
        } else {
            Err(StoreError::io(
                &self.dir,
                std::io::Error::other(format!("log entry {index} is not durable yet")),
            ))
        }
    }

    /// The latest signed checkpoint note.
    pub fn checkpoint(&self) -> Option<Vec<u8>> {
        self.tree.lock().expect("log lock poisoned").note.clone()
    }

    /// Runs `f` on the stored log (proofs, entries, tiles) while no flush changes it.
    pub fn with_tree<T>(&self, f: impl FnOnce(&TiledLog<ObjTiles>) -> T) -> T {
        f(&self.tree.lock().expect("log lock poisoned").log)
    }

    /// The log thread's loop body: flushes when entries wait and the interval has passed.
    pub fn run(self: Arc<Self>, stop: Arc<(Mutex<bool>, Condvar)>) {
        let (lock, cv) = &*stop;
        // The interval runs from the start of one flush to the start of the next, so a slow flush
        // (fsyncs under load) does not stretch the time between checkpoints.
        let mut last = Instant::now();
        loop {
            {
                let stopped = lock.lock().expect("log stop lock poisoned");
                if *stopped {
                    break;
                }
                let wait = self.cfg.checkpoint_interval.saturating_sub(last.elapsed());
                let (stopped, _) = cv
                    .wait_timeout(stopped, wait)
                    .expect("log stop lock poisoned");
                if *stopped {
                    break;
                }
            }
            if last.elapsed() < self.cfg.checkpoint_interval {
                continue; // woken early
            }
            last = Instant::now();
            let waiting = !self
                .pending
                .lock()
                .expect("log lock poisoned")
                .entries
                .is_empty();
            if waiting && let Err(e) = self.flush() {
                tracing::error!(error = %e, "writing the transparency log failed; retrying");
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "final transparency log flush failed; the WAL keeps what it needs and the next start re-derives it");
        }
    }
}
