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
    let (srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
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
    // Another tenant sees no services.
    let other = create_token(&srv, &["--role", "reader", "--tenant", "globex"]);
    let (_, body) = call(&srv, "GET", "/jaeger/api/services", &other, "globex").await;
    assert!(!body.contains("checkout"), "{body}");
}
