//! Threat detection in the server (issue 7): the signature stage on ingest, findings stored with
//! the batch, the JSON Lines sink and `GET /api/findings`.
//!
//! Findings are stored as spans of the reserved service [`FINDINGS_SERVICE`] in the same batch
//! (one WAL record, one log leaf) as the spans they are about, with the trace id of the span that
//! fired: they are encrypted at rest, covered by the tamper-evident log, kept and erased with the
//! tenant's data, and appear in the trace they are about. Their only payload is the finding's JSON
//! (redacted evidence, never a raw value).
//!
//! The behavioural stage runs on its own thread after commit: ingest hands it the redacted batch
//! through a bounded queue (`try_send`: when the queue is full the batch skips the stage, the
//! spans are counted in `tracevault_detection_dropped_spans_total`, and ingest never waits). Its
//! findings are committed as a batch of their own. The learned state (services, edges, baselines)
//! is saved every minute and at shutdown to `DIR/detect/<tenant>.state`, encrypted under a data
//! key of the tenant (so erasing the tenant makes it unreadable; it is then removed).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tv_crypto::Keyring;
use tv_detect::behaviour::{BatchInfo, Behaviour, BehaviourConfig, TenantState};
use tv_model::TenantId;
use tv_model::limits::Limits;
use tv_store::Store;

use tv_detect::finding::Finding;
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};
use tv_model::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    any_value,
};

use crate::config::DetectionSettings;
use crate::responses::Responses;
use crate::sinks::Sinks;

pub use tv_detect::FINDINGS_SERVICE;
/// The attribute holding a finding's JSON.
pub const FINDING_ATTRIBUTE: &str = "tracevault.finding";
/// The attribute holding a finding span's seal (see [`FindingSeal`]).
pub const SEAL_ATTRIBUTE: &str = "tracevault.finding.seal";

/// Findings are recognized by how they were stored, not by a name a client could also write:
/// the server seals each finding span with HMAC-SHA256 under a key of the tenant that only it
/// holds (derived from the tenant's pseudonym secret, so it is destroyed with the tenant), and
/// `/api/findings` lists only spans whose seal verifies.
pub struct FindingSeal {
    keyring: Arc<Keyring>,
    keys: Mutex<HashMap<TenantId, Arc<aws_lc_rs::hmac::Key>>>,
}

impl FindingSeal {
    pub fn new(keyring: Arc<Keyring>) -> Self {
        FindingSeal {
            keyring,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, tenant: &TenantId) -> anyhow::Result<Arc<aws_lc_rs::hmac::Key>> {
        use aws_lc_rs::hmac;
        if let Some(k) = self.keys.lock().expect("seal keys lock").get(tenant) {
            return Ok(k.clone());
        }
        let secret = self.keyring.pseudonym_secret(tenant)?;
        let base = hmac::Key::new(hmac::HMAC_SHA256, secret.expose());
        let derived = hmac::sign(&base, b"tracevault/v1/finding-seal");
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()));
        self.keys
            .lock()
            .expect("seal keys lock")
            .insert(tenant.clone(), key.clone());
        Ok(key)
    }

    /// Drops the tenant's cached key (its keys were destroyed).
    pub fn forget(&self, tenant: &TenantId) {
        self.keys.lock().expect("seal keys lock").remove(tenant);
    }

    fn tag(key: &aws_lc_rs::hmac::Key, trace_id: &[u8], span_id: &[u8], json: &str) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(key);
        for part in [trace_id, span_id, json.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        hex::encode(ctx.sign().as_ref())
    }

    /// The findings as sealed spans of [`FINDINGS_SERVICE`] (see [`as_spans_at`]).
    pub fn seal(
        &self,
        tenant: &TenantId,
        findings: &[Finding],
        at: Option<u64>,
    ) -> anyhow::Result<Option<ResourceSpans>> {
        if findings.is_empty() {
            return Ok(None);
        }
        let key = self.key(tenant)?;
        Ok(as_spans_at(findings, at, &|t, s, j| {
            Self::tag(&key, t, s, j)
        }))
    }

    /// The findings among these spans whose seal verifies for `tenant`; anything else, whatever
    /// its service and attributes, is not a finding.
    pub fn open(&self, tenant: &TenantId, rs: &[ResourceSpans]) -> anyhow::Result<Vec<Finding>> {
        let key = self.key(tenant)?;
        let mut out = Vec::new();
        for r in rs {
            if tv_model::service_name(r.resource.as_ref()) != Some(FINDINGS_SERVICE) {
                continue;
            }
            for s in r.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let attr = |name: &str| {
                    s.attributes
                        .iter()
                        .find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            any_value::Value::StringValue(v) if kv.key == name => Some(v.as_str()),
                            _ => None,
                        })
                };
                let (Some(json), Some(seal)) = (attr(FINDING_ATTRIBUTE), attr(SEAL_ATTRIBUTE))
                else {
                    continue;
                };
                let want = Self::tag(&key, &s.trace_id, &s.span_id, json);
                if !bool::from(subtle::ConstantTimeEq::ct_eq(
                    want.as_bytes(),
                    seal.as_bytes(),
                )) {
                    continue;
                }
                if let Ok(f) = serde_json::from_str::<Finding>(json) {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }
}

