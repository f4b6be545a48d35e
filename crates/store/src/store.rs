//! The store: recovery on open, the WAL writer thread (group commit), the sealer thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::oneshot;
use tv_crypto::{Keyring, fsio};
use tv_model::TenantId;
use tv_model::otlp::ExportTraceServiceRequest;
use tv_model::validate::Validated;

use crate::StoreError;
use crate::block::{BlockBuilder, BlockMeta};
use crate::commit;
use crate::txlog::{LogConfig, Logged, TxLog};
use crate::wal::{self, ActiveSegment, Recovered, SyncHook};
use tv_tlog::leaf::{self, BlockLeaf, Leaf, RecordLeaf};

/// Store settings (validated by the server's config layer).
#[derive(Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// A segment is closed and sealed once it reaches this size...
    pub segment_max_bytes: u64,
    /// ...or this age, whichever comes first.
    pub segment_max_age: Duration,
    /// Uncompressed span bytes per block chunk.
    pub chunk_target_bytes: usize,
    pub block_zstd_level: i32,
    pub wal_zstd_level: i32,
    /// Appends waiting for the writer beyond this many bytes are refused as overload.
    pub max_pending_bytes: u64,
    /// Closed segments waiting to be sealed before the writer pauses (backpressure that bounds
    /// memory when sealing falls behind ingest).
    pub max_unsealed_segments: usize,
    pub sync_hook: Option<Arc<dyn SyncHook>>,
    pub observer: Option<Arc<dyn StoreObserver>>,
    /// The transparency log. `None` only to measure what the log costs (benchmarks); the server
    /// always runs with it.
    pub log: Option<LogConfig>,
    /// Blocks whose newest span ended longer ago than this are deleted (each deletion is logged
    /// first, so `verify` reports it as pruned). `None` keeps everything.
    pub retention: Option<Duration>,
    /// Per-tenant retention overriding `retention` (None: keep all of that tenant's data).
    pub tenant_retention: HashMap<TenantId, Option<Duration>>,
    /// After retention deleted blocks of a tenant, destroy its key versions that wrap nothing
    /// still stored (never the current one).
    pub destroy_unused_keys: bool,
    /// How long a key version must have been superseded before it may be destroyed as unused.
    pub unused_key_grace: Duration,
    /// How often retention runs (None: a quarter of the shortest period, 0.2 to 60 s).
    pub retention_interval: Option<Duration>,
    /// The data directory's lock, when the caller took it first ([`crate::lock_data_dir`]);
    /// otherwise the store takes it.
    pub lock: Option<Arc<std::fs::File>>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data_dir", &self.data_dir)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("segment_max_age", &self.segment_max_age)
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            segment_max_bytes: 8 * 1024 * 1024,
            segment_max_age: Duration::from_secs(60),
            chunk_target_bytes: 512 * 1024,
            block_zstd_level: 6,
            wal_zstd_level: 1,
            max_pending_bytes: 64 * 1024 * 1024,
            max_unsealed_segments: 2,
            sync_hook: None,
            observer: None,
            log: None,
            retention: None,
            tenant_retention: HashMap::new(),
            destroy_unused_keys: true,
            unused_key_grace: Duration::from_secs(600),
            retention_interval: None,
            lock: None,
        }
    }

    /// How long `tenant`'s blocks are kept (None: for ever).
    pub fn retention_of(&self, tenant: &TenantId) -> Option<Duration> {
        match self.tenant_retention.get(tenant) {
            Some(r) => *r,
            None => self.retention,
        }
    }

    /// The shortest retention period in force, if any (how often retention runs).
    fn shortest_retention(&self) -> Option<Duration> {
        self.tenant_retention
            .values()
            .flatten()
            .chain(self.retention.iter())
            .min()
            .copied()
    }
}

/// Storage events for metrics.
pub trait StoreObserver: wal::WalObserver {
    fn block_sealed(&self, _spans: u64, _bytes: u64) {}
    fn bytes_written(&self, _bytes: u64) {}
}

