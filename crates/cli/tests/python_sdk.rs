//! The OpenTelemetry Python SDK (a client nobody here wrote) exports over TLS with the generated CA
//! and a bearer token, through both its gRPC and HTTP/protobuf exporters; the test reads the spans
//! back through the query API and compares every attribute.
//!
//! The Python interpreter comes from `TRACEVAULT_PYTHON` (set by `scripts/test` to its venv).
//! Outside CI a missing interpreter skips the test loudly; under `CI=true` it fails.

mod common;

use common::*;

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    &span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .unwrap_or_else(|| panic!("attribute {key} missing in {span}"))["value"]
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_exports_over_grpc_and_http_with_tls_and_token() {
    let Some(py) = python() else { return };
    let srv = Server::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/otel_sdk_export.py"
    );
    let grpc = srv.grpc.replace("https://", "");
    let out = tokio::process::Command::new(&py)
        .arg(script)
        .arg(&grpc)
        .arg(format!("{}/v1/traces", srv.http))
        .arg(srv.ca())
        .arg(srv.token())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log_text()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bad_token_exports_ok"], serde_json::json!([false]));
    for run in report["runs"].as_array().unwrap() {
        let proto = run["protocol"].as_str().unwrap();
        assert_eq!(
            run["exports_ok"],
            serde_json::json!([true, true]),
            "{proto}"
        );
        let tid = run["trace_id"].as_str().unwrap();
        let v = srv.get_json(&format!("/api/traces/{tid}")).await;
        assert_eq!(count_json_spans(&v), 2, "{proto}: {v}");
        let batch = &v["batches"][0];
        let res_attrs = batch["resource"]["attributes"].as_array().unwrap();
        let svc = res_attrs
            .iter()
            .find(|a| a["key"] == "service.name")
            .unwrap();
        assert_eq!(svc["value"]["stringValue"], format!("py-{proto}"));
        assert!(
            res_attrs
                .iter()
                .any(|a| a["key"] == "telemetry.sdk.language"
                    && a["value"]["stringValue"] == "python")
        );
        let scope = &batch["scopeSpans"][0];
        assert_eq!(scope["scope"]["name"], "tracevault-e2e");
        assert_eq!(scope["scope"]["version"], "1.0");
        let spans = scope["spans"].as_array().unwrap();
        let root = spans.iter().find(|s| s["name"] == "GET /checkout").unwrap();
        let child = spans.iter().find(|s| s["name"] == "SELECT orders").unwrap();
        assert_eq!(root["traceId"], tid);
        assert_eq!(child["parentSpanId"], root["spanId"]);
        assert_eq!(root["kind"], 2);
        assert_eq!(child["kind"], 3);
        assert_eq!(attr(root, "http.request.method")["stringValue"], "GET");
        assert_eq!(attr(root, "http.response.status_code")["intValue"], "200");
        assert_eq!(attr(root, "ratio")["doubleValue"], 0.5);
        assert_eq!(attr(root, "cache.hit")["boolValue"], true);
        let items: Vec<_> = attr(root, "items")["arrayValue"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["stringValue"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(items, ["a", "b", "c"]);
        let counts: Vec<_> = attr(root, "counts")["arrayValue"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["intValue"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(counts, ["1", "2", "3"]);
        assert_eq!(root["events"][0]["name"], "validated");
        assert_eq!(attr(&root["events"][0], "rule")["stringValue"], "r1");
        assert_eq!(attr(&root["events"][0], "ok")["boolValue"], true);
        assert_eq!(attr(child, "db.system")["stringValue"], "postgresql");
        assert_eq!(
            attr(child, "db.query.text")["stringValue"],
            "SELECT id FROM orders WHERE id = ?"
        );
        assert_eq!(child["status"]["code"], 2);
        assert_eq!(child["status"]["message"], "timeout");
        assert_eq!(
            root["attributes"].as_array().unwrap().len(),
            6,
            "{proto}: no extra or lost attributes"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_exports_with_a_client_certificate_and_no_token() {
    let Some(py) = python() else { return };
    let srv = Server::start(&[]);
    let out = srv.dir.parent().unwrap().join("py-workload");
    let (ok, text) = srv.issue_cert(
        "spiffe://py.test/ns/shop/sa/py-mtls",
        &out,
        &["--service", "py-mtls"],
    );
    assert!(ok, "{text}");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/otel_sdk_mtls.py"
    );
    let res = tokio::process::Command::new(&py)
        .arg(script)
        .arg(srv.grpc.replace("https://", ""))
        .arg(format!("{}/v1/traces", srv.http))
        .arg(out.join("server-ca.pem"))
        .arg(out.join("client.pem"))
        .arg(out.join("client.key"))
        .arg("py-mtls")
        .output()
        .await
        .unwrap();
    assert!(
        res.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&res.stderr),
        srv.log_text()
    );
    let report: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let spoofed = run["service"] != "py-mtls";
        let expect = serde_json::json!([!spoofed]);
        assert_eq!(run["exports_ok"], expect, "{run}");
        let tid = run["trace_id"].as_str().unwrap();
        let r = srv
            .http_client()
            .get(format!("{}/api/traces/{tid}", srv.api))
            .bearer_auth(srv.token())
            .header("x-scope-orgid", "acme")
            .send()
            .await
            .unwrap();
        if spoofed {
            assert_eq!(r.status(), 404, "spoofed spans stored: {run}");
            continue;
        }
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(count_json_spans(&v), 1);
        let span = &v["batches"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(attr(span, "transport")["stringValue"], run["protocol"]);
    }
}
