//! Regressions from the black-box security assessment of 2026-12-06 (issue 16): one test per
//! defect, named after what it caught, each against the real server with real clients.

mod common;

use std::time::Duration;

use common::*;
use prost::Message;
use tokio::io::AsyncWriteExt;

/// High 1: a 16.6 MB body of 8.3 million empty spans drove the server from 141 MB to 3.3 GB
/// (HTTP) and 3.8 GB (gRPC) of memory before the span limit answered 413; 5.5 million `{}` in
/// OTLP/JSON did the same. The request is now counted before it is decoded.
#[tokio::test]
async fn decoding_before_limits_empty_span_amplification() {
    let srv = Server::start(&[]);
    let body = empty_spans_protobuf(8_300_000);
    assert!(body.len() > 16_000_000 && body.len() < 16 << 20);
    let json = {
        let mut s = String::from(r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#);
        s.push_str(&vec!["{}"; 5_500_000].join(","));
        s.push_str("]}]}]}");
        s.into_bytes()
    };
    let before = srv.peak_rss_kib();
    let post = |ct: &'static str, body: Vec<u8>| {
        let c = srv.http_client();
        let url = format!("{}/v1/traces", srv.http);
        let token = srv.token();
        async move {
            let r = c
                .post(url)
                .bearer_auth(token)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
            (status, text)
        }
    };
    // Two at once over HTTP (6.2 GB before), then JSON, then gRPC.
    let (a, b) = tokio::join!(
        post("application/x-protobuf", body.clone()),
        post("application/x-protobuf", body.clone())
    );
    for (status, text) in [a, b] {
        assert_eq!(status, 413, "{text}");
        assert!(
            text.contains("more than the limit of 50000 spans per request"),
            "{text}"
        );
    }
    let (status, text) = post("application/json", json).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("limit of 50000 spans"), "{text}");
    let (code, msg) = grpc_export_raw(&srv, grpc_frame(&body)).await;
    // INVALID_ARGUMENT: permanent, an exporter must not retry it.
    assert_eq!(code.as_deref(), Some("3"), "{msg}");
    assert!(msg.contains("limit of 50000 spans"), "{msg}");
    let after = srv.peak_rss_kib();
    eprintln!("peak RSS before the attack {before} KiB, after {after} KiB");
    // Each request held at most its own bytes: far below the decode budget, let alone gigabytes.
    assert!(
        after.saturating_sub(before) < 200 * 1024,
        "peak RSS went from {before} KiB to {after} KiB"
    );
    // The server keeps serving and takes ordinary batches.
    let (req, _) = request("after-attack", 3);
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
}

/// High 1, the same class through attributes: a span limit alone does not bound memory when
/// each span carries millions of 2-byte empty attributes.
#[tokio::test]
async fn decoding_before_limits_attribute_amplification() {
    let srv = Server::start(&[]);
    let (mut req, _) = request("amplify", 1);
    req.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![tv_model::otlp::KeyValue::default(); 7_000_000];
    let body = req.encode_to_vec();
    let before = srv.peak_rss_kib();
    let r = srv.post_otlp("application/x-protobuf", body.clone()).await;
    assert_eq!(r.status(), 413);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("limit of 268435456 bytes of memory decoded"),
        "{text}"
    );
    let (code, msg) = grpc_export_raw(&srv, grpc_frame(&body)).await;
    assert_eq!(code.as_deref(), Some("3"), "{msg}");
    let after = srv.peak_rss_kib();
    assert!(
        after.saturating_sub(before) < 200 * 1024,
        "peak RSS went from {before} KiB to {after} KiB"
    );
}

/// Sends the head of an HTTP/1.1 OTLP request with `declared` body bytes and `sent` of them,
/// then holds the connection open (the caller drops it to let go).
async fn hold_partial_body(
    srv: &Server,
    declared: usize,
    sent: usize,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut s = tls_connect(srv, &srv.http, b"http/1.1").await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {declared}\r\n\r\n",
        srv.token()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![0u8; sent]).await.unwrap();
    s.flush().await.unwrap();
    s
}

/// High 1, the global budget: requests that together exceed the decode budget wait for room
/// (flow control) and are refused as transient (503 + Retry-After, UNAVAILABLE) only after the
/// bounded wait.
#[tokio::test]
async fn decoding_before_limits_global_budget_is_flow_control() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(
        tmp,
        "[limits]\ndecode_budget_bytes = 2097152\nmax_decoded_bytes = 1048576\nbudget_wait_secs = 1\n",
        &[],
    );
    // A slow upload holds 1.9 MiB of the 2 MiB budget.
    let hog = hold_partial_body(&srv, 3 << 20, 1_900_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A small batch still fits beside it.
    let (small, _) = request("small", 2);
    let r = srv
        .post_otlp("application/x-protobuf", small.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    // A larger one does not: after the bounded wait it is told to come back.
    let (mut big, _) = request("big", 1);
    big.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("blob", sv(&"x".repeat(60_000))));
    let mut big_batch = big.clone();
    for _ in 0..4 {
        let (mut more, _) = request("big", 1);
        more.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .push(kv("blob", sv(&"y".repeat(60_000))));
        big_batch.resource_spans.extend(more.resource_spans);
    }
    let big_body = big_batch.encode_to_vec();
    assert!(big_body.len() > 200_000);
    let r = srv
        .post_otlp("application/x-protobuf", big_body.clone())
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("memory for request decoding") && text.contains("retry later"),
        "{text}"
    );
    let (code, msg) = grpc_export_raw(&srv, grpc_frame(&big_body)).await;
    assert_eq!(code.as_deref(), Some("14"), "UNAVAILABLE expected: {msg}");
    // Waiting is flow control: the same request, sent while the hog lets go, gets through.
    let c = srv.http_client();
    let url = format!("{}/v1/traces", srv.http);
    let token = srv.token();
    let waiting = tokio::spawn(async move {
        c.post(url)
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(big_body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(hog);
    assert_eq!(waiting.await.unwrap(), 200);
    // A request that alone needs more than the whole budget is permanent: 413.
    let (mut huge, _) = request("huge", 1);
    huge.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![tv_model::otlp::KeyValue::default(); 40_000];
    let r = srv
        .post_otlp("application/x-protobuf", huge.encode_to_vec())
        .await;
    assert_eq!(r.status(), 413);
    assert_eq!(srv.ready_status().await, 200);
}
