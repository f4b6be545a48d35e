//! Token management over the API (`/api/admin/tokens`), for `tracevault token create|list|revoke`.
//! Admin only; an admin bound to tenants manages tokens within them only (it can narrow, never
//! widen). The token text is in the create response once and nowhere else; lists hold no hashes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tv_access::{Role, TenantScope, TokenInfo, now_unix};
use tv_model::TenantId;

use crate::AppState;
use crate::auth::Caller;
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

fn need_admin(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    state.authorize(caller, tv_access::Action::AdminTokens)
}

/// Whether the caller's tenant scope covers every tenant of `info`.
fn covers(scope: &TenantScope, tenants: &[String]) -> bool {
    match scope {
        TenantScope::All => true,
        TenantScope::Only(mine) => {
            !tenants.is_empty()
                && tenants
                    .iter()
                    .all(|t| mine.iter().any(|m| m.as_str() == t.as_str()))
        }
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    need_admin(&state, &caller)?;
    let tokens: Vec<TokenInfo> = state
        .tokens
        .list()
        .into_iter()
        .filter(|t| covers(&caller.principal.tenants, &t.tenants))
        .collect();
    let n = tokens.len();
    Ok(crate::api::noted(
        Json(json!({ "tokens": tokens })).into_response(),
        n,
        None,
    ))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    need_admin(&state, &caller)?;
    let Json(req) = body.map_err(|e| ApiError::BadRequest(format!("token request: {e}")))?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        ApiError::BadRequest(format!(
            "unknown role {:?} (known: {})",
            req.role,
            names.join(", ")
        ))
    })?;
    let mut tenants = Vec::new();
    for t in &req.tenants {
        tenants.push(TenantId::parse(t).map_err(|e| ApiError::BadRequest(e.to_string()))?);
    }
    let names: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
    if !covers(&caller.principal.tenants, &names) {
        return Err(ApiError::Forbidden(if names.is_empty() {
            "only an admin of every tenant may create a token for every tenant; name --tenant"
                .into()
        } else {
            "a token may only be created for tenants the calling credential may act for".into()
        }));
    }
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
    tracing::info!(id = %rec.id, role = role.name(), by = %caller.principal.name, "token created");
    let info = TokenInfo::from(&rec);
    Ok(crate::api::noted(
        (
            StatusCode::CREATED,
            Json(json!({ "token": text.as_str(), "info": info })),
        )
            .into_response(),
        1,
        Some(format!("token:{} role={}", rec.id, role.name())),
    ))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    need_admin(&state, &caller)?;
    let Some(info) = state.tokens.get(&id) else {
        return Err(ApiError::NotFound(format!("no token with id {id:?}")));
    };
    if !covers(&caller.principal.tenants, &info.tenants) {
        // Indistinguishable from a missing token for an admin of other tenants.
        return Err(ApiError::NotFound(format!("no token with id {id:?}")));
    }
    state
        .tokens
        .revoke(&id)
        .map_err(|e| ApiError::Internal(format!("revoking the token: {e}")))?;
    tracing::info!(id = %id, by = %caller.principal.name, "token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
