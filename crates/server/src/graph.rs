//! The service graph: calls between services, kept up to date as batches are committed, per
//! tenant, in one-minute buckets, so a dependencies query sums buckets instead of scanning.
//!
//! An edge is a parent span in one service with a child span in another. Parent and child
//! often arrive in different batches, in either order: each tenant keeps the recent spans by
//! id (service, start) and the children still waiting for their parent; whichever arrives
//! second makes the edge. Both are bounded (oldest out first), and waiting children are kept
//! for [`PENDING_SECS`]. The edges are saved every minute and at shutdown to
//! `DIR/graph/<tenant>.graph`, encrypted under a data key of the tenant (`tenantstate`) and
//! sealed like the server's other state files, and loaded at start: a restart keeps the calls of
//! the last day. (The recent spans and waiting children are not saved: a call whose parent and
//! child straddle a restart is not counted.)
//!
//! In a cluster (issue 21) a call's parent and child may reach different nodes. Each node then
//! also shares, through the bucket (`graph_share`), the children that started waiting on it and
//! the edges it made; every node takes the others' waiting children into its own wait list (a
//! parent span reaches one node, so exactly one node makes the edge) and answers with the sum
//! of every node's edges.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tv_model::TenantId;
use tv_model::otlp::ExportTraceServiceRequest;

/// Recent spans remembered per tenant (parents children may still arrive for): at least the
/// last half of this many.
const MAX_SPANS: usize = 200_000;
/// Children waiting for a parent, per tenant.
const MAX_PENDING: usize = 100_000;
/// How long a child waits for its parent.
const PENDING_SECS: u64 = 600;
/// How long edge buckets are kept.
const KEEP_MINUTES: u64 = 24 * 60;

/// What the graph needs of one span.
#[derive(Clone, Debug)]
pub struct SpanFact {
    pub span_id: u64,
    pub parent_id: u64,
    pub service: Arc<str>,
    pub error: bool,
    pub start_unix_nano: u64,
}

/// The facts of a batch (taken before it is committed; fed after).
pub fn facts(req: &ExportTraceServiceRequest) -> Vec<SpanFact> {
    let id = |b: &[u8]| -> u64 {
        b.get(..8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = tv_model::service_name(rs.resource.as_ref()).unwrap_or("");
        if service.starts_with("tracevault.") {
            continue;
        }
        let service: Arc<str> = Arc::from(service);
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push(SpanFact {
                    span_id: id(&s.span_id),
                    parent_id: id(&s.parent_span_id),
                    service: service.clone(),
                    error: s.status.as_ref().is_some_and(|st| st.code == 2),
                    start_unix_nano: s.start_time_unix_nano,
                });
            }
        }
    }
    out
}

/// A child waiting for its parent: its service, whether it failed, its start, when it came.
type Waiting = (Arc<str>, bool, u64, u64);
/// (minute, parent service, child service)
type EdgeKey = (u64, Arc<str>, Arc<str>);
/// A child waiting for its parent, as shared with the other nodes of a cluster: (parent span
/// id, child service, failed, child start).
pub type SharedWaiter = (u64, String, bool, u64);
/// One node's edges, as shared: (minute, parent service, child service, calls, errors).
type SharedEdge = (u64, Arc<str>, Arc<str>, u64, u64);

#[derive(Default)]
struct TenantGraph {
    /// Recent spans by id: (service, start); the last `MAX_SPANS / 2` to `MAX_SPANS`.
    spans: tv_detect::recent::Recent<u64, (Arc<str>, u64)>,
    /// Children by the parent id they wait for: (child service, error, start, arrived).
    pending: HashMap<u64, Vec<Waiting>>,
    pending_order: VecDeque<(u64, u64)>,
    pending_count: usize,
    /// (minute, parent service, child service) -> (calls, errors)
    edges: HashMap<EdgeKey, (u64, u64)>,
    /// Children that started waiting here since they were last shared (a cluster only).
    outbox: Vec<SharedWaiter>,
    /// Whether `edges` changed since they were last shared.
    edges_changed: bool,
}

