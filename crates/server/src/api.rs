//! The query API, compatible with Grafana Tempo's HTTP API (trace by id v1/v2, search, tags,
//! tag values, echo), plus `/ready`, `/metrics` and admin endpoints.
//!
//! Ids in JSON are lowercase hex as OTLP/JSON specifies (Tempo's own JSON uses base64 for span
//! ids; see docs/operators-guide.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{HeaderMap, StatusCode, header};
use prost::Message;
use serde_json::json;
use tv_access::Action;
use tv_model::TraceId;
use tv_model::otlp::TracesData;
use tv_store::SearchQuery;

use crate::AppState;
use crate::audit::AuditNote;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::metrics::EndpointLabels;
use crate::params::{parse_go_duration, parse_logfmt};

pub fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/api/traces/{id}", get(trace_v1))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/findings", get(findings))
        .route("/api/admin/responses", get(responses_list))
        .route("/api/admin/responses/release", post(responses_release))
        .route("/api/search/tags", get(tags))
        .route("/api/search/tag/{name}/values", get(tag_values))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/metrics", get(metrics))
        .route("/api/admin/flush", post(flush))
        .route(
            "/api/admin/tokens",
            get(crate::tokens_api::list).post(crate::tokens_api::create),
        )
        .route(
            "/api/admin/tokens/{id}",
            axum::routing::delete(crate::tokens_api::revoke),
        )
        .route(
            "/api/admin/certs",
            get(crate::certs_api::list).post(crate::certs_api::register),
        )
        .route("/api/admin/certs/revoke", post(crate::certs_api::revoke))
        .route("/api/audit", get(audit_query))
        .route("/api/admin/keys", get(crate::keys_api::list))
        .route("/api/admin/keys/rotate", post(crate::keys_api::rotate))
        .route("/api/admin/keys/rewrap", post(crate::keys_api::rewrap))
        .route(
            "/api/admin/keys/rewrap-root",
            post(crate::keys_api::rewrap_root),
        )
        .route("/api/admin/tenants/erase", post(crate::keys_api::erase))
        .route("/api/admin/keys/backup", post(crate::keys_api::backup))
        .route("/api/traces/{id}/receipt", get(crate::logapi::receipts))
        .route("/api/log/checkpoint", get(crate::logapi::checkpoint))
        .route("/api/log/proof/inclusion", get(crate::logapi::inclusion))
        .route(
            "/api/log/proof/consistency",
            get(crate::logapi::consistency),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_auth,
        ));
    Router::new()
        .route("/ready", get(ready))
        // Authenticates itself: public when the operator makes the log public.
        .route("/log/{*path}", get(crate::logapi::tiles))
        .merge(authed)
        .with_state(state)
}

/// The action a route serves, and whether its allowed requests are audited (scrapes of
/// `/metrics` and reads of the log's public proofs are not; their refusals are).
fn route_action(route: &str) -> (&'static str, bool) {
    match route {
        "/api/traces/{id}" | "/api/v2/traces/{id}" => ("read_trace", true),
        "/api/search" | "/api/search/tags" | "/api/search/tag/{name}/values" => ("search", true),
        "/api/traces/{id}/receipt" => ("read_receipt", true),
        "/api/admin/tokens" | "/api/admin/tokens/{id}" => ("admin_tokens", true),
        "/api/admin/certs" | "/api/admin/certs/revoke" => ("admin_certs", true),
        "/api/admin/keys"
        | "/api/admin/keys/rotate"
        | "/api/admin/keys/rewrap"
        | "/api/admin/keys/rewrap-root"
        | "/api/admin/keys/backup"
        | "/api/admin/tenants/erase" => ("admin_keys", true),
        "/api/admin/flush" => ("flush", true),
        "/api/audit" => ("read_audit", true),
        "/metrics" => ("read_metrics", false),
        r if r.starts_with("/api/log/") => ("read_log", false),
        _ => ("other", true),
    }
}

