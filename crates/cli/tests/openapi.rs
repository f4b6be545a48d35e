//! The OpenAPI document against the live server: schemathesis (PyPI, installed by `scripts/test`
//! into the test venv) reads `/api/openapi.json` from a running server and sends generated
//! requests (examples, boundary values, random data, and sequences that follow the API's
//! links) to every operation with a valid admin token over real TLS. It must find no 5xx, no
//! status the document does not list, no response whose body or content type violates the
//! document, and no request that breaks the connection; afterwards the server still serves and
//! the data it acknowledged before is intact.
//!
//! A bounded number of examples per operation keeps the run to tens of seconds. Outside CI a
//! missing venv skips the test loudly; under `CI=true` it fails.
mod common;

use std::path::Path;

use common::*;

/// Checks schemathesis runs on every response.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Runs schemathesis against `base` with the document the server serves; returns whether it
/// passed and its report.
fn schemathesis(
    bin: &Path,
    srv: &Server,
    base: &str,
    token: &str,
    filter: &[&str],
) -> (bool, String) {
    let out = std::process::Command::new(bin)
        .arg("run")
        .arg(format!("{}/api/openapi.json", srv.api))
        .args(["--url", base])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg("--tls-verify")
        .arg(srv.ca())
        .args(["--checks", CHECKS])
        .args(["--max-examples", "25", "--seed", "18", "--workers", "2"])
        .args(["--request-timeout", "30", "--output-truncate", "true"])
        // The server closes a connection idle for 20 s (conns.rs); a pooled connection reused
        // just as it closes fails with an EOF before any answer, as with any keep-alive client,
        // which then sends the request again on a new connection.
        .args(["--request-retries", "1"])
        .args(filter)
        // Its cache and reports go to a scratch directory, not the source tree.
        .current_dir(srv.dir.parent().expect("the data directory has a parent"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running schemathesis");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), report)
}

/// The report's summary (the whole report when it has none).
fn summary(report: &str) -> &str {
    report.find("SUMMARY").map_or(report, |i| &report[i..])
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    let Some(py) = python() else { return };
    let bin = Path::new(&py).with_file_name("schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is not in the test venv ({})",
        bin.display()
    );
    // Generated requests come fast: the rate limit must not be what answers them.
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(
        tmp,
        "[rate_limits]\nrequests_per_sec = 1000000\nspans_per_sec = 100000000\n",
        &[],
    );
    let admin = srv.token();
    // Data to find: two services in the default tenant, one span that is an attack (a finding).
    let (req, checkout, _) = two_service_traces();
    let (st, body) = send_as(&srv, &admin, "default", &req).await;
    assert_eq!(st, 200, "{body}");
    let (mut attack, _) = request("shop", 1);
    attack.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv(
            "url.query",
            sv("q=1%27%20UNION%20SELECT%20password%20FROM%20users--"),
        ));
    let (st, body) = send_as(&srv, &admin, "default", &attack).await;
    assert_eq!(st, 200, "{body}");
    srv.flush().await;
    let before = srv.get_json(&format!("/api/traces/{checkout}")).await;

    // The document the server serves is the one in the repository.
    let served = srv.get("/api/openapi.json").await;
    assert_eq!(served.status(), 200);
    let served: serde_json::Value = served.json().await.unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../server/src/api/openapi.json")).unwrap();
    assert_eq!(served, committed);

    // Every API operation but the two that would cut the run short (revoking tokens, which
    // may be the run's own, and erasing tenants) ...
    let (ok, report) = schemathesis(
        &bin,
        &srv,
        &srv.api,
        &admin,
        &[
            "--exclude-path",
            "/v1/traces",
            "--exclude-path",
            "/api/admin/tenants/erase",
            "--exclude-path",
            "/api/admin/tokens/{id}",
        ],
    );
    eprintln!("schemathesis, the API:\n{}", summary(&report));
    assert!(
        ok,
        "schemathesis found problems:\n{report}\n{}",
        srv.log_text()
    );
    // ... then the server still serves the data it acknowledged ...
    assert_eq!(srv.ready_status().await, 200);
    let after = srv.get_json(&format!("/api/traces/{checkout}")).await;
    assert_eq!(count_json_spans(&after), count_json_spans(&before));
    assert_eq!(count_json_spans(&after), 4, "{after}");
    // ... the OTLP/HTTP receiver, on its own listener ...
    let (ok, report) = schemathesis(
        &bin,
        &srv,
        &srv.http,
        &admin,
        &["--include-path", "/v1/traces"],
    );
    eprintln!("schemathesis, OTLP/HTTP:\n{}", summary(&report));
    assert!(
        ok,
        "schemathesis found problems:\n{report}\n{}",
        srv.log_text()
    );
    // ... and last the two left out.
    let (ok, report) = schemathesis(
        &bin,
        &srv,
        &srv.api,
        &admin,
        &[
            "--include-path",
            "/api/admin/tenants/erase",
            "--include-path",
            "/api/admin/tokens/{id}",
        ],
    );
    eprintln!(
        "schemathesis, erasure and revocation:\n{}",
        summary(&report)
    );
    assert!(
        ok,
        "schemathesis found problems:\n{report}\n{}",
        srv.log_text()
    );
    assert_eq!(srv.ready_status().await, 200);
}
