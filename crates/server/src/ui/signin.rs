//! Signing in to the web UI: `POST /ui/session` (a pasted API token or OIDC JWT, or a login
//! link's code), `GET /ui/session` (who the page is signed in as, and its CSRF token),
//! `POST /ui/logout`, and `POST /api/ui/login-codes` (mint a single-use login link; in the API's
//! route table, so guarded and audited like every API call).
//!
//! Only people sign in: the `ui_login` action, which the default policies give readers,
//! investigators, auditors and admins; ingest and metrics credentials are refused whatever the
//! policies say. Workload certificates cannot mint links (a link signs a person in).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use tv_access::{Action, AuthError, Credential, Principal, Role, TenantScope, TokenSecret};
use tv_model::TenantId;

use super::session::{self, Binding, SessionView};
use crate::AppState;
use crate::api::Permit;
use crate::error::ApiError;
use crate::mtls::PeerInfo;

/// What `POST /ui/session` takes: exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: Option<String>,
    login_code: Option<String>,
}

/// The host a request was made to (`Host`, or HTTP/2's `:authority`).
pub fn host<'a>(headers: &'a HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// The tenant a person's records are filed under: their only (or first) tenant.
pub(super) fn home(p: &Principal) -> TenantId {
    match &p.tenants {
        TenantScope::Only(list) if !list.is_empty() => list[0].clone(),
        _ => TenantId::default_tenant(),
    }
}

/// Only people sign in, and only as the policies allow.
pub(super) fn may_sign_in(state: &AppState, p: &Principal) -> Result<(), ApiError> {
    if matches!(p.role, Role::Ingest | Role::Metrics) {
        return Err(ApiError::Forbidden(format!(
            "a credential of role {} belongs to a program, not a person: it cannot sign in to the UI or mint login links",
            p.role.name()
        )));
    }
    crate::auth::authorize_on(&state.policy(), p, Action::UiLogin, home(p)).map(drop)
}

