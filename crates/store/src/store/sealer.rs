//! The sealer thread: closed WAL segments become one block per tenant, logged, and the
//! segments are deleted once their block leaves are durable.

use super::*;

/// Seals the head records of segment `id` into one block per tenant, logs a leaf for each block,
/// and deletes the segment once those leaves are durable. A block already written and logged (by
/// an attempt that failed later, or before a crash) is kept as it is.
pub(super) fn seal_segment(inner: &Inner, id: u64) -> Result<(), StoreError> {
    seal_segment_with(inner, id, false)
}

/// [`seal_segment`]; with `defer`, a segment whose block leaves are not durable yet is deleted
/// later (see [`delete_durable_segments`]) instead of waiting for the log's next flush here.
pub(super) fn seal_segment_with(inner: &Inner, id: u64, defer: bool) -> Result<(), StoreError> {
    if inner.fenced.load(Ordering::Acquire) {
        return Err(StoreError::Fenced(format!(
            "segment {id} stays in the WAL: another process runs this node id"
        )));
    }
    let records: Vec<Arc<HeadRecord>> = {
        let st = inner.state.read().expect("state lock poisoned");
        st.head
            .iter()
            .filter(|r| r.segment == id)
            .cloned()
            .collect()
    };
    let mut by_tenant: HashMap<TenantId, Vec<Arc<HeadRecord>>> = HashMap::new();
    for r in records {
        by_tenant.entry(r.tenant.clone()).or_default().push(r);
    }
    let mut new_blocks = Vec::new();
    let mut last_leaf: Option<u64> = None;
    for (tenant, recs) in by_tenant {
        if inner.keyring.is_erased(&tenant) {
            continue;
        }
        let key = crate::block::block_key(&tenant, id);
        let load = || BlockMeta::load(&inner.objects, &key, &tenant, &inner.keyring).map(Arc::new);
        // A block an earlier attempt wrote: kept if its leaf is in the log; otherwise (a crash
        // before the leaf was durable) written again, with a new data key, in its place.
        if inner.objects.head(&key)?.is_some() {
            // A read that fails is an error, never a reason to replace the block.
            let digest = match &inner.log {
                Some(_) => Some(tv_tlog::commit::sha256(&inner.objects.get(&key)?.0)),
                None => None,
            };
            if let (Some(log), Some(d)) = (&inner.log, digest)
                && let Some(i) = log.block_leaf(&d)
            {
                last_leaf = last_leaf.max(Some(i));
                new_blocks.push(load()?);
                continue;
            }
            tracing::info!(block = %key, "a block whose log leaf was never written is written again");
            inner.objects.delete(&key)?;
        }
        let mut builder = BlockBuilder::default();
        for r in &recs {
            builder.add_record(r.leaf_index.unwrap_or(u64::MAX), r.secret(), r.decode()?);
        }
        if builder.is_empty() {
            continue;
        }
        let sealed = builder.write(
            &inner.staging_dir,
            &*inner.objects,
            &tenant,
            id,
            &inner.keyring,
            inner.cfg.chunk_target_bytes,
            inner.cfg.block_zstd_level,
        )?;
        if let Some(o) = &inner.cfg.observer {
            o.block_sealed(sealed.spans, sealed.size);
        }
        if let Some(log) = &inner.log {
            last_leaf = last_leaf.max(Some(log.push_block(sealed.file_sha256, sealed.leaf(id))));
        }
        new_blocks.push(load()?);
        tracing::debug!(tenant = %tenant, block = id, spans = sealed.spans, bytes = sealed.size, "sealed block");
    }
    // The WAL goes only once the blocks' leaves are durable.
    let wait_for = match (&inner.log, last_leaf) {
        (Some(log), Some(i)) if log.durable_size() <= i => {
            if !defer {
                log.flush_through(i)?;
                None
            } else {
                Some(i)
            }
        }
        _ => None,
    };
    {
        let mut st = inner.state.write().expect("state lock poisoned");
        for b in new_blocks {
            let list = st.blocks.entry(b.tenant.clone()).or_default();
            list.retain(|x| x.id != b.id);
            list.push(b);
        }
        st.head.retain(|r| r.segment != id);
    }
    if let Some(i) = wait_for {
        inner
            .pending_deletes
            .lock()
            .expect("pending deletes lock poisoned")
            .push((id, i));
        return Ok(());
    }
    delete_segment(inner, id)
}

pub(super) fn delete_segment(inner: &Inner, id: u64) -> Result<(), StoreError> {
    let path = wal::segment_path(&inner.wal_dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&path, e)),
    }
    fsio::sync_dir(&inner.wal_dir).map_err(|e| StoreError::io(&inner.wal_dir, e))?;
    Ok(())
}

