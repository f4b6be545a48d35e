//! The Jaeger query API under `/jaeger` (the Jaeger UI's base path, or Grafana's Jaeger data
//! source URL with that prefix), in Jaeger's JSON model: `{data, total, limit, offset, errors}`;
//! traces with `spans` (`references` CHILD_OF / FOLLOWS_FROM, typed `tags`, `logs`) and
//! `processes`. Times are microseconds as Jaeger sends and reads them.
//!
//! A trace search is a TraceQL query built from the parameters (service, operation, tags,
//! span duration) and runs like one: as the caller may see the data, with returned values masked
//! as trace reads are.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query as QueryParams, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value as Json_, json};
use tv_model::TraceId;
use tv_model::otlp::{AnyValue, KeyValue, ResourceSpans, any_value};
use tv_traceql::{
    Attribute, BinOp, Field, Intrinsic, Literal, Pipeline, Query, Scope, SpansetExpr, Stage, Status,
};

use super::{Permit, noted};
use crate::AppState;
use crate::error::ApiError;
use crate::params::parse_go_duration;

/// Jaeger's answer, `{data, total, limit, offset, errors}`, noted for the audit with one result
/// per item (or `results`, when the items are counted otherwise).
fn answer<T: serde::Serialize>(
    auth: &crate::auth::Authorized,
    data: Vec<T>,
    results: Option<usize>,
    resource: Option<String>,
) -> Response {
    let n = data.len();
    let body = json!({"data": data, "total": n, "limit": 0, "offset": 0, "errors": null});
    noted(
        Json(body).into_response(),
        auth,
        results.unwrap_or(n),
        resource,
    )
}

fn micros(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>()
                .map(|us| us.saturating_mul(1000))
                .map_err(|_| ApiError::BadRequest(format!("{name} must be unix microseconds")))
        })
        .transpose()
}

const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

fn kind_name(k: i32) -> &'static str {
    KINDS.get(k as usize).copied().unwrap_or("unspecified")
}

/// `GET /jaeger/api/services`
pub async fn services(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let tenant = auth.tenant().clone();
    let ops = super::timed(&state, "jaeger_services", move |s| {
        s.store.operations(&tenant, None, None)
    })
    .await?;
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let mut names: Vec<String> = ops
        .into_iter()
        .map(|(s, _, _)| masker.marker("service.name", Some(&s)).unwrap_or(s))
        .filter(|s| !s.is_empty() && !s.starts_with("tracevault."))
        .collect();
    names.sort();
    names.dedup();
    Ok(answer(&auth, names, None, None))
}

async fn operations_of(
    state: &Arc<AppState>,
    auth: &crate::auth::Authorized,
    service: Option<String>,
    kind: Option<String>,
) -> Result<Vec<(String, &'static str)>, ApiError> {
    let tenant = auth.tenant().clone();
    let ops = super::timed(state, "jaeger_operations", move |s| {
        s.store.operations(&tenant, None, None)
    })
    .await?;
    let mut masker = crate::mask::Masker::new(state, auth);
    // A service is named as the caller sees it: one whose name the caller may not read only by
    // its marker, so asking by the real name reveals nothing (no oracle).
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for (s, n, k) in ops {
        let shown = masker.marker("service.name", Some(&s));
        if !s.starts_with("tracevault.")
            && service
                .as_ref()
                .is_none_or(|w| shown.as_ref().unwrap_or(&s) == w)
            && kind.as_ref().is_none_or(|w| w == kind_name(k))
        {
            out.push((masker.text(&n).unwrap_or(n), kind_name(k)));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `GET /jaeger/api/services/{service}/operations`
pub async fn service_operations(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let ops = operations_of(&state, &auth, Some(service), None).await?;
    let mut names: Vec<String> = ops.into_iter().map(|(n, _)| n).collect();
    names.dedup();
    Ok(answer(&auth, names, None, None))
}

/// `GET /jaeger/api/operations?service=&spanKind=`
pub async fn operations(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let service = params
        .get("service")
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("service is required".into()))?;
    let kind = params.get("spanKind").filter(|k| !k.is_empty()).cloned();
    if let Some(k) = &kind
        && !KINDS.contains(&k.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "spanKind must be one of {}",
            KINDS.join(", ")
        )));
    }
    let ops = operations_of(&state, &auth, Some(service), kind).await?;
    let data: Vec<Json_> = ops
        .iter()
        .map(|(n, k)| json!({"name": n, "spanKind": k}))
        .collect();
    Ok(answer(&auth, data, None, None))
}

fn attr(name: &str) -> Field {
    Field::Attribute(Attribute {
        scope: Scope::None,
        parent: false,
        name: name.to_owned(),
    })
}

fn and(a: Option<Field>, b: Field) -> Option<Field> {
    Some(match a {
        None => b,
        Some(a) => Field::Binary(BinOp::And, Box::new(a), Box::new(b)),
    })
}

fn eq(l: Field, r: Literal) -> Field {
    Field::Binary(BinOp::Eq, Box::new(l), Box::new(Field::Static(r)))
}

