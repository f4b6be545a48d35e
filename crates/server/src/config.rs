//! Server configuration: a raw, versioned TOML/flags layer and the validated [`ServeConfig`].
//!
//! Sources, later ones winning: built-in secure defaults, `DIR/config.toml` when present, the file
//! named by `--config`, then command-line flags. Unknown keys are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tv_model::Limits;

/// The `[listen]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
}

/// The `[tls]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM bundle of the CAs whose client (workload) certificates are accepted; absent: the
    /// built-in client CA under `DIR/tls/client-ca.pem` (which `tracevault cert issue` uses).
    pub client_ca: Option<PathBuf>,
    /// Serve without TLS. Insecure: for a sidecar on a trusted loopback only.
    pub insecure_plaintext: Option<bool>,
    /// Oldest TLS version accepted: "1.3" (the default) or "1.2" (old clients; weaker).
    pub min_version: Option<String>,
    /// Offer the hybrid post-quantum key exchange first (default true; false only for
    /// middleboxes that drop large ClientHellos).
    pub post_quantum: Option<bool>,
}

/// The `[limits]` section (see [`Limits`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_request_bytes: Option<usize>,
    pub max_spans_per_request: Option<usize>,
    pub max_attributes_per_span: Option<usize>,
    pub max_attribute_value_bytes: Option<usize>,
    pub max_value_depth: Option<usize>,
    pub max_span_age_secs: Option<u64>,
    pub max_span_future_secs: Option<u64>,
    pub max_connections: Option<usize>,
    /// Upper bound of one request's decoded memory (default 256 MiB).
    pub max_decoded_bytes: Option<usize>,
    /// Memory of all ingest requests being read and decoded together (default 512 MiB).
    pub decode_budget_bytes: Option<usize>,
    /// Longest a request waits for room in a memory budget before 503 (default 5 s).
    pub budget_wait_secs: Option<f64>,
    /// Query API requests answered at once (default: twice the CPU count, at least 4).
    pub query_concurrency: Option<usize>,
}

/// The `[connections]` section (see [`crate::conns`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// Seconds a TLS handshake may take (default 10).
    pub handshake_timeout_secs: Option<f64>,
    /// Seconds after the handshake within which the first request must arrive (default 10).
    pub first_request_timeout_secs: Option<f64>,
    /// Seconds a connection may stay without a request in flight (default 20; HTTP/2 PINGs
    /// are not requests).
    pub idle_timeout_secs: Option<f64>,
    /// Seconds a request may wait on its client: a body that stops arriving, a response that
    /// is not read (default 30).
    pub stall_timeout_secs: Option<f64>,
    /// Bytes of responses one connection may hold unread (default 32 MiB).
    pub response_bytes_per_connection: Option<usize>,
    /// Bytes of responses all connections together may hold unread (default 256 MiB).
    pub response_budget_bytes: Option<usize>,
}

/// The `[storage]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub segment_max_bytes: Option<u64>,
    /// Seconds after which an active WAL segment is sealed into blocks.
    pub seal_interval_secs: Option<f64>,
    pub block_zstd_level: Option<i32>,
    /// The nice value (0-19) of the sealing, compaction and retention threads: 10 by default, so
    /// that they mostly use the CPU ingest leaves instead of delaying acknowledgements; the WAL
    /// writer's pause bounds how far behind they fall (adr 0022).
    pub background_nice: Option<i32>,
    pub chunk_target_bytes: Option<usize>,
    pub max_pending_bytes: Option<u64>,
    /// Delete blocks whose newest span ended more than this many seconds ago (0: keep all).
    pub retention_secs: Option<u64>,
    /// Per-tenant retention in seconds, overriding `retention_secs` (0: keep all of it).
    pub tenant_retention_secs: Option<std::collections::BTreeMap<String, u64>>,
    /// Destroy tenant key versions that wrap nothing still stored once retention deleted what
    /// they wrapped (default true)...
    pub destroy_unused_keys: Option<bool>,
    /// ...once the next version has been current this many seconds (default 600: no data key
    /// wrapped under the old one can still be on its way to disk).
    pub unused_key_grace_secs: Option<u64>,
    /// How often retention runs (default: a quarter of the shortest period, 0.2 to 60 s).
    pub retention_interval_secs: Option<f64>,
    /// Merge small blocks into larger ones in the background (default true).
    pub compaction: Option<bool>,
    /// How often compaction looks for small blocks, seconds (default 60).
    pub compaction_interval_secs: Option<f64>,
    /// Blocks smaller than this many bytes are merged (default 4 MiB)...
    pub compaction_small_bytes: Option<u64>,
    /// ...into blocks of up to about this many bytes (default 16 MiB; one merge holds the
    /// spans of its blocks in memory, uncompressed).
    pub compaction_target_bytes: Option<u64>,
    /// Seconds the blocks a merge replaced stay, for queries already reading them (default 60;
    /// in a cluster at least three refresh intervals, so other nodes list the merged block first).
    pub compaction_grace_secs: Option<f64>,
    /// Keep blocks and the transparency log in a bucket (`s3://BUCKET/PREFIX`, `gs://...`,
    /// `az://...`) shared by the cluster's nodes; the WAL stays local.
    pub object_store: Option<String>,
    /// Settings for the bucket by `object_store`'s names (`aws_endpoint_url`, `aws_region`,
    /// ...), after the standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub object_store_options: Option<std::collections::BTreeMap<String, String>>,
    /// One request to the bucket gives up after this many seconds (default 30).
    pub object_store_timeout_secs: Option<f64>,
    /// This node's id in the cluster (required with `object_store`).
    pub node_id: Option<String>,
    /// `all` (default), `ingest` or `query` (no OTLP listeners).
    pub role: Option<String>,
    /// How often other nodes' blocks are listed, seconds (default 5).
    pub cluster_refresh_secs: Option<f64>,
    /// Bytes of block ranges read from the bucket kept on local disk (default 1 GiB; 0: none).
    pub cache_bytes: Option<u64>,
    /// The write-ahead log's directory (default DATA/wal); put it on durable storage.
    pub wal_dir: Option<PathBuf>,
}

