//! TraceQL metrics (`GET /api/metrics/query_range` and `GET /api/metrics/query`), in Tempo's
//! response shape: series of labels and samples.
//!
//! The spans a query's pipeline selects are counted into time buckets of `step` (one bucket
//! over the whole range for the instant query), per group of its `by(...)` values: `rate()`
//! (spans per second), `count_over_time()`, `min/max/avg/sum_over_time(field)`,
//! `quantile_over_time(field, q...)` (one series per quantile, label `p`) and
//! `histogram_over_time(field)` (one series per power-of-two bucket, label `__bucket`; durations
//! in seconds). `topk(n)`/`bottomk(n)` keep the n series with the largest or smallest total.
//! Data are read as the caller may see them, as in search: a restricted field groups as nil.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query as QueryParams, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json_, json};
use tv_store::Visit;
use tv_traceql::eval::{Evaluator, Trace, Value};
use tv_traceql::{Field, Metrics, MetricsFn, Query, SecondStage};

use super::traceql::bad_query;
use super::{Permit, noted};
use crate::AppState;
use crate::error::ApiError;
use crate::params::parse_go_duration;

/// Most samples a range query may ask for (series x points is bounded separately).
const MAX_POINTS: u64 = 11_000;
/// Most traces one metrics query reads when it needs whole traces (structural operators,
/// trace-level fields); beyond it the answer is partial and says so.
const MAX_TRACES: usize = 50_000;
/// Most spans one metrics query reads when it selects spans one at a time; beyond it the
/// answer is partial and says so.
const MAX_SPANS: u64 = 20_000_000;
/// Most series one answer holds.
const MAX_SERIES: usize = 1000;
/// Most values kept per series and bucket for quantiles.
const MAX_QUANTILE_VALUES: usize = 10_000;

/// A time parameter: unix seconds, unix nanoseconds, or RFC 3339.
fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(v) = params.get(name) else {
        return Ok(None);
    };
    if let Ok(n) = v.parse::<u64>() {
        // Nanoseconds are the values past year 2286 in seconds.
        return Ok(Some(if n > 10_000_000_000 {
            n
        } else {
            n.saturating_mul(1_000_000_000)
        }));
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp_nanos().max(0) as u64))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name} must be unix seconds, unix nanoseconds or RFC 3339"
            ))
        })
}

struct Range {
    start: u64,
    end: u64,
    step: u64,
}

fn range(params: &HashMap<String, String>, instant: bool) -> Result<Range, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let end = time_param(params, "end")?.unwrap_or(now);
    let start = match (time_param(params, "start")?, params.get("since")) {
        (Some(s), _) => s,
        (None, Some(since)) => end.saturating_sub(
            parse_go_duration(since).map_err(|e| ApiError::BadRequest(format!("since: {e}")))?,
        ),
        (None, None) => end.saturating_sub(3600 * 1_000_000_000),
    };
    if start >= end {
        return Err(ApiError::BadRequest("start must be before end".into()));
    }
    let span = end - start;
    let step = if instant {
        span
    } else {
        match params.get("step") {
            Some(s) => {
                parse_go_duration(s).map_err(|e| ApiError::BadRequest(format!("step: {e}")))?
            }
            // About a hundred points, in whole seconds.
            None => (span / 100).max(1_000_000_000) / 1_000_000_000 * 1_000_000_000,
        }
    };
    if step == 0 {
        return Err(ApiError::BadRequest("step must be greater than 0".into()));
    }
    if span / step > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "{} points of {step} ns are more than {MAX_POINTS}: widen step or narrow the range",
            span / step
        )));
    }
    Ok(Range { start, end, step })
}

pub async fn query_range(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    metrics(state, permit, params, false).await
}

pub async fn query_instant(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    metrics(state, permit, params, true).await
}

