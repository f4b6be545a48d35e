//! Finding sinks (issue 7): JSON Lines files, HTTPS webhooks signed with HMAC-SHA256, and syslog
//! (RFC 5424 messages over TLS, RFC 5425), each with its own severity filter.
//!
//! Delivery never blocks ingest or the detectors: each network sink has a bounded queue and a task
//! of its own; a full queue drops the finding for that sink and counts it
//! (`tracevault_sink_deliveries_total{sink,result="dropped"}`).
//!
//! **Webhook signature.** Each request carries `X-Tracevault-Timestamp: <unix seconds>` and
//! `X-Tracevault-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The MAC covers
//! the timestamp and the body together, so a captured request cannot be replayed with a fresh
//! timestamp; receivers reject timestamps older than their tolerance (five minutes is usual).
//! Retries (network errors, 408, 429, 5xx) back off exponentially from 0.5 s (max 30 s) and are
//! signed afresh.
//!
//! **Syslog.** One RFC 5424 message per finding, octet-counted (RFC 5425 / RFC 6587) on a TLS
//! connection kept open: `<PRI>1 TIMESTAMP HOST APP - finding [tracevault@32473 ...] BOM<OCSF
//! JSON>`, facility 10 (security/authorization), severity from the finding (critical -> 2 ...
//! informational -> 6). 32473 is the documentation enterprise number of RFC 5612.
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tv_detect::finding::{Finding, Severity};

use crate::metrics::Metrics;

/// One `[[detection.sinks]]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `jsonl`, `webhook` or `syslog`.
    pub kind: String,
    /// Lowest severity sent (default `low`).
    pub min_severity: Option<String>,
    /// jsonl: the file.
    pub path: Option<PathBuf>,
    /// webhook: the `https://` URL.
    pub url: Option<String>,
    /// webhook: a file holding the shared secret (at least 32 bytes).
    pub secret_file: Option<PathBuf>,
    /// webhook, syslog: the CA bundle that verifies the receiver (syslog: required).
    pub ca_file: Option<PathBuf>,
    /// syslog: `host:port` of the TLS listener (6514 is the registered port).
    pub address: Option<String>,
    /// syslog: the name in the receiver's certificate (default: the host of `address`).
    pub server_name: Option<String>,
    /// syslog: APP-NAME (default `tracevault`).
    pub app_name: Option<String>,
    /// syslog: HOSTNAME (default: this machine's name).
    pub hostname: Option<String>,
    /// Attempts per finding before it is given up (default 8).
    pub max_attempts: Option<u32>,
    /// Findings waiting per sink (default 10000).
    pub queue: Option<usize>,
}

enum Target {
    Jsonl(Mutex<std::fs::File>, PathBuf),
    Queue(tokio::sync::mpsc::Sender<Arc<serde_json::Value>>),
}

struct Sink {
    name: String,
    min: Severity,
    target: Target,
}

/// The configured sinks.
pub struct Sinks {
    sinks: Vec<Sink>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sinks.iter().map(|s| &s.name))
            .finish()
    }
}

fn severity(s: &Option<String>, what: &str) -> anyhow::Result<Severity> {
    match s {
        None => Ok(Severity::Low),
        Some(v) => Severity::parse(v).ok_or_else(|| {
            anyhow::anyhow!(
                "{what}.min_severity is '{v}'; it must be one of informational, low, medium, high, critical"
            )
        }),
    }
}

/// Checks a sink entry without opening anything (config validation).
pub fn check(c: &SinkConfig, what: &str) -> anyhow::Result<()> {
    severity(&c.min_severity, what)?;
    match c.kind.as_str() {
        "jsonl" => {
            c.path
                .as_ref()
                .with_context(|| format!("{what}: kind jsonl needs path"))?;
        }
        "webhook" => {
            let u = c
                .url
                .as_deref()
                .with_context(|| format!("{what}: kind webhook needs url"))?;
            let parsed = url::Url::parse(u).with_context(|| format!("{what}.url is not a URL"))?;
            if parsed.scheme() != "https" {
                bail!("{what}.url must be https:// (findings are not sent in plaintext)");
            }
            c.secret_file
                .as_ref()
                .with_context(|| format!("{what}: kind webhook needs secret_file"))?;
        }
        "syslog" => {
            let a = c
                .address
                .as_deref()
                .with_context(|| format!("{what}: kind syslog needs address (host:port)"))?;
            if a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                bail!("{what}.address must be host:port");
            }
            c.ca_file.as_ref().with_context(|| {
                format!("{what}: kind syslog needs ca_file (syslog goes over TLS only)")
            })?;
        }
        k => bail!("{what}.kind is '{k}'; it must be jsonl, webhook or syslog"),
    }
    if c.max_attempts == Some(0) {
        bail!("{what}.max_attempts must be at least 1");
    }
    Ok(())
}

