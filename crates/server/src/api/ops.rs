//! Operations: readiness (open), the Prometheus/OpenMetrics scrape and the API's OpenAPI
//! document (open).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::Permit;
use crate::AppState;
use crate::error::ApiError;

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.store.is_fenced() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: another process runs this node id (--node-id) on the same bucket; this one writes nothing more: stop one of them\n",
        )
            .into_response();
    }
    if state.store.is_healthy()
        && let Some((why, since)) = state.store.bucket_problem()
    {
        return (
            StatusCode::OK,
            format!(
                "ready (degraded: the object store has not answered for {} s ({}); acknowledged data waits in the local WAL and ingest answers 503 once that is full)\n",
                since.as_secs(),
                why.chars().take(300).collect::<String>()
            ),
        )
            .into_response();
    }
    if state.store.is_healthy() {
        // A KMS outage degrades, it does not stop: cached tenant keys carry ingest and queries.
        if let Some(secs) = state.kms.as_ref().and_then(|k| k.outage()) {
            let max = state
                .kms
                .as_ref()
                .map(|k| k.max_stale.as_secs())
                .unwrap_or(0);
            return (
                StatusCode::OK,
                format!(
                    "ready (degraded: the KMS has not answered for {secs} s; cached tenant keys serve for up to {max} s after their last confirmation)\n"
                ),
            )
                .into_response();
        }
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the write-ahead log cannot be written\n",
        )
            .into_response()
    }
}

pub async fn metrics(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    permit.authorize(&state)?;
    let stats = state.store.stats();
    state.metrics.stored_blocks.set(stats.blocks as i64);
    state.metrics.head_spans.set(stats.head_spans as i64);
    if let Some(log) = state.store.log() {
        state.metrics.log_size.set(log.durable_size() as i64);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}

/// `GET /api/openapi.json`: the OpenAPI 3.1 document of the HTTP API (it describes the API, never
/// data, so it needs no credential).
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}

/// `GET /api/security/overview`: the security counters sampled every minute over the last
/// day, and now (server-wide, like `/metrics`).
pub async fn security_overview(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    permit.authorize_every(&state, "the security overview (server-wide counters)")?;
    let now = crate::ui::security::sample(&state.metrics.render(), tv_access::now_unix());
    let samples = state.security_history.with_now(now);
    Ok(axum::Json(serde_json::json!({
        "sample_every_secs": crate::ui::security::SAMPLE_EVERY.as_secs(),
        "samples": samples,
    }))
    .into_response())
}

/// `GET /api/doctor`: the running deployment's grade (what `tracevault doctor` prints for its
/// configuration and data directory), with the redaction rules in force. Admins of every tenant.
pub async fn doctor(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    permit.authorize_every(&state, "the deployment's grade (server-wide)")?;
    let st = state.clone();
    let report = tokio::task::spawn_blocking(move || {
        let active = st.redaction.active();
        crate::doctor::grade(
            &st.serve_config,
            active.rules.as_ref(),
            crate::doctor::Facts::here(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("doctor: {e}")))?;
    Ok(axum::Json(report).into_response())
}