/// The TraceQL filter a Jaeger search stands for.
fn search_query(params: &HashMap<String, String>) -> Result<Query, ApiError> {
    let mut f: Option<Field> = None;
    if let Some(s) = params.get("service").filter(|s| !s.is_empty()) {
        f = and(
            f,
            eq(
                Field::Attribute(Attribute {
                    scope: Scope::Resource,
                    parent: false,
                    name: "service.name".into(),
                }),
                Literal::String(s.clone()),
            ),
        );
    }
    if let Some(o) = params.get("operation").filter(|s| !s.is_empty()) {
        f = and(
            f,
            eq(
                Field::Intrinsic(Intrinsic::Name),
                Literal::String(o.clone()),
            ),
        );
    }
    if let Some(t) = params.get("tags").filter(|s| !s.is_empty() && *s != "{}") {
        let tags: BTreeMap<String, String> = serde_json::from_str(t)
            .or_else(|_| {
                crate::params::parse_logfmt(t).map(|v| v.into_iter().collect())
            })
            .map_err(|_| {
                ApiError::BadRequest(
                    "tags must be a JSON object of strings ({\"http.status_code\":\"500\"}) or logfmt"
                        .into(),
                )
            })?;
        for (k, v) in tags {
            // Jaeger's own tags: error and span.kind.
            let cond = match (k.as_str(), v.as_str()) {
                ("error", "true") => eq(
                    Field::Intrinsic(Intrinsic::Status),
                    Literal::Status(Status::Error),
                ),
                ("error", "false") => Field::Binary(
                    BinOp::Neq,
                    Box::new(Field::Intrinsic(Intrinsic::Status)),
                    Box::new(Field::Static(Literal::Status(Status::Error))),
                ),
                _ => {
                    // A value that reads as a number or a boolean matches either form.
                    let mut c = eq(attr(&k), Literal::String(v.clone()));
                    let typed = v
                        .parse::<i64>()
                        .map(Literal::Int)
                        .ok()
                        .or_else(|| {
                            v.parse::<f64>()
                                .ok()
                                .filter(|x| x.is_finite())
                                .map(Literal::Float)
                        })
                        .or_else(|| v.parse::<bool>().ok().map(Literal::Bool));
                    if let Some(t) = typed {
                        c = Field::Binary(BinOp::Or, Box::new(c), Box::new(eq(attr(&k), t)));
                    }
                    c
                }
            };
            f = and(f, cond);
        }
    }
    for (name, op) in [("minDuration", BinOp::Gte), ("maxDuration", BinOp::Lte)] {
        if let Some(d) = params.get(name).filter(|s| !s.is_empty()) {
            let ns =
                parse_go_duration(d).map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))?;
            f = and(
                f,
                Field::Binary(
                    op,
                    Box::new(Field::Intrinsic(Intrinsic::Duration)),
                    Box::new(Field::Static(Literal::Duration(ns as i64))),
                ),
            );
        }
    }
    let q = Query {
        pipeline: Pipeline(vec![Stage::Spanset(SpansetExpr::Filter(f))]),
        metrics: None,
        hints: Vec::new(),
    };
    tv_traceql::check::check(&q).map_err(super::traceql::bad_query)?;
    Ok(q)
}

/// `GET /jaeger/api/traces?service=&operation=&tags=&start=&end=&minDuration=&maxDuration=&limit=`
pub async fn traces(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let query = search_query(&params)?;
    let limit = match params.get("limit").filter(|s| !s.is_empty()) {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=super::tempo::MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be between 1 and {}",
                    super::tempo::MAX_LIMIT
                )));
            }
        },
    };
    let start = micros(&params, "start")?;
    let end = micros(&params, "end")?;
    let resource = Some(format!(
        "jaeger search {}",
        tv_traceql::shape(&query.to_string())
    ));
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let view = masker.match_view();
    let query = super::traceql::as_searched_by(&state, &auth, &view, query)?;
    let tenant = auth.tenant().clone();
    let found: Vec<Vec<ResourceSpans>> = super::timed(&state, "jaeger_traces", move |s| {
        let mut out = Vec::new();
        super::traceql::each_match(
            s,
            &tenant,
            &query,
            view,
            start,
            end,
            (limit * 20).max(1000),
            &mut |_, _, data, _, _| {
                out.push(data.to_vec());
                out.len() < limit
            },
        )?;
        Ok(out)
    })
    .await?;
    let data: Vec<Json_> = found
        .into_iter()
        .map(|mut t| {
            masker.traces(&mut t);
            jaeger_trace(&t)
        })
        .collect();
    Ok(answer(&auth, data, None, resource))
}

/// `GET /jaeger/api/traces/{id}`
pub async fn trace(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let tid = TraceId::from_hex(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let tenant = auth.tenant().clone();
    let found = super::timed(&state, "jaeger_trace", move |s| {
        s.store.find_trace(&tenant, tid)
    })
    .await?;
    let Some(mut data) = found else {
        let body = json!({"data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": 404, "msg": "trace not found"}]});
        return Ok(noted(
            (StatusCode::NOT_FOUND, Json(body)).into_response(),
            &auth,
            0,
            None,
        ));
    };
    crate::mask::Masker::new(&state, &auth).traces(&mut data);
    let spans = tv_model::span_count(&data);
    Ok(answer(&auth, vec![jaeger_trace(&data)], Some(spans), None))
}

