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

/// Who is calling, and which tenant it asks for: established before any body is read.
///
/// The requested tenant is not a permission: handlers act only on the tenant of an
/// [`Authorized`], which only the policy check makes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    tenant: TenantId,
}

impl Caller {
    /// The tenant the request names (`X-Scope-OrgID`, or the credential's only tenant); within
    /// the credential's scope, but not yet authorized for anything.
    pub fn requested_tenant(&self) -> &TenantId {
        &self.tenant
    }
}

/// The policies in force let a principal do one action on one tenant (or on every tenant).
/// Only [`authorize`], [`authorize_on`] and [`authorize_every`] make one, so a handler that
/// acts on `tenant()` acts on exactly what was authorized, whatever else the request names.
#[derive(Debug, Clone)]
pub struct Authorized {
    principal: Principal,
    tenant: TenantId,
}

impl Authorized {
    /// The tenant the action was authorized on (for an every-tenant action: the tenant the
    /// request named, which its audit record is filed under).
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

/// A request refused before its handler: why, and, when its credential was valid, whose it was
/// and which tenant it tried to reach (so the refusal is audited as that principal's).
#[derive(Debug)]
pub struct Refused {
    pub error: ApiError,
    pub principal: Option<Box<Principal>>,
    pub tenant: Option<TenantId>,
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        r.error
    }
}

impl Refused {
    /// Audits the refusal: as the principal's when its credential was valid, else as sampled
    /// unauthenticated noise.
    pub fn audit(
        &self,
        audit: &crate::audit::Audit,
        peer: Option<&PeerInfo>,
        listener: &str,
        action: &str,
        resource: String,
    ) {
        let status = self.error.status().as_u16();
        match (&self.principal, &self.tenant) {
            (Some(p), tenant) => {
                // A tenant id that did not parse is filed under the principal's own tenant.
                let home = || match &p.tenants {
                    tv_access::TenantScope::Only(list) if !list.is_empty() => list[0].clone(),
                    _ => TenantId::default_tenant(),
                };
                let tenant = tenant.clone().unwrap_or_else(home);
                audit.denied(
                    p,
                    &tenant,
                    peer,
                    listener,
                    action,
                    resource,
                    status,
                    self.error.to_string(),
                )
            }
            (None, _) => audit.unauthenticated(
                peer,
                listener,
                action,
                resource,
                status,
                self.error.to_string(),
            ),
        }
    }
}

/// Authenticates the request and resolves the tenant it names: the bearer token when there is an
/// `Authorization` header, otherwise the connection's verified client certificate.
pub fn authenticate(
    state: &crate::AppState,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
) -> Result<Caller, Refused> {
    let principal = credential(state, headers, peer).map_err(|error| Refused {
        error,
        principal: None,
        tenant: None,
    })?;
    // A connection that made an authenticated request is never shed for a flood of others.
    if let Some(c) = peer.and_then(|p| p.conn.as_ref()) {
        c.mark_authenticated();
    }
    resolve_tenant(principal, headers)
}

/// Authenticates a query-API request: as [`authenticate`], or, when it carries no
/// `Authorization` header, by the web UI's session cookie (the credential that made the
/// session, re-checked). A state change made with the cookie must come from this origin with
/// the session's CSRF token. The OTLP listeners never take the cookie.
pub fn authenticate_api(
    state: &crate::AppState,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
) -> Result<Caller, Refused> {
    if !headers.contains_key(http::header::AUTHORIZATION)
        && let Some(cookie) = crate::ui::session::cookie(headers)
    {
        let view = state
            .sessions
            .lookup(cookie, &state.tokens)
            .map_err(|e| Refused {
                error: ApiError::Unauthenticated(e),
                principal: None,
                tenant: None,
            })?;
        let safe = matches!(
            *method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !safe {
            crate::ui::signin::check_csrf(state, headers, uri, &view).map_err(|error| Refused {
                error,
                principal: Some(Box::new(view.principal.clone())),
                tenant: None,
            })?;
        }
        if let Some(c) = peer.and_then(|p| p.conn.as_ref()) {
            c.mark_authenticated();
        }
        return resolve_tenant(view.principal, headers);
    }
    authenticate(state, headers, peer)
}

/// Who the credential is (401 when there is none or it is not valid).
fn credential(
    state: &crate::AppState,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
) -> Result<Principal, ApiError> {
    let cert = peer.and_then(|p| p.cert.as_deref());
    match cert {
        Some(c) if !headers.contains_key(http::header::AUTHORIZATION) => state
            .workloads
            .principal(c)
            .map_err(ApiError::Unauthenticated),
        _ => bearer(&state.tokens, state.oidc.as_deref(), headers),
    }
}

/// Bearer authentication: API tokens (`tvk_...`), and JWTs when OIDC is configured.
fn bearer(
    tokens: &TokenStore,
    oidc: Option<&OidcVerifier>,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
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
    match (oidc, bearer) {
        (Some(o), Some(t)) if OidcVerifier::looks_like_jwt(t) => {
            o.verify(t).map_err(ApiError::Unauthenticated)
        }
        _ => {
            let secret = TokenSecret::from_header(value).map_err(ApiError::Unauthenticated)?;
            tokens
                .authenticate(&secret)
                .map_err(ApiError::Unauthenticated)
        }
    }
}

/// The tenant a request acts for: `X-Scope-OrgID`, or the credential's only tenant.
fn resolve_tenant(principal: Principal, headers: &HeaderMap) -> Result<Caller, Refused> {
    let tenant = match headers.get(TENANT_HEADER) {
        // A credential bound to exactly one tenant acts for it without saying so.
        None => match &principal.tenants {
            tv_access::TenantScope::Only(list) if list.len() == 1 => list[0].clone(),
            _ => TenantId::default_tenant(),
        },
        Some(v) => {
            let parsed = v
                .to_str()
                .map_err(|_| "invalid tenant id: not ASCII".to_string())
                .and_then(|s| TenantId::parse(s.trim()).map_err(|e| e.to_string()));
            match parsed {
                Ok(t) => t,
                Err(msg) => {
                    return Err(Refused {
                        error: ApiError::BadRequest(msg),
                        principal: Some(Box::new(principal)),
                        tenant: None,
                    });
                }
            }
        }
    };
    // X-Scope-OrgID can only narrow what the credential allows, never widen it.
    if !principal.tenants.allows(&tenant) {
        return Err(Refused {
            error: ApiError::ForbiddenOn(
                tenant.clone(),
                format!("credential is not allowed to act for tenant {tenant}"),
            ),
            principal: Some(Box::new(principal)),
            tenant: Some(tenant),
        });
    }
    Ok(Caller { principal, tenant })
}

/// The roles the built-in policies give an action (for refusal messages).
fn default_roles(action: Action) -> &'static str {
    match action {
        Action::Ingest => "ingest or admin",
        Action::ReadTrace | Action::Search | Action::ReadReceipt => "reader, investigator or admin",
        Action::ReadLog => "any role",
        Action::UiLogin => "reader, investigator, auditor or admin",
        Action::ReadMetrics => "metrics or admin, bound to every tenant",
        Action::ReadAudit => "auditor or admin",
        Action::ReadFieldClass | Action::Reveal | Action::ReadFindings | Action::LookupPerson => {
            "investigator or admin"
        }
        Action::Flush
        | Action::AdminTokens
        | Action::AdminCerts
        | Action::AdminKeys
        | Action::Doctor => "admin",
    }
}

