//! Nodes sharing one bucket (docs/adr/0021): each node owns `nodes/<node>/` (its blocks and its
//! transparency log), held by a lease; every node reads every other node's blocks.
//!
//! The lease (`nodes/<node>/lease`) names the process holding the node id and until when. It is
//! taken at start (refused while another process holds it), renewed by compare-and-swap, and a
//! renewal that finds it changed fences this process: it stops writing. Clocks only need to
//! agree to well within the lease's time to live.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tv_model::TenantId;

use crate::StoreError;
use crate::block::BlockMeta;
use crate::objects::{ObjectError, Prefixed, PutMode, SharedObjects};

/// A node in a cluster on a bucket.
#[derive(Clone)]
pub struct ClusterConfig {
    /// The bucket (at the cluster's prefix).
    pub bucket: SharedObjects,
    /// This node's id.
    pub node: String,
    /// How often other nodes' blocks are listed, and the lease renewed.
    pub refresh: Duration,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("bucket", &self.bucket.describe())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Checks a node id: 1 to 63 of `a-z 0-9 - _ .`, starting with a letter or digit.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node id {:?} is not 1 to 63 of a-z, 0-9, '-', '_', '.' starting with a letter or digit",
            id.chars().take(80).collect::<String>()
        ))
    }
}

/// A node's own objects: `nodes/<node>/` of the bucket.
pub fn node_objects(bucket: &SharedObjects, node: &str) -> Result<SharedObjects, StoreError> {
    Ok(Arc::new(Prefixed::new(
        bucket.clone(),
        &format!("nodes/{node}"),
    )?))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    host: String,
    pid: u32,
    /// Renewals so far (every body differs, so compare-and-swap cannot be fooled by ABA).
    generation: u64,
    expires_unix_ms: u64,
}

/// The lease on a node id.
#[derive(Debug)]
pub struct Lease {
    bucket: SharedObjects,
    key: String,
    holder: String,
    ttl: Duration,
    state: Mutex<(String, u64)>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

impl Lease {
    /// Takes the lease on `node`, or says who holds it.
    pub fn acquire(bucket: &SharedObjects, node: &str, ttl: Duration) -> Result<Lease, StoreError> {
        let key = format!("nodes/{node}/lease");
        let holder = hex::encode(tv_crypto::random_bytes::<12>());
        let (mode, generation) = match bucket.get(&key) {
            Ok((b, meta)) => {
                let cur: Option<LeaseBody> = serde_json::from_slice(&b).ok();
                // An earlier run of this node on this host that did not stop cleanly (kill -9,
                // a crash, a container restart): its process is gone, the lease is ours.
                let earlier_here = cur.as_ref().is_some_and(|c| {
                    c.host == host_name()
                        && (c.pid == std::process::id()
                            || !Path::new(&format!("/proc/{}", c.pid)).exists())
                });
                if earlier_here {
                    tracing::warn!(
                        node,
                        "taking over the lease of an earlier run of this node on this host that did not stop cleanly"
                    );
                }
                if let Some(cur) = &cur
                    && cur.expires_unix_ms > now_ms()
                    && !earlier_here
                {
                    let left = (cur.expires_unix_ms - now_ms()).div_ceil(1000);
                    return Err(StoreError::Fenced(format!(
                        "node id {node:?} is held by another process (pid {} on {:?}) for {left} s more; stop it, or give this one another --node-id (or wait for the lease to expire if that process is gone)",
                        cur.pid, cur.host
                    )));
                }
                (
                    PutMode::IfMatch(meta.version),
                    cur.map_or(0, |c| c.generation) + 1,
                )
            }
            Err(ObjectError::NotFound(_)) => (PutMode::Create, 0),
            Err(e) => return Err(e.into()),
        };
        let l = Lease {
            bucket: bucket.clone(),
            key,
            holder,
            ttl,
            state: Mutex::new((String::new(), generation)),
        };
        let version = l.write(mode, generation).map_err(|e| match e {
            StoreError::Object(ObjectError::Conflict { .. } | ObjectError::AlreadyExists(_)) => {
                StoreError::Fenced(format!(
                    "node id {node:?} was taken by another process starting at the same time"
                ))
            }
            e => e,
        })?;
        *l.state.lock().expect("lease lock") = (version, generation);
        tracing::info!(node, ttl_secs = ttl.as_secs(), "took the node's lease");
        Ok(l)
    }

    fn write(&self, mode: PutMode, generation: u64) -> Result<String, StoreError> {
        let body = LeaseBody {
            holder: self.holder.clone(),
            host: host_name(),
            pid: std::process::id(),
            generation,
            expires_unix_ms: now_ms() + self.ttl.as_millis() as u64,
        };
        let json = serde_json::to_vec(&body).map_err(|e| StoreError::Decode(e.to_string()))?;
        Ok(self.bucket.put(&self.key, &json, mode)?.version)
    }