pub struct Detection {
    signatures: Option<Signatures>,
    sinks: Arc<Sinks>,
    worker: Mutex<Option<Worker>>,
    /// Automated responses (enforced even with detection off: a quarantine stays until released).
    pub responses: Option<Arc<Responses>>,
}

struct Worker {
    tx: SyncSender<Job>,
    thread: std::thread::JoinHandle<()>,
}

/// One committed, redacted batch for the behavioural stage.
pub struct Job {
    pub tenant: TenantId,
    pub principal: String,
    pub received_unix_nano: u64,
    pub request: ExportTraceServiceRequest,
}

/// What the behavioural worker needs of the server.
pub struct WorkerDeps {
    pub store: Arc<Store>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub keyring: Arc<Keyring>,
    pub limits: Limits,
    pub data_dir: PathBuf,
    pub runtime: tokio::runtime::Handle,
    pub audit: Option<Arc<crate::audit::Audit>>,
    pub seal: Arc<FindingSeal>,
    /// Where committed findings are indexed for `/api/findings`.
    pub findings_index: Arc<crate::findings_index::FindingsIndex>,
    /// Seals the saved detector state (see `stateseal`).
    pub state_seal: Arc<crate::stateseal::StateSeal>,
    /// A cluster node that detects: how often learned baselines are shared through the bucket
    /// (see `baseline_share`).
    pub share_every: Option<Duration>,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detection")
            .field("rules", &self.rule_count())
            .finish()
    }
}