async fn metrics(
    state: Arc<AppState>,
    permit: Permit,
    params: HashMap<String, String>,
    instant: bool,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let q = params
        .get("q")
        .ok_or_else(|| ApiError::BadRequest("q (a TraceQL metrics query) is required".into()))?;
    let resource = Some(
        format!("metrics q={}", tv_traceql::shape(q))
            .chars()
            .take(512)
            .collect::<String>(),
    );
    let query = tv_traceql::parse(q).map_err(bad_query)?;
    let Some(m) = query.metrics.clone() else {
        return Err(ApiError::BadRequest(
            "TraceQL: a metrics query ends in a metrics function ({ } | rate()); searches go to /api/search"
                .into(),
        ));
    };
    if let MetricsFn::Compare(..) = m.function {
        return Err(bad_query(tv_traceql::Error::Unsupported {
            what: "compare()".into(),
        }));
    }
    let r = range(&params, instant)?;
    let mut masker = crate::mask::Masker::new(&state, &auth);
    let view = masker.match_view();
    let query = super::traceql::as_searched_by(&state, &auth, &view, query)?;
    let tenant = auth.tenant().clone();
    let (series, partial) = super::timed(&state, "metrics", move |s| {
        compute(s, &tenant, &query, &m, view, &r)
    })
    .await?;
    // Label values read as a trace read shows them.
    let mut out = Vec::new();
    for (labels, samples) in series {
        let labels: Vec<Json_> = labels
            .into_iter()
            .map(|(k, v)| {
                // nil is the group of spans without the value (or that may not read it).
                let v = if v == "nil" {
                    v
                } else {
                    masker.marker(attribute_name(&k), Some(&v)).unwrap_or(v)
                };
                json!({"key": k, "value": {"stringValue": v}})
            })
            .collect();
        if instant {
            let value = samples.values().next().copied().unwrap_or(0.0);
            out.push(json!({"labels": labels, "value": value}));
        } else {
            let samples: Vec<Json_> = samples
                .into_iter()
                .map(|(ts, v)| json!({"timestampMs": (ts / 1_000_000).to_string(), "value": v}))
                .collect();
            out.push(json!({"labels": labels, "samples": samples, "exemplars": []}));
        }
    }
    let n = out.len();
    let mut body = json!({ "series": out, "metrics": {} });
    if let Some(msg) = partial {
        body["status"] = json!("PARTIAL");
        body["message"] = json!(msg);
    }
    Ok(noted(Json(body).into_response(), &auth, n, resource))
}

type Series = Vec<(Vec<(String, String)>, BTreeMap<u64, f64>)>;

#[derive(Default)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    values: Vec<f64>,
}

/// The accumulators of one metrics query: (label values, bucket start) -> values; the label
/// names are the `by()` fields' (then `__bucket` for histograms), printed once.
struct Sums<'a> {
    acc: HashMap<(Vec<String>, u64), Acc>,
    too_many: bool,
    m: &'a Metrics,
    value_field: Option<&'a Field>,
    r: &'a Range,
}

impl Sums<'_> {
    /// Counts span `i` of `t` (selected by the query) into its group's bucket.
    fn add(&mut self, ev: &mut Evaluator, t: &Trace<'_>, i: usize) {
        let (m, r) = (self.m, self.r);
        let start = t.spans[i].span.start_time_unix_nano;
        if start < r.start || start >= r.end {
            return;
        }
        let bucket = r.start + (start - r.start) / r.step * r.step;
        let mut labels: Vec<String> = m.by.iter().map(|f| ev.field(f, t, i).to_text()).collect();
        let value = match self.value_field {
            Some(f) => match ev.field(f, t, i) {
                Value::Duration(d) => Some(d as f64 / 1e9),
                Value::Int(v) => Some(v as f64),
                Value::Float(v) => Some(v),
                _ => return,
            },
            None => None,
        };
        if let (MetricsFn::HistogramOverTime(_), Some(v)) = (&m.function, value) {
            let b = if v <= 0.0 {
                0.0
            } else {
                2f64.powi(v.log2().ceil() as i32)
            };
            labels.push(format!("{b}"));
        }
        let key = (labels, bucket);
        if self.acc.len() >= MAX_SERIES * 100 && !self.acc.contains_key(&key) {
            self.too_many = true;
            return;
        }
        let a = self.acc.entry(key).or_insert_with(|| Acc {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Default::default()
        });
        a.count += 1;
        if let Some(v) = value {
            a.sum += v;
            a.min = a.min.min(v);
            a.max = a.max.max(v);
            if matches!(m.function, MetricsFn::QuantileOverTime(..))
                && a.values.len() < MAX_QUANTILE_VALUES
            {
                a.values.push(v);
            }
        }
    }
}

