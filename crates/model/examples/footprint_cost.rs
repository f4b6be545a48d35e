//! What counting a request before decoding it costs, beside decoding it: a batch shaped like
//! `bench ingest`'s (512 spans, 10 attributes each), protobuf and JSON, one core.
//!
//! `cargo run --release -p tv-model --example footprint_cost`

use std::time::Instant;

use prost::Message;
use tv_model::Limits;
use tv_model::otlp::*;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn batch(spans: usize, attrs: usize) -> ExportTraceServiceRequest {
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![(i % 251) as u8 + 1; 16],
            span_id: vec![(i % 241) as u8 + 1; 8],
            name: format!("GET /api/v1/items/{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_700_000_000_001_000_000 + i as u64,
            attributes: (0..attrs)
                .map(|a| {
                    if a % 3 == 0 {
                        kv(
                            &format!("http.attr.{a}"),
                            any_value::Value::IntValue(a as i64),
                        )
                    } else {
                        kv(
                            &format!("app.attribute.{a}"),
                            any_value::Value::StringValue(format!("value-{i}-{a}")),
                        )
                    }
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("checkout".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn per_span(spans: usize, rounds: usize, f: impl Fn()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..rounds {
        f();
    }
    t.elapsed().as_nanos() as f64 / (rounds * spans) as f64
}

fn main() {
    let (spans, rounds) = (512, 400);
    let req = batch(spans, 10);
    let limits = Limits::default();
    let pb = req.encode_to_vec();
    let js = serde_json::to_vec(&req).expect("json");
    let scan_pb = per_span(spans, rounds, || {
        tv_model::footprint::scan_protobuf(&pb, &limits).expect("scan");
    });
    let decode_pb = per_span(spans, rounds, || {
        tv_model::decode::decode_protobuf(&pb).expect("decode");
    });
    let scan_js = per_span(spans, rounds / 4, || {
        tv_model::footprint::scan_json(&js, &limits).expect("scan");
    });
    let decode_js = per_span(spans, rounds / 4, || {
        tv_model::decode::decode_json(&js).expect("decode");
    });
    let fp = tv_model::footprint::scan_protobuf(&pb, &limits).expect("scan");
    println!(
        "batch: {spans} spans x 10 attributes, protobuf {} bytes, JSON {} bytes; counted memory bound {} bytes",
        pb.len(),
        js.len(),
        fp.memory
    );
    println!(
        "protobuf: count {scan_pb:.0} ns/span, decode {decode_pb:.0} ns/span (count = {:.0}% of decode)",
        100.0 * scan_pb / decode_pb
    );
    println!(
        "JSON:     count {scan_js:.0} ns/span, decode {decode_js:.0} ns/span (count = {:.0}% of decode)",
        100.0 * scan_js / decode_js
    );
}