/// One witness the server submits checkpoints to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Base URL; `add-checkpoint` is posted to `<url>/add-checkpoint`.
    pub url: String,
    /// The witness's C2SP verifier key (`tracevault witness` writes it to `DIR/witness.vkey`).
    pub vkey: String,
    /// PEM CA certificate that signed the witness's TLS certificate.
    pub ca_cert: Option<PathBuf>,
}

/// The `[log]` section: the transparency log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Serve `GET /log/...` without a token (for outside monitors and witnesses). The log reveals
    /// ingest volume and timing, so it needs a token by default.
    pub public: Option<bool>,
    /// Seconds between checkpoints while leaves arrive (at most 1).
    pub checkpoint_interval_secs: Option<f64>,
    pub witnesses: Option<Vec<WitnessConfig>>,
}

/// `[rate_limits]`: per credential and per tenant; 0 switches one off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRates {
    pub requests_per_sec: Option<f64>,
    pub spans_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
}

/// `[access]`: Cedar policy files added to the built-in ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    #[serde(default)]
    pub policy_files: Vec<PathBuf>,
    /// Sensitivity classes: class name -> attribute key globs.
    #[serde(default)]
    pub field_classes: std::collections::BTreeMap<String, Vec<String>>,
}

/// `[keys]`: where the root of the key hierarchy lives.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// `file` (the default: `keys/root.key`, 0600) or `transit` (OpenBao / Vault transit).
    pub root: Option<String>,
    pub transit: Option<crate::kms::TransitConfig>,
    /// Rotate a tenant's key when its current version is older than this many days.
    pub rotate_after_days: Option<f64>,
}

/// Where the root key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RootSource {
    File,
    Transit(Box<crate::kms::TransitConfig>),
}

/// The whole file (and the flags, which fill the same structure).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Config format version; only 1 exists.
    pub version: Option<u32>,
    pub data_dir: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub connections: RawConnections,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub log: RawLog,
    /// Redaction rules (`[redaction]`, see tv_redact::policy); absent: the built-in rules.
    pub redaction: Option<tv_redact::RulesConfig>,
    /// Access policies (`[access]`).
    pub access: Option<RawAccess>,
    /// Rate limits (`[rate_limits]`).
    pub rate_limits: Option<RawRates>,
    /// People by OIDC (`[oidc]`).
    pub oidc: Option<tv_access::OidcConfig>,
    /// The root key source (`[keys]`).
    pub keys: Option<RawKeys>,
    /// `--no-redaction` (a flag only: a config file cannot switch redaction off).
    #[serde(skip)]
    pub no_redaction: Option<bool>,
    /// Threat detection (`[detection]`).
    pub detection: Option<RawDetection>,
    /// The web UI's sessions (`[ui]`).
    pub ui: Option<RawUi>,
}

/// `[ui]`: the web UI's sessions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    /// A session unused this long ends (default 1800 s).
    pub session_idle_secs: Option<u64>,
    /// A session ends this long after sign-in, however used (default 43200 s, 12 h).
    pub session_max_secs: Option<u64>,
}

/// The web UI's session timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiSettings {
    pub session_idle: Duration,
    pub session_max: Duration,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            session_idle: Duration::from_secs(1800),
            session_max: Duration::from_secs(12 * 3600),
        }
    }
}

impl RawUi {
    fn validate(&self) -> anyhow::Result<UiSettings> {
        let d = UiSettings::default();
        let idle = self.session_idle_secs.unwrap_or(d.session_idle.as_secs());
        let max = self.session_max_secs.unwrap_or(d.session_max.as_secs());
        if !(10..=86_400).contains(&idle) {
            bail!("ui.session_idle_secs = {idle}: must be 10..=86400");
        }
        if !(10..=7 * 86_400).contains(&max) {
            bail!("ui.session_max_secs = {max}: must be 10..=604800 (7 days)");
        }
        if idle > max {
            bail!("ui.session_idle_secs ({idle}) is longer than ui.session_max_secs ({max})");
        }
        Ok(UiSettings {
            session_idle: Duration::from_secs(idle),
            session_max: Duration::from_secs(max),
        })
    }
}

