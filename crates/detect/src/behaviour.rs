//! Behavioural detectors (issue 7, stage two): per-tenant learned baselines over the committed,
//! redacted span stream, on span **event time** (a replay of recorded traffic or a late batch
//! behaves like the live traffic it was), bounded in memory, with the learned part persistable.
//!
//! | detector | id | signal |
//! |---|---|---|
//! | new service-to-service edge | `tv-behaviour-new-edge` | caller service -> callee service (parent span's service -> child span's service) not seen in the learning window |
//! | latency anomaly | `tv-behaviour-latency` | a window's median duration of a (service, operation) far above its EWMA baseline (log scale; k robust deviations and at least `latency_min_ratio` times), with a minimum volume |
//! | error-rate anomaly | `tv-behaviour-errors` | a window's error share (span status error or HTTP >= 500) above the baseline by a margin, with a minimum volume |
//! | authentication-failure burst | `tv-behaviour-auth-burst` | many 401/403 answers to one client address or user pseudonym within a window |
//! | fan-out | `tv-behaviour-fanout` | one span with unusually many child calls for its (service, operation) |
//! | enumeration | `tv-behaviour-enumeration` | one user pseudonym touching many distinct resources within a window |
//! | span from the future / far past | `tv-integrity-future`, `tv-integrity-past` | start time ahead of the server clock or far behind it |
//! | span id reuse | `tv-integrity-span-reuse` | a (trace, span) id seen again with different content; identical re-sends (client retries) are counted as duplicates, not flagged |
//! | unknown service | `tv-integrity-unknown-service` | a service.name the tenant never sent during learning |
//!
//! Window statistics close when the tenant's watermark (highest event time seen minus
//! `lateness_secs`) passes the window's end; spans for an already closed window count as late.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tv_model::otlp::{ExportTraceServiceRequest, any_value};

use crate::finding::{Evidence, Finding, Severity, Stage};

/// Thresholds (all configurable through the server's `[detection.behaviour]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviourConfig {
    /// Event-time span after a tenant's first span during which edges, services and baselines
    /// are learned without findings.
    pub learning_secs: u64,
    /// Statistics window (event time).
    pub window_secs: u64,
    /// How late a span may arrive and still count in its window.
    pub lateness_secs: u64,
    /// Robust deviations (1.4826 * mean absolute deviation) above the baseline for a latency or
    /// error anomaly.
    pub k: f64,
    /// A latency anomaly is also at least this many times the baseline median.
    pub latency_min_ratio: f64,
    /// Windows in a row above the limit before a latency or error finding (a single slow window
    /// is a blip; an incident lasts).
    pub consecutive_windows: u32,
    /// Spans a window needs before it can raise a latency or error finding.
    pub min_volume: u64,
    /// Windows a baseline needs before it can raise a finding.
    pub min_baseline_windows: u32,
    /// EWMA weight of a new window.
    pub alpha: f64,
    /// An error anomaly is also at least this much above the baseline share.
    pub error_min_increase: f64,
    /// 401/403 answers to one client within `auth_window_secs` that make a burst.
    pub auth_threshold: u64,
    pub auth_window_secs: u64,
    /// Child calls of one span that are a fan-out anomaly at least (and `fanout_factor` times the
    /// baseline mean for the parent's operation, once there is one).
    pub fanout_min: u64,
    pub fanout_factor: f64,
    /// Distinct resources one user pseudonym touches within `enumeration_window_secs`.
    pub enumeration_threshold: u64,
    pub enumeration_window_secs: u64,
    /// Start time ahead of the server clock by more than this is flagged.
    pub future_skew_secs: u64,
    /// Start time behind the server clock by more than this is flagged (once per batch).
    pub past_skew_secs: u64,
    /// Caps on tracked items per tenant (recent spans, operations, clients, users, parents).
    pub max_recent_spans: usize,
    pub max_operations: usize,
    pub max_keys: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            learning_secs: 3600,
            window_secs: 10,
            lateness_secs: 5,
            k: 3.0,
            latency_min_ratio: 2.0,
            consecutive_windows: 2,
            min_volume: 10,
            min_baseline_windows: 3,
            alpha: 0.3,
            error_min_increase: 0.2,
            auth_threshold: 20,
            auth_window_secs: 60,
            fanout_min: 50,
            fanout_factor: 4.0,
            enumeration_threshold: 100,
            enumeration_window_secs: 60,
            future_skew_secs: 120,
            past_skew_secs: 6 * 3600,
            max_recent_spans: 200_000,
            max_operations: 10_000,
            max_keys: 50_000,
        }
    }
}

/// What the detectors need of one span (borrowed from the redacted batch).
#[derive(Clone, Debug)]
pub struct SpanFacts<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub service: &'a str,
    pub name: &'a str,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub error: bool,
    pub http_status: Option<i64>,
    /// Client address (redacted form) on server spans.
    pub client: Option<&'a str>,
    /// User pseudonym (`enduser.id`, `user.id`; redacted form).
    pub user: Option<&'a str>,
    /// The resource a request touched (`url.path`, redacted form).
    pub resource: Option<&'a str>,
    /// Digest of the span's encoding (span-id reuse).
    pub content: u64,
    /// The database statement a client span ran (`db.statement`, `db.query.text`; redacted
    /// form, literals scrubbed).
    pub statement: Option<&'a str>,
}

