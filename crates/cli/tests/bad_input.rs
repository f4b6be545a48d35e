//! Every bad-input case from the issue: its status code, its message naming the limit, and that
//! nothing already acknowledged is affected.

mod common;

use common::*;
use prost::Message;
use tv_model::otlp::*;

async fn post(srv: &Server, ct: &str, enc: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut rb = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("content-type", ct);
    if let Some(e) = enc {
        rb = rb.header("content-encoding", e);
    }
    let r = rb.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    // Protobuf error bodies are google.rpc.Status; JSON ones {"code","message"}.
    let msg = if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        v["message"].as_str().unwrap_or_default().to_owned()
    } else if status != 200 {
        RpcStatus::decode(bytes.as_ref())
            .map(|s| s.message)
            .unwrap_or_default()
    } else if let Ok(resp) = ExportTraceServiceResponse::decode(bytes.as_ref()) {
        resp.partial_success
            .map(|p| format!("{} rejected: {}", p.rejected_spans, p.error_message))
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (status, msg)
}

fn one_span(mutate: impl FnOnce(&mut Span)) -> ExportTraceServiceRequest {
    let (mut req, _) = request("bad", 1);
    mutate(&mut req.resource_spans[0].scope_spans[0].spans[0]);
    req
}

fn partial(req: &ExportTraceServiceRequest) -> Vec<u8> {
    // Two good spans ride along with the bad one: they must be kept.
    let mut r = req.clone();
    let (good, _) = request("good", 2);
    r.resource_spans.extend(good.resource_spans);
    r.encode_to_vec()
}

#[tokio::test]
async fn per_span_violations_are_partial_success_and_keep_the_rest() {
    let srv = Server::start(&[
        "--max-attributes-per-span",
        "8",
        "--max-attribute-value-bytes",
        "100",
    ]);
    let deep = {
        let mut v = AnyValue {
            value: Some(any_value::Value::StringValue("x".into())),
        };
        for _ in 0..9 {
            v = AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", Some(v))],
                })),
            };
        }
        v
    };
    let hour = 3_600_000_000_000u64;
    let cases: Vec<(&str, ExportTraceServiceRequest, &str)> = vec![
        (
            "short trace id",
            one_span(|s| s.trace_id = vec![1; 8]),
            "trace id must be 16 bytes, got 8",
        ),
        (
            "zero trace id",
            one_span(|s| s.trace_id = vec![0; 16]),
            "trace id must not be all zeros",
        ),
        (
            "long span id",
            one_span(|s| s.span_id = vec![1; 9]),
            "span id must be 8 bytes, got 9",
        ),
        (
            "zero span id",
            one_span(|s| s.span_id = vec![0; 8]),
            "span id must not be all zeros",
        ),
        (
            "bad parent",
            one_span(|s| s.parent_span_id = vec![1; 3]),
            "parent span id must be 8 bytes",
        ),
        (
            "too many attributes",
            one_span(|s| s.attributes = (0..9).map(|i| kv(&format!("a{i}"), sv("v"))).collect()),
            "9 attributes, over the limit of 8",
        ),
        (
            "value too long",
            one_span(|s| s.attributes = vec![kv("big", sv(&"y".repeat(101)))]),
            "101 bytes, over the limit of 100 bytes",
        ),
        (
            "too deep",
            one_span(|s| s.attributes = vec![kv("deep", Some(deep.clone()))]),
            "nesting exceeds the limit of 8 levels",
        ),
        (
            "too old",
            one_span(|s| {
                s.start_time_unix_nano -= 31 * 24 * hour;
                s.end_time_unix_nano = s.start_time_unix_nano + 1
            }),
            "outside the accepted window (2592000 s in the past to 3600 s in the future)",
        ),
        (
            "future",
            one_span(|s| {
                s.start_time_unix_nano += 2 * hour;
                s.end_time_unix_nano = s.start_time_unix_nano
            }),
            "outside the accepted window",
        ),
        (
            "end before start",
            one_span(|s| s.end_time_unix_nano = s.start_time_unix_nano - 1),
            "end time is before start time",
        ),
    ];
    for (name, req, want) in cases {
        let (status, msg) = post(&srv, "application/x-protobuf", None, partial(&req)).await;
        assert_eq!(status, 200, "{name}: {msg}");
        assert!(
            msg.starts_with("1 rejected: rejected 1 of 3 spans"),
            "{name}: {msg}"
        );
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(!msg.contains("yyyy"), "{name}: message echoes a value");
    }
    // The good spans of every request were stored: 2 per case.
    let m = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains("tracevault_spans_accepted_total{transport=\"http\"} 22"),
        "{m}"
    );
    assert!(
        m.contains("tracevault_spans_rejected_total{reason=\"invalid_id\"} 5"),
        "{m}"
    );
    assert!(
        m.contains("tracevault_spans_rejected_total{reason=\"timestamp_out_of_window\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn grpc_partial_success_reports_rejected_spans() {
    let srv = Server::start(&[]);
    let req = one_span(|s| s.trace_id = vec![0; 16]);
    let mut full = req.clone();
    let (good, good_tid) = request("good", 2);
    full.resource_spans.extend(good.resource_spans);
    let mut r = tonic::Request::new(full);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", srv.token()).parse().unwrap(),
    );
    let resp = srv
        .grpc_client()
        .await
        .export(r)
        .await
        .unwrap()
        .into_inner();
    let p = resp.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message.contains("trace id must not be all zeros"),
        "{}",
        p.error_message
    );
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(good_tid)))
        .await;
    assert_eq!(count_json_spans(&v), 2);
}

