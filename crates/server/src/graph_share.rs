//! The service graph across a cluster's nodes (issue 21): a call whose parent span reached one
//! node and whose child reached another is an edge too.
//!
//! Every refresh interval each node writes, under its own prefix in the bucket:
//! - `graph/<tenant>/waiting/<nanos>-<rand>`: the children that started waiting for a parent
//!   since the last round (created once; removed after the wait ends);
//! - `graph/<tenant>/edges`: the edges it made (replaced by compare-and-swap on its version);
//!
//! and reads the other nodes' new waiting lists (their children wait here too: whichever node
//! has the parent makes the edge) and their changed edges (summed into every answer). Both are
//! encrypted under a data key of the tenant, as the saved graph is (`tenantstate`): they name
//! services and calls. The recent span ids each node keeps are not shared: that is the data a
//! waiting child is matched against, and it stays on the node that received it.

use std::collections::{HashMap, HashSet};

use tv_crypto::Keyring;
use tv_model::TenantId;
use tv_store::Store;
use tv_store::objects::{ObjectError, PutMode, SharedObjects};

use crate::graph::{ServiceGraph, SharedWaiter};

/// A node's waiting children, as shared.
const WAITING: crate::tenantstate::Kind = crate::tenantstate::Kind {
    magic: b"TVSW1\n",
    label: b"tracevault-graph-waiting\0",
    what: "shared waiting calls",
};
/// A node's edges, as shared (the same contents as the saved graph, under its own label).
const EDGES: crate::tenantstate::Kind = crate::tenantstate::Kind {
    magic: b"TVSE1\n",
    label: b"tracevault-graph-edges\0",
    what: "shared service graph",
};

/// How long a shared waiting list stays in the bucket (a child waits this long for its parent).
const WAITING_KEEP_NANOS: u64 = 600 * 1_000_000_000;
/// Own waiting lists past their time are removed every this many rounds.
const SWEEP_EVERY: u64 = 12;

#[derive(serde::Serialize, serde::Deserialize)]
struct Waiting {
    waiting: Vec<SharedWaiter>,
}