fn tag(kv: &KeyValue) -> Json_ {
    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
    let (ty, value) = match v {
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i)),
        Some(any_value::Value::DoubleValue(f)) => ("float64", json!(f)),
        Some(any_value::Value::BytesValue(b)) => ("binary", json!(hex::encode(b))),
        _ => (
            "string",
            json!(
                kv.value
                    .as_ref()
                    .map(tv_model::any_value_to_string)
                    .unwrap_or_default()
            ),
        ),
    };
    json!({"key": kv.key, "type": ty, "value": value})
}

fn string_tag(key: &str, v: &str) -> Json_ {
    tag(&KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    })
}

/// One trace in Jaeger's model: a process per resource, span kind and status as tags, events
/// as logs, the parent as CHILD_OF and links as FOLLOWS_FROM.
pub fn jaeger_trace(data: &[ResourceSpans]) -> Json_ {
    let mut processes = serde_json::Map::new();
    let mut spans = Vec::new();
    let mut trace_id = String::new();
    for (pi, rs) in data.iter().enumerate() {
        let pid = format!("p{}", pi + 1);
        let service = tv_model::service_name(rs.resource.as_ref()).unwrap_or("unknown_service");
        let ptags: Vec<Json_> = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .filter(|kv| kv.key != "service.name")
            .map(tag)
            .collect();
        processes.insert(pid.clone(), json!({"serviceName": service, "tags": ptags}));
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                let tid = hex::encode(&sp.trace_id);
                if trace_id.is_empty() {
                    trace_id = tid.clone();
                }
                let mut references = Vec::new();
                if !sp.parent_span_id.is_empty() {
                    references.push(json!({"refType": "CHILD_OF", "traceID": tid,
                        "spanID": hex::encode(&sp.parent_span_id)}));
                }
                for l in &sp.links {
                    references.push(json!({"refType": "FOLLOWS_FROM",
                        "traceID": hex::encode(&l.trace_id), "spanID": hex::encode(&l.span_id)}));
                }
                let mut tags: Vec<Json_> = sp.attributes.iter().map(tag).collect();
                if sp.kind > 0 {
                    tags.push(string_tag("span.kind", kind_name(sp.kind)));
                }
                if let Some(st) = &sp.status {
                    match st.code {
                        2 => {
                            tags.push(json!({"key": "error", "type": "bool", "value": true}));
                            tags.push(string_tag("otel.status_code", "ERROR"));
                        }
                        1 => tags.push(string_tag("otel.status_code", "OK")),
                        _ => {}
                    }
                    if !st.message.is_empty() {
                        tags.push(string_tag("otel.status_description", &st.message));
                    }
                }
                if let Some(scope) = &ss.scope
                    && !scope.name.is_empty()
                {
                    tags.push(string_tag("otel.scope.name", &scope.name));
                }
                let logs: Vec<Json_> = sp
                    .events
                    .iter()
                    .map(|e| {
                        let mut fields = vec![string_tag("event", &e.name)];
                        fields.extend(e.attributes.iter().map(tag));
                        json!({"timestamp": e.time_unix_nano / 1000, "fields": fields})
                    })
                    .collect();
                spans.push(json!({
                    "traceID": tid,
                    "spanID": hex::encode(&sp.span_id),
                    "operationName": sp.name,
                    "references": references,
                    "startTime": sp.start_time_unix_nano / 1000,
                    "duration": sp.end_time_unix_nano.saturating_sub(sp.start_time_unix_nano) / 1000,
                    "tags": tags,
                    "logs": logs,
                    "processID": pid,
                    "warnings": null,
                    "flags": 1,
                }));
            }
        }
    }
    json!({"traceID": trace_id, "spans": spans, "processes": processes, "warnings": null})
}

/// `GET /jaeger/api/dependencies?endTs=&lookback=` (milliseconds, as Jaeger's UI sends them):
/// the calls between services in the window, from the service graph kept at ingest.
pub async fn dependencies(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let ms = |name: &str, default: u64| -> Result<u64, ApiError> {
        match params.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{name} must be milliseconds"))),
        }
    };
    let now_ms = tv_access::now_unix().saturating_mul(1000);
    let end = ms("endTs", now_ms)?;
    let lookback = ms("lookback", 3_600_000)?;
    let deps = state.graph.dependencies(
        auth.tenant(),
        end.saturating_sub(lookback).saturating_mul(1_000_000),
        end.saturating_mul(1_000_000),
    );
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let data: Vec<Json_> = deps
        .into_iter()
        .map(|d| {
            let p = masker
                .marker("service.name", Some(&d.parent))
                .unwrap_or(d.parent);
            let c = masker
                .marker("service.name", Some(&d.child))
                .unwrap_or(d.child);
            json!({"parent": p, "child": c, "callCount": d.calls, "errorCount": d.errors})
        })
        .collect();
    Ok(answer(&auth, data, None, None))
}