/// `[detection]`: signature rules on ingest and where findings go.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDetection {
    /// Run detection at all (default true).
    pub enabled: Option<bool>,
    /// Load the built-in rule pack (default true).
    pub builtin_rules: Option<bool>,
    /// A directory of Sigma rules (`*.yml`, `*.yaml`, recursively) loaded after the built-in pack.
    pub rules_dir: Option<PathBuf>,
    /// Rule ids not to load (built-in or from `rules_dir`); an id no rule has is refused.
    pub disabled_rules: Option<Vec<String>>,
    /// Findings also appended as OCSF JSON lines to this file.
    pub jsonl_file: Option<PathBuf>,
    /// Lowest severity written to `jsonl_file` (default `low`).
    pub jsonl_min_severity: Option<String>,
    /// Behavioural detectors on the committed stream (default true).
    pub behavioural: Option<bool>,
    /// Batches waiting for the behavioural stage; beyond it batches skip it (counted in
    /// `tracevault_detection_dropped_spans_total`) and ingest goes on (default 1024).
    pub queue_batches: Option<usize>,
    /// Thresholds of the behavioural detectors (`[detection.behaviour]`).
    pub behaviour: Option<tv_detect::behaviour::BehaviourConfig>,
    /// Finding sinks (`[[detection.sinks]]`: jsonl, webhook, syslog).
    pub sinks: Option<Vec<crate::sinks::SinkConfig>>,
    /// Automated responses (`[[detection.responses]]`; none by default).
    pub responses: Option<Vec<crate::responses::ResponseRule>>,
}

/// Validated `[detection]`.
#[derive(Debug, Clone)]
pub struct DetectionSettings {
    pub enabled: bool,
    pub builtin_rules: bool,
    pub rules_dir: Option<PathBuf>,
    pub disabled_rules: Vec<String>,
    /// Finding sinks (`jsonl_file` included as a jsonl sink).
    pub sinks: Vec<crate::sinks::SinkConfig>,
    /// Automated response rules.
    pub responses: Vec<crate::responses::ResponseRule>,
    /// Behavioural thresholds; `None` when the behavioural stage is off.
    pub behaviour: Option<tv_detect::behaviour::BehaviourConfig>,
    pub queue_batches: usize,
}

