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
/// Matching spans whose values a tag-values lookup narrowed by a span-local `q` reads, at most
/// (the newest first; about what 1,000 traces hold).
const MAX_VALUE_SPANS: usize = 10_000;

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
    let query = as_searched_by(state, auth, &view, query)?;
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

/// How far a query's evaluation went: the candidate traces its prefilter chose (at most the
/// budget) and the traces read whole.
pub struct Scanned {
    pub candidates: usize,
    pub inspected: usize,
}

/// What [`each_match`] calls for a matching trace: the evaluator, the trace id, its data, the
/// prepared trace and its spansets; it answers whether to go on.
pub type EachMatch<'a> = dyn FnMut(
        &mut Evaluator,
        TraceId,
        &[tv_model::otlp::ResourceSpans],
        &Trace<'_>,
        Vec<tv_traceql::eval::Spanset>,
    ) -> bool
    + 'a;

/// Evaluates `query` as the caller may see the data (`view`): candidate traces in
/// `[start, end]` chosen by the query's prefilter and block hints, newest first, each read whole
/// and evaluated; `each` gets every trace with spansets (its data, the trace and the spansets)
/// and says whether to go on. The one way search, tag values, metrics and Jaeger read traces.
#[allow(clippy::too_many_arguments)]
pub fn each_match(
    state: &AppState,
    tenant: &tv_model::TenantId,
    query: &Query,
    view: crate::mask::MatchView,
    start: Option<u64>,
    end: Option<u64>,
    budget: usize,
    each: &mut EachMatch<'_>,
) -> Result<Scanned, tv_store::StoreError> {
    let pre = prefilter(query);
    let hints = block_hints(query, &view);
    let mut ev = Evaluator::with_view(Box::new(view));
    let cands = state.store.candidates(
        tenant,
        start,
        end,
        &hints,
        budget,
        &mut |rs, ss, span| match &pre {
            None => true,
            Some(p) => ev.field(p, &Trace::one(rs, ss, span), 0) == Value::Bool(true),
        },
    )?;
    let mut scanned = Scanned {
        candidates: cands.len(),
        inspected: 0,
    };
    for (tid, _) in cands {
        let Some(data) = state.store.find_trace(tenant, tid)? else {
            continue;
        };
        scanned.inspected += 1;
        let t = Trace::new(&data);
        let sets = ev.spansets(query, &t);
        if !sets.is_empty() && !each(&mut ev, tid, &data, &t, sets) {
            break;
        }
    }
    Ok(scanned)
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
    let fields = referenced(query);
    let mut out = Vec::new();
    // A query that selects spans one at a time matches every candidate its per-span condition
    // finds: `limit` candidates are the answer. Others may reject candidates on the whole trace.
    let budget = if tv_traceql::eval::span_local(query, &[]).is_some() {
        limit
    } else {
        (limit * 20).max(1000)
    };
    let scanned = each_match(
        state,
        tenant,
        query,
        view,
        start,
        end,
        budget,
        &mut |ev, tid, _, t, sets| {
            out.push(trace_json(ev, tid, t, &sets, &fields, spss));
            out.len() < limit
        },
    )?;
    Ok((out, scanned.inspected))
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

/// Tempo's intrinsic tag names, as Grafana lists them under the `intrinsic` scope.
const INTRINSIC_TAGS: &[&str] = &[
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:kind",
    "span:name",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

fn scope_name(s: tv_store::TagScope) -> &'static str {
    use tv_store::TagScope::*;
    match s {
        Resource => "resource",
        Span | Unknown => "span",
        Event => "event",
        Link => "link",
        Instrumentation => "instrumentation",
    }
}

/// `GET /api/v2/search/tags?scope=&start=&end=&limit=`: attribute names by scope, and the
/// intrinsics, in Tempo's shape (`scopes[]` of `{name, tags}`). Names that hold a pseudonym
/// are marked for callers who may not read them. `q` is accepted and not used: the names
/// are the tenant's in the window.
pub async fn tags_v2(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    permit: super::Permit,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    const SCOPES: &[&str] = &[
        "resource",
        "span",
        "event",
        "link",
        "instrumentation",
        "intrinsic",
    ];
    let wanted = match params.get("scope").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(s) if SCOPES.contains(&s) => Some(s.to_owned()),
        Some(s) => {
            return Err(ApiError::BadRequest(format!(
                "scope {:?} is not one of {}",
                s.chars().take(32).collect::<String>(),
                SCOPES.join(", ")
            )));
        }
    };
    let limit = number(&params, "limit", 5000, 100_000)?;
    let start = unix_secs(&params, "start")?;
    let end = unix_secs(&params, "end")?.map(|e| e.saturating_add(999_999_999));
    let tenant = auth.tenant().clone();
    let by_scope = super::timed(&state, "tags_v2", move |s| {
        s.store.scoped_tag_names(&tenant, start, end)
    })
    .await?;
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let mut scopes: Vec<(String, Vec<String>)> = Vec::new();
    for (scope, names) in by_scope {
        let name = scope_name(scope).to_owned();
        let mut tags: Vec<String> = names
            .into_iter()
            .map(|n| masker.text(&n).unwrap_or(n))
            .collect();
        match scopes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => t.append(&mut tags),
            None => scopes.push((name, tags)),
        }
    }
    scopes.push((
        "intrinsic".into(),
        INTRINSIC_TAGS.iter().map(|s| s.to_string()).collect(),
    ));
    let mut n = 0;
    let out: Vec<Json_> = scopes
        .into_iter()
        .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w == name))
        .map(|(name, mut tags)| {
            tags.sort();
            tags.dedup();
            tags.truncate(limit);
            n += tags.len();
            json!({"name": name, "tags": tags})
        })
        .collect();
    Ok(noted(
        Json(json!({ "scopes": out, "metrics": {} })).into_response(),
        &auth,
        n,
        None,
    ))
}

