//! `tracevault verify` (issue 3): checks a data directory, offline, against its transparency log
//! and against trust anchors from outside the directory (pinned verifier keys and checkpoints).
//!
//! What is checked, in order:
//! 1. The checkpoint history `log/checkpoints`: every note carries both log signatures (or the
//!    Ed25519 one under the classical-only policy), names the log's origin, and sizes never
//!    shrink; `log/checkpoint` is the last of them.
//! 2. The entries: the bundles a tree of the last checkpoint's size needs are read, the tree is
//!    re-derived from them, and every checkpoint's root must be that tree's root at its size, with
//!    a consistency proof checked between successive checkpoints. Every tile and bundle file on
//!    disk must hold exactly what the re-derived tree says, and the partial tiles each checkpoint
//!    needs must exist.
//! 3. Pinned checkpoints (saved earlier, or cosigned by witnesses): the log must be consistent with
//!    each (a rollback or a rewritten history fails here).
//! 4. Every WAL record must match its record leaf (SHA-256 of its ciphertext), every block file
//!    its block leaf (SHA-256 of the file), and every logged record and block must still be
//!    there. With the root key, records and blocks are decrypted and their span roots re-derived.
//!    A block merged into a larger one by compaction must have a replaced entry naming the merged
//!    block's entry; the merged block's record list must be the replaced blocks' lists in order
//!    (their digests and counts from their own entries).
//!
//! 5. The audit log (`audit/`), when present: steps 1 to 3 under its own keys, then every entry
//!    must be a key or a record entry (decrypted and parsed with the root key).
//!
//! Files that hold no committed data are listed as not covered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tv_crypto::Keyring;
use tv_model::TenantId;
use tv_tlog::checkpoint::Checkpoint;
use tv_tlog::leaf::{
    self, BlockLeaf, EraseLeaf, ErasedBlockLeaf, Leaf, PruneLeaf, RecordLeaf, ReplacedLeaf,
};
use tv_tlog::merkle::{self, MemoryTree};
use tv_tlog::policy::{LogKeys, Policy, verify_checkpoint};
use tv_tlog::tiles::{self, TILE_WIDTH, TileRef};

use crate::StoreError;
use crate::block::BlockMeta;
use crate::commit::{self, CanonRecord};
use crate::logdir::split_history;
use crate::objects::Objects;
use crate::store::{decode_payload, split_payload};
use crate::wal::{self, Recovered};

/// One finding: which file, where, which check, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub offset: Option<u64>,
    pub check: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} @{}: [{}] {}", self.file, o, self.check, self.detail),
            None => write!(f, "{}: [{}] {}", self.file, self.check, self.detail),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
    /// Files holding no committed data, and why.
    pub not_covered: Vec<(String, &'static str)>,
    /// Blocks deleted by retention, as the log recorded it.
    pub pruned: Vec<String>,
    /// Blocks merged into larger ones by compaction, as the log recorded it.
    pub compacted: Vec<String>,
    /// Tenants erased (crypto-shredded), as the log and the erasure records show it.
    pub erased: Vec<String>,
    /// Entry bundles below this index were pruned, as a log-prune entry recorded (0: none).
    pub log_pruned_below: u64,
    /// Partial tiles and bundles a full one has made redundant (checked like every other).
    pub redundant_partials: Vec<String>,
    pub log_size: u64,
    pub checkpoints: usize,
    pub records: u64,
    pub blocks: u64,
    pub spans: u64,
    pub bytes: u64,
    pub decrypted: bool,
    /// The audit log's size, signed checkpoints, and records read (decrypted) from it.
    pub audit_size: u64,
    pub audit_checkpoints: usize,
    pub audit_records: u64,
    /// The cluster state versions this log anchors: (entry index, leaf).
    pub state_anchors: Vec<(u64, tv_tlog::leaf::StateLeaf)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Trust anchors and options.
pub struct Options<'a> {
    pub keys: &'a LogKeys,
    pub policy: Policy,
    /// Signed checkpoint notes saved outside the directory (files named for messages).
    pub pinned: Vec<(String, Vec<u8>)>,
    /// With the root key: decrypt and re-derive span commitments.
    pub keyring: Option<Arc<Keyring>>,
    /// Called with (bytes done, bytes total) as files are read.
    pub progress: &'a dyn Fn(u64, u64),
    /// How to check the audit log (`DIR/audit/`), when there is one.
    pub audit: Option<AuditCheck<'a>>,
}

/// Checks the audit log's entries (their format belongs to the server): returns how many records
/// it read and the problems, by entry index.
pub type AuditEntryCheck<'a> = &'a dyn Fn(&[Vec<u8>]) -> (u64, Vec<(u64, String)>);

/// The audit log's trust anchors, and the check of its entries.
pub struct AuditCheck<'a> {
    pub keys: &'a LogKeys,
    pub pinned: Vec<(String, Vec<u8>)>,
    pub entries: AuditEntryCheck<'a>,
}

struct Ctx<'a> {
    dir: &'a Path,
    report: Report,
}

impl Ctx<'_> {
    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(self.dir).unwrap_or(p).display().to_string()
    }
    fn problem(
        &mut self,
        file: impl Into<String>,
        offset: Option<u64>,
        check: &'static str,
        detail: impl Into<String>,
    ) {
        self.report.problems.push(Problem {
            file: file.into(),
            offset,
            check,
            detail: detail.into(),
        });
    }
}

/// Every file under `dir`, recursively, in name order.
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

const TEMP: &str = "temporary file of a write a crash interrupted (never renamed into place)";

/// Temporary files: blocks (`*.tvb.tmp`) and tiles (`*.tmp-<hex>`) before their rename.
fn is_temp(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with(".tvb.tmp") || name.contains(".tmp-")
}

