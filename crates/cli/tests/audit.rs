//! The audit log end to end: each read, token and certificate operation, and each refusal of an
//! authenticated caller makes exactly one record (who, from where, action, resource, decision,
//! result count; never the data); unauthenticated refusals are counted and sampled; auditors see
//! their tenant's records only; the log is encrypted on disk and verifies with `tracevault verify`.

mod common;

use common::*;
use prost::Message;

/// Records after index `after` (oldest first) of `principal`, read with `token` for `tenant`.
async fn records_after(
    srv: &Server,
    token: &str,
    tenant: &str,
    after: Option<u64>,
    principal: &str,
) -> Vec<serde_json::Value> {
    let mut q = format!("/api/audit?limit=1000&principal={principal}");
    if let Some(a) = after {
        q.push_str(&format!("&after={a}"));
    }
    let (st, body) = call(srv, "GET", &q, token, tenant).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut r = v["records"].as_array().unwrap().clone();
    r.reverse();
    r
}

fn last_index(srv_records: &[serde_json::Value]) -> Option<u64> {
    srv_records.last().and_then(|r| r["index"].as_u64())
}

fn token_id(token: &str) -> String {
    format!("token:{}", &token[4..20])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_is_recorded_once_and_the_audit_log_verifies() {
    let mut srv = Server::start(&[]);
    let admin = srv.token();
    let reader = create_token(
        &srv,
        &[
            "--role",
            "reader",
            "--tenant",
            "acme",
            "--name",
            "rita-the-reader",
        ],
    );
    let auditor = create_token(&srv, &["--role", "auditor", "--tenant", "acme"]);
    let other_auditor = create_token(&srv, &["--role", "auditor", "--tenant", "globex"]);
    let ingest = create_token(
        &srv,
        &[
            "--role",
            "ingest",
            "--tenant",
            "acme",
            "--service",
            "checkout",
        ],
    );
    let secret_value = format!("needle-{:016x}", rand_u64());
    let (mut req, tid) = request("checkout", 4);
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("order.note", sv(&secret_value)));
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(&ingest)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = token_id(&reader);
    let mut after = last_index(&records_after(&srv, &auditor, "acme", None, &rid).await);

    // Each read: exactly one record, with who, what, the decision and how many results.
    let tid_hex = hex::encode(tid);
    let reads: Vec<(String, &str, u64)> = vec![
        (format!("/api/traces/{tid_hex}"), "read_trace", 4),
        (format!("/api/v2/traces/{tid_hex}"), "read_trace", 4),
        (
            format!("/api/search?tags=order.note%3D{secret_value}"),
            "search",
            1,
        ),
        ("/api/search/tags".to_string(), "search", 0),
        ("/api/search/tag/order.note/values".to_string(), "search", 1),
        (format!("/api/traces/{tid_hex}/receipt"), "read_receipt", 4),
    ];
    for (path, action, results) in &reads {
        let (st, body) = call(&srv, "GET", path, &reader, "acme").await;
        assert_eq!(st, 200, "{path}: {body}");
        let recs = records_after(&srv, &auditor, "acme", after, &rid).await;
        assert_eq!(recs.len(), 1, "{path}: {recs:?}");
        let r = &recs[0];
        assert_eq!(r["action"], *action, "{r}");
        assert_eq!(r["decision"], "allow");
        assert_eq!(r["status"], 200);
        assert_eq!(r["principal"], rid.as_str());
        assert_eq!(r["name"], "rita-the-reader");
        assert_eq!(r["role"], "reader");
        assert_eq!(r["tenant"], "acme");
        assert_eq!(r["listener"], "api");
        assert!(r["from"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
        if *results > 0 {
            assert_eq!(r["results"], *results, "{path}: {r}");
        } else {
            assert!(r["results"].as_u64().unwrap() > 0, "{r}");
        }
        // The resource names what was read, never the values searched for.
        assert!(!r.to_string().contains(&secret_value), "{r}");
        after = r["index"].as_u64();
    }
    let search = records_after(&srv, &auditor, "acme", None, &rid).await;
    assert!(
        search
            .iter()
            .any(|r| r["resource"] == "search tags=[order.note]"),
        "{search:?}"
    );

    // A refused request of an authenticated caller: one deny record with the reason.
    let (st, _) = call(&srv, "GET", "/api/admin/tokens", &reader, "acme").await;
    assert_eq!(st, 403);
    let recs = records_after(&srv, &auditor, "acme", after, &rid).await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["decision"], "deny");
    assert_eq!(recs[0]["action"], "admin_tokens");
    assert!(
        recs[0]["reason"]
            .as_str()
            .unwrap()
            .contains("may not admin_tokens")
    );
    // A spoofed ingest: refused and recorded, with the listener it came through.
    let (spoof, _) = request("payments", 2);
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(&ingest)
        .header("content-type", "application/x-protobuf")
        .body(spoof.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let recs = records_after(&srv, &auditor, "acme", None, &token_id(&ingest)).await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "ingest");
    assert_eq!(recs[0]["decision"], "deny");
    assert_eq!(recs[0]["listener"], "otlp-http");
    assert_eq!(recs[0]["resource"], "spans:2");
    // Token and certificate operations are recorded under the admin.
    let made = create_token(&srv, &["--role", "metrics", "--tenant", "acme"]);
    let (ok, text) = srv.issue_cert(
        "spiffe://a.test/w",
        &srv.dir.parent().unwrap().join("w"),
        &[],
    );
    assert!(ok, "{text}");
    // (The bootstrap admin acts for the default tenant: read across tenants.)
    let (st, body) = call(
        &srv,
        "GET",
        "/api/audit?principal=bootstrap-admin&all_tenants=true&limit=1000",
        &admin,
        "default",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let admin_recs = serde_json::from_str::<serde_json::Value>(&body).unwrap()["records"]
        .as_array()
        .unwrap()
        .clone();
    let acts: Vec<_> = admin_recs
        .iter()
        .map(|r| r["resource"].as_str().unwrap().to_string())
        .collect();
    assert!(
        acts.iter()
            .any(|a| a.starts_with(&format!("token:{} role=metrics", &made[4..20]))),
        "{acts:?}"
    );
    assert!(
        acts.iter()
            .any(|a| a.starts_with("identity:spiffe://a.test/w tenant=acme role=ingest serial=")),
        "{acts:?}"
    );

    // Unauthenticated refusals: all counted, sampled into the log at a bounded rate.
    for _ in 0..60 {
        let (st, _) = call(
            &srv,
            "GET",
            "/api/search",
            "tvk_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
            "acme",
        )
        .await;
        assert_eq!(st, 401);
    }
    let metrics = call(&srv, "GET", "/metrics", &admin, "default").await.1;
    let counted: u64 = metrics
        .lines()
        .find(|l| l.starts_with("tracevault_audit_unauthenticated_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(counted >= 60, "{counted}");
    let (st, body) = call(
        &srv,
        "GET",
        "/api/audit?principal=anonymous&all_tenants=true&limit=1000",
        &admin,
        "default",
    )
    .await;
    assert_eq!(st, 200);
    let anon = serde_json::from_str::<serde_json::Value>(&body).unwrap()["records"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        (1..=15).contains(&anon),
        "{anon} anonymous records for 60 refusals"
    );

    // Tenant isolation: another tenant's auditor sees none of acme's records; readers none at all.
    let (st, body) = call(
        &srv,
        "GET",
        "/api/audit?limit=1000",
        &other_auditor,
        "globex",
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        !body.contains("\"tenant\":\"acme\"") && !body.contains(&rid),
        "{body}"
    );
    let (st, _) = call(&srv, "GET", "/api/audit", &other_auditor, "acme").await;
    assert_eq!(st, 403);
    let (st, _) = call(&srv, "GET", "/api/audit", &reader, "acme").await;
    assert_eq!(st, 403);
    let (st, _) = call(&srv, "GET", "/api/audit?all_tenants=true", &auditor, "acme").await;
    assert_eq!(st, 403);
    let (st, body) = call(&srv, "GET", "/api/audit?limit=0", &auditor, "acme").await;
    assert!(st == 400 && body.contains("between 1 and 1000"), "{body}");

    // The CLI reads the same records.
    let tf = srv.dir.parent().unwrap().join("auditor.token");
    std::fs::write(&tf, &auditor).unwrap();
    let (ok, text) = srv.cli(&[
        "audit",
        "search",
        "--action",
        "read_trace",
        "--tenant",
        "acme",
        "--token-file",
        tf.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("read_trace")).count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&format!("/api/traces/{tid_hex}")) && text.contains("results=4"),
        "{text}"
    );
    let (ok, text) = srv.cli(&[
        "audit",
        "tail",
        "-n",
        "3",
        "--tenant",
        "acme",
        "--token-file",
        tf.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    // On disk the records are encrypted; offline, the audit log verifies. (The needles are long
    // enough that the checkpoints' base64 signatures cannot hold one by chance.)
    let audit_dir = srv.dir.join("audit");
    for needle in [
        rid.as_bytes(),
        b"read_trace".as_slice(),
        b"rita-the-reader".as_slice(),
    ] {
        let (_, hits) = files_containing(&audit_dir, needle);
        assert!(hits.is_empty(), "{hits:?}");
    }
    assert_eq!(srv.terminate(), Some(0));
    let keys = vkeys(&srv.dir);
    let audit_keys = {
        let out = std::process::Command::new(BIN)
            .args(["log", "keys", "--audit", "--data-dir"])
            .arg(&srv.dir)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(audit_keys.len(), 2);
    assert_ne!(audit_keys, keys);
    let mut extra: Vec<&str> = Vec::new();
    for k in &audit_keys {
        extra.push("--audit-vkey");
        extra.push(k);
    }
    let (code, out) = run_verify(&srv.dir, &keys, &extra);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(decrypted and parsed)"), "{out}");
    let n: u64 = out
        .split("checkpoints; ")
        .nth(2)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(n >= 20, "{out}");
    // A changed audit entry is found.
    let mut bundles = Vec::new();
    let mut stack = vec![audit_dir.join("tile/entries")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                bundles.push(p)
            }
        }
    }
    let b = &bundles[0];
    let mut bytes = std::fs::read(b).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(b, &bytes).unwrap();
    let (code, out) = run_verify(&srv.dir, &keys, &extra);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL audit/"), "{out}");
}