/// `GET /api/v2/search/tag/<TraceQL field>/values?q=&start=&end=&limit=`: the values of a
/// scoped attribute or intrinsic (`resource.service.name`, `.http.method`, `status`, `name`),
/// as `{type, value}`. Grafana encodes the field twice; both forms are read. With `q`, only
/// values of spans the query's filter finds (evaluated as the caller may see the data: a
/// restricted field narrows nothing and shows nothing); a `q` that does not parse is ignored,
/// as Tempo does while a query is being typed.
pub async fn tag_values_v2(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    permit: super::Permit,
    axum::extract::Path(tag): axum::extract::Path<String>,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let tag = if tag.contains('%') {
        percent_encoding::percent_decode_str(&tag)
            .decode_utf8()
            .map(|c| c.into_owned())
            .unwrap_or(tag)
    } else {
        tag
    };
    if tag.is_empty() || tag.len() > 256 {
        return Err(ApiError::BadRequest("tag must be 1 to 256 bytes".into()));
    }
    // The tag is a TraceQL field: read it the way a filter names it.
    let field = match tv_traceql::parse_only(&format!("{{ {tag} }}")) {
        Ok(q) => match q.pipeline.0.first() {
            Some(tv_traceql::Stage::Spanset(tv_traceql::SpansetExpr::Filter(Some(f))))
                if q.pipeline.0.len() == 1
                    && matches!(f, Field::Attribute(_) | Field::Intrinsic(_)) =>
            {
                f.clone()
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "tag {:?} is not an attribute or intrinsic (span.http.method, resource.service.name, .name, status)",
                    tag.chars().take(64).collect::<String>()
                )));
            }
        },
        Err(e) => return Err(bad_query(e)),
    };
    let limit = number(&params, "limit", 1000, 10_000)?;
    let start = unix_secs(&params, "start")?;
    let end = unix_secs(&params, "end")?.map(|e| e.saturating_add(999_999_999));
    let filter = params
        .get("q")
        .and_then(|q| tv_traceql::parse(q).ok())
        .filter(|q| q.metrics.is_none());
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let view = masker.match_view();
    let filter = filter
        .map(|q| as_searched_by(&state, &auth, &view, q))
        .transpose()?;
    let tenant = auth.tenant().clone();
    let f2 = field.clone();
    let values: Vec<(String, String)> = super::timed(&state, "tag_values_v2", move |s| {
        values_of(s, &tenant, &f2, filter.as_ref(), view, start, end, limit)
    })
    .await?;
    // Restricted values read as their marker, once.
    let key = match &field {
        Field::Attribute(a) => a.name.clone(),
        _ => String::new(),
    };
    let mut shown: Vec<Json_> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (t, v) in values {
        let v = masker.marker(&key, Some(&v)).unwrap_or(v);
        if seen.insert(v.clone()) {
            shown.push(json!({"type": t, "value": v}));
        }
    }
    let n = shown.len();
    Ok(noted(
        Json(json!({ "tagValues": shown, "metrics": {} })).into_response(),
        &auth,
        n,
        Some(format!("tag values {}", tv_traceql::shape(&tag))),
    ))
}

