//! Learned behavioural baselines shared through the cluster's bucket (issue 21).
//!
//! Each node puts its learned state of each tenant in its own prefix
//! (`nodes/<node>/detect/<tenant>.state`), sealed exactly like the local file (under a data key of
//! the tenant, the tenant and the kind bound in as associated data, see `tenantstate`), and merges
//! the other nodes' states into its own ([`tv_detect::behaviour::Learned::merge`]: the earliest
//! learning start, every service, edge and statement shape any node saw, per operation the
//! baseline of more windows). Merging is idempotent, so nodes can publish what they merged.
//!
//! A node publishes a tenant when what decides findings changed (its learning start, a service,
//! an edge or a statement shape), and every [`REFRESH_ALL`] otherwise (the latency, error and
//! fan-out baselines move with every window). Other nodes' objects are read again only when their
//! version changed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tv_crypto::Keyring;
use tv_detect::behaviour::{Behaviour, Learned};
use tv_model::TenantId;
use tv_store::Store;
use tv_store::objects::{Objects, PutMode};

/// Where a node's baselines are, in its prefix.
const PREFIX: &str = "detect/";

/// Every tenant's state is published at least this often.
pub const REFRESH_ALL: Duration = Duration::from_secs(60);

fn key(tenant: &str) -> String {
    format!("{PREFIX}{tenant}.state")
}

/// Deletes this node's shared baseline of an erased tenant (its keys are destroyed: what is left
/// could not be read anyway).
pub fn erase(objects: &dyn Objects, tenant: &TenantId) {
    match objects.delete(&key(tenant.as_str())) {
        Ok(()) | Err(tv_store::objects::ObjectError::NotFound(_)) => {}
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "cannot delete an erased tenant's shared baseline")
        }
    }
}

/// What changes findings (not the moving baselines): compared to publish only what changed.
fn fingerprint(l: &Learned) -> (u64, usize, usize, u32) {
    let edges = l.edges.values().map(|c| c.len()).sum();
    let shapes = l.statement_shapes.values().map(|s| s.count_ones()).sum();
    (l.first_seen, l.services.len(), edges, shapes)
}

#[derive(Default)]
pub struct SharedBaselines {
    /// The version of this node's object of each tenant, as it last wrote it.
    written: HashMap<String, String>,
    /// What each tenant's published state held.
    published: HashMap<String, (u64, usize, usize, u32)>,
    /// Other nodes' objects already merged: (node, key) -> version.
    merged: HashMap<(String, String), String>,
    last_full: Option<Instant>,
    /// Erased tenants whose object was deleted.
    removed: std::collections::HashSet<String>,
}

impl SharedBaselines {
    /// Merges the other nodes' baselines (those changed since last read) into `b`; returns how
    /// many were read.
    pub fn merge_peers(&mut self, store: &Store, keyring: &Keyring, b: &mut Behaviour) -> usize {
        let max = b.config.max_keys;
        let mut read = 0;
        for (node, objects) in store.peer_nodes() {
            let list = match objects.list(PREFIX) {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "cannot list another node's baselines; retrying");
                    continue;
                }
            };
            for m in list {
                let Some(name) = m
                    .key
                    .strip_prefix(PREFIX)
                    .and_then(|n| n.strip_suffix(".state"))
                else {
                    continue;
                };
                let Ok(tenant) = TenantId::parse(name) else {
                    continue;
                };
                if keyring.is_erased(&tenant) {
                    continue;
                }
                let id = (node.clone(), m.key.clone());
                if self.merged.get(&id) == Some(&m.version) {
                    continue;
                }
                let learned =
                    objects
                        .get(&m.key)
                        .map_err(anyhow::Error::from)
                        .and_then(|(bytes, _)| {
                            crate::tenantstate::open::<Learned>(
                                &crate::detection::STATE,
                                keyring,
                                &tenant,
                                &bytes,
                            )
                        });
                match learned {
                    Ok(l) => {
                        b.tenants
                            .entry(name.to_owned())
                            .or_default()
                            .learned
                            .merge(&l, max);
                        self.merged.insert(id, m.version);
                        read += 1;
                    }
                    Err(e) => tracing::warn!(
                        node = %node,
                        tenant = %tenant,
                        error = %format!("{e:#}"),
                        "another node's behavioural baseline does not open; not merged"
                    ),
                }
            }
        }
        read
    }

    /// Whether this round publishes every tenant (else only those whose findings-deciding
    /// parts changed, see [`Self::due`]).
    pub fn full_round(&self) -> bool {
        self.last_full.is_none_or(|t| t.elapsed() >= REFRESH_ALL)
    }

    /// Whether `tenant`'s state is published in this round.
    pub fn due(&self, full: bool, tenant: &str, learned: &Learned) -> bool {
        full || self.published.get(tenant) != Some(&fingerprint(learned))
    }

    /// Called after a round that considered every tenant.
    pub fn round_done(&mut self, full: bool) {
        if full {
            self.last_full = Some(Instant::now());
        }
    }

    /// Puts this node's sealed state of `tenant` in its prefix, replacing the one it wrote
    /// before (compare-and-swap on the version it wrote: only this node writes there).
    pub fn publish(
        &mut self,
        objects: &dyn Objects,
        tenant: &str,
        learned: &Learned,
        bytes: &[u8],
    ) {
        let k = key(tenant);
        let mode = match self.written.get(tenant) {
            Some(v) => PutMode::IfMatch(v.clone()),
            None => match objects.head(&k) {
                Ok(Some(m)) => PutMode::IfMatch(m.version),
                Ok(None) => PutMode::Create,
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "cannot share the behavioural baseline; retrying");
                    return;
                }
            },
        };
        match objects.put(&k, bytes, mode) {
            Ok(m) => {
                self.written.insert(tenant.to_owned(), m.version);
                self.published
                    .insert(tenant.to_owned(), fingerprint(learned));
            }
            Err(e) => {
                // Looked up again next time (a write that landed but was not acknowledged).
                self.written.remove(tenant);
                tracing::warn!(tenant = %tenant, error = %e, "cannot share the behavioural baseline; retrying");
            }
        }
    }

    /// Deletes this node's object of an erased tenant (once).
    pub fn remove(&mut self, objects: &dyn Objects, tenant: &str) {
        if !self.removed.insert(tenant.to_owned()) {
            return;
        }
        self.written.remove(tenant);
        self.published.remove(tenant);
        match objects.delete(&key(tenant)) {
            Ok(()) | Err(tv_store::objects::ObjectError::NotFound(_)) => {}
            Err(e) => {
                self.removed.remove(tenant);
                tracing::warn!(tenant = %tenant, error = %e, "cannot delete an erased tenant's shared baseline; retrying");
            }
        }
    }
}