/// What a statement's shape holds beyond one plain statement: a `UNION` of selects, or more
/// than one statement in one call. Literals and comments are set aside first.
pub const SHAPE_UNION: u8 = 1;
pub const SHAPE_STACKED: u8 = 2;

/// The shape bits of `stmt` ([`SHAPE_UNION`], [`SHAPE_STACKED`]).
pub fn statement_shape(stmt: &str) -> u8 {
    // Most statements have neither a semicolon nor the word: nothing to strip or split.
    if !stmt.contains(';')
        && !stmt
            .as_bytes()
            .windows(5)
            .any(|w| w.eq_ignore_ascii_case(b"union"))
    {
        return 0;
    }
    // Code only: string literals, quoted identifiers and comments removed, statements split
    // on the semicolons left.
    let b = stmt.as_bytes();
    let mut code = String::with_capacity(stmt.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
                code.push(' ');
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
                code.push(' ');
            }
            c => {
                code.push(c.to_ascii_lowercase() as char);
                i += 1;
            }
        }
    }
    let mut shape = 0;
    let words: Vec<&str> = code
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    if words
        .windows(2)
        .any(|w| w[0] == "union" && w[1] == "select")
        || words
            .windows(3)
            .any(|w| w[0] == "union" && matches!(w[1], "all" | "distinct") && w[2] == "select")
    {
        shape |= SHAPE_UNION;
    }
    if code
        .split(';')
        .filter(|part| part.chars().any(|c| c.is_ascii_alphabetic()))
        .count()
        > 1
    {
        shape |= SHAPE_STACKED;
    }
    shape
}

fn str_attr<'a>(attrs: &'a [tv_model::otlp::KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        attrs.iter().find(|kv| kv.key == *k).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    })
}

fn int_attr(attrs: &[tv_model::otlp::KeyValue], keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| {
        attrs.iter().find(|kv| kv.key == *k).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::IntValue(i) => Some(*i),
                any_value::Value::StringValue(s) => s.parse().ok(),
                _ => None,
            }
        })
    })
}

/// The facts of every span of a batch (spans without valid ids are skipped).
pub fn facts(req: &ExportTraceServiceRequest) -> Vec<SpanFacts<'_>> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = tv_model::service_name(rs.resource.as_ref()).unwrap_or("");
        if service == crate::FINDINGS_SERVICE {
            continue;
        }
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let (Ok(trace_id), Ok(span_id)) = (
                    <[u8; 16]>::try_from(s.trace_id.as_slice()),
                    <[u8; 8]>::try_from(s.span_id.as_slice()),
                ) else {
                    continue;
                };
                let http_status = int_attr(
                    &s.attributes,
                    &["http.response.status_code", "http.status_code"],
                );
                let status_error = s.status.as_ref().is_some_and(|st| st.code == 2);
                out.push(SpanFacts {
                    trace_id,
                    span_id,
                    parent: <[u8; 8]>::try_from(s.parent_span_id.as_slice()).ok(),
                    service,
                    name: &s.name,
                    kind: s.kind,
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano.max(s.start_time_unix_nano),
                    error: status_error || http_status.is_some_and(|c| c >= 500),
                    http_status,
                    client: str_attr(
                        &s.attributes,
                        &["client.address", "http.client_ip", "net.sock.peer.addr"],
                    ),
                    user: str_attr(&s.attributes, &["enduser.id", "user.id"]),
                    resource: str_attr(&s.attributes, &["url.path", "http.target"]),
                    content: content_hash(s),
                    statement: str_attr(&s.attributes, &["db.statement", "db.query.text"]),
                });
            }
        }
    }
    out
}

/// A keyed 64-bit hash of everything a span says (ids, name, times, status, attributes, events,
/// links): equal for an identical re-send, different when a reused span id carries other
/// content (the sending service is compared beside it). The key is random per process (the digests are never stored), so a sender cannot
/// craft a different span with the same hash.
fn content_hash(s: &tv_model::otlp::Span) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    use tv_model::otlp::{AnyValue, KeyValue};
    static KEY: std::sync::LazyLock<ahash::RandomState> =
        std::sync::LazyLock::new(ahash::RandomState::new);
    fn value(h: &mut impl Hasher, v: Option<&AnyValue>) {
        match v.and_then(|v| v.value.as_ref()) {
            None => h.write_u8(0),
            Some(any_value::Value::StringValue(x)) => (1u8, x).hash(h),
            Some(any_value::Value::BoolValue(x)) => (2u8, x).hash(h),
            Some(any_value::Value::IntValue(x)) => (3u8, x).hash(h),
            Some(any_value::Value::DoubleValue(x)) => (4u8, x.to_bits()).hash(h),
            Some(any_value::Value::BytesValue(x)) => (5u8, x).hash(h),
            Some(any_value::Value::ArrayValue(a)) => {
                (6u8, a.values.len()).hash(h);
                a.values.iter().for_each(|v| value(h, Some(v)));
            }
            Some(any_value::Value::KvlistValue(kv)) => {
                h.write_u8(7);
                attrs(h, &kv.values);
            }
            Some(any_value::Value::StringValueStrindex(i)) => (8u8, i).hash(h),
        }
    }
    fn attrs(h: &mut impl Hasher, kvs: &[KeyValue]) {
        kvs.len().hash(h);
        for kv in kvs {
            (&kv.key, kv.key_strindex).hash(h);
            value(h, kv.value.as_ref());
        }
    }
    let mut h = KEY.build_hasher();
    (&s.trace_id, &s.span_id, &s.parent_span_id, &s.trace_state).hash(&mut h);
    (
        &s.name,
        s.kind,
        s.flags,
        s.start_time_unix_nano,
        s.end_time_unix_nano,
    )
        .hash(&mut h);
    attrs(&mut h, &s.attributes);
    s.dropped_attributes_count.hash(&mut h);
    s.events.len().hash(&mut h);
    for e in &s.events {
        (&e.name, e.time_unix_nano, e.dropped_attributes_count).hash(&mut h);
        attrs(&mut h, &e.attributes);
    }
    (s.dropped_events_count, s.links.len()).hash(&mut h);
    for l in &s.links {
        (&l.trace_id, &l.span_id, &l.trace_state, l.flags).hash(&mut h);
        l.dropped_attributes_count.hash(&mut h);
        attrs(&mut h, &l.attributes);
    }
    s.dropped_links_count.hash(&mut h);
    s.status
        .as_ref()
        .map(|st| (st.code, &st.message))
        .hash(&mut h);
    h.finish()
}