/// What a batch touches, for the head index.
#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    /// Sorted, deduplicated trace id prefixes.
    pub prefixes: Vec<u64>,
    pub min_start: u64,
    pub max_end: u64,
    pub spans: u64,
}

impl BatchSummary {
    pub fn of(req: &ExportTraceServiceRequest) -> Self {
        let mut s = BatchSummary {
            min_start: u64::MAX,
            ..Default::default()
        };
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    if span.trace_id.len() == 16 {
                        s.prefixes.push(u64::from_be_bytes(
                            span.trace_id[..8].try_into().expect("8 bytes"),
                        ));
                    }
                    s.min_start = s.min_start.min(span.start_time_unix_nano);
                    s.max_end = s.max_end.max(span.end_time_unix_nano);
                    s.spans += 1;
                }
            }
        }
        s.prefixes.sort_unstable();
        s.prefixes.dedup();
        s
    }
}

/// Bytes before the compressed request in a WAL record's plaintext: format 0x01, the record
/// secret (salts of its span commitments), the receive time (u64 LE).
/// Record plaintext, format 2: `0x02 | record secret (32) | receive time (u64 LE) | redaction
/// policy digest (32) | zstd(protobuf request)`. Format 1 (no policy digest; written before
/// redaction existed) is still read, with the empty policy's digest.
pub(crate) const PAYLOAD_HEADER: usize = 1 + 32 + 8 + 32;
const PAYLOAD_FORMAT: u8 = 2;
const PAYLOAD_HEADER_V1: usize = 1 + 32 + 8;

/// A validated batch, encoded and compressed, with its span commitments: ready for the WAL.
pub struct EncodedBatch {
    tenant: TenantId,
    /// `PAYLOAD_HEADER` bytes, then zstd(protobuf request).
    payload: Vec<u8>,
    summary: BatchSummary,
    span_root: [u8; 32],
    span_count: u32,
    policy: [u8; 32],
}

impl EncodedBatch {
    /// Encodes a validated (and redacted) batch for `tenant` (protobuf, then zstd at `level`) and
    /// computes its span commitments under a fresh record secret. `policy` is the digest of the
    /// redaction policy the batch went through; the log records it.
    pub fn encode(
        tenant: TenantId,
        batch: &Validated,
        level: i32,
        policy: [u8; 32],
    ) -> Result<Self, StoreError> {
        let req = batch.request();
        let raw = req.encode_to_vec();
        let secret = tv_crypto::random_bytes::<32>();
        let (span_root, span_count) =
            commit::span_root(&secret, &commit::CanonRecord::of_request(req));
        let mut payload = Vec::with_capacity(PAYLOAD_HEADER + raw.len() / 3);
        payload.push(PAYLOAD_FORMAT);
        payload.extend_from_slice(&secret);
        payload.extend_from_slice(&crate::now_unix_nanos().to_le_bytes());
        payload.extend_from_slice(&policy);
        let z = zstd::bulk::compress(&raw, level)
            .map_err(|e| StoreError::Decode(format!("compressing batch: {e}")))?;
        payload.extend_from_slice(&z);
        Ok(Self {
            tenant,
            payload,
            summary: BatchSummary::of(req),
            span_root,
            span_count,
            policy,
        })
    }

    pub fn spans(&self) -> u64 {
        self.summary.spans
    }
}

/// An acknowledged batch not yet sealed into a block.
pub(crate) struct HeadRecord {
    pub segment: u64,
    pub tenant: TenantId,
    /// The record's plaintext payload (memory only; see `PAYLOAD_HEADER`).
    pub payload: Vec<u8>,
    pub summary: BatchSummary,
    /// Its log leaf (None when the store runs without a log).
    pub leaf_index: Option<u64>,
}

/// The parts of a record plaintext.
pub(crate) struct Payload<'a> {
    pub secret: [u8; 32],
    pub received: u64,
    pub policy: [u8; 32],
    pub body: &'a [u8],
}

