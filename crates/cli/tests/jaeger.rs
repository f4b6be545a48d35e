//! The Jaeger query API under `/jaeger`, checked against the shapes Jaeger's API documentation
//! and UI use: `{data, total, limit, offset, errors}`; services and operations; trace search by
//! service, operation, tags and duration (microsecond times); traces with `processes`, typed
//! `tags`, `references` and `logs`; a 404 in Jaeger's error form; masking as in trace reads.
mod common;

use common::*;
use serde_json::{Value, json};

async fn get(srv: &Server, token: &str, path: &str) -> (u16, Value, String) {
    let (st, body) = call(srv, "GET", path, token, "acme").await;
    (st, serde_json::from_str(&body).unwrap_or(Value::Null), body)
}

#[tokio::test]
async fn jaeger_api_serves_the_jaeger_ui() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
    let (req, checkout, home) = two_service_traces();
    send_acme(&srv, &req).await;
    let admin = srv.token();

    let (st, v, body) = get(&srv, &admin, "/jaeger/api/services").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        v,
        json!({"data": ["checkout", "frontend"], "total": 2, "limit": 0, "offset": 0, "errors": null})
    );
    let (_, v, body) = get(&srv, &admin, "/jaeger/api/services/checkout/operations").await;
    assert_eq!(v["data"], json!(["POST /pay", "SELECT"]), "{body}");
    let (_, v, body) = get(
        &srv,
        &admin,
        "/jaeger/api/operations?service=checkout&spanKind=server",
    )
    .await;
    assert_eq!(
        v["data"],
        json!([{"name": "POST /pay", "spanKind": "server"}]),
        "{body}"
    );
    let (st, _, body) = get(
        &srv,
        &admin,
        "/jaeger/api/operations?service=checkout&spanKind=sideways",
    )
    .await;
    assert_eq!(st, 400, "{body}");

    // Search: the error tag as the Jaeger UI sends it, times in microseconds.
    let now_us = now_nanos() / 1000;
    let window = format!(
        "start={}&end={}",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    );
    let (st, v, body) = get(
        &srv,
        &admin,
        &format!(
            "/jaeger/api/traces?service=checkout&tags={}&{window}&limit=20",
            url_escape(r#"{"error":"true"}"#)
        ),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(v["total"], 1, "{body}");
    let t = &v["data"][0];
    assert_eq!(t["traceID"], checkout.as_str(), "{body}");
    assert_eq!(t["spans"].as_array().unwrap().len(), 4, "{body}");
    let services: Vec<&str> = t["processes"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["serviceName"].as_str().unwrap())
        .collect();
    assert_eq!(services.len(), 2);
    assert!(services.contains(&"checkout") && services.contains(&"frontend"));
    let pay = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == "POST /pay")
        .unwrap();
    assert_eq!(pay["references"][0]["refType"], "CHILD_OF", "{pay}");
    assert_eq!(pay["references"][0]["traceID"], checkout.as_str());
    assert!(
        pay["startTime"].as_u64().unwrap() > now_us - 3_600_000_000,
        "micros: {pay}"
    );
    assert!(pay["duration"].as_u64().unwrap() > 0);
    let tags = pay["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!({"key": "error", "type": "bool", "value": true})),
        "{pay}"
    );
    assert!(
        tags.contains(&json!({"key": "span.kind", "type": "string", "value": "server"})),
        "{pay}"
    );
    assert!(
        tags.contains(&json!({"key": "http.status_code", "type": "int64", "value": 500})),
        "{pay}"
    );
    assert_eq!(
        t["processes"][pay["processID"].as_str().unwrap()]["serviceName"],
        "checkout"
    );
    // Operation, typed tag values (a string "500" finds the int 500), durations.
    for (q, want) in [
        (
            format!("service=frontend&operation={}", url_escape("GET /home")),
            vec![home.as_str()],
        ),
        (
            format!(
                "service=checkout&tags={}",
                url_escape(r#"{"http.status_code":"500"}"#)
            ),
            vec![checkout.as_str()],
        ),
        (
            "service=checkout&tags=db.system%3Dpostgres".to_string(),
            vec![checkout.as_str()],
        ),
        (
            "service=frontend&minDuration=85ms".to_string(),
            vec![checkout.as_str()],
        ),
        ("service=frontend&maxDuration=1ms".to_string(), vec![]),
    ] {
        let (st, v, body) = get(&srv, &admin, &format!("/jaeger/api/traces?{q}&{window}")).await;
        assert_eq!(st, 200, "{q}: {body}");
        let ids: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, want, "{q}: {body}");
    }
    let (st, _, body) = get(
        &srv,
        &admin,
        "/jaeger/api/traces?service=x&tags=%7Bnot%20json",
    )
    .await;
    assert_eq!(st, 400, "{body}");

    // A trace by id; an unknown one in Jaeger's error form.
    let (st, v, body) = get(&srv, &admin, &format!("/jaeger/api/traces/{checkout}")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 4);
    let (st, v, body) = get(
        &srv,
        &admin,
        &format!("/jaeger/api/traces/{}", "ab".repeat(16)),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    assert_eq!(v["errors"][0]["code"], 404, "{body}");

    // A reader: a restricted tag finds nothing, and reads as its marker.
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    let (_, v, body) = get(
        &srv,
        &reader,
        &format!(
            "/jaeger/api/traces?service=checkout&tags={}&{window}",
            url_escape(r#"{"user.tier":"gold"}"#)
        ),
    )
    .await;
    assert_eq!(v["data"], json!([]), "{body}");
    let (_, _, body) = get(&srv, &reader, &format!("/jaeger/api/traces/{checkout}")).await;
    assert!(
        !body.contains("gold") && body.contains("[restricted:pii]"),
        "{body}"
    );
    // Dependencies: parent and child in different requests, the child first.
    let tid = random_id::<16>();
    let (parent, child) = (random_id::<8>(), random_id::<8>());
    let now = now_nanos();
    let one = |service: &str, id: [u8; 8], parent: Option<[u8; 8]>| {
        tv_model::otlp::ExportTraceServiceRequest {
            resource_spans: vec![tv_model::otlp::ResourceSpans {
                resource: Some(tv_model::otlp::Resource {
                    attributes: vec![kv("service.name", sv(service))],
                    ..Default::default()
                }),
                scope_spans: vec![tv_model::otlp::ScopeSpans {
                    spans: vec![tv_model::otlp::Span {
                        trace_id: tid.to_vec(),
                        span_id: id.to_vec(),
                        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                        name: "q".into(),
                        start_time_unix_nano: now - 2_000_000,
                        end_time_unix_nano: now - 1_000_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    };
    send_acme(&srv, &one("db", child, Some(parent))).await;
    send_acme(&srv, &one("checkout", parent, None)).await;
    let deps_url = format!(
        "/jaeger/api/dependencies?endTs={}&lookback=3600000",
        now / 1_000_000 + 60_000
    );
    let (st, v, body) = get(&srv, &admin, &deps_url).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        v["data"],
        json!([
            {"parent": "checkout", "child": "db", "callCount": 1, "errorCount": 0},
            {"parent": "frontend", "child": "checkout", "callCount": 1, "errorCount": 1},
        ]),
        "{body}"
    );
    let deps = v["data"].clone();
    // An hour earlier: none.
    let (_, v, _) = get(
        &srv,
        &admin,
        &format!(
            "/jaeger/api/dependencies?endTs={}&lookback=60000",
            now / 1_000_000 - 7_200_000
        ),
    )
    .await;
    assert_eq!(v["data"], json!([]));

    // The graph survives a restart: saved at shutdown, encrypted (the service names are not
    // in the file), loaded at start.
    let graph_dir = srv.dir.join("graph");
    srv.restart();
    let (_, hits) = files_containing(&graph_dir, b"checkout");
    assert!(hits.is_empty(), "{hits:?}");
    assert!(graph_dir.join("acme.graph").exists());
    let (_, v2, body) = get(&srv, &admin, &deps_url).await;
    assert_eq!(v2["data"], deps, "{body}");

    // Another tenant sees no services and no dependencies.
    let (_, body) = call(&srv, "GET", &deps_url, &other_reader(&srv), "globex").await;
    assert!(!body.contains("checkout"), "{body}");
    let other = other_reader(&srv);
    let (_, body) = call(&srv, "GET", "/jaeger/api/services", &other, "globex").await;
    assert!(!body.contains("checkout"), "{body}");
}

fn other_reader(srv: &Server) -> String {
    create_token(srv, &["--role", "reader", "--tenant", "globex"])
}

/// A reader who may not read service names sees them as their marker, and asking for a
/// service's operations by its real name tells nothing (no oracle); by the marker it answers.
#[tokio::test]
async fn service_names_a_reader_may_not_read_are_no_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "[access.field_classes]\ntopology = [\"service.name\"]\n";
    let (srv, _) = start_with_config(tmp, cfg, &[]);
    let (req, _, _) = two_service_traces();
    send_acme(&srv, &req).await;
    let admin = srv.token();
    let (_, v, body) = get(&srv, &admin, "/jaeger/api/services/checkout/operations").await;
    assert_eq!(v["data"], json!(["POST /pay", "SELECT"]), "{body}");

    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    let (st, v, body) = get(&srv, &reader, "/jaeger/api/services").await;
    assert_eq!(st, 200, "{body}");
    assert!(
        !body.contains("checkout") && !body.contains("frontend"),
        "{body}"
    );
    let markers = v["data"].as_array().unwrap();
    assert!(!markers.is_empty(), "{body}");
    for probe in ["checkout", "frontend"] {
        let (st, v, body) = get(
            &srv,
            &reader,
            &format!("/jaeger/api/services/{probe}/operations"),
        )
        .await;
        assert_eq!((st, &v["data"]), (200, &json!([])), "{probe}: {body}");
        let (_, v, body) = get(
            &srv,
            &reader,
            &format!("/jaeger/api/operations?service={probe}"),
        )
        .await;
        assert_eq!(v["data"], json!([]), "{probe}: {body}");
    }
    let marker = markers[0].as_str().unwrap();
    let (_, v, body) = get(
        &srv,
        &reader,
        &format!("/jaeger/api/services/{}/operations", url_escape(marker)),
    )
    .await;
    assert!(!v["data"].as_array().unwrap().is_empty(), "{body}");
}
