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
