//! Compaction: a tenant's small blocks merged into larger ones. Each merge is logged before any
//! block goes: the merged block's leaf, then one replaced leaf per block it merged (see
//! `tv_tlog::leaf`), so the log still accounts for every span and `verify` tells a merged block
//! from a deleted one.
//!
//! Order of a merge, and what a stop at each point leaves:
//! 1. the merged block is written (create-only; its index names the blocks it replaces);
//!    a stop here leaves a merged block the log does not name: the next start deletes it;
//! 2. its leaf and the replaced leaves are logged and made durable; a stop before all are
//!    durable is finished at the next start (the missing replaced leaves are added);
//! 3. the merged block replaces its blocks in what queries read;
//! 4. after a grace period (queries already running, other nodes that have not listed the
//!    merged block yet) the replaced blocks are deleted; the next start deletes those a stop left.
//!
//! A failure while running (the bucket or the log not answering) never deletes a merged block
//! whose leaves may still be written: it is kept and the merge finished at a later pass (or at
//! the next start), and the blocks of a merge that failed midway are not merged again by this
//! process, so no two merged blocks ever replace the same block.
//!
//! Other nodes skip a block that a block of the same node replaces, so they never read a span
//! twice while both are in the bucket.

use std::collections::HashSet;

use tv_tlog::leaf::ReplacedLeaf;

use super::*;
use crate::block::{COMPACTED_BIT, block_key, is_compacted};

/// Compaction settings.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often compaction looks for small blocks.
    pub interval: Duration,
    /// Blocks smaller than this are merged.
    pub small_bytes: u64,
    /// A merge takes no more blocks once their total reaches this. It bounds what one merge
    /// holds in memory: the spans of the blocks it merges, uncompressed.
    pub target_bytes: u64,
    /// Fewest blocks worth one merge.
    pub min_blocks: usize,
    /// Longest time range (earliest span start to latest span end) one merged block covers, so
    /// that retention still deletes data close to its period (also at most a tenth of the
    /// tenant's retention period).
    pub max_range: Duration,
    /// How long merged blocks stay after their replacement is logged: queries that started
    /// before read them to the end, and other nodes list the replacement first.
    pub grace: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            small_bytes: 1024 * 1024,
            target_bytes: 16 * 1024 * 1024,
            min_blocks: 4,
            max_range: Duration::from_secs(3600),
            grace: Duration::from_secs(60),
        }
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Merged blocks written.
    pub merges: usize,
    /// Blocks they replaced.
    pub replaced: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub spans: u64,
}

/// A merge whose leaves did not become durable when it ran: the leaves stay queued in the log
/// and are written at its next flush, so the merged block stays and the merge is finished then.
pub(crate) struct PendingMerge {
    tenant: TenantId,
    group: Vec<Arc<BlockMeta>>,
    key: String,
    /// The last replaced leaf's index.
    last: u64,
    grace: Duration,
    size: u64,
    spans: u64,
}

/// The groups of small blocks worth merging, by tenant: each a run of blocks (by time) whose
/// total size stays under the target and whose time range stays within the limit. Blocks of a
/// merge that failed midway are not merged again by this process (see [`merge`]).
fn plan(inner: &Inner, cfg: &CompactionConfig) -> Vec<(TenantId, Vec<Arc<BlockMeta>>)> {
    let held = inner
        .merge_held
        .lock()
        .expect("merge lock poisoned")
        .clone();
    let st = inner.state.read().expect("state lock poisoned");
    let mut out = Vec::new();
    let mut tenants: Vec<&TenantId> = st.blocks.keys().collect();
    tenants.sort();
    for tenant in tenants {
        let mut blocks: Vec<Arc<BlockMeta>> = st.blocks[tenant]
            .iter()
            .filter(|b| b.size < cfg.small_bytes && !held.contains(&(tenant.clone(), b.id)))
            .cloned()
            .collect();
        blocks.sort_by_key(|b| (b.index.min_start, b.id));
        let range = match inner.cfg.retention_of(tenant) {
            Some(keep) => cfg.max_range.min(keep / 10),
            None => cfg.max_range,
        }
        .as_nanos() as u64;
        let mut group: Vec<Arc<BlockMeta>> = Vec::new();
        let (mut size, mut lo, mut hi) = (0u64, u64::MAX, 0u64);
        for b in blocks {
            let fits = size + b.size <= cfg.target_bytes
                && hi
                    .max(b.index.max_end)
                    .saturating_sub(lo.min(b.index.min_start))
                    <= range;
            if !fits {
                if group.len() >= cfg.min_blocks {
                    out.push((tenant.clone(), std::mem::take(&mut group)));
                }
                group.clear();
                (size, lo, hi) = (0, u64::MAX, 0);
            }
            size += b.size;
            lo = lo.min(b.index.min_start);
            hi = hi.max(b.index.max_end);
            group.push(b);
        }
        if group.len() >= cfg.min_blocks {
            out.push((tenant.clone(), group));
        }
    }
    out
}

