//! Findings and their OCSF form (Detection Finding, class 2004, OCSF 1.3).
//!
//! A finding never carries a raw attribute value: evidence names the field, the matcher and the
//! rule's own pattern, and for user data only its length. Derived values that are not user data
//! (a libinjection token fingerprint such as `s&sos`, a status code, a method) are kept.
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// OCSF `severity_id`.
    pub fn id(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Severity::Informational,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// Which stage made a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// A signature rule on the decoded batch before redaction.
    Signature,
    /// A behavioural detector on the committed, redacted stream.
    Behavioural,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The field that matched (`keyword` for keyword lists).
    pub field: String,
    /// The selection of the rule it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    /// The matcher kind (`contains`, `regex`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    /// The rule's own pattern that fired (rule text, not data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A value that is not user data (fingerprint, status code, method, count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The length in bytes of the user data that matched (the data itself is never kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_len: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Unique id of this finding (hex).
    pub uid: String,
    /// Grouping key: findings with the same key are one group (rule, tenant, service, operation,
    /// principal); `count` says how many occurrences the group has.
    pub group: String,
    pub stage: Stage,
    /// Rule or detector id.
    pub analytic_uid: String,
    pub title: String,
    pub severity: Severity,
    /// Attack classes (`sqli`, `xss`, `lfi`, `rce`, `ssrf`, `log4shell`, `ssti`, `scanner`,
    /// `new_edge`, `latency`, ...).
    #[serde(default)]
    pub classes: Vec<String>,
    /// ATT&CK technique tags from the rule (`attack.t1190`).
    #[serde(default)]
    pub attacks: Vec<String>,
    pub tenant: String,
    /// Event time (the span's start), Unix nanoseconds.
    pub time_unix_nano: u64,
    /// When the finding was made, Unix nanoseconds.
    pub detected_unix_nano: u64,
    #[serde(default)]
    pub trace_id: String,
    #[serde(default)]
    pub span_id: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub operation: String,
    /// The credential that sent the span (`token:...`, `spiffe://...`, `oidc:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Tags added by automated responses (`suspicious`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Occurrences in this finding's group up to when it was emitted (1 for the first).
    #[serde(default = "one")]
    pub count: u64,
    pub message: String,
}

fn one() -> u64 {
    1
}

pub const PRODUCT: &str = "tracevault";
pub const OCSF_VERSION: &str = "1.3.0";

impl Finding {
    /// The documentation page of a built-in rule or detector (`docs/findings/<id>.md`);
    /// operators' own rules have none.
    pub fn doc_page(&self) -> Option<String> {
        let id = &self.analytic_uid;
        (id.starts_with("tv-") && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| format!("docs/findings/{id}.md"))
    }

    /// The finding as an OCSF Detection Finding (class 2004, activity Create).
    pub fn to_ocsf(&self) -> Value {
        let analytic_type = match self.stage {
            Stage::Signature => (1, "Rule"),
            Stage::Behavioural => (2, "Behavioral"),
        };
        let evidences: Vec<Value> = self
            .evidence
            .iter()
            .map(|e| {
                json!({
                    "data": {
                        "field": e.field,
                        "selection": e.selection,
                        "matcher": e.matcher,
                        "pattern": e.pattern,
                        "value": e.value,
                        "value_length": e.value_len,
                    }
                })
            })
            .collect();
        let attacks: Vec<Value> = self
            .attacks
            .iter()
            .filter_map(|t| t.strip_prefix("attack."))
            .filter(|t| t.starts_with('t'))
            .map(|t| json!({"technique": {"uid": t.to_ascii_uppercase()}}))
            .collect();
        let time_ms = self.time_unix_nano / 1_000_000;
        let mut v = json!({
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": 1,
            "activity_name": "Create",
            "type_uid": 200401,
            "type_name": "Detection Finding: Create",
            "severity_id": self.severity.id(),
            "severity": self.severity.name(),
            "status_id": 1,
            "status": "New",
            "time": time_ms,
            "message": self.message,
            "count": self.count,
            "metadata": {
                "version": OCSF_VERSION,
                "uid": self.uid,
                "correlation_uid": self.group,
                "labels": self.tags,
                "tenant_uid": self.tenant,
                "logged_time": self.detected_unix_nano / 1_000_000,
                "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": env!("CARGO_PKG_VERSION")},
            },
            "finding_info": {
                "uid": self.uid,
                "title": self.title,
                "types": self.classes,
                "analytic": {
                    "uid": self.analytic_uid,
                    "name": self.title,
                    "type_id": analytic_type.0,
                    "type": analytic_type.1,
                },
                "first_seen_time": time_ms,
                "related_events": [{
                    "uid": self.span_id,
                    "type": "span",
                    "trace_uid": self.trace_id,
                }],
            },
            "resources": [{
                "type": "service",
                "name": self.service,
                "data": {"operation": self.operation},
            }],
            "evidences": evidences,
            "unmapped": {
                "trace_id": self.trace_id,
                "span_id": self.span_id,
                "stage": self.stage,
            },
        });
        if !attacks.is_empty() {
            v["attacks"] = Value::Array(attacks);
        }
        if let Some(doc) = self.doc_page() {
            v["remediation"] = json!({
                "desc": format!("What {} means, how to triage it and how to tune it: {doc} in tracevault's documentation", self.analytic_uid),
                "references": [doc],
            });
        }
        if let Some(p) = &self.principal {
            v["actor"] = json!({"user": {"uid": p, "type": "credential"}});
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocsf_form_has_the_required_detection_finding_fields() {
        let f = Finding {
            uid: "ab".into(),
            group: "g".into(),
            stage: Stage::Signature,
            analytic_uid: "tv-sqli-1".into(),
            title: "SQL injection".into(),
            severity: Severity::High,
            classes: vec!["sqli".into()],
            attacks: vec!["attack.initial-access".into(), "attack.t1190".into()],
            tenant: "acme".into(),
            time_unix_nano: 1_700_000_000_123_000_000,
            detected_unix_nano: 1_700_000_001_000_000_000,
            trace_id: "00".repeat(16),
            span_id: "11".repeat(8),
            service: "shop".into(),
            operation: "GET /x".into(),
            principal: Some("token:abc".into()),
            evidence: vec![],
            tags: vec![],
            count: 1,
            message: "m".into(),
        };
        let v = f.to_ocsf();
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["type_uid"], 200401);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["time"], 1_700_000_000_123u64);
        assert_eq!(v["finding_info"]["analytic"]["uid"], "tv-sqli-1");
        assert_eq!(v["attacks"][0]["technique"]["uid"], "T1190");
        assert_eq!(v["actor"]["user"]["uid"], "token:abc");
        assert_eq!(v["metadata"]["product"]["name"], "tracevault");
        let back: Finding = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
