//! Automated responses (issue 7, opt-in): quarantine the sending credential (its ingest is
//! refused with 403 until an admin releases it), throttle it (a tighter span rate for a period),
//! or tag the trace (the finding stored in it carries `tracevault.tag`).
//!
//! Responses against a credential follow only from that sender's own behaviour: the detectors in
//! [`SENDER_DETECTORS`] (span ids reused with different content, clocks far off, services it
//! never sent before). A rule that would quarantine or throttle on what spans merely *report*
//! (an injection in a URL, a latency spike, a 401 burst of end users) is refused when the config
//! loads: otherwise an attacker could switch off a victim's telemetry by sending the victim one
//! malicious request. Every response is an audit record (principal `system`) and is listed and
//! released with `tracevault response list|release` (admin).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use tv_detect::finding::{Finding, Severity};

use crate::audit::Audit;

/// Detectors whose findings are about the sending credential's own behaviour.
pub const SENDER_DETECTORS: &[&str] = &[
    "tv-integrity-span-reuse",
    "tv-integrity-future",
    "tv-integrity-past",
    "tv-integrity-unknown-service",
];

/// One `[[detection.responses]]` rule.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseRule {
    /// `quarantine`, `throttle` or `tag`.
    pub action: String,
    /// Detector / rule ids it applies to; a trailing `*` matches a prefix (`tv-integrity-*`).
    pub rules: Vec<String>,
    /// Lowest finding severity it applies to (default `low`).
    pub min_severity: Option<String>,
    /// quarantine: until released when absent; throttle: default 3600.
    pub duration_secs: Option<u64>,
    /// throttle: spans per second the credential may send while throttled (default 100).
    pub spans_per_sec: Option<f64>,
    /// tag: the tag (default `suspicious`).
    pub tag: Option<String>,
}

fn matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

/// Checks a rule (config validation).
pub fn check(r: &ResponseRule, what: &str) -> anyhow::Result<()> {
    if r.rules.is_empty() {
        bail!("{what}.rules is empty");
    }
    if let Some(s) = &r.min_severity
        && Severity::parse(s).is_none()
    {
        bail!(
            "{what}.min_severity is '{s}'; it must be one of informational, low, medium, high, critical"
        );
    }
    match r.action.as_str() {
        "quarantine" | "throttle" => {
            for p in &r.rules {
                // A prefix must stay inside the integrity detectors (tv-integrity-*): those are
                // the sender-behaviour ones by construction.
                let sender_only = match p.strip_suffix('*') {
                    Some(prefix) => prefix.starts_with("tv-integrity-"),
                    None => SENDER_DETECTORS.contains(&p.as_str()),
                };
                if !sender_only {
                    bail!(
                        "{what}: action {} may only follow detectors of the sender's own behaviour ({}); '{p}' reports what spans carry, and acting on it against the credential would let an attacker switch off a victim's telemetry by sending it one malicious request",
                        r.action,
                        SENDER_DETECTORS.join(", ")
                    );
                }
            }
            if r.action == "throttle" {
                let rate = r.spans_per_sec.unwrap_or(100.0);
                if !(rate > 0.0 && rate.is_finite()) {
                    bail!("{what}.spans_per_sec must be above 0");
                }
            }
            if r.tag.is_some() {
                bail!("{what}.tag applies to action tag only");
            }
        }
        "tag" => {
            if r.spans_per_sec.is_some() || r.duration_secs.is_some() {
                bail!(
                    "{what}: spans_per_sec and duration_secs apply to quarantine and throttle only"
                );
            }
            if let Some(t) = &r.tag
                && (t.is_empty()
                    || t.len() > 64
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
            {
                bail!("{what}.tag must be 1-64 characters of [A-Za-z0-9-_.:]");
            }
        }
        a => bail!("{what}.action is '{a}'; it must be quarantine, throttle or tag"),
    }
    Ok(())
}

/// A response taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub id: String,
    pub action: String,
    /// The credential it acts on (`token:...`, `mtls:...`); empty for tags.
    pub principal: String,
    pub tenant: String,
    /// The rule / detector whose finding caused it, and that finding's uid.
    pub rule: String,
    pub finding: String,
    pub created_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans_per_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
}

