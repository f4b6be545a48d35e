//! Engine throughput on realistic spans: HTTP server and client spans, DB spans with SQL, an
//! exception event, links; about a third of the values carry something to redact (an email, a
//! card, a token, a client IP, SQL literals, URL query values). `cargo bench -p tv-redact`
//! prints spans/s and MB/s (of OTLP protobuf) on one core.

// The server binary's allocator, so the figure is the one ingest sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tv_model::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    Status, any_value::Value, span,
};
use tv_redact::{PseudonymKey, Rules, redact};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}
fn kvi(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn spans(n: usize) -> ExportTraceServiceRequest {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = Span {
            trace_id: vec![i as u8; 16],
            span_id: vec![(i + 1) as u8; 8],
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_700_000_000_050_000_000 + i as u64,
            ..Default::default()
        };
        match i % 3 {
            0 => {
                s.name = "GET /api/v1/orders/{id}".into();
                s.attributes = vec![
                    kv("http.request.method", "GET"),
                    kv(
                        "url.full",
                        &format!(
                            "https://shop.example.com/api/v1/orders/{}?page=2&email=user{i}%40example.com&session_token=a8f5f167f44f4964e6c998dee827110c",
                            100000 + i
                        ),
                    ),
                    kv("http.route", "/api/v1/orders/{id}"),
                    kvi("http.response.status_code", 200),
                    kv("client.address", &format!("203.0.113.{}", i % 250)),
                    kv(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                    ),
                    kv("enduser.id", &format!("user-{i}")),
                    kv("server.address", "shop.example.com"),
                ];
            }
            1 => {
                s.name = "SELECT orders".into();
                s.attributes = vec![
                    kv("db.system", "postgresql"),
                    kv(
                        "db.query.text",
                        &format!(
                            "SELECT o.id, o.total, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = 'user{i}@example.com' AND o.status IN ('paid', 'shipped') AND o.created_at > '2026-01-01' LIMIT 50"
                        ),
                    ),
                    kv("db.namespace", "shop"),
                    kv("server.address", "db-primary.internal"),
                    kvi("server.port", 5432),
                    kv("db.operation.name", "SELECT"),
                ];
            }
            _ => {
                s.name = "POST payments.Charge".into();
                s.attributes = vec![
                    kv("rpc.system", "grpc"),
                    kv("rpc.service", "payments.Payments"),
                    kv("rpc.method", "Charge"),
                    kv(
                        "app.note",
                        &format!("charge card 4111 1111 1111 1111 for order {i}"),
                    ),
                    kv(
                        "http.request.header.authorization",
                        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                    ),
                    kv("peer.service", "payments"),
                ];
                s.events = vec![span::Event {
                    name: "exception".into(),
                    attributes: vec![
                        kv("exception.type", "PaymentDeclined"),
                        kv("exception.message", "card declined by issuer (code 51)"),
                        kv(
                            "exception.stacktrace",
                            "at payments.Charge(charge.go:118)\nat grpc.Handler(server.go:944)\nat net/http.(*conn).serve(server.go:2039)",
                        ),
                    ],
                    ..Default::default()
                }];
                s.status = Some(Status {
                    message: "declined".into(),
                    code: 2,
                });
            }
        }
        out.push(s);
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("service.version", "1.42.0"),
                    kv("deployment.environment.name", "prod"),
                    kv("host.name", "shop-7c9f8d-x2x9z"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: out,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn bench(c: &mut Criterion) {
    let rules = Rules::builtin();
    let key = PseudonymKey::new(&[5; 32]);
    let batch = spans(300);
    let bytes = batch.encoded_len() as u64;
    for (what, tp) in [
        ("spans", Throughput::Elements(300)),
        ("bytes", Throughput::Bytes(bytes)),
    ] {
        let mut g = c.benchmark_group(format!("redact_{what}"));
        g.throughput(tp);
        g.bench_function("builtin_rules_300_spans", |b| {
            b.iter_batched(
                || batch.clone(),
                |req| redact(&rules, "acme", &key, req),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