fn view_json(v: &SessionView) -> serde_json::Value {
    let tenants = match &v.principal.tenants {
        TenantScope::All => serde_json::json!("*"),
        TenantScope::Only(l) => serde_json::json!(l.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
    };
    serde_json::json!({
        "name": v.principal.name,
        "role": v.principal.role.name(),
        "tenants": tenants,
        "csrf": v.csrf,
        "idle_secs": v.idle_secs,
        "max_secs": v.max_secs,
    })
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /ui/session`: a credential in, a session cookie out.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerInfo>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.as_deref();
    let refused = |e: ApiError| {
        let status = e.status().as_u16();
        state.audit.unauthenticated(
            peer,
            "ui",
            Action::UiLogin.name(),
            "/ui/session".into(),
            status,
            e.to_string(),
        );
        no_store(e.into_response())
    };
    // A page elsewhere cannot sign the browser in as someone else (login CSRF).
    if let Err(e) = session::same_origin(&headers, host(&headers, &uri), state.tls.is_some()) {
        return refused(ApiError::Forbidden(e));
    }
    let req: SignIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refused(ApiError::BadRequest(format!(
                "sign-in body: expected {{\"token\": \"...\"}} or {{\"login_code\": \"...\"}}: {e}"
            )));
        }
    };
    let (principal, binding, next, started, how) = match (req.token, req.login_code) {
        (Some(t), None) => match from_token(&state, t.trim()) {
            Ok((p, b)) => (p, b, None, None, "api token"),
            Err(e) => return refused(ApiError::Unauthenticated(e)),
        },
        (None, Some(c)) => match state.sessions.redeem(c.trim(), &state.tokens) {
            Ok(r) => (
                r.principal,
                r.binding,
                Some(r.next),
                r.started,
                "login link",
            ),
            Err(e) => return refused(ApiError::Unauthenticated(e)),
        },
        _ => {
            return refused(ApiError::BadRequest(
                "sign-in body: give exactly one of token and login_code".into(),
            ));
        }
    };
    let tenant = home(&principal);
    if let Err(e) = may_sign_in(&state, &principal) {
        state.audit.denied(
            &principal,
            &tenant,
            peer,
            "ui",
            Action::UiLogin.name(),
            format!("ui session ({how})"),
            e.status().as_u16(),
            e.to_string(),
        );
        return no_store(e.into_response());
    }
    let new = open_session(&state, principal, binding, started, how, peer);
    // The browser's previous session, if any, ends with this sign-in.
    if let Some(old) = session::cookie(&headers) {
        state.sessions.end(old);
    }
    let mut body = view_json(&new.view);
    body["next"] = serde_json::json!(next.unwrap_or_else(|| "/".into()));
    let mut resp = no_store(Json(body).into_response());
    let cookie = session::set_cookie(&new.cookie, state.sessions.settings().session_max);
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    resp
}

/// Opens a session for a principal just checked, audited as a sign-in by `how`, and the
/// `Set-Cookie` value that hands it to the browser.
pub(super) fn open_session(
    state: &AppState,
    principal: Principal,
    binding: Binding,
    started: Option<std::time::Instant>,
    how: &str,
    peer: Option<&PeerInfo>,
) -> session::NewSession {
    let tenant = home(&principal);
    let new = match started {
        Some(t) => state.sessions.create_since(principal, binding, t),
        None => state.sessions.create(principal, binding),
    };
    state.audit.request(
        &new.view.principal,
        &tenant,
        peer,
        "ui",
        Action::UiLogin.name(),
        format!("ui session ({how})"),
        200,
        None,
        None,
    );
    new
}

/// A pasted credential: an API token, or an OIDC JWT when OIDC is configured.
fn from_token(state: &AppState, t: &str) -> Result<(Principal, Binding), AuthError> {
    if let Some(o) = &state.oidc
        && tv_access::OidcVerifier::looks_like_jwt(t)
    {
        let (p, exp) = o.verify_until(t)?;
        return Ok((p, Binding::Jwt { expires_unix: exp }));
    }
    let secret = TokenSecret::parse(t.to_string())?;
    let p = state.tokens.authenticate(&secret)?;
    Ok((p, Binding::Token(secret.id().to_string())))
}

/// What `POST /ui/session/preview` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Preview {
    login_code: String,
}

/// `POST /ui/session/preview`: whom a login link signs in, without using it (the page shows
/// it and asks before it spends the link, so a link someone else sent cannot sign this browser
/// in as them unnoticed).
pub async fn preview(
    State(state): State<Arc<AppState>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = session::same_origin(&headers, host(&headers, &uri), state.tls.is_some()) {
        return no_store(ApiError::Forbidden(e).into_response());
    }
    let req: Preview = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return no_store(
                ApiError::BadRequest(format!(
                    "preview body: expected {{\"login_code\": \"...\"}}: {e}"
                ))
                .into_response(),
            );
        }
    };
    match state
        .sessions
        .peek_code(req.login_code.trim(), &state.tokens)
    {
        Ok(p) => no_store(
            Json(serde_json::json!({"name": p.name, "role": p.role.name()})).into_response(),
        ),
        Err(e) => no_store(ApiError::Unauthenticated(e).into_response()),
    }
}

/// `GET /ui/session`: who the page is signed in as (401 when it is not).
pub async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let view = session::cookie(&headers)
        .ok_or_else(|| ended("not signed in"))
        .and_then(|c| {
            state
                .sessions
                .lookup(c, &state.tokens)
                .map_err(ApiError::Unauthenticated)
        });
    match view {
        Ok(v) => no_store(Json(view_json(&v)).into_response()),
        Err(e) => no_store(e.into_response()),
    }
}

fn ended(why: &str) -> ApiError {
    ApiError::Unauthenticated(AuthError::Rejected(why.into()))
}

/// `POST /ui/logout`: ends the session (CSRF-checked like every state change).
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerInfo>>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let clear = |mut resp: Response| {
        resp.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&session::clear_cookie()).expect("ASCII"),
        );
        no_store(resp)
    };
    let Some(cookie) = session::cookie(&headers) else {
        return clear(ended("not signed in").into_response());
    };
    let view = match state.sessions.lookup(cookie, &state.tokens) {
        Ok(v) => v,
        Err(e) => return clear(ApiError::Unauthenticated(e).into_response()),
    };
    if let Err(e) = check_csrf(&state, &headers, &uri, &view) {
        return no_store(e.into_response());
    }
    state.sessions.end(cookie);
    state.audit.request(
        &view.principal,
        &home(&view.principal),
        peer.as_deref(),
        "ui",
        "ui_logout",
        "ui session".into(),
        204,
        None,
        None,
    );
    clear(StatusCode::NO_CONTENT.into_response())
}

/// A state change made with the session cookie: from this origin, with the session's CSRF token.
pub fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    uri: &http::Uri,
    view: &SessionView,
) -> Result<(), ApiError> {
    session::same_origin(headers, host(headers, uri), state.tls.is_some())
        .map_err(ApiError::Forbidden)?;
    if !session::csrf_ok(headers, view) {
        return Err(ApiError::Forbidden(format!(
            "a state change with the UI session needs the session's CSRF token in {}",
            session::CSRF_HEADER
        )));
    }
    Ok(())
}

/// What `POST /api/ui/login-codes` takes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MintCode {
    next: Option<String>,
}

/// `POST /api/ui/login-codes`: a single-use code that signs the caller in to the UI (the CLI's
/// `tracevault login-url` puts it in a URL's fragment).
pub async fn mint(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let p = auth.principal().clone();
    may_sign_in(&state, &p)?;
    let req: MintCode = if body.iter().all(u8::is_ascii_whitespace) {
        MintCode::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "login link request: expected {{\"next\": \"/path\"}} or nothing: {e}"
            ))
        })?
    };
    let next =
        session::check_next(req.next.as_deref().unwrap_or("/")).map_err(ApiError::BadRequest)?;
    let (binding, started) = binding_of(&state, &p, &headers)?;
    let code = state
        .sessions
        .mint_code(p, binding, next.clone(), started)?;
    let body = serde_json::json!({
        "code": code,
        "next": next,
        "expires_in_secs": session::LOGIN_CODE_TTL.as_secs(),
    });
    let resp = no_store((StatusCode::CREATED, Json(body)).into_response());
    Ok(crate::api::noted(
        resp,
        &auth,
        1,
        Some("ui login link".into()),
    ))
}

/// The credential a login link minted by this request is bound to, and, when minted through a
/// UI session, when that session began (the new session keeps its absolute timeout).
fn binding_of(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
) -> Result<(Binding, Option<std::time::Instant>), ApiError> {
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(c) = session::cookie(headers)
    {
        let v = state
            .sessions
            .lookup(c, &state.tokens)
            .map_err(ApiError::Unauthenticated)?;
        return Ok((v.binding, Some(v.started)));
    }
    match &p.credential {
        Credential::ApiToken { id } => Ok((Binding::Token(id.clone()), None)),
        Credential::Oidc { .. } => {
            let jwt = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .map(|(_, t)| t.trim())
                .ok_or(ApiError::Unauthenticated(AuthError::Missing))?;
            let oidc = state
                .oidc
                .as_ref()
                .ok_or(ApiError::Unauthenticated(AuthError::Invalid))?;
            let (_, exp) = oidc.verify_until(jwt).map_err(ApiError::Unauthenticated)?;
            Ok((Binding::Jwt { expires_unix: exp }, None))
        }
        _ => Err(ApiError::Forbidden(
            "a login link signs a person in: mint it with an API token or an OIDC token, not a workload certificate".into(),
        )),
    }
}