/// Checks one tlog-tiles log under `dir/sub` (steps 1 to 3 above): the checkpoint history, the
/// entries and every tile against the tree they re-derive, and the pinned checkpoints. Returns
/// the entries (from the first one not pruned) and whether they could all be read, the size, the
/// number of checkpoints and the index of the first entry returned.
#[allow(clippy::too_many_arguments)]
fn check_tlog(
    cx: &mut Ctx<'_>,
    dir: &Path,
    sub: &str,
    files: &[PathBuf],
    keys: &LogKeys,
    policy: Policy,
    pinned: &[(String, Vec<u8>)],
    tick: &mut dyn FnMut(&Path),
) -> (Vec<Vec<u8>>, bool, u64, usize, u64) {
    let log_dir = dir.join(sub);

    // 1. Checkpoint history: `history/<size>` (or, in a directory a server has not opened
    // since, the old single file `checkpoints`).
    let hist_path = log_dir.join("history");
    let legacy = log_dir.join("checkpoints");
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let notes: Vec<(String, Vec<u8>)> = if legacy.is_file() {
        match std::fs::read(&legacy) {
            Err(e) => {
                cx.problem(
                    format!("{sub}/checkpoints"),
                    None,
                    "checkpoint history",
                    format!("cannot read it: {e}"),
                );
                Vec::new()
            }
            Ok(b) => {
                let (notes, torn) = split_history(&b);
                if torn > 0 {
                    cx.problem(
                        format!("{sub}/checkpoints"),
                        Some((b.len() - torn) as u64),
                        "checkpoint history",
                        format!(
                            "{torn} bytes after the last whole record (truncated or appended to)"
                        ),
                    );
                }
                notes
                    .into_iter()
                    .map(|n| (format!("{sub}/checkpoints"), n))
                    .collect()
            }
        }
    } else {
        let mut notes = Vec::new();
        for p in files.iter().filter(|p| p.starts_with(&hist_path)) {
            let rel = cx.rel(p);
            match std::fs::read(p) {
                Ok(b) => notes.push((rel, b)),
                Err(e) => cx.problem(
                    &rel,
                    None,
                    "checkpoint history",
                    format!("cannot read it: {e}"),
                ),
            }
        }
        if notes.is_empty() && log_dir.join("checkpoint").exists() {
            cx.problem(
                format!("{sub}/history"),
                None,
                "checkpoint history",
                "missing (deleted?): there is a checkpoint but no history",
            );
        }
        notes
    };
    let mut prev_size: Option<u64> = None;
    for (i, (rel, n)) in notes.iter().enumerate() {
        match verify_checkpoint(n, keys, policy) {
            Ok(v) => {
                let c = v.checkpoint().clone();
                if !rel.ends_with("/checkpoints") {
                    match crate::logdir::parse_history_key(rel) {
                        None => cx.problem(rel, None, "checkpoint history", "not a history entry name"),
                        Some((size, _)) if size != c.size => cx.problem(
                            rel,
                            None,
                            "checkpoint history",
                            format!("holds the checkpoint of size {}: renamed or replaced", c.size),
                        ),
                        Some((_, after)) if after != prev_size => cx.problem(
                            rel,
                            None,
                            "checkpoint history",
                            match after {
                                Some(p) => format!("follows the checkpoint of size {p}, which is not in the history (deleted)"),
                                None => "claims to be the first checkpoint, but others precede it".into(),
                            },
                        ),
                        Some(_) => {}
                    }
                    prev_size = Some(c.size);
                }
                if let Some(prev) = checkpoints.last()
                    && c.size < prev.size
                {
                    cx.problem(
                        rel,
                        None,
                        "checkpoint history",
                        format!(
                            "checkpoint {i} has size {} after size {}: the log shrank",
                            c.size, prev.size
                        ),
                    );
                }
                checkpoints.push(c);
            }
            Err(e) => cx.problem(
                rel,
                None,
                "checkpoint signature",
                format!("checkpoint {i}: {e}"),
            ),
        }
    }
    if !notes.is_empty() {
        match std::fs::read(log_dir.join("checkpoint")) {
            Ok(cur) if notes.last().map(|n| &n.1) == Some(&cur) => {}
            Ok(_) => cx.problem(
                format!("{sub}/checkpoint"),
                None,
                "latest checkpoint",
                "is not the last checkpoint of the history (rolled back, or the history was cut)",
            ),
            Err(e) => cx.problem(
                format!("{sub}/checkpoint"),
                None,
                "latest checkpoint",
                format!("cannot read it: {e}"),
            ),
        }
    }
    tick(&hist_path);
    let size = checkpoints.last().map(|c| c.size).unwrap_or(0);

    // 2. Entries and tiles. Entry bundles below the log's minimum index may have been pruned
    // (the bundles present are contiguous from the first one); the leaf hashes of that range come
    // from the level-0 tiles, which every checkpoint root below still binds.
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(size as usize);
    let mut tree = MemoryTree::default();
    let full = size / TILE_WIDTH;
    let last_w = size % TILE_WIDTH;
    let mut bundles_needed: Vec<(u64, u64)> = (0..full).map(|n| (n, TILE_WIDTH)).collect();
    if last_w > 0 {
        bundles_needed.push((full, last_w));
    }
    let first_kept = bundles_needed
        .iter()
        .find(|(n, w)| log_dir.join(tiles::entries_path(*n, *w)).exists())
        .map(|(n, _)| *n)
        .unwrap_or(full + u64::from(last_w > 0));
    let first_index = (first_kept * TILE_WIDTH).min(size);
    let mut entries_ok = true;
    for n in 0..first_kept.min(full) {
        let rel = format!("{sub}/{}", tiles::tile_path(0, n, TILE_WIDTH));
        match std::fs::read(log_dir.join(tiles::tile_path(0, n, TILE_WIDTH))) {
            Ok(b) if b.len() == 32 * TILE_WIDTH as usize => {
                for h in b.chunks(32) {
                    let h = tv_tlog::Hash(h.try_into().expect("32 bytes"));
                    tree.append_leaf_hash(h).expect("memory tree");
                }
            }
            Ok(b) => {
                cx.problem(
                    &rel,
                    None,
                    "hash tile",
                    format!("{} bytes, not {}", b.len(), 32 * TILE_WIDTH),
                );
                entries_ok = false;
                break;
            }
            Err(e) => {
                cx.problem(
                    &rel,
                    None,
                    "hash tile",
                    format!("needed for the pruned entries below {first_index}: {e}"),
                );
                entries_ok = false;
                break;
            }
        }
    }
    if first_kept > full && last_w > 0 {
        // The partial last bundle is never pruned.
        cx.problem(
            format!("{sub}/{}", tiles::entries_path(full, last_w)),
            None,
            "entry bundle",
            format!("needed for the log of size {size}: missing"),
        );
        entries_ok = false;
    }
    for (n, w) in bundles_needed.iter().filter(|(n, _)| *n >= first_kept) {
        let rel = format!("{sub}/{}", tiles::entries_path(*n, *w));
        match std::fs::read(log_dir.join(tiles::entries_path(*n, *w))) {
            Err(e) => {
                cx.problem(
                    &rel,
                    None,
                    "entry bundle",
                    format!("needed for the log of size {size}: {e}"),
                );
                entries_ok = false;
                break;
            }
            Ok(b) => match tiles::split_bundle(&b) {
                Some(parts) if parts.len() as u64 == *w => {
                    for p in parts {
                        entries.push(p.to_vec());
                    }
                }
                Some(parts) => {
                    cx.problem(
                        &rel,
                        None,
                        "entry bundle",
                        format!("holds {} entries, not {w}", parts.len()),
                    );
                    entries_ok = false;
                    break;
                }
                None => {
                    cx.problem(
                        &rel,
                        None,
                        "entry bundle",
                        "malformed (length prefixes do not add up)",
                    );
                    entries_ok = false;
                    break;
                }
            },
        }
    }
    if entries_ok && tree.len() != first_index {
        entries_ok = false;
    }
    if entries_ok {
        for e in &entries {
            tree.append(e).expect("memory tree");
        }
        // Every checkpoint's root, and consistency between successive ones.
        let mut prev: Option<&Checkpoint> = None;
        for (i, c) in checkpoints.iter().enumerate() {
            match tree.root(c.size) {
                Ok(r) if r == c.root => {}
                _ => cx.problem(format!("{sub}/checkpoints"), None, "checkpoint root", format!("checkpoint {i} (size {}) does not match the tree re-derived from the entries", c.size)),
            }
            if let Some(p) = prev
                && p.size > 0
                && p.size < c.size
            {
                let ok = tree.prove_consistency(c.size, p.size).and_then(|proof| {
                    merkle::verify_consistency(&proof, c.size, c.root, p.size, p.root)
                });
                if ok.is_err() {
                    cx.problem(format!("{sub}/checkpoints"), None, "consistency", format!("checkpoint {i} (size {}) is not consistent with checkpoint {} (size {})", c.size, i - 1, p.size));
                }
            }
            prev = Some(c);
        }
    }

    // Every file under log/.
    let sizes: HashSet<u64> = checkpoints.iter().map(|c| c.size).collect();
    let mut seen_tiles: HashSet<String> = HashSet::new();
    for p in files.iter().filter(|p| p.starts_with(&log_dir)) {
        let rel = cx.rel(p);
        let res = p
            .strip_prefix(&log_dir)
            .map(|r| r.display().to_string())
            .unwrap_or_default();
        if res == "checkpoint" || res == "checkpoints" || res.starts_with("history/") {
            continue;
        }
        if res == crate::txlog::MINIMUM_INDEX_FILE {
            cx.report.not_covered.push((
                rel,
                "the log's pruned minimum (the bundles present are checked against the log-prune entries)",
            ));
            continue;
        }
        tick(p);
        if is_temp(p) {
            cx.report.not_covered.push((rel, TEMP));
            continue;
        }
        let Some(t) = tiles::parse_path(&res) else {
            cx.problem(&rel, None, "log file", "not a tlog-tiles resource");
            continue;
        };
        seen_tiles.insert(res.clone());
        if !entries_ok {
            continue;
        }
        let data = match std::fs::read(p) {
            Ok(d) => d,
            Err(e) => {
                cx.problem(&rel, None, "log file", format!("cannot read it: {e}"));
                continue;
            }
        };
        let expected = match t {
            TileRef::Hashes { level, n, width } => {
                let leaves_per = 1u64 << (8 * level as u32);
                let end = (n * TILE_WIDTH + width).saturating_mul(leaves_per);
                if end > size {
                    cx.report.not_covered.push((
                        rel,
                        "tile beyond the last checkpoint (written by a flush that did not finish)",
                    ));
                    continue;
                }
                tree.tile_bytes(level, n, width).ok()
            }
            TileRef::Entries { n, width } => {
                let end = n * TILE_WIDTH + width;
                if end > size {
                    cx.report.not_covered.push((rel, "bundle beyond the last checkpoint (written by a flush that did not finish)"));
                    continue;
                }
                if n < first_kept {
                    // A partial bundle left beside a pruned full one.
                    cx.report
                        .not_covered
                        .push((rel, "entry bundle below the log's pruned minimum"));
                    continue;
                }
                let mut b = Vec::new();
                let from = (n * TILE_WIDTH - first_index) as usize;
                for e in &entries[from..(end - first_index) as usize] {
                    let _ = tiles::push_entry(&mut b, e);
                }
                Some(b)
            }
        };
        if expected.as_deref() != Some(data.as_slice()) {
            cx.problem(
                &rel,
                None,
                "tile contents",
                "differs from the tree re-derived from the entries",
            );
        }
    }
    for t in &seen_tiles {
        let full = match tiles::parse_path(t) {
            Some(TileRef::Hashes { level, n, width }) if width < TILE_WIDTH => {
                tiles::tile_path(level, n, TILE_WIDTH)
            }
            Some(TileRef::Entries { n, width }) if width < TILE_WIDTH => {
                tiles::entries_path(n, TILE_WIDTH)
            }
            _ => continue,
        };
        if seen_tiles.contains(&full) {
            cx.report.redundant_partials.push(format!("{sub}/{t}"));
        }
    }
    cx.report.redundant_partials.sort();
    // The tiles each checkpoint's size needs (full and partial) must exist.
    if entries_ok {
        let mut needed: BTreeMap<String, u64> = BTreeMap::new();
        for &s in &sizes {
            for level in 0u8..8 {
                let count = s >> (8 * level as u32);
                if count == 0 {
                    break;
                }
                for n in 0..count.div_ceil(TILE_WIDTH) {
                    let w = (count - n * TILE_WIDTH).min(TILE_WIDTH);
                    needed.entry(tiles::tile_path(level, n, w)).or_insert(s);
                    if level == 0 && n >= first_kept {
                        needed.entry(tiles::entries_path(n, w)).or_insert(s);
                    }
                }
            }
        }
        for (path, s) in needed {
            if !seen_tiles.contains(&path) {
                cx.problem(
                    format!("{sub}/{path}"),
                    None,
                    "missing tile",
                    format!("needed by the checkpoint of size {s}"),
                );
            }
        }
    }

    // 3. Pinned checkpoints.
    for (name, note) in pinned {
        match verify_checkpoint(note, keys, policy) {
            Err(e) => cx.problem(
                name.clone(),
                None,
                "pinned checkpoint",
                format!("does not verify: {e}"),
            ),
            Ok(v) => {
                let c = v.checkpoint();
                if c.size > size {
                    cx.problem(name.clone(), None, "pinned checkpoint", format!("names size {} but the log's last checkpoint has {size}: the log was rolled back", c.size));
                } else if entries_ok && tree.root(c.size).ok() != Some(c.root) {
                    cx.problem(
                        name.clone(),
                        None,
                        "pinned checkpoint",
                        format!(
                            "the log's tree at size {} has another root: history was rewritten",
                            c.size
                        ),
                    );
                }
            }
        }
    }

    (entries, entries_ok, size, checkpoints.len(), first_index)
}