impl Response {
    pub fn active(&self, now_ms: u64) -> bool {
        self.released_unix_ms.is_none() && self.expires_unix_ms.is_none_or(|e| now_ms < e)
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct Responses {
    rules: Vec<ResponseRule>,
    path: PathBuf,
    list: Mutex<Vec<Response>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    audit: Option<Arc<Audit>>,
    seal: Option<Arc<crate::stateseal::StateSeal>>,
}

impl std::fmt::Debug for Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responses")
            .field("rules", &self.rules.len())
            .finish()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why an ingest is refused or slowed by a response.
pub enum Verdict {
    Allow,
    Quarantined(String),
    Throttled(String),
}

impl Responses {
    /// Loads `DIR/responses.json` (responses survive restarts).
    pub fn open(
        rules: Vec<ResponseRule>,
        data_dir: &std::path::Path,
        audit: Option<Arc<Audit>>,
        seal: Option<Arc<crate::stateseal::StateSeal>>,
    ) -> anyhow::Result<Responses> {
        let path = data_dir.join("responses.json");
        let list = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("{} is not a responses file: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Responses {
            rules,
            path,
            list: Mutex::new(list),
            buckets: Mutex::new(HashMap::new()),
            audit,
            seal,
        })
    }

    fn save(&self, list: &[Response]) {
        let bytes = serde_json::to_vec_pretty(list).unwrap_or_default();
        if let Err(e) = tv_crypto::fsio::atomic_write(&self.path, &bytes, 0o600) {
            tracing::error!(file = %self.path.display(), error = %e, "saving responses failed");
        }
        if let Some(s) = &self.seal {
            s.seal_or_warn("responses.json");
        }
    }

    pub fn list(&self) -> Vec<Response> {
        self.list.lock().expect("responses lock").clone()
    }

    /// Applies the rules to new findings: tags go onto the findings (before they are stored),
    /// quarantines and throttles onto their senders. Returns the responses taken.
    pub fn apply(&self, findings: &mut [Finding]) -> Vec<Response> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let now = now_ms();
        let mut list = self.list.lock().expect("responses lock");
        for f in findings.iter_mut() {
            for r in &self.rules {
                let min = r
                    .min_severity
                    .as_deref()
                    .and_then(Severity::parse)
                    .unwrap_or(Severity::Low);
                if f.severity < min || !r.rules.iter().any(|p| matches(p, &f.analytic_uid)) {
                    continue;
                }
                if r.action == "tag" {
                    let tag = r.tag.clone().unwrap_or_else(|| "suspicious".into());
                    if !f.tags.contains(&tag) {
                        f.tags.push(tag.clone());
                    }
                    continue;
                }
                // Against a credential: only for sender-behaviour detectors (checked at load,
                // checked again here) and only with a known sender.
                if !SENDER_DETECTORS.contains(&f.analytic_uid.as_str()) {
                    continue;
                }
                let Some(principal) = f.principal.clone() else {
                    continue;
                };
                if list
                    .iter()
                    .any(|x| x.principal == principal && x.action == r.action && x.active(now))
                {
                    continue;
                }
                let duration = match r.action.as_str() {
                    "throttle" => Some(r.duration_secs.unwrap_or(3600)),
                    _ => r.duration_secs,
                };
                let resp = Response {
                    id: hex::encode(tv_crypto::random_bytes::<8>()),
                    action: r.action.clone(),
                    principal,
                    tenant: f.tenant.clone(),
                    rule: f.analytic_uid.clone(),
                    finding: f.uid.clone(),
                    created_unix_ms: now,
                    expires_unix_ms: duration.map(|d| now + d * 1000),
                    spans_per_sec: (r.action == "throttle")
                        .then(|| r.spans_per_sec.unwrap_or(100.0)),
                    tag: None,
                    released_unix_ms: None,
                    released_by: None,
                };
                tracing::warn!(
                    response = %resp.id,
                    action = %resp.action,
                    principal = %resp.principal,
                    rule = %resp.rule,
                    "automated response against a credential"
                );
                if let (Some(a), Ok(t)) = (&self.audit, tv_model::TenantId::parse(&resp.tenant)) {
                    a.system(
                        &format!("response_{}", resp.action),
                        format!(
                            "response:{} credential:{} rule:{} finding:{}",
                            resp.id, resp.principal, resp.rule, resp.finding
                        ),
                        &t,
                    );
                }
                list.push(resp.clone());
                taken.push(resp);
            }
        }
        if !taken.is_empty() {
            self.save(&list);
        }
        taken
    }

    /// Whether this credential may ingest `spans` spans now.
    pub fn check_ingest(&self, principal: &str, spans: usize) -> Verdict {
        let now = now_ms();
        let list = self.list.lock().expect("responses lock");
        let mut rate = None;
        for r in list
            .iter()
            .filter(|r| r.principal == principal && r.active(now))
        {
            match r.action.as_str() {
                "quarantine" => {
                    return Verdict::Quarantined(format!(
                        "credential quarantined by automated response {} ({} at {} ms since the epoch); an admin releases it with `tracevault response release {}`",
                        r.id, r.rule, r.created_unix_ms, r.id
                    ));
                }
                "throttle" => {
                    rate = Some((r.spans_per_sec.unwrap_or(100.0), r.id.clone()));
                }
                _ => {}
            }
        }
        drop(list);
        let Some((rate, id)) = rate else {
            return Verdict::Allow;
        };
        let mut buckets = self.buckets.lock().expect("buckets lock");
        let b = buckets.entry(principal.to_owned()).or_insert(Bucket {
            tokens: rate,
            last: Instant::now(),
        });
        let elapsed = b.last.elapsed().as_secs_f64();
        b.last = Instant::now();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        if b.tokens >= spans as f64 {
            b.tokens -= spans as f64;
            Verdict::Allow
        } else {
            Verdict::Throttled(format!(
                "credential throttled to {rate} spans/s by automated response {id}; this batch has {spans} spans"
            ))
        }
    }

    /// Releases a response (admin).
    pub fn release(&self, id: &str, by: &str) -> Option<Response> {
        let now = now_ms();
        let mut list = self.list.lock().expect("responses lock");
        let r = list
            .iter_mut()
            .find(|r| r.id == id && r.released_unix_ms.is_none())?;
        r.released_unix_ms = Some(now);
        r.released_by = Some(by.to_owned());
        let out = r.clone();
        self.save(&list);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, rules: &[&str]) -> ResponseRule {
        ResponseRule {
            action: action.into(),
            rules: rules.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn credential_actions_only_follow_the_senders_own_behaviour() {
        assert!(check(&rule("quarantine", &["tv-integrity-span-reuse"]), "r").is_ok());
        assert!(check(&rule("throttle", &["tv-integrity-*"]), "r").is_ok());
        for bad in [
            "tv-sqli-syntax",
            "tv-*",
            "*",
            "tv-behaviour-auth-burst",
            "tv-behaviour-*",
        ] {
            let e = check(&rule("quarantine", &[bad]), "r")
                .unwrap_err()
                .to_string();
            assert!(e.contains("switch off a victim's telemetry"), "{bad}: {e}");
        }
        // Tags may follow anything.
        assert!(check(&rule("tag", &["tv-*"]), "r").is_ok());
        assert!(check(&rule("block", &["x"]), "r").is_err());
    }
}