macro_rules! overlay {
    ($dst:expr, $src:expr, $($f:ident),*) => { $( if $src.$f.is_some() { $dst.$f = $src.$f.clone(); } )* };
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let raw: RawConfig = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        if let Some(v) = raw.version
            && v != 1
        {
            bail!(
                "config file {} has version {v}; this build reads version 1",
                path.display()
            );
        }
        Ok(raw)
    }

    /// Lays `other` over `self`: every value `other` sets wins.
    pub fn overlay(&mut self, other: &RawConfig) {
        overlay!(
            self,
            other,
            version,
            data_dir,
            keys_dir,
            log_format,
            redaction,
            no_redaction,
            access,
            rate_limits,
            oidc,
            keys,
            detection,
            ui
        );
        overlay!(self.listen, other.listen, otlp_grpc, otlp_http, api);
        overlay!(
            self.tls,
            other.tls,
            cert,
            key,
            client_ca,
            insecure_plaintext,
            min_version,
            post_quantum
        );
        overlay!(
            self.limits,
            other.limits,
            max_request_bytes,
            max_spans_per_request,
            max_attributes_per_span,
            max_attribute_value_bytes,
            max_value_depth,
            max_span_age_secs,
            max_span_future_secs,
            max_connections,
            max_decoded_bytes,
            decode_budget_bytes,
            budget_wait_secs,
            query_concurrency
        );
        overlay!(
            self.connections,
            other.connections,
            handshake_timeout_secs,
            first_request_timeout_secs,
            idle_timeout_secs,
            stall_timeout_secs,
            response_bytes_per_connection,
            response_budget_bytes
        );
        overlay!(
            self.storage,
            other.storage,
            segment_max_bytes,
            seal_interval_secs,
            block_zstd_level,
            background_nice,
            chunk_target_bytes,
            max_pending_bytes,
            retention_secs,
            tenant_retention_secs,
            destroy_unused_keys,
            unused_key_grace_secs,
            retention_interval_secs,
            compaction,
            compaction_interval_secs,
            compaction_small_bytes,
            compaction_target_bytes,
            compaction_grace_secs,
            object_store,
            object_store_options,
            object_store_timeout_secs,
            node_id,
            role,
            cluster_refresh_secs,
            cache_bytes,
            wal_dir
        );
        overlay!(
            self.log,
            other.log,
            public,
            checkpoint_interval_secs,
            witnesses
        );
    }

    /// Resolves the layers: `flags` over `--config FILE` over `DIR/config.toml`.
    pub fn resolve(flags: &RawConfig, config_file: Option<&Path>) -> anyhow::Result<ServeConfig> {
        let mut from_files = RawConfig::default();
        let explicit = match config_file {
            Some(p) => Some(RawConfig::from_file(p)?),
            None => None,
        };
        // The data dir decides where DIR/config.toml is: flags, then the explicit file.
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| explicit.as_ref().and_then(|e| e.data_dir.clone()))
            .unwrap_or_else(|| PathBuf::from("./tracevault-data"));
        let dir_file = data_dir.join("config.toml");
        if dir_file.exists() {
            from_files.overlay(&RawConfig::from_file(&dir_file)?);
        }
        if let Some(e) = &explicit {
            from_files.overlay(e);
        }
        from_files.overlay(flags);
        from_files.data_dir = Some(data_dir);
        from_files.validate()
    }

    /// Checks values and fills defaults.
    pub fn validate(&self) -> anyhow::Result<ServeConfig> {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./tracevault-data"));
        let keys_dir = self
            .keys_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("keys"));
        let d = Limits::default();
        let l = &self.limits;
        let limits = Limits {
            max_request_bytes: l.max_request_bytes.unwrap_or(d.max_request_bytes),
            max_spans_per_request: l.max_spans_per_request.unwrap_or(d.max_spans_per_request),
            max_attributes_per_span: l
                .max_attributes_per_span
                .unwrap_or(d.max_attributes_per_span),
            max_attribute_value_bytes: l
                .max_attribute_value_bytes
                .unwrap_or(d.max_attribute_value_bytes),
            max_value_depth: l.max_value_depth.unwrap_or(d.max_value_depth),
            max_span_age_secs: l.max_span_age_secs.unwrap_or(d.max_span_age_secs),
            max_span_future_secs: l.max_span_future_secs.unwrap_or(d.max_span_future_secs),
            max_decoded_bytes: l.max_decoded_bytes.unwrap_or(d.max_decoded_bytes),
        };
        let decode_budget_bytes = l.decode_budget_bytes.unwrap_or(512 * 1024 * 1024);
        if limits.max_decoded_bytes < 1024 * 1024 || limits.max_decoded_bytes > decode_budget_bytes
        {
            bail!(
                "limits.max_decoded_bytes is {}: it must be at least 1 MiB and at most limits.decode_budget_bytes ({decode_budget_bytes})",
                limits.max_decoded_bytes
            );
        }
        let budget_wait = l.budget_wait_secs.unwrap_or(5.0);
        if !(0.0..=60.0).contains(&budget_wait) {
            bail!("limits.budget_wait_secs is {budget_wait}: it must be 0 to 60");
        }
        if limits.max_request_bytes == 0 || limits.max_request_bytes > 1024 * 1024 * 1024 {
            bail!("limits.max_request_bytes must be between 1 and 1073741824");
        }
        if limits.max_spans_per_request == 0 {
            bail!("limits.max_spans_per_request must be at least 1");
        }
        if limits.max_value_depth == 0 || limits.max_value_depth > 64 {
            bail!("limits.max_value_depth must be between 1 and 64");
        }
        let connections = {
            let c = &self.connections;
            let d = crate::conns::ConnSettings::default();
            let secs =
                |name: &str, v: Option<f64>, default: Duration| -> anyhow::Result<Duration> {
                    match v {
                        None => Ok(default),
                        Some(s) if (0.1..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
                        Some(s) => bail!("connections.{name} is {s}: it must be 0.1 to 3600"),
                    }
                };
            let max = self.limits.max_connections.unwrap_or(d.max);
            if max == 0 {
                bail!("limits.max_connections must be at least 1");
            }
            crate::conns::ConnSettings {
                max,
                handshake: secs(
                    "handshake_timeout_secs",
                    c.handshake_timeout_secs,
                    d.handshake,
                )?,
                first_request: secs(
                    "first_request_timeout_secs",
                    c.first_request_timeout_secs,
                    d.first_request,
                )?,
                idle: secs("idle_timeout_secs", c.idle_timeout_secs, d.idle)?,
                stall: secs("stall_timeout_secs", c.stall_timeout_secs, d.stall)?,
                response_bytes_per_connection: c
                    .response_bytes_per_connection
                    .unwrap_or(d.response_bytes_per_connection),
            }
        };
        let response_budget_bytes = self
            .connections
            .response_budget_bytes
            .unwrap_or(256 * 1024 * 1024);
        if response_budget_bytes < connections.response_bytes_per_connection {
            bail!(
                "connections.response_budget_bytes ({response_budget_bytes}) must be at least connections.response_bytes_per_connection ({})",
                connections.response_bytes_per_connection
            );
        }
        let cluster = match &self.storage.object_store {
            None => {
                if self.storage.node_id.is_some() {
                    bail!(
                        "storage.node_id (--node-id) names a node of a cluster on a bucket: set storage.object_store (--object-store) too"
                    );
                }
                None
            }
            Some(url) => {
                let node = self.storage.node_id.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "storage.object_store needs storage.node_id (--node-id): each node of a cluster has its own id"
                    )
                })?;
                tv_store::cluster::check_node_id(&node)
                    .map_err(|e| anyhow::anyhow!("storage.node_id: {e}"))?;
                let timeout = self.storage.object_store_timeout_secs.unwrap_or(30.0);
                if !(1.0..=600.0).contains(&timeout) {
                    bail!("storage.object_store_timeout_secs is {timeout}; it must be 1 to 600");
                }
                let refresh = self.storage.cluster_refresh_secs.unwrap_or(5.0);
                if !(0.2..=300.0).contains(&refresh) {
                    bail!("storage.cluster_refresh_secs is {refresh}; it must be 0.2 to 300");
                }
                Some(ClusterSettings {
                    url: url.clone(),
                    options: self
                        .storage
                        .object_store_options
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    node,
                    request_timeout: Duration::from_secs_f64(timeout),
                    refresh: Duration::from_secs_f64(refresh),
                    cache_bytes: self.storage.cache_bytes.unwrap_or(1 << 30),
                })
            }
        };
        let role = match self.storage.role.as_deref() {
            None | Some("all") => NodeRole::All,
            Some("ingest") => NodeRole::Ingest,
            Some("query") => NodeRole::Query,
            Some(other) => bail!("storage.role is {other:?}: it must be all, ingest or query"),
        };
        // With a bucket, blocks are sealed often so that what any node acknowledged is
        // readable from every node within seconds.
        let seal = self
            .storage
            .seal_interval_secs
            .unwrap_or(if cluster.is_some() { 5.0 } else { 60.0 });
        if !(0.05..=86400.0).contains(&seal) {
            bail!("storage.seal_interval_secs must be between 0.05 and 86400");
        }
        let level = self.storage.block_zstd_level.unwrap_or(3);
        if !(1..=19).contains(&level) {
            bail!("storage.block_zstd_level must be between 1 and 19");
        }
        let segment_max_bytes = self.storage.segment_max_bytes.unwrap_or(4 * 1024 * 1024);
        if !(4096..=1 << 30).contains(&segment_max_bytes) {
            bail!(
                "storage.segment_max_bytes is {segment_max_bytes}; it must be between 4096 and 1073741824 (1 GiB)"
            );
        }
        let background_nice = self.storage.background_nice.unwrap_or(10);
        if !(0..=19).contains(&background_nice) {
            bail!(
                "storage.background_nice is {background_nice}; it must be between 0 (the server's own priority) and 19 (the lowest)"
            );
        }
        let log_json = match self.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format must be \"text\" or \"json\", not {other:?}"),
        };
        let cpi = self.log.checkpoint_interval_secs.unwrap_or(1.0);
        if !(0.01..=1.0).contains(&cpi) {
            bail!(
                "log.checkpoint_interval_secs must be between 0.01 and 1 (a checkpoint at least every second while leaves arrive)"
            );
        }
        let witnesses = self.log.witnesses.clone().unwrap_or_default();
        for w in &witnesses {
            if !w.url.starts_with("https://") && !w.url.starts_with("http://") {
                bail!("log.witnesses: url {:?} must start with https://", w.url);
            }
            tv_tlog::cosig::Ed25519CosigVerifier::from_vkey(&w.vkey).map_err(|e| {
                anyhow::anyhow!(
                    "log.witnesses: {:?} is not an Ed25519 cosignature vkey: {e}",
                    w.vkey
                )
            })?;
        }
        let (cert, key) = (self.tls.cert.clone(), self.tls.key.clone());
        if cert.is_some() != key.is_some() {
            bail!("tls.cert and tls.key (--tls-cert/--tls-key) must be given together");
        }
        let redaction = if self.no_redaction == Some(true) {
            None
        } else {
            let rc = self.redaction.clone().unwrap_or_default();
            Some(tv_redact::Rules::compile(&rc).map_err(|e| anyhow::anyhow!("[redaction] {e}"))?)
        };
        let detection = {
            let d = self.detection.clone().unwrap_or_default();
            let mut sinks = d.sinks.clone().unwrap_or_default();
            if let Some(f) = &d.jsonl_file {
                sinks.insert(
                    0,
                    crate::sinks::SinkConfig {
                        kind: "jsonl".into(),
                        path: Some(f.clone()),
                        min_severity: d.jsonl_min_severity.clone(),
                        ..Default::default()
                    },
                );
            } else if d.jsonl_min_severity.is_some() {
                bail!("detection.jsonl_min_severity needs detection.jsonl_file");
            }
            for (i, c) in sinks.iter().enumerate() {
                crate::sinks::check(c, &format!("detection.sinks[{i}]"))?;
            }
            let responses = d.responses.clone().unwrap_or_default();
            for (i, r) in responses.iter().enumerate() {
                crate::responses::check(r, &format!("detection.responses[{i}]"))?;
            }
            if let Some(dir) = &d.rules_dir
                && !dir.is_dir()
            {
                bail!("detection.rules_dir {} is not a directory", dir.display());
            }
            let queue_batches = d.queue_batches.unwrap_or(1024);
            if !(1..=1_000_000).contains(&queue_batches) {
                bail!("detection.queue_batches is {queue_batches}; it must be 1 to 1000000");
            }
            let behaviour = d.behaviour.clone().unwrap_or_default();
            if behaviour.window_secs == 0
                || !(0.0..=1.0).contains(&behaviour.alpha)
                || behaviour.alpha == 0.0
            {
                bail!("[detection.behaviour] window_secs must be at least 1 and alpha in (0, 1]");
            }
            DetectionSettings {
                enabled: d.enabled.unwrap_or(true),
                builtin_rules: d.builtin_rules.unwrap_or(true),
                rules_dir: d.rules_dir,
                disabled_rules: d.disabled_rules.unwrap_or_default(),
                sinks,
                responses,
                behaviour: (d.enabled.unwrap_or(true) && d.behavioural.unwrap_or(true))
                    .then_some(behaviour),
                queue_batches,
            }
        };
        let mut files = Vec::new();
        for p in self
            .access
            .as_ref()
            .map(|a| a.policy_files.as_slice())
            .unwrap_or(&[])
        {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading access policy file {}", p.display()))?;
            files.push((p.display().to_string(), text));
        }
        let policy = std::sync::Arc::new(
            tv_access::PolicyEngine::new(&files)
                .map_err(|e| anyhow::anyhow!("[access] policy file refused: {e}"))?,
        );
        let d = crate::ratelimit::Rates::default();
        let r = self.rate_limits.clone().unwrap_or_default();
        let rates = crate::ratelimit::Rates {
            requests_per_sec: r.requests_per_sec.unwrap_or(d.requests_per_sec),
            spans_per_sec: r.spans_per_sec.unwrap_or(d.spans_per_sec),
            bytes_per_sec: r.bytes_per_sec.unwrap_or(d.bytes_per_sec),
        };
        for (name, v) in [
            ("requests_per_sec", rates.requests_per_sec),
            ("spans_per_sec", rates.spans_per_sec),
            ("bytes_per_sec", rates.bytes_per_sec),
        ] {
            if !v.is_finite() || v < 0.0 {
                bail!("rate_limits.{name} = {v}: must be 0 (off) or a positive number");
            }
        }
        let keys = self.keys.clone().unwrap_or_default();
        let rotate_after = match keys.rotate_after_days {
            None => None,
            Some(d) if (1.0..=3650.0).contains(&d) => Some(Duration::from_secs_f64(d * 86_400.0)),
            Some(d) => bail!("keys.rotate_after_days must be between 1 and 3650, not {d}"),
        };
        let root = match (keys.root.as_deref().unwrap_or("file"), keys.transit) {
            ("file", None) => RootSource::File,
            ("file", Some(_)) => bail!("[keys.transit] is set but keys.root is \"file\""),
            ("transit", Some(t)) => {
                t.check()?;
                RootSource::Transit(Box::new(t))
            }
            ("transit", None) => bail!("keys.root = \"transit\" needs a [keys.transit] table"),
            (other, _) => bail!("keys.root must be \"file\" or \"transit\", not {other:?}"),
        };
        let oidc = match &self.oidc {
            None => None,
            Some(o) => {
                // A JWKS URL is fetched by the server at start (see oidc_refresh); until then the
                // verifier holds no key at all.
                let jwks = match &o.jwks_file {
                    Some(f) => Some(
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading oidc.jwks_file {}", f.display()))?,
                    ),
                    None => None,
                };
                Some(std::sync::Arc::new(
                    tv_access::OidcVerifier::new(o.clone(), jwks.as_deref())
                        .map_err(|e| anyhow::anyhow!("[oidc] {e}"))?,
                ))
            }
        };
        let field_classes = std::sync::Arc::new(
            crate::mask::FieldClasses::new(
                &self
                    .access
                    .as_ref()
                    .map(|a| a.field_classes.clone())
                    .unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("[access] {e}"))?,
        );
        let ui = self.ui.clone().unwrap_or_default().validate()?;
        Ok(ServeConfig {
            ui,
            field_classes,
            oidc,
            root,
            rotate_after,
            rates,
            policy,
            data_dir,
            keys_dir,
            log_json,
            otlp_grpc: self
                .listen
                .otlp_grpc
                .unwrap_or_else(|| "127.0.0.1:4317".parse().expect("literal")),
            otlp_http: self
                .listen
                .otlp_http
                .unwrap_or_else(|| "127.0.0.1:4318".parse().expect("literal")),
            api: self
                .listen
                .api
                .unwrap_or_else(|| "127.0.0.1:3200".parse().expect("literal")),
            tls_cert: cert.zip(key),
            client_ca: self.tls.client_ca.clone(),
            insecure_plaintext: self.tls.insecure_plaintext.unwrap_or(false),
            tls_policy: crate::tls::TlsPolicy {
                tls12: match self.tls.min_version.as_deref() {
                    None | Some("1.3") => false,
                    Some("1.2") => true,
                    Some(v) => {
                        bail!("tls.min_version = {v:?}: must be \"1.3\" (the default) or \"1.2\"")
                    }
                },
                post_quantum: self.tls.post_quantum.unwrap_or(true),
            },
            limits,
            decode_budget_bytes,
            budget_wait: Duration::from_secs_f64(budget_wait),
            connections,
            response_budget_bytes,
            query_concurrency: match self.limits.query_concurrency {
                Some(n) if (1..=4096).contains(&n) => n,
                Some(n) => bail!("limits.query_concurrency is {n}: it must be 1 to 4096"),
                None => std::thread::available_parallelism()
                    .map(|n| n.get() * 2)
                    .unwrap_or(4)
                    .max(4),
            },
            segment_max_bytes,
            seal_interval: Duration::from_secs_f64(seal),
            block_zstd_level: level,
            background_nice,
            chunk_target_bytes: self.storage.chunk_target_bytes.unwrap_or(512 * 1024),
            max_pending_bytes: self.storage.max_pending_bytes.unwrap_or(64 * 1024 * 1024),
            retention: self
                .storage
                .retention_secs
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            tenant_retention: {
                let mut m = std::collections::HashMap::new();
                for (t, secs) in self.storage.tenant_retention_secs.iter().flatten() {
                    let id = tv_model::TenantId::parse(t).map_err(|e| {
                        anyhow::anyhow!("storage.tenant_retention_secs: {t:?}: {e}")
                    })?;
                    m.insert(id, (*secs > 0).then(|| Duration::from_secs(*secs)));
                }
                m
            },
            destroy_unused_keys: self.storage.destroy_unused_keys.unwrap_or(true),
            unused_key_grace: Duration::from_secs(
                self.storage.unused_key_grace_secs.unwrap_or(600),
            ),
            retention_interval: match self.storage.retention_interval_secs {
                None => None,
                Some(s) if (0.1..=86_400.0).contains(&s) => Some(Duration::from_secs_f64(s)),
                Some(s) => bail!("storage.retention_interval_secs is {s}; it must be 0.1 to 86400"),
            },
            compaction: match self.storage.compaction {
                Some(false) => None,
                _ => {
                    let d = tv_store::CompactionConfig::default();
                    let interval = self.storage.compaction_interval_secs.unwrap_or(60.0);
                    if !(0.1..=86_400.0).contains(&interval) {
                        bail!(
                            "storage.compaction_interval_secs is {interval}; it must be 0.1 to 86400"
                        );
                    }
                    let small = self.storage.compaction_small_bytes.unwrap_or(d.small_bytes);
                    let target = self
                        .storage
                        .compaction_target_bytes
                        .unwrap_or(d.target_bytes);
                    if !(1024 * 1024..=1024 * 1024 * 1024).contains(&target) {
                        bail!(
                            "storage.compaction_target_bytes is {target}; it must be 1 MiB to 1 GiB"
                        );
                    }
                    if small == 0 || small > target {
                        bail!(
                            "storage.compaction_small_bytes is {small}; it must be 1 to compaction_target_bytes ({target})"
                        );
                    }
                    let grace = self
                        .storage
                        .compaction_grace_secs
                        .unwrap_or(d.grace.as_secs_f64());
                    if !(0.0..=86_400.0).contains(&grace) {
                        bail!("storage.compaction_grace_secs is {grace}; it must be 0 to 86400");
                    }
                    let mut grace = Duration::from_secs_f64(grace);
                    if let Some(c) = &cluster {
                        // Other nodes list the merged block before its blocks go.
                        grace = grace.max(c.refresh * 3);
                    }
                    Some(tv_store::CompactionConfig {
                        interval: Duration::from_secs_f64(interval),
                        small_bytes: small,
                        target_bytes: target,
                        grace,
                        ..d
                    })
                }
            },
            cluster,
            role,
            wal_dir: self.storage.wal_dir.clone(),
            log_public: self.log.public.unwrap_or(false),
            checkpoint_interval: Duration::from_secs_f64(cpi),
            witnesses,
            redaction,
            detection,
        })
    }
}