/// The WAL segments whose records the block with `digest` holds: its own id for a block sealed
/// from the WAL, and those of every block a merged block replaced (recursively).
fn segments_of(
    digest: &[u8; 32],
    block_leaves: &HashMap<[u8; 32], (u64, BlockLeaf)>,
    merged_from: &BTreeMap<u64, Vec<(u64, ReplacedLeaf)>>,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut todo = vec![*digest];
    let mut seen = HashSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d) {
            continue;
        }
        let Some((index, bl)) = block_leaves.get(&d) else {
            continue;
        };
        match merged_from.get(index) {
            Some(parts) if !parts.is_empty() => {
                todo.extend(parts.iter().map(|(_, r)| r.file_sha256));
            }
            _ => out.push(bl.block_id),
        }
    }
    out
}

/// A merged block's leaf against the entries of the blocks it replaced: as many records and
/// spans as they had together.
fn check_merged_counts(
    cx: &mut Ctx<'_>,
    rel: &str,
    index: u64,
    bl: &BlockLeaf,
    parts: &[(u64, ReplacedLeaf)],
    block_leaves: &HashMap<[u8; 32], (u64, BlockLeaf)>,
) {
    if parts.is_empty() {
        cx.report.warnings.push(format!(
            "{rel}: a merged block (log entry {index}) that no replaced entry names yet (a stop during compaction; the next start finishes it)"
        ));
        return;
    }
    let olds: Option<Vec<&BlockLeaf>> = parts
        .iter()
        .map(|(_, r)| block_leaves.get(&r.file_sha256).map(|(_, b)| b))
        .collect();
    // Entries below the log's pruned minimum are not there to compare with.
    let Some(olds) = olds else { return };
    let records: u64 = olds.iter().map(|b| b.record_count as u64).sum();
    let spans: u64 = olds.iter().map(|b| b.span_count).sum();
    if records != bl.record_count as u64 || spans != bl.span_count {
        cx.problem(rel, None, "compaction", format!("log entry {index} merges {} records and {} spans, but the blocks it replaced held {records} and {spans}", bl.record_count, bl.span_count));
    }
}

