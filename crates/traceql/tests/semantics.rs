//! What queries find on a small multi-service data set with known answers, one test per
//! operator family (filters and scopes, intrinsics, existence, spanset and structural
//! operators, pipelines, aggregates, grouping, selection).
//!
//! Trace "checkout" (6 spans):
//! ```text
//! frontend  GET /checkout   server  120ms ok
//! ├── frontend  call checkout   client  100ms
//! │   └── checkout  POST /pay   server  80ms  error  http.status_code=500, event exception
//! │       ├── checkout  SELECT       client  30ms  db.system=postgres
//! │       └── checkout  charge card  internal 20ms  card.brand=[visa, amex]
//! └── frontend  render          internal 5ms
//! ```
//! Trace "home" (2 spans): frontend `GET /home` server 10ms ok, child `render` internal 2ms.

use tv_model::otlp::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans,
    Span, Status, any_value, span,
};
use tv_traceql::eval::{Evaluator, Trace};

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}

const MS: u64 = 1_000_000;

struct S {
    id: u8,
    parent: u8,
    service: &'static str,
    name: &'static str,
    kind: i32,
    start_ms: u64,
    dur_ms: u64,
    status: i32,
    attrs: Vec<KeyValue>,
    events: Vec<span::Event>,
}

fn trace(tid: u8, spans: Vec<S>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    for sp in spans {
        let span = Span {
            trace_id: vec![tid; 16],
            span_id: vec![tid, sp.id, 0, 0, 0, 0, 0, 1],
            parent_span_id: if sp.parent == 0 {
                Vec::new()
            } else {
                vec![tid, sp.parent, 0, 0, 0, 0, 0, 1]
            },
            name: sp.name.into(),
            kind: sp.kind,
            start_time_unix_nano: 1_700_000_000_000 * MS + sp.start_ms * MS,
            end_time_unix_nano: 1_700_000_000_000 * MS + (sp.start_ms + sp.dur_ms) * MS,
            attributes: sp.attrs,
            events: sp.events,
            status: Some(Status {
                code: sp.status,
                message: if sp.status == 2 {
                    "payment failed".into()
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        };
        match out
            .iter_mut()
            .find(|r| tv_model::service_name(r.resource.as_ref()) == Some(sp.service))
        {
            Some(r) => r.scope_spans[0].spans.push(span),
            None => out.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s(sp.service))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("{}-instrumentation", sp.service),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }
    out
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

fn checkout() -> Vec<ResourceSpans> {
    trace(
        1,
        vec![
            S {
                id: 1,
                parent: 0,
                service: "frontend",
                name: "GET /checkout",
                kind: SERVER,
                start_ms: 0,
                dur_ms: 120,
                status: 1,
                attrs: vec![kv(
                    "http.status_code",
                    AnyValue {
                        value: Some(any_value::Value::IntValue(200)),
                    },
                )],
                events: vec![],
            },
            S {
                id: 2,
                parent: 1,
                service: "frontend",
                name: "call checkout",
                kind: CLIENT,
                start_ms: 5,
                dur_ms: 100,
                status: 0,
                attrs: vec![],
                events: vec![],
            },
            S {
                id: 3,
                parent: 2,
                service: "checkout",
                name: "POST /pay",
                kind: SERVER,
                start_ms: 10,
                dur_ms: 80,
                status: 2,
                attrs: vec![kv(
                    "http.status_code",
                    AnyValue {
                        value: Some(any_value::Value::IntValue(500)),
                    },
                )],
                events: vec![span::Event {
                    name: "exception".into(),
                    time_unix_nano: 1_700_000_000_000 * MS + 60 * MS,
                    attributes: vec![kv("exception.message", s("timeout"))],
                    ..Default::default()
                }],
            },
            S {
                id: 4,
                parent: 3,
                service: "checkout",
                name: "SELECT",
                kind: CLIENT,
                start_ms: 20,
                dur_ms: 30,
                status: 0,
                attrs: vec![kv("db.system", s("postgres"))],
                events: vec![],
            },
            S {
                id: 5,
                parent: 3,
                service: "checkout",
                name: "charge card",
                kind: INTERNAL,
                start_ms: 55,
                dur_ms: 20,
                status: 0,
                attrs: vec![kv(
                    "card.brand",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![s("visa"), s("amex")],
                        })),
                    },
                )],
                events: vec![],
            },
            S {
                id: 6,
                parent: 1,
                service: "frontend",
                name: "render",
                kind: INTERNAL,
                start_ms: 110,
                dur_ms: 5,
                status: 0,
                attrs: vec![],
                events: vec![],
            },
        ],
    )
}

