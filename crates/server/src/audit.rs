//! The audit log (issue 5): who did what, when, from where, to which resource, with which
//! decision and how many results; never the data itself.
//!
//! Records go to their own transparency log in `DIR/audit/` (the tlog-tiles machinery of the span
//! log; origin `<log origin>/audit`, its own Ed25519 and ML-DSA-44 keys), so `tracevault verify`
//! proves that none was changed, dropped or reordered. Entries are encrypted: each server run
//! starts with a **key entry** holding a fresh AES-256-GCM key wrapped by the root key, and every
//! record entry names its key entry and a counter (the nonce) that never repeats under that key.
//!
//! ```text
//! key entry:    "TVAK" 0x01 | wrapped key
//! record entry: "TVAR" 0x01 | key entry index u64 | counter u64 | AES-256-GCM(JSON record)
//!               (the 21-byte header is the associated data)
//! ```
//!
//! What is recorded: every request to the query and admin API (queries, receipts, token and
//! certificate operations, audit reads) except *allowed* scrapes of `/metrics` and reads of the
//! log's public proofs, and every refused ingest request of an authenticated caller. Refusals of
//! unauthenticated requests and rate-limit refusals are counted in `/metrics` and sampled into the
//! log at a bounded rate, so anonymous traffic cannot flood it. Records are queued before the
//! response is sent and written with a signed checkpoint within the checkpoint interval.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tv_crypto::{DataKey, RootKeySource, SecretKey, fsio};
use tv_store::txlog::{LogConfig, TxLog};

use crate::mtls::PeerInfo;

const KEY_MAGIC: &[u8; 5] = b"TVAK\x01";
const REC_MAGIC: &[u8; 5] = b"TVAR\x01";
const HEADER: usize = 5 + 8 + 8;

/// How often unauthenticated and rate-limited refusals are sampled into the log at most (per
/// second, with a burst of [`SAMPLE_BURST`]).
pub const SAMPLE_PER_SEC: f64 = 1.0;
pub const SAMPLE_BURST: f64 = 10.0;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub time_unix_ms: u64,
    /// `token:<id>`, `oidc:<issuer>:<subject>`, `mtls:<identity>`, or `anonymous`.
    pub principal: String,
    /// The credential's name (token name, OIDC subject, workload identity).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub role: String,
    /// The tenant the request acted for (empty for anonymous refusals).
    #[serde(default)]
    pub tenant: String,
    /// Client address.
    pub from: String,
    /// `api`, `otlp-http` or `otlp-grpc`.
    pub listener: String,
    /// The action (`read_trace`, `search`, `admin_tokens`, ...) or the route when none applies.
    pub action: String,
    /// What it was done to: `trace:<id>`, `tag:<name>`, `token:<id>`, ... (no values).
    pub resource: String,
    /// `allow`, `deny` or `throttled`.
    pub decision: String,
    pub status: u16,
    /// How many results the response held (spans, traces, names, records), when it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<u64>,
    /// Why it was refused (the refusal message; it holds no request data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For sampled refusals: how many like it went unrecorded since the last sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsampled_before: Option<u64>,
    /// For a refusal filed under a tenant the principal is not bound to: the tenants the
    /// principal belongs to (its id is then opaque and its name withheld).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principal_tenants: Vec<String>,
}

/// What a handler tells the audit layer about its response (a response extension).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub resource: Option<String>,
    pub results: Option<u64>,
}

/// Filters for reading the log back.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this tenant's records; None: all (every-tenant callers).
    pub tenant: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    pub since_unix_ms: Option<u64>,
    /// Only entries with an index above this (for `tail --follow`).
    pub after: Option<u64>,
    /// Only entries with an index below this (paging back).
    pub before: Option<u64>,
}

impl Filter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.tenant.as_ref().is_none_or(|t| &r.tenant == t)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| r.principal == *p || r.name == *p)
            && self.action.as_ref().is_none_or(|a| &r.action == a)
            && self.decision.as_ref().is_none_or(|d| &r.decision == d)
            && self.since_unix_ms.is_none_or(|s| r.time_unix_ms >= s)
    }
}

