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
use crate::objects::{LocalDir, SharedObjects};
use crate::txlog::{LogConfig, Logged, TxLog};
use crate::wal::{self, ActiveSegment, Recovered, SyncHook};
use tv_tlog::leaf::{self, Leaf, RecordLeaf};

mod compaction;
mod record;
mod recovery;
mod retention;
mod sealer;
mod writer;

pub use compaction::{CompactionConfig, CompactionReport};
pub use record::{BatchSummary, EncodedBatch};
pub(crate) use record::{HeadRecord, decode_payload, split_payload};
use recovery::{load_blocks, recover_wal};
use retention::retention_loop;
use sealer::{seal_segment, sealer_loop};
use writer::writer_loop;

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
    /// The nice value of the sealer, compaction and retention threads (0-19; 0 keeps the
    /// server's priority).
    pub background_nice: i32,
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
    /// Where blocks are kept (`blocks/<tenant>/<id>.tvb`): `None` for the data directory itself
    /// (the embedded default), or the node's prefix in the cluster's bucket.
    pub objects: Option<SharedObjects>,
    /// A node of a cluster on a bucket: its blocks and log go to `nodes/<node>/`, under a lease,
    /// and the other nodes' blocks are read too.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The write-ahead log's directory (default `DATA/wal`).
    pub wal_dir: Option<PathBuf>,
    /// Small blocks merged into larger ones in the background (`None`: never).
    pub compaction: Option<CompactionConfig>,
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
            segment_max_bytes: 4 * 1024 * 1024,
            segment_max_age: Duration::from_secs(60),
            chunk_target_bytes: 512 * 1024,
            block_zstd_level: 3,
            wal_zstd_level: 1,
            background_nice: 10,
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
            objects: None,
            cluster: None,
            wal_dir: None,
            compaction: Some(CompactionConfig::default()),
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
    /// `blocks` blocks of `before` bytes in all were merged into one of `after` bytes.
    fn blocks_compacted(&self, _blocks: u64, _before: u64, _after: u64) {}
}

#[derive(Default)]
pub(crate) struct State {
    pub head: Vec<Arc<HeadRecord>>,
    pub blocks: HashMap<TenantId, Vec<Arc<BlockMeta>>>,
    /// Other nodes' blocks (a cluster), read-only here.
    pub peers: HashMap<TenantId, Vec<Arc<BlockMeta>>>,
}

pub(crate) struct Inner {
    pub cfg: StoreConfig,
    pub keyring: Arc<Keyring>,
    pub state: RwLock<State>,
    pub wal_dir: PathBuf,
    /// Blocks are built here before their objects are created.
    pub staging_dir: PathBuf,
    /// Where blocks live.
    pub objects: SharedObjects,
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
    /// Other nodes' blocks as last listed (a cluster).
    pub peers: Mutex<crate::cluster::Peers>,
    /// The node's lease (a cluster).
    pub lease: Option<crate::cluster::Lease>,
    /// What is wrong with the object store, since when (None: it answers).
    pub bucket_problem: Mutex<Option<(String, Instant)>>,
    /// Another process took this node's lease or wrote its log: nothing more is written.
    pub fenced: AtomicBool,
    /// The writer waits for the sealer (the WAL holds its limit of unsealed segments).
    pub wal_full: AtomicBool,
    /// Held by whatever deletes or replaces blocks (retention, compaction, erasure), one at a time.
    pub maintenance: Mutex<()>,
    /// Blocks compaction replaced, deleted once their grace period is over: (when, keys).
    pub retired: Mutex<Vec<(Instant, Vec<String>)>>,
    /// The number in the newest merged block's id (see [`crate::block::COMPACTED_BIT`]).
    pub compacted_seq: AtomicU64,
    /// Blocks this process does not merge again (a merge of them failed midway).
    pub merge_held: Mutex<std::collections::HashSet<(TenantId, u64)>>,
    /// Merges waiting for their log entries to become durable.
    pub(crate) pending_merges: Mutex<Vec<compaction::PendingMerge>>,
}

impl Inner {
    /// Records how the last object-store operation went.
    pub(crate) fn note_bucket(&self, r: Result<(), String>) {
        let mut p = self.bucket_problem.lock().expect("bucket lock poisoned");
        match r {
            Ok(()) => {
                if p.take().is_some() {
                    tracing::info!("the object store answers again");
                }
            }
            Err(e) => {
                if p.is_none() {
                    tracing::warn!(error = %e, "the object store does not answer; acknowledged data waits in the WAL");
                }
                let since = p.as_ref().map_or_else(Instant::now, |(_, t)| *t);
                *p = Some((e, since));
            }
        }
    }

    /// Stops all writing: another process holds this node.
    pub(crate) fn fence(&self, why: &str) {
        if !self.fenced.swap(true, Ordering::AcqRel) {
            tracing::error!(
                reason = why,
                "FENCED: another process runs this node id; this one stops writing (restart it with its own --node-id)"
            );
        }
        self.healthy.store(false, Ordering::Relaxed);
    }
}