/// The id of the next merged block: the compacted bit and a number above every earlier one.
fn next_id(inner: &Inner) -> u64 {
    let now = crate::now_unix_nanos() / 1000;
    let mut cur = inner.compacted_seq.load(Ordering::Acquire);
    loop {
        let next = now.max(cur + 1) & !COMPACTED_BIT;
        match inner
            .compacted_seq
            .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return COMPACTED_BIT | next,
            Err(c) => cur = c,
        }
    }
}

/// Merges one group of a tenant's blocks into one block (steps 1 to 3 above); the replaced
/// blocks are queued for deletion after `grace`.
fn merge(
    inner: &Inner,
    tenant: &TenantId,
    group: &[Arc<BlockMeta>],
    grace: Duration,
    report: &mut CompactionReport,
) -> Result<(), StoreError> {
    inner.accepts(tenant)?;
    let started = Instant::now();
    // The digests the replaced leaves name (read before the merge: what is merged is what they name).
    let mut digests = Vec::with_capacity(group.len());
    if inner.log.is_some() {
        for b in group {
            digests.push(b.digest()?);
        }
    }
    let mut builder = BlockBuilder::default();
    for b in group {
        builder.add_block(b)?;
    }
    let id = next_id(inner);
    let key = block_key(tenant, id);
    let hold = |inner: &Inner| {
        let mut h = inner.merge_held.lock().expect("merge lock poisoned");
        h.extend(group.iter().map(|b| (tenant.clone(), b.id)));
    };
    // A merged block that is (or will be) logged but not yet read in place of its blocks: kept,
    // and finished at a later pass (or at the next start).
    let park = |inner: &Inner, key: String, last: u64, size: u64, spans: u64| {
        hold(inner);
        inner
            .pending_merges
            .lock()
            .expect("merge lock poisoned")
            .push(PendingMerge {
                tenant: tenant.clone(),
                group: group.to_vec(),
                key,
                last,
                grace,
                size,
                spans,
            });
    };
    let sealed = match builder.write(
        &inner.staging_dir,
        &*inner.objects,
        tenant,
        id,
        &inner.keyring,
        inner.cfg.chunk_target_bytes,
        inner.cfg.block_zstd_level,
    ) {
        Ok(s) => s,
        Err(e) => {
            // An upload that failed may still land (a bucket that answered late). It is not
            // logged, so the next start deletes it; until then these blocks are not merged
            // again, so no second merged block replaces them (other nodes would read both).
            let _ = inner.objects.delete(&key);
            hold(inner);
            return Err(e);
        }
    };
    let mut last = 0;
    if let Some(log) = &inner.log {
        let bi = log.push_block(sealed.file_sha256, sealed.leaf(id));
        last = bi;
        for (b, d) in group.iter().zip(&digests) {
            last = log.push(replaced_leaf(b.id, *d, bi));
        }
        if let Err(e) = log.flush_through(last) {
            // The leaves stay queued and are written at the log's next flush.
            park(inner, key, last, sealed.size, sealed.spans);
            return Err(e);
        }
    }
    if let Err(e) = finish_merge(inner, tenant, group, &key, grace) {
        park(inner, key, last, sealed.size, sealed.spans);
        return Err(e);
    }
    let before: u64 = group.iter().map(|b| b.size).sum();
    report.merges += 1;
    report.replaced += group.len();
    report.bytes_before += before;
    report.bytes_after += sealed.size;
    report.spans += sealed.spans;
    if let Some(o) = &inner.cfg.observer {
        o.blocks_compacted(group.len() as u64, before, sealed.size);
    }
    tracing::info!(tenant = %tenant, block = %key, replaced = group.len(), spans = sealed.spans, bytes_before = before, bytes_after = sealed.size, ms = started.elapsed().as_millis() as u64, "compacted small blocks into one");
    Ok(())
}

