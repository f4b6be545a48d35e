//! Threat detection in the server (issue 7): the signature stage on ingest, findings stored with
//! the batch, the JSON Lines sink and `GET /api/findings`.
//!
//! Findings are stored as spans of the reserved service [`FINDINGS_SERVICE`] in the same batch
//! (one WAL record, one log leaf) as the spans they are about, with the trace id of the span that
//! fired: they are encrypted at rest, covered by the tamper-evident log, kept and erased with the
//! tenant's data, and appear in the trace they are about. Their only payload is the finding's JSON
//! (redacted evidence, never a raw value).
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use tv_detect::finding::{Finding, Severity};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};
use tv_model::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    any_value,
};

use crate::config::DetectionSettings;

pub use tv_detect::FINDINGS_SERVICE;
/// The attribute holding a finding's JSON.
pub const FINDING_ATTRIBUTE: &str = "tracevault.finding";

pub struct Detection {
    signatures: Option<Signatures>,
    jsonl: Option<(Mutex<std::fs::File>, PathBuf, Severity)>,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detection")
            .field("rules", &self.rule_count())
            .finish()
    }
}

impl Detection {
    /// Loads the rules (logging every rule that cannot run and why) and opens the sink.
    pub fn start(s: &DetectionSettings) -> anyhow::Result<Detection> {
        if !s.enabled {
            tracing::warn!(
                "threat detection is OFF (detection.enabled = false): no signature rules run on ingest"
            );
            return Ok(Detection {
                signatures: None,
                jsonl: None,
            });
        }
        let mut rules = if s.builtin_rules {
            RuleSet::builtin()
        } else {
            RuleSet::empty()
        };
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
        tracing::info!(
            rules = rules.rules().len(),
            unsupported = rules.unsupported.len(),
            "signature rules ready"
        );
        let jsonl = match &s.jsonl {
            None => None,
            Some((path, min)) => {
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("opening detection.jsonl_file {}: {e}", path.display())
                    })?;
                Some((Mutex::new(f), path.clone(), *min))
            }
        };
        Ok(Detection {
            signatures: Some(Signatures::new(rules)),
            jsonl,
        })
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
        if let Some((file, path, min)) = &self.jsonl {
            let mut buf = Vec::new();
            for f in findings.iter().filter(|f| f.severity >= *min) {
                if serde_json::to_writer(&mut buf, &f.to_ocsf()).is_ok() {
                    buf.push(b'\n');
                }
            }
            if !buf.is_empty() {
                let mut file = file.lock().expect("jsonl sink lock");
                if let Err(e) = file.write_all(&buf).and_then(|_| file.flush()) {
                    tracing::error!(file = %path.display(), error = %e, "writing findings to the JSON Lines sink failed");
                }
            }
        }
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

/// Findings carry the span's name as their operation; span names may hold personal data that the
/// tenant's redaction rules rewrite, so after redaction the findings take the redacted name (and
/// their message and group key follow).
pub fn with_redacted_names(
    mut findings: Vec<Finding>,
    redacted: &ExportTraceServiceRequest,
) -> Vec<Finding> {
    if findings.is_empty() {
        return findings;
    }
    let mut names: std::collections::HashMap<String, &str> = Default::default();
    for rs in &redacted.resource_spans {
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                names.insert(hex::encode(&sp.span_id), sp.name.as_str());
            }
        }
    }
    for f in &mut findings {
        let name = names.get(&f.span_id).copied().unwrap_or("");
        if name != f.operation {
            f.message = f.message.replace(&f.operation, name);
            f.operation = name.to_owned();
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

/// The findings as spans of [`FINDINGS_SERVICE`], one per finding, in the finding's trace.
pub fn as_spans(findings: &[Finding]) -> Option<ResourceSpans> {
    if findings.is_empty() {
        return None;
    }
    let spans = findings
        .iter()
        .filter_map(|f| {
            let trace_id = hex::decode(&f.trace_id).ok().filter(|t| t.len() == 16)?;
            let parent = hex::decode(&f.span_id).ok().filter(|s| s.len() == 8)?;
            let uid = hex::decode(&f.uid).ok()?;
            let mut span_id = uid.get(..8)?.to_vec();
            if span_id.iter().all(|b| *b == 0) {
                span_id[7] = 1;
            }
            let json = serde_json::to_string(f).ok()?;
            Some(Span {
                trace_id,
                span_id,
                parent_span_id: parent,
                name: format!("finding: {}", f.title),
                kind: 1,
                start_time_unix_nano: f.time_unix_nano,
                end_time_unix_nano: f.time_unix_nano,
                attributes: vec![
                    kv_str("tracevault.finding.rule", f.analytic_uid.clone()),
                    kv_str("tracevault.finding.severity", f.severity.name().to_owned()),
                    kv_str(FINDING_ATTRIBUTE, json),
                ],
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

/// The findings stored in these spans (ignores every other span).
pub fn from_spans(rs: &[ResourceSpans]) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in rs {
        if tv_model::service_name(r.resource.as_ref()) != Some(FINDINGS_SERVICE) {
            continue;
        }
        for ss in &r.scope_spans {
            for s in &ss.spans {
                for kv in &s.attributes {
                    if kv.key == FINDING_ATTRIBUTE
                        && let Some(any_value::Value::StringValue(j)) =
                            kv.value.as_ref().and_then(|v| v.value.as_ref())
                        && let Ok(f) = serde_json::from_str::<Finding>(j)
                    {
                        out.push(f);
                    }
                }
            }
        }
    }
    out
}
