//! `/api/findings`: the tenant's detection findings (OCSF), grouped.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tv_detect::finding::Finding;
use tv_model::TenantId;
use tv_store::BlockHints;

use crate::findings_index::PageQuery;

use super::{Permit, noted, timed, unix_secs};
use crate::AppState;
use crate::error::ApiError;

/// Most findings one `GET /api/findings` returns (a page; `next` says where the next starts).
const MAX_FINDINGS: usize = 1_000;

/// `GET /api/findings?start=&end=&limit=&min_severity=&rule=`: the tenant's findings (OCSF
/// Detection Findings), newest first, deduplicated by finding uid, with their groups (same rule,
/// service, operation and sender) and counts. Findings about services the caller may not read are
/// left out.
pub async fn findings(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let secs = |name: &str| unix_secs(&params, name);
    let limit = match params.get("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(l) if (1..=MAX_FINDINGS).contains(&l) => l,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be between 1 and {MAX_FINDINGS}"
                )));
            }
        },
    };
    let min_severity = match params.get("min_severity") {
        None => tv_detect::finding::Severity::Informational,
        Some(s) => tv_detect::finding::Severity::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "min_severity '{}' is not one of informational, low, medium, high, critical",
                s.chars().take(32).collect::<String>()
            ))
        })?,
    };
    let rule = params.get("rule").cloned();
    // The page after `cursor` (what the previous page's `next` said): older findings, or at
    // the same time with a greater uid.
    let cursor = params.get("cursor").map(|c| parse_cursor(c)).transpose()?;
    let start = secs("start")?.unwrap_or(0);
    let end = secs("end")?.map_or(u64::MAX, |e| e.saturating_add(999_999_999));
    let tenant = auth.tenant().clone();
    let for_page = auth.clone();
    let mut found = timed(&state, "findings", move |s| {
        // Findings about services the caller may not read are left out before the page is cut.
        let mut masker = crate::mask::Masker::new(s, &for_page);
        let mut keep = |f: &Finding| {
            f.severity >= min_severity
                && rule.as_ref().is_none_or(|r| &f.analytic_uid == r)
                && !masker.hides_search("service.name", &f.service)
        };
        // Every stored finding, whatever this page's window: later pages and queries use them.
        let peers = s.store.peer_blocks(&tenant);
        s.findings_index
            .load(&tenant, &peers, || stored_findings(s, &tenant, 0, u64::MAX))?;
        // Other nodes' findings (a cluster) are read from their blocks as those appear.
        s.findings_index.catch_up(&tenant, &peers, |since| {
            stored_findings(s, &tenant, since, u64::MAX)
        })?;
        let q = PageQuery {
            start,
            end,
            before: cursor.as_ref().map(|(t, u)| (*t, u.as_str())),
            limit,
            keep: &mut keep,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if let Some(page) = s
            .findings_index
            .page(&tenant, q, s.store.retention_of(&tenant), now)
        {
            return Ok(page.findings.iter().map(|f| Finding::clone(f)).collect());
        }
        // The page reaches back past what the index holds: read it from the store (a finding's
        // span is timed at or after its event, so `start` bounds the spans to read).
        let mut all = stored_findings(s, &tenant, start, u64::MAX)?;
        all.retain(|f| {
            f.time_unix_nano >= start
                && f.time_unix_nano <= end
                && cursor.as_ref().is_none_or(|(t, uid)| {
                    f.time_unix_nano < *t || (f.time_unix_nano == *t && f.uid > *uid)
                })
                && keep(f)
        });
        all.sort_by(|a, b| {
            b.time_unix_nano
                .cmp(&a.time_unix_nano)
                .then_with(|| a.uid.cmp(&b.uid))
        });
        all.dedup_by(|a, b| a.uid == b.uid && a.time_unix_nano == b.time_unix_nano);
        all.truncate(limit + 1);
        Ok(all)
    })
    .await?;
    let next = (found.len() > limit).then(|| {
        let last = &found[limit - 1];
        format!("{}-{}", last.time_unix_nano, last.uid)
    });
    found.truncate(limit);
    // Names and messages carry the redacted forms; pseudonyms in them are marked for callers
    // who may not read them, as in traces.
    let mut masker = crate::mask::Masker::new(&state, &auth);
    for f in &mut found {
        for s in [&mut f.service, &mut f.operation, &mut f.message] {
            if let Some(m) = masker.text(s) {
                *s = m;
            }
        }
    }
    // Groups: one line per (rule, service, operation, sender) with its count and time span.
    let mut groups: std::collections::BTreeMap<
        &str,
        (u64, u64, u64, &tv_detect::finding::Finding),
    > = Default::default();
    for f in &found {
        let g = groups
            .entry(f.group.as_str())
            .or_insert((0, u64::MAX, 0, f));
        g.0 += 1;
        g.1 = g.1.min(f.time_unix_nano);
        g.2 = g.2.max(f.time_unix_nano);
    }
    let groups: Vec<_> = groups
        .iter()
        .map(|(k, (n, first, last, f))| {
            json!({
                "group": k,
                "count": n,
                "first_seen_unix_nano": first.to_string(),
                "last_seen_unix_nano": last.to_string(),
                "rule": f.analytic_uid,
                "title": f.title,
                "severity": f.severity,
                "service": f.service,
                "operation": f.operation,
                "principal": f.principal,
            })
        })
        .collect();
    let n = found.len();
    let ocsf: Vec<_> = found.iter().map(|f| f.to_ocsf()).collect();
    Ok(noted(
        Json(json!({ "findings": ocsf, "groups": groups, "next": next })).into_response(),
        &auth,
        n,
        Some("findings".into()),
    ))
}

/// A page cursor: `<time_unix_nano>-<uid>` of the last finding of the previous page.
fn parse_cursor(c: &str) -> Result<(u64, String), ApiError> {
    let bad = || {
        ApiError::BadRequest("cursor must be the `next` of a previous /api/findings answer".into())
    };
    let (t, uid) = c.split_once('-').ok_or_else(bad)?;
    let t = t.parse::<u64>().map_err(|_| bad())?;
    if uid.is_empty()
        || uid.len() > 128
        || !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad());
    }
    Ok((t, uid.to_owned()))
}

/// Every finding the store holds for `tenant` in spans overlapping `[start, end]`: the sealed
/// spans of the findings service, one read of each trace that holds some.
fn stored_findings(
    s: &AppState,
    tenant: &TenantId,
    start: u64,
    end: u64,
) -> Result<Vec<Finding>, tv_store::StoreError> {
    let hints = BlockHints {
        service: Some(crate::detection::FINDINGS_SERVICE.to_owned()),
        ..Default::default()
    };
    let traces = s.store.candidates(
        tenant,
        Some(start),
        Some(end),
        &hints,
        usize::MAX,
        &mut |rs, _, _| {
            tv_model::service_name(rs.resource.as_ref()) == Some(crate::detection::FINDINGS_SERVICE)
        },
    )?;
    let mut out = Vec::new();
    for (trace_id, _) in traces {
        if let Some(rs) = s.store.find_trace(tenant, trace_id)? {
            // Only what the server sealed is a finding (see detection::FindingSeal).
            out.extend(
                s.findings_seal
                    .open(tenant, &rs)
                    .map_err(|e| tv_store::StoreError::Decode(format!("finding seal: {e}")))?,
            );
        }
    }
    Ok(out)
}