/// Splits a record plaintext (format 2, or format 1 with the empty policy).
pub(crate) fn split_payload(p: &[u8]) -> Result<Payload<'_>, StoreError> {
    let (policy, header) = match p.first() {
        Some(&PAYLOAD_FORMAT) if p.len() >= PAYLOAD_HEADER => {
            (p[41..73].try_into().expect("32 bytes"), PAYLOAD_HEADER)
        }
        Some(1) if p.len() >= PAYLOAD_HEADER_V1 => (commit::policy_digest(), PAYLOAD_HEADER_V1),
        _ => {
            return Err(StoreError::Decode(
                "record payload has an unknown format".to_owned(),
            ));
        }
    };
    Ok(Payload {
        secret: p[1..33].try_into().expect("32 bytes"),
        received: u64::from_le_bytes(p[33..41].try_into().expect("8 bytes")),
        policy,
        body: &p[header..],
    })
}

impl HeadRecord {
    pub fn secret(&self) -> [u8; 32] {
        split_payload(&self.payload)
            .map(|p| p.secret)
            .unwrap_or([0; 32])
    }

    pub fn decode(&self) -> Result<ExportTraceServiceRequest, StoreError> {
        decode_payload(&self.payload)
    }
}

/// The request inside a record plaintext.
pub(crate) fn decode_payload(p: &[u8]) -> Result<ExportTraceServiceRequest, StoreError> {
    let z = split_payload(p)?.body;
    let raw = zstd::bulk::decompress(z, 1024 * 1024 * 1024)
        .map_err(|e| StoreError::Decode(format!("head record: {e}")))?;
    ExportTraceServiceRequest::decode(raw.as_slice())
        .map_err(|e| StoreError::Decode(format!("head record: {e}")))
}

#[derive(Default)]
pub(crate) struct State {
    pub head: Vec<Arc<HeadRecord>>,
    pub blocks: HashMap<TenantId, Vec<Arc<BlockMeta>>>,
}

pub(crate) struct Inner {
    pub cfg: StoreConfig,
    pub keyring: Arc<Keyring>,
    pub state: RwLock<State>,
    pub wal_dir: PathBuf,
    pub block_dir: PathBuf,
    pub log: Option<Arc<TxLog>>,
    /// Sealed WAL segments waiting for their block leaves to become durable: (segment, leaf).
    pending_deletes: Mutex<Vec<(u64, u64)>>,
    pending_bytes: AtomicU64,
    healthy: AtomicBool,
    /// Closed segments not yet sealed, with a condvar the sealer signals.
    unsealed: (Mutex<usize>, Condvar),
    /// Tenants being erased: their writes are refused (erased tenants are refused by the keyring).
    erasing: Mutex<std::collections::HashSet<TenantId>>,
    /// The data directory's exclusive lock, held while the store is open.
    _lock: Arc<std::fs::File>,
    /// Tenants whose superseded key versions may become destroyable (see `prune_expired`).
    key_gc: Mutex<std::collections::HashSet<TenantId>>,
}

impl Inner {
    /// Refuses writes for a tenant that is erased or being erased.
    fn accepts(&self, tenant: &TenantId) -> Result<(), StoreError> {
        if self.keyring.is_erased(tenant)
            || self
                .erasing
                .lock()
                .expect("erasing lock poisoned")
                .contains(tenant)
        {
            return Err(StoreError::Erased(tenant.to_string()));
        }
        Ok(())
    }
}

type Ack = oneshot::Sender<Result<(), StoreError>>;

enum WriterMsg {
    Append(EncodedBatch, Ack),
    /// Close the active segment and seal it; the ack fires after sealing.
    Flush(Ack),
}

enum SealMsg {
    /// A segment the writer closed (counted in `unsealed`).
    Segment(u64, Vec<Ack>),
    /// A segment recovery could not seal at start (not counted).
    Recovered(u64),
    /// Acknowledge once everything queued before it is sealed.
    Barrier(Vec<Ack>),
}