struct Sampler {
    tokens: f64,
    last: std::time::Instant,
    skipped: u64,
}

/// Refusals of one authenticated principal for one tenant and action: the first of each
/// window is recorded at once, the rest counted and recorded as one (the last of them, with
/// `unsampled_before`) when the next window opens or the log is read.
struct Denials {
    started: std::time::Instant,
    suppressed: u64,
    last: Option<AuditRecord>,
}

/// How long one principal's refusals of one kind are counted before the next is recorded.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(10);
/// Principals whose refusals are being counted at once; past it, the oldest are written out.
const MAX_DENIAL_KEYS: usize = 4096;

/// The audit log of a running server.
pub struct Audit {
    log: Arc<TxLog>,
    root: Arc<dyn RootKeySource>,
    keys_dir: std::path::PathBuf,
    rewrapped: Mutex<Rewrapped>,
    key: Arc<DataKey>,
    key_index: u64,
    counter: AtomicU64,
    /// Key entries read back, by index.
    keys: Mutex<HashMap<u64, Arc<DataKey>>>,
    sampler: Mutex<Sampler>,
    denials: Mutex<HashMap<(String, String, String, bool), Denials>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Audit({})", self.log.origin())
    }
}

fn key_context(origin: &str) -> Vec<u8> {
    format!("tracevault/v1/audit-run-key|{origin}").into_bytes()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A parsed audit log entry.
#[derive(Debug)]
pub enum Entry<'a> {
    Key {
        wrapped: &'a [u8],
    },
    Record {
        key_index: u64,
        counter: u64,
        sealed: &'a [u8],
        header: &'a [u8],
    },
}

/// Parses an entry's framing (without decrypting).
pub fn parse_entry(e: &[u8]) -> Result<Entry<'_>, String> {
    if let Some(w) = e.strip_prefix(KEY_MAGIC.as_slice()) {
        if w.is_empty() {
            return Err("key entry without a key".into());
        }
        return Ok(Entry::Key { wrapped: w });
    }
    if e.starts_with(REC_MAGIC) {
        if e.len() < HEADER + 16 {
            return Err("record entry shorter than its header and tag".into());
        }
        let u = |i: usize| u64::from_be_bytes(e[i..i + 8].try_into().expect("8 bytes"));
        return Ok(Entry::Record {
            key_index: u(5),
            counter: u(13),
            sealed: &e[HEADER..],
            header: &e[..HEADER],
        });
    }
    Err("not an audit entry (neither a key nor a record)".into())
}

/// The audit run keys re-wrapped under a newer root version (`keys/audit-rewrapped.json`): the
/// key entries themselves are committed in the audit log and never change.
pub const REWRAPPED_FILE: &str = "audit-rewrapped.json";

/// Key entry wrappings re-wrapped since: SHA-256 of the entry's wrapped key -> newest wrapping.
pub type Rewrapped = HashMap<[u8; 32], Vec<u8>>;

fn sha256(b: &[u8]) -> [u8; 32] {
    tv_tlog::commit::sha256(b)
}

/// Reads `keys/audit-rewrapped.json` (empty when absent).
pub fn load_rewrapped(keys_dir: &Path) -> anyhow::Result<Rewrapped> {
    Ok(fsio::read_digest_map(&keys_dir.join(REWRAPPED_FILE))?)
}

/// Unwraps a key entry's key (through its newest wrapping when it was re-wrapped).
pub fn open_key(
    root: &dyn RootKeySource,
    origin: &str,
    wrapped: &[u8],
    rewrapped: &Rewrapped,
) -> Result<DataKey, String> {
    let w = rewrapped
        .get(&sha256(wrapped))
        .map(Vec::as_slice)
        .unwrap_or(wrapped);
    root.unwrap(&key_context(origin), w)
        .map(DataKey::from_secret)
        .map_err(|e| format!("audit key entry does not unwrap: {e}"))
}

