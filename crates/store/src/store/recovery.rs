//! Recovery on open: the blocks' indexes, then the WAL replayed into the head and sealed.

use super::writer::record_leaf;
use super::*;

/// Loads every block's index; returns the highest WAL segment a block was sealed from.
pub(super) fn load_blocks(inner: &Inner) -> Result<u64, StoreError> {
    let mut max_id = 0;
    let mut by_tenant: HashMap<TenantId, Vec<Arc<BlockMeta>>> = HashMap::new();
    for o in inner.objects.list("blocks/")? {
        let Some((tenant, id)) = crate::block::parse_block_key(&o.key) else {
            tracing::warn!(object = %o.key, "ignoring an object under blocks/ that is not a block");
            continue;
        };
        if inner.keyring.is_erased(&tenant) {
            // Its keys are gone; the erasure's completion at start deletes these objects.
            continue;
        }
        let meta = BlockMeta::load(&inner.objects, &o.key, &tenant, &inner.keyring)?;
        if !crate::block::is_compacted(id) {
            max_id = max_id.max(id);
        }
        by_tenant.entry(tenant).or_default().push(Arc::new(meta));
    }
    let mut st = inner.state.write().expect("state lock poisoned");
    for (tenant, mut metas) in by_tenant {
        metas.sort_by_key(|m| m.id);
        st.blocks.insert(tenant, metas);
    }
    Ok(max_id)
}

/// Recovers every WAL segment into the head and seals it. Records the log does not hold yet (a
/// crash before the log's last flush) get their leaves re-derived, in WAL order. Returns the
/// highest segment id seen and the segments left unsealed because their blocks could not be
/// written (e.g. a full disk); corruption still stops the start.
pub(super) fn recover_wal(inner: &Inner) -> Result<(u64, Vec<u64>), StoreError> {
    let mut unsealed = Vec::new();
    let mut ids = Vec::new();
    let rd = std::fs::read_dir(&inner.wal_dir).map_err(|e| StoreError::io(&inner.wal_dir, e))?;
    for e in rd {
        let e = e.map_err(|e| StoreError::io(&inner.wal_dir, e))?;
        if let Some(id) = wal::parse_segment_name(&e.file_name().to_string_lossy()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let logged = match (&inner.log, ids.first()) {
        (Some(log), Some(&min)) => log.logged_since(min)?,
        _ => Logged::default(),
    };
    let mut max_id = 0;
    for id in ids {
        max_id = max_id.max(id);
        let path = wal::segment_path(&inner.wal_dir, id);
        let seg = wal::read_segment(&path)?;
        let keys = wal::open_segment_keys(&inner.keyring, &seg)?;
        let erased = wal::erased_key_indexes(&inner.keyring, &seg);
        let mut recs = Vec::new();
        for r in seg.records {
            if let Recovered::Data {
                key_index,
                counter,
                mut ciphertext,
                offset,
                body_sha256,
            } = r
            {
                if erased.contains(&key_index) {
                    // A record of an erased tenant: its keys are destroyed, it is not read.
                    continue;
                }
                let corrupt = |reason: String| StoreError::Corruption {
                    path: path.display().to_string(),
                    offset,
                    reason,
                };
                let (tenant, key) = keys.get(&key_index).ok_or_else(|| {
                    corrupt(format!("data record uses unknown key index {key_index}"))
                })?;
                let plain = key
                    .open(
                        counter,
                        &wal::data_aad(id, key_index, counter),
                        &mut ciphertext,
                    )
                    .map_err(|_| {
                        corrupt(format!(
                            "record {counter} of key {key_index} fails authentication"
                        ))
                    })?;
                let payload = plain.to_vec();
                let req = decode_payload(&payload)?;
                let leaf_index = match &inner.log {
                    None => None,
                    Some(log) => match logged.records.get(&(id, key_index, counter)) {
                        Some((index, digest)) if *digest == body_sha256 => Some(*index),
                        Some((index, _)) => {
                            return Err(corrupt(format!(
                                "record {counter} of key {key_index} does not match its log entry {index}"
                            )));
                        }
                        None => {
                            let parts = split_payload(&payload)?;
                            let (root, count) = commit::span_root(
                                &parts.secret,
                                &commit::CanonRecord::of_request(&req),
                            );
                            let info = wal::DataInfo {
                                key_index,
                                counter,
                                body_sha256,
                                key_commitment: key.secret().commitment(),
                            };
                            Some(log.push(record_leaf(
                                id,
                                &info,
                                parts.received,
                                parts.policy,
                                root,
                                count,
                            )))
                        }
                    },
                };
                recs.push(Arc::new(HeadRecord {
                    segment: id,
                    tenant: tenant.clone(),
                    payload,
                    summary: BatchSummary::of(&req),
                    leaf_index,
                }));
            }
        }
        let n = recs.len();
        inner
            .state
            .write()
            .expect("state lock poisoned")
            .head
            .extend(recs);
        tracing::info!(
            segment = id,
            records = n,
            torn_bytes = seg.torn_bytes,
            "recovered WAL segment"
        );
        match seal_segment(inner, id) {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(segment = id, error = %e, "cannot seal a recovered WAL segment now; serving it from memory and retrying in the background");
                unsealed.push(id);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((max_id, unsealed))
}
