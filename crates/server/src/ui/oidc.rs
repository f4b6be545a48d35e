//! Web UI sign-in through the OIDC provider: authorization code with PKCE (RFC 7636, S256).
//!
//! `GET /ui/oidc/start` sends the browser to the provider with a fresh `state`, `nonce` and
//! code challenge, and binds the state to this browser in a short-lived `__Host-tv_oidc` cookie
//! (SameSite=Lax: it must come back on the provider's redirect). `GET /ui/oidc/callback` takes
//! the pending sign-in once (the state must match the cookie), redeems the code at the token
//! endpoint with the PKCE verifier, checks the ID token (signature by the provider's JWKS,
//! issuer, audience = this client id, expiry, the nonce sent) and its role and tenant claims,
//! and opens a session bound to the token's expiry. Failures land on the sign-in page with the
//! reason, and are audited.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq;
use tv_access::Action;

use super::session::{self, Binding, OIDC_TTL};
use super::signin::{host, may_sign_in, open_session};
use crate::AppState;
use crate::mtls::PeerInfo;

/// The cookie binding a sign-in under way to the browser that started it.
const STATE_COOKIE: &str = "__Host-tv_oidc";

/// Whether the sign-in page offers the provider (`GET /ui/signin-options`).
pub async fn options(State(state): State<Arc<AppState>>) -> Response {
    let oidc = state
        .oidc
        .as_ref()
        .is_some_and(|o| o.config().client_id.is_some());
    Json(serde_json::json!({ "oidc": oidc })).into_response()
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn clear_state_cookie() -> String {
    format!("{STATE_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// `GET /ui/oidc/start?next=/page`: off to the provider.
pub async fn start(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let Some(oidc) = state
        .oidc
        .as_ref()
        .filter(|o| o.config().client_id.is_some())
    else {
        return crate::error::ApiError::NotFound(
            "OIDC sign-in is not configured ([oidc] client_id, authorization_endpoint, token_endpoint)".into(),
        )
        .into_response();
    };
    let cfg = oidc.config();
    let next = match session::check_next(params.get("next").map_or("/search", String::as_str)) {
        Ok(n) => n,
        Err(e) => return crate::error::ApiError::BadRequest(e).into_response(),
    };
    let redirect_uri = match &cfg.redirect_uri {
        Some(r) => r.clone(),
        None => {
            let Some(h) = host(&headers, &uri) else {
                return crate::error::ApiError::BadRequest("the request names no host".into())
                    .into_response();
            };
            let scheme = if state.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{h}/ui/oidc/callback")
        }
    };
    let (st, pending) = state.sessions.begin_oidc(next, redirect_uri.clone());
    let Ok(mut auth) = url::Url::parse(cfg.authorization_endpoint.as_deref().unwrap_or("")) else {
        return crate::error::ApiError::Internal("oidc.authorization_endpoint is not a URL".into())
            .into_response();
    };
    auth.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", cfg.client_id.as_deref().unwrap_or(""))
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &cfg.scopes)
        .append_pair("state", &st)
        .append_pair("nonce", &pending.nonce)
        .append_pair(
            "code_challenge",
            &session::pkce_challenge(&pending.verifier),
        )
        .append_pair("code_challenge_method", "S256");
    let cookie = format!(
        "{STATE_COOKIE}={st}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        OIDC_TTL.as_secs()
    );
    redirect(auth.as_str(), &[cookie])
}

/// Printable, bounded text from the provider (its error codes and descriptions).
fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `GET /ui/oidc/callback?code=&state=`: back from the provider.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerInfo>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.as_deref();
    let fail = |why: String| {
        state.audit.unauthenticated(
            peer,
            "ui",
            Action::UiLogin.name(),
            "ui session (oidc)".into(),
            401,
            why.clone(),
        );
        let mut to = url::Url::parse("https://x/").expect("base");
        to.query_pairs_mut().append_pair("signin_error", &why);
        redirect(
            &format!("/?{}", to.query().unwrap_or("")),
            &[clear_state_cookie()],
        )
    };
    if let Some(e) = params.get("error") {
        let desc = params.get("error_description").map(|d| shown(d));
        return fail(format!(
            "the identity provider did not sign you in: {}{}",
            shown(e),
            desc.map(|d| format!(" ({d})")).unwrap_or_default()
        ));
    }
    let (Some(code), Some(st)) = (params.get("code"), params.get("state")) else {
        return fail("the provider's answer has no code and state".into());
    };
    let bound = session::named_cookie(&headers, STATE_COOKIE).unwrap_or("");
    if !bool::from(bound.as_bytes().ct_eq(st.as_bytes())) {
        return fail(
            "this sign-in was not started in this browser (its state does not match): start again"
                .into(),
        );
    }
    let Some(pending) = state.sessions.take_oidc(st) else {
        return fail("this sign-in expired or was already completed: start again".into());
    };
    let Some(oidc) = state.oidc.clone() else {
        return fail("OIDC is not configured".into());
    };
    let cfg = oidc.config().clone();
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.clone()),
        ("redirect_uri", pending.redirect_uri.clone()),
        ("client_id", cfg.client_id.clone().unwrap_or_default()),
        ("code_verifier", pending.verifier.clone()),
    ];
    if let Some(f) = &cfg.client_secret_file {
        match std::fs::read_to_string(f) {
            Ok(s) => form.push(("client_secret", s.trim().to_string())),
            Err(e) => return fail(format!("oidc.client_secret_file cannot be read: {e}")),
        }
    }
    let client = match crate::oidc_refresh::client(&oidc) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot reach the token endpoint: {e:#}")),
    };
    let endpoint = cfg.token_endpoint.clone().unwrap_or_default();
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let answer = match client
        .post(&endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(encoded)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return fail("the provider's token endpoint did not answer".into()),
    };
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    if !status.is_success() {
        return fail(format!(
            "the provider refused the code: HTTP {status} {}",
            shown(body["error"].as_str().unwrap_or(""))
        ));
    }
    let Some(id_token) = body["id_token"].as_str() else {
        return fail(
            "the provider's answer has no ID token (is the openid scope asked for?)".into(),
        );
    };
    let (principal, exp) = match oidc.verify_id_token(id_token, &pending.nonce) {
        Ok(x) => x,
        Err(e) => return fail(format!("the ID token was refused: {e}")),
    };
    if let Err(e) = may_sign_in(&state, &principal) {
        return fail(e.to_string());
    }
    let new = open_session(
        &state,
        principal,
        Binding::Jwt { expires_unix: exp },
        None,
        "oidc",
        peer,
    );
    let cookie = session::set_cookie(&new.cookie, state.sessions.settings().session_max);
    redirect(&pending.next, &[cookie, clear_state_cookie()])
}
