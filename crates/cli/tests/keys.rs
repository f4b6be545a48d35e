//! Tenant key rotation end to end: rotate, write, restart, every trace under every version reads
//! back; a copy without the old version proves which data each version wraps; rotation is
//! admin-only per tenant and audited.

mod common;

use common::*;

async fn send(srv: &Server, tenant: &str) -> [u8; 16] {
    let (st, body, tid) = send_spans(&srv.http_client(), srv, tenant, 4).await;
    assert_eq!(st, 200, "{body}");
    tid
}

async fn status_of(srv: &Server, tenant: &str, tid: &[u8; 16]) -> u16 {
    let path = format!("/api/traces/{}", hex::encode(tid));
    call(srv, "GET", &path, &srv.token(), tenant).await.0
}

/// `tracevault keys usage --json` of the server's data directory, acme's lines.
fn key_use(srv: &Server) -> Vec<serde_json::Value> {
    cli_lines(&["keys", "usage", "--json"], &srv.dir)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|u: &serde_json::Value| u["tenant"] == "acme")
        .collect()
}

/// `tracevault keys list --json`, and acme's entry in it.
fn acme_keys(srv: &Server) -> (serde_json::Value, serde_json::Value) {
    let (ok, list) = srv.cli(&["keys", "list", "--json"]);
    assert!(ok, "{list}");
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let acme = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap()
        .clone();
    (v, acme)
}

