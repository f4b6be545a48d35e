//! `/api/audit`: reading the audit log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Permit, noted};
use crate::AppState;
use crate::error::ApiError;
use crate::params::parse_go_duration;

const MAX_AUDIT_LIMIT: usize = 1000;

/// `GET /api/audit`: audit records of the caller's tenant (every tenant's, and anonymous
/// refusals, with `all_tenants=true` for a credential of every tenant), newest first. Filters:
/// `principal` (id or name), `action`, `decision`, `since` (a duration like `1h`, or unix
/// seconds), `after` / `before` (log indexes, for following and paging), `limit` (1..1000).
pub async fn query(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let known = [
        "principal",
        "action",
        "decision",
        "since",
        "after",
        "before",
        "limit",
        "all_tenants",
    ];
    if let Some(k) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {:?} (known: {})",
            k.chars().take(64).collect::<String>(),
            known.join(", ")
        )));
    }
    let all = params.get("all_tenants").is_some_and(|v| v == "true");
    let auth = if all {
        permit.authorize_every(&state, "all_tenants=true")?
    } else {
        auth
    };
    let index = |name: &str| -> Result<Option<u64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("{name} must be a log index")))
            })
            .transpose()
    };
    let since_unix_ms = match params.get("since") {
        None => None,
        Some(v) => Some(match v.parse::<u64>() {
            Ok(secs) => secs.saturating_mul(1000),
            Err(_) => {
                let ns = parse_go_duration(v)
                    .map_err(|e| ApiError::BadRequest(format!("since: {e} (or unix seconds)")))?;
                let now = tv_access::now_unix().saturating_mul(1000);
                now.saturating_sub(ns / 1_000_000)
            }
        }),
    };
    let limit = match params.get("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_AUDIT_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be between 1 and {MAX_AUDIT_LIMIT}"
                )));
            }
        },
    };
    let filter = crate::audit::Filter {
        tenant: (!all).then(|| auth.tenant().to_string()),
        principal: params.get("principal").cloned(),
        action: params.get("action").cloned(),
        decision: params.get("decision").cloned(),
        since_unix_ms,
        after: index("after")?,
        before: index("before")?,
    };
    let st = state.clone();
    let (records, size) = tokio::task::spawn_blocking(move || st.audit.read(&filter, limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)?;
    let n = records.len();
    let out: Vec<serde_json::Value> = records
        .into_iter()
        .map(|(i, r)| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["index"] = json!(i);
            v
        })
        .collect();
    Ok(noted(
        Json(json!({ "records": out, "logSize": size, "origin": state.audit.origin() }))
            .into_response(),
        &auth,
        n,
        None,
    ))
}
