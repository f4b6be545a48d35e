//! End to end: OTLP in over gRPC (tonic) and HTTP (protobuf and OTLP/JSON, reqwest), read back
//! through the Tempo-compatible query API and the CLI; encryption at rest.

mod common;

use common::*;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tv_model::otlp::*;

#[tokio::test]
async fn grpc_ingest_with_each_compression_is_readable_by_id() {
    let srv = Server::start(&[]);
    for comp in [
        None,
        Some(CompressionEncoding::Gzip),
        Some(CompressionEncoding::Zstd),
    ] {
        let mut client = srv.grpc_client().await;
        if let Some(c) = comp {
            client = client.send_compressed(c);
        }
        let (req, tid) = request("grpc-svc", 5);
        let mut r = tonic::Request::new(req.clone());
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", srv.token()).parse().unwrap(),
        );
        let resp = client.export(r).await.unwrap().into_inner();
        assert!(resp.partial_success.is_none(), "{comp:?}: {resp:?}");
        // Read back as OTLP protobuf and compare every span exactly.
        let bytes = srv
            .http_client()
            .get(format!("{}/api/traces/{}", srv.api, hex::encode(tid)))
            .bearer_auth(srv.token())
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let got = TracesData::decode(bytes.as_ref()).unwrap();
        assert_eq!(got.resource_spans.len(), 1);
        assert_eq!(
            got.resource_spans[0].resource,
            req.resource_spans[0].resource
        );
        let mut want = req.resource_spans[0].scope_spans[0].spans.clone();
        let mut have = got.resource_spans[0].scope_spans[0].spans.clone();
        want.sort_by_key(|s| s.span_id.clone());
        have.sort_by_key(|s| s.span_id.clone());
        assert_eq!(have, want, "{comp:?}");
    }
}

