//! The web UI (issue 19, ADR 0019): its shell and assets, served by the API listener from files
//! embedded in the binary (`crates/server/ui/`), so running the server needs no Node.js and no
//! network. Every UI response carries the UI's security headers ([`SECURITY_HEADERS`]): a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline script, no
//! `eval`, no framing), `nosniff`, no referrer, HSTS.
//!
//! Deep links (`/trace/<32 hex>`, `/search`, ...) answer the shell, which routes in the page.
//!
//! Sign-in ([`signin`]) makes a session ([`session`]) the API accepts in place of a token.

pub mod oidc;
pub mod security;
pub mod session;
pub mod shared;
pub mod signin;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

/// The UI's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

/// Headers on every UI response.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=63072000"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// An embedded file.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

const INDEX: &[u8] = include_bytes!("../../ui/dist/index.html");

/// The standalone receipt verifier: one HTML file, its script and style inline and pinned by
/// hash in its own CSP (`dist/verify.csp`, also sent as the header when served); it reaches no
/// network. `tracevault verify-page` writes it and prints its SHA-256.
pub const VERIFY_PAGE: &[u8] = include_bytes!("../../ui/dist/verify.html");
const VERIFY_CSP: &str = include_str!("../../ui/dist/verify.csp");

/// The SHA-256 of [`VERIFY_PAGE`], lowercase hex.
pub fn verify_page_sha256() -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        VERIFY_PAGE,
    ))
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        body: include_bytes!("../../ui/dist/app.css"),
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        name: "favicon.svg",
        body: include_bytes!("../../ui/dist/favicon.svg"),
        content_type: "image/svg+xml",
    },
    Asset {
        name: "app.js",
        body: include_bytes!("../../ui/dist/app.js"),
        content_type: "text/javascript; charset=utf-8",
    },
];

/// The pages whose paths answer the shell (the page routes itself).
const PAGES: &[&str] = &[
    "/",
    "/search",
    "/findings",
    "/map",
    "/audit",
    "/security",
    "/keys",
];

/// Whether `path` is a page of the UI (login links may land only on one).
pub fn is_page(path: &str) -> bool {
    PAGES.contains(&path) || path.strip_prefix("/trace/").is_some_and(is_trace_id)
}

fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The UI's routes (pages, assets, sign-in), each response with [`SECURITY_HEADERS`].
pub fn router() -> Router<Arc<crate::AppState>> {
    let mut r = Router::new();
    for p in PAGES {
        r = r.route(p, get(shell));
    }
    r.route("/trace/{id}", get(trace))
        .route("/assets/{name}", get(asset))
        .route("/verify.html", get(verify_page))
        .route("/ui/session", get(signin::whoami).post(signin::sign_in))
        .route("/ui/session/preview", axum::routing::post(signin::preview))
        .route("/ui/logout", axum::routing::post(signin::sign_out))
        .route("/ui/signin-options", get(oidc::options))
        .route("/ui/oidc/start", get(oidc::start))
        .route("/ui/oidc/callback", get(oidc::callback))
        .layer(axum::middleware::map_response(with_headers))
}

async fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        // A response with a stricter policy of its own (the verifier page) keeps it.
        h.entry(*k).or_insert(HeaderValue::from_static(v));
    }
    resp
}

async fn verify_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, VERIFY_CSP.trim()),
        ],
        VERIFY_PAGE,
    )
        .into_response()
}

async fn shell() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX,
    )
        .into_response()
}

/// `/trace/<32 hex>`: the shell; anything else is no page.
async fn trace(Path(id): Path<String>) -> Response {
    if is_trace_id(&id) {
        shell().await
    } else {
        not_found()
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => not_found(),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "no such page\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64_sha256(data: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
    }

    #[test]
    fn the_verifier_page_pins_its_own_script_and_reaches_no_network() {
        let page = std::str::from_utf8(VERIFY_PAGE).unwrap();
        let body = |open: &str, close: &str| {
            let i = page.find(open).unwrap() + open.len();
            &page[i..i + page[i..].find(close).unwrap()]
        };
        let script = body("<script>", "</script>");
        let style = body("<style>", "</style>");
        assert_eq!(
            page.matches("<script").count(),
            1,
            "one inline script, no src"
        );
        let csp = VERIFY_CSP.trim();
        assert!(csp.contains(&format!("'sha256-{}'", b64_sha256(script.as_bytes()))));
        assert!(csp.contains(&format!("'sha256-{}'", b64_sha256(style.as_bytes()))));
        assert!(csp.contains("connect-src 'none'") && csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe"));
        // The same policy travels in the file, for when it is opened offline.
        assert!(page.contains(&format!("content=\"{csp}\"")));
    }

    #[test]
    fn the_operators_guide_lists_the_verifier_pages_digest() {
        let hex = verify_page_sha256();
        let guide = include_str!("../../../../docs/operators-guide.md");
        assert!(
            guide.contains(&hex),
            "docs/operators-guide.md must list the verifier page's SHA-256 {hex} (tracevault verify-page prints it)"
        );
    }

    #[test]
    fn the_shell_loads_only_same_origin_files_and_no_inline_script() {
        let html = std::str::from_utf8(INDEX).unwrap();
        // Every script has a same-origin src; no inline script or style, no event handlers.
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..html[i..].find('>').map(|e| i + e).unwrap()];
            assert!(tag.contains("src=\"/assets/"), "{tag}");
        }
        assert!(!html.contains("<style") && !html.contains(" style="));
        for (i, _) in html.match_indices(" on") {
            let word: String = html[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let handler = html[i + 1 + word.len()..].starts_with('=');
            assert!(!handler, "an inline event handler: {word}");
        }
        for (i, _) in html.match_indices("href=\"") {
            let v = &html[i + 6..];
            assert!(v.starts_with('/'), "{}", &v[..v.find('"').unwrap()]);
        }
        // Subresource Integrity on the script and the style sheet: the embedded bytes' SHA-384.
        for name in ["app.js", "app.css"] {
            use base64::Engine;
            let a = ASSETS.iter().find(|a| a.name == name).unwrap();
            let sri = base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA384,
                a.body,
            ));
            assert!(
                html.contains(&format!("integrity=\"sha384-{sri}\"")),
                "{name}: no matching integrity attribute"
            );
        }
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }
}