/// Authenticates, rate-limits, runs the handler and appends the request's audit record.
async fn require_auth(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req.extensions().get::<crate::mtls::PeerInfo>().cloned();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let (action, audit_allowed) = route_action(&route);
    let path = req.uri().path().chars().take(512).collect::<String>();
    let caller = match authenticate(&state, req.headers(), peer.as_ref()) {
        Ok(c) => c,
        Err(r) => {
            r.audit(&state.audit, peer.as_ref(), "api", action, path);
            return r.error.into_response();
        }
    };
    if let Err(e) = state.admit(&caller) {
        state.audit.denied(
            &caller.principal,
            caller.requested_tenant(),
            peer.as_ref(),
            "api",
            action,
            path,
            e.status().as_u16(),
            e.to_string(),
        );
        return e.into_response();
    }
    req.extensions_mut().insert(caller.clone());
    // A bounded number of answers are built at once: each may decrypt a large trace and hold
    // it (and its JSON) until the response budget takes it.
    let slot =
        match tokio::time::timeout(state.budget_wait, state.query_slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(p)) => p,
            _ => {
                return ApiError::Unavailable(format!(
                "every query slot ([limits] query_concurrency) stayed busy for {} s; retry later",
                state.budget_wait.as_secs()
            ))
            .into_response();
            }
        };
    let resp = next.run(req).await;
    drop(slot);
    let status = resp.status().as_u16();
    let denied = matches!(status, 401 | 403 | 429);
    if audit_allowed || denied {
        let note = resp
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        let reason = resp
            .extensions()
            .get::<crate::error::Refusal>()
            .map(|r| r.0.clone());
        // Filed under the tenant the request acted on (or was refused for), which may be one
        // its body named rather than X-Scope-OrgID.
        let tenant = resp
            .extensions()
            .get::<crate::error::ActedOn>()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| caller.requested_tenant().clone());
        let resource = note.resource.unwrap_or(path);
        if denied {
            state.audit.denied(
                &caller.principal,
                &tenant,
                peer.as_ref(),
                "api",
                action,
                resource,
                status,
                reason.unwrap_or_default(),
            );
        } else {
            state.audit.request(
                &caller.principal,
                &tenant,
                peer.as_ref(),
                "api",
                action,
                resource,
                status,
                note.results,
                reason,
            );
        }
    }
    resp
}

/// Attaches what the audit record says about a response: its result count and, when the path
/// alone does not say it, the resource.
pub fn noted(
    mut resp: Response,
    auth: &crate::auth::Authorized,
    results: usize,
    resource: Option<String>,
) -> Response {
    resp.extensions_mut().insert(AuditNote {
        resource,
        results: Some(results as u64),
    });
    resp.extensions_mut()
        .insert(crate::error::ActedOn(auth.tenant().clone()));
    resp
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
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

async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    state.authorize(&caller, Action::ReadMetrics)?;
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

async fn flush(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    // Sealing is server-wide: every tenant's head goes into blocks.
    let auth = state.authorize_every(
        &caller,
        Action::Flush,
        "a flush (it seals every tenant's spans)",
    )?;
    state.store.flush().await.map_err(ApiError::from_store)?;
    let s = state.store.stats();
    Ok(noted(
        Json(json!({"blocks": s.blocks, "headSpans": s.head_spans})).into_response(),
        &auth,
        s.blocks,
        Some("flush".into()),
    ))
}

/// Runs a blocking store read off the async workers and records its latency.
async fn timed<T: Send + 'static>(
    state: &Arc<AppState>,
    endpoint: &'static str,
    f: impl FnOnce(&AppState) -> Result<T, tv_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let st = state.clone();
    let res = tokio::task::spawn_blocking(move || f(&st))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from_store);
    state
        .metrics
        .query_duration
        .get_or_create(&EndpointLabels { endpoint })
        .observe(started.elapsed().as_secs_f64());
    res
}

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

async fn trace_v1(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_response(&state, &caller, &id, &headers, false).await
}

async fn trace_v2(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_response(&state, &caller, &id, &headers, true).await
}

/// Tempo's v1 shape is `{"batches":[...]}`, v2 `{"trace":{"resourceSpans":[...]}}`; with
/// `Accept: application/protobuf` both answer OTLP `TracesData`, wire-identical to Tempo's
/// `Trace { repeated ResourceSpans batches = 1 }`.
async fn trace_response(
    state: &Arc<AppState>,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    v2: bool,
) -> Result<Response, ApiError> {
    let auth = state.authorize(caller, Action::ReadTrace)?;
    let mut data = load_trace(state, &auth, id).await?;
    crate::mask::Masker::new(state, &auth).traces(&mut data.resource_spans);
    let spans: usize = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
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

const MAX_LIMIT: usize = 10_000;

async fn search(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = state.authorize(&caller, Action::Search)?;
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

/// A `start`/`end` parameter in unix seconds, as nanoseconds.
fn unix_secs(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map(|s| s.saturating_mul(1_000_000_000))
                .map_err(|_| ApiError::BadRequest(format!("{name} must be unix seconds")))
        })
        .transpose()
}

/// Most findings one `GET /api/findings` returns.
const MAX_FINDINGS: usize = 1_000;

