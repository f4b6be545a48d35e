//! Crypto-shredding (issue 6): erasing tenant acme while tenant globex keeps writing. Afterwards
//! acme's traces are gone for every API, after a restart, and for an offline reader holding a
//! copy of the data made before the erasure and the root key; globex loses nothing; `verify`
//! passes and names acme as erased; the erasure is audited.

mod common;

use common::*;

async fn trace_status(srv: &Server, tenant: &str, tid: &[u8; 16]) -> u16 {
    let path = format!("/api/traces/{}", hex::encode(tid));
    call(srv, "GET", &path, &srv.token(), tenant).await.0
}

/// A server holding one trace of acme and one of globex (3 spans each).
async fn server_with_acme_and_globex() -> (Server, [u8; 16], [u8; 16]) {
    let srv = Server::start(&[]);
    let c = srv.http_client();
    let (st, _, acme) = send_spans(&c, &srv, "acme", 3).await;
    assert_eq!(st, 200);
    let (st, _, globex) = send_spans(&c, &srv, "globex", 3).await;
    assert_eq!(st, 200);
    (srv, acme, globex)
}

/// acme's trace is gone and its ingest refused; globex's trace reads back.
async fn acme_gone_globex_kept(srv: &Server, acme: &[u8; 16], globex: &[u8; 16]) {
    assert_eq!(trace_status(srv, "acme", acme).await, 404);
    assert_eq!(trace_status(srv, "globex", globex).await, 200);
    let (st, body, _) = send_spans(&srv.http_client(), srv, "acme", 1).await;
    assert_eq!(st, 403, "{body}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_one_tenant_while_another_keeps_writing() {
    let mut srv = Server::start(&[]);
    let c = srv.http_client();
    // acme: a sealed block under key v1, a block under v2, and a batch still in the WAL.
    let mut acme = Vec::new();
    for _ in 0..2 {
        let (st, body, tid) = send_spans(&c, &srv, "acme", 5).await;
        assert_eq!(st, 200, "{body}");
        acme.push(tid);
    }
    srv.flush().await;
    let (ok, text) = srv.cli(&["keys", "rotate", "--tenant", "acme"]);
    assert!(ok, "{text}");
    let (_, _, tid) = send_spans(&c, &srv, "acme", 5).await;
    acme.push(tid);
    srv.flush().await;
    let (_, _, tid) = send_spans(&c, &srv, "acme", 5).await;
    acme.push(tid);
    let (st, _, first_globex) = send_spans(&c, &srv, "globex", 3).await;
    assert_eq!(st, 200);
    for t in &acme {
        assert_eq!(trace_status(&srv, "acme", t).await, 200);
    }

    // A copy of everything made before the erasure (a backup).
    let backup = tempfile::tempdir().unwrap();
    let before = backup.path().join("data");
    copy_dir(&srv.dir, &before);

    // Without --yes: what would go, and nothing goes.
    let (ok, text) = srv.cli(&["tenant", "erase", "acme"]);
    assert!(ok, "{text}");
    assert!(text.contains("nothing was erased"), "{text}");
    assert!(text.contains("(v1, v2)"), "{text}");
    assert!(text.contains("run again with --yes"), "{text}");
    assert_eq!(trace_status(&srv, "acme", &acme[0]).await, 200);

    // globex keeps writing while acme is erased.
    let writer = {
        let (c, srv_http, token) = (c.clone(), srv.http.clone(), srv.token());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while std::time::Instant::now() < deadline {
                let (req, tid) = request("checkout", 3);
                let r = c
                    .post(format!("{srv_http}/v1/traces"))
                    .bearer_auth(&token)
                    .header("x-scope-orgid", "globex")
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&req).unwrap())
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    acked.push(tid);
                }
            }
            acked
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (ok, text) = srv.cli(&["tenant", "erase", "acme", "--yes"]);
    println!("{text}");
    assert!(ok, "{text}");
    assert!(text.contains("tenant acme erased"), "{text}");
    assert!(text.contains("key versions v1, v2 destroyed"), "{text}");
    assert!(text.contains("irreversible"), "{text}");
    assert!(
        text.contains("a backup holding both the keys directory"),
        "{text}"
    );
    let acked = writer.await.unwrap();
    assert!(acked.len() > 5, "globex kept writing: {}", acked.len());

    // Gone for every API.
    for t in &acme {
        assert_eq!(trace_status(&srv, "acme", t).await, 404);
    }
    let (st, body) = call(&srv, "GET", "/api/search?limit=50", &srv.token(), "acme").await;
    assert_eq!(st, 200);
    assert!(
        !body.contains("traceID\""),
        "search still finds acme: {body}"
    );
    let (st, body, _) = send_spans(&c, &srv, "acme", 1).await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("tenant acme was erased"), "{body}");
    let (ok, list) = srv.cli(&["keys", "list", "--json"]);
    assert!(ok && !list.contains("\"acme\""), "{list}");
    assert!(!srv.dir.join("keys/tenants/acme").exists());
    assert!(!srv.dir.join("blocks/acme").exists());
    let (ok, again) = srv.cli(&["tenant", "erase", "acme", "--yes"]);
    assert!(!ok && again.contains("already erased"), "{again}");
    // globex lost nothing.
    assert_eq!(trace_status(&srv, "globex", &first_globex).await, 200);
    for t in &acked {
        assert_eq!(trace_status(&srv, "globex", t).await, 200);
    }
    let body = key_audit(&srv).await;
    assert!(
        body.contains("tenant:acme erased: key versions [v1, v2] destroyed"),
        "{body}"
    );

    // After a restart: still refused, still gone; globex intact.
    srv.restart();
    let (st, _, _) = send_spans(&c, &srv, "acme", 1).await;
    assert_eq!(st, 403);
    assert_eq!(trace_status(&srv, "acme", &acme[3]).await, 404);
    for t in acked.iter().take(20) {
        assert_eq!(trace_status(&srv, "globex", t).await, 200);
    }
    srv.terminate();

    // verify passes and names acme as erased (ciphertexts, then decrypting globex).
    let keys = vkeys(&srv.dir);
    for extra in [&["--no-decrypt"][..], &[][..]] {
        let (code, out) = run_verify(&srv.dir, &keys, extra);
        println!("{out}");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("erased: tenant acme: erased at"), "{out}");
        assert!(out.contains("key versions v1, v2 destroyed"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }

    // The copy from before the erasure, with the root key and the keys as they are now: acme's
    // blocks cannot be decrypted by the server or by verify; globex's can.
    std::fs::remove_dir_all(before.join("keys")).unwrap();
    copy_dir(&srv.dir.join("keys"), &before.join("keys"));
    let (code, out) = run_verify(&before, &keys, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("blocks/acme/") && out.contains("tenant acme version 1 is missing"),
        "{out}"
    );
    assert!(!out.contains("blocks/globex/"), "{out}");
    let empty = backup.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let err = serve_refused(&empty, &before);
    assert!(err.contains("tenant acme version"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_backup_restores_a_lost_key_store_but_never_an_erased_tenant() {
    let (mut srv, acme, globex) = server_with_acme_and_globex().await;
    let c = srv.http_client();
    srv.flush().await;
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "a long backup passphrase\n").unwrap();
    let out = tmp.path().join("keys.age");
    let (ok, text) = srv.cli(&[
        "keys",
        "backup",
        "--out",
        out.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("tenants [acme, globex"), "{text}");
    let sealed = std::fs::read_to_string(&out).unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!sealed.contains("kek-v1"));
    // A tenant-bound admin may not take every tenant's keys.
    let scoped = create_token(&srv, &["--role", "admin", "--tenant", "globex"]);
    let r = c
        .post(format!("{}/api/admin/keys/backup", srv.api))
        .bearer_auth(&scoped)
        .json(&serde_json::json!({"recipient": "age1qqqq"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // acme is erased after the backup; then the whole key store is lost.
    let (ok, text) = srv.cli(&["tenant", "erase", "acme", "--yes"]);
    assert!(ok, "{text}");
    srv.terminate();
    std::fs::remove_dir_all(srv.dir.join("keys")).unwrap();

    // The wrong passphrase: refused, nothing written.
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase at all").unwrap();
    let restore = |p: &std::path::Path| {
        tv(&[
            "keys",
            "restore",
            "--in",
            out.to_str().unwrap(),
            "--passphrase-file",
            p.to_str().unwrap(),
            "--data-dir",
            srv.dir.to_str().unwrap(),
        ])
    };
    let (ok, text) = restore(&wrong);
    assert!(
        !ok && text.contains("cannot decrypt with this passphrase"),
        "{text}"
    );
    assert!(!srv.dir.join("keys").exists());
    let (ok, text) = restore(&pass);
    assert!(ok, "{text}");
    assert!(
        text.contains("NOT restored: tenant acme was erased after this backup"),
        "{text}"
    );
    assert!(!srv.dir.join("keys/tenants/acme").exists());

    // The server starts on the restored keys: globex reads back, acme stays erased, and the
    // backup and the restore are in the audit log.
    srv.spawn();
    acme_gone_globex_kept(&srv, &acme, &globex).await;
    let body = key_audit(&srv).await;
    assert!(body.contains("keys: backup of"), "{body}");
    assert!(
        body.contains("erased tenants not restored: [acme]"),
        "{body}"
    );
    srv.terminate();
    let (code, out) = run_verify(&srv.dir, &vkeys(&srv.dir), &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_servers_tenant_is_erased_offline_and_a_running_one_is_not_touched() {
    let (mut srv, acme, globex) = server_with_acme_and_globex().await;
    let dir = srv.dir.clone();
    let offline = |args: &[&str]| {
        let mut a = vec![
            "tenant",
            "erase",
            "acme",
            "--offline",
            "--data-dir",
            dir.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        tv(&a)
    };
    // The data directory is locked while the server runs: no second writer, offline or not.
    let (ok, text) = offline(&["--yes"]);
    assert!(
        !ok && text.contains("in use by another tracevault process"),
        "{text}"
    );
    let empty = srv.dir.parent().unwrap().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let err = serve_refused(&empty, &srv.dir);
    assert!(
        err.contains("in use by another tracevault process"),
        "{err}"
    );
    srv.terminate();

    // A mistyped directory is not created.
    let typo = dir.parent().unwrap().join("no-such-data");
    let (ok, text) = tv(&[
        "tenant",
        "erase",
        "acme",
        "--offline",
        "--yes",
        "--data-dir",
        typo.to_str().unwrap(),
    ]);
    assert!(
        !ok && text.contains("is not a tracevault data directory"),
        "{text}"
    );
    assert!(!typo.exists());

    // Stopped: the preview, then the erasure (the WAL batch is recovered and sealed first).
    let (ok, text) = offline(&[]);
    assert!(ok && text.contains("nothing was erased"), "{text}");
    assert!(text.contains("(3 spans)"), "{text}");
    let (ok, text) = offline(&["--yes"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("tenant acme erased") && text.contains("key versions v1 destroyed"),
        "{text}"
    );
    assert!(!srv.dir.join("keys/tenants/acme").exists());

    srv.spawn();
    acme_gone_globex_kept(&srv, &acme, &globex).await;
    let body = key_audit(&srv).await;
    assert!(
        body.contains("tenant:acme erased") && body.contains("(offline, on the stopped server"),
        "{body}"
    );
    srv.terminate();
    let (code, out) = run_verify(&srv.dir, &vkeys(&srv.dir), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("erased: tenant acme"), "{out}");
}
