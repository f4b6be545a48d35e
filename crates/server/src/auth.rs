//! Request authentication and tenant resolution, shared by the HTTP, gRPC and query listeners.

use http::HeaderMap;
use tv_access::{
    Action, AuthError, OidcVerifier, PolicyEngine, Principal, TokenSecret, TokenStore,
};
use tv_model::TenantId;

use crate::error::ApiError;
use crate::mtls::PeerInfo;

/// Header naming the tenant (as in Grafana Tempo and Mimir).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Who is calling, and for which tenant: established before any body is read.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub tenant: TenantId,
}

/// Authenticates the request and resolves the tenant it names: the bearer token when there is an
/// `Authorization` header, otherwise the connection's verified client certificate.
pub fn authenticate(
    state: &crate::AppState,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
) -> Result<Caller, ApiError> {
    let caller = authenticate_request(state, headers, peer)?;
    // A connection that made an authenticated request is never shed for a flood of others.
    if let Some(c) = peer.and_then(|p| p.conn.as_ref()) {
        c.mark_authenticated();
    }
    Ok(caller)
}

fn authenticate_request(
    state: &crate::AppState,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
) -> Result<Caller, ApiError> {
    let cert = peer.and_then(|p| p.cert.as_deref());
    match cert {
        Some(c) if !headers.contains_key(http::header::AUTHORIZATION) => {
            let principal = state
                .workloads
                .principal(c)
                .map_err(ApiError::Unauthenticated)?;
            resolve_tenant(principal, headers)
        }
        _ => authenticate_with(&state.tokens, state.oidc.as_deref(), headers),
    }
}

/// Bearer authentication: API tokens (`tvk_...`), and JWTs when OIDC is configured.
pub fn authenticate_with(
    tokens: &TokenStore,
    oidc: Option<&OidcVerifier>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let value = match headers.get(http::header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::Unauthenticated(AuthError::Malformed))?,
        ),
    };
    let bearer = value
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let principal = match (oidc, bearer) {
        (Some(o), Some(t)) if OidcVerifier::looks_like_jwt(t) => {
            o.verify(t).map_err(ApiError::Unauthenticated)?
        }
        _ => {
            let secret = TokenSecret::from_header(value).map_err(ApiError::Unauthenticated)?;
            tokens
                .authenticate(&secret)
                .map_err(ApiError::Unauthenticated)?
        }
    };
    resolve_tenant(principal, headers)
}

/// The tenant a request acts for: `X-Scope-OrgID`, or the credential's only tenant.
fn resolve_tenant(principal: Principal, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let tenant = match headers.get(TENANT_HEADER) {
        // A credential bound to exactly one tenant acts for it without saying so.
        None => match &principal.tenants {
            tv_access::TenantScope::Only(list) if list.len() == 1 => list[0].clone(),
            _ => TenantId::default_tenant(),
        },
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("invalid tenant id: not ASCII".into()))?;
            TenantId::parse(s.trim()).map_err(|e| ApiError::BadRequest(e.to_string()))?
        }
    };
    // X-Scope-OrgID can only narrow what the credential allows, never widen it.
    if !principal.tenants.allows(&tenant) {
        return Err(ApiError::Forbidden(format!(
            "credential is not allowed to act for tenant {tenant}"
        )));
    }
    Ok(Caller { principal, tenant })
}

/// The roles the built-in policies give an action (for refusal messages).
fn default_roles(action: Action) -> &'static str {
    match action {
        Action::Ingest => "ingest or admin",
        Action::ReadTrace | Action::Search | Action::ReadReceipt => "reader, investigator or admin",
        Action::ReadLog => "any role",
        Action::ReadMetrics => "metrics or admin, bound to every tenant",
        Action::ReadAudit => "auditor or admin",
        Action::ReadFieldClass | Action::Reveal | Action::ReadFindings => "investigator or admin",
        Action::Flush | Action::AdminTokens | Action::AdminCerts | Action::AdminKeys => "admin",
    }
}

/// Asks the policy engine whether the caller may do `action` for its tenant.
pub fn authorize(policy: &PolicyEngine, caller: &Caller, action: Action) -> Result<(), ApiError> {
    let v = policy.authorize(&caller.principal, action, &caller.tenant, &[]);
    if v.allowed {
        return Ok(());
    }
    Err(ApiError::Forbidden(refusal(caller, action, &v.reasons)))
}

/// The refusal message: what was asked, the role, and the policies that decided.
pub fn refusal(caller: &Caller, action: Action, reasons: &[String]) -> String {
    let why = if reasons.is_empty() {
        format!(
            "no policy permits it (by default: role {})",
            default_roles(action)
        )
    } else {
        format!("forbidden by policy {}", reasons.join(", "))
    };
    format!(
        "credential (role {}) may not {} for tenant {}: {why}",
        caller.principal.role.name(),
        action.name(),
        caller.tenant
    )
}