/// One node's side of the exchange.
pub struct GraphShare {
    /// This node's prefix in the bucket.
    own: SharedObjects,
    /// The version of each tenant's edges object this node wrote last.
    versions: HashMap<TenantId, String>,
    /// The version of each other node's edges object read last.
    peer_versions: HashMap<(String, String), String>,
    /// The other nodes' waiting lists read already (node, key).
    seen: HashSet<(String, String)>,
    rounds: u64,
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `graph/<tenant>/edges` or `graph/<tenant>/waiting/<nanos>-<rand>`: (tenant, Some(nanos) for
/// a waiting list).
fn parse_key(key: &str) -> Option<(TenantId, Option<u64>)> {
    let rest = key.strip_prefix("graph/")?;
    let (tenant, what) = rest.split_once('/')?;
    let tenant = TenantId::parse(tenant).ok()?;
    if what == "edges" {
        return Some((tenant, None));
    }
    let name = what.strip_prefix("waiting/")?;
    let nanos = name.split_once('-')?.0.parse().ok()?;
    Some((tenant, Some(nanos)))
}

impl GraphShare {
    pub fn new(own: SharedObjects) -> Self {
        GraphShare {
            own,
            versions: HashMap::new(),
            peer_versions: HashMap::new(),
            seen: HashSet::new(),
            rounds: 0,
        }
    }

    /// One round: share what changed here, take in what changed on the other nodes. Failures
    /// are logged and tried again next round (the bucket's state is on `/ready`).
    pub fn round(&mut self, graph: &ServiceGraph, store: &Store, keyring: &Keyring) {
        self.rounds += 1;
        self.share_waiting(graph, keyring);
        self.share_edges(graph, keyring);
        if self.rounds % SWEEP_EVERY == 1 {
            self.sweep();
        }
        for (node, objects) in store.peer_nodes() {
            if let Err(e) = self.read_peer(&node, &objects, graph, keyring) {
                tracing::debug!(node = %node, error = %e, "cannot read another node's service graph yet");
            }
        }
        // Forget waiting lists that left the bucket.
        let peers: HashSet<String> = store.peer_nodes().into_iter().map(|(n, _)| n).collect();
        self.seen.retain(|(n, _)| peers.contains(n));
    }

    fn share_waiting(&mut self, graph: &ServiceGraph, keyring: &Keyring) {
        for (tenant, waiting) in graph.take_waiting() {
            if keyring.is_erased(&tenant) {
                continue;
            }
            let key = format!(
                "graph/{tenant}/waiting/{:020}-{}",
                now_nanos(),
                hex::encode(tv_crypto::random_bytes::<4>())
            );
            let r = crate::tenantstate::seal(&WAITING, keyring, &tenant, &Waiting { waiting })
                .and_then(|b| Ok(self.own.put(&key, &b, PutMode::Create)?));
            if let Err(e) = r {
                // The calls those children make with parents on other nodes go uncounted.
                tracing::warn!(tenant = %tenant, error = %format!("{e:#}"), "cannot share the service graph's waiting calls");
            }
        }
    }

    fn share_edges(&mut self, graph: &ServiceGraph, keyring: &Keyring) {
        for (tenant, saved) in graph.take_changed_edges() {
            if keyring.is_erased(&tenant) {
                continue;
            }
            let key = format!("graph/{tenant}/edges");
            let r = crate::tenantstate::seal(&EDGES, keyring, &tenant, &saved)
                .and_then(|b| Ok(self.put_mutable(&tenant, &key, &b)?));
            if let Err(e) = r {
                graph.edges_unshared(&tenant);
                tracing::warn!(tenant = %tenant, error = %format!("{e:#}"), "cannot share the service graph; trying again next round");
            }
        }
    }

    /// Replaces this node's object `key` (its own prefix: the lease keeps other processes out),
    /// by compare-and-swap on the version written last; after a restart, the version found.
    fn put_mutable(
        &mut self,
        tenant: &TenantId,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), ObjectError> {
        for _ in 0..2 {
            let mode = match self.versions.get(tenant) {
                Some(v) => PutMode::IfMatch(v.clone()),
                None => match self.own.head(key)? {
                    Some(m) => PutMode::IfMatch(m.version),
                    None => PutMode::Create,
                },
            };
            match self.own.put(key, bytes, mode) {
                Ok(m) => {
                    self.versions.insert(tenant.clone(), m.version);
                    return Ok(());
                }
                Err(ObjectError::Conflict { .. } | ObjectError::AlreadyExists(_)) => {
                    // A write whose answer was lost landed: read the version again.
                    self.versions.remove(tenant);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ObjectError::Conflict {
            key: key.to_owned(),
            expected: "the version read just before".to_owned(),
        })
    }

    /// Removes this node's waiting lists whose children stopped waiting.
    fn sweep(&self) {
        let Ok(listed) = self.own.list("graph/") else {
            return;
        };
        let cutoff = now_nanos().saturating_sub(WAITING_KEEP_NANOS);
        for o in listed {
            if let Some((_, Some(at))) = parse_key(&o.key)
                && at < cutoff
                && let Err(e) = self.own.delete(&o.key)
            {
                tracing::debug!(key = %o.key, error = %e, "cannot remove an old waiting list");
            }
        }
    }

    fn read_peer(
        &mut self,
        node: &str,
        objects: &SharedObjects,
        graph: &ServiceGraph,
        keyring: &Keyring,
    ) -> Result<(), ObjectError> {
        let cutoff = now_nanos().saturating_sub(WAITING_KEEP_NANOS);
        let mut listed = HashSet::new();
        for o in objects.list("graph/")? {
            let Some((tenant, waiting)) = parse_key(&o.key) else {
                continue;
            };
            if keyring.is_erased(&tenant) {
                continue;
            }
            let id = (node.to_owned(), o.key.clone());
            listed.insert(id.clone());
            match waiting {
                None => {
                    if self.peer_versions.get(&id) == Some(&o.version) {
                        continue;
                    }
                    let (b, meta) = objects.get(&o.key)?;
                    match crate::tenantstate::open(&EDGES, keyring, &tenant, &b) {
                        Ok(saved) => graph.set_peer_edges(&tenant, node, saved),
                        Err(e) => {
                            tracing::warn!(node = %node, key = %o.key, error = %format!("{e:#}"), "another node's service graph does not open; it is left out")
                        }
                    }
                    self.peer_versions.insert(id, meta.version);
                }
                Some(at) => {
                    if at < cutoff || self.seen.contains(&id) {
                        continue;
                    }
                    let (b, _) = match objects.get(&o.key) {
                        Ok(r) => r,
                        // Swept meanwhile.
                        Err(ObjectError::NotFound(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    match crate::tenantstate::open::<Waiting>(&WAITING, keyring, &tenant, &b) {
                        Ok(w) => graph.import_waiting(&tenant, w.waiting),
                        Err(e) => {
                            tracing::warn!(node = %node, key = %o.key, error = %format!("{e:#}"), "another node's waiting calls do not open; they are left out")
                        }
                    }
                    self.seen.insert(id);
                }
            }
        }
        // Waiting lists this node swept are not read again.
        self.seen.retain(|k| k.0 != node || listed.contains(k));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_tenant_and_when_a_list_was_written() {
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(parse_key("graph/acme/edges"), Some((t.clone(), None)));
        assert_eq!(
            parse_key("graph/acme/waiting/00000000000000000042-0a0b0c0d"),
            Some((t, Some(42)))
        );
        for bad in [
            "graph/acme/other",
            "graph/ACME!/edges",
            "graph/acme/waiting/x-1",
            "blocks/acme/edges",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }
}