/// Step 3 and 4 of a logged merge: the merged block replaces its blocks in what queries read,
/// and the blocks are queued for deletion after `grace`.
fn finish_merge(
    inner: &Inner,
    tenant: &TenantId,
    group: &[Arc<BlockMeta>],
    key: &str,
    grace: Duration,
) -> Result<(), StoreError> {
    let merged = Arc::new(BlockMeta::load(
        &inner.objects,
        key,
        tenant,
        &inner.keyring,
    )?);
    let ids: HashSet<u64> = group.iter().map(|b| b.id).collect();
    {
        let mut st = inner.state.write().expect("state lock poisoned");
        let list = st.blocks.entry(tenant.clone()).or_default();
        list.retain(|b| !ids.contains(&b.id));
        list.push(merged);
    }
    inner.retired.lock().expect("retired lock poisoned").push((
        Instant::now() + grace,
        group.iter().map(|b| b.key.clone()).collect(),
    ));
    Ok(())
}

fn replaced_leaf(block_id: u64, file_sha256: [u8; 32], replacement_index: u64) -> Vec<u8> {
    Leaf::Replaced(ReplacedLeaf {
        block_id,
        replaced_unix_nanos: crate::now_unix_nanos(),
        file_sha256,
        replacement_index,
    })
    .encode()
}

/// Deletes the replaced blocks whose grace period is over (`all`: every one, at shutdown).
pub(super) fn delete_retired(inner: &Inner, all: bool) {
    let now = Instant::now();
    let due: Vec<String> = {
        let mut r = inner.retired.lock().expect("retired lock poisoned");
        let (due, keep): (Vec<_>, Vec<_>) = r.drain(..).partition(|(t, _)| all || *t <= now);
        *r = keep;
        due.into_iter().flat_map(|(_, keys)| keys).collect()
    };
    let mut failed = Vec::new();
    for key in due {
        match inner.objects.delete(&key) {
            Ok(()) | Err(crate::objects::ObjectError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(block = %key, error = %e, "cannot delete a block compaction replaced; retrying");
                failed.push(key);
            }
        }
    }
    if !failed.is_empty() {
        inner
            .retired
            .lock()
            .expect("retired lock poisoned")
            .push((now, failed));
    }
}

/// Finishes the merges whose leaves have become durable since they ran.
fn finish_pending(inner: &Inner, report: &mut CompactionReport) {
    let pending = std::mem::take(&mut *inner.pending_merges.lock().expect("merge lock poisoned"));
    let mut keep = Vec::new();
    for p in pending {
        let durable = match &inner.log {
            None => true,
            Some(log) => log.durable_size() > p.last || log.flush_through(p.last).is_ok(),
        };
        if !durable {
            keep.push(p);
            continue;
        }
        match finish_merge(inner, &p.tenant, &p.group, &p.key, p.grace) {
            Ok(()) => {
                let before: u64 = p.group.iter().map(|b| b.size).sum();
                report.merges += 1;
                report.replaced += p.group.len();
                report.bytes_before += before;
                report.bytes_after += p.size;
                report.spans += p.spans;
                let mut h = inner.merge_held.lock().expect("merge lock poisoned");
                for b in &p.group {
                    h.remove(&(p.tenant.clone(), b.id));
                }
                tracing::info!(tenant = %p.tenant, block = %p.key, replaced = p.group.len(), "finished a compaction once its log entries were durable");
            }
            Err(e) => {
                tracing::warn!(block = %p.key, error = %e, "cannot finish a compaction yet; retrying");
                keep.push(p);
            }
        }
    }
    inner
        .pending_merges
        .lock()
        .expect("merge lock poisoned")
        .extend(keep);
}