#[tokio::test]
async fn whole_request_refusals_have_their_codes_and_messages() {
    let srv = Server::start(&[
        "--max-request-bytes",
        "200000",
        "--max-spans-per-request",
        "10",
    ]);
    // Acknowledged data before the abuse.
    let (ok, ok_tid) = request("before", 3);
    assert_eq!(
        post(&srv, "application/x-protobuf", None, ok.encode_to_vec())
            .await
            .0,
        200
    );

    let (status, msg) = post(
        &srv,
        "application/x-protobuf",
        None,
        b"\xff\xff\xff\xff garbage".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(msg.contains("invalid OTLP protobuf"), "{msg}");
    let (status, msg) = post(
        &srv,
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(msg.contains("invalid OTLP JSON"), "{msg}");
    let (status, msg) = post(&srv, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(status, 415);
    assert!(
        msg.contains("application/x-protobuf or application/json"),
        "{msg}"
    );
    let (status, msg) = post(&srv, "application/x-protobuf", Some("br"), b"x".to_vec()).await;
    assert_eq!(status, 415);
    assert!(msg.contains("unsupported content encoding"), "{msg}");
    let (status, msg) = post(
        &srv,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(msg.contains("invalid gzip compressed body"), "{msg}");
    let (status, msg) = post(&srv, "application/x-protobuf", None, vec![0u8; 200_001]).await;
    assert_eq!(status, 413);
    assert!(msg.contains("limit of 200000 bytes"), "{msg}");
    let (big, _) = request("many", 11);
    let (status, msg) = post(&srv, "application/x-protobuf", None, big.encode_to_vec()).await;
    assert_eq!(status, 413);
    assert_eq!(
        msg,
        "request carries more than the limit of 10 spans per request"
    );
    // Non-UTF-8 in a string field is malformed protobuf.
    let mut bytes = one_span(|s| s.name = "NAMEX".into()).encode_to_vec();
    let at = bytes.windows(5).position(|w| w == b"NAMEX").unwrap();
    bytes[at] = 0xff;
    let (status, msg) = post(&srv, "application/x-protobuf", None, bytes).await;
    assert_eq!(status, 400);
    assert!(msg.contains("UTF-8"), "{msg}");
    // The protobuf error body is a google.rpc.Status.
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("content-type", "application/x-protobuf")
        .body(vec![0xffu8; 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let st = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(st.code, 3);
    // Bad tenant id.
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("x-scope-orgid", "../etc")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid tenant id"));
    // Still serving, nothing lost.
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(ok_tid)))
        .await;
    assert_eq!(count_json_spans(&v), 3);
}

#[tokio::test]
async fn grpc_size_and_decode_errors_are_permanent_invalid_argument() {
    use tonic::codec::CompressionEncoding;
    let srv = Server::start(&["--max-request-bytes", "100000"]);
    let token = format!("Bearer {}", srv.token());
    let mut big = request("big", 1).0;
    big.resource_spans[0].scope_spans[0].spans[0].attributes = (0..20)
        .map(|i| kv(&format!("k{i}"), sv(&"z".repeat(10_000))))
        .collect();
    for comp in [None, Some(CompressionEncoding::Gzip)] {
        let mut c = srv.grpc_client().await;
        if let Some(x) = comp {
            c = c.send_compressed(x);
        }
        let mut r = tonic::Request::new(big.clone());
        r.metadata_mut()
            .insert("authorization", token.parse().unwrap());
        let st = c.export(r).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument, "{comp:?}: {st:?}");
        assert!(
            st.message().contains("limit of 100000 bytes"),
            "{}",
            st.message()
        );
    }
}

fn gzip_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..inflated / chunk.len() {
        e.write_all(&chunk).unwrap();
    }
    e.finish().unwrap()
}

#[tokio::test]
async fn a_one_gib_gzip_bomb_is_refused_while_memory_stays_low() {
    let srv = Server::start(&[]);
    let bomb = gzip_bomb(1 << 30);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let before = srv.peak_rss_kib();
    let (status, msg) = post(&srv, "application/x-protobuf", Some("gzip"), bomb.clone()).await;
    assert_eq!(status, 413);
    assert!(
        msg.contains("exceeds the limit of 16777216 bytes after decompression"),
        "{msg}"
    );
    // Over gRPC too.
    let zeros_msg = {
        // A gRPC frame around the same inflated-zeros payload, gzip-compressed.
        let mut frame = vec![1u8];
        frame.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
        frame.extend_from_slice(&bomb);
        frame
    };
    let r = srv
        .http_client()
        .post(format!(
            "{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            srv.grpc
        ))
        .bearer_auth(srv.token())
        .header("content-type", "application/grpc")
        .header("grpc-encoding", "gzip")
        .header("te", "trailers")
        .version(http::Version::HTTP_2)
        .body(zeros_msg)
        .send()
        .await
        .unwrap();
    let code = r
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(code.as_deref(), Some("3"), "{:?}", r.headers());
    let after = srv.peak_rss_kib();
    // Peak RSS grew by far less than the inflated size (the limit is 16 MiB).
    assert!(
        after.saturating_sub(before) < 128 * 1024,
        "peak RSS went from {before} KiB to {after} KiB"
    );
    assert_eq!(srv.get("/api/echo").await.status(), 200);
}

#[tokio::test]
async fn overload_is_503_with_a_retry_hint_and_unavailable_on_grpc() {
    // A write queue of one byte: every append is refused as overload.
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[storage]\nmax_pending_bytes = 1\n").unwrap();
    let srv = Server::start(&["--config", cfg.path().to_str().unwrap()]);
    let (req, _) = request("busy", 2);
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&req).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let body: serde_json::Value = r.json().await.unwrap();
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("retry later") && msg.contains("more than 1 bytes"),
        "{msg}"
    );
    let mut g = tonic::Request::new(req);
    g.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", srv.token()).parse().unwrap(),
    );
    let st = srv.grpc_client().await.export(g).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
    // The gRPC retry hint: google.rpc.RetryInfo in the status details.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct StatusWithDetails {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Duration {
        #[prost(int64, tag = "1")]
        seconds: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<Duration>,
    }
    let d = StatusWithDetails::decode(st.details()).unwrap();
    assert_eq!(
        d.details[0].type_url,
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    let ri = RetryInfo::decode(d.details[0].value.as_slice()).unwrap();
    assert_eq!(ri.retry_delay.unwrap().seconds, 2);
    // Refused, not stored, and the server keeps serving.
    assert_eq!(srv.ready_status().await, 200);
    let m = srv.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("outcome=\"unavailable\"} 1"), "{m}");
    assert!(!m.contains("tracevault_spans_accepted_total{"), "{m}");
}

#[tokio::test]
async fn malformed_grpc_protobuf_is_invalid_argument() {
    let srv = Server::start(&[]);
    let garbage = b"\xff\xff\xff\xff\x0f not protobuf";
    let (code, msg) = grpc_export_raw(&srv, grpc_frame(garbage)).await;
    assert_eq!(code.as_deref(), Some("3"), "{msg}");
    assert!(msg.contains("invalid OTLP protobuf"), "{msg}");
    assert_eq!(srv.get("/api/echo").await.status(), 200);
}