#[allow(clippy::too_many_arguments)]
fn values_of(
    state: &AppState,
    tenant: &tv_model::TenantId,
    field: &Field,
    filter: Option<&Query>,
    view: crate::mask::MatchView,
    start: Option<u64>,
    end: Option<u64>,
    limit: usize,
) -> Result<Vec<(String, String)>, tv_store::StoreError> {
    use tv_store::TagScope;
    let keyword = |names: &[&str]| {
        names
            .iter()
            .map(|n| ("keyword".to_string(), n.to_string()))
            .collect()
    };
    // Fixed vocabularies need no scan.
    if filter.is_none() {
        match field {
            Field::Intrinsic(Intrinsic::Status) => return Ok(keyword(&["error", "ok", "unset"])),
            Field::Intrinsic(Intrinsic::Kind) => {
                return Ok(keyword(&[
                    "client",
                    "consumer",
                    "internal",
                    "producer",
                    "server",
                    "unspecified",
                ]));
            }
            Field::Attribute(a) if !a.parent => {
                use tv_traceql::Scope;
                let scopes: &[TagScope] = match a.scope {
                    Scope::None => &[TagScope::Span, TagScope::Resource],
                    Scope::Span => &[TagScope::Span],
                    Scope::Resource => &[TagScope::Resource],
                    Scope::Event => &[TagScope::Event],
                    Scope::Link => &[TagScope::Link],
                    Scope::Instrumentation => &[TagScope::Instrumentation],
                };
                // A restricted attribute's values read as one marker (the handler masks them).
                let vals = state
                    .store
                    .scoped_tag_values(tenant, scopes, &a.name, start, end, limit)?;
                return Ok(vals.into_iter().map(|(v, t)| (t.to_string(), v)).collect());
            }
            _ => {}
        }
    }
    // Otherwise: the values on spans the filter finds (every span without a filter).
    let q = filter
        .cloned()
        .unwrap_or_else(|| tv_traceql::parse("{ }").expect("{ } parses"));
    let mut out: Vec<(String, String)> = Vec::new();
    // Each value once, with its type, up to `limit`.
    let take = |v: Value, out: &mut Vec<(String, String)>| {
        let items = match v {
            Value::Nil => return,
            Value::List(items) => items,
            other => vec![other],
        };
        for v in items {
            let ty = match &v {
                Value::Int(_) => "int",
                Value::Float(_) => "float",
                Value::Bool(_) => "bool",
                Value::Duration(_) => "duration",
                Value::Status(_) | Value::Kind(_) => "keyword",
                _ => "string",
            };
            let entry = (ty.to_string(), v.to_text());
            if !out.contains(&entry) && out.len() < limit {
                out.push(entry);
            }
        }
    };
    if let Some(cond) = tv_traceql::eval::span_local(&q, &[field]) {
        // One span at a time in the columns: the values on the newest matching spans.
        let mut hints = block_hints(&q, &view);
        if let Some(read) = hints.span_attributes.as_mut() {
            attribute_names(field, read);
        }
        let mut ev = Evaluator::with_view(Box::new(view));
        let mut matched = 0usize;
        state
            .store
            .visit(tenant, start, end, &hints, &mut |v| match v {
                tv_store::Visit::Span(rs, ss, span) => {
                    let t = Trace::one(rs, ss, span);
                    if cond.is_none_or(|c| ev.field(c, &t, 0) == Value::Bool(true)) {
                        matched += 1;
                        take(ev.field(field, &t, 0), &mut out);
                    }
                    out.len() < limit
                }
                _ => out.len() < limit && matched < MAX_VALUE_SPANS,
            })?;
        return Ok(out);
    }
    each_match(
        state,
        tenant,
        &q,
        view,
        start,
        end,
        1000,
        &mut |ev, _, _, t, sets| {
            for set in sets {
                for i in set.spans {
                    take(ev.field(field, t, i), &mut out);
                }
            }
            out.len() < limit
        },
    )?;
    Ok(out)
}