impl Detection {
    /// Loads the rules (logging every rule that cannot run and why), opens the sink and starts
    /// the behavioural worker (when `deps` is given and the stage is on).
    pub fn start(s: &DetectionSettings, deps: Option<WorkerDeps>) -> anyhow::Result<Detection> {
        let responses = match &deps {
            Some(d) => Some(Arc::new(Responses::open(
                if s.enabled {
                    s.responses.clone()
                } else {
                    Vec::new()
                },
                &d.data_dir,
                d.audit.clone(),
                Some(d.state_seal.clone()),
            )?)),
            None => None,
        };
        if !s.enabled {
            tracing::warn!(
                "threat detection is OFF (detection.enabled = false): no signature rules run on ingest and no behavioural detector watches the stream"
            );
            return Ok(Detection {
                signatures: None,
                sinks: Arc::new(Sinks::none()),
                worker: Mutex::new(None),
                responses,
            });
        }
        let mut rules = RuleSet::empty();
        rules.disable(s.disabled_rules.iter().cloned());
        if s.builtin_rules {
            rules.add_builtin();
        }
        if let Some(dir) = &s.rules_dir {
            let n = rules.add_dir(dir).map_err(|e| {
                anyhow::anyhow!("reading detection.rules_dir {}: {e}", dir.display())
            })?;
            tracing::info!(dir = %dir.display(), loaded = n, "operator detection rules loaded");
        }
        for u in &rules.unsupported {
            tracing::warn!(
                file = %u.source,
                rule = u.title.as_deref().unwrap_or("-"),
                reason = %u.reason,
                "detection rule not loaded"
            );
        }
        let unknown = rules.disabled_unknown();
        if !unknown.is_empty() {
            anyhow::bail!(
                "detection.disabled_rules names {}, which no Sigma rule file has (the built-in ids are those of crates/detect/rules/ and of findings' finding_info.analytic.uid; a rules_dir file that did not parse is logged above; behavioural detectors are tuned in [detection.behaviour], not listed here)",
                unknown.join(", ")
            );
        }
        if !s.disabled_rules.is_empty() {
            tracing::warn!(rules = ?s.disabled_rules, "detection rules switched off by detection.disabled_rules");
        }
        tracing::info!(
            rules = rules.rules().len(),
            unsupported = rules.unsupported.len(),
            "signature rules ready"
        );
        let sinks = Arc::new(Sinks::start(
            &s.sinks,
            deps.as_ref().map(|d| d.metrics.clone()),
        )?);
        let worker = match (&s.behaviour, deps) {
            (Some(cfg), Some(deps)) => Some(Worker::spawn(
                cfg.clone(),
                s.queue_batches,
                deps,
                sinks.clone(),
                responses.clone(),
            )?),
            (None, _) => {
                tracing::warn!("behavioural detection is OFF (detection.behavioural = false)");
                None
            }
            (Some(_), None) => None,
        };
        Ok(Detection {
            signatures: Some(Signatures::new(rules)),
            sinks,
            worker: Mutex::new(worker),
            responses,
        })
    }

    /// Whether committed batches should be handed to [`Detection::submit`].
    pub fn wants_stream(&self) -> bool {
        self.worker.lock().expect("worker lock").is_some()
    }

    /// Hands a committed batch to the behavioural stage without waiting; a full queue drops it
    /// from the stage (counted).
    pub fn submit(&self, job: Job, metrics: &crate::metrics::Metrics) {
        let guard = self.worker.lock().expect("worker lock");
        let Some(w) = guard.as_ref() else { return };
        let spans = tv_model::span_count(&job.request.resource_spans);
        match w.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics.detection_dropped_spans.inc_by(spans as u64);
            }
        }
    }

    /// Lets the behavioural worker finish its queue, store its findings and save its state.
    /// Call before the store shuts down.
    pub fn shutdown(&self) {
        let w = self.worker.lock().expect("worker lock").take();
        if let Some(w) = w {
            drop(w.tx);
            if w.thread.join().is_err() {
                tracing::error!("the behavioural detection thread panicked");
            }
        }
    }

    pub fn rule_count(&self) -> usize {
        self.signatures
            .as_ref()
            .map(|s| s.rules.rules().len())
            .unwrap_or(0)
    }

    /// The signature stage over a decoded (not yet redacted) batch.
    pub fn scan(
        &self,
        tenant: &str,
        principal: &str,
        req: &ExportTraceServiceRequest,
        now: u64,
    ) -> Vec<Finding> {
        match &self.signatures {
            None => Vec::new(),
            Some(s) => s.scan(
                Sender {
                    tenant,
                    principal: Some(principal),
                },
                req,
                now,
            ),
        }
    }

    /// After the batch (with its findings) is committed: the sinks.
    pub fn emit(&self, findings: &[Finding]) {
        self.sinks.emit(findings)
    }
}