/// Deletes the sealed WAL segments whose block leaves have become durable (`force`: makes them
/// durable first, at shutdown).
pub(super) fn delete_durable_segments(inner: &Inner, force: bool) {
    let Some(log) = &inner.log else { return };
    let pending = std::mem::take(
        &mut *inner
            .pending_deletes
            .lock()
            .expect("pending deletes lock poisoned"),
    );
    if pending.is_empty() {
        return;
    }
    if force
        && let Some(max) = pending.iter().map(|p| p.1).max()
        && let Err(e) = log.flush_through(max)
    {
        tracing::warn!(error = %e, "the log could not be flushed; sealed WAL segments stay until the next start");
    }
    let durable = log.durable_size();
    let mut keep = Vec::new();
    for (id, leaf) in pending {
        if durable > leaf {
            if let Err(e) = delete_segment(inner, id) {
                tracing::warn!(segment = id, error = %e, "cannot delete a sealed WAL segment; retrying");
                keep.push((id, leaf));
            }
        } else {
            keep.push((id, leaf));
        }
    }
    inner
        .pending_deletes
        .lock()
        .expect("pending deletes lock poisoned")
        .extend(keep);
}

/// Waits (at most `max_wait`) while too many closed segments wait for the sealer, so that
/// acknowledgements slow down instead of memory growing without bound. Returns false when there
/// is still no room: the WAL is full (sealing keeps failing, e.g. the object store does not
/// answer), and appends are refused at once until the sealer catches up.
pub(super) fn wait_for_sealer(inner: &Inner, max_wait: Duration) -> bool {
    let (lock, cv) = &inner.unsealed;
    let mut n = lock.lock().expect("unsealed lock poisoned");
    if *n < inner.cfg.max_unsealed_segments {
        return true;
    }
    tracing::debug!(
        unsealed = *n,
        "sealing is behind ingest; pausing the WAL writer"
    );
    let deadline = Instant::now() + max_wait;
    while *n >= inner.cfg.max_unsealed_segments {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if !inner.wal_full.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    unsealed = *n,
                    "the write-ahead log is full: ingest answers 503 until sealing catches up"
                );
            }
            return false;
        }
        n = cv.wait_timeout(n, left).expect("unsealed lock poisoned").0;
    }
    true
}

/// One closed segment fewer waits for sealing; the WAL has room again below the limit.
fn segment_sealed(inner: &Inner) {
    let (lock, cv) = &inner.unsealed;
    let mut n = lock.lock().expect("unsealed lock poisoned");
    *n = n.saturating_sub(1);
    if *n < inner.cfg.max_unsealed_segments && inner.wal_full.swap(false, Ordering::AcqRel) {
        tracing::info!("the write-ahead log has room again");
    }
    cv.notify_all();
}

pub(super) fn sealer_loop(inner: Arc<Inner>, rx: Receiver<SealMsg>) {
    // Segments whose sealing failed (e.g. disk full) are retried every few seconds; until then
    // their records stay in the head, readable and in the WAL. Sealed segments whose block leaves
    // are not durable yet are deleted once the log has flushed (at most a second later).
    // (segment, whether it counts against the WAL's limit until it is sealed)
    let mut retry: Vec<(u64, bool)> = Vec::new();
    let mut last_retry = Instant::now();
    loop {
        let waiting = !inner
            .pending_deletes
            .lock()
            .expect("pending deletes lock poisoned")
            .is_empty();
        let msg = if retry.is_empty() && !waiting {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        delete_durable_segments(&inner, false);
        let (ids, acks) = match msg {
            Some(SealMsg::Segment(id, acks)) => (vec![(id, true)], acks),
            Some(SealMsg::Recovered(id)) => (vec![(id, false)], Vec::new()),
            Some(SealMsg::Barrier(acks)) => (Vec::new(), acks),
            None if last_retry.elapsed() >= Duration::from_secs(5) => {
                last_retry = Instant::now();
                (std::mem::take(&mut retry), Vec::new())
            }
            None => continue,
        };
        let mut result: Result<(), String> = Ok(());
        for (id, counted) in ids {
            let t = Instant::now();
            match seal_segment_with(&inner, id, true) {
                Ok(()) => {
                    inner.note_bucket(Ok(()));
                    tracing::debug!(
                        segment = id,
                        ms = t.elapsed().as_millis() as u64,
                        "sealed WAL segment"
                    );
                    // Sealed: the segment no longer counts against the WAL's limit.
                    if counted {
                        segment_sealed(&inner);
                    }
                }
                Err(e) => {
                    if let StoreError::Object(o) = &e
                        && o.is_transient()
                    {
                        inner.note_bucket(Err(e.to_string()));
                    }
                    if let StoreError::Fenced(why) = &e {
                        inner.fence(why);
                    }
                    tracing::error!(segment = id, error = %e, "sealing failed; the segment stays in the WAL and is retried");
                    result = Err(e.to_string());
                    retry.push((id, counted));
                }
            }
        }
        if !acks.is_empty() {
            // A flush also puts everything it sealed into a signed checkpoint.
            if let Some(log) = &inner.log
                && let Err(e) = log.flush()
                && result.is_ok()
            {
                result = Err(e.to_string());
            }
            delete_durable_segments(&inner, false);
        }
        for a in acks {
            let _ = a.send(result.clone().map_err(StoreError::Decode));
        }
    }
    // Shutting down: one last try for anything still unsealed (the WAL keeps it otherwise).
    for (id, _) in retry {
        if let Err(e) = seal_segment(&inner, id) {
            tracing::warn!(segment = id, error = %e, "segment left in the WAL; it is sealed at the next start");
        }
    }
    delete_durable_segments(&inner, true);
}