impl Sinks {
    pub fn none() -> Sinks {
        Sinks {
            sinks: Vec::new(),
            metrics: None,
        }
    }

    /// Opens files and starts the network sinks' tasks (needs a tokio runtime).
    pub fn start(configs: &[SinkConfig], metrics: Option<Arc<Metrics>>) -> anyhow::Result<Sinks> {
        let mut sinks = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let what = format!("detection.sinks[{i}]");
            check(c, &what)?;
            let min = severity(&c.min_severity, &what)?;
            let name = format!("{}#{i}", c.kind);
            let queue = c.queue.unwrap_or(10_000).max(1);
            let attempts = c.max_attempts.unwrap_or(8);
            let target = match c.kind.as_str() {
                "jsonl" => {
                    let path = c.path.clone().expect("checked");
                    if let Some(parent) = path.parent()
                        && !parent.as_os_str().is_empty()
                    {
                        std::fs::create_dir_all(parent)?;
                    }
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("opening {what}.path {}", path.display()))?;
                    Target::Jsonl(Mutex::new(f), path)
                }
                "webhook" => {
                    let secret = std::fs::read(c.secret_file.as_ref().expect("checked"))
                        .with_context(|| format!("reading {what}.secret_file"))?;
                    let secret = trim_secret(secret);
                    if secret.len() < 32 {
                        bail!(
                            "{what}.secret_file holds {} bytes; use at least 32 random bytes",
                            secret.len()
                        );
                    }
                    let mut b = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .connect_timeout(Duration::from_secs(5));
                    if let Some(ca) = &c.ca_file {
                        b = b.use_preconfigured_tls(client_tls(ca, &what)?);
                    }
                    let client = b.build().context("building the webhook client")?;
                    let (tx, rx) = tokio::sync::mpsc::channel(queue);
                    tokio::spawn(webhook_task(
                        rx,
                        client,
                        c.url.clone().expect("checked"),
                        zeroize::Zeroizing::new(secret),
                        attempts,
                        name.clone(),
                        metrics.clone(),
                    ));
                    Target::Queue(tx)
                }
                _ => {
                    let address = c.address.clone().expect("checked");
                    let host = address
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
                        .unwrap_or_default();
                    let server_name = rustls_pki_types::ServerName::try_from(
                        c.server_name.clone().unwrap_or(host),
                    )
                    .with_context(|| format!("{what}.server_name is not a DNS name or IP"))?;
                    let tls = Arc::new(client_tls(c.ca_file.as_ref().expect("checked"), &what)?);
                    let (tx, rx) = tokio::sync::mpsc::channel(queue);
                    tokio::spawn(syslog_task(
                        rx,
                        SyslogTarget {
                            address,
                            server_name,
                            tls,
                            app: c.app_name.clone().unwrap_or_else(|| "tracevault".into()),
                            hostname: c.hostname.clone().unwrap_or_else(local_hostname),
                        },
                        attempts,
                        name.clone(),
                        metrics.clone(),
                    ));
                    Target::Queue(tx)
                }
            };
            tracing::info!(sink = %name, min_severity = min.name(), "finding sink ready");
            sinks.push(Sink { name, min, target });
        }
        Ok(Sinks { sinks, metrics })
    }

    /// Hands findings to every sink whose filter they pass; never waits.
    pub fn emit(&self, findings: &[Finding]) {
        for s in &self.sinks {
            let mine: Vec<&Finding> = findings.iter().filter(|f| f.severity >= s.min).collect();
            if mine.is_empty() {
                continue;
            }
            match &s.target {
                Target::Jsonl(file, path) => {
                    let mut buf = Vec::new();
                    for f in &mine {
                        if serde_json::to_writer(&mut buf, &f.to_ocsf()).is_ok() {
                            buf.push(b'\n');
                        }
                    }
                    let mut file = file.lock().expect("jsonl sink lock");
                    match file.write_all(&buf).and_then(|_| file.flush()) {
                        Ok(()) => self.count(&s.name, "delivered", mine.len()),
                        Err(e) => {
                            tracing::error!(file = %path.display(), error = %e, "writing findings to the JSON Lines sink failed");
                            self.count(&s.name, "failed", mine.len());
                        }
                    }
                }
                Target::Queue(tx) => {
                    for f in mine {
                        if tx.try_send(Arc::new(f.to_ocsf())).is_err() {
                            self.count(&s.name, "dropped", 1);
                        }
                    }
                }
            }
        }
    }

    fn count(&self, sink: &str, result: &'static str, n: usize) {
        if let Some(m) = &self.metrics {
            count(m, sink, result, n);
        }
    }
}