fn kv_str(key: &str, v: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

/// Findings carry the span's name as their operation and its resource's service; both may hold
/// personal data that the tenant's redaction rules rewrite, so after redaction the findings take
/// the redacted forms (and their message and group key follow).
pub fn with_redacted_names(
    mut findings: Vec<Finding>,
    redacted: &ExportTraceServiceRequest,
) -> Vec<Finding> {
    if findings.is_empty() {
        return findings;
    }
    // Each span's redacted name and its resource's redacted service.
    let mut names: std::collections::HashMap<String, (&str, &str)> = Default::default();
    for rs in &redacted.resource_spans {
        let service = tv_model::service_name(rs.resource.as_ref()).unwrap_or("");
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                names.insert(hex::encode(&sp.span_id), (sp.name.as_str(), service));
            }
        }
    }
    for f in &mut findings {
        let (name, service) = names.get(&f.span_id).copied().unwrap_or(("", ""));
        if name != f.operation || service != f.service {
            // The message names them as `service '..' operation '..'` (tv-detect).
            f.message = f
                .message
                .replace(
                    &format!("operation '{}'", f.operation),
                    &format!("operation '{name}'"),
                )
                .replace(
                    &format!("service '{}'", f.service),
                    &format!("service '{service}'"),
                );
            f.operation = name.to_owned();
            f.service = service.to_owned();
            f.group = tv_detect::group_key(
                &f.tenant,
                &f.analytic_uid,
                &f.service,
                &f.operation,
                f.principal.as_deref().unwrap_or(""),
            );
        }
    }
    findings
}

/// Seals one finding span: (trace id, span id, finding JSON) -> seal.
type SealFn<'a> = dyn Fn(&[u8], &[u8], &str) -> String + 'a;

/// The findings as spans of [`FINDINGS_SERVICE`], one per finding, in the finding's trace, timed
/// at the event they are about (or at `at`, for findings committed later than their event), each
/// with `seal(trace id, span id, JSON)` in [`SEAL_ATTRIBUTE`].
fn as_spans_at(findings: &[Finding], at: Option<u64>, seal: &SealFn) -> Option<ResourceSpans> {
    if findings.is_empty() {
        return None;
    }
    let spans = findings
        .iter()
        .filter_map(|f| {
            let trace_id = hex::decode(&f.trace_id)
                .ok()
                .filter(|t| t.len() == 16)
                .or_else(|| hex::decode(&f.uid).ok().filter(|t| t.len() == 16))?;
            let parent = hex::decode(&f.span_id)
                .ok()
                .filter(|s| s.len() == 8)
                .unwrap_or_default();
            let uid = hex::decode(&f.uid).ok()?;
            let mut span_id = uid.get(..8)?.to_vec();
            if span_id.iter().all(|b| *b == 0) {
                span_id[7] = 1;
            }
            let json = serde_json::to_string(f).ok()?;
            let sealed = seal(&trace_id, &span_id, &json);
            Some(Span {
                trace_id,
                span_id,
                parent_span_id: parent,
                name: format!("finding: {}", f.title),
                kind: 1,
                start_time_unix_nano: at.unwrap_or(f.time_unix_nano),
                end_time_unix_nano: at.unwrap_or(f.time_unix_nano),
                attributes: {
                    let mut a = vec![
                        kv_str("tracevault.finding.rule", f.analytic_uid.clone()),
                        kv_str("tracevault.finding.severity", f.severity.name().to_owned()),
                        kv_str(FINDING_ATTRIBUTE, json),
                        kv_str(SEAL_ATTRIBUTE, sealed),
                    ];
                    for t in &f.tags {
                        a.push(kv_str("tracevault.tag", t.clone()));
                    }
                    a
                },
                ..Default::default()
            })
        })
        .collect();
    Some(ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", FINDINGS_SERVICE.to_owned())],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The policy digest recorded for batches of findings the server makes itself (no redaction
/// rules ran on them: they are built from redacted data).
fn findings_policy() -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        b"tracevault findings batch: built from redacted data",
    );
    d.as_ref().try_into().expect("32 bytes")
}

const STATE_MAGIC: &[u8] = b"TVDS1\n";
const SAVE_EVERY: Duration = Duration::from_secs(60);

fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("detect")
}

/// The behavioural state files (see `tenantstate`).
pub(crate) const STATE: crate::tenantstate::Kind = crate::tenantstate::Kind {
    magic: STATE_MAGIC,
    label: b"tracevault-detect-state\0",
    what: "detection state",
};

impl Worker {
    fn spawn(
        cfg: BehaviourConfig,
        queue: usize,
        deps: WorkerDeps,
        sinks: Arc<Sinks>,
        responses: Option<Arc<Responses>>,
    ) -> anyhow::Result<Worker> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let mut behaviour = Behaviour::new(cfg);
        load_states(&deps, &mut behaviour);
        let mut share = deps
            .share_every
            .map(|_| crate::baseline_share::SharedBaselines::default());
        if let Some(sh) = &mut share {
            // What the cluster learned before this node started.
            let n = sh.merge_peers(&deps.store, &deps.keyring, &mut behaviour);
            if n > 0 {
                tracing::info!(baselines = n, "merged other nodes' behavioural baselines");
            }
        }
        let thread = std::thread::Builder::new()
            .name("tv-behaviour".into())
            .spawn(move || run_worker(rx, behaviour, deps, sinks, responses, share))?;
        Ok(Worker { tx, thread })
    }
}

fn load_states(deps: &WorkerDeps, b: &mut Behaviour) {
    let dir = state_dir(&deps.data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".state"))
        else {
            continue;
        };
        let Ok(tenant) = TenantId::parse(name) else {
            continue;
        };
        if deps.keyring.is_erased(&tenant) {
            let _ = std::fs::remove_file(&path);
            deps.state_seal
                .seal_or_warn(&format!("detect/{name}.state"));
            continue;
        }
        match std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| crate::tenantstate::open(&STATE, &deps.keyring, &tenant, &bytes))
        {
            Ok(l) => {
                b.tenants
                    .insert(tenant.to_string(), TenantState::from_learned(l));
            }
            Err(e) => tracing::warn!(
                tenant = %tenant,
                error = %format!("{e:#}"),
                "behavioural state not loaded; the tenant learns again"
            ),
        }
    }
    if !b.tenants.is_empty() {
        tracing::info!(tenants = b.tenants.len(), "behavioural baselines loaded");
    }
}

fn save_states(deps: &WorkerDeps, b: &mut Behaviour) {
    let dir = state_dir(&deps.data_dir);
    if let Err(e) = tv_crypto::fsio::create_private_dir(&dir) {
        tracing::error!(error = %e, "cannot create the detection state directory");
        return;
    }
    let mut gone = Vec::new();
    for (t, st) in &b.tenants {
        let Ok(tenant) = TenantId::parse(t) else {
            continue;
        };
        let path = dir.join(format!("{t}.state"));
        let rel = format!("detect/{t}.state");
        if deps.keyring.is_erased(&tenant) {
            let _ = std::fs::remove_file(&path);
            deps.state_seal.seal_or_warn(&rel);
            gone.push(t.clone());
            continue;
        }
        match crate::tenantstate::seal(&STATE, &deps.keyring, &tenant, &st.learned) {
            Ok(bytes) => {
                if let Err(e) = tv_crypto::fsio::atomic_write(&path, &bytes, 0o600) {
                    tracing::error!(tenant = %t, error = %e, "saving behavioural state failed");
                }
                deps.state_seal.seal_or_warn(&rel);
            }
            Err(e) => {
                tracing::error!(tenant = %t, error = %format!("{e:#}"), "sealing behavioural state failed")
            }
        }
    }
    for t in gone {
        b.tenants.remove(&t);
    }
}