fn home() -> Vec<ResourceSpans> {
    trace(
        2,
        vec![
            S {
                id: 1,
                parent: 0,
                service: "frontend",
                name: "GET /home",
                kind: SERVER,
                start_ms: 0,
                dur_ms: 10,
                status: 1,
                attrs: vec![],
                events: vec![],
            },
            S {
                id: 2,
                parent: 1,
                service: "frontend",
                name: "render",
                kind: INTERNAL,
                start_ms: 1,
                dur_ms: 2,
                status: 0,
                attrs: vec![],
                events: vec![],
            },
        ],
    )
}

/// Per trace ("checkout", "home"): the names of the spans of each spanset found.
fn run(q: &str) -> Vec<(&'static str, Vec<Vec<String>>)> {
    let query = tv_traceql::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut ev = Evaluator::new();
    let mut out = Vec::new();
    for (label, data) in [("checkout", checkout()), ("home", home())] {
        let t = Trace::new(&data);
        let sets = ev.spansets(&query, &t);
        if !sets.is_empty() {
            out.push((
                label,
                sets.iter()
                    .map(|s| {
                        s.spans
                            .iter()
                            .map(|&i| t.spans[i].span.name.clone())
                            .collect()
                    })
                    .collect(),
            ));
        }
    }
    out
}

fn names(q: &str) -> Vec<String> {
    run(q)
        .into_iter()
        .flat_map(|(_, sets)| sets.into_iter().flatten())
        .collect()
}

fn traces(q: &str) -> Vec<&'static str> {
    run(q).into_iter().map(|(t, _)| t).collect()
}