/// Asks the policy engine whether the caller may do `action` on the tenant it requested.
pub fn authorize(
    policy: &PolicyEngine,
    caller: &Caller,
    action: Action,
) -> Result<Authorized, ApiError> {
    authorize_on(policy, &caller.principal, action, caller.tenant.clone())
}

/// Asks the policy engine whether `principal` may do `action` on `tenant`: the tenant a
/// request acts on, wherever the request names it (header, path or body). A refusal names
/// the tenant, so the audit record is filed under the tenant that was tried.
pub fn authorize_on(
    policy: &PolicyEngine,
    principal: &Principal,
    action: Action,
    tenant: TenantId,
) -> Result<Authorized, ApiError> {
    let v = policy.authorize(principal, action, &tenant, &[]);
    if v.allowed {
        return Ok(Authorized {
            principal: principal.clone(),
            tenant,
        });
    }
    let msg = refusal(principal, &tenant, action, &v.reasons);
    Err(ApiError::ForbiddenOn(tenant, msg))
}

/// Authorizes an action that reaches every tenant (a key backup, a server-wide flush): the
/// credential must be bound to every tenant, and the policies must permit the action on each
/// tenant in `known` (a `forbid` on any one of them refuses it).
pub fn authorize_every(
    policy: &PolicyEngine,
    caller: &Caller,
    action: Action,
    known: &[TenantId],
    what: &str,
) -> Result<Authorized, ApiError> {
    if caller.principal.tenants != tv_access::TenantScope::All {
        return Err(ApiError::ForbiddenOn(
            caller.tenant.clone(),
            format!("{what} reaches every tenant: it needs a credential of every tenant"),
        ));
    }
    for t in known.iter().chain(std::iter::once(&caller.tenant)) {
        authorize_on(policy, &caller.principal, action, t.clone())?;
    }
    Ok(Authorized {
        principal: caller.principal.clone(),
        tenant: caller.tenant.clone(),
    })
}

/// Authorizes an ingest batch: the requested tenant, and every service the batch carries.
pub fn authorize_ingest(
    policy: &PolicyEngine,
    caller: &Caller,
    services: &[&str],
) -> Result<Authorized, tv_access::Verdict> {
    let v = policy.authorize(&caller.principal, Action::Ingest, &caller.tenant, services);
    if !v.allowed {
        return Err(v);
    }
    Ok(Authorized {
        principal: caller.principal.clone(),
        tenant: caller.tenant.clone(),
    })
}

/// The refusal message: what was asked, the role, and the policies that decided.
pub fn refusal(
    principal: &Principal,
    tenant: &TenantId,
    action: Action,
    reasons: &[String],
) -> String {
    let why = if reasons.is_empty() {
        format!(
            "no policy permits it (by default: role {})",
            default_roles(action)
        )
    } else {
        format!("forbidden by policy {}", reasons.join(", "))
    };
    format!(
        "credential (role {}) may not {} for tenant {tenant}: {why}",
        principal.role.name(),
        action.name(),
    )
}