#[tokio::test]
async fn otlp_json_over_http_roundtrips_with_hex_ids() {
    let srv = Server::start(&[]);
    let tid = "5b8efff798038103d269b633813fc60c";
    let now = now_nanos();
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "scopeSpans": [{
                "scope": {"name": "curl"},
                "spans": [{
                    "traceId": tid,
                    "spanId": "eee19b7ec3c1b174",
                    "name": "GET /items",
                    "kind": 2,
                    "startTimeUnixNano": (now - 2_000_000).to_string(),
                    "endTimeUnixNano": now.to_string(),
                    "attributes": [
                        {"key": "http.response.status_code", "value": {"intValue": "503"}},
                        {"key": "ratio", "value": {"doubleValue": 0.25}},
                        {"key": "cached", "value": {"boolValue": true}},
                        {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}}
                    ],
                    "status": {"code": 2, "message": "upstream failed"}
                }, {
                    "traceId": tid,
                    "spanId": "00f067aa0ba902b7",
                    "parentSpanId": "eee19b7ec3c1b174",
                    "name": "SELECT items",
                    "startTimeUnixNano": (now - 1_000_000).to_string(),
                    "endTimeUnixNano": (now - 500_000).to_string()
                }]
            }]
        }]
    });
    let r = srv
        .post_otlp("application/json", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v1 = srv.get_json(&format!("/api/traces/{tid}")).await;
    assert_eq!(count_json_spans(&v1), 2);
    let spans = v1["batches"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    let root = spans.iter().find(|s| s["name"] == "GET /items").unwrap();
    assert_eq!(root["traceId"], tid);
    assert_eq!(root["spanId"], "eee19b7ec3c1b174");
    assert_eq!(root["startTimeUnixNano"], (now - 2_000_000).to_string());
    assert_eq!(root["status"]["message"], "upstream failed");
    let attrs = root["attributes"].as_array().unwrap();
    let get = |k: &str| attrs.iter().find(|a| a["key"] == k).unwrap()["value"].clone();
    assert_eq!(get("http.response.status_code")["intValue"], "503");
    assert_eq!(get("ratio")["doubleValue"], 0.25);
    assert_eq!(get("cached")["boolValue"], true);
    assert_eq!(get("tags")["arrayValue"]["values"][1]["stringValue"], "b");
    let child = spans.iter().find(|s| s["name"] == "SELECT items").unwrap();
    assert_eq!(child["parentSpanId"], "eee19b7ec3c1b174");
    let v2 = srv.get_json(&format!("/api/v2/traces/{tid}")).await;
    assert_eq!(count_json_spans(&v2), 2);
    assert_eq!(
        v2["trace"]["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "json-svc"
    );
}

#[tokio::test]
async fn gzip_protobuf_over_http_and_search_tags_values() {
    use std::io::Write;
    let srv = Server::start(&[]);
    let (req, tid) = request("checkout", 4);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&req.encode_to_vec()).unwrap();
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(resp.partial_success.is_none());
    let (other, other_tid) = request("cart", 2);
    assert_eq!(
        srv.post_otlp("application/x-protobuf", other.encode_to_vec())
            .await
            .status(),
        200
    );

    // Search works on the WAL head and, after sealing, on blocks.
    for phase in ["head", "blocks"] {
        let v = srv
            .get_json("/api/search?tags=service.name%3Dcheckout&limit=5")
            .await;
        let traces = v["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 1, "{phase}: {v}");
        assert_eq!(traces[0]["traceID"], hex::encode(tid));
        assert_eq!(traces[0]["rootServiceName"], "checkout");
        assert_eq!(traces[0]["rootTraceName"], "op-0");
        assert_eq!(traces[0]["durationMs"], 5);
        let v = srv
            .get_json("/api/search?tags=name%3Dop-1%20http.response.status_code%3D201")
            .await;
        let ids: Vec<_> = v["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].clone())
            .collect();
        assert_eq!(ids.len(), 2, "{phase}: {v}");
        assert!(ids.contains(&serde_json::json!(hex::encode(other_tid))));
        let v = srv.get_json("/api/search?minDuration=1s").await;
        assert_eq!(v["traces"].as_array().unwrap().len(), 0, "{phase}");
        let v = srv.get_json("/api/search?maxDuration=10ms&limit=1").await;
        assert_eq!(v["traces"].as_array().unwrap().len(), 1, "{phase}");
        let past = now_nanos() / 1_000_000_000 - 7200;
        let v = srv
            .get_json(&format!("/api/search?start={}&end={}", past - 60, past))
            .await;
        assert_eq!(
            v["traces"].as_array().unwrap().len(),
            0,
            "{phase}: time window"
        );
        let v = srv.get_json("/api/search/tags").await;
        let names = v["tagNames"].as_array().unwrap();
        assert!(names.contains(&serde_json::json!("service.name")), "{v}");
        assert!(
            names.contains(&serde_json::json!("http.response.status_code")),
            "{v}"
        );
        let v = srv.get_json("/api/search/tag/service.name/values").await;
        assert_eq!(
            v["tagValues"],
            serde_json::json!(["cart", "checkout"]),
            "{phase}"
        );
        srv.flush().await;
    }
    let bad = srv.get("/api/search?minDuration=fast").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("invalid duration"));
    assert_eq!(
        srv.get(&format!("/api/traces/{}", "ab".repeat(16)))
            .await
            .status(),
        404
    );
    assert_eq!(srv.get("/api/traces/not-hex").await.status(), 400);
    assert_eq!(srv.get("/api/echo").await.text().await.unwrap(), "echo");
}

// Multi-threaded so the client side can answer the server's HTTP/2 GOAWAY while the test thread
// waits for the process to exit.
#[tokio::test(flavor = "multi_thread")]
async fn a_trace_split_across_blocks_and_head_comes_back_whole_after_restart() {
    let mut srv = Server::start(&[]);
    let (mut req, tid) = request("split", 3);
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    srv.flush().await;
    for s in req.resource_spans[0].scope_spans[0].spans.iter_mut() {
        s.span_id = random_id::<8>().to_vec();
    }
    req.resource_spans[0].resource = Some(Resource {
        attributes: vec![kv("service.name", sv("split-2"))],
        ..Default::default()
    });
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    assert_eq!(count_json_spans(&v), 6);
    assert_eq!(v["batches"].as_array().unwrap().len(), 2);
    assert_eq!(srv.terminate(), Some(0), "graceful shutdown exits 0");
    assert!(srv.log_text().contains("store flushed"));
    srv.spawn();
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    assert_eq!(count_json_spans(&v), 6, "after restart");
}

#[tokio::test]
async fn cli_query_prints_a_tree_and_json() {
    let srv = Server::start(&[]);
    let (req, tid) = request("cli-svc", 3);
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args([
                "--server",
                &srv.api,
                "--data-dir",
                srv.dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let tree = run(&["query", "trace", &hex::encode(tid)]);
    assert!(
        tree.starts_with(&format!("trace {} (3 spans", hex::encode(tid))),
        "{tree}"
    );
    assert!(tree.contains("└─ cli-svc: op-0"), "{tree}");
    assert!(
        tree.contains("   ├─ cli-svc: op-1") || tree.contains("   └─ cli-svc: op-1"),
        "{tree}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["query", "trace", &hex::encode(tid), "--json"])).unwrap();
    assert_eq!(count_json_spans(&json), 3);
    let list = run(&["query", "search", "--tags", "service.name=cli-svc"]);
    assert!(
        list.contains(&hex::encode(tid)) && list.contains("1 traces"),
        "{list}"
    );
    let out = std::process::Command::new(BIN)
        .args(["query", "trace", &"cd".repeat(16), "--server", &srv.api])
        .args(["--data-dir", srv.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[tokio::test]
async fn no_marker_appears_in_any_file_under_the_data_dir() {
    let srv = Server::start(&[]);
    let marker = format!("tvmarker{:016x}", rand_u64());
    let (mut req, tid) = request(&marker, 3);
    for s in req.resource_spans[0].scope_spans[0].spans.iter_mut() {
        s.name = format!("span-{marker}");
        s.attributes
            .push(kv("app.note", sv(&format!("value-{marker}"))));
    }
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    let (n, hits) = files_containing(&srv.dir, marker.as_bytes());
    assert!(
        hits.is_empty(),
        "marker in plaintext before sealing: {hits:?}"
    );
    assert!(n > 5);
    srv.flush().await;
    let (_, hits) = files_containing(&srv.dir, marker.as_bytes());
    assert!(
        hits.is_empty(),
        "marker in plaintext after sealing: {hits:?}"
    );
    // And it is all still there for an authorized reader.
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    assert_eq!(count_json_spans(&v), 3);
    assert!(v.to_string().contains(&format!("value-{marker}")));
    assert!(
        std::fs::read_dir(srv.dir.join("blocks/default"))
            .unwrap()
            .count()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_cpu_time_of_each_ingest_stage() {
    let srv = Server::start(&[]);
    for _ in 0..3 {
        let (req, _) = request("checkout", 20);
        let r = srv
            .post_otlp("application/x-protobuf", req.encode_to_vec())
            .await;
        assert_eq!(r.status(), 200);
    }
    let metrics = srv.get("/metrics").await.text().await.unwrap();
    // `tracevault_ingest_stage_cpu_seconds_{count,sum}{stage="..."}`.
    let value = |kind: &str, stage: &str| -> f64 {
        let prefix = format!("tracevault_ingest_stage_cpu_seconds_{kind}{{stage=\"{stage}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix}: {metrics}"))
    };
    for stage in [
        "admit",
        "authorize",
        "validate",
        "inspect",
        "redact",
        "commit",
        "notify",
    ] {
        assert_eq!(value("count", stage), 3.0, "{stage}");
        assert!((0.0..1.0).contains(&value("sum", stage)), "{stage}");
    }
    // Redacting and inspecting 20 spans takes measurable CPU time.
    assert!(value("sum", "redact") > 0.0 && value("sum", "inspect") > 0.0);
}
