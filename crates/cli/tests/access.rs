//! Access control end to end (issue 5, first part): tokens managed through the API and the
//! `tracevault token` command, roles out of the box, tenant isolation on every endpoint, services
//! a token may write, revocation and expiry taking effect at once on every listener.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_endpoint_for_its_own_and_another_tenant() {
    let srv = Server::start(&[]);
    let admin = srv.token();
    // Data in two tenants, written by the bootstrap admin.
    let marker = format!("tvm{:012x}", rand_u64());
    let (acme_req, acme_tid) = request(&format!("acme-{marker}"), 3);
    let (other_req, other_tid) = request(&format!("other-{marker}"), 3);
    assert_eq!(send_as(&srv, &admin, "acme", &acme_req).await.0, 200);
    assert_eq!(send_as(&srv, &admin, "globex", &other_req).await.0, 200);

    let roles = [
        "admin",
        "ingest",
        "reader",
        "investigator",
        "auditor",
        "metrics",
    ];
    let tokens: Vec<(String, String)> = roles
        .iter()
        .map(|r| {
            (
                r.to_string(),
                create_token(&srv, &["--role", r, "--tenant", "acme"]),
            )
        })
        .collect();

    let acme_hex = hex::encode(acme_tid);
    let other_hex = hex::encode(other_tid);
    // (method, path, roles allowed)
    let read = ["admin", "reader", "investigator"];
    let endpoints: Vec<(&str, String, Vec<&str>)> = vec![
        ("GET", format!("/api/traces/{acme_hex}"), read.to_vec()),
        ("GET", format!("/api/v2/traces/{acme_hex}"), read.to_vec()),
        ("GET", "/api/search".to_string(), read.to_vec()),
        ("GET", "/api/search/tags".to_string(), read.to_vec()),
        (
            "GET",
            "/api/search/tag/service.name/values".to_string(),
            read.to_vec(),
        ),
        (
            "GET",
            format!("/api/traces/{acme_hex}/receipt"),
            read.to_vec(),
        ),
        // The log's checkpoint commits to every tenant and names none: any credential.
        ("GET", "/api/log/checkpoint".to_string(), roles.to_vec()),
        // Server-wide figures: credentials bound to a tenant are refused, whatever the role.
        ("GET", "/metrics".to_string(), vec![]),
        ("GET", "/api/admin/tokens".to_string(), vec!["admin"]),
        ("GET", "/api/admin/certs".to_string(), vec!["admin"]),
        ("GET", "/api/audit".to_string(), vec!["admin", "auditor"]),
        // Sealing is server-wide too (it writes every tenant's head into blocks).
        ("POST", "/api/admin/flush".to_string(), vec![]),
    ];
    let mut checked = 0;
    for (role, tok) in &tokens {
        // Ingest.
        let (st, _) = send_as(&srv, tok, "acme", &request("acme-svc", 1).0).await;
        let may_ingest = matches!(role.as_str(), "admin" | "ingest");
        assert_eq!(st, if may_ingest { 200 } else { 403 }, "{role} ingest acme");
        let (st, _) = send_as(&srv, tok, "globex", &request("x", 1).0).await;
        assert_eq!(st, 403, "{role} ingest into another tenant");
        for (method, path, allowed) in &endpoints {
            let (st, body) = call(&srv, method, path, tok, "acme").await;
            let ok = allowed.contains(&role.as_str());
            if ok {
                assert!(st == 200, "{role} {method} {path}: {st} {body}");
            } else {
                assert_eq!(st, 403, "{role} {method} {path}: {body}");
                assert!(!body.contains(&marker), "{role} {path}: data in a refusal");
            }
            // Another tenant: refused before anything is read, whatever the role.
            let (st, body) = call(&srv, method, path, tok, "globex").await;
            assert_eq!(st, 403, "{role} {method} {path} for another tenant: {body}");
            assert!(!body.contains(&marker));
            checked += 2;
        }
        // The other tenant's trace is not found through this tenant either.
        if read.contains(&role.as_str()) {
            let (st, body) = call(
                &srv,
                "GET",
                &format!("/api/traces/{other_hex}"),
                tok,
                "acme",
            )
            .await;
            assert_eq!(st, 404, "{role}: {body}");
            assert!(!body.contains(&marker));
            let (_, body) = call(
                &srv,
                "GET",
                "/api/search/tag/service.name/values",
                tok,
                "acme",
            )
            .await;
            assert!(!body.contains(&format!("other-{marker}")), "{body}");
            assert!(body.contains(&format!("acme-{marker}")), "{body}");
        }
    }
    eprintln!("{checked} role x endpoint x tenant combinations checked");
    // A Prometheus scraper of every tenant reads /metrics and nothing else.
    let scraper = create_token(&srv, &["--role", "metrics", "--name", "prometheus"]);
    let (st, body) = call(&srv, "GET", "/metrics", &scraper, "default").await;
    assert_eq!(st, 200);
    assert!(body.contains("tracevault_spans_accepted_total"));
    assert!(!body.contains(&marker), "service names in metrics labels");
    let (st, body) = call(&srv, "GET", "/metrics", &tokens[0].1, "acme").await;
    assert_eq!(st, 403);
    assert!(body.contains("metrics-server-wide"), "{body}");
    let (st, _) = call(&srv, "GET", "/api/search", &scraper, "default").await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_revoked_and_expire_on_every_listener() {
    let srv = Server::start(&[]);
    let reader = create_token(
        &srv,
        &["--role", "reader", "--tenant", "acme", "--name", "grafana"],
    );
    let ingest = create_token(&srv, &["--role", "ingest", "--tenant", "acme"]);
    // The list shows scopes and never a secret or a hash.
    let (code, out, _) = token_cmd(&srv, &["list", "--json"], None);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = list.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{out}");
    assert!(
        arr.iter()
            .any(|t| t["name"] == "grafana" && t["role"] == "reader" && t["tenants"][0] == "acme")
    );
    for secret in [&reader, &ingest] {
        assert!(!out.contains(secret.rsplit('_').next().unwrap()));
    }
    assert!(!out.contains("hash"));
    let stored = std::fs::read_to_string(srv.dir.join("tokens.json")).unwrap();
    assert!(!stored.contains(reader.rsplit('_').next().unwrap()));

    // Both work; revocation is immediate on the query API, OTLP/HTTP and OTLP/gRPC.
    assert_eq!(
        call(&srv, "GET", "/api/search/tags", &reader, "acme")
            .await
            .0,
        200
    );
    assert_eq!(
        send_as(&srv, &ingest, "acme", &request("a", 1).0).await.0,
        200
    );
    let id_of = |t: &str| t[4..20].to_string();
    for t in [&reader, &ingest] {
        let (code, _, err) = token_cmd(&srv, &["revoke", &id_of(t)], None);
        assert_eq!(code, 0, "{err}");
    }
    let (st, body) = call(&srv, "GET", "/api/search/tags", &reader, "acme").await;
    assert_eq!(st, 401);
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(
        send_as(&srv, &ingest, "acme", &request("a", 1).0).await.0,
        401
    );
    let mut grpc = srv.grpc_client().await;
    let mut req = tonic::Request::new(request("a", 1).0);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ingest}").parse().unwrap());
    req.metadata_mut()
        .insert("x-scope-orgid", "acme".parse().unwrap());
    let err = grpc.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    // An unknown id is a clear 404.
    let (code, _, err) = token_cmd(&srv, &["revoke", "0123456789abcdef"], None);
    assert_ne!(code, 0);
    assert!(err.contains("404") && err.contains("no token"), "{err}");

    // Expiry.
    let short = create_token(
        &srv,
        &["--role", "reader", "--tenant", "acme", "--expires", "1s"],
    );
    assert_eq!(
        call(&srv, "GET", "/api/search/tags", &short, "acme")
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, body) = call(&srv, "GET", "/api/search/tags", &short, "acme").await;
    assert_eq!(st, 401);
    assert!(body.contains("expired"), "{body}");

    // Bad requests are explained.
    let (code, _, err) = token_cmd(
        &srv,
        &["create", "--role", "root", "--tenant", "acme"],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("unknown role \"root\"") && err.contains("investigator"),
        "{err}"
    );
    let (code, _, err) = token_cmd(
        &srv,
        &["create", "--role", "reader", "--tenant", "../x"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("400"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_narrow_never_widen_and_only_admins_manage_tokens() {
    let srv = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let acme_admin = create_token(&srv, &["--role", "admin", "--tenant", "acme"]);
    let f = tmp.path().join("acme-admin.token");
    std::fs::write(&f, &acme_admin).unwrap();
    // Within its tenant: fine.
    let (code, _, err) = token_cmd(
        &srv,
        &["create", "--role", "reader", "--tenant", "acme"],
        Some(&f),
    );
    assert_eq!(code, 0, "{err}");
    // Another tenant, or every tenant: refused.
    for args in [
        vec!["create", "--role", "reader", "--tenant", "globex"],
        vec![
            "create", "--role", "reader", "--tenant", "acme", "--tenant", "globex",
        ],
        vec!["create", "--role", "admin"],
    ] {
        let (code, _, err) = token_cmd(&srv, &args, Some(&f));
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("403"), "{args:?}: {err}");
    }
    // It sees only its tenant's tokens and cannot revoke the bootstrap admin.
    let (_, out, _) = token_cmd(&srv, &["list", "--json"], Some(&f));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["tenants"] == serde_json::json!(["acme"]))
    );
    let boot = srv.token();
    let (code, _, err) = token_cmd(&srv, &["revoke", &boot[4..20]], Some(&f));
    assert_ne!(code, 0);
    assert!(err.contains("404"), "{err}");
    // A reader cannot manage tokens at all.
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    std::fs::write(&f, &reader).unwrap();
    let (code, _, err) = token_cmd(&srv, &["list"], Some(&f));
    assert_ne!(code, 0);
    assert!(err.contains("403") && err.contains("admin"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bound_to_a_service_cannot_write_spans_of_another() {
    let srv = Server::start(&[]);
    let tok = create_token(
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
    let (ok, tid_ok) = request("checkout", 2);
    assert_eq!(send_as(&srv, &tok, "acme", &ok).await.0, 200);
    // One spoofed resource poisons the batch: rejected whole, nothing stored.
    let (mut mixed, tid_mixed) = request("checkout", 2);
    let (spoof, _) = request("payments", 2);
    mixed.resource_spans.extend(spoof.resource_spans);
    let (st, body) = send_as(&srv, &tok, "acme", &mixed).await;
    assert_eq!(st, 403);
    assert!(body.contains("only for services [checkout]"), "{body}");
    assert!(
        !body.contains("payments"),
        "the refusal echoes what the batch claimed: {body}"
    );
    let (st, _) = call(
        &srv,
        "GET",
        &format!("/api/traces/{}", hex::encode(tid_mixed)),
        &srv.token(),
        "acme",
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        &srv,
        "GET",
        &format!("/api/traces/{}", hex::encode(tid_ok)),
        &srv.token(),
        "acme",
    )
    .await;
    assert_eq!(st, 200);
    let metrics = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("tracevault_spans_rejected_total{reason=\"service_not_owned\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cedar_policies_apply_and_a_bad_file_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("ops.cedar");
    std::fs::write(
        &pol,
        "// legal hold: nobody searches this tenant\n@id(\"legal-hold\")\nforbid (principal, action == Tracevault::Action::\"search\", resource == Tracevault::Tenant::\"legal\");\n",
    )
    .unwrap();
    let (srv, cfg) = start_with_config(
        tmp,
        &format!(
            "[access]\npolicy_files = [{:?}]\n",
            pol.display().to_string()
        ),
        &[],
    );
    let admin = srv.token();
    let (st, body) = call(&srv, "GET", "/api/search", &admin, "legal").await;
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("forbidden by policy") && body.contains("legal-hold"),
        "{body}"
    );
    assert_eq!(
        call(&srv, "GET", "/api/search", &admin, "acme").await.0,
        200
    );
    assert_eq!(
        call(&srv, "GET", "/api/search/tags", &admin, "legal")
            .await
            .0,
        403
    );

    // A file that does not validate keeps the server from starting, naming file, line and why.
    std::fs::write(
        &pol,
        "permit (principal, action, resource);\npermit (principal, action == Tracevault::Action::\"search\", resource) when { principal.department == \"x\" };\n",
    )
    .unwrap();
    let err = serve_refused(&cfg, &cfg.parent().unwrap().join("other"));
    assert!(
        err.contains(&format!("{}:2:", pol.display())) && err.contains("department"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_field_classes_are_masked_the_same_way_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
    let (mut req, tid) = request("shop", 2);
    for s in req.resource_spans[0].scope_spans[0].spans.iter_mut() {
        s.attributes.push(kv("user.plan", sv("gold")));
        // Redaction turns the address into a pseudonym (class `pseudonym`).
        s.attributes.push(kv("note", sv("jane@example.com")));
    }
    assert_eq!(send_as(&srv, &srv.token(), "acme", &req).await.0, 200);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    let investigator = create_token(&srv, &["--role", "investigator", "--tenant", "acme"]);
    let hex = hex::encode(tid);

    // Trace by id.
    let (st, r) = call(&srv, "GET", &format!("/api/traces/{hex}"), &reader, "acme").await;
    assert_eq!(st, 200);
    assert!(
        r.contains("[restricted:pii]") && r.contains("[restricted:pseudonym]"),
        "{r}"
    );
    assert!(!r.contains("gold") && !r.contains("hmac:"), "{r}");
    let (_, i) = call(
        &srv,
        "GET",
        &format!("/api/traces/{hex}"),
        &investigator,
        "acme",
    )
    .await;
    assert!(i.contains("gold") && i.contains("hmac:"), "{i}");
    assert!(!i.contains("[restricted:"));

    // Tag values: the marker, once.
    let (_, r) = call(
        &srv,
        "GET",
        "/api/search/tag/user.plan/values",
        &reader,
        "acme",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["tagValues"], serde_json::json!(["[restricted:pii]"]));
    let (_, i) = call(
        &srv,
        "GET",
        "/api/search/tag/user.plan/values",
        &investigator,
        "acme",
    )
    .await;
    assert!(i.contains("gold"), "{i}");

    // Search by a restricted attribute finds nothing (no hit count leaks), for the reader only.
    let q = "/api/search?tags=user.plan%3Dgold";
    let (_, r) = call(&srv, "GET", q, &reader, "acme").await;
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 0, "{r}");
    let (_, i) = call(&srv, "GET", q, &investigator, "acme").await;
    let v: serde_json::Value = serde_json::from_str(&i).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1, "{i}");

    // Receipts withhold what the reader may not see, and still verify.
    let (_, r) = call(
        &srv,
        "GET",
        &format!("/api/traces/{hex}/receipt"),
        &reader,
        "acme",
    )
    .await;
    assert!(!r.contains("gold") && !r.contains("hmac:"), "{r}");
    let rc: serde_json::Value = serde_json::from_str(&r).unwrap();
    let fields = rc["receipts"][0]["fields"].to_string();
    assert!(!fields.contains("attributes/user.plan"), "{fields}");
    let (_, i) = call(
        &srv,
        "GET",
        &format!("/api/traces/{hex}/receipt"),
        &investigator,
        "acme",
    )
    .await;
    assert!(i.contains("attributes/user.plan"), "{i}");
}
