//! The web UI in a real browser (issue 19): `tracevault demo` serves its shop's traces, and
//! crates/server/ui/tests/browser.mjs drives Debian's Chromium through playwright-core against
//! it: sign-in by login link and by pasted token, TraceQL search with autocompletion, the
//! waterfall, redacted and restricted fields, findings on spans, verification in the page (and
//! its failure for an altered receipt and for an unpinned key), a reader kept from admin data,
//! a 10,000-span trace, both themes, and axe-core on every page. Screenshots go to
//! `target/ui-artifacts/`; the first-render figures are printed.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in crates/server/ui (scripts/test installs both);
//! without them it says it skipped, and under `CI=true` it fails.
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use prost::Message;
use tv_model::otlp::*;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/ui")
}

/// What the browser test needs, or why it cannot run.
fn prerequisites() -> Result<PathBuf, String> {
    let chromium = std::env::var("TV_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !ui_dir().join("node_modules/playwright-core").exists() {
        return Err("crates/server/ui/node_modules is missing (npm ci there)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is missing".into());
    }
    Ok(PathBuf::from(chromium))
}

/// Chromium's path, or None after saying why the test is skipped (a failure under `CI=true`).
fn browser_or_skip(what: &str) -> Option<PathBuf> {
    match prerequisites() {
        Ok(c) => Some(c),
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} cannot run under CI: {why}"
            );
            eprintln!("SKIPPED {what}: {why}");
            None
        }
    }
}

/// A running `tracevault demo`, stopped on drop.
struct Demo {
    child: std::process::Child,
    api: String,
    http: String,
    dir: PathBuf,
    vkeys: Vec<String>,
}

impl Demo {
    /// `tracevault ARGS --server API --data-dir DIR`: its stdout (it must succeed).
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .args(["--server", &self.api, "--data-dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tracevault {args:?}: {err}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_demo(dir: &Path) -> Demo {
    let mut child = Command::new(BIN)
        .args(["demo", "--data-dir"])
        .arg(dir)
        .args(PORT0)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        println!("demo: {line}");
        let done = line == "serving until Ctrl-C";
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(
        text.contains("serving until Ctrl-C"),
        "the demo did not come up:\n{text}"
    );
    // What it says it did.
    for want in [
        "sent over OTLP/HTTP + TLS",
        "redacted at ingest",
        "detector:credit_card",
        "detector:email",
        "tv-sqli",
        "tv-lfi-traversal",
        "tv-scanner-user-agent",
        "tv-behaviour-auth-burst",
        "tv-behaviour-new-edge",
        "automated response: quarantine",
        "signed checkpoint",
        "verified: entry",
        "#login=",
    ] {
        assert!(
            text.contains(want),
            "the demo's summary lacks {want:?}:\n{text}"
        );
    }
    let addrs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("listen.json")).unwrap()).unwrap();
    let vkeys = lines
        .iter()
        .skip_while(|l| !l.starts_with("verifier keys"))
        .skip(1)
        .take_while(|l| l.starts_with("  tracevault/"))
        .map(|l| l.trim().to_string())
        .collect();
    Demo {
        child,
        api: format!("https://{}", addrs["api"].as_str().unwrap()),
        http: format!("https://{}", addrs["otlp_http"].as_str().unwrap()),
        dir: dir.to_path_buf(),
        vkeys,
    }
}