impl Inner {
    /// Refuses writes for a tenant that is erased or being erased.
    fn accepts(&self, tenant: &TenantId) -> Result<(), StoreError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(StoreError::Fenced(
                "another process runs this node id; this one writes nothing more".into(),
            ));
        }
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
    compaction_stop: Arc<(Mutex<bool>, Condvar)>,
    compaction_thread: Mutex<Option<JoinHandle<()>>>,
    cluster_stop: Arc<(Mutex<bool>, Condvar)>,
    cluster_thread: Mutex<Option<JoinHandle<()>>>,
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
        let wal_dir = cfg
            .wal_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("wal"));
        let staging_dir = cfg.data_dir.join("staging");
        for d in [&cfg.data_dir, &wal_dir, &staging_dir] {
            fsio::create_private_dir(d).map_err(|e| StoreError::io(d, e))?;
        }
        // Blocks an interrupted seal left half-built: their WAL segments are sealed again.
        if let Ok(rd) = std::fs::read_dir(&staging_dir) {
            for f in rd.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let (objects, lease): (SharedObjects, _) = match (&cfg.objects, &cfg.cluster) {
            (Some(o), _) => (o.clone(), None),
            (None, Some(c)) => {
                // The lease first: nothing is written under the node's prefix without it.
                let lease = crate::cluster::Lease::acquire(&c.bucket, &c.node, c.lease_ttl)?;
                (
                    crate::cluster::node_objects(&c.bucket, &c.node)?,
                    Some(lease),
                )
            }
            (None, None) => (Arc::new(LocalDir::new(&cfg.data_dir)), None),
        };
        let log = match &cfg.log {
            Some(lc) => Some(Arc::new(TxLog::open_in(
                objects.clone(),
                "log/",
                lc.clone(),
            )?)),
            None => None,
        };

        let inner = Arc::new(Inner {
            cfg,
            keyring,
            state: RwLock::new(State::default()),
            wal_dir,
            staging_dir,
            objects,
            log,
            pending_deletes: Mutex::new(Vec::new()),
            pending_bytes: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            unsealed: (Mutex::new(0), Condvar::new()),
            erasing: Mutex::new(std::collections::HashSet::new()),
            _lock: lock,
            key_gc: Mutex::new(std::collections::HashSet::new()),
            peers: Mutex::new(crate::cluster::Peers::default()),
            lease,
            bucket_problem: Mutex::new(None),
            fenced: AtomicBool::new(false),
            wal_full: AtomicBool::new(false),
            maintenance: Mutex::new(()),
            retired: Mutex::new(Vec::new()),
            compacted_seq: AtomicU64::new(0),
            merge_held: Mutex::new(std::collections::HashSet::new()),
            pending_merges: Mutex::new(Vec::new()),
        });
        let erasures = crate::erase::apply_records(&inner)?;
        let mut max_id = load_blocks(&inner)?;
        compaction::finish_merges(&inner)?;
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
                    if !r.complete
                        || !inner
                            .objects
                            .list(&format!("blocks/{}/", t.as_str()))?
                            .is_empty()
                    {
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
            .spawn(move || {
                background_priority(s_inner.cfg.background_nice);
                sealer_loop(s_inner, srx)
            })
            .map_err(|e| StoreError::io(Path::new("sealer thread"), e))?;
        let retention_stop = Arc::new((Mutex::new(false), Condvar::new()));
        let retention_thread = match inner.cfg.shortest_retention() {
            Some(keep) => {
                let (r_inner, stop) = (inner.clone(), retention_stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("tv-retention".into())
                        .spawn(move || {
                            background_priority(r_inner.cfg.background_nice);
                            retention_loop(r_inner, keep, stop)
                        })
                        .map_err(|e| StoreError::io(Path::new("retention thread"), e))?,
                )
            }
            None => None,
        };
        let compaction_stop = Arc::new((Mutex::new(false), Condvar::new()));
        let compaction_thread = match inner.cfg.compaction.clone() {
            Some(cfg) => {
                let (c_inner, stop) = (inner.clone(), compaction_stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("tv-compaction".into())
                        .spawn(move || {
                            background_priority(c_inner.cfg.background_nice);
                            compaction::compaction_loop(c_inner, cfg, stop)
                        })
                        .map_err(|e| StoreError::io(Path::new("compaction thread"), e))?,
                )
            }
            None => None,
        };
        let cluster_stop = Arc::new((Mutex::new(false), Condvar::new()));
        let cluster_thread = match &inner.cfg.cluster {
            Some(c) => {
                // Other nodes' blocks are readable from the first query on.
                crate::cluster::refresh(&inner, c);
                let (c_inner, stop) = (inner.clone(), cluster_stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("tv-cluster".into())
                        .spawn(move || crate::cluster::cluster_loop(c_inner, stop))
                        .map_err(|e| StoreError::io(Path::new("cluster thread"), e))?,
                )
            }
            None => None,
        };
        Ok(Self {
            inner,
            cluster_stop,
            cluster_thread: Mutex::new(cluster_thread),
            retention_stop,
            retention_thread: Mutex::new(retention_thread),
            compaction_stop,
            compaction_thread: Mutex::new(compaction_thread),
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
        if self.inner.wal_full.load(Ordering::Acquire) {
            return Err(StoreError::Overloaded(format!(
                "the write-ahead log is full: {} segments wait to be sealed (sealing is failing or behind; see /ready)",
                self.inner.cfg.max_unsealed_segments
            )));
        }
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
        stop_and_join(&self.retention_stop, &self.retention_thread);
        stop_and_join(&self.compaction_stop, &self.compaction_thread);
        if !self.inner.fenced.load(Ordering::Acquire) {
            // What compaction replaced is logged as replaced: no reader needs it past this.
            compaction::delete_retired(&self.inner, true);
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
        stop_and_join(&self.cluster_stop, &self.cluster_thread);
        // Last: the log signs a checkpoint over everything written and sealed above.
        stop_and_join(&self.log_stop, &self.log_thread);
        if let Some(l) = &self.inner.lease
            && !self.inner.fenced.load(Ordering::Acquire)
        {
            l.release();
        }
    }

    /// What is wrong with the object store and for how long (None: it answers, or there is
    /// none).
    pub fn bucket_problem(&self) -> Option<(String, Duration)> {
        self.inner
            .bucket_problem
            .lock()
            .expect("bucket lock poisoned")
            .as_ref()
            .map(|(e, t)| (e.clone(), t.elapsed()))
    }

    /// Whether another process took this node's id (it writes nothing more).
    pub fn is_fenced(&self) -> bool {
        self.inner.fenced.load(Ordering::Acquire)
    }

    /// The tenant's retention period (None: its data is kept until erased).
    pub fn retention_of(&self, tenant: &TenantId) -> Option<Duration> {
        self.inner.cfg.retention_of(tenant)
    }

    /// The transparency log (absent only in benchmarks that measure its cost).
    pub fn log(&self) -> Option<&Arc<TxLog>> {
        self.inner.log.as_ref()
    }

    /// Merges small blocks now (what the background compaction does every interval), with
    /// `cfg` or the store's own settings; blocks it replaces are deleted after the grace period.
    pub fn compact(&self, cfg: Option<&CompactionConfig>) -> Result<CompactionReport, StoreError> {
        let own = self.inner.cfg.compaction.clone().unwrap_or_default();
        compaction::compact(&self.inner, cfg.unwrap_or(&own))
    }

    /// Where the blocks live.
    pub fn objects(&self) -> &SharedObjects {
        &self.inner.objects
    }

    /// The other nodes of the cluster, as last listed, with their objects (empty without a
    /// cluster).
    pub fn peer_nodes(&self) -> Vec<(String, SharedObjects)> {
        let p = self.inner.peers.lock().expect("peers lock poisoned");
        let mut v: Vec<_> = p
            .objects
            .iter()
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The other nodes' blocks of `tenant` as last listed: (key commitment, earliest span
    /// start) each, so a reader can tell which are new to it and from when to read them.
    pub fn peer_blocks(&self, tenant: &TenantId) -> Vec<([u8; 32], u64)> {
        let st = self.inner.state.read().expect("state lock poisoned");
        st.peers.get(tenant).map_or_else(Vec::new, |v| {
            v.iter()
                .map(|b| (b.key_commitment, b.index.min_start))
                .collect()
        })
    }

    /// Every stored data key (blocks and WAL segments) with the tenant key version wrapping it.
    pub fn key_use(&self) -> Result<Vec<crate::keyuse::KeyUse>, StoreError> {
        crate::keyuse::key_use(&*self.inner.objects, &self.inner.wal_dir)
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

/// A background thread's loop: `f` every `every` until `stop` is set (see [`stop_and_join`]).
/// Lowers the calling thread's priority to `nice` (Linux keeps a nice value per thread): the
/// sealer, compaction and retention mostly use the CPU that request handling leaves, so a seal
/// rarely delays an acknowledgement; when they fall behind, the WAL writer's pause
/// (`sealer::wait_for_sealer`) slows ingest down until they catch up. Lowering needs no
/// privilege; a failure is logged and the thread keeps the server's priority.
fn background_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), nice) {
        tracing::warn!(error = %e, nice, "could not lower a background thread's priority");
    }
}

pub(crate) fn run_every(stop: &(Mutex<bool>, Condvar), every: Duration, mut f: impl FnMut()) {
    let (lock, cv) = stop;
    loop {
        {
            let stopped = lock.lock().expect("stop lock poisoned");
            if *stopped {
                return;
            }
            let (stopped, _) = cv.wait_timeout(stopped, every).expect("stop lock poisoned");
            if *stopped {
                return;
            }
        }
        f();
    }
}

/// Tells a background thread's loop (waiting on `stop`) to end, and waits for it.
fn stop_and_join(stop: &(Mutex<bool>, Condvar), thread: &Mutex<Option<JoinHandle<()>>>) {
    let Some(t) = thread.lock().expect("thread lock poisoned").take() else {
        return;
    };
    *stop.0.lock().expect("stop lock poisoned") = true;
    stop.1.notify_all();
    let _ = t.join();
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}
