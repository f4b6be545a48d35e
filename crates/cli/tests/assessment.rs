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

/// Reads from `s` until the server closes the connection (EOF or reset), collecting what came.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    within: Duration,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server did not close the connection within {within:?}"
    );
    got
}

/// An HTTP/2 frame (RFC 9113, section 4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The frame types in a stream of HTTP/2 frames.
fn h2_frame_types(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while b.len() >= 9 {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        out.push(b[3]);
        b = &b[(9 + len).min(b.len())..];
    }
    out
}

/// High 2: TLS connections that never sent a request byte, and HTTP/2 connections that only
/// answered PINGs, were never closed; ~4,200 of them refused every new connection.
#[tokio::test]
async fn idle_tls_connections_are_closed_and_pings_are_not_activity() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(
        tmp,
        "[connections]\nhandshake_timeout_secs = 1\nfirst_request_timeout_secs = 1\nidle_timeout_secs = 2\n",
        &[],
    );
    let limit = Duration::from_secs(10);
    // A TCP connection that never starts TLS.
    let mut tcp = tokio::net::TcpStream::connect(srv.api.trim_start_matches("https://"))
        .await
        .unwrap();
    read_until_closed(&mut tcp, limit).await;
    // TLS, then silence (HTTP/1.1 never sends a first request byte).
    let mut s = tls_connect(&srv, &srv.api, b"http/1.1").await.unwrap();
    read_until_closed(&mut s, limit).await;
    // HTTP/2: one request, then nothing but PINGs every 200 ms.
    let mut s = tls_connect(&srv, &srv.api, b"h2").await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
    // HEADERS, END_STREAM | END_HEADERS: GET https://localhost/ready (HPACK, RFC 7541:
    // indexed :method GET, :scheme https; literal :path and :authority).
    let mut hdr = vec![0x82, 0x87, 0x04, 6];
    hdr.extend_from_slice(b"/ready");
    hdr.extend_from_slice(&[0x01, 9]);
    hdr.extend_from_slice(b"localhost");
    s.write_all(&h2_frame(0x1, 0x5, 1, &hdr)).await.unwrap();
    s.flush().await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let pinger = tokio::spawn(async move {
        for i in 0u64..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(&h2_frame(0x6, 0, 0, &i.to_be_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let got = read_until_closed(&mut rd, limit).await;
    pinger.abort();
    let types = h2_frame_types(&got);
    assert!(types.contains(&0x1), "the request was answered: {types:?}");
    assert!(types.contains(&0x6), "PINGs were answered: {types:?}");
    assert!(types.contains(&0x7), "closed with a GOAWAY: {types:?}");
    let m = srv.get("/metrics").await.text().await.unwrap();
    for reason in ["handshake_timeout", "first_request_timeout", "idle"] {
        assert!(
            m.contains(&format!(
                "tracevault_connections_closed_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted: {m}"
        );
    }
}

/// High 2, the lockout: with every slot held by connections that never authenticated, a
/// client with a valid credential still gets through (the oldest unauthenticated connection
/// is shed), all from one address.
#[tokio::test]
async fn idle_tls_connections_cannot_lock_out_a_client_with_a_credential() {
    let srv = Server::start(&["--max-connections", "40"]);
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(tls_connect(&srv, &srv.api, b"http/1.1").await.unwrap());
    }
    for _ in 0..5 {
        // A new connection each time (a new client), with the admin token.
        assert_eq!(srv.get("/api/echo").await.status(), 200);
    }
    let m = srv.get("/metrics").await.text().await.unwrap();
    let shed: u64 = m
        .lines()
        .find(|l| l.starts_with("tracevault_connections_closed_total{reason=\"shed\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(shed >= 20, "{m}");
    // Logged, but not once per connection.
    let log = srv.log_text();
    let lines = log
        .matches("oldest connection without an authenticated request shed")
        .count();
    assert!((1..=3).contains(&lines), "{lines} log lines: {log}");
    drop(flood);
}

/// HPACK (RFC 7541) for a GET with a bearer token: indexed :method GET and :scheme https,
/// literal :path, :authority and authorization (lengths under 127).
fn h2_get(path: &str, token: &str) -> Vec<u8> {
    let mut h = vec![0x82, 0x87, 0x04, path.len() as u8];
    h.extend_from_slice(path.as_bytes());
    h.extend_from_slice(&[0x01, 9]);
    h.extend_from_slice(b"localhost");
    let auth = format!("Bearer {token}");
    h.extend_from_slice(&[0x00, 13]);
    h.extend_from_slice(b"authorization");
    h.push(auth.len() as u8);
    h.extend_from_slice(auth.as_bytes());
    h
}

/// Medium 7: readers with an HTTP/2 window of 0 asking for an 8 MB trace over 200 streams
/// grew the server from 256 MB to 3 GB. Response bytes are now bounded per connection and in
/// total, and a reader that stops reading is cut off after the stall timeout.
#[tokio::test]
async fn memory_held_for_clients_that_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "[connections]\nstall_timeout_secs = 2\n", &[]);
    let (mut req, tid) = request("big-trace", 2000);
    let filler = "lorem ipsum dolor sit amet ".repeat(150);
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.attributes.push(kv("note.long", sv(&filler)));
    }
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    let path = format!("/api/traces/{}", hex::encode(tid));
    let size = srv.get(&path).await.bytes().await.unwrap().len();
    assert!(size > 8_000_000, "trace is {size} bytes");
    let before = srv.peak_rss_kib();
    let token = srv.token();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tls_connect(&srv, &srv.api, b"h2").await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        // SETTINGS_INITIAL_WINDOW_SIZE = 0: the server may send no response bytes at all.
        s.write_all(&h2_frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]))
            .await
            .unwrap();
        for i in 0..100u32 {
            s.write_all(&h2_frame(0x1, 0x5, 2 * i + 1, &h2_get(&path, &token)))
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        stalled.push(s);
    }
    // The server cuts both off once their responses stall.
    for mut s in stalled {
        read_until_closed(&mut s, Duration::from_secs(60)).await;
    }
    let after = srv.peak_rss_kib();
    eprintln!("peak RSS before the stalled readers {before} KiB, after {after} KiB");
    assert!(
        after.saturating_sub(before) < 512 * 1024,
        "peak RSS went from {before} KiB to {after} KiB"
    );
    let m = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains("tracevault_connections_closed_total{reason=\"stalled\"}"),
        "{m}"
    );
    // A reader that reads still gets the whole trace.
    let r = srv.get(&path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), size);
}

