//! Secure defaults: authentication everywhere but /ready, TLS 1.3 only, private files, plaintext
//! only when asked for (loudly).

mod common;

use std::sync::Arc;

use common::*;
use prost::Message;

#[tokio::test]
async fn missing_or_wrong_tokens_get_401_and_unauthenticated() {
    let srv = Server::start(&[]);
    let c = srv.http_client();
    let (req, _) = request("x", 1);
    let wrong = format!("tvk_{}_{}", "0".repeat(16), "f".repeat(64));
    let mut real = srv.token();
    let last = real.pop().unwrap();
    real.push(if last == 'a' { 'b' } else { 'a' });
    for (name, auth) in [
        ("none", None),
        ("garbage", Some("Bearer nope".to_owned())),
        ("unknown id", Some(format!("Bearer {wrong}"))),
        ("wrong secret", Some(format!("Bearer {real}"))),
        ("basic", Some("Basic dXNlcjpwYXNz".to_owned())),
    ] {
        for url in [
            format!("{}/api/search", srv.api),
            format!("{}/api/traces/{}", srv.api, "ab".repeat(16)),
            format!("{}/metrics", srv.api),
            format!("{}/api/echo", srv.api),
        ] {
            let mut rb = c.get(&url);
            if let Some(a) = &auth {
                rb = rb.header("authorization", a);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 401, "{name} {url}");
            let body = r.text().await.unwrap();
            assert!(!body.contains(&"f".repeat(64)), "token echoed");
        }
        let mut rb = c
            .post(format!("{}/v1/traces", srv.http))
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec());
        if let Some(a) = &auth {
            rb = rb.header("authorization", a);
        }
        assert_eq!(rb.send().await.unwrap().status(), 401, "{name} http ingest");
        let mut r = tonic::Request::new(req.clone());
        if let Some(a) = &auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        let st = srv.grpc_client().await.export(r).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unauthenticated, "{name} grpc");
    }
    // An unauthenticated caller learns nothing about its request: 401 before 415 or 413.
    let r = c
        .post(format!("{}/v1/traces", srv.http))
        .header("content-type", "text/plain")
        .body(vec![0u8; 32 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // /ready is the one open endpoint.
    assert_eq!(
        c.get(format!("{}/ready", srv.api))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Nothing was stored by the refused requests.
    let m = srv.get("/metrics").await.text().await.unwrap();
    assert!(!m.contains("tracevault_spans_accepted_total{"), "{m}");
    assert!(m.contains("outcome=\"unauthenticated\""), "{m}");
    // No secret in the server's log.
    let log = srv.log_text();
    assert!(!log.contains(&srv.token()), "admin token logged");
    assert!(log.contains("admin.token"));
}

#[tokio::test]
async fn key_and_token_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let srv = Server::start(&[]);
    let mode = |p: &str| {
        std::fs::metadata(srv.dir.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("admin.token"), 0o600);
    assert_eq!(mode("keys/root.key"), 0o600);
    assert_eq!(mode("keys/ca.key"), 0o600);
    assert_eq!(mode("tls/server.key"), 0o600);
    assert_eq!(mode("tokens.json"), 0o600);
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("keys"), 0o700);
    let tok = srv.token();
    assert!(tok.starts_with("tvk_") && tok.len() == 85, "{tok}");
    let stored = std::fs::read_to_string(srv.dir.join("tokens.json")).unwrap();
    assert!(!stored.contains(tok.rsplit('_').next().unwrap()));
    // Key material stays out of core dumps: no core file allowed.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", srv.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    // Its memory is not kept in transparent huge pages (they hold RSS up; issue 22).
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.pid())).unwrap();
    match status.lines().find(|l| l.starts_with("THP_enabled:")) {
        Some(l) => assert_eq!(l.split_whitespace().nth(1), Some("0"), "{l}"),
        None => eprintln!("note: this kernel does not report THP_enabled; not checked"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_open_to_others_is_refused_with_a_clear_message() {
    use std::os::unix::fs::PermissionsExt;
    let mut srv = Server::start(&[]);
    srv.terminate();
    for file in ["keys/root.key", "keys/tenants", "keys/log-signing.json"] {
        let p = srv.dir.join(file);
        let before = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let open = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(open)).unwrap();
        let cfg = srv.dir.parent().unwrap().join("empty.toml");
        std::fs::write(&cfg, "").unwrap();
        let err = serve_refused(&cfg, &srv.dir);
        assert!(
            err.contains(p.to_str().unwrap())
                && err.contains(&format!("{open:o}"))
                && err.contains("chmod"),
            "{file}: {err}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(before)).unwrap();
    }
    // Put back, it starts.
    srv.spawn();
    assert_eq!(srv.ready_status().await, 200);
}

async fn handshake(
    srv: &Server,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<String, std::io::Error> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates({
        let mut r = rustls::RootCertStore::empty();
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        for c in CertificateDer::pem_file_iter(srv.ca()).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
        r
    })
    .with_no_client_auth();
    let addr = srv.api.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = conn.connect(name, tcp).await?;
    let (_, c) = tls.get_ref();
    Ok(format!(
        "{:?} {:?}",
        c.protocol_version().unwrap(),
        c.negotiated_key_exchange_group().map(|g| g.name())
    ))
}

#[tokio::test]
async fn tls12_is_refused_and_tls13_prefers_post_quantum_key_exchange() {
    let srv = Server::start(&[]);
    let err = handshake(&srv, &[&rustls::version::TLS12])
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("protocol version")
            || err.to_string().contains("HandshakeFailure")
            || err.to_string().contains("alert"),
        "{err}"
    );
    let ok = handshake(&srv, &[&rustls::version::TLS13]).await.unwrap();
    assert!(ok.starts_with("TLSv1_3"), "{ok}");
    assert!(ok.contains("X25519MLKEM768"), "{ok}");
    // The server counts the refused handshake once its side of it has finished.
    let mut m = String::new();
    for _ in 0..100 {
        m = srv.get("/metrics").await.text().await.unwrap();
        if m.contains("tracevault_tls_handshake_failures_total 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        m.contains("tracevault_tls_handshake_failures_total 1"),
        "{m}"
    );
    assert!(m.contains("group=\"X25519MLKEM768\""), "{m}");
}

#[tokio::test]
async fn operator_certificates_are_used_when_given() {
    // Start once to get a CA-signed certificate, then hand those files over as "the operator's".
    let first = Server::start(&[]);
    let cert = first.dir.join("tls/server.pem");
    let key = first.dir.join("tls/server.key");
    let tmp = tempfile::tempdir().unwrap();
    let (c2, k2) = (tmp.path().join("op.pem"), tmp.path().join("op.key"));
    std::fs::copy(&cert, &c2).unwrap();
    std::fs::copy(&key, &k2).unwrap();
    let srv = Server::start(&[
        "--tls-cert",
        c2.to_str().unwrap(),
        "--tls-key",
        k2.to_str().unwrap(),
    ]);
    assert!(
        !srv.dir.join("tls/server.pem").exists(),
        "generated a certificate anyway"
    );
    let r = reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client(&first.ca()))
        .build()
        .unwrap()
        .get(format!("{}/ready", srv.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn plaintext_only_behind_the_flag_with_a_warning_and_still_authenticated() {
    let srv = Server::start(&["--insecure-plaintext"]);
    assert!(srv.api.starts_with("http://"));
    assert!(srv.log_text().contains("INSECURE"), "{}", srv.log_text());
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{}/api/echo", srv.api))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (req, tid) = request("plain", 2);
    let mut r = tonic::Request::new(req);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", srv.token()).parse().unwrap(),
    );
    srv.grpc_client().await.export(r).await.unwrap();
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    assert_eq!(count_json_spans(&v), 2);
    // The default server serves nothing over plaintext on its TLS port: it answers 400 saying
    // which scheme to use.
    let tls = Server::start(&[]);
    let plain = tls.api.replace("https://", "http://");
    let r = c.get(format!("{plain}/api/echo")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains(&tls.api) && !text.contains("echo"), "{text}");
}

#[tokio::test]
async fn log_keys_prints_both_verifier_keys() {
    let srv = Server::start(&[]);
    let out = std::process::Command::new(BIN)
        .args(["log", "keys", "--data-dir", srv.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let keys = tv_tlog::policy::LogKeys::from_vkeys(&lines).unwrap();
    use tv_tlog::note::NoteVerifier;
    assert_eq!(keys.ed25519.name(), keys.mldsa.name());
    assert!(keys.ed25519.name().starts_with("tracevault/"));
    // The seeds are not in clear anywhere in the key file.
    let file = std::fs::read_to_string(srv.dir.join("keys/log-signing.json")).unwrap();
    assert!(file.contains(lines[0]) && file.contains(lines[1]));
    let missing = std::process::Command::new(BIN)
        .args(["log", "keys", "--data-dir", "/nonexistent-tracevault"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("start the server once"));
}

/// Runs `serve` on `dir` expecting it to refuse to start; returns its output.
fn refused_start(dir: &std::path::Path) -> String {
    let out = std::process::Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(PORT0)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 17: `verify` did not cover the files the server trusts: re-enabling a revoked token by
/// editing `tokens.json`, or deleting registrations or detector state, went unnoticed. They are
/// sealed now: the server refuses to start on credentials and registrations changed outside it,
/// `verify` names every changed or deleted file, and `state reseal` accepts a deliberate change.
#[tokio::test]
async fn trusted_files_changed_outside_the_server_are_reported() {
    let mut srv = Server::start(&[]);
    let reader = create_token(
        &srv,
        &["--role", "reader", "--tenant", "default", "--name", "old"],
    );
    let (ok, list) = srv.cli(&["token", "list", "--json"]);
    assert!(ok, "{list}");
    let id = reader.split('_').nth(1).unwrap().to_owned();
    let (ok, out) = srv.cli(&["token", "revoke", &id]);
    assert!(ok, "{out}");
    let (ok, out) = srv.cli(&[
        "cert",
        "register",
        "--identity",
        "spiffe://t.test/a/b",
        "--tenant",
        "default",
    ]);
    assert!(ok, "{out}");
    srv.terminate();
    let dir = srv.dir.clone();
    let keys = vkeys(&dir);
    let (code, out) = run_verify(&dir, &keys, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("trusted files match their seals"), "{out}");

    // Re-enable the revoked token by hand.
    let tokens = dir.join("tokens.json");
    let original = std::fs::read(&tokens).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    let edited = text.replacen("\"revoked\": true", "\"revoked\": false", 1);
    assert_ne!(edited, text, "{text}");
    std::fs::write(&tokens, edited).unwrap();
    let (code, out) = run_verify(&dir, &keys, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("FAIL tokens.json: changed outside the server"),
        "{out}"
    );
    let err = refused_start(&dir);
    assert!(
        err.contains("tokens.json: changed outside the server"),
        "{err}"
    );
    std::fs::write(&tokens, &original).unwrap();

    // Delete the registrations, then plant an unsealed responses list.
    let workloads = dir.join("workloads.json");
    let saved = std::fs::read(&workloads).unwrap();
    std::fs::remove_file(&workloads).unwrap();
    std::fs::write(dir.join("responses.json"), b"[]").unwrap();
    let (code, out) = run_verify(&dir, &keys, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL workloads.json: deleted"), "{out}");
    assert!(
        out.contains("FAIL responses.json: not written by the server"),
        "{out}"
    );
    let err = refused_start(&dir);
    assert!(err.contains("workloads.json: deleted"), "{err}");
    std::fs::write(&workloads, &saved).unwrap();
    std::fs::remove_file(dir.join("responses.json")).unwrap();

    // The list itself is sealed: editing it is reported too.
    let manifest = dir.join("state-seal.json");
    let m = std::fs::read(&manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
    v["files"]["tokens.json"] = serde_json::json!("00");
    std::fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, out) = run_verify(&dir, &keys, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL state-seal.json"), "{out}");
    std::fs::write(&manifest, &m).unwrap();

    // A deliberate change, accepted offline, starts and is audited.
    std::fs::write(&tokens, text.replacen("\"old\"", "\"renamed\"", 1)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["state", "reseal", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepting tokens.json"));
    srv.spawn();
    let recs = srv
        .get_json("/api/audit?all_tenants=true&action=state_reseal")
        .await;
    assert_eq!(recs["records"].as_array().unwrap().len(), 1, "{recs}");
}
