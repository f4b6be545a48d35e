//! The web UI's shell (issue 19, first part): served by the API listener over TLS from the
//! binary, to anyone (the sign-in page), with the UI's security headers on every response,
//! deep links to traces answered with the shell, and nothing else.
mod common;

use common::*;

/// The headers every UI response must carry.
fn assert_secure(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let csp = get("content-security-policy");
    for want in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(want), "{what}: CSP {csp:?} lacks {want}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(
        get("strict-transport-security").starts_with("max-age="),
        "{what}"
    );
}

#[tokio::test]
async fn the_ui_shell_is_served_with_strict_headers() {
    let srv = Server::start(&[]);
    let c = srv.http_client();
    // No credential: the sign-in page.
    let r = c.get(format!("{}/", srv.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_secure(&r, "/");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Sign in") && html.contains("/assets/app.js"),
        "{html}"
    );
    // A deep link to a trace answers the same shell; a malformed one is no page.
    let r = c
        .get(format!(
            "{}/trace/{}",
            srv.api, "0af7651916cd43dd8448eb211c80319c"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_secure(&r, "/trace/<id>");
    assert_eq!(r.text().await.unwrap(), html);
    for bad in ["/trace/xyz", "/assets/nope.js", "/assets/..%2Fui.rs"] {
        let r = c.get(format!("{}{bad}", srv.api)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        assert_secure(&r, bad);
    }
    // Assets, with their types (nosniff makes the type binding).
    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let r = c.get(format!("{}{path}", srv.api)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_secure(&r, path);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{path}"
        );
    }
    // The API beside it is unchanged: still a credential away.
    let r = c
        .get(format!("{}/api/search", srv.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// `POST /ui/session` from this server's own origin (as the sign-in page does).
async fn sign_in(srv: &Server, body: serde_json::Value) -> reqwest::Response {
    srv.http_client()
        .post(format!("{}/ui/session", srv.api))
        .header("origin", &srv.api)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The session cookie's `name=value` from a sign-in answer (asserting its attributes).
fn session_cookie(r: &reqwest::Response) -> String {
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    assert!(set.starts_with("__Host-tv_session="), "{set}");
    assert!(!set.contains("Domain"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// `tracevault login-url` with the token in `token_file`: the code in the printed URL.
fn login_code(srv: &Server, token_file: &std::path::Path) -> String {
    let (ok, out) = srv.cli(&["login-url", "--token-file", token_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let url = out.lines().next().unwrap();
    url.split_once("#login=").unwrap().1.to_string()
}

/// A request made with the session cookie (and nothing else).
async fn with_cookie(
    srv: &Server,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut b = srv
        .http_client()
        .request(method, format!("{}{path}", srv.api))
        .header("cookie", cookie);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let r = b.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_pasted_token_makes_a_session_bound_to_its_tenant_role_and_revocation() {
    let srv = Server::start(&[]);
    let (req, _) = request("checkout", 3);
    send_acme(&srv, &req).await;
    srv.flush().await;
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);

    // A sign-in from another origin is refused (login CSRF), and so is a bad token.
    let r = srv
        .http_client()
        .post(format!("{}/ui/session", srv.api))
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({ "token": reader }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = sign_in(&srv, serde_json::json!({ "token": "tvk_nope_nope" })).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    let r = sign_in(&srv, serde_json::json!({ "token": reader })).await;
    assert_eq!(r.status(), 200);
    assert_secure(&r, "/ui/session");
    let cookie = session_cookie(&r);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["role"], "reader");
    assert_eq!(me["tenants"], serde_json::json!(["acme"]));
    let csrf = me["csrf"].as_str().unwrap().to_string();
    assert!(csrf.len() >= 40);

    // The cookie is the credential: the API answers it as it answers the token...
    let (st, body) = with_cookie(&srv, reqwest::Method::GET, "/api/search", &cookie, &[]).await;
    assert_eq!(st, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found["traces"].as_array().unwrap().len(), 1, "{body}");
    // ...and no more: another tenant, and an admin page, are refused.
    let (st, _) = with_cookie(
        &srv,
        reqwest::Method::GET,
        "/api/search",
        &cookie,
        &[("x-scope-orgid", "globex")],
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = with_cookie(
        &srv,
        reqwest::Method::GET,
        "/api/admin/tokens",
        &cookie,
        &[],
    )
    .await;
    assert_eq!(st, 403);
    let (st, body) = with_cookie(&srv, reqwest::Method::GET, "/ui/session", &cookie, &[]).await;
    assert_eq!(st, 200, "{body}");

    // Revoking the token ends the session at its next request.
    let id = reader.split('_').nth(1).unwrap();
    let (code, _, err) = token_cmd(&srv, &["revoke", id], None);
    assert_eq!(code, 0, "{err}");
    let (st, body) = with_cookie(&srv, reqwest::Method::GET, "/api/search", &cookie, &[]).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    let (st, _) = with_cookie(&srv, reqwest::Method::GET, "/ui/session", &cookie, &[]).await;
    assert_eq!(st, 401);

    // Programs do not sign in.
    for role in ["ingest", "metrics"] {
        let t = if role == "metrics" {
            create_token(&srv, &["--role", role])
        } else {
            create_token(&srv, &["--role", role, "--tenant", "acme"])
        };
        let r = sign_in(&srv, serde_json::json!({ "token": t })).await;
        assert_eq!(r.status(), 403, "{role}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(r.text().await.unwrap().contains("program"), "{role}");
    }
}

#[tokio::test]
async fn state_changes_with_the_session_need_the_csrf_token_and_this_origin() {
    let srv = Server::start(&[]);
    let r = sign_in(&srv, serde_json::json!({ "token": srv.token() })).await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r);
    let me: serde_json::Value = r.json().await.unwrap();
    let csrf = me["csrf"].as_str().unwrap();
    let body = r#"{"name":"ci","role":"reader","tenants":["acme"]}"#;
    let post = |extra: Vec<(&'static str, String)>| {
        let srv = &srv;
        let cookie = cookie.clone();
        async move {
            let mut b = srv
                .http_client()
                .post(format!("{}/api/admin/tokens", srv.api))
                .header("cookie", cookie)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in extra {
                b = b.header(k, v);
            }
            let r = b.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // No CSRF token; a wrong one; the right one from another origin; no origin at all.
    let (st, msg) = post(vec![("origin", srv.api.clone())]).await;
    assert_eq!(st, 403, "{msg}");
    assert!(msg.contains("CSRF"), "{msg}");
    let (st, _) = post(vec![
        ("origin", srv.api.clone()),
        ("x-csrf-token", "x".repeat(43)),
    ])
    .await;
    assert_eq!(st, 403);
    let (st, msg) = post(vec![
        ("origin", "https://evil.example".into()),
        ("x-csrf-token", csrf.into()),
    ])
    .await;
    assert_eq!(st, 403);
    assert!(msg.contains("Origin"), "{msg}");
    let (st, _) = post(vec![("x-csrf-token", csrf.into())]).await;
    assert_eq!(st, 403);
    // None of them made a token; the proper request does.
    let (_, list) = call(&srv, "GET", "/api/admin/tokens", &srv.token(), "default").await;
    assert!(!list.contains("\"ci\""), "{list}");
    let (st, msg) = post(vec![
        ("origin", srv.api.clone()),
        ("x-csrf-token", csrf.into()),
    ])
    .await;
    assert_eq!(st, 201, "{msg}");

    // Logout needs the token too, then ends the session.
    let (st, _) = with_cookie(
        &srv,
        reqwest::Method::POST,
        "/ui/logout",
        &cookie,
        &[("origin", &srv.api)],
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = with_cookie(
        &srv,
        reqwest::Method::POST,
        "/ui/logout",
        &cookie,
        &[("origin", &srv.api), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = with_cookie(&srv, reqwest::Method::GET, "/api/search", &cookie, &[]).await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn a_login_url_signs_in_once_as_its_minter_and_is_audited() {
    let srv = Server::start(&[]);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    let tf = srv.dir.join("reader.token");
    std::fs::write(&tf, &reader).unwrap();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let next = format!("/trace/{trace}");
    let (ok, out) = srv.cli(&[
        "login-url",
        "--next",
        &next,
        "--token-file",
        tf.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let url = out.lines().next().unwrap();
    // https, the server's origin, the page in the path, the code only in the fragment.
    let (page, code) = url.split_once("#login=").expect("a fragment");
    assert_eq!(page, format!("{}{next}", srv.api));
    assert!(code.len() >= 43 && !code.contains('&'), "{url}");
    let (ok, out) = srv.cli(&["login-url", "--next", "https://evil.example/"]);
    assert!(!ok && out.contains("--next"), "{out}");
    let (st, msg) = call(&srv, "POST", "/api/ui/login-codes", &srv.token(), "default").await;
    assert_eq!(st, 201, "{msg}");
    let c = srv.http_client();
    let r = c
        .post(format!("{}/api/ui/login-codes", srv.api))
        .bearer_auth(srv.token())
        .body(r#"{"next":"//evil.example/x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // One principal holds at most five unused links (the admin has one already).
    for i in 0..5 {
        let (st, msg) = call(&srv, "POST", "/api/ui/login-codes", &srv.token(), "default").await;
        if i < 4 {
            assert_eq!(st, 201, "{msg}");
        } else {
            assert_eq!(st, 429, "{msg}");
            assert!(msg.contains("5 of your login links"), "{msg}");
        }
    }
    // Ingest credentials cannot mint one.
    let ingest = create_token(&srv, &["--role", "ingest", "--tenant", "acme"]);
    let (st, _) = call(&srv, "POST", "/api/ui/login-codes", &ingest, "acme").await;
    assert_eq!(st, 403);

    // The page first asks whom the link signs in (without spending it).
    let r = srv
        .http_client()
        .post(format!("{}/ui/session/preview", srv.api))
        .header("origin", &srv.api)
        .json(&serde_json::json!({ "login_code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let who: serde_json::Value = r.json().await.unwrap();
    assert_eq!(who["role"], "reader");
    assert!(who.get("csrf").is_none(), "{who}");
    // Used once: a session as the reader, landing on the page; a second use is refused.
    let r = sign_in(&srv, serde_json::json!({ "login_code": code })).await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["role"], "reader");
    assert_eq!(me["next"], next.as_str());
    let r = sign_in(&srv, serde_json::json!({ "login_code": code })).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("already used"));
    let (st, _) = with_cookie(
        &srv,
        reqwest::Method::GET,
        "/api/admin/tokens",
        &cookie,
        &[],
    )
    .await;
    assert_eq!(
        st, 403,
        "the link signs in as the reader, not as anyone more"
    );

    // Concurrent uses of one code: exactly one wins.
    let code = login_code(&srv, &tf);
    let tries = (0..8).map(|_| sign_in(&srv, serde_json::json!({ "login_code": code })));
    let statuses: Vec<u16> = futures::future::join_all(tries)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );

    // A link minted by a token revoked before its use signs no one in.
    let code = login_code(&srv, &tf);
    let id = reader.split('_').nth(1).unwrap();
    assert_eq!(token_cmd(&srv, &["revoke", id], None).0, 0);
    let r = sign_in(&srv, serde_json::json!({ "login_code": code })).await;
    assert_eq!(r.status(), 401);

    // Minting and use are in the audit log, and the code is nowhere in it.
    let audit = srv
        .http_client()
        .get(format!("{}/api/audit?action=ui_login", srv.api))
        .bearer_auth(srv.token())
        .header("x-scope-orgid", "acme")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("ui login link"), "{audit}");
    assert!(audit.contains("ui session (login link)"), "{audit}");
    assert!(!audit.contains(&code), "a login code in the audit log");
    assert!(
        !srv.log_text().contains(&code),
        "a login code in the server log"
    );
}

#[tokio::test]
async fn a_session_ends_when_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(
        tmp,
        "[ui]\nsession_idle_secs = 10\nsession_max_secs = 20\n",
        &[],
    );
    let r = sign_in(&srv, serde_json::json!({ "token": srv.token() })).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=20")
    );
    let cookie = session_cookie(&r);
    let me: serde_json::Value = r.json().await.unwrap();
    let (st, _) = with_cookie(&srv, reqwest::Method::GET, "/ui/session", &cookie, &[]).await;
    assert_eq!(st, 200);
    // A link minted through the session does not start the absolute timeout over.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let csrf = me["csrf"].as_str().unwrap();
    let (st, minted) = with_cookie(
        &srv,
        reqwest::Method::POST,
        "/api/ui/login-codes",
        &cookie,
        &[("origin", &srv.api), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(st, 201, "{minted}");
    let code = serde_json::from_str::<serde_json::Value>(&minted).unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = sign_in(&srv, serde_json::json!({ "login_code": code })).await;
    assert_eq!(r.status(), 200);
    let renewed: serde_json::Value = r.json().await.unwrap();
    assert!(
        renewed["max_secs"].as_u64().unwrap() <= 18,
        "the new session got a fresh absolute timeout: {renewed}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let (st, body) = with_cookie(&srv, reqwest::Method::GET, "/api/search", &cookie, &[]).await;
    assert_eq!(st, 401);
    assert!(body.contains("idle"), "{body}");
}

#[test]
fn the_demo_with_exit_stops_after_its_summary_and_keeps_a_named_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut args = vec!["demo", "--exit", "--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(&PORT0);
    let out = std::process::Command::new(BIN)
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verified: entry"), "{text}");
    assert!(text.trim_end().ends_with("--exit: stopping"), "{text}");
    // The named directory stays, private, with the demo's settings beside its data.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(
        mode & 0o077,
        0,
        "the demo's data dir is open to others: {mode:o}"
    );
    assert!(
        std::fs::read_to_string(dir.join("config.toml"))
            .unwrap()
            .contains("learning_secs")
    );
    assert!(dir.join("admin.token").exists());
}