#[test]
fn filters_attributes_scopes_and_types() {
    assert_eq!(names("{ status = error }"), ["POST /pay"]);
    assert_eq!(names("{ span.http.status_code >= 500 }"), ["POST /pay"]);
    assert_eq!(names("{ .http.status_code = 200 }"), ["GET /checkout"]);
    assert_eq!(names(r#"{ span.db.system = "postgres" }"#), ["SELECT"]);
    assert_eq!(
        names(r#"{ resource.service.name = "checkout" && kind = client }"#),
        ["SELECT"]
    );
    // An unscoped name falls back to the resource.
    assert_eq!(traces(r#"{ .service.name = "checkout" }"#), ["checkout"]);
    assert_eq!(
        names(r#"{ event.exception.message = "timeout" }"#),
        ["POST /pay"]
    );
    assert_eq!(names(r#"{ event:name = "exception" }"#), ["POST /pay"]);
    assert_eq!(names("{ event:timeSinceStart > 40ms }"), ["POST /pay"]);
    assert_eq!(
        names(r#"{ instrumentation:name = "checkout-instrumentation" && name =~ "S.*" }"#),
        ["SELECT"]
    );
    // Array values match when any element does; != when none does.
    assert_eq!(names(r#"{ span.card.brand = "amex" }"#), ["charge card"]);
    assert!(names(r#"{ span.card.brand != "amex" }"#).is_empty());
    // Regular expressions are anchored.
    assert_eq!(names(r#"{ name =~ "GET" }"#), Vec::<String>::new());
    assert_eq!(traces(r#"{ name =~ "GET /.*" }"#), ["checkout", "home"]);
    assert_eq!(
        names(r#"{ statusMessage = "payment failed" }"#),
        ["POST /pay"]
    );
}

#[test]
fn intrinsics_of_spans_and_traces() {
    assert_eq!(
        names("{ duration > 90ms && kind = server }"),
        ["GET /checkout"]
    );
    assert_eq!(
        names("{ duration >= 100ms }"),
        ["GET /checkout", "call checkout"]
    );
    assert_eq!(traces("{ traceDuration > 100ms }"), ["checkout"]);
    assert_eq!(traces(r#"{ rootName = "GET /home" }"#), ["home"]);
    assert_eq!(
        traces(r#"{ trace:rootService = "frontend" }"#),
        ["checkout", "home"]
    );
    assert_eq!(names("{ childCount = 2 }"), ["GET /checkout", "POST /pay"]);
    assert_eq!(names(r#"{ span:id = "0103000000000001" }"#), ["POST /pay"]);
    assert_eq!(
        traces(r#"{ trace:id = "02020202020202020202020202020202" }"#),
        ["home"]
    );
    // Numbers compare with durations (nanoseconds).
    assert_eq!(names("{ duration > 110000000 }"), ["GET /checkout"]);
    assert_eq!(
        names("{ duration * 2 > 150ms && kind = client }"),
        ["call checkout"]
    );
}

#[test]
fn existence_and_absence() {
    assert_eq!(names("{ span.db.system != nil }"), ["SELECT"]);
    assert_eq!(
        names("{ span.http.status_code = nil && kind = server }"),
        ["GET /home"]
    );
    // A comparison with an attribute a span does not have is false, != included.
    assert_eq!(names(r#"{ span.db.system != "mysql" }"#), ["SELECT"]);
    assert!(names("{ span.nothing = 1 || span.nothing != 1 }").is_empty());
}

#[test]
fn spanset_and_structural_operators() {
    // && needs both sides in the trace and returns both sides' spans; || either.
    assert_eq!(
        names(r#"{ status = error } && { span.db.system = "postgres" }"#),
        ["POST /pay", "SELECT"]
    );
    assert!(names(r#"{ status = error } && { name = "GET /home" }"#).is_empty());
    assert_eq!(
        traces(r#"{ status = error } || { name = "GET /home" }"#),
        ["checkout", "home"]
    );
    // Child, parent, descendant, ancestor, sibling: the right side's spans.
    assert_eq!(
        names(r#"{ resource.service.name = "checkout" } > { kind = client }"#),
        ["SELECT"]
    );
    assert_eq!(
        names(r#"{ span.db.system = "postgres" } < { }"#),
        ["POST /pay"]
    );
    assert_eq!(
        names(r#"{ resource.service.name = "frontend" && kind = server } >> { status = error }"#),
        ["POST /pay"]
    );
    assert_eq!(
        names(r#"{ status = error } << { kind = server }"#),
        ["GET /checkout"]
    );
    assert_eq!(names(r#"{ name = "SELECT" } ~ { }"#), ["charge card"]);
    // Negations: the right side's spans that do not stand in the relation.
    assert_eq!(
        names(r#"{ name = "POST /pay" } !> { kind = internal }"#),
        ["render", "render"]
    );
    assert_eq!(
        names(r#"{ status = error } !>> { kind = client }"#),
        ["call checkout"]
    );
    // Union forms: both sides' spans that take part.
    assert_eq!(
        names(r#"{ status = error } &> { kind = client }"#),
        ["POST /pay", "SELECT"]
    );
    // Structure binds tighter than &&.
    assert_eq!(
        names(r#"{ name = "GET /home" } || { status = error } > { kind = internal }"#),
        ["charge card", "GET /home"]
    );
}

#[test]
fn pipelines_aggregates_grouping_and_selection() {
    assert_eq!(traces("{ } | count() > 3"), ["checkout"]);
    assert_eq!(traces("{ } | count() = 2"), ["home"]);
    assert_eq!(
        traces("{ kind = server } | avg(duration) > 50ms"),
        ["checkout"]
    );
    assert_eq!(traces("{ } | max(duration) < 50ms"), ["home"]);
    assert_eq!(
        traces("{ } | sum(span.http.status_code) = 700"),
        ["checkout"]
    );
    assert_eq!(traces("{ } | min(duration) = 2ms"), ["home"]);
    // by() splits a trace's spans into a spanset per value; a scalar filter then judges each.
    let r = run("{ } | by(resource.service.name) | count() > 2");
    assert_eq!(
        r,
        [(
            "checkout",
            vec![
                vec![
                    "GET /checkout".to_string(),
                    "call checkout".into(),
                    "render".into()
                ],
                vec!["POST /pay".into(), "SELECT".into(), "charge card".into()],
            ]
        )]
    );
    // coalesce() merges them again.
    let r = run("{ } | by(resource.service.name) | coalesce()");
    assert_eq!(r[0].1.len(), 1);
    assert_eq!(r[0].1[0].len(), 6);
    // A later stage filters within each spanset.
    assert_eq!(
        names("{ kind = server } | { status = error }"),
        ["POST /pay"]
    );
    // A pipeline in parentheses is an operand.
    assert_eq!(
        traces("({ status = error } | count() = 1) && { kind = client }"),
        ["checkout"]
    );
    // select() keeps the spans and names the fields to return.
    let q =
        tv_traceql::parse("{ status = error } | select(span.http.status_code, duration)").unwrap();
    let data = checkout();
    let t = Trace::new(&data);
    let sets = Evaluator::new().spansets(&q, &t);
    assert_eq!(sets[0].selected.len(), 2);
    // The by() value and the aggregate are attached to the spanset.
    let q = tv_traceql::parse("{ } | by(resource.service.name) | count() > 2").unwrap();
    let sets = Evaluator::new().spansets(&q, &t);
    assert!(
        sets[1]
            .attributes
            .contains(&("by(resource.service.name)".into(), "checkout".into()))
    );
    assert!(sets[1].attributes.contains(&("count()".into(), "3".into())));
}

#[test]
fn the_prefilter_never_drops_a_trace_the_query_finds() {
    let queries = [
        "{ status = error }",
        r#"{ status = error } && { span.db.system = "postgres" }"#,
        r#"{ status = error } || { name = "GET /home" }"#,
        r#"{ resource.service.name = "checkout" } > { kind = client }"#,
        "{ } | count() > 3",
        r#"({ status = error } | count() = 1) && { kind = client }"#,
        r#"{ kind = server } !> { kind = internal }"#,
    ];
    for q in queries {
        let query = tv_traceql::parse(q).unwrap();
        let pre = tv_traceql::eval::prefilter(&query);
        for data in [checkout(), home()] {
            let t = Trace::new(&data);
            let mut ev = Evaluator::new();
            if ev.spansets(&query, &t).is_empty() {
                continue;
            }
            if let Some(p) = &pre {
                assert!(
                    (0..t.spans.len())
                        .any(|i| ev.field(p, &t, i) == tv_traceql::eval::Value::Bool(true)),
                    "{q}: the prefilter {p} drops a matching trace"
                );
            }
        }
    }
}

/// A field the caller may not read behaves as absent in every way a query can reach it.
#[test]
fn a_hidden_field_is_absent_to_every_operator() {
    struct Hide;
    impl tv_traceql::eval::View for Hide {
        fn hides(&self, key: &str) -> bool {
            key == "http.status_code"
        }
        fn text(&self, s: &str) -> Option<String> {
            s.contains("payment")
                .then(|| "[restricted:pii]".to_string())
        }
    }
    let data = checkout();
    let t = Trace::new(&data);
    for q in [
        "{ span.http.status_code = 500 }",
        "{ .http.status_code >= 0 }",
        "{ span.http.status_code != nil }",
        "{ span.http.status_code != 1 }",
        "{ } | by(span.http.status_code)",
        "{ } | sum(span.http.status_code) > 0",
        r#"{ statusMessage =~ ".*payment.*" }"#,
        r#"{ statusMessage = "payment failed" }"#,
    ] {
        let query = tv_traceql::parse(q).unwrap();
        let mut seeing = Evaluator::new();
        let mut hidden = Evaluator::with_view(Box::new(Hide));
        assert!(
            !seeing.spansets(&query, &t).is_empty(),
            "{q} finds something when visible"
        );
        assert!(
            hidden.spansets(&query, &t).is_empty(),
            "{q} finds something hidden"
        );
    }
    // Absence is what the caller sees: `= nil` holds for the hidden field.
    let query = tv_traceql::parse("{ span.http.status_code = nil && status = error }").unwrap();
    assert!(
        !Evaluator::with_view(Box::new(Hide))
            .spansets(&query, &t)
            .is_empty()
    );
}

/// Which queries can be answered one span at a time (metrics over the store's columns) and
/// which need whole traces; span-local answers agree with whole-trace evaluation.
#[test]
fn span_local_queries_are_those_that_read_only_the_span() {
    use tv_traceql::eval::span_local;
    let local = |q: &str| {
        let q = tv_traceql::parse(q).unwrap();
        let by: Vec<&tv_traceql::Field> = q.metrics.iter().flat_map(|m| &m.by).collect();
        span_local(&q, &by).is_some()
    };
    for q in [
        "{ }",
        "{ } | rate() by (resource.service.name)",
        "{ span.http.status_code >= 500 && kind = server } | count_over_time()",
        "{ .db.system = \"postgres\" || name =~ \"GET.*\" }",
    ] {
        assert!(local(q), "{q}");
    }
    for q in [
        "{ .a } >> { .b }",
        "{ .a } && { .b }",
        "{ rootServiceName = \"x\" }",
        "{ traceDuration > 1s } | rate()",
        "{ childCount > 0 }",
        "{ } | count() > 1",
        "{ } | rate() by (rootServiceName)",
        "{ .a } | by(.b)",
    ] {
        assert!(!local(q), "{q}");
    }
    // The spans a span-local filter selects one at a time are the spans whole-trace evaluation
    // selects.
    for q in [
        "{ status = error }",
        "{ resource.service.name = \"frontend\" && kind = server }",
    ] {
        let parsed = tv_traceql::parse(q).unwrap();
        let filter = span_local(&parsed, &[]).unwrap();
        let mut ev = Evaluator::new();
        for data in [checkout(), home()] {
            let whole = Trace::new(&data);
            let mut want: Vec<String> = ev
                .spansets(&parsed, &whole)
                .into_iter()
                .flat_map(|s| s.spans)
                .map(|i| whole.spans[i].span.name.clone())
                .collect();
            want.sort();
            want.dedup();
            let mut got = Vec::new();
            for rs in &data {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        let one = Trace::one(rs, ss, span);
                        if filter.is_none_or(|f| {
                            ev.field(f, &one, 0) == tv_traceql::eval::Value::Bool(true)
                        }) {
                            got.push(span.name.clone());
                        }
                    }
                }
            }
            got.sort();
            assert_eq!(got, want, "{q}");
        }
    }
}
