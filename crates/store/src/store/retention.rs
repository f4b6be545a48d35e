//! Retention: blocks past their tenant's period are deleted, each deletion logged first.

use super::*;

/// Deletes the blocks past their tenant's retention period (newest span ended before `now -
/// retention`), logging each deletion first; then, if so configured, destroys the key versions
/// of those tenants that wrap nothing still stored.
pub(crate) fn prune_expired(inner: &Inner) -> Result<usize, StoreError> {
    let _one = inner.maintenance.lock().expect("maintenance lock poisoned");
    let now = crate::now_unix_nanos();
    let expired: Vec<(Arc<BlockMeta>, Duration)> = {
        let st = inner.state.read().expect("state lock poisoned");
        st.blocks
            .iter()
            .filter_map(|(t, blocks)| inner.cfg.retention_of(t).map(|keep| (blocks, keep)))
            .flat_map(|(blocks, keep)| {
                let cutoff = now.saturating_sub(keep.as_nanos() as u64);
                blocks
                    .iter()
                    .filter(move |b| b.index.max_end < cutoff)
                    .map(move |b| (b.clone(), keep))
            })
            .collect()
    };
    let mut tenants: Vec<TenantId> = Vec::new();
    for (b, keep) in &expired {
        if let Some(log) = &inner.log {
            let digest = b.digest()?;
            let i = log.push(
                Leaf::Prune(leaf::PruneLeaf {
                    block_id: b.id,
                    pruned_unix_nanos: crate::now_unix_nanos(),
                    file_sha256: digest,
                    retention_secs: keep.as_secs(),
                })
                .encode(),
            );
            log.flush_through(i)?;
        }
        {
            let mut st = inner.state.write().expect("state lock poisoned");
            if let Some(list) = st.blocks.get_mut(&b.tenant) {
                list.retain(|x| x.id != b.id);
            }
        }
        inner.objects.delete(&b.key)?;
        tracing::info!(tenant = %b.tenant, block = b.id, spans = b.index.span_count, retention_secs = keep.as_secs(), "deleted a block past its retention period");
        if !tenants.contains(&b.tenant) {
            tenants.push(b.tenant.clone());
        }
    }
    if inner.cfg.destroy_unused_keys {
        // Tenants that lost blocks stay candidates until no superseded version is left (a version
        // may still wrap a WAL segment waiting for deletion, or be within its grace period).
        let mut gc = inner.key_gc.lock().expect("key gc lock poisoned");
        gc.extend(tenants);
        // A tenant whose last block under an old version expired before the version was
        // superseded (a rotation after the deletion) is picked up here: every tenant with more
        // than one live version is a candidate.
        if let Ok(all) = inner.keyring.tenants() {
            for t in all {
                if !gc.contains(&t)
                    && !inner.keyring.is_erased(&t)
                    && inner
                        .keyring
                        .versions(&t)
                        .map(|v| v.len() > 1)
                        .unwrap_or(false)
                {
                    gc.insert(t);
                }
            }
        }
        if !gc.is_empty() {
            let uses = crate::keyuse::key_use(&*inner.objects, &inner.wal_dir)?;
            gc.retain(|t| {
                let in_use: Vec<_> = uses
                    .iter()
                    .filter(|u| u.tenant == t.as_str())
                    .map(|u| u.wrapped.clone())
                    .collect();
                match inner
                    .keyring
                    .destroy_unused_versions(t, &in_use, inner.cfg.unused_key_grace)
                {
                    Ok(v) if !v.is_empty() => {
                        tracing::info!(tenant = %t, versions = ?v, "destroyed tenant key versions that wrap nothing still stored")
                    }
                    Ok(_) => {}
                    Err(tv_crypto::CryptoError::Erased(_)) => return false,
                    Err(e) => {
                        tracing::warn!(tenant = %t, error = %e, "cannot destroy unused key versions")
                    }
                }
                inner.keyring.versions(t).map(|v| v.len() > 1).unwrap_or(false)
            });
        }
    }
    if let Some(log) = &inner.log {
        // The oldest entry anything still stored needs (a block's or an unsealed batch's record
        // leaf); every later entry is pushed after this snapshot, so it is at least `log.len()`.
        let keep_from = {
            let st = inner.state.read().expect("state lock poisoned");
            let blocks = st
                .blocks
                .values()
                .flatten()
                .flat_map(|b| b.index.records.iter().map(|r| r.leaf_index));
            let head = st.head.iter().filter_map(|r| r.leaf_index);
            blocks
                .chain(head)
                .filter(|i| *i != u64::MAX)
                .chain(std::iter::once(log.len()))
                .min()
                .unwrap_or(0)
        };
        log.prune_below(keep_from)?;
    }
    Ok(expired.len())
}

pub(super) fn retention_loop(inner: Arc<Inner>, keep: Duration, stop: Arc<(Mutex<bool>, Condvar)>) {
    // `keep`: the shortest retention period, setting how often the check runs.
    let every = inner
        .cfg
        .retention_interval
        .unwrap_or_else(|| (keep / 4).clamp(Duration::from_millis(200), Duration::from_secs(60)));
    run_every(&stop, every, || {
        if let Err(e) = prune_expired(&inner) {
            tracing::error!(error = %e, "retention could not delete an expired block; retrying");
        }
    });
}
