//! The web UI (issue 19, ADR 0019): its shell and assets, served by the API listener from files
//! embedded in the binary (`crates/server/ui/`), so running the server needs no Node.js and no
//! network. Every UI response carries the UI's security headers ([`SECURITY_HEADERS`]): a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline script, no
//! `eval`, no framing), `nosniff`, no referrer, HSTS.
//!
//! Deep links (`/trace/<32 hex>`, `/search`, ...) answer the shell, which routes in the page.
//!
//! Sign-in ([`signin`]) makes a session ([`session`]) the API accepts in place of a token.

pub mod security;
pub mod session;
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

const INDEX: &[u8] = include_bytes!("../../ui/index.html");

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
        .route("/ui/session", get(signin::whoami).post(signin::sign_in))
        .route("/ui/logout", axum::routing::post(signin::sign_out))
        .layer(axum::middleware::map_response(with_headers))
}

async fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        h.insert(*k, HeaderValue::from_static(v));
    }
    resp
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
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }
}
