//! TraceQL search (`GET /api/search?q=...`), in Tempo's response shape.
//!
//! Plan: the query's prefilter (a condition one span of every match must meet) and required
//! service pick candidate traces from the WAL head and the blocks (blocks without the service
//! are not opened); each candidate trace is read whole and the query evaluated on it, as the
//! caller may see it: attributes of a class the caller may not read are absent and pseudonyms
//! it may not read are masked, so a filter on them finds nothing (no oracle). Returned values
//! are masked as trace reads are. The audit record keeps the query's shape, not its literals.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json_, json};
use tv_model::TraceId;
use tv_traceql::eval::{Evaluator, Trace, Value, prefilter, referenced, required_service};
use tv_traceql::{Field, Intrinsic, Query};

use super::{noted, unix_secs};
use crate::AppState;
use crate::auth::Authorized;
use crate::error::ApiError;
use crate::metrics::EndpointLabels;

/// Spans returned per spanset unless `spss` says otherwise (Tempo's default).
const DEFAULT_SPSS: usize = 3;
const MAX_SPSS: usize = 1000;

/// What a TraceQL error answers: 400, naming what was wrong and where.
pub fn bad_query(e: tv_traceql::Error) -> ApiError {
    ApiError::BadRequest(format!("TraceQL: {e}"))
}

fn number(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be between 1 and {max}"
            ))),
        },
    }
}

pub async fn search(
    state: &Arc<AppState>,
    auth: &Authorized,
    q: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let resource = Some(
        format!("search q={}", tv_traceql::shape(q))
            .chars()
            .take(512)
            .collect::<String>(),
    );
    let query = tv_traceql::parse(q).map_err(bad_query)?;
    if query.metrics.is_some() {
        return Err(ApiError::BadRequest(
            "TraceQL: a metrics query (rate(), count_over_time(), ...) is answered by /api/metrics/query_range".into(),
        ));
    }
    let limit = number(params, "limit", 20, super::tempo::MAX_LIMIT)?;
    let spss = number(params, "spss", DEFAULT_SPSS, MAX_SPSS)?;
    let start = unix_secs(params, "start")?;
    let end = unix_secs(params, "end")?.map(|e| e.saturating_add(999_999_999));
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::BadRequest("start must not be after end".into()));
    }
    let mut masker = crate::mask::Masker::new(state, auth);
    let view = masker.match_view();
    let tenant = auth.tenant().clone();
    let st = state.clone();
    let started = std::time::Instant::now();
    let found = tokio::task::spawn_blocking(move || {
        run(&st, &tenant, &query, view, start, end, limit, spss)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from_store)?;
    state
        .metrics
        .query_duration
        .get_or_create(&EndpointLabels {
            endpoint: "traceql_search",
        })
        .observe(started.elapsed().as_secs_f64());
    let (mut traces, inspected) = found;
    // Names and values read as a trace read shows them.
    for t in &mut traces {
        mask_json(&mut masker, t);
    }
    let n = traces.len();
    Ok(noted(
        Json(json!({
            "traces": traces,
            "metrics": { "inspectedTraces": inspected },
        }))
        .into_response(),
        auth,
        n,
        resource,
    ))
}

/// Masks what a result holds for this caller: the root service and name, span names, and
/// every returned attribute (by key class, and pseudonyms in text).
fn mask_json(masker: &mut crate::mask::Masker<'_>, t: &mut Json_) {
    for key in ["rootServiceName", "rootTraceName"] {
        if let Some(Json_::String(s)) = t.get_mut(key) {
            let k = if key == "rootServiceName" {
                "service.name"
            } else {
                "name"
            };
            if let Some(m) = masker.marker(k, Some(s)) {
                *s = m;
            }
        }
    }
    let mask_attrs = |masker: &mut crate::mask::Masker<'_>, attrs: Option<&mut Json_>| {
        if let Some(Json_::Array(a)) = attrs {
            for kv in a {
                let key = kv["key"].as_str().unwrap_or("").to_owned();
                if let Some(Json_::String(v)) = kv.pointer_mut("/value/stringValue")
                    && let Some(m) = masker.marker(&key, Some(v))
                {
                    *v = m;
                }
            }
        }
    };
    if let Some(Json_::Array(sets)) = t.get_mut("spanSets") {
        for set in sets {
            mask_attrs(masker, set.get_mut("attributes"));
            if let Some(Json_::Array(spans)) = set.get_mut("spans") {
                for sp in spans {
                    if let Some(Json_::String(n)) = sp.get_mut("name")
                        && let Some(m) = masker.text(n)
                    {
                        *n = m;
                    }
                    mask_attrs(masker, sp.get_mut("attributes"));
                }
            }
        }
    }
    // The deprecated single spanSet repeats the first.
    if let Some(first) = t.get("spanSets").and_then(|s| s.get(0)).cloned() {
        t["spanSet"] = first;
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    state: &AppState,
    tenant: &tv_model::TenantId,
    query: &Query,
    view: crate::mask::MatchView,
    start: Option<u64>,
    end: Option<u64>,
    limit: usize,
    spss: usize,
) -> Result<(Vec<Json_>, usize), tv_store::StoreError> {
    let pre = prefilter(query);
    let service = required_service(query);
    let fields = referenced(query);
    let budget = (limit * 20).max(1000);
    let mut ev = Evaluator::with_view(Box::new(view));
    let cands = state.store.candidates(
        tenant,
        start,
        end,
        service.as_deref(),
        budget,
        &mut |rs, ss, span| match &pre {
            None => true,
            Some(p) => ev.field(p, &Trace::one(rs, ss, span), 0) == Value::Bool(true),
        },
    )?;
    let mut out = Vec::new();
    let mut inspected = 0;
    for (tid, _) in cands {
        if out.len() >= limit {
            break;
        }
        let Some(data) = state.store.find_trace(tenant, tid)? else {
            continue;
        };
        inspected += 1;
        let t = Trace::new(&data);
        let sets = ev.spansets(query, &t);
        if sets.is_empty() {
            continue;
        }
        out.push(trace_json(&mut ev, tid, &t, &sets, &fields, spss));
    }
    Ok((out, inspected))
}