/// `METHOD path` on the query API with `token`, optionally naming a tenant; (status, JSON).
async fn api(
    srv: &Server,
    method: &str,
    token: &str,
    tenant: Option<&str>,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let c = srv.http_client();
    let url = format!("{}{path}", srv.api);
    let mut rb = match method {
        "POST" => c.post(url),
        "DELETE" => c.delete(url),
        _ => c.get(url),
    }
    .bearer_auth(token);
    if let Some(t) = tenant {
        rb = rb.header("x-scope-orgid", t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Audit records as `token` sees them (`all_tenants` for a credential of every tenant).
async fn audit_records(srv: &Server, token: &str, query: &str) -> Vec<serde_json::Value> {
    let (status, v) = api(
        srv,
        "GET",
        token,
        None,
        &format!("/api/audit?limit=1000&{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["records"].as_array().cloned().unwrap_or_default()
}

/// High 3: an admin of [acme, legal], under a policy forbidding admin actions on legal, erased
/// legal, rotated its keys, created admin tokens and registered certificates for it by sending
/// `X-Scope-OrgID: acme` with `"tenant": "legal"` in the body; the audit filed it under acme.
#[tokio::test]
async fn cedar_forbid_bypassed_through_the_body_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("protect-legal.cedar");
    std::fs::write(
        &policy,
        r#"@id("protect-legal")
forbid (
  principal,
  action in [Tracevault::Action::"admin_keys", Tracevault::Action::"admin_tokens", Tracevault::Action::"admin_certs"],
  resource == Tracevault::Tenant::"legal"
) unless { principal.all_tenants };
"#,
    )
    .unwrap();
    let cfg = format!(
        "[access]\npolicy_files = [{:?}]\n",
        policy.to_str().unwrap()
    );
    let (srv, _) = start_with_config(tmp, &cfg, &[]);
    let root = srv.token();
    // legal has keys and data.
    let (req, _) = request("legal-svc", 2);
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(&root)
        .header("x-scope-orgid", "legal")
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let both = create_token(
        &srv,
        &["--role", "admin", "--tenant", "acme", "--tenant", "legal"],
    );
    let attempts: Vec<(&str, serde_json::Value)> = vec![
        (
            "/api/admin/tenants/erase",
            serde_json::json!({"tenant": "legal", "confirm": true}),
        ),
        (
            "/api/admin/keys/rotate",
            serde_json::json!({"tenant": "legal"}),
        ),
        (
            "/api/admin/keys/rewrap",
            serde_json::json!({"tenant": "legal"}),
        ),
        (
            "/api/admin/tokens",
            serde_json::json!({"role": "admin", "tenants": ["legal"]}),
        ),
        (
            "/api/admin/tokens",
            serde_json::json!({"role": "reader", "tenants": ["acme", "legal"]}),
        ),
        (
            "/api/admin/certs",
            serde_json::json!({"identity": "spiffe://t.test/legal/x", "tenant": "legal"}),
        ),
    ];
    for (path, body) in &attempts {
        for header in [Some("acme"), Some("legal")] {
            let (status, v) = api(&srv, "POST", &both, header, path, Some(body.clone())).await;
            assert_eq!(
                status, 403,
                "{path} {body} with X-Scope-OrgID {header:?}: {v}"
            );
            let msg = v["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("tenant legal") && msg.contains("protect-legal"),
                "{path}: {msg}"
            );
        }
    }
    // Nothing happened to legal: its data, its one key version.
    let (status, keys) = api(&srv, "GET", &root, None, "/api/admin/keys", None).await;
    assert_eq!(status, 200);
    let legal = keys["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "legal")
        .unwrap()
        .clone();
    assert_eq!(legal["current"], 1, "{keys}");
    // The same credential still administers acme, whatever the header says.
    let (status, v) = api(
        &srv,
        "POST",
        &both,
        Some("legal"),
        "/api/admin/keys/rotate",
        Some(serde_json::json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // The tenant-bound admin does not see legal's keys or where the root key is.
    let (status, v) = api(&srv, "GET", &both, Some("acme"), "/api/admin/keys", None).await;
    assert_eq!(status, 200);
    assert!(v["root"].is_null(), "{v}");
    assert!(!v.to_string().contains("\"legal\""), "{v}");
    // Every refusal is filed under legal, the tenant acted on; the rotation under acme.
    let recs = audit_records(&srv, &root, "all_tenants=true").await;
    let denied: Vec<_> = recs
        .iter()
        .filter(|r| r["decision"] == "deny" && r["name"] != "")
        .collect();
    assert!(!denied.is_empty());
    assert!(denied.iter().all(|r| r["tenant"] == "legal"), "{denied:?}");
    assert!(recs.iter().any(|r| r["action"] == "admin_keys"
        && r["decision"] == "allow"
        && r["tenant"] == "acme"
        && r["resource"].as_str().unwrap().contains("rotated")));
    // A tenant-bound admin's flush would seal every tenant: refused.
    let (status, _) = api(&srv, "POST", &both, Some("acme"), "/api/admin/flush", None).await;
    assert_eq!(status, 403);
}

/// Medium 8: 50 reads of another tenant's trace produced 10 audit records as `anonymous` with
/// no tenant, visible to neither tenant's auditor.
#[tokio::test]
async fn cross_tenant_attempts_are_audited_for_both_tenants() {
    let srv = Server::start(&[]);
    let root = srv.token();
    let reader = create_token(
        &srv,
        &[
            "--role",
            "reader",
            "--tenant",
            "acme",
            "--name",
            "acme-reader",
        ],
    );
    let acme_auditor = create_token(&srv, &["--role", "auditor", "--tenant", "acme"]);
    let legal_auditor = create_token(&srv, &["--role", "auditor", "--tenant", "legal"]);
    let path = format!("/api/traces/{}", hex::encode(random_id::<16>()));
    for _ in 0..50 {
        let (status, _) = api(&srv, "GET", &reader, Some("legal"), &path, None).await;
        assert_eq!(status, 403);
    }
    let total = |recs: &[serde_json::Value]| -> u64 {
        recs.iter()
            .map(|r| 1 + r["unsampled_before"].as_u64().unwrap_or(0))
            .sum()
    };
    // acme's auditor: its principal, by name, and where it tried; counted, not flooded.
    let recs: Vec<_> = audit_records(&srv, &acme_auditor, "decision=deny")
        .await
        .into_iter()
        .filter(|r| r["name"] == "acme-reader")
        .collect();
    assert!(!recs.is_empty() && recs.len() <= 5, "{recs:?}");
    assert_eq!(total(&recs), 50, "{recs:?}");
    assert!(recs.iter().all(|r| r["tenant"] == "acme"
        && r["resource"].as_str().unwrap().contains("tenant:legal")
        && r["action"] == "read_trace"));
    // legal's auditor: a principal of acme tried, under an opaque id, without its name.
    let recs = audit_records(&srv, &legal_auditor, "decision=deny").await;
    assert!(!recs.is_empty() && recs.len() <= 5, "{recs:?}");
    assert_eq!(total(&recs), 50, "{recs:?}");
    for r in &recs {
        assert_eq!(r["tenant"], "legal");
        assert!(
            r["principal"].as_str().unwrap().starts_with("foreign:"),
            "{r}"
        );
        assert_eq!(r["principal_tenants"], serde_json::json!(["acme"]));
        assert!(!r.to_string().contains("acme-reader"), "{r}");
        assert!(!r.to_string().contains("token:"), "{r}");
    }
    // Unauthenticated noise stays sampled, with its count.
    for _ in 0..40 {
        let (status, _) = api(&srv, "GET", "tvk_not_a_token", Some("legal"), &path, None).await;
        assert_eq!(status, 401);
    }
    let m = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains("tracevault_audit_unauthenticated_total 40"),
        "{m}"
    );
    let anon: Vec<_> = audit_records(&srv, &root, "all_tenants=true&principal=anonymous").await;
    assert!(anon.len() < 40, "{}", anon.len());
}

/// Low 11: registering another tenant's certificate identity answered 403 "bound to a tenant
/// ..." while revoking it answered 404: an oracle for which identities other tenants hold.
#[tokio::test]
async fn identity_existence_oracle() {
    let srv = Server::start(&[]);
    let globex_id = "spiffe://t.test/globex/billing";
    let (ok, text) = srv.cli(&[
        "cert",
        "register",
        "--identity",
        globex_id,
        "--tenant",
        "globex",
    ]);
    assert!(ok, "{text}");
    let acme = create_token(&srv, &["--role", "admin", "--tenant", "acme"]);
    let register =
        |id: &str| serde_json::json!({"identity": id, "tenant": "acme", "role": "ingest"});
    // Taken elsewhere or free: the same answer (identities are registered per tenant).
    let (s1, v1) = api(
        &srv,
        "POST",
        &acme,
        None,
        "/api/admin/certs",
        Some(register(globex_id)),
    )
    .await;
    let (s2, v2) = api(
        &srv,
        "POST",
        &acme,
        None,
        "/api/admin/certs",
        Some(register("spiffe://t.test/free/one")),
    )
    .await;
    assert_eq!((s1, s2), (201, 201), "{v1} {v2}");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v["workload"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v1), keys(&v2));
    // Revoking: an identity only another tenant holds answers like one nobody holds.
    let other = "spiffe://t.test/globex/ledger";
    let (ok, _) = srv.cli(&[
        "cert",
        "register",
        "--identity",
        other,
        "--tenant",
        "globex",
    ]);
    assert!(ok);
    let revoke = |id: &str| serde_json::json!({"identity": id});
    let (s1, v1) = api(
        &srv,
        "POST",
        &acme,
        None,
        "/api/admin/certs/revoke",
        Some(revoke(other)),
    )
    .await;
    let (s2, v2) = api(
        &srv,
        "POST",
        &acme,
        None,
        "/api/admin/certs/revoke",
        Some(revoke("spiffe://t.test/nobody/x")),
    )
    .await;
    assert_eq!((s1, s2), (404, 404));
    let shape = |v: &serde_json::Value, id: &str| v["message"].as_str().unwrap().replace(id, "ID");
    assert_eq!(shape(&v1, other), shape(&v2, "spiffe://t.test/nobody/x"));
    // Serials: another tenant's and one never issued answer alike.
    let (s1, v1) = api(
        &srv,
        "POST",
        &acme,
        None,
        "/api/admin/certs/revoke",
        Some(serde_json::json!({"serial": "0123456789abcdef"})),
    )
    .await;
    assert_eq!(s1, 404, "{v1}");
    // globex's registrations are untouched, and acme's registration of the same name is acme's.
    let (_, list) = api(&srv, "GET", &srv.token(), None, "/api/admin/certs", None).await;
    let regs: Vec<_> = list["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["identity"] == globex_id)
        .map(|w| w["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(regs.len(), 2, "{list}");
    assert!(regs.contains(&"globex".to_string()) && regs.contains(&"acme".to_string()));
}

/// A batch of one resource (`resource` attributes) with `spans`.
fn batch_of(
    resource: Vec<tv_model::otlp::KeyValue>,
    spans: Vec<tv_model::otlp::Span>,
) -> tv_model::otlp::ExportTraceServiceRequest {
    use tv_model::otlp::*;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
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

fn one_span(
    tid: [u8; 16],
    name: &str,
    attrs: Vec<tv_model::otlp::KeyValue>,
) -> tv_model::otlp::Span {
    let now = now_nanos();
    tv_model::otlp::Span {
        trace_id: tid.to_vec(),
        span_id: random_id::<8>().to_vec(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: now - 1_000_000,
        end_time_unix_nano: now,
        attributes: attrs,
        ..Default::default()
    }
}

/// Posts `req` as OTLP/JSON with `token` (the partial-success answer is readable JSON);
/// (status, body text).
async fn send(
    srv: &Server,
    token: &str,
    req: &tv_model::otlp::ExportTraceServiceRequest,
) -> (u16, String) {
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(req).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Medium 4: an ingest token wrote spans of service `tracevault.findings` with a finding
/// attribute, which `/api/findings` then listed as a critical finding.
#[tokio::test]
async fn forged_findings() {
    let srv = Server::start(&[]);
    let ingest = create_token(&srv, &["--role", "ingest", "--tenant", "default"]);
    let forged = serde_json::json!({
        "uid": "00112233445566778899aabbccddeeff", "group": "g", "stage": "signature",
        "analytic_uid": "tv-forged", "title": "Forged critical", "severity": "critical",
        "classes": [], "attacks": [], "tenant": "default", "time_unix_nano": now_nanos(),
        "detected_unix_nano": now_nanos(), "trace_id": "00112233445566778899aabbccddeeff",
        "span_id": "0011223344556677", "service": "x", "operation": "y", "principal": null,
        "evidence": [], "tags": [], "count": 1, "message": "forged"
    })
    .to_string();
    let tid = random_id::<16>();
    let finding_attrs = || {
        vec![
            kv("tracevault.finding", sv(&forged)),
            kv("tracevault.finding.severity", sv("critical")),
            kv("tracevault.finding.seal", sv(&"ab".repeat(32))),
        ]
    };
    // The server's namespace is not writable, in any spelling.
    for service in [
        "tracevault.findings",
        "TraceVault.Findings",
        "tracevault.anything",
    ] {
        let req = batch_of(
            vec![kv("service.name", sv(service))],
            vec![one_span(tid, "finding: forged", finding_attrs())],
        );
        let (status, text) = send(&srv, &ingest, &req).await;
        assert_eq!(status, 403, "{service}: {text}");
        assert!(text.contains("reserved for the server"), "{text}");
    }
    // Finding attributes on a client's own span are just attributes, never a finding.
    let req = batch_of(
        vec![kv("service.name", sv("shop"))],
        vec![one_span(tid, "GET /", finding_attrs())],
    );
    assert_eq!(send(&srv, &ingest, &req).await.0, 200);
    // A real finding still is one.
    let req = batch_of(
        vec![kv("service.name", sv("shop"))],
        vec![one_span(
            tid,
            "GET /search",
            vec![kv(
                "url.query",
                sv("q=1%27%20UNION%20SELECT%20password%20FROM%20users--"),
            )],
        )],
    );
    assert_eq!(send(&srv, &ingest, &req).await.0, 200);
    let v = srv.get_json("/api/findings").await;
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding_info"]["analytic"]["uid"].as_str().unwrap())
        .collect();
    assert!(
        !rules.is_empty() && rules.iter().all(|r| r.starts_with("tv-sqli")),
        "{rules:?}"
    );
    assert!(!v.to_string().contains("Forged critical"), "{v}");
    // A finding names its service as stored: the redacted form, never the raw value.
    let req = batch_of(
        vec![kv("service.name", sv("shop-jane.marker@example.com"))],
        vec![one_span(
            random_id::<16>(),
            "GET /search",
            vec![kv(
                "url.query",
                sv("q=1%27%20UNION%20SELECT%20password%20FROM%20users--"),
            )],
        )],
    );
    assert_eq!(send(&srv, &srv.token(), &req).await.0, 200);
    let v = srv.get_json("/api/findings").await;
    assert_eq!(v["findings"].as_array().unwrap().len(), 4, "{v}");
    assert!(!v.to_string().contains("jane.marker@example.com"), "{v}");
    let values = srv.get_json("/api/search/tag/service.name/values").await;
    let stored: Vec<&str> = values["tagValues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .filter(|x| x.starts_with("hmac:"))
        .collect();
    assert_eq!(stored.len(), 1, "{values}");
    assert!(v.to_string().contains(stored[0]), "{v}");
}

/// Medium 6: a resource naming service.name twice (checkout, then payments), or first as a
/// non-string, passed a token bound to checkout; a span attribute service.name answered
/// searches for that service until the data was sealed.
#[tokio::test]
async fn duplicate_or_misplaced_service_name() {
    let srv = Server::start(&[]);
    let checkout = create_token(
        &srv,
        &[
            "--role",
            "ingest",
            "--tenant",
            "default",
            "--service",
            "checkout",
        ],
    );
    let tid = random_id::<16>();
    let span = || one_span(tid, "GET /cart", vec![kv("note", sv("x"))]);
    let ambiguous = [
        vec![
            kv("service.name", sv("checkout")),
            kv("service.name", sv("payments")),
        ],
        vec![
            kv("service.name", sv("payments")),
            kv("service.name", sv("checkout")),
        ],
        vec![
            kv("service.name", iv(7)),
            kv("service.name", sv("checkout")),
        ],
        vec![kv("service.name", iv(7))],
    ];
    for res in ambiguous {
        let (status, text) = send(&srv, &checkout, &batch_of(res.clone(), vec![span()])).await;
        assert_eq!(status, 400, "{res:?}: {text}");
        assert!(text.contains("service.name"), "{text}");
        // The admin token is refused the same: ambiguity is not a permission question.
        assert_eq!(
            send(&srv, &srv.token(), &batch_of(res, vec![span()]))
                .await
                .0,
            400
        );
    }
    // Over gRPC too, as INVALID_ARGUMENT.
    let dup = batch_of(
        vec![
            kv("service.name", sv("checkout")),
            kv("service.name", sv("payments")),
        ],
        vec![span()],
    );
    let (code, msg) = grpc_export_raw(&srv, grpc_frame(&dup.encode_to_vec())).await;
    assert_eq!(code.as_deref(), Some("3"), "{msg}");
    // A span claiming another service than its resource is refused (partial success); the
    // rest of the batch is kept.
    let req = batch_of(
        vec![kv("service.name", sv("checkout"))],
        vec![
            one_span(tid, "GET /pay", vec![kv("service.name", sv("payments"))]),
            one_span(tid, "GET /cart", vec![kv("service.name", sv("checkout"))]),
        ],
    );
    let (status, text) = send(&srv, &checkout, &req).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("\"rejectedSpans\":\"1\"") || text.contains("\"rejectedSpans\":1"),
        "{text}"
    );
    assert!(text.contains("service.name differs"), "{text}");
    // payments appears nowhere: not in search, not in tag values, before or after sealing.
    for _ in 0..2 {
        let hits = srv
            .get_json("/api/search?tags=service.name%3Dpayments")
            .await;
        assert_eq!(hits["traces"], serde_json::json!([]), "{hits}");
        let values = srv.get_json("/api/search/tag/service.name/values").await;
        assert!(!values.to_string().contains("payments"), "{values}");
        let hits = srv
            .get_json("/api/search?tags=service.name%3Dcheckout")
            .await;
        assert_eq!(hits["traces"].as_array().unwrap().len(), 1, "{hits}");
        srv.flush().await;
    }
}

/// Medium 5: masking hid a value only when it started with `hmac:`; a pseudonym inside a
/// longer value (`mail hmac:1900b0… now`) or in a span name was shown to a reader, in traces
/// and in tag values.
#[tokio::test]
async fn pseudonyms_shown_to_readers() {
    let srv = Server::start(&[]);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "default"]);
    let tid = random_id::<16>();
    let mut span = one_span(
        tid,
        "GET /profile/jane.marker@example.com",
        vec![
            kv("note", sv("mail jane.marker@example.com now")),
            kv(
                "list",
                Some(tv_model::otlp::AnyValue {
                    value: Some(tv_model::otlp::any_value::Value::ArrayValue(
                        tv_model::otlp::ArrayValue {
                            values: vec![sv("to jane.marker@example.com").unwrap()],
                        },
                    )),
                }),
            ),
        ],
    );
    span.events.push(tv_model::otlp::span::Event {
        time_unix_nano: span.start_time_unix_nano,
        name: "sent to jane.marker@example.com".into(),
        ..Default::default()
    });
    span.status = Some(tv_model::otlp::Status {
        message: "no mailbox jane.marker@example.com".into(),
        code: 2,
    });
    let req = batch_of(vec![kv("service.name", sv("mailer"))], vec![span]);
    assert_eq!(send(&srv, &srv.token(), &req).await.0, 200);
    let path = format!("/api/traces/{}", hex::encode(tid));
    // The admin sees the pseudonyms (and never the address).
    let admin_view = srv.get_json(&path).await.to_string();
    assert!(admin_view.contains("hmac:"), "{admin_view}");
    assert!(!admin_view.contains("jane.marker"), "{admin_view}");
    // The reader sees none of them, wherever they stand, and the text around them.
    let (status, v) = api(&srv, "GET", &reader, None, &path, None).await;
    assert_eq!(status, 200);
    let text = v.to_string();
    assert!(!text.contains("hmac:"), "{text}");
    assert!(text.contains("mail [restricted:pseudonym] now"), "{text}");
    assert!(
        text.contains("GET /profile/[restricted:pseudonym]"),
        "{text}"
    );
    assert!(text.contains("sent to [restricted:pseudonym]"), "{text}");
    assert!(text.contains("no mailbox [restricted:pseudonym]"), "{text}");
    for q in [
        "/api/search/tag/note/values",
        "/api/search/tag/list/values",
        "/api/search?tags=service.name%3Dmailer",
    ] {
        let (status, v) = api(&srv, "GET", &reader, None, q, None).await;
        assert_eq!(status, 200, "{q}");
        assert!(!v.to_string().contains("hmac:"), "{q}: {v}");
        assert!(v.to_string().contains("[restricted:pseudonym]"), "{q}: {v}");
    }
}

/// Low 9: tracevault's own `tvk_` tokens inside span data were stored verbatim while JWTs, AWS
/// keys and bearer values in the same span were masked.
#[tokio::test]
async fn own_tokens_stored_verbatim() {
    let srv = Server::start(&[]);
    let token = create_token(&srv, &["--role", "reader", "--tenant", "default"]);
    let secret = token.rsplit('_').next().unwrap().to_owned();
    let tid = random_id::<16>();
    let mut span = one_span(
        tid,
        &format!("retry with {token}"),
        vec![
            kv("note", sv(&format!("copied {token} from the wiki"))),
            kv("app.config.reader_token", sv(&token)),
            kv("cmd", sv(&format!("curl -H 'x-api: {token}' https://tv"))),
        ],
    );
    span.events.push(tv_model::otlp::span::Event {
        time_unix_nano: span.start_time_unix_nano,
        name: "login".into(),
        attributes: vec![kv("detail", sv(&format!("{token},{token}")))],
        ..Default::default()
    });
    let req = batch_of(vec![kv("service.name", sv("ops"))], vec![span]);
    assert_eq!(send(&srv, &srv.token(), &req).await.0, 200);
    let text = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await
        .to_string();
    assert!(!text.contains(&secret), "token secret stored: {text}");
    assert!(text.contains("retry with"), "{text}");
    srv.flush().await;
    let (_, hits) = files_containing(&srv.dir, secret.as_bytes());
    assert!(hits.is_empty(), "token secret on disk: {hits:?}");
    let m = srv.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("rule=\"detector:tracevault_token\""), "{m}");
}

/// Low 10: a newline in a token name forged a line in the server log.
#[tokio::test]
async fn log_injection_through_a_token_name() {
    let srv = Server::start(&[]);
    let forged = "ops\n2026-12-06T00:00:00.000000Z ERROR tracevault: FORGED audit disabled";
    // New names with control characters are refused...
    let (status, v) = api(
        &srv,
        "POST",
        &srv.token(),
        None,
        "/api/admin/tokens",
        Some(serde_json::json!({"role": "admin", "name": forged})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // ...and one that exists already (a token store from before) still cannot forge a line:
    // every field is escaped where the log is written.
    let tokens_file = srv.dir.join("tokens.json");
    let (status, v) = api(
        &srv,
        "POST",
        &srv.token(),
        None,
        "/api/admin/tokens",
        Some(serde_json::json!({"role": "admin", "name": "ops-placeholder"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let mut store: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tokens_file).unwrap()).unwrap();
    let text = store
        .to_string()
        .replace("ops-placeholder", &forged.replace('\n', "\\n"));
    store = serde_json::from_str(&text).unwrap();
    let mut srv = srv;
    srv.terminate();
    std::fs::write(&tokens_file, serde_json::to_vec(&store).unwrap()).unwrap();
    // The store is sealed: a hand edit is accepted only explicitly, server stopped.
    let out = std::process::Command::new(BIN)
        .args(["state", "reseal", "--data-dir"])
        .arg(&srv.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.spawn();
    let (status, v) = api(
        &srv,
        "POST",
        &token,
        None,
        "/api/admin/keys/rotate",
        Some(serde_json::json!({"tenant": "default"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let log = srv.log_text();
    assert!(log.contains("tenant key rotated"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("FORGED") && !l.contains("tenant key rotated")),
        "a forged line: {log}"
    );
    assert!(log.contains("ops\\n2026-12-06"), "{log}");
}

/// High 1, the same class on the query API: admin endpoints read JSON bodies with no limit
/// before the handler ran, so any token could make the server buffer gigabytes.
#[tokio::test]
async fn decoding_before_limits_admin_bodies() {
    let srv = Server::start(&[]);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "default"]);
    let big = format!(
        r#"{{"tenant": "default", "pad": "{}"}}"#,
        "x".repeat(64 << 20)
    );
    let before = srv.peak_rss_kib();
    for path in [
        "/api/admin/keys/rotate",
        "/api/admin/tokens",
        "/api/admin/responses/release",
    ] {
        let r = srv
            .http_client()
            .post(format!("{}{path}", srv.api))
            .bearer_auth(&reader)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await;
        // Refused with 413 (or cut off while still sending): never buffered whole.
        if let Ok(r) = r {
            assert_eq!(r.status(), 413, "{path}");
        }
    }
    let after = srv.peak_rss_kib();
    assert!(
        after.saturating_sub(before) < 48 * 1024,
        "peak RSS went from {before} KiB to {after} KiB"
    );
    assert_eq!(srv.ready_status().await, 200);
}

/// Also seen: the gRPC listener accepted `content-type: application/json`.
#[tokio::test]
async fn grpc_listener_takes_only_grpc() {
    let srv = Server::start(&[]);
    let (req, _) = request("json-on-grpc", 1);
    let r = srv
        .http_client()
        .post(format!(
            "{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            srv.grpc
        ))
        .bearer_auth(srv.token())
        .header("content-type", "application/json")
        .version(http::Version::HTTP_2)
        .body(serde_json::to_vec(&req).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let msg = r.headers()["grpc-message"].to_str().unwrap().to_owned();
    assert!(msg.contains("application/grpc"), "{msg}");
    // The real thing still works.
    let mut g = tonic::Request::new(req);
    g.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", srv.token()).parse().unwrap(),
    );
    srv.grpc_client().await.export(g).await.unwrap();
}