fn versions_under(uses: &[serde_json::Value], prefix: &str) -> Vec<u64> {
    uses.iter()
        .filter(|u| u["file"].as_str().unwrap().starts_with(prefix))
        .map(|u| u["kek_version"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_write_restart_and_every_version_reads_back() {
    let mut srv = Server::start(&[]);
    // v1: sealed into a block before the rotation.
    let a = send(&srv, "acme").await;
    srv.flush().await;
    let (ok, text) = srv.cli(&["keys", "rotate", "--tenant", "acme"]);
    assert!(ok && text.contains("key v2"), "{text}");
    // v2: one block, and one batch still in the write-ahead log.
    let b = send(&srv, "acme").await;
    srv.flush().await;
    let c = send(&srv, "acme").await;
    let (v, acme) = acme_keys(&srv);
    assert_eq!(acme["current"], 2);
    assert_eq!(acme["versions"].as_array().unwrap().len(), 2);
    assert!(v["root"].as_str().unwrap().starts_with("file "));

    // Only admins of the tenant rotate; the rotation is in the audit log.
    let globex_admin = create_token(&srv, &["--role", "admin", "--tenant", "globex"]);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    for tok in [&globex_admin, &reader] {
        let r = srv
            .http_client()
            .post(format!("{}/api/admin/keys/rotate", srv.api))
            .bearer_auth(tok)
            .json(&serde_json::json!({"tenant": "acme"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let body = key_audit(&srv).await;
    assert!(body.contains("tenant-key:acme rotated to v2"), "{body}");
    assert!(body.contains("\"decision\":\"deny\""), "{body}");

    // Which version wraps what, read from the files: the block sealed before the rotation is
    // under v1, the one after and the WAL segment under v2.
    let uses = key_use(&srv);
    assert_eq!(
        versions_under(&uses, "blocks/acme/"),
        vec![1, 2],
        "{uses:?}"
    );
    assert_eq!(versions_under(&uses, "wal/"), vec![2], "{uses:?}");

    // Restart: every version reads back.
    srv.restart();
    for t in [&a, &b, &c] {
        assert_eq!(status_of(&srv, "acme", t).await, 200);
    }
    srv.terminate();

    // After shutdown the WAL is sealed too: the blocks are v1, v2, v2.
    let uses = key_use(&srv);
    assert_eq!(
        versions_under(&uses, "blocks/acme/"),
        vec![1, 2, 2],
        "{uses:?}"
    );
    // Without v1, the v1 block cannot be opened: the server names the missing version.
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path().join("data");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&srv.dir)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(dir.join("keys/tenants/acme/kek-v1.json")).unwrap();
    let empty = copy.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let err = serve_refused(&empty, &dir);
    assert!(err.contains("tenant acme version 1 is missing"), "{err}");

    // Re-wrap: the v1 block's data key moves under v2 without the block being rewritten; then
    // the same copy without v1 opens and serves everything.
    srv.spawn();
    let blocks_before = block_digests(&srv.dir);
    let (ok, text) = srv.cli(&["keys", "rewrap", "--tenant", "acme"]);
    assert!(
        ok && text.contains("re-wrapped 1 data keys under key v2"),
        "{text}"
    );
    let (ok, text) = srv.cli(&["keys", "rewrap", "--tenant", "acme"]);
    assert!(ok && text.contains("re-wrapped 0 data keys"), "{text}");
    assert_eq!(
        block_digests(&srv.dir),
        blocks_before,
        "blocks were rewritten"
    );
    srv.terminate();
    std::fs::copy(
        srv.dir.join("keys/tenants/acme/rewrapped.json"),
        dir.join("keys/tenants/acme/rewrapped.json"),
    )
    .unwrap();
    let other = Server::start_at(dir, Some(copy), &[]);
    for t in [&a, &b, &c] {
        assert_eq!(status_of(&other, "acme", t).await, 200);
    }
    // And verify still passes on the original: nothing it commits to changed.
    let (code, out) = run_verify(&srv.dir, &vkeys(&srv.dir), &[]);
    assert_eq!(code, 0, "{out}");
}

/// SHA-256 of every block file.
fn block_digests(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("blocks")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let b = std::fs::read(&p).unwrap();
                let h = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &b);
                out.push((p.display().to_string(), hex::encode(h.as_ref())));
            }
        }
    }
    out.sort();
    out
}

/// Spans of acme that ended an hour ago (past acme's 30-minute retention once sealed), flushed
/// into a block; the trace id.
async fn send_hour_old(srv: &Server) -> [u8; 16] {
    let (mut req, tid) = request("checkout", 3);
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for sp in &mut ss.spans {
                sp.start_time_unix_nano -= 3_600_000_000_000;
                sp.end_time_unix_nano -= 3_600_000_000_000;
            }
        }
    }
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("x-scope-orgid", "acme")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&req).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.flush().await;
    tid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_destroys_a_key_version_that_no_longer_wraps_anything() {
    // acme keeps 30 minutes; retention checks often, and a superseded version may go at once.
    let (srv, _) = start_with_config(
        tempfile::tempdir().unwrap(),
        "[storage]\nunused_key_grace_secs = 0\nretention_interval_secs = 0.2\n[storage.tenant_retention_secs]\nacme = 1800\n",
        &[],
    );
    // Under v1: spans that ended an hour ago, past retention as soon as they are sealed.
    let old = send_hour_old(&srv).await;
    let (ok, text) = srv.cli(&["keys", "rotate", "--tenant", "acme"]);
    assert!(ok, "{text}");
    // Under v2: fresh spans, kept.
    let fresh = send(&srv, "acme").await;
    srv.flush().await;
    let v1 = srv.dir.join("keys/tenants/acme/kek-v1.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while v1.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            cli_lines(&["keys", "usage"], &srv.dir),
            srv.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(srv.dir.join("keys/tenants/acme/kek-v2.json").exists());
    assert_eq!(status_of(&srv, "acme", &old).await, 404);
    assert_eq!(status_of(&srv, "acme", &fresh).await, 200);
    let (_, acme) = acme_keys(&srv);
    assert_eq!(acme["versions"].as_array().unwrap().len(), 1, "{acme}");
    assert_eq!(acme["current"], 2);
}

/// The same, in the other order: the last block under v1 expires *before* v1 is superseded.
/// The rotation alone must then be enough for the next retention pass to destroy v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_superseded_after_its_last_block_expired_is_destroyed_too() {
    let (srv, _) = start_with_config(
        tempfile::tempdir().unwrap(),
        "[storage]\nunused_key_grace_secs = 0\nretention_interval_secs = 0.2\n[storage.tenant_retention_secs]\nacme = 1800\n",
        &[],
    );
    send_hour_old(&srv).await;
    // Wait until retention has deleted acme's only block (v1 is still current then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !srv
        .log_text()
        .contains("deleted a block past its retention period")
    {
        assert!(std::time::Instant::now() < deadline, "{}", srv.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ok, text) = srv.cli(&["keys", "rotate", "--tenant", "acme"]);
    assert!(ok, "{text}");
    let v1 = srv.dir.join("keys/tenants/acme/kek-v1.json");
    while v1.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "v1 survived: {:?}",
            cli_lines(&["keys", "usage"], &srv.dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(srv.dir.join("keys/tenants/acme/kek-v2.json").exists());
}