fn compute(
    state: &AppState,
    tenant: &tv_model::TenantId,
    query: &Query,
    m: &Metrics,
    view: crate::mask::MatchView,
    r: &Range,
) -> Result<(Series, Option<String>), tv_store::StoreError> {
    let value_field: Option<&Field> = m.function.field();
    let mut sums = Sums {
        acc: HashMap::new(),
        too_many: false,
        m,
        value_field,
        r,
    };
    let mut fields: Vec<&Field> = m.by.iter().collect();
    fields.extend(value_field);
    let partial = if let Some(filter) = tv_traceql::eval::span_local(query, &fields) {
        // One span at a time, in the chunks' columns: no trace is assembled.
        let hints = super::traceql::block_hints(query, &view);
        let mut ev = Evaluator::with_view(Box::new(view));
        let mut seen: u64 = 0;
        let mut stopped = false;
        state.store.visit(
            tenant,
            Some(r.start),
            Some(r.end),
            &hints,
            &mut |v| match v {
                Visit::Span(rs, ss, span) => {
                    seen += 1;
                    let t = Trace::one(rs, ss, span);
                    if filter.is_none_or(|f| ev.field(f, &t, 0) == Value::Bool(true)) {
                        sums.add(&mut ev, &t, 0);
                    }
                    true
                }
                Visit::NextBlock | Visit::NextChunk => {
                    stopped = seen >= MAX_SPANS;
                    !stopped
                }
            },
        )?;
        stopped
            .then(|| format!("more than {MAX_SPANS} spans in range: the newest {seen} were read"))
    } else {
        let mut read = 0;
        let scanned = super::traceql::each_match(
            state,
            tenant,
            query,
            view,
            Some(r.start),
            Some(r.end),
            MAX_TRACES + 1,
            &mut |ev, _, _, t, sets| {
                read += 1;
                let mut spans: Vec<usize> = sets.into_iter().flat_map(|s| s.spans).collect();
                spans.sort_unstable();
                spans.dedup();
                for i in spans {
                    sums.add(ev, t, i);
                }
                read < MAX_TRACES
            },
        )?;
        (scanned.candidates > MAX_TRACES).then(|| {
            format!("more than {MAX_TRACES} traces in range: the newest {MAX_TRACES} were read")
        })
    };
    let Sums { acc, too_many, .. } = sums;
    let step_secs = r.step as f64 / 1e9;
    let mut names: Vec<String> = m.by.iter().map(|f| f.to_string()).collect();
    if matches!(m.function, MetricsFn::HistogramOverTime(_)) {
        names.push("__bucket".into());
    }
    let mut series: BTreeMap<Vec<(String, String)>, BTreeMap<u64, f64>> = BTreeMap::new();
    for ((values, bucket), mut a) in acc {
        let labels: Vec<(String, String)> = names.iter().cloned().zip(values).collect();
        let points: Vec<(Vec<(String, String)>, f64)> = match &m.function {
            MetricsFn::Rate => vec![(labels, a.count as f64 / step_secs)],
            MetricsFn::CountOverTime | MetricsFn::HistogramOverTime(_) => {
                vec![(labels, a.count as f64)]
            }
            MetricsFn::MinOverTime(_) => vec![(labels, a.min)],
            MetricsFn::MaxOverTime(_) => vec![(labels, a.max)],
            MetricsFn::SumOverTime(_) => vec![(labels, a.sum)],
            MetricsFn::AvgOverTime(_) => vec![(labels, a.sum / a.count.max(1) as f64)],
            MetricsFn::QuantileOverTime(_, qs) => {
                a.values.sort_by(|x, y| x.total_cmp(y));
                qs.iter()
                    .map(|q| {
                        let mut l = labels.clone();
                        l.push(("p".into(), format!("{q}")));
                        (l, quantile(&a.values, *q))
                    })
                    .collect()
            }
            MetricsFn::Compare(..) => Vec::new(),
        };
        for (l, v) in points {
            series.entry(l).or_default().insert(bucket, v);
        }
    }
    let mut out: Series = series.into_iter().collect();
    if let Some((stage, n)) = m.second {
        let total = |s: &BTreeMap<u64, f64>| s.values().sum::<f64>();
        out.sort_by(|a, b| {
            let o = total(&a.1).total_cmp(&total(&b.1));
            if stage == SecondStage::TopK {
                o.reverse()
            } else {
                o
            }
        });
        out.truncate(n.max(0) as usize);
    }
    let partial = if out.len() > MAX_SERIES || too_many {
        out.truncate(MAX_SERIES);
        Some(format!(
            "more than {MAX_SERIES} series: the first {MAX_SERIES} are shown"
        ))
    } else {
        partial
    };
    Ok((out, partial))
}

/// The `q` quantile of sorted values (nearest rank, interpolated).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

/// The attribute a label names (`resource.service.name` -> `service.name`, `.a` -> `a`); an
/// intrinsic or a bucket label names none.
fn attribute_name(label: &str) -> &str {
    let label = label.strip_prefix("parent.").unwrap_or(label);
    for scope in [
        "span.",
        "resource.",
        "event.",
        "link.",
        "instrumentation.",
        ".",
    ] {
        if let Some(name) = label.strip_prefix(scope) {
            return name;
        }
    }
    ""
}