/// A node of a cluster on a bucket.
#[derive(Clone)]
pub struct ClusterSettings {
    pub url: String,
    /// May hold credentials: never logged.
    pub options: Vec<(String, String)>,
    pub node: String,
    pub request_timeout: Duration,
    pub refresh: Duration,
    /// Local cache of block ranges read from the bucket (0: none).
    pub cache_bytes: u64,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("url", &self.url)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Ingest and queries.
    All,
    /// Ingest (and queries: every node answers them).
    Ingest,
    /// Queries only: no OTLP listeners.
    Query,
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub log_json: bool,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub api: SocketAddr,
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// The operator's client CA bundle; None: the built-in client CA.
    pub client_ca: Option<PathBuf>,
    pub insecure_plaintext: bool,
    /// TLS versions and key exchange groups (`[tls] min_version`, `post_quantum`).
    pub tls_policy: crate::tls::TlsPolicy,
    pub limits: Limits,
    /// Memory of all ingest requests being read and decoded together.
    pub decode_budget_bytes: usize,
    /// Longest a request waits for room in a memory budget.
    pub budget_wait: Duration,
    /// Connection slots and timeouts.
    pub connections: crate::conns::ConnSettings,
    /// Bytes of responses all connections together may hold unread.
    pub response_budget_bytes: usize,
    /// Query API requests answered at once.
    pub query_concurrency: usize,
    pub segment_max_bytes: u64,
    pub seal_interval: Duration,
    pub block_zstd_level: i32,
    pub background_nice: i32,
    pub chunk_target_bytes: usize,
    pub max_pending_bytes: u64,
    pub retention: Option<Duration>,
    /// Per-tenant retention (None: keep all of that tenant's data).
    pub tenant_retention: std::collections::HashMap<tv_model::TenantId, Option<Duration>>,
    pub destroy_unused_keys: bool,
    pub unused_key_grace: Duration,
    pub retention_interval: Option<Duration>,
    /// Merging small blocks (None: off).
    pub compaction: Option<tv_store::CompactionConfig>,
    /// A node of a cluster on a bucket (None: the data directory holds everything).
    pub cluster: Option<ClusterSettings>,
    pub role: NodeRole,
    pub wal_dir: Option<PathBuf>,
    pub log_public: bool,
    pub checkpoint_interval: Duration,
    pub witnesses: Vec<WitnessConfig>,
    /// The compiled redaction rules; `None` only with `--no-redaction`.
    pub redaction: Option<tv_redact::Rules>,
    /// The compiled access policies.
    pub policy: std::sync::Arc<tv_access::PolicyEngine>,
    /// Rate limits.
    pub rates: crate::ratelimit::Rates,
    /// OIDC verification (a JWKS read at start).
    pub oidc: Option<std::sync::Arc<tv_access::OidcVerifier>>,
    /// Where the root key comes from.
    pub root: RootSource,
    /// Rotate tenant keys older than this.
    pub rotate_after: Option<Duration>,
    /// Attribute sensitivity classes.
    pub field_classes: std::sync::Arc<crate::mask::FieldClasses>,
    /// Threat detection.
    pub detection: DetectionSettings,
    /// The web UI's sessions.
    pub ui: UiSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure_and_loopback() {
        let c = RawConfig::default().validate().unwrap();
        assert!(!c.insecure_plaintext);
        assert!(c.otlp_grpc.ip().is_loopback());
        assert!(c.otlp_http.ip().is_loopback());
        assert!(c.api.ip().is_loopback());
        assert_eq!(c.keys_dir, PathBuf::from("./tracevault-data/keys"));
        assert_eq!(c.limits.max_request_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn flags_override_file_and_unknown_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(
            &f,
            "version = 1\n[listen]\napi = \"127.0.0.1:9999\"\notlp_http = \"127.0.0.1:9998\"\n[limits]\nmax_spans_per_request = 10\n",
        )
        .unwrap();
        let mut flags = RawConfig {
            data_dir: Some(d.path().join("data")),
            ..Default::default()
        };
        flags.listen.api = Some("127.0.0.1:7777".parse().unwrap());
        let c = RawConfig::resolve(&flags, Some(&f)).unwrap();
        assert_eq!(c.api.port(), 7777);
        assert_eq!(c.otlp_http.port(), 9998);
        assert_eq!(c.limits.max_spans_per_request, 10);

        std::fs::write(&f, "[listen]\napi_port = 1\n").unwrap();
        let err = format!("{:#}", RawConfig::resolve(&flags, Some(&f)).unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn data_dir_config_toml_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.toml"),
            "[limits]\nmax_value_depth = 3\n",
        )
        .unwrap();
        let flags = RawConfig {
            data_dir: Some(d.path().to_owned()),
            ..Default::default()
        };
        assert_eq!(
            RawConfig::resolve(&flags, None)
                .unwrap()
                .limits
                .max_value_depth,
            3
        );
    }

    #[test]
    fn bad_values_are_explained() {
        let mut r = RawConfig::default();
        r.tls.cert = Some("x".into());
        assert!(r.validate().unwrap_err().to_string().contains("together"));
        // Storage settings out of range name the setting and its limits.
        for (raw, want) in [
            (
                RawStorage {
                    segment_max_bytes: Some(0),
                    ..Default::default()
                },
                "storage.segment_max_bytes is 0; it must be between 4096 and 1073741824",
            ),
            (
                RawStorage {
                    background_nice: Some(20),
                    ..Default::default()
                },
                "storage.background_nice is 20; it must be between 0",
            ),
        ] {
            let r = RawConfig {
                storage: raw,
                ..Default::default()
            };
            let err = r.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let c = RawConfig::default().validate().unwrap();
        assert_eq!((c.segment_max_bytes, c.background_nice), (4 << 20, 10));
    }
}
