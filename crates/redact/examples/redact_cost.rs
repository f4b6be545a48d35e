//! Development aid (issue 22): time the redaction stage on ordinary HTTP server spans (the same
//! values as `tv-detect`'s `scan_cost` example), 3 rounds of 20,000 spans.
//! `cargo run --release -p tv-redact --example redact_cost`; for instructions per span:
//! `valgrind --tool=callgrind --toggle-collect='tv_redact::engine::redact' <binary>`, then the
//! collected count over 60,000.

// The server binary's allocator, so the figure is the one ingest sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use tv_model::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, ResourceSpans, ScopeSpans, Span,
    any_value::Value,
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

fn main() {
    let rules = Rules::builtin();
    let key = PseudonymKey::new(&[5; 32]);
    for round in 0..3u64 {
        let spans: Vec<Span> = (0..20_000u64)
            .map(|j| {
                let i = round * 20_000 + j;
                Span {
                    trace_id: i.to_be_bytes().repeat(2),
                    span_id: i.to_be_bytes().to_vec(),
                    name: "GET /api/orders/{id}".into(),
                    attributes: vec![
                        kv("http.request.method", "GET"),
                        kv("url.path", &format!("/api/orders/{}", 1000 + i)),
                        kv("http.route", "/api/orders/{id}"),
                        kv("user.id", &format!("u-{:06}", i % 5000)),
                        kv("server.address", "10.1.2.3"),
                        kv("request.id", &format!("{:032x}", i * 7919)),
                        kv("user_agent.original", &format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.1000.10 Safari/537.36", 110 + i % 20)),
                        kv("client.address", "192.0.2.7"),
                    ],
                    ..Default::default()
                }
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let t = std::time::Instant::now();
        let out = redact(&rules, "acme", &key, req);
        println!(
            "round {round}: {:.2} us/span",
            t.elapsed().as_secs_f64() * 1e6 / 20_000.0
        );
        drop(out);
    }
}