impl TenantGraph {
    fn edge(&mut self, parent: &Arc<str>, child: &Arc<str>, error: bool, start: u64) {
        if parent == child || parent.is_empty() || child.is_empty() {
            return;
        }
        let minute = start / 60_000_000_000;
        let e = self
            .edges
            .entry((minute, parent.clone(), child.clone()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(error);
        self.edges_changed = true;
    }

    /// A child another node shares: an edge now if its parent is here, else it waits here too.
    fn import(&mut self, w: SharedWaiter, now_secs: u64) {
        let (parent_id, service, error, start) = w;
        if parent_id == 0 {
            return;
        }
        let service: Arc<str> = Arc::from(service);
        match self.spans.get(&parent_id) {
            Some((ps, _)) => {
                let ps = ps.clone();
                self.edge(&ps, &service, error, start);
            }
            None => {
                self.pending
                    .entry(parent_id)
                    .or_default()
                    .push((service, error, start, now_secs));
                self.pending_order.push_back((parent_id, now_secs));
                self.pending_count += 1;
            }
        }
        self.evict(now_secs);
    }

    fn add(&mut self, f: SpanFact, now_secs: u64, share: bool) {
        // This span's parent seen already: the edge now; else the child waits.
        if f.parent_id != 0 {
            match self.spans.get(&f.parent_id) {
                Some((ps, _)) => {
                    let ps = ps.clone();
                    self.edge(&ps, &f.service, f.error, f.start_unix_nano);
                }
                None => {
                    if share && self.outbox.len() < MAX_PENDING {
                        self.outbox.push((
                            f.parent_id,
                            f.service.to_string(),
                            f.error,
                            f.start_unix_nano,
                        ));
                    }
                    self.pending.entry(f.parent_id).or_default().push((
                        f.service.clone(),
                        f.error,
                        f.start_unix_nano,
                        now_secs,
                    ));
                    self.pending_order.push_back((f.parent_id, now_secs));
                    self.pending_count += 1;
                }
            }
        }
        // Children that waited for this span.
        if let Some(children) = self.pending.remove(&f.span_id) {
            self.pending_count -= children.len();
            for (cs, err, start, _) in children {
                self.edge(&f.service, &cs, err, start);
            }
        }
        if f.span_id != 0 {
            self.spans
                .insert(f.span_id, (f.service, f.start_unix_nano), MAX_SPANS);
        }
        self.evict(now_secs);
    }

    fn evict(&mut self, now_secs: u64) {
        while let Some(&(pid, at)) = self.pending_order.front() {
            if self.pending_count <= MAX_PENDING && now_secs.saturating_sub(at) <= PENDING_SECS {
                break;
            }
            self.pending_order.pop_front();
            if let Some(v) = self.pending.get_mut(&pid) {
                let before = v.len();
                v.retain(|c| now_secs.saturating_sub(c.3) <= PENDING_SECS && c.3 != at);
                self.pending_count -= before - v.len();
                if v.is_empty() {
                    self.pending.remove(&pid);
                }
            }
        }
        // A child whose parent came leaves its entry in `pending_order` behind; drop those once
        // they are most of it. Without this the queue held every child that ever waited for the
        // last ten minutes (issue 22: ~12,000 entries/s, 115 MB after ten minutes at 29,000
        // spans/s where children arrive before their parents in the same batch).
        if self.pending_order.len() > 2 * self.pending_count + 1024 {
            let pending = &self.pending;
            self.pending_order.retain(|(pid, at)| {
                pending
                    .get(pid)
                    .is_some_and(|v| v.iter().any(|c| c.3 == *at))
            });
            self.pending_order.shrink_to(2 * self.pending_count + 1024);
        }
        let oldest = (now_secs / 60).saturating_sub(KEEP_MINUTES);
        if self.edges.len() > 10_000 {
            self.edges.retain(|(m, _, _), _| *m >= oldest);
        }
    }
}

/// Every tenant's graph.
#[derive(Default)]
pub struct ServiceGraph {
    tenants: Mutex<HashMap<TenantId, TenantGraph>>,
    /// Whether waiting children are kept for the other nodes (a cluster).
    sharing: std::sync::atomic::AtomicBool,
    /// The other nodes' edges as they last shared them, by tenant and node.
    peers: Mutex<HashMap<TenantId, HashMap<String, Vec<SharedEdge>>>>,
}

/// Saved service graph files (see `tenantstate`).
const SAVED: crate::tenantstate::Kind = crate::tenantstate::Kind {
    magic: b"TVSG1\n",
    label: b"tracevault-service-graph\0",
    what: "service graph",
};

/// One tenant's saved edges: (minute, parent service, child service, calls, errors).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Saved {
    edges: Vec<(u64, String, String, u64, u64)>,
}

/// A dependency: `parent` called `child` `calls` times (`errors` of them failed).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    #[serde(rename = "callCount")]
    pub calls: u64,
    #[serde(rename = "errorCount")]
    pub errors: u64,
}