/// The attribute names `f` reads, added to `out`.
fn attribute_names(f: &Field, out: &mut Vec<String>) {
    match f {
        Field::Attribute(a) => out.push(a.name.clone()),
        Field::Binary(_, l, r) => {
            attribute_names(l, out);
            attribute_names(r, out);
        }
        Field::Unary(_, e) => attribute_names(e, out),
        Field::Static(_) | Field::Intrinsic(_) => {}
    }
}

/// Blocks a query need not open: those whose index lacks a span name or attribute value every
/// match must have. Fields the caller may not read give no hint (opening or skipping blocks by
/// them would tell).
pub fn block_hints(q: &Query, view: &crate::mask::MatchView) -> tv_store::BlockHints {
    use tv_store::TagScope;
    use tv_traceql::Scope;
    use tv_traceql::eval::View;
    let (names, attrs) = tv_traceql::eval::required_equalities(q);
    let attributes = attrs
        .into_iter()
        .filter(|(a, _)| !view.hides(&a.name))
        .map(|(a, v)| {
            let scopes = match a.scope {
                Scope::None => vec![TagScope::Span, TagScope::Resource],
                Scope::Span => vec![TagScope::Span],
                Scope::Resource => vec![TagScope::Resource],
                Scope::Event => vec![TagScope::Event],
                Scope::Link => vec![TagScope::Link],
                Scope::Instrumentation => vec![TagScope::Instrumentation],
            };
            (scopes, a.name, v)
        })
        .collect();
    // A name may hold a pseudonym the caller may not read: no hint then either.
    let names = names
        .into_iter()
        .filter(|n| view.text(n).is_none())
        .collect();
    tv_store::BlockHints {
        service: required_service(q),
        names,
        attributes,
        span_attributes: read_attributes(q),
    }
}