    /// Extends the lease; a lease changed by someone else fences this process.
    pub fn renew(&self) -> Result<(), StoreError> {
        let mut st = self.state.lock().expect("lease lock");
        let generation = st.1 + 1;
        match self.write(PutMode::IfMatch(st.0.clone()), generation) {
            Ok(v) => {
                *st = (v, generation);
                Ok(())
            }
            Err(StoreError::Object(ObjectError::Conflict { .. } | ObjectError::NotFound(_))) => {
                // A renewal whose answer was lost (a timeout) may have landed after all: the
                // lease then still names this process, and holds a newer version.
                if let Ok((b, meta)) = self.bucket.get(&self.key)
                    && let Ok(cur) = serde_json::from_slice::<LeaseBody>(&b)
                    && cur.holder == self.holder
                {
                    let v = self.write(PutMode::IfMatch(meta.version), cur.generation + 1)?;
                    *st = (v, cur.generation + 1);
                    return Ok(());
                }
                Err(StoreError::Fenced(format!(
                    "{}: the node's lease was taken by another process; this one stops writing",
                    self.key
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (at a clean stop), so a restart need not wait for it to expire.
    pub fn release(&self) {
        let st = self.state.lock().expect("lease lock");
        let body = LeaseBody {
            holder: self.holder.clone(),
            host: host_name(),
            pid: std::process::id(),
            generation: st.1 + 1,
            expires_unix_ms: 0,
        };
        if let Ok(json) = serde_json::to_vec(&body)
            && let Err(e) = self
                .bucket
                .put(&self.key, &json, PutMode::IfMatch(st.0.clone()))
        {
            tracing::warn!(error = %e, "could not release the node's lease; it expires on its own");
        }
    }
}

/// Other nodes' blocks, as last listed.
#[derive(Default)]
pub(crate) struct Peers {
    /// (node, block key) -> block.
    pub blocks: HashMap<(String, String), Arc<BlockMeta>>,
    pub objects: HashMap<String, SharedObjects>,
}

impl Peers {
    /// The blocks by tenant, oldest first.
    pub fn by_tenant(&self) -> HashMap<TenantId, Vec<Arc<BlockMeta>>> {
        let mut out: HashMap<TenantId, Vec<Arc<BlockMeta>>> = HashMap::new();
        for b in self.blocks.values() {
            out.entry(b.tenant.clone()).or_default().push(b.clone());
        }
        for v in out.values_mut() {
            v.sort_by_key(|b| (b.index.min_start, b.id));
        }
        out
    }
}

/// Lists every other node's blocks and loads the ones not seen before (their indexes, by
/// ranged reads); blocks gone from the bucket (retention, erasure, compaction) or replaced by a
/// merged block are forgotten. Returns the
/// number of blocks loaded.
pub(crate) fn refresh_peers(
    cfg: &ClusterConfig,
    keyring: &tv_crypto::Keyring,
    peers: &mut Peers,
) -> Result<usize, StoreError> {
    let mut seen: HashMap<(String, String), Arc<BlockMeta>> = HashMap::new();
    let mut loaded = 0;
    for node in cfg.bucket.list_dirs("nodes/")? {
        if node == cfg.node || check_node_id(&node).is_err() {
            continue;
        }
        let objects = match peers.objects.get(&node) {
            Some(o) => o.clone(),
            None => {
                let o = node_objects(&cfg.bucket, &node)?;
                peers.objects.insert(node.clone(), o.clone());
                o
            }
        };
        for o in objects.list("blocks/")? {
            let Some((tenant, _)) = crate::block::parse_block_key(&o.key) else {
                continue;
            };
            if keyring.is_erased(&tenant) {
                continue;
            }
            let id = (node.clone(), o.key.clone());
            if let Some(b) = peers.blocks.get(&id) {
                seen.insert(id, b.clone());
                continue;
            }
            match BlockMeta::load(&objects, &o.key, &tenant, keyring) {
                Ok(mut m) => {
                    m.node = Some(node.clone());
                    loaded += 1;
                    seen.insert(id, Arc::new(m));
                }
                Err(e) => {
                    tracing::warn!(node = %node, block = %o.key, error = %e, "cannot read another node's block yet; retrying at the next refresh");
                }
            }
        }
    }
    // A block a merged block of the same node replaced is read from the merged one only (both
    // are in the bucket until the node deletes the replaced ones).
    let replaced: std::collections::HashSet<(String, TenantId, u64)> = seen
        .iter()
        .flat_map(|((node, _), b)| {
            b.index
                .replaces
                .iter()
                .map(|id| (node.clone(), b.tenant.clone(), *id))
        })
        .collect();
    if !replaced.is_empty() {
        seen.retain(|(node, _), b| !replaced.contains(&(node.clone(), b.tenant.clone(), b.id)));
    }
    peers.blocks = seen;
    Ok(loaded)
}

/// One round: renew the lease, list the other nodes' blocks.
pub(crate) fn refresh(inner: &crate::store::Inner, c: &ClusterConfig) {
    if let Some(l) = &inner.lease
        && !inner.fenced.load(std::sync::atomic::Ordering::Acquire)
    {
        match l.renew() {
            Ok(()) => {}
            Err(StoreError::Fenced(why)) => inner.fence(&why),
            Err(e) => {
                inner.note_bucket(Err(e.to_string()));
                return;
            }
        }
    }
    let mut peers = inner.peers.lock().expect("peers lock poisoned");
    match refresh_peers(c, &inner.keyring, &mut peers) {
        Ok(n) => {
            if n > 0 {
                tracing::debug!(blocks = n, "read new blocks of other nodes");
            }
            let by_tenant = peers.by_tenant();
            inner.state.write().expect("state lock poisoned").peers = by_tenant;
            inner.note_bucket(Ok(()));
        }
        Err(e) => inner.note_bucket(Err(e.to_string())),
    }
}

/// The cluster thread: [`refresh`] every `refresh` interval until stopped.
pub(crate) fn cluster_loop(
    inner: Arc<crate::store::Inner>,
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
) {
    let Some(c) = inner.cfg.cluster.clone() else {
        return;
    };
    crate::store::run_every(&stop, c.refresh, || refresh(&inner, &c));
}