/// A robust streaming baseline: EWMA of a value and of its absolute deviation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Ewma {
    pub mean: f64,
    pub dev: f64,
    pub n: u32,
}

impl Ewma {
    fn update(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x;
            self.dev = 0.0;
        } else {
            let d = (x - self.mean).abs();
            self.mean += alpha * (x - self.mean);
            self.dev += alpha * (d - self.dev);
        }
        self.n = self.n.saturating_add(1);
    }
    fn spread(&self) -> f64 {
        1.4826 * self.dev
    }
}

/// Learned, persistable part of a tenant's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Learned {
    /// Event time of the tenant's first span (start of learning).
    pub first_seen: u64,
    pub services: HashSet<String>,
    /// caller -> callees.
    pub edges: BTreeMap<String, HashSet<String>>,
    /// (service, operation) -> log-latency baseline (ms).
    pub latency: HashMap<String, Ewma>,
    /// (service, operation) -> error-share baseline.
    pub errors: HashMap<String, Ewma>,
    /// (service, operation) of a parent -> child-count baseline.
    pub fanout: HashMap<String, Ewma>,
    /// Highest event time seen.
    pub max_event: u64,
    /// service -> the statement shapes ([`statement_shape`]) its database calls had while
    /// learning.
    #[serde(default)]
    pub statement_shapes: HashMap<String, u8>,
}

impl Learned {
    /// Takes in what another node learned for the same tenant (a cluster): the earlier learning
    /// start, every service, edge and statement shape either saw, and per (service, operation)
    /// the baseline built from more windows. Merging the same state again changes nothing, so
    /// nodes can merge each other's merged states without counting anything twice. `max_keys`
    /// caps what is added, as learning does.
    pub fn merge(&mut self, other: &Learned, max_keys: usize) {
        if other.first_seen != 0 && (self.first_seen == 0 || other.first_seen < self.first_seen) {
            self.first_seen = other.first_seen;
        }
        self.max_event = self.max_event.max(other.max_event);
        for s in &other.services {
            if self.services.len() >= max_keys {
                break;
            }
            if !self.services.contains(s) {
                self.services.insert(s.clone());
            }
        }
        let mut total: usize = self.edges.values().map(HashSet::len).sum();
        for (caller, callees) in &other.edges {
            for c in callees {
                if total >= max_keys {
                    break;
                }
                if self
                    .edges
                    .entry(caller.clone())
                    .or_default()
                    .insert(c.clone())
                {
                    total += 1;
                }
            }
        }
        for (service, shape) in &other.statement_shapes {
            if self.statement_shapes.contains_key(service) || self.statement_shapes.len() < max_keys
            {
                *self.statement_shapes.entry(service.clone()).or_default() |= *shape;
            }
        }
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.errors, &other.errors),
            (&mut self.fanout, &other.fanout),
        ] {
            for (k, e) in theirs {
                let room = mine.len() < max_keys;
                match mine.get_mut(k) {
                    Some(m) if m.n >= e.n => {}
                    Some(m) => *m = e.clone(),
                    None if room => {
                        mine.insert(k.clone(), e.clone());
                    }
                    None => {}
                }
            }
        }
    }
}

#[derive(Default)]
struct Window {
    durations_ms: Vec<f64>,
    count: u64,
    errors: u64,
    slowest: Option<([u8; 16], [u8; 8], f64)>,
    error_example: Option<([u8; 16], [u8; 8])>,
}

/// Sliding per-key counter of recent event times.
#[derive(Default)]
struct Recent {
    times: VecDeque<u64>,
    flagged_until: u64,
}

#[derive(Default)]
struct Parent {
    children: u64,
    op: Option<String>,
    ids: Option<([u8; 16], [u8; 8])>,
    first: u64,
    flagged: bool,
}

#[derive(Default)]
struct Distinct {
    seen: HashSet<u64>,
    window_start: u64,
    flagged: bool,
}

/// (trace id, span id).
type SpanKey = ([u8; 16], [u8; 8]);
/// A recent span: content digest, service, operation key.
type RecentSpan = (u64, Arc<str>, Arc<str>);