/// Decrypts and parses a record entry.
pub fn open_record(
    key: &DataKey,
    counter: u64,
    header: &[u8],
    sealed: &[u8],
) -> Result<AuditRecord, String> {
    let mut buf = sealed.to_vec();
    let plain = key
        .open(counter, header, &mut buf)
        .map_err(|_| "audit record does not decrypt (altered, or another key)".to_string())?;
    serde_json::from_slice(plain).map_err(|e| format!("audit record is not a record: {e}"))
}

impl Audit {
    /// Opens (or creates) `DIR/audit/`, or a cluster node's `audit/` in its prefix of the bucket
    /// (`objects`; `log_origin` is the cluster's, without a node), and starts this run's key
    /// entry and the flushing thread.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        data_dir: &Path,
        objects: Option<tv_store::objects::SharedObjects>,
        keys_dir: &Path,
        root: Arc<dyn RootKeySource>,
        log_origin: &str,
        node: Option<&str>,
        checkpoint_interval: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let signers = crate::logkeys::load_or_create_audit(keys_dir, root.as_ref(), log_origin)?;
        // A cluster node keeps its own audit log: `<origin>/audit/<node>`.
        let signers = match node {
            Some(n) => signers.for_node(n)?,
            None => signers,
        };
        let cfg = LogConfig {
            origin: signers.origin.clone(),
            signers: vec![Arc::new(signers.ed25519), Arc::new(signers.mldsa)],
            checkpoint_interval,
        };
        let log = Arc::new(match objects {
            Some(o) => {
                let at = format!("{}/audit/", o.describe());
                TxLog::open_in(o, "audit/", cfg)
                    .with_context(|| format!("opening the audit log in {at}"))?
            }
            None => {
                let dir = data_dir.join("audit");
                fsio::create_private_dir(&dir)?;
                TxLog::open(&dir, cfg)
                    .with_context(|| format!("opening the audit log in {}", dir.display()))?
            }
        });
        let secret = SecretKey::random();
        let wrapped = root
            .wrap(&key_context(log.origin()), &secret)
            .context("wrapping the audit key")?;
        let mut entry = KEY_MAGIC.to_vec();
        entry.extend_from_slice(&wrapped);
        let key_index = log.push(entry);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::Builder::new()
                .name("tv-audit-log".into())
                .spawn(move || log.run(stop))
                .context("starting the audit log thread")?
        };
        let key = Arc::new(DataKey::from_secret(secret));
        let rewrapped = Mutex::new(load_rewrapped(keys_dir)?);
        Ok(Arc::new(Self {
            log,
            root,
            keys_dir: keys_dir.to_owned(),
            rewrapped,
            key: key.clone(),
            key_index,
            counter: AtomicU64::new(0),
            keys: Mutex::new(HashMap::from([(key_index, key)])),
            sampler: Mutex::new(Sampler {
                tokens: SAMPLE_BURST,
                last: std::time::Instant::now(),
                skipped: 0,
            }),
            denials: Mutex::new(HashMap::new()),
            stop,
            thread: Mutex::new(Some(thread)),
            metrics,
        }))
    }

    pub fn origin(&self) -> &str {
        self.log.origin()
    }

    /// Re-wraps every run key of the audit log under the root's newest version (the entries
    /// stay as committed; the new wrappings go to `keys/audit-rewrapped.json`) and checks each
    /// still opens to the same key. Returns how many.
    pub fn rewrap_keys(&self) -> anyhow::Result<usize> {
        self.log.flush()?;
        let size = self.log.durable_size();
        const TILE: u64 = tv_tlog::tiles::TILE_WIDTH;
        let ctx = key_context(self.log.origin());
        let mut map = self.rewrapped.lock().expect("rewrapped lock").clone();
        let mut n = 0;
        for b in 0..size.div_ceil(TILE) {
            let entries = self
                .log
                .with_tree(|t| t.bundle(b))
                .with_context(|| format!("audit log bundle {b}"))?;
            for e in &entries {
                let Ok(Entry::Key { wrapped }) = parse_entry(e) else {
                    continue;
                };
                let id = sha256(wrapped);
                let current = map.get(&id).cloned().unwrap_or_else(|| wrapped.to_vec());
                let new = tv_crypto::rewrap_checked(self.root.as_ref(), &ctx, &current)?;
                map.insert(id, new);
                n += 1;
            }
        }
        fsio::write_digest_map(&self.keys_dir.join(REWRAPPED_FILE), &map)?;
        *self.rewrapped.lock().expect("rewrapped lock") = map;
        Ok(n)
    }

    /// Queues a record; returns its index in the audit log.
    pub fn append(&self, mut r: AuditRecord) -> u64 {
        if r.time.is_empty() {
            r.time = rfc3339(r.time_unix_ms);
        }
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut entry = Vec::with_capacity(HEADER + 256);
        entry.extend_from_slice(REC_MAGIC);
        entry.extend_from_slice(&self.key_index.to_be_bytes());
        entry.extend_from_slice(&counter.to_be_bytes());
        let mut body = serde_json::to_vec(&r).expect("record serializes");
        if self.key.seal(counter, &entry[..HEADER], &mut body).is_err() {
            // AES-GCM sealing in memory does not fail; count it if it ever does.
            tracing::error!("sealing an audit record failed");
            return u64::MAX;
        }
        entry.extend_from_slice(&body);
        self.metrics
            .audit_records
            .get_or_create(&crate::metrics::DecisionLabels {
                decision: match r.decision.as_str() {
                    "allow" => "allow",
                    "deny" => "deny",
                    _ => "throttled",
                },
            })
            .inc();
        self.log.push(entry)
    }

    /// A record of `principal`'s request for `tenant`, as the audit log keeps it.
    #[allow(clippy::too_many_arguments)]
    fn record(
        principal: &tv_access::Principal,
        tenant: &tv_model::TenantId,
        peer: Option<&PeerInfo>,
        listener: &str,
        action: &str,
        resource: String,
        status: u16,
        results: Option<u64>,
        reason: Option<String>,
    ) -> AuditRecord {
        let ms = now_ms();
        AuditRecord {
            time: rfc3339(ms),
            time_unix_ms: ms,
            principal: principal.id(),
            name: principal.name.clone(),
            role: principal.role.name().to_string(),
            tenant: tenant.to_string(),
            from: peer.map(|p| p.addr.to_string()).unwrap_or_default(),
            listener: listener.to_string(),
            action: action.to_string(),
            resource,
            decision: match status {
                401 | 403 => "deny",
                429 => "throttled",
                _ => "allow",
            }
            .to_string(),
            status,
            results,
            reason: reason.map(|r| r.chars().take(512).collect()),
            unsampled_before: None,
            principal_tenants: Vec::new(),
        }
    }

    /// A request of an authenticated caller that was answered (refusals go to [`Self::denied`]).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        principal: &tv_access::Principal,
        tenant: &tv_model::TenantId,
        peer: Option<&PeerInfo>,
        listener: &str,
        action: &str,
        resource: String,
        status: u16,
        results: Option<u64>,
        reason: Option<String>,
    ) {
        let rec = Self::record(
            principal, tenant, peer, listener, action, resource, status, results, reason,
        );
        if rec.decision == "allow" {
            self.append(rec);
        } else {
            self.counted(rec, false);
        }
    }

    /// A request of an authenticated principal refused for `tenant` (403, 429, or a tenant
    /// outside its credential). Filed under that tenant; when the principal is not bound to
    /// it, also under each of the principal's own tenants (with everything), while the target
    /// tenant's record names the principal's tenants and an opaque id only. One principal's
    /// refusals are counted per window, not recorded one by one.
    #[allow(clippy::too_many_arguments)]
    pub fn denied(
        &self,
        principal: &tv_access::Principal,
        tenant: &tv_model::TenantId,
        peer: Option<&PeerInfo>,
        listener: &str,
        action: &str,
        resource: String,
        status: u16,
        reason: String,
    ) {
        let mut rec = Self::record(
            principal,
            tenant,
            peer,
            listener,
            action,
            resource,
            status,
            None,
            Some(reason),
        );
        if rec.decision == "allow" {
            // Not a refusal status: still the principal's, counted like one.
            rec.decision = "deny".into();
        }
        let tv_access::TenantScope::Only(own) = &principal.tenants else {
            // A credential of every tenant is bound to this one too.
            return self.counted(rec, false);
        };
        if own.contains(tenant) {
            return self.counted(rec, false);
        }
        // Another tenant's principal: its own tenants see who it was and where it tried...
        for home in own.iter().take(4) {
            let mut r = rec.clone();
            r.tenant = home.to_string();
            r.resource = format!("tenant:{tenant} {}", r.resource)
                .chars()
                .take(512)
                .collect();
            self.counted(r, false);
        }
        // ...the target tenant sees that a principal of another tenant tried, not who.
        let mut r = rec;
        r.principal = format!(
            "foreign:{}",
            &hex::encode(sha256(
                format!("tracevault/v1/foreign|{}", r.principal).as_bytes()
            ))[..16]
        );
        r.name = String::new();
        r.from = String::new();
        r.principal_tenants = own.iter().map(|t| t.to_string()).collect();
        self.counted(r, true);
    }

    /// Appends the first refusal of a window and counts the rest (see [`Denials`]).
    fn counted(&self, rec: AuditRecord, foreign: bool) {
        let key = (
            rec.principal.clone(),
            rec.tenant.clone(),
            format!("{}|{}", rec.action, rec.decision),
            foreign,
        );
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        {
            let mut d = self.denials.lock().expect("denials lock");
            if d.len() >= MAX_DENIAL_KEYS && !d.contains_key(&key) {
                // Write out every finished window to make room.
                d.retain(|_, v| {
                    if now.duration_since(v.started) < DENIAL_WINDOW {
                        return true;
                    }
                    out.extend(v.flush());
                    false
                });
            }
            match d.get_mut(&key) {
                Some(v) if now.duration_since(v.started) < DENIAL_WINDOW => {
                    v.suppressed += 1;
                    v.last = Some(rec);
                    self.metrics.audit_unsampled.inc();
                }
                Some(v) => {
                    out.extend(v.flush());
                    v.started = now;
                    out.push(rec);
                }
                None => {
                    d.insert(
                        key,
                        Denials {
                            started: now,
                            suppressed: 0,
                            last: None,
                        },
                    );
                    out.push(rec);
                }
            }
        }
        for r in out {
            self.append(r);
        }
    }

    /// Writes out the counted refusals (before the log is read, and at shutdown).
    fn flush_denials(&self) {
        let out: Vec<AuditRecord> = {
            let mut d = self.denials.lock().expect("denials lock");
            let out = d.values_mut().filter_map(Denials::flush).collect();
            let now = std::time::Instant::now();
            d.retain(|_, v| now.duration_since(v.started) < DENIAL_WINDOW);
            out
        };
        for r in out {
            self.append(r);
        }
    }

    /// An operation the server did on its own (rotation by age, ...), as principal `system`.
    pub fn system(&self, action: &str, resource: String, tenant: &tv_model::TenantId) {
        let ms = now_ms();
        self.append(AuditRecord {
            time: rfc3339(ms),
            time_unix_ms: ms,
            principal: "system".into(),
            name: "tracevault".into(),
            role: String::new(),
            tenant: tenant.to_string(),
            from: String::new(),
            listener: String::new(),
            action: action.to_string(),
            resource,
            decision: "allow".into(),
            status: 200,
            results: None,
            reason: None,
            unsampled_before: None,
            principal_tenants: Vec::new(),
        });
    }

    /// A refusal before the caller is known (no or bad credentials): counted, and sampled into
    /// the log at a bounded rate.
    pub fn unauthenticated(
        &self,
        peer: Option<&PeerInfo>,
        listener: &str,
        action: &str,
        resource: String,
        status: u16,
        reason: String,
    ) {
        self.metrics.audit_unauthenticated.inc();
        let ms = now_ms();
        self.sampled(AuditRecord {
            time: rfc3339(ms),
            time_unix_ms: ms,
            principal: "anonymous".into(),
            name: String::new(),
            role: String::new(),
            tenant: String::new(),
            from: peer.map(|p| p.addr.to_string()).unwrap_or_default(),
            listener: listener.to_string(),
            action: action.to_string(),
            resource,
            decision: if status == 429 { "throttled" } else { "deny" }.into(),
            status,
            results: None,
            reason: Some(reason.chars().take(512).collect()),
            unsampled_before: None,
            principal_tenants: Vec::new(),
        });
    }

    fn sampled(&self, mut rec: AuditRecord) {
        let skipped = {
            let mut s = self.sampler.lock().expect("sampler lock");
            let now = std::time::Instant::now();
            let dt = now.duration_since(s.last).as_secs_f64();
            s.last = now;
            s.tokens = (s.tokens + dt * SAMPLE_PER_SEC).min(SAMPLE_BURST);
            if s.tokens < 1.0 {
                s.skipped += 1;
                self.metrics.audit_unsampled.inc();
                return;
            }
            s.tokens -= 1.0;
            std::mem::take(&mut s.skipped)
        };
        if skipped > 0 {
            rec.unsampled_before = Some(skipped);
        }
        self.append(rec);
    }

    fn key_at(&self, index: u64) -> Result<Arc<DataKey>, String> {
        if let Some(k) = self.keys.lock().expect("keys lock").get(&index) {
            return Ok(k.clone());
        }
        let entry = self
            .log
            .with_tree(|t| t.entry(index))
            .map_err(|e| format!("audit key entry {index}: {e}"))?;
        let Entry::Key { wrapped } = parse_entry(&entry)? else {
            return Err(format!("audit entry {index} is not a key entry"));
        };
        let k = Arc::new(open_key(
            self.root.as_ref(),
            self.log.origin(),
            wrapped,
            &self.rewrapped.lock().expect("rewrapped lock"),
        )?);
        self.keys
            .lock()
            .expect("keys lock")
            .insert(index, k.clone());
        Ok(k)
    }

    /// Records matching `f`, newest first, at most `limit`; also the log's size. Writes what is
    /// queued first, so a request's own record is readable by the next request.
    pub fn read(&self, f: &Filter, limit: usize) -> Result<(Vec<(u64, AuditRecord)>, u64), String> {
        self.flush_denials();
        self.log.flush().map_err(|e| e.to_string())?;
        let size = self.log.durable_size();
        let mut out = Vec::new();
        let mut end = f.before.unwrap_or(size).min(size);
        let lowest = f.after.map_or(0, |a| a.saturating_add(1));
        const TILE: u64 = tv_tlog::tiles::TILE_WIDTH;
        while end > lowest && out.len() < limit {
            let n = (end - 1) / TILE;
            let entries = self
                .log
                .with_tree(|t| t.bundle(n))
                .map_err(|e| format!("audit log bundle {n}: {e}"))?;
            for i in (lowest.max(n * TILE)..end).rev() {
                let e = &entries[(i - n * TILE) as usize];
                if let Entry::Record {
                    key_index,
                    counter,
                    sealed,
                    header,
                } = parse_entry(e).map_err(|x| format!("audit entry {i}: {x}"))?
                {
                    let key = self.key_at(key_index)?;
                    let r = open_record(&key, counter, header, sealed)
                        .map_err(|x| format!("audit entry {i}: {x}"))?;
                    if f.matches(&r) {
                        out.push((i, r));
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
            end = n * TILE;
        }
        Ok((out, size))
    }

    /// Stops the flushing thread after a last flush and checkpoint.
    pub fn shutdown(&self) {
        self.flush_denials();
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().expect("audit stop lock") = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.lock().expect("audit thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Denials {
    /// The last counted refusal, carrying how many others it stands for.
    fn flush(&mut self) -> Option<AuditRecord> {
        let mut r = self.last.take()?;
        let n = std::mem::take(&mut self.suppressed);
        if n > 1 {
            r.unsampled_before = Some(n - 1);
        }
        Some(r)
    }
}
