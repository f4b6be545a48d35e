//! Administration: tokens, workload certificates, keys, automated responses and flush.

pub mod certs;
pub mod keys;
pub mod tokens;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Permit, noted};
use crate::AppState;
use crate::error::ApiError;

pub async fn flush(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    // Sealing is server-wide: every tenant's head goes into blocks.
    let auth = permit.authorize_every(&state, "a flush (it seals every tenant's spans)")?;
    state.store.flush().await.map_err(ApiError::from_store)?;
    let s = state.store.stats();
    Ok(noted(
        Json(json!({"blocks": s.blocks, "headSpans": s.head_spans})).into_response(),
        &auth,
        s.blocks,
        Some("flush".into()),
    ))
}

/// `GET /api/admin/responses`: automated responses taken (admin; the tenant's own, or all for an
/// every-tenant admin).
pub async fn responses_list(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    // Every tenant's that the caller may administer.
    let list: Vec<_> = state
        .detection
        .responses
        .as_ref()
        .map(|r| r.list())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| permit.may(&state, &r.tenant))
        .collect();
    let n = list.len();
    Ok(noted(
        Json(json!({ "responses": list })).into_response(),
        &auth,
        n,
        Some("responses".into()),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    id: String,
}

/// `POST /api/admin/responses/release {"id": "..."}`: lift a quarantine or throttle (admin).
pub async fn responses_release(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: ReleaseBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be {{\"id\": \"...\"}}: {e}")))?;
    let Some(r) = state.detection.responses.as_ref() else {
        return Err(ApiError::NotFound(
            "no automated responses on this server".into(),
        ));
    };
    // Authorized on the tenant the response belongs to; one the caller may not administer
    // answers as if it did not exist.
    let missing = || {
        ApiError::NotFound(format!(
            "no active response {} for this tenant (see GET /api/admin/responses)",
            b.id.chars().take(32).collect::<String>()
        ))
    };
    let owner = r
        .list()
        .into_iter()
        .find(|x| x.id == b.id)
        .ok_or_else(missing)?;
    let owner = tv_model::TenantId::parse(&owner.tenant).map_err(|_| missing())?;
    if !permit.may(&state, owner.as_str()) {
        return Err(missing());
    }
    let auth = permit.authorize_on(&state, owner)?;
    let released = r
        .release(&b.id, &permit.caller.principal.id())
        .ok_or_else(|| ApiError::NotFound(format!("response {} is already released", b.id)))?;
    Ok(noted(
        Json(json!({ "released": released })).into_response(),
        &auth,
        1,
        Some(format!("response:{}", released.id)),
    ))
}
