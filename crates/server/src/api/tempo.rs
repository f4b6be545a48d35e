//! Grafana Tempo's HTTP API: trace by id (v1 `{"batches"}`, v2 `{"trace"}`, or OTLP protobuf),
//! search by tags and duration, tag names and tag values.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use prost::Message;
use serde_json::json;
use tv_model::TraceId;
use tv_model::otlp::TracesData;
use tv_store::SearchQuery;

use super::{Permit, noted, timed, unix_secs};
use crate::AppState;
use crate::error::ApiError;
use crate::params::{parse_go_duration, parse_logfmt};

fn wants_protobuf(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf") || a.contains("application/x-protobuf"))
}

async fn load_trace(
    state: &Arc<AppState>,
    auth: &crate::auth::Authorized,
    id: &str,
) -> Result<TracesData, ApiError> {
    let tid = TraceId::from_hex(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let tenant = auth.tenant().clone();
    let found = timed(state, "trace_by_id", move |s| {
        s.store.find_trace(&tenant, tid)
    })
    .await?;
    match found {
        Some(resource_spans) => Ok(TracesData { resource_spans }),
        None => Err(ApiError::NotFound(format!(
            "trace {} not found",
            tid.to_hex()
        ))),
    }
}

fn protobuf(data: &TracesData) -> Response {
    (
        [(header::CONTENT_TYPE, "application/protobuf")],
        data.encode_to_vec(),
    )
        .into_response()
}

pub async fn trace_v1(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_response(&state, &permit, &id, &headers, false).await
}

pub async fn trace_v2(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_response(&state, &permit, &id, &headers, true).await
}

/// Tempo's v1 shape is `{"batches":[...]}`, v2 `{"trace":{"resourceSpans":[...]}}`; with
/// `Accept: application/protobuf` both answer OTLP `TracesData`, wire-identical to Tempo's
/// `Trace { repeated ResourceSpans batches = 1 }`.
async fn trace_response(
    state: &Arc<AppState>,
    permit: &Permit,
    id: &str,
    headers: &HeaderMap,
    v2: bool,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(state)?;
    let mut data = load_trace(state, &auth, id).await?;
    crate::mask::Masker::new(state, &auth).traces(&mut data.resource_spans);
    let spans = tv_model::span_count(&data.resource_spans);
    if wants_protobuf(headers) {
        return Ok(noted(protobuf(&data), &auth, spans, None));
    }
    // Serialized straight from the spans (no intermediate JSON tree: a large trace would
    // take several times its size in memory).
    #[derive(serde::Serialize)]
    struct V1<'a> {
        batches: &'a [tv_model::otlp::ResourceSpans],
    }
    #[derive(serde::Serialize)]
    struct V2<'a> {
        trace: V2Trace<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct V2Trace<'a> {
        resource_spans: &'a [tv_model::otlp::ResourceSpans],
    }
    let rs = &data.resource_spans;
    let resp = if v2 {
        Json(V2 {
            trace: V2Trace { resource_spans: rs },
        })
        .into_response()
    } else {
        Json(V1 { batches: rs }).into_response()
    };
    Ok(noted(resp, &auth, spans, None))
}

pub const MAX_LIMIT: usize = 10_000;

pub async fn search(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    if let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) {
        return crate::api::traceql::search(&state, &auth, q, &params).await;
    }
    let bad = ApiError::BadRequest;
    let mut q = SearchQuery {
        limit: 20,
        ..Default::default()
    };
    if let Some(t) = params.get("tags") {
        q.tags = parse_logfmt(t).map_err(bad)?;
    }
    if let Some(v) = params.get("minDuration") {
        q.min_duration_ns = Some(parse_go_duration(v).map_err(bad)?);
    }
    if let Some(v) = params.get("maxDuration") {
        q.max_duration_ns = Some(parse_go_duration(v).map_err(bad)?);
    }
    let secs = |name: &str| unix_secs(&params, name);
    q.start_ns = secs("start")?;
    q.end_ns = secs("end")?.map(|e| e.saturating_add(999_999_999));
    if let (Some(s), Some(e)) = (q.start_ns, q.end_ns)
        && s > e
    {
        return Err(ApiError::BadRequest("start must not be after end".into()));
    }
    if let Some(l) = params.get("limit") {
        let l: usize = l
            .parse()
            .map_err(|_| ApiError::BadRequest("limit must be a positive integer".into()))?;
        if l == 0 || l > MAX_LIMIT {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        q.limit = l;
    }
    // The audit names the attributes searched by, never the values.
    let mut keys: Vec<&str> = q.tags.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let resource = Some(
        format!("search tags=[{}]", keys.join(","))
            .chars()
            .take(512)
            .collect(),
    );
    // Searching by an attribute the caller may not see finds nothing: hit counts would tell.
    let mut masker = crate::mask::Masker::new(&state, &auth);
    if q.tags.iter().any(|(k, v)| masker.hides_search(k, v)) {
        return Ok(noted(
            Json(json!({ "traces": [] })).into_response(),
            &auth,
            0,
            resource,
        ));
    }
    let tenant = auth.tenant().clone();
    let hits = timed(&state, "search", move |s| s.store.search(&tenant, &q)).await?;
    let traces: Vec<_> = hits
        .into_iter()
        .map(|h| {
            let service = masker
                .marker("service.name", Some(&h.root_service_name))
                .unwrap_or(h.root_service_name);
            let name = masker.text(&h.root_trace_name).unwrap_or(h.root_trace_name);
            json!({
                "traceID": h.trace_id.to_hex(),
                "rootServiceName": service,
                "rootTraceName": name,
                "startTimeUnixNano": h.start_unix_nanos.to_string(),
                "durationMs": h.duration_ms,
            })
        })
        .collect();
    let n = traces.len();
    Ok(noted(
        Json(json!({ "traces": traces })).into_response(),
        &auth,
        n,
        resource,
    ))
}

pub async fn tags(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let tenant = auth.tenant().clone();
    let names = timed(&state, "tags", move |s| s.store.tag_names(&tenant)).await?;
    // Keys redaction rewrote hold pseudonyms: marked for callers who may not read them.
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let mut names: Vec<String> = names
        .into_iter()
        .map(|n| masker.text(&n).unwrap_or(n))
        .collect();
    names.dedup();
    let n = names.len();
    Ok(noted(
        Json(json!({ "tagNames": names })).into_response(),
        &auth,
        n,
        None,
    ))
}

pub async fn tag_values(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    if name.is_empty() || name.len() > 256 {
        return Err(ApiError::BadRequest(
            "tag name must be 1 to 256 bytes".into(),
        ));
    }
    let tenant = auth.tenant().clone();
    let key = name.clone();
    let values = timed(&state, "tag_values", move |s| {
        s.store.tag_values(&tenant, &name)
    })
    .await?;
    // Restricted values read as their marker, once each.
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let mut shown: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = masker.marker(&key, Some(&v)).unwrap_or(v);
        if !shown.contains(&v) {
            shown.push(v);
        }
    }
    let n = shown.len();
    Ok(noted(
        Json(json!({ "tagValues": shown })).into_response(),
        &auth,
        n,
        None,
    ))
}