/// The attribute names a query reads anywhere (filters, `by`, `select`, metrics): the only span
/// attributes its matchers need decoded. `None` when it aggregates over fields in a scalar
/// filter (those are not walked here): then every attribute is decoded.
fn read_attributes(q: &Query) -> Option<Vec<String>> {
    use tv_traceql::Stage;
    let names = attribute_names;
    if q.pipeline.0.iter().any(|s| matches!(s, Stage::Scalar(_)))
        || q.metrics
            .as_ref()
            .is_some_and(|m| matches!(m.function, tv_traceql::MetricsFn::Compare(..)))
    {
        return None;
    }
    let mut out = Vec::new();
    for f in referenced(q) {
        names(&f, &mut out);
    }
    if let Some(m) = &q.metrics {
        for f in &m.by {
            names(f, &mut out);
        }
        if let Some(f) = m.function.field() {
            names(f, &mut out);
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// The query as `view`'s caller searches: with [`with_pseudonyms`] for a caller who may read
/// pseudonyms and look people up (`lookup_person`), as written for others.
pub fn as_searched_by(
    state: &AppState,
    auth: &crate::auth::Authorized,
    view: &crate::mask::MatchView,
    query: Query,
) -> Result<Query, ApiError> {
    let may_look_up = crate::auth::authorize_on(
        &state.policy(),
        auth.principal(),
        tv_access::Action::LookupPerson,
        auth.tenant().clone(),
    )
    .is_ok();
    if view.reads_pseudonyms() && may_look_up {
        with_pseudonyms(state, auth, query)
    } else {
        Ok(query)
    }
}

/// For a caller who may read pseudonyms and look people up: every `field = "value"` (and `!=`)
/// of the query whose value can have a pseudonym (under an identity key redaction hashes, or an
/// email or address as a whole) also matches the pseudonyms redaction wrote for it, so an
/// investigator can search by a known value (`{ span.user.email = "alice@example.com" }` finds
/// the stored `hmac:...`). Each such value is a person lookup: counted against the caller's
/// limit like `POST /api/pseudonym`, and audited with the count. Never applied for other
/// callers: they would learn which pseudonym a value has.
pub fn with_pseudonyms(
    state: &AppState,
    auth: &crate::auth::Authorized,
    mut q: Query,
) -> Result<Query, ApiError> {
    let tenant = auth.tenant();
    use tv_traceql::{BinOp, Literal, Pipeline, SpansetExpr, Stage};
    type Pseudonyms<'a> = dyn FnMut(&str, &str) -> Result<Vec<String>, ApiError> + 'a;
    fn field(f: &mut Field, p: &mut Pseudonyms<'_>) -> Result<(), ApiError> {
        match f {
            Field::Binary(op @ (BinOp::Eq | BinOp::Neq), l, r) => {
                let (attr, lit) = match (l.as_ref(), r.as_ref()) {
                    (a @ Field::Attribute(_), Field::Static(Literal::String(v)))
                    | (Field::Static(Literal::String(v)), a @ Field::Attribute(_)) => {
                        (a.clone(), v.clone())
                    }
                    _ => return Ok(()),
                };
                if lit.starts_with("hmac:") {
                    return Ok(());
                }
                let op = *op;
                // `=`: the value or any of its pseudonyms; `!=`: none of them.
                let join = if op == BinOp::Eq {
                    BinOp::Or
                } else {
                    BinOp::And
                };
                let Field::Attribute(a) = &attr else {
                    return Ok(());
                };
                for ps in p(&a.name, &lit)? {
                    let alt = Field::Binary(
                        op,
                        Box::new(attr.clone()),
                        Box::new(Field::Static(Literal::String(ps))),
                    );
                    let cur = std::mem::replace(f, Field::Static(Literal::Nil));
                    *f = Field::Binary(join, Box::new(cur), Box::new(alt));
                }
                Ok(())
            }
            Field::Binary(_, l, r) => {
                field(l, p)?;
                field(r, p)
            }
            Field::Unary(_, e) => field(e, p),
            _ => Ok(()),
        }
    }
    fn spanset(e: &mut SpansetExpr, p: &mut Pseudonyms<'_>) -> Result<(), ApiError> {
        match e {
            SpansetExpr::Filter(Some(f)) => field(f, p),
            SpansetExpr::Filter(None) => Ok(()),
            SpansetExpr::Op(_, l, r) => {
                spanset(l, p)?;
                spanset(r, p)
            }
            SpansetExpr::Group(pl) => pipeline(pl, p),
        }
    }
    fn pipeline(pl: &mut Pipeline, p: &mut Pseudonyms<'_>) -> Result<(), ApiError> {
        for s in &mut pl.0 {
            if let Stage::Spanset(e) = s {
                spanset(e, p)?;
            }
        }
        Ok(())
    }
    let active = state.redaction.active();
    let Some(rules) = active.rules.as_ref() else {
        return Ok(q);
    };
    let identity = rules.identity_keys(tenant.as_str());
    let principal = auth.principal().id();
    let mut looked_up: std::collections::BTreeSet<String> = Default::default();
    let mut total = 0;
    let mut pseudonyms = |key: &str, v: &str| {
        // Only values that can have a pseudonym: under an identity key, or a whole email or
        // address (what the detectors hash); anything else is searched as written, uncounted.
        let whole_hashed = matches!(
            tv_redact::scan(v).as_slice(),
            [f] if f.start == 0 && f.end == v.len()
                && matches!(f.kind, tv_redact::Kind::Email | tv_redact::Kind::IpAddress)
        );
        if !identity.iter().any(|k| k == key) && !whole_hashed {
            return Ok(Vec::new());
        }
        if looked_up.insert(v.to_owned()) {
            total = super::person::charge(state, &principal)?;
        }
        state
            .redaction
            .pseudonyms_of(tenant, v)
            .map_err(|e| ApiError::Internal(format!("pseudonym key: {e}")))
    };
    pipeline(&mut q.pipeline, &mut pseudonyms)?;
    if !looked_up.is_empty() {
        // The search's own record keeps the query's shape; this one counts the lookups.
        state.audit.request(
            auth.principal(),
            tenant,
            None,
            "api",
            tv_access::Action::LookupPerson.name(),
            format!(
                "TraceQL values searched by pseudonym: {} (lookup {total} of this principal)",
                looked_up.len()
            ),
            200,
            Some(looked_up.len() as u64),
            None,
        );
    }
    Ok(q)
}