impl ServiceGraph {
    /// Adds a committed batch's spans.
    pub fn add(&self, tenant: &TenantId, facts: Vec<SpanFact>) {
        if facts.is_empty() {
            return;
        }
        let now = tv_access::now_unix();
        let share = self.sharing.load(std::sync::atomic::Ordering::Relaxed);
        let mut g = self.tenants.lock().expect("graph lock");
        let t = g.entry(tenant.clone()).or_default();
        for f in facts {
            t.add(f, now, share);
        }
    }

    /// Keeps the children that start waiting for the other nodes of a cluster
    /// ([`Self::take_waiting`]).
    pub fn share(&self) {
        self.sharing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The children that started waiting since the last call, by tenant.
    pub fn take_waiting(&self) -> Vec<(TenantId, Vec<SharedWaiter>)> {
        let mut g = self.tenants.lock().expect("graph lock");
        g.iter_mut()
            .filter(|(_, t)| !t.outbox.is_empty())
            .map(|(id, t)| (id.clone(), std::mem::take(&mut t.outbox)))
            .collect()
    }

    /// Children another node shares: each makes its edge here if its parent came here.
    pub fn import_waiting(&self, tenant: &TenantId, waiting: Vec<SharedWaiter>) {
        let now = tv_access::now_unix();
        let mut g = self.tenants.lock().expect("graph lock");
        let t = g.entry(tenant.clone()).or_default();
        for w in waiting {
            t.import(w, now);
        }
    }

    /// The edges of every tenant whose edges changed since the last call (to share them).
    pub(crate) fn take_changed_edges(&self) -> Vec<(TenantId, Saved)> {
        let oldest = (tv_access::now_unix() / 60).saturating_sub(KEEP_MINUTES);
        let mut g = self.tenants.lock().expect("graph lock");
        g.iter_mut()
            .filter(|(_, t)| t.edges_changed)
            .map(|(id, t)| {
                t.edges_changed = false;
                (id.clone(), saved_edges(t, oldest))
            })
            .collect()
    }

    /// The tenant's edges are to be shared again (the last attempt failed).
    pub fn edges_unshared(&self, tenant: &TenantId) {
        if let Some(t) = self.tenants.lock().expect("graph lock").get_mut(tenant) {
            t.edges_changed = true;
        }
    }

    /// Another node's edges for a tenant, as it last shared them (replacing the earlier ones).
    pub(crate) fn set_peer_edges(&self, tenant: &TenantId, node: &str, saved: Saved) {
        let edges = saved
            .edges
            .into_iter()
            .map(|(m, p, c, n, e)| (m, Arc::from(p), Arc::from(c), n, e))
            .collect();
        self.peers
            .lock()
            .expect("graph peers lock")
            .entry(tenant.clone())
            .or_default()
            .insert(node.to_owned(), edges);
    }

    /// Drops a tenant's graph.
    pub fn forget(&self, tenant: &TenantId) {
        self.tenants.lock().expect("graph lock").remove(tenant);
        self.peers.lock().expect("graph peers lock").remove(tenant);
    }

    /// Drops an erased tenant's graph and its saved file.
    pub fn erase(
        &self,
        tenant: &TenantId,
        data_dir: &std::path::Path,
        seal: &crate::stateseal::StateSeal,
    ) {
        self.forget(tenant);
        let rel = format!("graph/{tenant}.graph");
        if std::fs::remove_file(data_dir.join(&rel)).is_ok() {
            seal.seal_or_warn(&rel);
        }
    }

    /// Saves every tenant's edges to `DIR/graph/<tenant>.graph`; an erased tenant's file is
    /// removed instead.
    pub fn save(
        &self,
        data_dir: &std::path::Path,
        keyring: &tv_crypto::Keyring,
        seal: &crate::stateseal::StateSeal,
    ) {
        let dir = data_dir.join("graph");
        if let Err(e) = tv_crypto::fsio::create_private_dir(&dir) {
            tracing::error!(error = %e, "cannot create the service graph directory");
            return;
        }
        let oldest = (tv_access::now_unix() / 60).saturating_sub(KEEP_MINUTES);
        let snapshot: Vec<(TenantId, Saved)> = {
            let g = self.tenants.lock().expect("graph lock");
            g.iter()
                .map(|(t, tg)| (t.clone(), saved_edges(tg, oldest)))
                .collect()
        };
        for (tenant, saved) in snapshot {
            let path = dir.join(format!("{tenant}.graph"));
            let rel = format!("graph/{tenant}.graph");
            if keyring.is_erased(&tenant) {
                let _ = std::fs::remove_file(&path);
                seal.seal_or_warn(&rel);
                self.forget(&tenant);
                continue;
            }
            match crate::tenantstate::seal(&SAVED, keyring, &tenant, &saved) {
                Ok(bytes) => {
                    if let Err(e) = tv_crypto::fsio::atomic_write(&path, &bytes, 0o600) {
                        tracing::error!(tenant = %tenant, error = %e, "saving the service graph failed");
                    }
                    seal.seal_or_warn(&rel);
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %format!("{e:#}"), "sealing the service graph failed")
                }
            }
        }
    }