/// `GET /api/findings?start=&end=&limit=&min_severity=&rule=`: the tenant's findings (OCSF
/// Detection Findings), newest first, deduplicated by finding uid, with their groups (same rule,
/// service, operation and sender) and counts. Findings about services the caller may not read are
/// left out.
async fn findings(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = state.authorize(&caller, Action::ReadFindings)?;
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
    let q = SearchQuery {
        tags: vec![(
            "service.name".to_owned(),
            crate::detection::FINDINGS_SERVICE.to_owned(),
        )],
        start_ns: secs("start")?,
        end_ns: secs("end")?.map(|e| e.saturating_add(999_999_999)),
        limit,
        ..Default::default()
    };
    let tenant = auth.tenant().clone();
    let mut found = timed(&state, "findings", move |s| {
        let mut out = Vec::new();
        for hit in s.store.search(&tenant, &q)? {
            if let Some(rs) = s.store.find_trace(&tenant, hit.trace_id)? {
                // Only what the server sealed is a finding (see detection::FindingSeal).
                out.extend(
                    s.findings_seal
                        .open(&tenant, &rs)
                        .map_err(|e| tv_store::StoreError::Decode(format!("finding seal: {e}")))?,
                );
            }
        }
        Ok(out)
    })
    .await?;
    let mut masker = crate::mask::Masker::new(&state, &auth);
    found.retain(|f| {
        f.severity >= min_severity
            && rule.as_ref().is_none_or(|r| &f.analytic_uid == r)
            && !masker.hides_search("service.name", &f.service)
    });
    // Names and messages carry the redacted forms; pseudonyms in them are marked for callers
    // who may not read them, as in traces.
    for f in &mut found {
        for s in [&mut f.service, &mut f.operation, &mut f.message] {
            if let Some(m) = masker.text(s) {
                *s = m;
            }
        }
    }
    found.sort_by(|a, b| {
        b.time_unix_nano
            .cmp(&a.time_unix_nano)
            .then_with(|| a.uid.cmp(&b.uid))
    });
    found.dedup_by(|a, b| a.uid == b.uid);
    found.truncate(limit);
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
        Json(json!({ "findings": ocsf, "groups": groups })).into_response(),
        &auth,
        n,
        Some("findings".into()),
    ))
}

/// `GET /api/admin/responses`: automated responses taken (admin; the tenant's own, or all for an
/// every-tenant admin).
async fn responses_list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let auth = state.authorize(&caller, Action::AdminTokens)?;
    // Every tenant's that the caller may administer.
    let list: Vec<_> = state
        .detection
        .responses
        .as_ref()
        .map(|r| r.list())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| state.may(&caller, Action::AdminTokens, &r.tenant))
        .collect();
    let n = list.len();
    Ok(noted(
        Json(json!({ "responses": list })).into_response(),
        &auth,
        n,
        Some("responses".into()),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    id: String,
}

/// `POST /api/admin/responses/release {"id": "..."}`: lift a quarantine or throttle (admin).
async fn responses_release(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: ReleaseBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be {{\"id\": \"...\"}}: {e}")))?;
    let Some(r) = state.detection.responses.as_ref() else {
        return Err(ApiError::NotFound(
            "no automated responses on this server".into(),
        ));
    };
    // Authorized on the tenant the response belongs to; one the caller may not administer
    // answers as if it did not exist.
    let missing = || {
        ApiError::NotFound(format!(
            "no active response {} for this tenant (see GET /api/admin/responses)",
            b.id.chars().take(32).collect::<String>()
        ))
    };
    let owner = r
        .list()
        .into_iter()
        .find(|x| x.id == b.id)
        .ok_or_else(missing)?;
    let owner = tv_model::TenantId::parse(&owner.tenant).map_err(|_| missing())?;
    if !state.may(&caller, Action::AdminTokens, owner.as_str()) {
        return Err(missing());
    }
    let auth = state.authorize_on(&caller, Action::AdminTokens, owner)?;
    let released = r
        .release(&b.id, &caller.principal.id())
        .ok_or_else(|| ApiError::NotFound(format!("response {} is already released", b.id)))?;
    Ok(noted(
        Json(json!({ "released": released })).into_response(),
        &auth,
        1,
        Some(format!("response:{}", released.id)),
    ))
}

async fn tags(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let auth = state.authorize(&caller, Action::Search)?;
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

async fn tag_values(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let auth = state.authorize(&caller, Action::Search)?;
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

const MAX_AUDIT_LIMIT: usize = 1000;

/// `GET /api/audit`: audit records of the caller's tenant (every tenant's, and anonymous
/// refusals, with `all_tenants=true` for a credential of every tenant), newest first. Filters:
/// `principal` (id or name), `action`, `decision`, `since` (a duration like `1h`, or unix
/// seconds), `after` / `before` (log indexes, for following and paging), `limit` (1..1000).
async fn audit_query(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = state.authorize(&caller, Action::ReadAudit)?;
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
        state.authorize_every(&caller, Action::ReadAudit, "all_tenants=true")?
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