fn count(m: &Metrics, sink: &str, result: &'static str, n: usize) {
    m.sink_deliveries
        .get_or_create(&crate::metrics::SinkLabels {
            sink: sink.to_owned(),
            result,
        })
        .inc_by(n as u64);
}

fn trim_secret(mut s: Vec<u8>) -> Vec<u8> {
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    s
}

fn client_tls(ca: &PathBuf, what: &str) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading {what}.ca_file {}", ca.display()))?
    {
        roots
            .add(c.with_context(|| format!("parsing {}", ca.display()))?)
            .with_context(|| format!("{what}.ca_file {}", ca.display()))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS for a finding sink")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn local_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.is_ascii() && !s.contains(' '))
        .unwrap_or_else(|| "-".into())
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(6));
    base.min(Duration::from_secs(30))
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn webhook_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

async fn webhook_task(
    mut rx: tokio::sync::mpsc::Receiver<Arc<serde_json::Value>>,
    client: reqwest::Client,
    url: String,
    secret: zeroize::Zeroizing<Vec<u8>>,
    attempts: u32,
    name: String,
    metrics: Option<Arc<Metrics>>,
) {
    while let Some(f) = rx.recv().await {
        let body = serde_json::to_vec(&*f).unwrap_or_default();
        let mut delivered = false;
        for attempt in 0..attempts {
            let ts = unix_secs();
            let res = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-tracevault-timestamp", ts.to_string())
                .header(
                    "x-tracevault-signature",
                    webhook_signature(&secret, ts, &body),
                )
                .body(body.clone())
                .send()
                .await;
            let retry = match res {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) => {
                    let st = r.status().as_u16();
                    let retry = st == 408 || st == 429 || st >= 500;
                    tracing::warn!(sink = %name, status = st, attempt = attempt + 1, retry, "webhook refused a finding");
                    retry
                }
                Err(e) => {
                    tracing::warn!(sink = %name, error = %e, attempt = attempt + 1, "webhook unreachable");
                    true
                }
            };
            if !retry {
                break;
            }
            if attempt + 1 < attempts {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        if let Some(m) = &metrics {
            count(m, &name, if delivered { "delivered" } else { "failed" }, 1);
        }
        if !delivered {
            tracing::error!(sink = %name, "a finding was not delivered to the webhook; it stays in the store and in /api/findings");
        }
    }
}

struct SyslogTarget {
    address: String,
    server_name: rustls_pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    app: String,
    hostname: String,
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 section 6.3.3).
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The RFC 5424 message for a finding (its OCSF form).
pub fn syslog_message(ocsf: &serde_json::Value, app: &str, hostname: &str) -> String {
    let sev = ocsf["severity_id"].as_u64().unwrap_or(6);
    let severity = match sev {
        5 => 2,
        4 => 3,
        3 => 4,
        2 => 5,
        _ => 6,
    };
    let pri = 10 * 8 + severity;
    let ts = ocsf["time"].as_i64().unwrap_or(0);
    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(ts as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into());
    let field = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let params = [
        ("uid", &ocsf["finding_info"]["uid"]),
        ("rule", &ocsf["finding_info"]["analytic"]["uid"]),
        ("title", &ocsf["finding_info"]["title"]),
        ("severity", &ocsf["severity"]),
        ("class_uid", &ocsf["class_uid"]),
        ("tenant", &ocsf["metadata"]["tenant_uid"]),
        ("service", &ocsf["resources"][0]["name"]),
        ("operation", &ocsf["resources"][0]["data"]["operation"]),
        ("trace_id", &ocsf["unmapped"]["trace_id"]),
        ("span_id", &ocsf["unmapped"]["span_id"]),
        ("principal", &ocsf["actor"]["user"]["uid"]),
        ("group", &ocsf["metadata"]["correlation_uid"]),
    ];
    let sd: String = params
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!(" {k}=\"{}\"", sd_escape(&field(v))))
        .collect();
    let printable = |s: &str, max: usize| -> String {
        let s: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(max)
            .collect();
        if s.is_empty() { "-".into() } else { s }
    };
    format!(
        "<{pri}>1 {ts} {} {} - finding [tracevault@32473{sd}] \u{feff}{}",
        printable(hostname, 255),
        printable(app, 48),
        serde_json::to_string(ocsf).unwrap_or_default()
    )
}

