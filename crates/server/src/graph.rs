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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tv_model::TenantId;
use tv_model::otlp::ExportTraceServiceRequest;

/// Recent spans remembered per tenant (parents children may still arrive for).
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

#[derive(Default)]
struct TenantGraph {
    spans: HashMap<u64, (Arc<str>, u64)>,
    span_order: VecDeque<(u64, u64)>,
    /// Children by the parent id they wait for: (child service, error, start, arrived).
    pending: HashMap<u64, Vec<Waiting>>,
    pending_order: VecDeque<(u64, u64)>,
    pending_count: usize,
    /// (minute, parent service, child service) -> (calls, errors)
    edges: HashMap<EdgeKey, (u64, u64)>,
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
    }

    fn add(&mut self, f: SpanFact, now_secs: u64) {
        // This span's parent seen already: the edge now; else the child waits.
        if f.parent_id != 0 {
            match self.spans.get(&f.parent_id) {
                Some((ps, _)) => {
                    let ps = ps.clone();
                    self.edge(&ps, &f.service, f.error, f.start_unix_nano);
                }
                None => {
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
        if f.span_id != 0
            && self
                .spans
                .insert(f.span_id, (f.service, f.start_unix_nano))
                .is_none()
        {
            self.span_order.push_back((f.span_id, now_secs));
        }
        self.evict(now_secs);
    }

    fn evict(&mut self, now_secs: u64) {
        while self.spans.len() > MAX_SPANS {
            match self.span_order.pop_front() {
                Some((id, _)) => {
                    self.spans.remove(&id);
                }
                None => break,
            }
        }
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
}

/// Saved service graph files (see `tenantstate`).
const SAVED: crate::tenantstate::Kind = crate::tenantstate::Kind {
    magic: b"TVSG1\n",
    label: b"tracevault-service-graph\0",
    what: "service graph",
};

/// One tenant's saved edges: (minute, parent service, child service, calls, errors).
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
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
        let mut g = self.tenants.lock().expect("graph lock");
        let t = g.entry(tenant.clone()).or_default();
        for f in facts {
            t.add(f, now);
        }
    }

    /// Drops a tenant's graph.
    pub fn forget(&self, tenant: &TenantId) {
        self.tenants.lock().expect("graph lock").remove(tenant);
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
                .map(|(t, tg)| {
                    let edges = tg
                        .edges
                        .iter()
                        .filter(|((m, _, _), _)| *m >= oldest)
                        .map(|((m, p, c), (n, e))| (*m, p.to_string(), c.to_string(), *n, *e))
                        .collect();
                    (t.clone(), Saved { edges })
                })
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
        let Some(t) = g.get(tenant) else {
            return Vec::new();
        };
        let mut sum: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
        for ((m, p, c), (n, e)) in &t.edges {
            if (from..=to).contains(m) {
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
}