/// One pass: finishes merges that waited for the log, merges every group [`plan`] finds, then
/// deletes replaced blocks past their grace.
pub(crate) fn compact(
    inner: &Inner,
    cfg: &CompactionConfig,
) -> Result<CompactionReport, StoreError> {
    let mut report = CompactionReport::default();
    let _one = inner.maintenance.lock().expect("maintenance lock poisoned");
    finish_pending(inner, &mut report);
    let mut first_err = None;
    for (tenant, group) in plan(inner, cfg) {
        if inner.fenced.load(Ordering::Acquire) {
            break;
        }
        if let Err(e) = merge(inner, &tenant, &group, cfg.grace, &mut report) {
            tracing::warn!(tenant = %tenant, blocks = group.len(), error = %e, "could not compact blocks; they stay as they are");
            first_err.get_or_insert(e);
        }
    }
    delete_retired(inner, false);
    match first_err {
        Some(e) if report.merges == 0 => Err(e),
        _ => Ok(report),
    }
}

pub(super) fn compaction_loop(
    inner: Arc<Inner>,
    cfg: CompactionConfig,
    stop: Arc<(Mutex<bool>, Condvar)>,
) {
    run_every(&stop, cfg.interval, || {
        let _ = compact(&inner, &cfg);
    });
}

/// At start, before anything reads the blocks: finishes the merges a stop interrupted. A merged
/// block whose leaf is in the log replaces its blocks (replaced leaves a stop kept from the log
/// are added, and the replaced blocks still there deleted); one whose leaf is not was never
/// logged, and is deleted (the blocks it would have replaced stay).
pub(super) fn finish_merges(inner: &Inner) -> Result<(), StoreError> {
    let work: Vec<(TenantId, Arc<BlockMeta>, Vec<Arc<BlockMeta>>)> = {
        let st = inner.state.read().expect("state lock poisoned");
        let mut w = Vec::new();
        for (tenant, list) in &st.blocks {
            for c in list.iter().filter(|b| !b.index.replaces.is_empty()) {
                let left: Vec<Arc<BlockMeta>> = list
                    .iter()
                    .filter(|b| c.index.replaces.contains(&b.id))
                    .cloned()
                    .collect();
                if !left.is_empty() {
                    w.push((tenant.clone(), c.clone(), left));
                }
            }
        }
        w
    };
    for (tenant, merged, left) in work {
        let logged = match &inner.log {
            // Without a log, a merged block that is there was written whole (create-only).
            None => Some((None, HashSet::new())),
            Some(log) => log
                .find_merge(&merged.digest()?, merged.created_unix_nanos)?
                .map(|(bi, replaced)| (Some(bi), replaced)),
        };
        let drop_ids: HashSet<u64> = match logged {
            Some((bi, replaced)) => {
                if let (Some(log), Some(bi)) = (&inner.log, bi) {
                    let mut last = None;
                    // In the order the merged block names them (what verify checks): the leaves
                    // a stop kept out of the log are the last ones of that order.
                    let ordered = merged
                        .index
                        .replaces
                        .iter()
                        .filter_map(|id| left.iter().find(|b| b.id == *id));
                    for b in ordered {
                        let d = b.digest()?;
                        if !replaced.contains(&d) {
                            last = Some(log.push(replaced_leaf(b.id, d, bi)));
                        }
                    }
                    if let Some(i) = last {
                        log.flush_through(i)?;
                    }
                }
                for b in &left {
                    match inner.objects.delete(&b.key) {
                        Ok(()) | Err(crate::objects::ObjectError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                tracing::info!(tenant = %tenant, block = %merged.key, replaced = left.len(), "finished a compaction a stop interrupted");
                left.iter().map(|b| b.id).collect()
            }
            None => {
                tracing::info!(tenant = %tenant, block = %merged.key, "deleting a compacted block a stop left before it was logged");
                inner.objects.delete(&merged.key)?;
                HashSet::from([merged.id])
            }
        };
        let mut st = inner.state.write().expect("state lock poisoned");
        if let Some(list) = st.blocks.get_mut(&tenant) {
            list.retain(|b| !drop_ids.contains(&b.id));
        }
    }
    // Merged block ids grow past every one already stored.
    let st = inner.state.read().expect("state lock poisoned");
    let max = st
        .blocks
        .values()
        .flatten()
        .filter(|b| is_compacted(b.id))
        .map(|b| b.id & !COMPACTED_BIT)
        .max()
        .unwrap_or(0);
    inner.compacted_seq.fetch_max(max, Ordering::AcqRel);
    Ok(())
}
