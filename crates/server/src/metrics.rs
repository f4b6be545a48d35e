//! Prometheus metrics (text exposition format via `prometheus-client`).
//!
//! Labels come from fixed sets (transport, outcome, reject reason, key exchange group), never from
//! request data, so a client cannot blow up cardinality.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub transport: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

/// Redaction counters: the rule (`detector:<name>`, `key:<policy>:<glob>`, `secret_key`,
/// `allowlist`, `sql`, `url_id`; names come from the operator's rules file, not from requests) and
/// the action taken.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedactionLabels {
    pub rule: String,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub spans_accepted: Family<TransportLabels, Counter>,
    pub spans_rejected: Family<ReasonLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<TransportLabels, Histogram>,
    /// CPU time of each ingest stage of a request, on the request's thread (see [`StageClock`]).
    pub ingest_stage_cpu: Family<StageLabels, Histogram>,
    pub query_duration: Family<EndpointLabels, Histogram>,
    pub wal_fsync: Histogram,
    pub wal_bytes: Counter,
    pub blocks_sealed: Counter,
    pub block_bytes: Counter,
    pub spans_sealed: Counter,
    pub blocks_compacted: Counter,
    pub compactions: Counter,
    pub tls_handshakes: Family<GroupLabels, Counter>,
    pub tls_handshake_failures: Counter,
    pub stored_blocks: Gauge,
    pub head_spans: Gauge,
    pub witness_failures: Counter,
    pub log_size: Gauge,
    pub redactions: Family<RedactionLabels, Counter>,
    pub redaction_reloads: Family<ResultLabels, Counter>,
    pub rate_limited: Family<KindLabels, Counter>,
    pub audit_records: Family<DecisionLabels, Counter>,
    pub audit_unauthenticated: Counter,
    pub audit_unsampled: Counter,
    pub kms_up: Gauge,
    pub findings: Family<FindingLabels, Counter>,
    pub detection_dropped_spans: Counter,
    pub sink_deliveries: Family<SinkLabels, Counter>,
    pub detection_baseline_bytes: Gauge,
    pub connections_open: Gauge,
    pub connections_closed: Family<ReasonLabels, Counter>,
    pub connections_refused: Counter,
    pub responses_refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// `kind#index` of the configured sink.
    pub sink: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub stage: &'static str,
    pub severity: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The CPU time one request spends in each ingest stage (issue 22): laps of the calling thread's
/// CPU clock, summed per stage and observed once per stage when the clock is dropped (so a stage
/// entered twice is one observation). An await may resume on another thread: call
/// [`StageClock::resume`] after one.
pub struct StageClock<'m> {
    metrics: &'m Metrics,
    last: Duration,
    laps: Vec<(&'static str, Duration)>,
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

impl<'m> StageClock<'m> {
    pub fn start(metrics: &'m Metrics) -> Self {
        Self {
            metrics,
            last: thread_cpu(),
            laps: Vec::with_capacity(8),
        }
    }

    /// Counts the CPU time since the last lap (or the start, or [`Self::resume`]) to `stage`.
    pub fn lap(&mut self, stage: &'static str) {
        let now = thread_cpu();
        let spent = now.saturating_sub(self.last);
        self.last = now;
        match self.laps.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, d)) => *d += spent,
            None => self.laps.push((stage, spent)),
        }
    }

    /// Starts timing again on the current thread (after an await), counting nothing since.
    pub fn resume(&mut self) {
        self.last = thread_cpu();
    }
}