/// A merged block's record list (decrypted) against the blocks it replaced: their lists one
/// after the other, in the order of the replaced entries, which is the order its index names them.
fn check_merged_records(
    cx: &mut Ctx<'_>,
    rel: &str,
    index: u64,
    meta: &BlockMeta,
    recs: &[(u64, u32)],
    parts: &[(u64, ReplacedLeaf)],
    block_leaves: &HashMap<[u8; 32], (u64, BlockLeaf)>,
) {
    let ids: Vec<u64> = parts.iter().map(|(_, r)| r.block_id).collect();
    if ids != meta.index.replaces {
        cx.problem(rel, None, "compaction", format!("the merged block names other blocks than the replaced entries naming log entry {index}"));
        return;
    }
    let mut at = 0usize;
    for (ri, r) in parts {
        let Some((_, old)) = block_leaves.get(&r.file_sha256) else {
            return; // below the log's pruned minimum
        };
        let n = old.record_count as usize;
        let run = recs.get(at..at + n);
        if run.is_none_or(|run| leaf::records_digest(run) != old.records_sha256) {
            cx.problem(rel, None, "compaction", format!("the records of block {:016x} (replaced by entry {ri}) are not those of the merged block", r.block_id));
            return;
        }
        at += n;
    }
}

/// Verifies the data directory `dir`.
pub fn verify_dir(dir: &Path, opts: &Options<'_>) -> Report {
    verify_tree(dir, opts, false)
}

/// Checks one node's objects in a cluster's bucket (its `nodes/<node>/` prefix) with the same
/// checks as a data directory: every object is read through the storage seam into a private
/// temporary directory laid out as one, checked there, and the directory removed. The node's
/// WAL is on the node, so logged records of segments not sealed yet are warnings, not problems.
pub fn verify_objects(objects: &dyn Objects, opts: &Options<'_>) -> Result<Report, StoreError> {
    let dir = std::env::temp_dir().join(format!(
        "tracevault-verify-{}",
        hex::encode(tv_crypto::random_bytes::<8>())
    ));
    tv_crypto::fsio::create_private_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let copied = (|| -> Result<(), StoreError> {
        for o in objects.list("")? {
            // The lease, the shared service graph and the shared behavioural baselines are not
            // data the log accounts for (the graph and baselines are sealed under tenant keys).
            if o.key == "lease" || o.key.starts_with("graph/") || o.key.starts_with("detect/") {
                continue;
            }
            let (b, _) = objects.get(&o.key)?;
            let p = dir.join(&o.key);
            let parent = tv_crypto::fsio::parent_dir(&p);
            std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            std::fs::write(&p, &b).map_err(|e| StoreError::io(&p, e))?;
        }
        Ok(())
    })();
    let report = copied.map(|()| verify_tree(&dir, opts, true));
    let _ = std::fs::remove_dir_all(&dir);
    report
}

