//! Threat detection on traces (issue 7). Pure: no network, no server types, so the edge agent can
//! run the same signature stage before its own redaction.
//!
//! - [`rules`]: Sigma signature rules (via `rsigma-eval`) over a [`view::SpanView`] of a decoded
//!   span, with Sigma web fields mapped to OpenTelemetry attributes and a built-in rule pack.
//! - [`Signatures`]: the signature stage, run on the decoded batch before redaction; only
//!   [`finding::Finding`]s with redacted evidence leave it.
//! - [`finding`]: findings and their OCSF Detection Finding (class 2004) form.
//! - [`evalset`]: readers for the labeled evaluation sets (`tracevault eval detect`).
#![forbid(unsafe_code)]

pub mod behaviour;
pub mod evalset;
pub mod finding;
pub mod inputs;
pub mod recent;
pub mod regex_index;
pub mod rules;
pub mod view;

use finding::{Finding, Stage};
use rules::RuleSet;
use tv_model::otlp::ExportTraceServiceRequest;
use view::SpanView;

/// The service name findings are stored under (as spans in the trace they are about).
pub const FINDINGS_SERVICE: &str = "tracevault.findings";

/// Who sent a batch, for findings and grouping.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    pub tenant: &'a str,
    pub principal: Option<&'a str>,
}

/// The signature stage: a rule set applied to every span of a decoded batch.
#[derive(Debug)]
pub struct Signatures {
    pub rules: RuleSet,
}

impl Signatures {
    pub fn new(rules: RuleSet) -> Self {
        // The regex indexes are built (and timed) here, at start, not on the first batch: a
        // first batch that waits for them held up the acknowledgements of a fresh server (the
        // crash and rate-limit tests caught it).
        rules.regexes();
        Signatures { rules }
    }

    /// Findings for every rule that fires on a span of `req`. Deterministic: the same span and
    /// rule give the same finding uid, so a client's retry of a batch does not double findings.
    pub fn scan(
        &self,
        sender: Sender<'_>,
        req: &ExportTraceServiceRequest,
        now_unix_nano: u64,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.rules.rules().is_empty() {
            return out;
        }
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let view =
                        SpanView::with_regexes(rs.resource.as_ref(), span, self.rules.regexes());
                    for hit in self.rules.evaluate(&view) {
                        out.push(signature_finding(sender, &view, hit, now_unix_nano));
                    }
                }
            }
        }
        out
    }
}

fn signature_finding(
    sender: Sender<'_>,
    view: &SpanView<'_>,
    hit: rules::Hit<'_>,
    now: u64,
) -> Finding {
    let span = view.span;
    let trace_id = hex::encode(&span.trace_id);
    let span_id = hex::encode(&span.span_id);
    let service = view.service().to_owned();
    let fields: Vec<&str> = hit.evidence.iter().map(|e| e.field.as_str()).collect();
    let message = format!(
        "{} on service '{}' operation '{}' (matched {})",
        hit.rule.title,
        service,
        span.name,
        if fields.is_empty() {
            "the rule's condition".to_owned()
        } else {
            fields.join(", ")
        }
    );
    Finding {
        uid: digest_hex(&[
            sender.tenant.as_bytes(),
            &span.trace_id,
            &span.span_id,
            hit.rule.id.as_bytes(),
        ]),
        group: group_key(
            sender.tenant,
            &hit.rule.id,
            &service,
            &span.name,
            sender.principal.unwrap_or(""),
        ),
        stage: Stage::Signature,
        analytic_uid: hit.rule.id.clone(),
        title: hit.rule.title.clone(),
        severity: hit.rule.severity,
        classes: hit.rule.classes.clone(),
        attacks: hit.rule.tags.clone(),
        tenant: sender.tenant.to_owned(),
        time_unix_nano: span.start_time_unix_nano,
        detected_unix_nano: now,
        trace_id,
        span_id,
        service,
        operation: span.name.clone(),
        principal: sender.principal.map(str::to_owned),
        evidence: hit.evidence,
        tags: Vec::new(),
        count: 1,
        message,
    }
}

/// The grouping key of findings: same detector, tenant, service, operation and sender.
pub fn group_key(tenant: &str, analytic: &str, service: &str, op: &str, principal: &str) -> String {
    digest_hex(&[
        tenant.as_bytes(),
        analytic.as_bytes(),
        service.as_bytes(),
        op.as_bytes(),
        principal.as_bytes(),
    ])
}

/// Every file under `dir` (recursively, at most 8 levels, symlinked directories not followed),
/// sorted.
pub fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    fn walk(
        d: &std::path::Path,
        out: &mut Vec<std::path::PathBuf>,
        depth: usize,
    ) -> std::io::Result<()> {
        if depth > 8 {
            return Ok(());
        }
        for e in std::fs::read_dir(d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                walk(&e.path(), out, depth + 1)?;
            } else {
                out.push(e.path());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &mut out, 0)?;
    out.sort();
    Ok(out)
}

/// SHA-256 over length-prefixed parts, first 16 bytes in hex.
pub(crate) fn digest_hex(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex::encode(&ctx.finish().as_ref()[..16])
}
