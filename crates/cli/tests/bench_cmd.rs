//! The load generators as people run them: `bench ingest` keeps its synthetic spans out of real
//! tenants and shows progress when its output is a file or a CI log, `bench log` says what it is
//! doing while it runs.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn bench_ingest_writes_to_its_own_tenant_and_reports_progress_without_a_terminal() {
    let srv = Server::start(&[]);
    let ids = srv.dir.parent().unwrap().join("ids.txt");
    let out = Command::new(BIN)
        .args([
            "bench",
            "ingest",
            "--duration",
            "6",
            "--spans-per-request",
            "8",
        ])
        .args([
            "--endpoint",
            &srv.grpc,
            "--data-dir",
            srv.dir.to_str().unwrap(),
        ])
        .arg("--ids-out")
        .arg(&ids)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("bench ingest: ") && l.contains("spans/s")),
        "progress lines on a non-terminal stderr: {err}"
    );
    srv.flush().await;
    let id = std::fs::read_to_string(&ids).unwrap();
    let id = id.lines().next().expect("an acknowledged trace id");
    let path = format!("/api/traces/{id}");
    let (status, _) = call(&srv, "GET", &path, &srv.token(), "bench").await;
    assert_eq!(status, 200, "the synthetic trace is in tenant bench");
    let (status, _) = call(&srv, "GET", &path, &srv.token(), "default").await;
    assert_eq!(status, 404, "and not in the default tenant");

    // --rate offers a fixed load: 3 s at 400 spans/s in requests of 8 is at most 150 requests,
    // however fast the server acknowledges.
    let out = succeeds(
        Command::new(BIN)
            .args(["bench", "ingest", "--json", "--quiet", "--duration", "3"])
            .args(["--spans-per-request", "8", "--rate", "400"])
            .args(["--concurrency", "4", "--endpoint", &srv.grpc, "--data-dir"])
            .arg(&srv.dir),
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let requests = r["requests_ok"].as_u64().unwrap();
    assert!((1..=150).contains(&requests), "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["rate_offered"], 400.0, "{r}");
}

#[test]
fn bench_log_says_which_phase_it_is_in() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "log",
            "--leaves",
            "20000",
            "--flush-every",
            "5000",
            "--dir",
        ])
        .arg(tmp.path().join("log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for phase in ["[1/4]", "[2/4]", "[3/4]", "[4/4]"] {
        assert!(
            err.contains(&format!("bench log {phase}")),
            "{phase}: {err}"
        );
    }
    assert!(err.contains("20000 of 20000 leaves"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_compare_runs_the_server_and_a_decode_only_receiver_side_by_side() {
    let srv = Server::start(&[]);
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["bench", "ingest", "--compare", "--json", "--quiet"])
            .args([
                "--duration",
                "1",
                "--pairs",
                "2",
                "--spans-per-request",
                "64",
            ])
            .args([
                "--endpoint",
                &srv.grpc,
                "--data-dir",
                srv.dir.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    // (Unpinned: which cores a CI machine lets a process use varies.)
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each pair printed, then the medians and their ratio as JSON.
    assert_eq!(text.matches("pair ").count(), 2, "{text}");
    let json = &text[text.find('{').expect("a JSON summary")..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let server = v["tracevault_median"].as_f64().unwrap();
    let decode = v["decode_only_median"].as_f64().unwrap();
    assert!(server > 0.0 && decode > 0.0, "{v}");
    let ratio = v["ratio_median"].as_f64().unwrap();
    assert!((ratio - server / decode).abs() < 0.5, "{v}");
    // The receiver decoded the spans it acknowledged (two runs of at least one request).
    assert!(
        v["decode_only_spans_decoded"].as_u64().unwrap() >= 128,
        "{v}"
    );
    // Without the server's token there is nothing to compare with.
    let out = run(&["--no-token"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("same bearer token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
