//! Token management over the API (`/api/admin/tokens`), for `tracevault token create|list|revoke`.
//! Admin only; an admin bound to tenants manages tokens within them only (it can narrow, never
//! widen). The token text is in the create response once and nowhere else; lists hold no hashes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tv_access::{Role, TenantScope, TokenInfo, now_unix};
use tv_model::TenantId;

use crate::AppState;
use crate::api::Permit;
use crate::error::ApiError;

/// `POST /api/admin/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[serde(default)]
    pub name: String,
    pub role: String,
    /// Tenants it may act for; empty only for an admin of every tenant creating such a token.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Services it may write spans for; empty: any.
    #[serde(default)]
    pub services: Vec<String>,
    /// Lifetime in seconds; absent: no expiry.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

const MAX_SERVICES: usize = 64;
const MAX_NAME: usize = 128;
const MAX_LIFETIME_SECS: u64 = 10 * 366 * 24 * 3600;

/// Whether the policies let the caller administer tokens of every tenant in `tenants` (an
/// empty list is a token of every tenant: only a credential of every tenant covers it).
fn covers(state: &AppState, permit: &Permit, tenants: &[String]) -> bool {
    if tenants.is_empty() {
        return permit.caller.principal.tenants == TenantScope::All;
    }
    tenants.iter().all(|t| permit.may(state, t))
}

/// Authorizes `admin_tokens` on each tenant a token is (or would be) bound to; the first one
/// names the audit record. A token of every tenant needs the action on every tenant.
fn authorize_tokens(
    state: &AppState,
    permit: &Permit,
    tenants: &[TenantId],
) -> Result<crate::auth::Authorized, ApiError> {
    let Some((first, rest)) = tenants.split_first() else {
        return permit.authorize_every(state, "a token of every tenant");
    };
    for t in rest {
        permit.authorize_on(state, t.clone())?;
    }
    permit.authorize_on(state, first.clone())
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let tokens: Vec<TokenInfo> = state
        .tokens
        .list()
        .into_iter()
        .filter(|t| covers(&state, &permit, &t.tenants))
        .collect();
    let n = tokens.len();
    Ok(crate::api::noted(
        Json(json!({ "tokens": tokens })).into_response(),
        &auth,
        n,
        None,
    ))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let Json(req) = body.map_err(|e| ApiError::json_body("token request", e))?;
    // The tenants the token is for are what is acted on: authorized before anything else in
    // the body is looked at.
    let mut tenants = Vec::new();
    for t in &req.tenants {
        tenants.push(TenantId::parse(t).map_err(|e| ApiError::BadRequest(e.to_string()))?);
    }
    let auth = authorize_tokens(&state, &permit, &tenants)?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        ApiError::BadRequest(format!(
            "unknown role {:?} (known: {})",
            req.role,
            names.join(", ")
        ))
    })?;
    if req.services.len() > MAX_SERVICES {
        return Err(ApiError::BadRequest(format!(
            "{} services: at most {MAX_SERVICES} per token",
            req.services.len()
        )));
    }
    if req.services.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(ApiError::BadRequest(
            "service names must be 1 to 256 bytes".into(),
        ));
    }
    if req.name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "token name holds control characters (a newline, say): use printable text".into(),
        ));
    }
    if req.name.len() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "token name is {} bytes: at most {MAX_NAME}",
            req.name.len()
        )));
    }
    let expires = match req.expires_in_secs {
        None => None,
        Some(0) => return Err(ApiError::BadRequest("expires_in_secs must be > 0".into())),
        Some(s) if s > MAX_LIFETIME_SECS => {
            return Err(ApiError::BadRequest(format!(
                "expires_in_secs {s}: at most {MAX_LIFETIME_SECS} (10 years)"
            )));
        }
        Some(s) => Some(now_unix() + s),
    };
    let name = if req.name.is_empty() {
        format!("{}-token", role.name())
    } else {
        req.name.clone()
    };
    let (text, rec) = state
        .tokens
        .create_for(&name, role, tenants, req.services.clone(), expires)
        .map_err(|e| ApiError::Internal(format!("storing the token: {e}")))?;
    if !state.tokens.is_shared() {
        state.state_seal.seal_or_warn("tokens.json");
    }
    tracing::info!(id = %rec.id, role = role.name(), by = %caller.principal.name, "token created");
    let info = TokenInfo::from(&rec);
    Ok(crate::api::noted(
        (
            StatusCode::CREATED,
            Json(json!({ "token": text.as_str(), "info": info })),
        )
            .into_response(),
        &auth,
        1,
        Some(format!("token:{} role={}", rec.id, role.name())),
    ))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let missing = || ApiError::NotFound(format!("no token with id {:?}", clip(&id)));
    let Some(info) = state.tokens.get(&id) else {
        return Err(missing());
    };
    if !covers(&state, &permit, &info.tenants) {
        // Indistinguishable from a missing token for an admin of other tenants.
        return Err(missing());
    }
    let tenants: Vec<TenantId> = info
        .tenants
        .iter()
        .filter_map(|t| TenantId::parse(t).ok())
        .collect();
    let auth = authorize_tokens(&state, &permit, &tenants)?;
    state
        .tokens
        .revoke(&id)
        .map_err(|e| ApiError::Internal(format!("revoking the token: {e}")))?;
    if !state.tokens.is_shared() {
        state.state_seal.seal_or_warn("tokens.json");
    }
    tracing::info!(id = %id, by = %caller.principal.name, "token revoked");
    Ok(crate::api::noted(
        StatusCode::NO_CONTENT.into_response(),
        &auth,
        1,
        Some(format!("token:{id}")),
    ))
}

/// A client-supplied id as it may appear in a message: at most 64 characters.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}