fn verify_tree(dir: &Path, opts: &Options<'_>, wal_elsewhere: bool) -> Report {
    let mut cx = Ctx {
        dir,
        report: Report {
            decrypted: opts.keyring.is_some(),
            ..Default::default()
        },
    };
    let mut files = Vec::new();
    walk(dir, &mut files);
    let total: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut done = 0u64;
    let mut tick = |p: &Path| {
        done += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        (opts.progress)(done, total);
    };
    let (entries, _entries_ok, size, n_checkpoints, first_index) = check_tlog(
        &mut cx,
        dir,
        "log",
        &files,
        opts.keys,
        opts.policy,
        &opts.pinned,
        &mut tick,
    );
    cx.report.checkpoints = n_checkpoints;
    cx.report.log_size = size;
    let log_dir = dir.join("log");

    // The audit log: the same checks under its own keys, then its entries.
    let audit_dir = dir.join("audit");
    if audit_dir.is_dir() {
        match &opts.audit {
            None => cx.problem(
                "audit",
                None,
                "audit log",
                "present, but no verifier keys were given for it",
            ),
            Some(a) => {
                let (entries, ok, size, n, first) = check_tlog(
                    &mut cx,
                    dir,
                    "audit",
                    &files,
                    a.keys,
                    opts.policy,
                    &a.pinned,
                    &mut tick,
                );
                cx.report.audit_size = size;
                cx.report.audit_checkpoints = n;
                if first > 0 {
                    cx.problem("audit/tile/entries", None, "entry bundle", format!("the audit log is never pruned, but its entries below {first} are missing"));
                }
                if ok {
                    let (records, problems) = (a.entries)(&entries);
                    cx.report.audit_records = records;
                    for (i, why) in problems {
                        cx.problem(
                            "audit/tile/entries",
                            Some(i),
                            "audit entry",
                            format!("entry {i}: {why}"),
                        );
                    }
                }
            }
        }
    }

    // Leaves.
    let mut record_leaves: HashMap<(u64, u32, u64), (u64, RecordLeaf)> = HashMap::new();
    let mut block_leaves: HashMap<[u8; 32], (u64, BlockLeaf)> = HashMap::new();
    let mut by_index: HashMap<u64, RecordLeaf> = HashMap::new();
    let mut prunes: HashMap<[u8; 32], (u64, PruneLeaf)> = HashMap::new();
    let mut erases: BTreeMap<u64, EraseLeaf> = BTreeMap::new();
    let mut erased_blocks: HashMap<[u8; 32], (u64, ErasedBlockLeaf)> = HashMap::new();
    let mut log_prunes: Vec<(u64, u64)> = Vec::new();
    let mut replaced: HashMap<[u8; 32], (u64, ReplacedLeaf)> = HashMap::new();
    // Block leaf index -> its block's digest.
    let mut block_at: HashMap<u64, [u8; 32]> = HashMap::new();
    // Merged block leaf index -> the replaced entries naming it, in log order.
    let mut merged_from: BTreeMap<u64, Vec<(u64, ReplacedLeaf)>> = BTreeMap::new();
    for (k, e) in entries.iter().enumerate() {
        let i = first_index as usize + k;
        match Leaf::parse(e) {
            Ok(Leaf::Record(r)) => {
                by_index.insert(i as u64, r.clone());
                record_leaves.insert((r.segment, r.key_index, r.counter), (i as u64, r));
            }
            Ok(Leaf::Block(b)) => {
                block_at.insert(i as u64, b.file_sha256);
                block_leaves.insert(b.file_sha256, (i as u64, b));
            }
            Ok(Leaf::Replaced(x)) => {
                merged_from
                    .entry(x.replacement_index)
                    .or_default()
                    .push((i as u64, x.clone()));
                replaced.insert(x.file_sha256, (i as u64, x));
            }
            Ok(Leaf::Prune(p)) => {
                prunes.insert(p.file_sha256, (i as u64, p));
            }
            Ok(Leaf::Erase(x)) => {
                erases.insert(i as u64, x);
            }
            Ok(Leaf::ErasedBlock(d)) => {
                erased_blocks.insert(d.file_sha256, (i as u64, d));
            }
            Ok(Leaf::LogPrune(p)) => {
                log_prunes.push((i as u64, p.minimum_index));
            }
            Ok(Leaf::State(st)) => {
                cx.report.state_anchors.push((i as u64, st));
            }
            Err(err) => cx.problem(
                "log/tile/entries",
                Some(i as u64),
                "log entry",
                format!("entry {i}: {err}"),
            ),
        }
    }
    // Entry bundles may be missing only below what a log-prune entry declared.
    let declared = log_prunes.iter().map(|p| p.1).max().unwrap_or(0);
    if first_index > declared {
        cx.problem(
            "log/tile/entries",
            None,
            "entry bundle",
            format!("the entries below {first_index} are missing, but the log records pruning only below {declared} (deleted)"),
        );
    }
    cx.report.log_pruned_below = first_index.min(declared);

    // Erasure records name the tenants the erase leaves commit to.
    let erasures = match crate::erase::records(dir) {
        Ok(r) => r,
        Err(e) => {
            cx.problem("erased", None, "erasure record", e.to_string());
            Vec::new()
        }
    };
    let erased_tenants: HashSet<String> = erasures.iter().map(|r| r.tenant.clone()).collect();
    if let Some(kr) = &opts.keyring {
        for r in &erasures {
            if let Ok(t) = TenantId::parse(&r.tenant) {
                kr.mark_erased(&t);
            }
        }
    }
    let mut named: HashSet<u64> = HashSet::new();
    for r in &erasures {
        let file = format!("erased/{}.json", r.tenant);
        let Some(i) = r.log_index else {
            cx.problem(file, None, "erasure record", "names no log entry");
            continue;
        };
        match erases.get(&i) {
            None => cx.problem(
                file,
                None,
                "erasure record",
                format!("names log entry {i}, which is not an erase entry"),
            ),
            Some(x) if Some(x.tenant_commitment) != r.commitment() => cx.problem(
                file,
                None,
                "erasure record",
                format!("does not match the tenant log entry {i} commits to"),
            ),
            Some(x) => {
                named.insert(i);
                let versions: Vec<String> =
                    r.key_versions.iter().map(|v| format!("v{v}")).collect();
                cx.report.erased.push(format!(
                    "tenant {}: erased at {} ns (log entry {i}); key versions {} destroyed{}; {} blocks ({} spans) deleted{}",
                    r.tenant,
                    x.erased_unix_nanos,
                    if versions.is_empty() { "(none on record)".to_string() } else { versions.join(", ") },
                    r.root_key.as_ref().map(|k| format!(", KMS key {k} deleted")).unwrap_or_default(),
                    x.blocks,
                    r.spans,
                    if r.complete { "" } else { "; NOT FINISHED (the next start finishes it)" },
                ));
            }
        }
    }
    for (i, x) in &erases {
        if !named.contains(i) {
            cx.report.warnings.push(format!(
                "log entry {i} erases a tenant (at {} ns) that no erasure record names (the record was removed, or the erasure stopped before writing it)",
                x.erased_unix_nanos
            ));
        }
    }

    let mut covered_records: HashSet<u64> = HashSet::new();
    let mut present_blocks: HashSet<[u8; 32]> = HashSet::new();
    let mut sealed_segments: HashSet<u64> = HashSet::new();

    // 4a. WAL segments. Records the log does not hold yet are fine only as a tail (a crash before
    // the log's flush; the next start logs them); anything logged after one is out of order.
    let mut unlogged: Vec<(String, u64)> = Vec::new();
    let wal_dir = dir.join("wal");
    for p in files.iter().filter(|p| p.starts_with(&wal_dir)) {
        let rel = cx.rel(p);
        tick(p);
        cx.report.bytes += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some(id) = wal::parse_segment_name(&name) else {
            cx.problem(&rel, None, "WAL file", "not a WAL segment name");
            continue;
        };
        let seg = match wal::read_segment(p) {
            Ok(s) => s,
            Err(e) => {
                cx.problem(&rel, None, "WAL segment", e.to_string());
                continue;
            }
        };
        if seg.torn_bytes > 0 {
            cx.report.warnings.push(format!(
                "{rel}: {} bytes of torn tail (an unacknowledged write cut short)",
                seg.torn_bytes
            ));
        }
        if seg.id != id && !seg.records.is_empty() {
            cx.problem(
                &rel,
                Some(8),
                "WAL segment",
                format!("header names segment {:016x}", seg.id),
            );
        }
        let keys = match &opts.keyring {
            Some(kr) => match wal::open_segment_keys(kr, &seg) {
                Ok(k) => Some(k),
                Err(e) => {
                    cx.problem(&rel, None, "WAL data key", e.to_string());
                    None
                }
            },
            None => None,
        };
        let erased_keys: HashSet<u32> = seg
            .records
            .iter()
            .filter_map(|r| match r {
                Recovered::Key {
                    tenant, key_index, ..
                } if erased_tenants.contains(tenant.as_str()) => Some(*key_index),
                _ => None,
            })
            .collect();
        for r in seg.records {
            let Recovered::Data {
                key_index,
                counter,
                mut ciphertext,
                offset,
                body_sha256,
            } = r
            else {
                continue;
            };
            cx.report.records += 1;
            let Some((index, leaf)) = record_leaves.get(&(id, key_index, counter)).cloned() else {
                unlogged.push((rel.clone(), offset));
                continue;
            };
            if let Some((f, o)) = unlogged.first().cloned() {
                cx.problem(f, Some(o), "record in log", format!("a record without a log entry comes before logged record {counter} of key {key_index} in {rel} (inserted, or the log was cut)"));
                unlogged.clear();
            }
            covered_records.insert(index);
            if erased_keys.contains(&key_index) {
                // An erased tenant's record: its digest is all there is to check.
                if leaf.body_sha256 != body_sha256 {
                    cx.problem(
                        &rel,
                        Some(offset),
                        "record digest",
                        format!(
                            "record {counter} of key {key_index} differs from log entry {index}"
                        ),
                    );
                }
                continue;
            }
            if leaf.body_sha256 != body_sha256 {
                cx.problem(
                    &rel,
                    Some(offset),
                    "record digest",
                    format!("record {counter} of key {key_index} differs from log entry {index}"),
                );
                continue;
            }
            let Some(keys) = &keys else { continue };
            let Some((_, key)) = keys.get(&key_index) else {
                cx.problem(
                    &rel,
                    Some(offset),
                    "WAL data key",
                    format!("unknown key index {key_index}"),
                );
                continue;
            };
            if key.secret().commitment() != leaf.key_commitment {
                cx.problem(
                    &rel,
                    Some(offset),
                    "key commitment",
                    format!("key {key_index} is not the key log entry {index} commits to"),
                );
            }
            let plain = match key.open(
                counter,
                &wal::data_aad(id, key_index, counter),
                &mut ciphertext,
            ) {
                Ok(p) => p.to_vec(),
                Err(_) => {
                    cx.problem(
                        &rel,
                        Some(offset),
                        "decryption",
                        format!("record {counter} of key {key_index} fails authentication"),
                    );
                    continue;
                }
            };
            match (split_payload(&plain), decode_payload(&plain)) {
                (Ok(parts), Ok(req)) => {
                    let (root, count) =
                        commit::span_root(&parts.secret, &CanonRecord::of_request(&req));
                    cx.report.spans += count as u64;
                    if root != leaf.span_root
                        || count != leaf.span_count
                        || parts.received != leaf.received_unix_nanos
                        || parts.policy != leaf.policy_digest
                    {
                        cx.problem(&rel, Some(offset), "span commitments", format!("record {counter} of key {key_index} does not re-derive log entry {index}"));
                    }
                }
                _ => cx.problem(&rel, Some(offset), "record payload", "does not decode"),
            }
        }
    }

    if !unlogged.is_empty() {
        cx.report.warnings.push(format!(
            "{} WAL records at the end of {} are not in the log yet (a stop before the log's flush); the next start logs them",
            unlogged.len(),
            unlogged[0].0
        ));
    }

    // 4b. Blocks.
    let block_dir = dir.join("blocks");
    for p in files.iter().filter(|p| p.starts_with(&block_dir)) {
        let rel = cx.rel(p);
        tick(p);
        if is_temp(p) {
            cx.report.not_covered.push((rel, TEMP));
            continue;
        }
        let bytes = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                cx.problem(&rel, None, "block", format!("cannot read it: {e}"));
                continue;
            }
        };
        cx.report.bytes += bytes.len() as u64;
        let digest = tv_tlog::commit::sha256(&bytes);
        let id = p
            .file_stem()
            .and_then(|s| u64::from_str_radix(&s.to_string_lossy(), 16).ok());
        let Some((index, bl)) = block_leaves.get(&digest).cloned() else {
            cx.problem(
                &rel,
                None,
                "block digest",
                "matches no block leaf in the log (altered, replaced, or never logged)",
            );
            continue;
        };
        if Some(bl.block_id) != id {
            cx.problem(
                &rel,
                None,
                "block digest",
                format!(
                    "the log entry {index} for these bytes is block {:016x}: the file was moved",
                    bl.block_id
                ),
            );
            continue;
        }
        cx.report.blocks += 1;
        present_blocks.insert(digest);
        if let Some((ri, r)) = replaced.get(&digest) {
            // Merged into a larger block: its records are checked there.
            cx.report.warnings.push(format!(
                "block {:016x} was replaced by compaction (log entry {ri}) but is still there (a stop before its deletion; the next start deletes it)",
                r.block_id
            ));
            continue;
        }
        sealed_segments.extend(segments_of(&digest, &block_leaves, &merged_from));
        let parts = merged_from.get(&index).cloned().unwrap_or_default();
        if !parts.is_empty() || crate::block::is_compacted(bl.block_id) {
            check_merged_counts(&mut cx, &rel, index, &bl, &parts, &block_leaves);
        }
        let block_tenant = p
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if erased_tenants.contains(&block_tenant) {
            // Its keys are destroyed: the digest is all there is to check.
            cx.report.spans += bl.span_count;
            continue;
        }
        let Some(kr) = &opts.keyring else {
            cx.report.spans += bl.span_count;
            // Without the root key, the block's records are known only by its leaf's hint.
            continue;
        };
        let tenant = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| TenantId::parse(&n.to_string_lossy()).ok());
        let Some(tenant) = tenant else {
            cx.problem(&rel, None, "block", "not under a tenant directory");
            continue;
        };
        let objects: crate::objects::SharedObjects =
            std::sync::Arc::new(crate::objects::LocalDir::new(dir));
        let key = p
            .strip_prefix(dir)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = match BlockMeta::load(&objects, &key, &tenant, kr) {
            Ok(m) => m,
            Err(e) => {
                cx.problem(&rel, None, "block", e.to_string());
                continue;
            }
        };
        if meta.key_commitment != bl.key_commitment {
            cx.problem(
                &rel,
                None,
                "key commitment",
                format!("differs from log entry {index}"),
            );
        }
        let recs: Vec<(u64, u32)> = meta
            .index
            .records
            .iter()
            .map(|r| (r.leaf_index, r.span_count))
            .collect();
        if leaf::records_digest(&recs) != bl.records_sha256 || recs.len() as u32 != bl.record_count
        {
            cx.problem(
                &rel,
                None,
                "block records",
                format!("the block's record list differs from log entry {index}"),
            );
        } else if !parts.is_empty() {
            check_merged_records(&mut cx, &rel, index, &meta, &recs, &parts, &block_leaves);
        }
        match crate::prove::block_records(&meta, None) {
            Err(e) => cx.problem(&rel, None, "block contents", e.to_string()),
            Ok(rs) => {
                for r in rs {
                    covered_records.insert(r.leaf_index);
                    let (root, count) = r.span_root();
                    cx.report.spans += count as u64;
                    match by_index.get(&r.leaf_index) {
                        Some(l)
                            if l.span_root == root
                                && l.span_count == count
                                && r.claimed_spans == count => {}
                        Some(_) => cx.problem(
                            &rel,
                            None,
                            "span commitments",
                            format!(
                                "the spans of record leaf {} do not re-derive its span root",
                                r.leaf_index
                            ),
                        ),
                        None => cx.problem(
                            &rel,
                            None,
                            "span commitments",
                            format!(
                                "names record leaf {}, which is not a record leaf of the log",
                                r.leaf_index
                            ),
                        ),
                    }
                }
            }
        }
    }

    // 4c. Nothing logged may be missing, except what retention pruned (and logged first).
    let mut pruned_segments: HashSet<u64> = HashSet::new();
    for (digest, (pi, p)) in &prunes {
        match block_leaves.get(digest) {
            None if first_index > 0 && !present_blocks.contains(digest) => {
                // Its block entry is below the log's pruned minimum.
                pruned_segments.extend(segments_of(digest, &block_leaves, &merged_from));
                pruned_segments.insert(p.block_id);
                cx.report.pruned.push(format!(
                    "block {:016x}: deleted by retention ({} s) at {} ns, log entry {pi}",
                    p.block_id, p.retention_secs, p.pruned_unix_nanos
                ));
            }
            None => cx.problem("log/tile/entries", Some(*pi), "prune entry", format!("entry {pi} prunes a block that was never logged")),
            Some((bi, _)) if bi > pi => cx.problem("log/tile/entries", Some(*pi), "prune entry", format!("entry {pi} prunes block entry {bi}, which comes later")),
            Some(_) if present_blocks.contains(digest) => cx.report.warnings.push(format!(
                "block {:016x} was pruned by entry {pi} but its file is still there (a stop before the deletion)",
                p.block_id
            )),
            Some(_) => {
                pruned_segments.extend(segments_of(digest, &block_leaves, &merged_from));
                cx.report.pruned.push(format!(
                    "block {:016x}: deleted by retention ({} s) at {} ns, log entry {pi}",
                    p.block_id, p.retention_secs, p.pruned_unix_nanos
                ));
            }
        }
    }
    for (digest, (di, d)) in &erased_blocks {
        // A block or erase entry below the log's pruned minimum is not there to compare with.
        let gone = !present_blocks.contains(digest)
            && ((first_index > 0 && !block_leaves.contains_key(digest))
                || d.erase_index < first_index);
        if gone {
            pruned_segments.insert(d.block_id);
            pruned_segments.extend(segments_of(digest, &block_leaves, &merged_from));
            continue;
        }
        match (block_leaves.get(digest), erases.get(&d.erase_index)) {
            (None, _) => cx.problem("log/tile/entries", Some(*di), "erased-block entry", format!("entry {di} deletes a block that was never logged")),
            (_, None) => cx.problem("log/tile/entries", Some(*di), "erased-block entry", format!("entry {di} names erase entry {}, which is not one", d.erase_index)),
            (Some((bi, _)), Some(_)) if *bi > *di || d.erase_index > *di => cx.problem("log/tile/entries", Some(*di), "erased-block entry", format!("entry {di} comes before the block or the erasure it names")),
            _ if present_blocks.contains(digest) => cx.report.warnings.push(format!(
                "block {:016x} of an erased tenant is still there (an erasure not finished; the next start deletes it)",
                d.block_id
            )),
            _ => {
                pruned_segments.extend(segments_of(digest, &block_leaves, &merged_from));
            }
        }
    }
    for (digest, (ri, r)) in &replaced {
        let target = block_at.get(&r.replacement_index);
        if target.is_none() && r.replacement_index >= first_index {
            cx.problem("log/tile/entries", Some(*ri), "replaced entry", format!("entry {ri} names entry {} as the block replacing block {:016x}, which is not a block entry", r.replacement_index, r.block_id));
            continue;
        }
        if r.replacement_index > *ri {
            cx.problem(
                "log/tile/entries",
                Some(*ri),
                "replaced entry",
                format!(
                    "entry {ri} names entry {}, which comes later, as its replacement",
                    r.replacement_index
                ),
            );
            continue;
        }
        match block_leaves.get(digest) {
            None if first_index == 0 => cx.problem(
                "log/tile/entries",
                Some(*ri),
                "replaced entry",
                format!("entry {ri} replaces a block that was never logged"),
            ),
            Some((bi, _)) if bi > ri => cx.problem(
                "log/tile/entries",
                Some(*ri),
                "replaced entry",
                format!("entry {ri} replaces block entry {bi}, which comes later"),
            ),
            _ if present_blocks.contains(digest) => {}
            _ => cx.report.compacted.push(format!(
                "block {:016x}: merged into a larger block by compaction, log entries {ri} and {}",
                r.block_id, r.replacement_index
            )),
        }
    }
    for (digest, (index, bl)) in &block_leaves {
        if !present_blocks.contains(digest)
            && !prunes.contains_key(digest)
            && !erased_blocks.contains_key(digest)
            && !replaced.contains_key(digest)
        {
            cx.problem(format!("blocks/*/{:016x}.tvb", bl.block_id), None, "missing block", format!("log entry {index} names a block that is not in the directory (deleted or replaced)"));
        }
    }
    let wal_segments: HashSet<u64> = files
        .iter()
        .filter(|p| p.starts_with(&wal_dir))
        .filter_map(|p| {
            p.file_name()
                .and_then(|n| wal::parse_segment_name(&n.to_string_lossy()))
        })
        .collect();
    let mut missing: BTreeMap<u64, u64> = BTreeMap::new();
    for (index, r) in &by_index {
        let covered = pruned_segments.contains(&r.segment)
            || if opts.keyring.is_some() {
                covered_records.contains(index)
            } else {
                covered_records.contains(index)
                    || (sealed_segments.contains(&r.segment) && !wal_segments.contains(&r.segment))
            };
        if !covered {
            *missing.entry(r.segment).or_default() += 1;
        }
    }
    for (segment, n) in missing {
        if wal_elsewhere && !sealed_segments.contains(&segment) {
            cx.report.warnings.push(format!("{n} logged records of segment {segment:016x} are not in a block yet: they are in the node's local WAL (sealed within seconds while it runs, and at its next start after a crash)"));
            continue;
        }
        cx.problem(format!("wal/{segment:016x}.wal"), None, "missing records", format!("{n} logged records of segment {segment:016x} are neither in the WAL nor in a block (deleted)"));
    }

    // Not covered.
    for p in &files {
        if p.starts_with(&log_dir)
            || p.starts_with(&audit_dir)
            || p.starts_with(&wal_dir)
            || p.starts_with(&block_dir)
        {
            continue;
        }
        let rel = cx.rel(p);
        let why = if rel.starts_with("erased") {
            "erasure record (checked against the log's erase entry above)"
        } else if rel.starts_with("keys") {
            "key material (its integrity shows when decryption works)"
        } else if matches!(
            rel.as_str(),
            "tokens.json"
                | "workloads.json"
                | "responses.json"
                | "state-seal.json"
                | "tls/client-ca.pem"
        ) || (rel.starts_with("detect/") && rel.ends_with(".state"))
        {
            "sealed state (checked against state-seal.json with the root key)"
        } else if rel.starts_with("tls") {
            "TLS certificate or key"
        } else if rel == "admin.token" {
            "the bootstrap admin token (a credential the server does not read back)"
        } else if rel == "log-cosigned.checkpoint" {
            "the latest witness-cosigned checkpoint (keep a copy elsewhere and pass it as --checkpoint)"
        } else {
            "holds no committed data"
        };
        cx.report.not_covered.push((rel, why));
    }
    cx.report
}