/// One round of sharing: the other nodes' baselines merged in, this node's published.
fn share_round(
    deps: &WorkerDeps,
    b: &mut Behaviour,
    sh: &mut crate::baseline_share::SharedBaselines,
) {
    sh.merge_peers(&deps.store, &deps.keyring, b);
    let full = sh.full_round();
    let objects = deps.store.objects().clone();
    for (t, st) in &b.tenants {
        let Ok(tenant) = TenantId::parse(t) else {
            continue;
        };
        if deps.keyring.is_erased(&tenant) {
            sh.remove(&*objects, t);
            continue;
        }
        if !sh.due(full, t, &st.learned) {
            continue;
        }
        match crate::tenantstate::seal(&STATE, &deps.keyring, &tenant, &st.learned) {
            Ok(bytes) => sh.publish(&*objects, t, &st.learned, &bytes),
            Err(e) => {
                tracing::error!(tenant = %t, error = %format!("{e:#}"), "sealing behavioural state failed")
            }
        }
    }
    sh.round_done(full);
}

fn run_worker(
    rx: Receiver<Job>,
    mut b: Behaviour,
    deps: WorkerDeps,
    sinks: Arc<Sinks>,
    responses: Option<Arc<Responses>>,
    mut share: Option<crate::baseline_share::SharedBaselines>,
) {
    let mut last_save = Instant::now();
    let mut last_share = Instant::now();
    let policy = findings_policy();
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(job) => {
                let spans = tv_detect::behaviour::facts(&job.request);
                let mut findings = b.observe(
                    BatchInfo {
                        tenant: job.tenant.as_str(),
                        principal: Some(&job.principal),
                        received_unix_nano: job.received_unix_nano,
                    },
                    &spans,
                );
                if !findings.is_empty() {
                    if let Some(r) = &responses {
                        r.apply(&mut findings);
                    }
                    store_findings(&deps, &job.tenant, &findings, policy);
                    deps.metrics.record_findings(&findings);
                    sinks.emit(&findings);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let (Some(sh), Some(every)) = (&mut share, deps.share_every)
            && last_share.elapsed() >= every
        {
            share_round(&deps, &mut b, sh);
            last_share = Instant::now();
        }
        if last_save.elapsed() >= SAVE_EVERY {
            save_states(&deps, &mut b);
            last_save = Instant::now();
        }
        let bytes: usize = b.tenants.values().map(TenantState::approx_bytes).sum();
        deps.metrics.detection_baseline_bytes.set(bytes as i64);
    }
    if let Some(sh) = &mut share {
        share_round(&deps, &mut b, sh);
    }
    save_states(&deps, &mut b);
}

fn store_findings(deps: &WorkerDeps, tenant: &TenantId, findings: &[Finding], policy: [u8; 32]) {
    // An erased tenant takes nothing, not even findings about its last batches; no findings, no
    // record.
    if findings.is_empty() || deps.store.accepts(tenant).is_err() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // The same commit as a client batch's: an empty batch with the findings sealed in.
    let empty =
        tv_model::validate::validate(ExportTraceServiceRequest::default(), &deps.limits, now)
            .map_err(|e| crate::ingest::Refusal::Internal(e.to_string()));
    let commit = crate::ingest::Commit::new(&deps.store, &deps.seal, &deps.findings_index);
    let res = empty
        .and_then(|batch| commit.prepare(tenant, batch, findings, Some(now), 1, policy))
        .and_then(|(_, record)| {
            deps.runtime
                .block_on(commit.write(tenant, record, findings))
        });
    if let Err(refusal) = res {
        let e = crate::error::ApiError::from(refusal);
        tracing::error!(tenant = %tenant, findings = findings.len(), error = %e, "storing behavioural findings failed");
    }
}

/// The saved behavioural state files (`<tenant>.state` -> size in bytes), for tests and tools.
pub fn state_files(data_dir: &Path) -> HashMap<String, u64> {
    std::fs::read_dir(state_dir(data_dir))
        .map(|r| {
            r.flatten()
                .filter_map(|e| {
                    Some((e.file_name().to_str()?.to_owned(), e.metadata().ok()?.len()))
                })
                .collect()
        })
        .unwrap_or_default()
}