/// A tenant's state: the learned part and bounded transient maps.
#[derive(Default)]
pub struct TenantState {
    pub learned: Learned,
    /// (service|operation, window start) -> statistics.
    windows: BTreeMap<(u64, String), Window>,
    /// Recent spans: (trace, span) -> (content digest, service, operation key); the last
    /// `max_recent_spans / 2` to `max_recent_spans` of them.
    recent: crate::recent::Recent<SpanKey, RecentSpan>,
    /// Interned service names and operation keys (bounded).
    names: HashSet<Arc<str>>,
    /// Children seen before their parent: parent id -> child services.
    orphans: HashMap<[u8; 8], (u64, Vec<String>), ahash::RandomState>,
    parents: HashMap<[u8; 8], Parent, ahash::RandomState>,
    auth: HashMap<String, Recent>,
    users: HashMap<String, Distinct>,
    /// Anomalous windows in a row per service|operation: [latency, errors].
    streak: HashMap<String, [u32; 2]>,
    /// Findings already raised for a (detector, key): no repeats.
    raised: HashSet<String>,
    pub duplicates: u64,
    pub late_spans: u64,
    /// Watermark at the last eviction (evictions run once per window of event time).
    evicted_at: u64,
}

/// Approximate bytes of a tenant's state (for the memory figure and metrics).
impl TenantState {
    pub fn approx_bytes(&self) -> usize {
        let l = &self.learned;
        let ops = (l.latency.len() + l.errors.len() + l.fanout.len()) * (64 + 24);
        let edges: usize = l.edges.values().map(|c| 48 + c.len() * 40).sum();
        ops + edges
            + l.services.len() * 40
            + self.recent.len() * 96
            + self.names.iter().map(|n| 40 + n.len()).sum::<usize>()
            + self.parents.len() * 96
            + self.windows.len() * 96
            + self
                .windows
                .values()
                .map(|w| w.durations_ms.len() * 8)
                .sum::<usize>()
            + self.auth.len() * 96
            + self.users.len() * 128
    }

    pub fn from_learned(learned: Learned) -> Self {
        TenantState {
            learned,
            ..Default::default()
        }
    }
}

const MAX_WINDOW_SAMPLES: usize = 512;
const NS: u64 = 1_000_000_000;

fn op_key(service: &str, op: &str) -> String {
    format!("{service}\u{1f}{op}")
}

fn split_key(k: &str) -> (&str, &str) {
    k.split_once('\u{1f}').unwrap_or((k, ""))
}

/// Inputs about the batch as a whole.
#[derive(Clone, Copy, Debug)]
pub struct BatchInfo<'a> {
    pub tenant: &'a str,
    pub principal: Option<&'a str>,
    /// Server clock when the batch arrived.
    pub received_unix_nano: u64,
}

struct Out<'a> {
    info: BatchInfo<'a>,
    findings: Vec<Finding>,
}

impl Out<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: &str,
        title: &str,
        severity: Severity,
        class: &str,
        time: u64,
        ids: Option<([u8; 16], [u8; 8])>,
        service: &str,
        operation: &str,
        principal: Option<&str>,
        evidence: Vec<(&str, String)>,
        message: String,
    ) {
        let (trace_id, span_id) = ids
            .map(|(t, s)| (hex::encode(t), hex::encode(s)))
            .unwrap_or_default();
        let mut f = Finding {
            uid: String::new(),
            group: crate::group_key(
                self.info.tenant,
                id,
                service,
                operation,
                principal.unwrap_or(""),
            ),
            stage: Stage::Behavioural,
            analytic_uid: id.to_owned(),
            title: title.to_owned(),
            severity,
            classes: vec![class.to_owned()],
            attacks: Vec::new(),
            tenant: self.info.tenant.to_owned(),
            time_unix_nano: time,
            detected_unix_nano: self.info.received_unix_nano,
            trace_id,
            span_id,
            service: service.to_owned(),
            operation: operation.to_owned(),
            principal: principal.map(str::to_owned),
            evidence: evidence
                .into_iter()
                .map(|(field, value)| Evidence {
                    field: field.to_owned(),
                    selection: None,
                    matcher: Some("threshold".into()),
                    pattern: None,
                    value: Some(value),
                    value_len: None,
                })
                .collect(),
            tags: Vec::new(),
            count: 1,
            message,
        };
        f.uid = crate::digest_hex(&[
            f.tenant.as_bytes(),
            id.as_bytes(),
            f.group.as_bytes(),
            &time.to_be_bytes(),
            f.trace_id.as_bytes(),
            f.span_id.as_bytes(),
        ]);
        self.findings.push(f);
    }
}

impl TenantState {
    fn learning(&self, cfg: &BehaviourConfig, t: u64) -> bool {
        t < self
            .learned
            .first_seen
            .saturating_add(cfg.learning_secs.saturating_mul(NS))
    }