/// Counts for `/metrics` and diagnostics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub blocks: usize,
    pub block_bytes: u64,
    pub block_spans: u64,
    pub head_records: usize,
    pub head_spans: u64,
}

/// The embedded store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Arc<Inner>,
    writer_tx: Mutex<Option<SyncSender<WriterMsg>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    log_stop: Arc<(Mutex<bool>, Condvar)>,
    log_thread: Mutex<Option<JoinHandle<()>>>,
    retention_stop: Arc<(Mutex<bool>, Condvar)>,
    retention_thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.cfg.data_dir.display())
    }
}

impl Store {
    /// Opens the store: loads block indexes, recovers and seals any WAL segments left by an earlier
    /// run (refusing to start on corruption of acknowledged data), then starts the writer.
    pub fn open(cfg: StoreConfig, keyring: Arc<Keyring>) -> Result<Self, StoreError> {
        let lock = match &cfg.lock {
            Some(l) => l.clone(),
            None => Arc::new(crate::lock_data_dir(&cfg.data_dir)?),
        };
        let wal_dir = cfg.data_dir.join("wal");
        let block_dir = cfg.data_dir.join("blocks");
        for d in [&cfg.data_dir, &wal_dir, &block_dir] {
            fsio::create_private_dir(d).map_err(|e| StoreError::io(d, e))?;
        }
        let log = match &cfg.log {
            Some(lc) => Some(Arc::new(TxLog::open(
                &cfg.data_dir.join("log"),
                lc.clone(),
            )?)),
            None => None,
        };
        let inner = Arc::new(Inner {
            cfg,
            keyring,
            state: RwLock::new(State::default()),
            wal_dir,
            block_dir,
            log,
            pending_deletes: Mutex::new(Vec::new()),
            pending_bytes: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            unsealed: (Mutex::new(0), Condvar::new()),
            erasing: Mutex::new(std::collections::HashSet::new()),
            _lock: lock,
            key_gc: Mutex::new(std::collections::HashSet::new()),
        });
        let erasures = crate::erase::apply_records(&inner)?;
        let mut max_id = load_blocks(&inner)?;
        let (wal_max, unsealed) = recover_wal(&inner)?;
        max_id = max_id.max(wal_max);
        let log_stop = Arc::new((Mutex::new(false), Condvar::new()));
        let log_thread = match &inner.log {
            Some(log) => {
                // The first start signs the empty log; every start publishes what recovery added.
                log.flush()?;
                // Erasures a crash interrupted (or blocks of an erased tenant put back): finish.
                for r in erasures {
                    let t = TenantId::parse(&r.tenant)
                        .map_err(|e| StoreError::Decode(e.to_string()))?;
                    if !r.complete || inner.block_dir.join(t.as_str()).exists() {
                        tracing::warn!(tenant = %t, "finishing the erasure of a tenant");
                        crate::erase::erase_blocking(&inner, &t, Some(r))?;
                    }
                }
                let (log, stop) = (log.clone(), log_stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("tv-log".into())
                        .spawn(move || log.run(stop))
                        .map_err(|e| StoreError::io(Path::new("log thread"), e))?,
                )
            }
            None => None,
        };

        let active = ActiveSegment::create(&inner.wal_dir, max_id + 1)?;
        let (wtx, wrx) = std::sync::mpsc::sync_channel::<WriterMsg>(8192);
        let (stx, srx) = std::sync::mpsc::channel::<SealMsg>();
        // Segments that could not be sealed at start (no space) stay readable from the head and
        // are sealed in the background once they can be.
        for id in unsealed {
            let _ = stx.send(SealMsg::Recovered(id));
        }
        let w_inner = inner.clone();
        let writer = std::thread::Builder::new()
            .name("tv-wal-writer".into())
            .spawn(move || writer_loop(w_inner, active, wrx, stx))
            .map_err(|e| StoreError::io(Path::new("wal writer thread"), e))?;
        let s_inner = inner.clone();
        let sealer = std::thread::Builder::new()
            .name("tv-sealer".into())
            .spawn(move || sealer_loop(s_inner, srx))
            .map_err(|e| StoreError::io(Path::new("sealer thread"), e))?;
        let retention_stop = Arc::new((Mutex::new(false), Condvar::new()));
        let retention_thread = match inner.cfg.shortest_retention() {
            Some(keep) => {
                let (r_inner, stop) = (inner.clone(), retention_stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("tv-retention".into())
                        .spawn(move || retention_loop(r_inner, keep, stop))
                        .map_err(|e| StoreError::io(Path::new("retention thread"), e))?,
                )
            }
            None => None,
        };
        Ok(Self {
            inner,
            retention_stop,
            retention_thread: Mutex::new(retention_thread),
            writer_tx: Mutex::new(Some(wtx)),
            threads: Mutex::new(vec![writer, sealer]),
            log_stop,
            log_thread: Mutex::new(log_thread),
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Whether the last WAL write succeeded (readiness).
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Whether the store takes data for `tenant` (not when it is erased or being erased).
    pub fn accepts(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.inner.accepts(tenant)
    }

    /// What erasing `tenant` would delete now: (blocks, spans in them, acknowledged spans not
    /// sealed yet).
    pub fn tenant_holdings(&self, tenant: &TenantId) -> (u64, u64, u64) {
        let st = self.inner.state.read().expect("state lock poisoned");
        let blocks = st.blocks.get(tenant);
        (
            blocks.map(|b| b.len() as u64).unwrap_or(0),
            blocks
                .map(|b| b.iter().map(|m| m.index.span_count).sum())
                .unwrap_or(0),
            st.head
                .iter()
                .filter(|r| &r.tenant == tenant)
                .map(|r| r.summary.spans)
                .sum(),
        )
    }

    /// Crypto-shreds `tenant` (see [`crate::erase`]): refuses its writes, seals what it holds,
    /// logs the erasure, destroys every version of its keys and deletes its blocks. An erasure
    /// a failure interrupted is finished; a finished one is refused as already done.
    pub async fn erase_tenant(
        &self,
        tenant: &TenantId,
    ) -> Result<crate::erase::Erasure, StoreError> {
        let earlier = crate::erase::record_of(&self.inner.cfg.data_dir, tenant)?;
        if let Some(r) = &earlier
            && r.complete
        {
            return Err(StoreError::Erased(tenant.to_string()));
        }
        {
            // Under the writer lock: every append before this is queued ahead of the flush below,
            // every one after it is refused.
            let _w = self.writer_tx.lock().expect("writer lock poisoned");
            self.inner
                .erasing
                .lock()
                .expect("erasing lock poisoned")
                .insert(tenant.clone());
        }
        if earlier.is_none()
            && let Err(e) = self.flush().await
        {
            self.inner
                .erasing
                .lock()
                .expect("erasing lock poisoned")
                .remove(tenant);
            return Err(e);
        }
        let (inner, t) = (self.inner.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || crate::erase::erase_blocking(&inner, &t, earlier))
            .await
            .map_err(|e| StoreError::Decode(format!("erasure task: {e}")))?
    }

    /// Appends a batch; resolves once it is durable (after the covering fsync) or refused.
    pub async fn append(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        let bytes = batch.payload.len() as u64;
        let pending = self.inner.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        if pending + bytes > self.inner.cfg.max_pending_bytes {
            self.inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(StoreError::Overloaded(format!(
                "more than {} bytes are waiting to be written",
                self.inner.cfg.max_pending_bytes
            )));
        }
        let (tx, rx) = oneshot::channel();
        let sent = {
            let guard = self.writer_tx.lock().expect("writer lock poisoned");
            if let Err(e) = self.inner.accepts(&batch.tenant) {
                drop(guard);
                self.inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                return Err(e);
            }
            match guard.as_ref() {
                None => Err(StoreError::ShuttingDown),
                Some(w) => match w.try_send(WriterMsg::Append(batch, tx)) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) => {
                        Err(StoreError::Overloaded("the write queue is full".to_owned()))
                    }
                    Err(TrySendError::Disconnected(_)) => Err(StoreError::ShuttingDown),
                },
            }
        };
        if let Err(e) = sent {
            self.inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(e);
        }
        let res = rx.await.unwrap_or(Err(StoreError::ShuttingDown));
        self.inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
        res
    }

    /// Closes the active segment and seals it into blocks; resolves when sealed and covered by a
    /// signed checkpoint.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let guard = self.writer_tx.lock().expect("writer lock poisoned");
            let w = guard.as_ref().ok_or(StoreError::ShuttingDown)?;
            w.send(WriterMsg::Flush(tx))
                .map_err(|_| StoreError::ShuttingDown)?;
        }
        rx.await.unwrap_or(Err(StoreError::ShuttingDown))
    }

    /// Stops the writer after it has written everything queued, seals the last segment and waits
    /// for the background threads. Blocking.
    pub fn shutdown(&self) {
        let retention = self
            .retention_thread
            .lock()
            .expect("retention lock poisoned")
            .take();
        if let Some(t) = retention {
            *self
                .retention_stop
                .0
                .lock()
                .expect("retention lock poisoned") = true;
            self.retention_stop.1.notify_all();
            let _ = t.join();
        }
        // Dropping the sender lets the writer drain its queue, then close and seal.
        self.writer_tx.lock().expect("writer lock poisoned").take();
        let threads: Vec<_> = self
            .threads
            .lock()
            .expect("threads lock poisoned")
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
        // Last: the log signs a checkpoint over everything written and sealed above.
        let log_thread = self
            .log_thread
            .lock()
            .expect("log thread lock poisoned")
            .take();
        if let Some(t) = log_thread {
            *self.log_stop.0.lock().expect("log stop lock poisoned") = true;
            self.log_stop.1.notify_all();
            let _ = t.join();
        }
    }

    /// The tenant's retention period (None: its data is kept until erased).
    pub fn retention_of(&self, tenant: &TenantId) -> Option<Duration> {
        self.inner.cfg.retention_of(tenant)
    }

    /// The transparency log (absent only in benchmarks that measure its cost).
    pub fn log(&self) -> Option<&Arc<TxLog>> {
        self.inner.log.as_ref()
    }

    pub fn stats(&self) -> StoreStats {
        let st = self.inner.state.read().expect("state lock poisoned");
        let mut s = StoreStats {
            head_records: st.head.len(),
            head_spans: st.head.iter().map(|r| r.summary.spans).sum(),
            ..Default::default()
        };
        for blocks in st.blocks.values() {
            s.blocks += blocks.len();
            for b in blocks {
                s.block_bytes += b.size;
                s.block_spans += b.index.span_count;
            }
        }
        s
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Loads every block's index; returns the highest block id seen.
fn load_blocks(inner: &Inner) -> Result<u64, StoreError> {
    let mut max_id = 0;
    let rd =
        std::fs::read_dir(&inner.block_dir).map_err(|e| StoreError::io(&inner.block_dir, e))?;
    let mut st = inner.state.write().expect("state lock poisoned");
    for tdir in rd {
        let tdir = tdir.map_err(|e| StoreError::io(&inner.block_dir, e))?;
        let name = tdir.file_name().to_string_lossy().into_owned();
        let Ok(tenant) = TenantId::parse(&name) else {
            tracing::warn!(dir = %tdir.path().display(), "ignoring directory that is not a tenant id");
            continue;
        };
        if inner.keyring.is_erased(&tenant) {
            // Its keys are gone; the erasure's completion at start deletes these files.
            continue;
        }
        let mut metas = Vec::new();
        let path = tdir.path();
        for f in std::fs::read_dir(&path).map_err(|e| StoreError::io(&path, e))? {
            let f = f.map_err(|e| StoreError::io(&path, e))?;
            let fname = f.file_name().to_string_lossy().into_owned();
            if fname.ends_with(".tmp") {
                // An unfinished seal; its WAL segment still exists and will be sealed again.
                let _ = std::fs::remove_file(f.path());
                continue;
            }
            let Some(id) = fname
                .strip_suffix(".tvb")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let meta = BlockMeta::load(&f.path(), &tenant, &inner.keyring)?;
            max_id = max_id.max(id);
            metas.push(Arc::new(meta));
        }
        metas.sort_by_key(|m| m.id);
        st.blocks.insert(tenant, metas);
    }
    Ok(max_id)
}

/// Recovers every WAL segment into the head and seals it. Records the log does not hold yet (a
/// crash before the log's last flush) get their leaves re-derived, in WAL order. Returns the
/// highest segment id seen and the segments left unsealed because their blocks could not be
/// written (e.g. a full disk); corruption still stops the start.
fn recover_wal(inner: &Inner) -> Result<(u64, Vec<u64>), StoreError> {
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
            Err(e @ StoreError::Io { .. }) => {
                tracing::warn!(segment = id, error = %e, "cannot seal a recovered WAL segment now; serving it from memory and retrying in the background");
                unsealed.push(id);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((max_id, unsealed))
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    Ok(tv_tlog::commit::sha256(&std::fs::read(path)?))
}

/// Seals the head records of segment `id` into one block per tenant, logs a leaf for each block,
/// and deletes the segment once those leaves are durable. A block already written and logged (by
/// an attempt that failed later, or before a crash) is kept as it is.
fn seal_segment(inner: &Inner, id: u64) -> Result<(), StoreError> {
    seal_segment_with(inner, id, false)
}

/// [`seal_segment`]; with `defer`, a segment whose block leaves are not durable yet is deleted
/// later (see [`delete_durable_segments`]) instead of waiting for the log's next flush here.
fn seal_segment_with(inner: &Inner, id: u64, defer: bool) -> Result<(), StoreError> {
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
        let path = crate::block::block_path(&inner.block_dir, &tenant, id);
        if let Some(log) = &inner.log
            && path.exists()
            && let Ok(d) = sha256_file(&path)
            && let Some(i) = log.block_leaf(&d)
        {
            last_leaf = last_leaf.max(Some(i));
            new_blocks.push(Arc::new(BlockMeta::load(&path, &tenant, &inner.keyring)?));
            continue;
        }
        let mut builder = BlockBuilder::default();
        for r in &recs {
            builder.add_record(r.leaf_index.unwrap_or(u64::MAX), r.secret(), r.decode()?);
        }
        if builder.is_empty() {
            continue;
        }
        let sealed = builder.write(
            &inner.block_dir,
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
            let leaf = Leaf::Block(BlockLeaf {
                block_id: id,
                sealed_unix_nanos: crate::now_unix_nanos(),
                file_sha256: sealed.file_sha256,
                key_commitment: sealed.key_commitment,
                records_sha256: leaf::records_digest(&sealed.records),
                record_count: sealed.records.len() as u32,
                span_count: sealed.spans,
                first_record: sealed.records.iter().map(|r| r.0).min().unwrap_or(0),
            });
            last_leaf = last_leaf.max(Some(log.push_block(sealed.file_sha256, leaf.encode())));
        }
        new_blocks.push(Arc::new(BlockMeta::load(&path, &tenant, &inner.keyring)?));
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

fn delete_segment(inner: &Inner, id: u64) -> Result<(), StoreError> {
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
fn delete_durable_segments(inner: &Inner, force: bool) {
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

/// Deletes the blocks past their tenant's retention period (newest span ended before `now -
/// retention`), logging each deletion first; then, if so configured, destroys the key versions
/// of those tenants that wrap nothing still stored.
pub(crate) fn prune_expired(inner: &Inner) -> Result<usize, StoreError> {
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
            let digest = sha256_file(&b.path).map_err(|e| StoreError::io(&b.path, e))?;
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
        match std::fs::remove_file(&b.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&b.path, e)),
        }
        if let Some(d) = b.path.parent() {
            fsio::sync_dir(d).map_err(|e| StoreError::io(d, e))?;
        }
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
            let uses = crate::keyuse::key_use(&inner.cfg.data_dir)?;
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

fn retention_loop(inner: Arc<Inner>, keep: Duration, stop: Arc<(Mutex<bool>, Condvar)>) {
    // `keep`: the shortest retention period, setting how often the check runs.
    let every = inner
        .cfg
        .retention_interval
        .unwrap_or_else(|| (keep / 4).clamp(Duration::from_millis(200), Duration::from_secs(60)));
    let (lock, cv) = &*stop;
    loop {
        {
            let stopped = lock.lock().expect("retention lock poisoned");
            if *stopped {
                return;
            }
            let (stopped, _) = cv
                .wait_timeout(stopped, every)
                .expect("retention lock poisoned");
            if *stopped {
                return;
            }
        }
        if let Err(e) = prune_expired(&inner) {
            tracing::error!(error = %e, "retention could not delete an expired block; retrying");
        }
    }
}

/// The log leaf of a committed WAL record.
fn record_leaf(
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

fn writer_loop(
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
            wait_for_sealer(&inner);
            write_group(&inner, &mut active, &mut buf, group);
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

fn write_group(
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
fn rotate(
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

/// Pauses the writer while too many closed segments wait for the sealer: acknowledgements slow
/// down (and the bounded queue in front of the writer turns excess load into 503s) instead of
/// memory growing without bound.
fn wait_for_sealer(inner: &Inner) {
    let (lock, cv) = &inner.unsealed;
    let mut n = lock.lock().expect("unsealed lock poisoned");
    if *n >= inner.cfg.max_unsealed_segments {
        tracing::debug!(
            unsealed = *n,
            "sealing is behind ingest; pausing the WAL writer"
        );
    }
    while *n >= inner.cfg.max_unsealed_segments {
        n = cv.wait(n).expect("unsealed lock poisoned");
    }
}

fn sealer_loop(inner: Arc<Inner>, rx: Receiver<SealMsg>) {
    // Segments whose sealing failed (e.g. disk full) are retried every few seconds; until then
    // their records stay in the head, readable and in the WAL. Sealed segments whose block leaves
    // are not durable yet are deleted once the log has flushed (at most a second later).
    let mut retry: Vec<u64> = Vec::new();
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
        let (ids, acks, counted) = match msg {
            Some(SealMsg::Segment(id, acks)) => (vec![id], acks, true),
            Some(SealMsg::Recovered(id)) => (vec![id], Vec::new(), false),
            Some(SealMsg::Barrier(acks)) => (Vec::new(), acks, false),
            None if last_retry.elapsed() >= Duration::from_secs(5) => {
                last_retry = Instant::now();
                (std::mem::take(&mut retry), Vec::new(), false)
            }
            None => continue,
        };
        let mut result: Result<(), String> = Ok(());
        for id in ids {
            let t = Instant::now();
            match seal_segment_with(&inner, id, true) {
                Ok(()) => tracing::debug!(
                    segment = id,
                    ms = t.elapsed().as_millis() as u64,
                    "sealed WAL segment"
                ),
                Err(e) => {
                    tracing::error!(segment = id, error = %e, "sealing failed; the segment stays in the WAL and is retried");
                    result = Err(e.to_string());
                    retry.push(id);
                }
            }
        }
        if counted {
            let (lock, cv) = &inner.unsealed;
            let mut n = lock.lock().expect("unsealed lock poisoned");
            *n = n.saturating_sub(1);
            cv.notify_all();
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
    for id in retry {
        if let Err(e) = seal_segment(&inner, id) {
            tracing::warn!(segment = id, error = %e, "segment left in the WAL; it is sealed at the next start");
        }
    }
    delete_durable_segments(&inner, true);
}