impl Drop for StageClock<'_> {
    fn drop(&mut self) {
        for (stage, spent) in &self.laps {
            self.metrics
                .ingest_stage_cpu
                .get_or_create(&StageLabels { stage })
                .observe(spent.as_secs_f64());
        }
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Metrics {
    pub fn record_findings(&self, findings: &[tv_detect::finding::Finding]) {
        for f in findings {
            self.findings
                .get_or_create(&FindingLabels {
                    stage: match f.stage {
                        tv_detect::finding::Stage::Signature => "signature",
                        tv_detect::finding::Stage::Behavioural => "behavioural",
                    },
                    severity: match f.severity {
                        tv_detect::finding::Severity::Informational => "informational",
                        tv_detect::finding::Severity::Low => "low",
                        tv_detect::finding::Severity::Medium => "medium",
                        tv_detect::finding::Severity::High => "high",
                        tv_detect::finding::Severity::Critical => "critical",
                    },
                })
                .inc();
        }
    }

    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tracevault");
        let m = Self {
            spans_accepted: Family::default(),
            spans_rejected: Family::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            ingest_stage_cpu: Family::new_with_constructor(|| {
                // 2 µs .. ~2 s
                Histogram::new(exponential_buckets(0.000002, 2.0, 20))
            }),
            query_duration: Family::new_with_constructor(latency_histogram),
            // Finer steps than the request histograms: fsync p99 is a headline figure.
            wal_fsync: Histogram::new(exponential_buckets(0.00005, 1.25, 40)),
            wal_bytes: Counter::default(),
            blocks_sealed: Counter::default(),
            block_bytes: Counter::default(),
            spans_sealed: Counter::default(),
            blocks_compacted: Counter::default(),
            compactions: Counter::default(),
            tls_handshakes: Family::default(),
            tls_handshake_failures: Counter::default(),
            stored_blocks: Gauge::default(),
            head_spans: Gauge::default(),
            witness_failures: Counter::default(),
            log_size: Gauge::default(),
            redactions: Family::default(),
            redaction_reloads: Family::default(),
            rate_limited: Family::default(),
            audit_records: Family::default(),
            audit_unauthenticated: Counter::default(),
            audit_unsampled: Counter::default(),
            kms_up: Gauge::default(),
            findings: Family::default(),
            detection_dropped_spans: Counter::default(),
            sink_deliveries: Family::default(),
            detection_baseline_bytes: Gauge::default(),
            connections_open: Gauge::default(),
            connections_closed: Family::default(),
            connections_refused: Counter::default(),
            responses_refused: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "detection_dropped_spans",
            "Spans the behavioural detectors never saw because their queue was full (detection degraded, ingest unaffected)",
            m.detection_dropped_spans.clone(),
        );
        registry.register(
            "sink_deliveries",
            "Findings handed to each sink, by result (delivered, failed after retries, dropped on a full queue)",
            m.sink_deliveries.clone(),
        );
        registry.register(
            "detection_baseline_bytes",
            "Approximate memory of the behavioural detectors' per-tenant state",
            m.detection_baseline_bytes.clone(),
        );
        registry.register(
            "connections_open",
            "Connections holding a slot, over every listener",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the server closed, by reason (handshake_timeout, first_request_timeout, idle, stalled, shed: the oldest unauthenticated connection when every slot was taken)",
            m.connections_closed.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused because every slot was held by an authenticated client",
            m.connections_refused.clone(),
        );
        registry.register(
            "responses_refused",
            "Responses replaced by 503 because their connection or the server held too many unread response bytes",
            m.responses_refused.clone(),
        );
        registry.register(
            "findings",
            "Threat detection findings, by stage and severity",
            m.findings.clone(),
        );
        registry.register(
            "spans_accepted",
            "Spans durably stored and acknowledged",
            m.spans_accepted.clone(),
        );
        registry.register(
            "redactions",
            "Values removed, masked, hashed or truncated at ingest, by rule and action",
            m.redactions.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused over a rate limit (429 / RESOURCE_EXHAUSTED), by what was counted",
            m.rate_limited.clone(),
        );
        registry.register(
            "audit_records",
            "Records appended to the audit log, by decision",
            m.audit_records.clone(),
        );
        registry.register(
            "audit_unauthenticated",
            "Requests refused before authentication (all counted; sampled into the audit log)",
            m.audit_unauthenticated.clone(),
        );
        registry.register(
            "audit_unsampled",
            "Unauthenticated and rate-limited refusals over the sampling rate, not recorded one by one",
            m.audit_unsampled.clone(),
        );
        registry.register(
            "kms_up",
            "1 while the KMS holding the root answers (transit root only), 0 during an outage",
            m.kms_up.clone(),
        );
        registry.register(
            "redaction_reloads",
            "Redaction rule reloads (SIGHUP), by result",
            m.redaction_reloads.clone(),
        );
        registry.register(
            "spans_rejected",
            "Spans refused, by reason",
            m.spans_rejected.clone(),
        );
        registry.register(
            "ingest_requests",
            "Ingest requests by transport and outcome",
            m.requests.clone(),
        );
        registry.register(
            "ingest_request_duration_seconds",
            "Ingest request latency, from decoded request to acknowledgement",
            m.request_duration.clone(),
        );
        registry.register(
            "ingest_stage_cpu_seconds",
            "CPU time per accepted ingest request by stage, on the request's thread: admit (responses, services, authorization, rate limits), validate, inspect (signature rules), redact, encode (findings sealed, batch encoded with its commitments), notify (after the commit: graph, findings, behavioural queue); the WAL writer and sealer threads are not in it",
            m.ingest_stage_cpu.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Query API latency by endpoint",
            m.query_duration.clone(),
        );
        registry.register(
            "wal_fsync_duration_seconds",
            "WAL fdatasync latency (one per group commit)",
            m.wal_fsync.clone(),
        );
        registry.register(
            "wal_bytes_written",
            "Bytes written to the WAL",
            m.wal_bytes.clone(),
        );
        registry.register(
            "blocks_sealed",
            "Blocks sealed from WAL segments",
            m.blocks_sealed.clone(),
        );
        registry.register(
            "compactions",
            "Merged blocks written by compaction",
            m.compactions.clone(),
        );
        registry.register(
            "blocks_compacted",
            "Small blocks replaced by merged blocks",
            m.blocks_compacted.clone(),
        );
        registry.register(
            "block_bytes_written",
            "Bytes written to sealed blocks",
            m.block_bytes.clone(),
        );
        registry.register(
            "spans_sealed",
            "Spans moved from the WAL into blocks",
            m.spans_sealed.clone(),
        );
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes by negotiated key exchange group",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed (including refused TLS 1.2 clients)",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "stored_blocks",
            "Sealed blocks currently stored",
            m.stored_blocks.clone(),
        );
        registry.register(
            "head_spans",
            "Acknowledged spans not yet sealed into blocks",
            m.head_spans.clone(),
        );
        registry.register(
            "witness_failures",
            "Checkpoint submissions a witness refused or did not answer",
            m.witness_failures.clone(),
        );
        registry.register(
            "log_size",
            "Entries in the transparency log's latest signed checkpoint",
            m.log_size.clone(),
        );
        Self { registry, ..m }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a string");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl tv_store::wal::WalObserver for Metrics {
    fn fsync(&self, latency: Duration, _bytes: u64) {
        self.wal_fsync.observe(latency.as_secs_f64());
    }
}

impl tv_store::StoreObserver for Metrics {
    fn block_sealed(&self, spans: u64, bytes: u64) {
        self.blocks_sealed.inc();
        self.block_bytes.inc_by(bytes);
        self.spans_sealed.inc_by(spans);
    }
    fn bytes_written(&self, bytes: u64) {
        self.wal_bytes.inc_by(bytes);
    }
    fn blocks_compacted(&self, blocks: u64, _before: u64, after: u64) {
        self.compactions.inc();
        self.blocks_compacted.inc_by(blocks);
        self.block_bytes.inc_by(after);
    }
}