    /// Loads the edges [`Self::save`] wrote (a file that does not open is skipped with a
    /// warning: that tenant's graph starts empty).
    pub fn load(&self, data_dir: &std::path::Path, keyring: &tv_crypto::Keyring) {
        let Ok(entries) = std::fs::read_dir(data_dir.join("graph")) else {
            return;
        };
        let mut g = self.tenants.lock().expect("graph lock");
        for e in entries.flatten() {
            let path = e.path();
            let Some(tenant) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".graph"))
                .and_then(|n| TenantId::parse(n).ok())
            else {
                continue;
            };
            if keyring.is_erased(&tenant) {
                continue;
            }
            let saved: anyhow::Result<Saved> = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| crate::tenantstate::open(&SAVED, keyring, &tenant, &b));
            match saved {
                Ok(saved) => {
                    let t = g.entry(tenant).or_default();
                    for (m, p, c, n, err) in saved.edges {
                        let e = t.edges.entry((m, Arc::from(p), Arc::from(c))).or_default();
                        e.0 += n;
                        e.1 += err;
                    }
                }
                Err(e) => tracing::warn!(
                    tenant = %tenant,
                    error = %format!("{e:#}"),
                    "service graph not loaded; the tenant's graph starts empty"
                ),
            }
        }
    }

    /// The calls whose child span started in `[start, end]` (unix nanoseconds, whole minutes).
    pub fn dependencies(&self, tenant: &TenantId, start: u64, end: u64) -> Vec<Dependency> {
        let (from, to) = (start / 60_000_000_000, end / 60_000_000_000);
        let g = self.tenants.lock().expect("graph lock");
        let peers = self.peers.lock().expect("graph peers lock");
        let own = g
            .get(tenant)
            .into_iter()
            .flat_map(|t| t.edges.iter().map(|((m, p, c), (n, e))| (*m, p, c, *n, *e)));
        // Every other node's edges (a cluster): each call was counted by one node only.
        let others = peers
            .get(tenant)
            .into_iter()
            .flat_map(|p| p.values())
            .flat_map(|v| v.iter().map(|(m, p, c, n, e)| (*m, p, c, *n, *e)));
        let mut sum: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
        for (m, p, c, n, e) in own.chain(others) {
            if (from..=to).contains(&m) {
                let s = sum.entry((p.as_ref(), c.as_ref())).or_default();
                s.0 += n;
                s.1 += e;
            }
        }
        let mut out: Vec<Dependency> = sum
            .into_iter()
            .map(|((p, c), (n, e))| Dependency {
                parent: p.to_owned(),
                child: c.to_owned(),
                calls: n,
                errors: e,
            })
            .collect();
        out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        out
    }
}