    /// Observe one committed batch; returns the findings it completes.
    pub fn observe(
        &mut self,
        cfg: &BehaviourConfig,
        info: BatchInfo<'_>,
        spans: &[SpanFacts<'_>],
    ) -> Vec<Finding> {
        let mut out = Out {
            info,
            findings: Vec::new(),
        };
        if spans.is_empty() {
            return out.findings;
        }
        if self.learned.first_seen == 0 {
            self.learned.first_seen = spans.iter().map(|s| s.start).min().unwrap_or(0);
        }
        let win = cfg.window_secs.max(1) * NS;
        let watermark_before = self
            .learned
            .max_event
            .saturating_sub(cfg.lateness_secs * NS);
        let (mut future, mut past) = (0u64, 0u64);
        let mut future_example = None;
        let mut past_example = None;
        for s in spans {
            // Integrity: clock.
            if s.start > info.received_unix_nano + cfg.future_skew_secs * NS {
                future += 1;
                future_example.get_or_insert((s.trace_id, s.span_id, s.service));
            } else if s.start + cfg.past_skew_secs * NS < info.received_unix_nano {
                past += 1;
                past_example.get_or_insert((s.trace_id, s.span_id, s.service));
            }
            // Integrity: span id reuse.
            let key = (s.trace_id, s.span_id);
            match self.recent.get(&key) {
                Some((c, svc, _)) if *c == s.content && **svc == *s.service => {
                    self.duplicates += 1;
                    continue;
                }
                Some(_) => {
                    let raised = format!(
                        "reuse:{}:{}",
                        hex::encode(s.trace_id),
                        hex::encode(s.span_id)
                    );
                    if self.raised.insert(raised) {
                        out.push(
                            "tv-integrity-span-reuse",
                            "Span id reused with different content",
                            Severity::High,
                            "integrity",
                            s.start,
                            Some((s.trace_id, s.span_id)),
                            s.service,
                            s.name,
                            info.principal,
                            vec![],
                            format!(
                                "span {} of trace {} was sent again with different content by the same tenant (a client retry re-sends identical spans)",
                                hex::encode(s.span_id),
                                hex::encode(s.trace_id)
                            ),
                        );
                    }
                    continue;
                }
                None => {}
            }
            self.remember(cfg, s);
            let learning = self.learning(cfg, s.start);
            self.learned.max_event = self.learned.max_event.max(s.end);
            // Unknown service.
            if !self.learned.services.contains(s.service) {
                if !learning && self.learned.services.len() < cfg.max_keys {
                    out.push(
                        "tv-integrity-unknown-service",
                        "Spans for a service unknown to the tenant",
                        Severity::Medium,
                        "integrity",
                        s.start,
                        Some((s.trace_id, s.span_id)),
                        s.service,
                        s.name,
                        info.principal,
                        vec![],
                        format!(
                            "service '{}' sent spans for the first time after the learning window",
                            s.service
                        ),
                    );
                }
                if self.learned.services.len() < cfg.max_keys {
                    self.learned.services.insert(s.service.to_owned());
                }
            }
            // Edges: parent's service -> this span's service.
            if let Some(p) = s.parent {
                match self.recent_service(s.trace_id, p) {
                    Some(caller) => self.edge(cfg, &mut out, &caller.clone(), s, learning),
                    None => {
                        if self.orphans.len() < cfg.max_keys {
                            let e = self.orphans.entry(p).or_insert((s.start, Vec::new()));
                            if e.1.len() < 64 {
                                e.1.push(s.service.to_owned());
                            }
                        }
                    }
                }
                self.child(cfg, &mut out, p, s, learning);
            }
            if let Some((_, children)) = self.orphans.remove(&s.span_id) {
                for c in &children {
                    let child = SpanFacts {
                        service: c,
                        ..s.clone()
                    };
                    self.edge(cfg, &mut out, s.service, &child, learning);
                }
            }
            // Children that arrived before this span: their parent's operation is now known.
            let pk = op_key(s.service, s.name);
            if let Some(parent) = self.parents.get_mut(&s.span_id) {
                parent.op = Some(pk.clone());
                parent.ids = Some((s.trace_id, s.span_id));
                self.check_fanout(cfg, &mut out, s.span_id, learning);
            }
            // Window statistics.
            let ws = s.start / win * win;
            if ws + win <= watermark_before {
                self.late_spans += 1;
            } else if self.windows.len() < cfg.max_operations * 4
                || self.windows.contains_key(&(ws, pk.clone()))
            {
                let w = self.windows.entry((ws, pk)).or_default();
                let ms = (s.end - s.start) as f64 / 1e6;
                w.count += 1;
                if w.durations_ms.len() < MAX_WINDOW_SAMPLES {
                    w.durations_ms.push(ms);
                }
                if w.slowest.is_none_or(|(_, _, d)| ms > d) {
                    w.slowest = Some((s.trace_id, s.span_id, ms));
                }
                if s.error {
                    w.errors += 1;
                    w.error_example.get_or_insert((s.trace_id, s.span_id));
                }
            }
            // Authentication failures.
            if matches!(s.http_status, Some(401 | 403)) && s.kind != 3 {
                let who = s
                    .client
                    .map(|c| ("client", c))
                    .or(s.user.map(|u| ("user", u)));
                if let Some((what, key)) = who {
                    self.auth_failure(cfg, &mut out, what, key, s, learning);
                }
            }
            // Enumeration.
            if let (Some(u), Some(r)) = (s.user, s.resource) {
                self.touch(cfg, &mut out, u, r, s, learning);
            }
            // Statement shapes the service never issued.
            if let Some(stmt) = s.statement {
                self.statement(cfg, &mut out, stmt, s, learning);
            }
        }
        let clock = [
            (
                future,
                future_example,
                "tv-integrity-future",
                "Spans timestamped ahead of the server clock",
                Severity::Medium,
                format!(
                    "start more than {} s after the server's clock",
                    cfg.future_skew_secs
                ),
            ),
            (
                past,
                past_example,
                "tv-integrity-past",
                "Spans timestamped far behind the server clock",
                Severity::Low,
                format!(
                    "start more than {} s before the server's clock (a replay or a stuck exporter)",
                    cfg.past_skew_secs
                ),
            ),
        ];
        for (n, example, id, title, severity, what) in clock {
            if let Some((t, sp, svc)) = example.filter(|_| n > 0) {
                out.push(
                    id,
                    title,
                    severity,
                    "integrity",
                    info.received_unix_nano,
                    Some((t, sp)),
                    svc,
                    "",
                    info.principal,
                    vec![("spans", n.to_string())],
                    format!("{n} span(s) of this batch {what}"),
                );
            }
        }
        self.close_windows(cfg, &mut out);
        if self.learned.max_event >= self.evicted_at + cfg.window_secs.max(1) * NS {
            self.evict(cfg);
            self.evicted_at = self.learned.max_event;
        }
        out.findings
    }

    /// A `UNION` or stacked statements from a service whose database calls had no such shape
    /// while learning: what an injection that reached the database looks like once literals
    /// are scrubbed (an application that uses them legitimately taught the baseline so).
    fn statement(
        &mut self,
        cfg: &BehaviourConfig,
        out: &mut Out<'_>,
        stmt: &str,
        s: &SpanFacts<'_>,
        learning: bool,
    ) {
        let shape = statement_shape(stmt);
        if shape == 0 {
            return;
        }
        let known = self.learned.statement_shapes.get(s.service).copied();
        if learning {
            if known.is_some() || self.learned.statement_shapes.len() < cfg.max_keys {
                *self
                    .learned
                    .statement_shapes
                    .entry(s.service.to_owned())
                    .or_default() |= shape;
            }
            return;
        }
        let new = shape & !known.unwrap_or(0);
        if new == 0 || !self.raised.insert(format!("stmt:{}:{new}", s.service)) {
            return;
        }
        let what = match (new & SHAPE_UNION != 0, new & SHAPE_STACKED != 0) {
            (true, true) => "a UNION and stacked statements",
            (true, false) => "a UNION of selects",
            _ => "stacked statements",
        };
        let mut shown = stmt.to_owned();
        if shown.len() > 512 {
            let mut cut = 512;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
        }
        out.push(
            "tv-db-statement-shape",
            "Database statement of a shape the service never issued",
            Severity::High,
            "sqli",
            s.start,
            Some((s.trace_id, s.span_id)),
            s.service,
            s.name,
            out.info.principal,
            vec![("db.statement", shown)],
            format!(
                "service '{}' ran {what} in one database call; its statements had no such shape while the baseline was learned",
                s.service
            ),
        );
    }

    fn intern(&mut self, cfg: &BehaviourConfig, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        if self.names.len() < cfg.max_operations * 2 {
            self.names.insert(n.clone());
        }
        n
    }

    fn remember(&mut self, cfg: &BehaviourConfig, s: &SpanFacts<'_>) {
        let service = self.intern(cfg, s.service);
        let op = self.intern(cfg, &op_key(s.service, s.name));
        self.recent.insert(
            (s.trace_id, s.span_id),
            (s.content, service, op),
            cfg.max_recent_spans,
        );
    }

    fn recent_service(&self, trace: [u8; 16], span: [u8; 8]) -> Option<Arc<str>> {
        self.recent.get(&(trace, span)).map(|(_, s, _)| s.clone())
    }

    fn edge(
        &mut self,
        cfg: &BehaviourConfig,
        out: &mut Out<'_>,
        caller: &str,
        s: &SpanFacts<'_>,
        learning: bool,
    ) {
        if caller == s.service {
            return;
        }
        let known = self
            .learned
            .edges
            .get(caller)
            .is_some_and(|c| c.contains(s.service));
        if known {
            return;
        }
        if !learning {
            out.push(
                "tv-behaviour-new-edge",
                "New service-to-service call",
                Severity::Medium,
                "new_edge",
                s.start,
                Some((s.trace_id, s.span_id)),
                s.service,
                s.name,
                None,
                vec![
                    ("caller", caller.to_owned()),
                    ("callee", s.service.to_owned()),
                ],
                format!(
                    "'{caller}' called '{}' ({}); this edge was not seen during learning",
                    s.service, s.name
                ),
            );
        }
        let total: usize = self.learned.edges.values().map(HashSet::len).sum();
        if total < cfg.max_keys {
            self.learned
                .edges
                .entry(caller.to_owned())
                .or_default()
                .insert(s.service.to_owned());
        }
    }

    fn child(
        &mut self,
        cfg: &BehaviourConfig,
        out: &mut Out<'_>,
        parent: [u8; 8],
        s: &SpanFacts<'_>,
        learning: bool,
    ) {
        if !self.parents.contains_key(&parent) {
            if self.parents.len() >= cfg.max_keys {
                return;
            }
            // The parent's operation, if the parent span has been seen.
            let op = self
                .recent
                .get(&(s.trace_id, parent))
                .map(|(_, _, op)| op.to_string());
            self.parents.insert(
                parent,
                Parent {
                    first: s.start,
                    ids: op.as_ref().map(|_| (s.trace_id, parent)),
                    op,
                    ..Default::default()
                },
            );
        }
        let p = self.parents.get_mut(&parent).expect("inserted above");
        p.children += 1;
        if p.ids.is_none() {
            p.ids = Some((s.trace_id, parent));
        }
        self.check_fanout(cfg, out, parent, learning);
    }

    fn check_fanout(
        &mut self,
        cfg: &BehaviourConfig,
        out: &mut Out<'_>,
        parent: [u8; 8],
        learning: bool,
    ) {
        let Some(p) = self.parents.get(&parent) else {
            return;
        };
        if p.flagged || learning || p.children < cfg.fanout_min {
            return;
        }
        let Some(op) = p.op.clone() else { return };
        let base = self.learned.fanout.get(&op);
        let limit = match base {
            Some(b) if b.n >= cfg.min_baseline_windows => (b.mean * cfg.fanout_factor)
                .max(b.mean + cfg.k * b.spread())
                .max(cfg.fanout_min as f64),
            _ => cfg.fanout_min as f64,
        };
        if (p.children as f64) < limit {
            return;
        }
        let (children, ids, first) = (p.children, p.ids, p.first);
        if let Some(p) = self.parents.get_mut(&parent) {
            p.flagged = true;
        }
        let (svc, name) = split_key(&op);
        out.push(
            "tv-behaviour-fanout",
            "Request with unusually many downstream calls",
            Severity::Medium,
            "fanout",
            first,
            ids,
            svc,
            name,
            None,
            vec![
                ("children", children.to_string()),
                (
                    "baseline_mean",
                    base.map(|b| format!("{:.1}", b.mean)).unwrap_or_default(),
                ),
            ],
            format!("one '{name}' span of '{svc}' made {children} child calls (limit {limit:.0})"),
        );
    }

    fn auth_failure(
        &mut self,
        cfg: &BehaviourConfig,
        out: &mut Out<'_>,
        what: &str,
        key: &str,
        s: &SpanFacts<'_>,
        learning: bool,
    ) {
        if !self.auth.contains_key(key) && self.auth.len() >= cfg.max_keys {
            return;
        }
        let r = self.auth.entry(key.to_owned()).or_default();
        let w = cfg.auth_window_secs * NS;
        r.times.push_back(s.start);
        while r.times.front().is_some_and(|t| *t + w < s.start) {
            r.times.pop_front();
        }
        while r.times.len() as u64 > cfg.auth_threshold * 4 {
            r.times.pop_front();
        }
        let n = r.times.len() as u64;
        if n >= cfg.auth_threshold && s.start >= r.flagged_until && !learning {
            r.flagged_until = s.start + w;
            out.push(
                "tv-behaviour-auth-burst",
                "Burst of authentication failures",
                Severity::High,
                "auth_burst",
                s.start,
                Some((s.trace_id, s.span_id)),
                s.service,
                s.name,
                None,
                vec![(what, key.to_owned()), ("failures", n.to_string())],
                format!(
                    "{n} responses 401/403 to one {what} within {} s",
                    cfg.auth_window_secs
                ),
            );
        }
    }

    fn touch(
        &mut self,
        cfg: &BehaviourConfig,
        out: &mut Out<'_>,
        user: &str,
        resource: &str,
        s: &SpanFacts<'_>,
        learning: bool,
    ) {
        if !self.users.contains_key(user) && self.users.len() >= cfg.max_keys {
            return;
        }
        let w = cfg.enumeration_window_secs * NS;
        let d = self.users.entry(user.to_owned()).or_default();
        if s.start >= d.window_start + w {
            d.window_start = s.start;
            d.seen.clear();
            d.flagged = false;
        }
        if (d.seen.len() as u64) <= cfg.enumeration_threshold {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            resource.hash(&mut h);
            d.seen.insert(h.finish());
        }
        if d.seen.len() as u64 > cfg.enumeration_threshold && !d.flagged && !learning {
            d.flagged = true;
            let n = d.seen.len();
            out.push(
                "tv-behaviour-enumeration",
                "One user touching unusually many distinct resources",
                Severity::Medium,
                "enumeration",
                s.start,
                Some((s.trace_id, s.span_id)),
                s.service,
                s.name,
                None,
                vec![
                    ("user", user.to_owned()),
                    ("distinct_resources", n.to_string()),
                ],
                format!(
                    "one user pseudonym touched more than {} distinct resources within {} s",
                    cfg.enumeration_threshold, cfg.enumeration_window_secs
                ),
            );
        }
    }

    fn close_windows(&mut self, cfg: &BehaviourConfig, out: &mut Out<'_>) {
        let win = cfg.window_secs.max(1) * NS;
        let watermark = self
            .learned
            .max_event
            .saturating_sub(cfg.lateness_secs * NS);
        let closed: Vec<(u64, String)> = self
            .windows
            .keys()
            .take_while(|(ws, _)| ws + win <= watermark)
            .cloned()
            .collect();
        for key in closed {
            let Some(mut w) = self.windows.remove(&key) else {
                continue;
            };
            let (ws, op) = key;
            let learning = self.learning(cfg, ws);
            let (svc, name) = split_key(&op);
            let streaks = self.streak.entry(op.clone()).or_default();
            // Latency (log scale of the window median).
            if !w.durations_ms.is_empty() {
                w.durations_ms.sort_by(|a, b| a.total_cmp(b));
                let median = w.durations_ms[w.durations_ms.len() / 2];
                let x = median.max(0.001).ln();
                let floor = cfg.latency_min_ratio.ln();
                let latency = &mut self.learned.latency;
                if let Some(base) = judge(
                    cfg,
                    latency,
                    &mut streaks[0],
                    &op,
                    x,
                    floor,
                    learning,
                    w.count,
                ) {
                    out.push(
                        "tv-behaviour-latency",
                        "Latency anomaly",
                        Severity::Medium,
                        "latency",
                        ws,
                        w.slowest.map(|(t, s, _)| (t, s)),
                        svc,
                        name,
                        None,
                        vec![
                            ("window_median_ms", format!("{median:.1}")),
                            ("baseline_median_ms", format!("{:.1}", base.mean.exp())),
                            ("spans", w.count.to_string()),
                        ],
                        format!(
                            "'{name}' of '{svc}': median {median:.1} ms in a {} s window, baseline {:.1} ms",
                            cfg.window_secs,
                            base.mean.exp()
                        ),
                    );
                }
            }
            // Errors.
            let rate = w.errors as f64 / w.count.max(1) as f64;
            let floor = cfg.error_min_increase;
            let errors = &mut self.learned.errors;
            if let Some(base) = judge(
                cfg,
                errors,
                &mut streaks[1],
                &op,
                rate,
                floor,
                learning,
                w.count,
            ) {
                out.push(
                    "tv-behaviour-errors",
                    "Error-rate anomaly",
                    Severity::Medium,
                    "errors",
                    ws,
                    w.error_example,
                    svc,
                    name,
                    None,
                    vec![
                        ("window_error_share", format!("{rate:.3}")),
                        ("baseline_error_share", format!("{:.3}", base.mean)),
                        ("spans", w.count.to_string()),
                    ],
                    format!(
                        "'{name}' of '{svc}': {:.1}% errors in a {} s window, baseline {:.1}%",
                        100.0 * rate,
                        cfg.window_secs,
                        100.0 * base.mean
                    ),
                );
            }
        }
    }

    /// Drops transient state older than the watermark allows; completed parents teach the
    /// fan-out baseline on the way out.
    fn evict(&mut self, cfg: &BehaviourConfig) {
        let horizon = self
            .learned
            .max_event
            .saturating_sub((cfg.lateness_secs + 2 * cfg.window_secs.max(1) + 60) * NS);
        let done: Vec<[u8; 8]> = self
            .parents
            .iter()
            .filter(|(_, p)| p.first < horizon)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some(p) = self.parents.remove(&k)
                && let Some(op) = p.op
                && p.children > 0
                && !p.flagged
                && (self.learned.fanout.contains_key(&op)
                    || self.learned.fanout.len() < cfg.max_operations)
            {
                self.learned
                    .fanout
                    .entry(op)
                    .or_default()
                    .update(p.children as f64, cfg.alpha);
            }
        }
        self.orphans.retain(|_, (t, _)| *t >= horizon);
        let auth_horizon = self
            .learned
            .max_event
            .saturating_sub(cfg.auth_window_secs * NS * 2);
        self.auth
            .retain(|_, r| r.times.back().is_some_and(|t| *t >= auth_horizon));
        let user_horizon = self
            .learned
            .max_event
            .saturating_sub(cfg.enumeration_window_secs * NS * 2);
        self.users.retain(|_, d| d.window_start >= user_horizon);
        if self.raised.len() > cfg.max_keys {
            self.raised.clear();
        }
    }
}

