//! The WAL writer thread: group commit, a log leaf per record, segment rotation.

use super::sealer::wait_for_sealer;
use super::*;

/// The log leaf of a committed WAL record.
pub(super) fn record_leaf(
    segment: u64,
    info: &wal::DataInfo,
    received: u64,
    policy_digest: [u8; 32],
    span_root: [u8; 32],
    span_count: u32,
) -> Vec<u8> {
    Leaf::Record(RecordLeaf {
        segment,
        key_index: info.key_index,
        counter: info.counter,
        received_unix_nanos: received,
        body_sha256: info.body_sha256,
        key_commitment: info.key_commitment,
        span_root,
        span_count,
        policy_digest,
    })
    .encode()
}

pub(super) fn writer_loop(
    inner: Arc<Inner>,
    mut active: ActiveSegment,
    rx: Receiver<WriterMsg>,
    seal_tx: Sender<SealMsg>,
) {
    const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_GROUP_BYTES);
    loop {
        let wait = inner
            .cfg
            .segment_max_age
            .saturating_sub(active.age())
            .max(Duration::from_millis(10));
        let first = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut group: Vec<(EncodedBatch, Ack)> = Vec::new();
        let mut flushes: Vec<Ack> = Vec::new();
        let mut pending = first;
        let mut bytes = 0usize;
        while let Some(m) = pending.take() {
            match m {
                WriterMsg::Append(b, ack) => {
                    bytes += b.payload.len();
                    group.push((b, ack));
                }
                WriterMsg::Flush(ack) => flushes.push(ack),
            }
            if bytes >= MAX_GROUP_BYTES {
                break;
            }
            pending = rx.try_recv().ok();
        }
        if !group.is_empty() {
            if wait_for_sealer(&inner, Duration::from_secs(3)) {
                write_group(&inner, &mut active, &mut buf, group);
            } else {
                // Not written, so not acknowledged: the clients retry later.
                for (_, ack) in group {
                    let _ = ack.send(Err(StoreError::Overloaded(format!(
                        "the write-ahead log is full: {} segments wait to be sealed (sealing is failing or behind; see /ready)",
                        inner.cfg.max_unsealed_segments
                    ))));
                }
            }
        }
        let due = active.has_data()
            && (active.len >= inner.cfg.segment_max_bytes
                || active.age() >= inner.cfg.segment_max_age);
        if due || !flushes.is_empty() {
            active = rotate(&inner, active, &seal_tx, flushes);
        }
    }
    // Shutdown: everything queued was written; close and seal the last segment.
    if active.has_data() {
        let (tx, _rx) = oneshot::channel();
        let id = active.id;
        match active.close() {
            Ok(_) => {
                let _ = seal_tx.send(SealMsg::Segment(id, vec![tx]));
            }
            Err(e) => tracing::error!(error = %e, "closing WAL segment at shutdown"),
        }
    } else {
        let id = active.id;
        drop(active);
        let _ = std::fs::remove_file(wal::segment_path(&inner.wal_dir, id));
    }
}

pub(super) fn write_group(
    inner: &Inner,
    active: &mut ActiveSegment,
    buf: &mut Vec<u8>,
    group: Vec<(EncodedBatch, Ack)>,
) {
    buf.clear();
    let keys_before = active.key_count();
    let mut encoded: Vec<(EncodedBatch, Ack, wal::DataInfo)> = Vec::with_capacity(group.len());
    for (b, ack) in group {
        match active.encode_data(&inner.keyring, &b.tenant, &b.payload, buf) {
            Ok(info) => encoded.push((b, ack, info)),
            Err(e) => {
                tracing::error!(tenant = %b.tenant, error = %e, "cannot encrypt batch");
                let _ = ack.send(Err(e));
            }
        }
    }
    if encoded.is_empty() {
        return;
    }
    let t = Instant::now();
    let res = active.write_and_sync(
        buf,
        inner.cfg.sync_hook.as_deref(),
        inner
            .cfg
            .observer
            .as_deref()
            .map(|o| o as &dyn wal::WalObserver),
    );
    match res {
        Ok(()) => {
            inner.healthy.store(true, Ordering::Relaxed);
            if let Some(o) = &inner.cfg.observer {
                o.bytes_written(buf.len() as u64);
            }
            let seg = active.id;
            let mut acks = Vec::with_capacity(encoded.len());
            {
                // In the log and visible to queries before anyone is told it is stored.
                let mut st = inner.state.write().expect("state lock poisoned");
                for (b, ack, info) in encoded {
                    let leaf_index = inner.log.as_ref().map(|log| {
                        let received = split_payload(&b.payload).map(|p| p.received).unwrap_or(0);
                        log.push(record_leaf(
                            seg,
                            &info,
                            received,
                            b.policy,
                            b.span_root,
                            b.span_count,
                        ))
                    });
                    st.head.push(Arc::new(HeadRecord {
                        segment: seg,
                        tenant: b.tenant,
                        payload: b.payload,
                        summary: b.summary,
                        leaf_index,
                    }));
                    acks.push(ack);
                }
            }
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
            tracing::trace!(
                elapsed_us = t.elapsed().as_micros() as u64,
                "group committed"
            );
        }
        Err(e) => {
            active.forget_keys_after_failure(keys_before);
            inner.healthy.store(false, Ordering::Relaxed);
            tracing::error!(error = %e, "WAL write failed; refusing the batches in this group");
            let path = wal::segment_path(&inner.wal_dir, active.id);
            for (_, ack, _) in encoded {
                let _ = ack.send(Err(StoreError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::new(e.kind(), e.to_string()),
                }));
            }
        }
    }
}

/// Closes the active segment (when it holds data) and opens the next one. The next segment is
/// created first: if that fails (disk full), writing simply continues in the current one and the
/// rotation is retried after the next group, so the writer never stops.
pub(super) fn rotate(
    inner: &Inner,
    active: ActiveSegment,
    seal_tx: &Sender<SealMsg>,
    flushes: Vec<Ack>,
) -> ActiveSegment {
    if !active.has_data() {
        // Nothing new to seal; the flush completes once the sealer has finished what it has.
        if !flushes.is_empty() {
            let _ = seal_tx.send(SealMsg::Barrier(flushes));
        }
        return active;
    }
    let next = match ActiveSegment::create(&inner.wal_dir, active.id + 1) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot open a new WAL segment; continuing in the current one");
            inner.healthy.store(false, Ordering::Relaxed);
            for f in flushes {
                let _ = f.send(Err(StoreError::Overloaded(format!(
                    "cannot open a new WAL segment: {e}"
                ))));
            }
            let _ = std::fs::remove_file(wal::segment_path(&inner.wal_dir, active.id + 1));
            return active;
        }
    };
    let id = active.id;
    if let Err(e) = active.close() {
        // Its records are durable; without the CLOSE record recovery treats the end as a tail.
        tracing::warn!(segment = id, error = %e, "could not write the close record");
    }
    *inner.unsealed.0.lock().expect("unsealed lock poisoned") += 1;
    let _ = seal_tx.send(SealMsg::Segment(id, flushes));
    next
}