/// A tenant's edges from `oldest` (minute) on, to save or share.
fn saved_edges(t: &TenantGraph, oldest: u64) -> Saved {
    Saved {
        edges: t
            .edges
            .iter()
            .filter(|((m, _, _), _)| *m >= oldest)
            .map(|((m, p, c), (n, e))| (*m, p.to_string(), c.to_string(), *n, *e))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: u64, parent: u64, svc: &str, error: bool) -> SpanFact {
        SpanFact {
            span_id: id,
            parent_id: parent,
            service: Arc::from(svc),
            error,
            start_unix_nano: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn edges_come_from_either_arrival_order_and_stay_per_tenant() {
        let g = ServiceGraph::default();
        let a = TenantId::parse("acme").unwrap();
        let b = TenantId::parse("globex").unwrap();
        // Parent first, then child (another batch).
        g.add(&a, vec![f(1, 0, "frontend", false)]);
        g.add(&a, vec![f(2, 1, "checkout", true)]);
        // Child first, then parent.
        g.add(&a, vec![f(4, 3, "db", false)]);
        g.add(&a, vec![f(3, 2, "checkout", false)]);
        // Same-service calls are not edges.
        g.add(&a, vec![f(5, 3, "checkout", false)]);
        let t = 1_700_000_000_000_000_000;
        let deps = g.dependencies(&a, t - 60_000_000_000, t + 60_000_000_000);
        assert_eq!(
            deps,
            [
                Dependency {
                    parent: "checkout".into(),
                    child: "db".into(),
                    calls: 1,
                    errors: 0
                },
                Dependency {
                    parent: "frontend".into(),
                    child: "checkout".into(),
                    calls: 1,
                    errors: 1
                },
            ]
        );
        assert!(
            g.dependencies(&b, t - 60_000_000_000, t + 60_000_000_000)
                .is_empty()
        );
        // Outside the window: nothing.
        assert!(
            g.dependencies(&a, t + 600_000_000_000, t + 700_000_000_000)
                .is_empty()
        );
    }

    /// Children that arrive before their parent in the same batch (a batch grouped by service)
    /// wait only for a moment: what the graph keeps for them stays bounded by the children still
    /// waiting, not by every child of the last ten minutes, and the edges still come out.
    #[test]
    fn children_whose_parent_came_leave_nothing_waiting() {
        let g = ServiceGraph::default();
        let a = TenantId::parse("acme").unwrap();
        let t = 1_700_000_000_000_000_000;
        for batch in 0..200u64 {
            let base = batch * 1_000 + 1;
            // 500 children first, then their parent.
            let mut facts: Vec<SpanFact> =
                (1..=500).map(|k| f(base + k, base, "db", false)).collect();
            facts.push(f(base, 0, "api", false));
            g.add(&a, facts);
        }
        // One child whose parent never comes keeps waiting.
        g.add(&a, vec![f(999_999_999, 999_999_998, "db", false)]);
        let tenants = g.tenants.lock().unwrap();
        let tg = &tenants[&a];
        assert_eq!(tg.pending_count, 1);
        assert_eq!(tg.pending.len(), 1);
        assert!(
            tg.pending_order.len() <= 2 * tg.pending_count + 1024,
            "{} entries queued for {} waiting children",
            tg.pending_order.len(),
            tg.pending_count
        );
        assert!(tg.pending_order.iter().any(|(p, _)| *p == 999_999_998));
        drop(tenants);
        let deps = g.dependencies(&a, t - 60_000_000_000, t + 60_000_000_000);
        assert_eq!(deps.len(), 1);
        assert_eq!(deps[0].calls, 200 * 500);
    }

    #[test]
    fn a_call_across_nodes_is_counted_once_by_the_node_with_the_parent() {
        // Now: shared edges are those of the last day.
        let t = tv_access::now_unix() * 1_000_000_000;
        let f = |id, parent, svc: &str, error| SpanFact {
            start_unix_nano: t,
            ..f(id, parent, svc, error)
        };
        let window = |g: &ServiceGraph, tenant: &TenantId| {
            g.dependencies(tenant, t - 60_000_000_000, t + 60_000_000_000)
        };
        let acme = TenantId::parse("acme").unwrap();
        let (a, b) = (ServiceGraph::default(), ServiceGraph::default());
        a.share();
        b.share();
        // Child on B first (its parent is on A, later); a child whose parent is on B itself.
        b.add(&acme, vec![f(2, 1, "backend", true), f(9, 8, "db", false)]);
        b.add(&acme, vec![f(8, 0, "backend", false)]);
        a.add(&acme, vec![f(1, 0, "frontend", false)]);
        // A parent on A before its child on B shares it.
        a.add(&acme, vec![f(3, 0, "frontend", false)]);
        b.add(&acme, vec![f(4, 3, "backend", false)]);
        // Each takes in what the other shares; what it took in is not shared on.
        let (from_a, from_b) = (a.take_waiting(), b.take_waiting());
        for (tenant, w) in from_b {
            a.import_waiting(&tenant, w);
        }
        for (tenant, w) in from_a {
            b.import_waiting(&tenant, w);
        }
        assert!(a.take_waiting().is_empty() && b.take_waiting().is_empty());
        let on_a = window(&a, &acme);
        assert_eq!(
            on_a,
            [Dependency {
                parent: "frontend".into(),
                child: "backend".into(),
                calls: 2,
                errors: 1
            }]
        );
        // B made only its own edge; once each shares its edges, both answer with the sum.
        assert_eq!(window(&b, &acme).len(), 1);
        for (tenant, saved) in a.take_changed_edges() {
            b.set_peer_edges(&tenant, "a", saved);
        }
        for (tenant, saved) in b.take_changed_edges() {
            a.set_peer_edges(&tenant, "b", saved);
        }
        assert!(a.take_changed_edges().is_empty(), "nothing changed since");
        for g in [&a, &b] {
            let deps = window(g, &acme);
            assert_eq!(deps.len(), 2, "{deps:?}");
            assert_eq!((deps[0].parent.as_str(), deps[0].calls), ("backend", 1));
            assert_eq!((deps[1].parent.as_str(), deps[1].calls), ("frontend", 2));
        }
    }
}