/// Judges one window's value `x` against the operation's baseline. Anomalous: at least
/// `min_baseline_windows` learned, `min_volume` spans, and above the mean by `k` robust deviations
/// and by `floor`. Returns the baseline when the window completes a run of `consecutive_windows`
/// anomalous ones (a finding); the baseline learns the value unless it was anomalous (a long
/// incident must not become normal within minutes) or thin (a partial first window, a trickle).
#[allow(clippy::too_many_arguments)]
fn judge(
    cfg: &BehaviourConfig,
    baselines: &mut HashMap<String, Ewma>,
    streak: &mut u32,
    op: &str,
    x: f64,
    floor: f64,
    learning: bool,
    count: u64,
) -> Option<Ewma> {
    let base = baselines.get(op).cloned().unwrap_or_default();
    let anomalous = !learning
        && base.n >= cfg.min_baseline_windows
        && count >= cfg.min_volume
        && x - base.mean > (cfg.k * base.spread()).max(floor);
    *streak = if anomalous { *streak + 1 } else { 0 };
    if !anomalous
        && count >= cfg.min_volume
        && (baselines.contains_key(op) || baselines.len() < cfg.max_operations)
    {
        baselines
            .entry(op.to_owned())
            .or_default()
            .update(x, cfg.alpha);
    }
    (anomalous && *streak == cfg.consecutive_windows.max(1)).then_some(base)
}

/// Per-tenant states.
#[derive(Default)]
pub struct Behaviour {
    pub config: BehaviourConfig,
    pub tenants: HashMap<String, TenantState>,
}

impl Behaviour {
    pub fn new(config: BehaviourConfig) -> Self {
        Behaviour {
            config,
            tenants: HashMap::new(),
        }
    }

    pub fn observe(&mut self, info: BatchInfo<'_>, spans: &[SpanFacts<'_>]) -> Vec<Finding> {
        let cfg = self.config.clone();
        self.tenants
            .entry(info.tenant.to_owned())
            .or_default()
            .observe(&cfg, info, spans)
    }
}