fn trace_json(
    ev: &mut Evaluator,
    tid: TraceId,
    t: &Trace<'_>,
    sets: &[tv_traceql::eval::Spanset],
    fields: &[Field],
    spss: usize,
) -> Json_ {
    let (root_service, root_name) = match t.root {
        Some(r) => (
            tv_model::service_name(t.spans[r].resource.resource.as_ref())
                .unwrap_or("")
                .to_owned(),
            t.spans[r].span.name.clone(),
        ),
        None => ("<root span not yet received>".to_owned(), String::new()),
    };
    let spansets: Vec<Json_> = sets
        .iter()
        .map(|set| {
            let mut wanted: Vec<Field> = fields.to_vec();
            for f in &set.selected {
                if !wanted.contains(f) {
                    wanted.push(f.clone());
                }
            }
            let spans: Vec<Json_> = set
                .spans
                .iter()
                .take(spss)
                .map(|&i| {
                    let sp = t.spans[i].span;
                    let attributes: Vec<Json_> = wanted
                        .iter()
                        .filter(|f| {
                            !matches!(f, Field::Intrinsic(Intrinsic::Name | Intrinsic::Duration))
                        })
                        .filter_map(|f| {
                            let v = ev.field(f, t, i);
                            (v != Value::Nil).then(|| json!({"key": key_of(f), "value": any_value(&v)}))
                        })
                        .collect();
                    json!({
                        "spanID": hex::encode(&sp.span_id),
                        "name": sp.name,
                        "startTimeUnixNano": sp.start_time_unix_nano.to_string(),
                        "durationNanos": sp.end_time_unix_nano.saturating_sub(sp.start_time_unix_nano).to_string(),
                        "attributes": attributes,
                    })
                })
                .collect();
            let attributes: Vec<Json_> = set
                .attributes
                .iter()
                .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
                .collect();
            json!({
                "spans": spans,
                "matched": set.spans.len(),
                "attributes": attributes,
            })
        })
        .collect();
    json!({
        "traceID": tid.to_hex(),
        "rootServiceName": root_service,
        "rootTraceName": root_name,
        "startTimeUnixNano": t.start.to_string(),
        "durationMs": t.end.saturating_sub(t.start) / 1_000_000,
        "spanSets": spansets,
    })
}

/// How Tempo names a returned field: an attribute without its scope, an intrinsic by name.
fn key_of(f: &Field) -> String {
    match f {
        Field::Attribute(a) => a.name.clone(),
        Field::Intrinsic(i) => {
            let (scope, name) = i.scoped_name();
            match scope {
                "span" => name.to_owned(),
                _ => format!("{scope}:{name}"),
            }
        }
        other => other.to_string(),
    }
}

/// A value in OTLP's JSON form (`{"stringValue": ...}`); durations as Go-style text.
fn any_value(v: &Value<'_>) -> Json_ {
    match v {
        Value::Int(i) => json!({"intValue": i.to_string()}),
        Value::Float(f) => json!({"doubleValue": f}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::List(items) => {
            json!({"arrayValue": {"values": items.iter().map(any_value).collect::<Vec<_>>()}})
        }
        other => json!({"stringValue": other.to_text()}),
    }
}