/// One trace of `n` spans over five services, a tree of depth up to ~12.
fn big_trace(n: usize) -> (ExportTraceServiceRequest, String) {
    let tid = random_id::<16>();
    let now = now_nanos();
    let services = ["gateway", "orders", "inventory", "pricing", "search"];
    let mut ids: Vec<[u8; 8]> = Vec::with_capacity(n);
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); services.len()];
    for i in 0..n {
        let id = random_id::<8>();
        let parent = if i == 0 { None } else { Some(ids[(i - 1) / 3]) };
        let start = now - 2_000_000_000 + (i as u64) * 100_000;
        by_service[i % services.len()].push(Span {
            trace_id: tid.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("op-{}", i % 40),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 500_000 + (i as u64 % 7) * 100_000,
            attributes: vec![kv("http.response.status_code", iv(200))],
            ..Default::default()
        });
        ids.push(id);
    }
    let req = ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .map(|(k, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", sv(services[k]))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    (req, hex::encode(tid))
}

#[tokio::test]
async fn the_ui_in_chromium_against_the_demo() {
    let Some(chromium) = browser_or_skip("the browser test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let demo = start_demo(&dir);
    assert_eq!(
        demo.vkeys.len(),
        2,
        "the demo prints the log's two verifier keys"
    );
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client(&dir.join("tls/ca.pem")))
        .build()
        .unwrap();

    // A 10,000-span trace.
    let (req, big) = big_trace(10_000);
    let r = client
        .post(format!("{}/v1/traces", demo.http))
        .bearer_auth(&admin)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The page's verifier (src/verify.js) under Node against the demo's receipts: each
    // verifies, and every one-character change to one is refused.
    let found: serde_json::Value = client
        .get(format!(
            "{}/api/search?q={}&limit=1",
            demo.api,
            url_escape("{ name = \"Charge\" }")
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tid = found["traces"][0]["traceID"].as_str().unwrap().to_string();
    let mut receipts: serde_json::Value = client
        .get(format!("{}/api/traces/{tid}/receipt", demo.api))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    receipts["receipts"].as_array_mut().unwrap().truncate(3);
    let rf = tmp.path().join("receipts.json");
    std::fs::write(&rf, receipts.to_string()).unwrap();
    let vk = tmp.path().join("vkeys.txt");
    std::fs::write(&vk, demo.vkeys.join("\n")).unwrap();
    let out = Command::new("node")
        .arg("tests/verify_receipts.mjs")
        .arg(&rf)
        .arg(&vk)
        .current_dir(ui_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(
        out.status.success(),
        "the page's verifier under Node: {text}"
    );
    assert!(text.contains("3 receipts verified"), "{text}");

    // A reader's login link, landing on the search page.
    let reader = demo.cli(&["token", "create", "--role", "reader", "--tenant", "default"]);
    let tf = tmp.path().join("reader.token");
    std::fs::write(&tf, &reader).unwrap();
    let login = demo.cli(&[
        "login-url",
        "--next",
        "/search?q=%7B%7D",
        "--token-file",
        tf.to_str().unwrap(),
    ]);
    // The standalone verifier page, as the CLI writes it (to open offline).
    let page = tmp.path().join("verify.html");
    let (ok, out) = tv(&["verify-page", "--out", page.to_str().unwrap()]);
    assert!(ok, "{out}");
    let digest = out
        .split_whitespace()
        .next()
        .and_then(|d| d.strip_prefix("sha256:"))
        .expect("the digest")
        .to_string();
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-artifacts");
    let artifacts = std::env::var("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("ui-artifacts"))
        .unwrap_or(artifacts);

    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("tests/browser.mjs")
            .current_dir(ui_dir())
            .env("TV_CHROMIUM", chromium)
            .env("TV_URL", &demo.api)
            .env("TV_SERVER_CERT", demo.dir.join("tls/server.pem"))
            .env("TV_READER_LOGIN", login)
            .env("TV_ADMIN_TOKEN", admin)
            .env("TV_VKEYS", vk)
            .env("TV_BIG_TRACE", big)
            .env("TV_ARTIFACTS", &artifacts)
            .env("TV_VERIFY_PAGE", &page)
            .env("TV_VERIFY_SHA256", &digest)
            .output()
            .map(|o| (o, demo))
    })
    .await
    .unwrap()
    .unwrap();
    let (out, _demo) = out;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{stdout}");
    assert!(
        stdout.contains("FIGURES {\"search_first_render_ms\""),
        "{stdout}"
    );
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running child process, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_ui_signs_in_through_a_real_openid_provider() {
    let Some(chromium) = browser_or_skip("the OIDC browser test") else {
        return;
    };
    // The provider first (the server fetches its keys at start), told the callback URL of the
    // server's API port, chosen now.
    let port = free_port();
    let api_port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let api = format!("https://127.0.0.1:{api_port}");
    let mut idp = Child(
        Command::new("node")
            .arg("tests/idp.mjs")
            .current_dir(ui_dir())
            .env("IDP_PORT", port.to_string())
            .env("IDP_REDIRECT", format!("{api}/ui/oidc/callback"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Its output is read to the end (a closed pipe would kill it), the first line awaited.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = idp.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_default();
    assert!(
        first.starts_with("idp ready"),
        "the provider did not start: {first}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tv.toml");
    std::fs::write(
        &cfg,
        format!(
            "[oidc]\nissuer = \"{issuer}\"\naudience = \"tracevault-api\"\njwks_url = \"{issuer}/jwks\"\n\
             client_id = \"tracevault-ui\"\nauthorization_endpoint = \"{issuer}/auth\"\n\
             token_endpoint = \"{issuer}/token\"\nscopes = \"openid tracevault\"\n"
        ),
    )
    .unwrap();
    let dir = tmp.path().join("data");
    let _srv = Child(
        Command::new(BIN)
            .args(["serve", "--config", cfg.to_str().unwrap(), "--data-dir"])
            .arg(&dir)
            .args(["--api", &format!("127.0.0.1:{api_port}")])
            .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("listen.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client(&dir.join("tls/ca.pem")))
        .build()
        .unwrap();
    let artifacts = std::env::var("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("ui-artifacts"))
        .unwrap_or_else(|_| PathBuf::from("target/ui-artifacts"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let cert = dir.join("tls/server.pem");
    let url = api.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("tests/oidc.mjs")
            .current_dir(ui_dir())
            .env("TV_CHROMIUM", chromium)
            .env("TV_URL", url)
            .env("TV_SERVER_CERT", cert)
            .env("TV_ARTIFACTS", artifacts)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the OIDC browser test failed:\n{stdout}"
    );
    // The sign-in is in the audit log.
    let audit = client
        .get(format!("{api}/api/audit?action=ui_login"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("ui session (oidc)"), "{audit}");
    assert!(audit.contains("\"name\":\"alice\""), "{audit}");
    drop(idp);
}