async fn syslog_task(
    mut rx: tokio::sync::mpsc::Receiver<Arc<serde_json::Value>>,
    t: SyslogTarget,
    attempts: u32,
    name: String,
    metrics: Option<Arc<Metrics>>,
) {
    let connector = tokio_rustls::TlsConnector::from(t.tls.clone());
    let mut conn: Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> = None;
    while let Some(f) = rx.recv().await {
        let msg = syslog_message(&f, &t.app, &t.hostname);
        let frame = format!("{} {msg}", msg.len());
        let mut delivered = false;
        for attempt in 0..attempts {
            if conn.is_none() {
                let c = async {
                    let tcp = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::net::TcpStream::connect(&t.address),
                    )
                    .await
                    .map_err(|_| std::io::Error::other("connect timed out"))??;
                    tcp.set_nodelay(true)?;
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        connector.connect(t.server_name.clone(), tcp),
                    )
                    .await
                    .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
                }
                .await;
                match c {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(sink = %name, error = %e, attempt = attempt + 1, "syslog receiver unreachable");
                        if attempt + 1 < attempts {
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        continue;
                    }
                }
            }
            let s = conn.as_mut().expect("connected above");
            match async {
                s.write_all(frame.as_bytes()).await?;
                s.flush().await
            }
            .await
            {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(sink = %name, error = %e, attempt = attempt + 1, "syslog write failed; reconnecting");
                    conn = None;
                    if attempt + 1 < attempts {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
            }
        }
        if let Some(m) = &metrics {
            count(m, &name, if delivered { "delivered" } else { "failed" }, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_timestamp_and_body() {
        let s = webhook_signature(b"k", 1700000000, b"{}");
        assert!(s.starts_with("v1="));
        assert_ne!(s, webhook_signature(b"k", 1700000001, b"{}"));
        assert_ne!(s, webhook_signature(b"k", 1700000000, b"{ }"));
        // The MAC input is exactly "<timestamp>.<body>".
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"key");
        let want = aws_lc_rs::hmac::sign(&key, b"0.body");
        assert_eq!(
            webhook_signature(b"key", 0, b"body"),
            format!("v1={}", hex::encode(want.as_ref()))
        );
    }

    #[test]
    fn syslog_message_is_rfc5424_with_escaped_structured_data() {
        let v = serde_json::json!({
            "severity_id": 5, "severity": "Critical", "time": 1_700_000_000_123i64, "class_uid": 2004,
            "finding_info": {"uid": "u1", "title": "a \"quoted\" ] title", "analytic": {"uid": "r1"}},
            "metadata": {"tenant_uid": "acme", "correlation_uid": "g"},
            "resources": [{"name": "shop", "data": {"operation": "GET /x"}}],
            "unmapped": {"trace_id": "00", "span_id": "11"},
        });
        let m = syslog_message(&v, "tracevault", "host1");
        assert!(
            m.starts_with(
                "<82>1 2023-11-14T22:13:20.123Z host1 tracevault - finding [tracevault@32473 "
            ),
            "{m}"
        );
        assert!(m.contains(r#"title="a \"quoted\" \] title""#), "{m}");
        assert!(m.contains(" rule=\"r1\""));
        let json = m.split_once('\u{feff}').unwrap().1;
        assert_eq!(serde_json::from_str::<serde_json::Value>(json).unwrap(), v);
    }
}
