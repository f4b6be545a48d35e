//! Workload identities over the API (`/api/admin/certs`), for `tracevault cert issue|register|
//! list|revoke`. Needs `admin_certs`; an admin bound to tenants manages identities within them.
//!
//! - `POST /api/admin/certs` `{identity, tenant, role?, services?, days?, csr?}` registers the
//!   identity (bound to one tenant, a role, the services it owns) and, with a PEM certificate
//!   signing request, issues a client certificate for it from the built-in client CA. The private
//!   key never reaches the server.
//! - `GET /api/admin/certs`: registrations, issued certificates, revoked serials.
//! - `POST /api/admin/certs/revoke` `{serial}` or `{identity}`: revokes one certificate, or
//!   removes an identity and revokes every certificate issued to it. Takes effect at once: the
//!   next handshake fails and requests on open connections are refused.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tv_access::{Role, TenantScope, now_unix};
use tv_model::TenantId;

use crate::AppState;
use crate::api::Permit;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::mtls::{self, IssuedCert, Workload};

/// `POST /api/admin/certs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// A SPIFFE ID, or `subject:<DN>` for certificates without one (outside CAs only).
    pub identity: String,
    pub tenant: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub services: Vec<String>,
    /// Lifetime of the issued certificate in days (default 90, at most 397).
    #[serde(default)]
    pub days: Option<u32>,
    /// PEM PKCS#10 request; absent: register only.
    #[serde(default)]
    pub csr: Option<String>,
}

/// `POST /api/admin/certs/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub identity: Option<String>,
}

const MAX_SERVICES: usize = 64;
const DEFAULT_DAYS: u32 = 90;

/// Identities of an outside client CA name the same workload in every tenant: only a
/// credential of every tenant binds or removes them (a tenant admin's answer then never depends
/// on what other tenants registered).
fn outside_ca_needs_every_tenant(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if outside_ca(state) && caller.principal.tenants != TenantScope::All {
        return Err(ApiError::Forbidden(
            "the server trusts an outside client CA ([tls] client_ca): its identities are bound and removed by an admin of every tenant".into(),
        ));
    }
    Ok(())
}

/// Whether client certificates come from an outside CA (`[tls] client_ca`).
fn outside_ca(state: &AppState) -> bool {
    state.tls.is_some() && state.client_ca.is_none()
}

fn check_identity(id: &str) -> Result<(), ApiError> {
    if let Some(dn) = id.strip_prefix("subject:") {
        if dn.is_empty() || dn.len() > 1024 {
            return Err(ApiError::BadRequest(
                "identity subject:<DN> needs a DN of 1 to 1024 bytes".into(),
            ));
        }
        return Ok(());
    }
    mtls::check_spiffe_id(id)
        .map_err(|e| ApiError::BadRequest(format!("identity {id:?} is not a SPIFFE ID: {e}")))
}

pub async fn register(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<Register>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let Json(req) = body.map_err(|e| ApiError::json_body("certificate request", e))?;
    // The tenant the identity is bound to is what is acted on: authorized first.
    let tenant = TenantId::parse(&req.tenant).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let auth = permit.authorize_on(&state, tenant)?;
    let tenant = auth.tenant().clone();
    outside_ca_needs_every_tenant(&state, caller)?;
    check_identity(&req.identity)?;
    let role = match &req.role {
        None => Role::Ingest,
        Some(r) => Role::parse(r).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            ApiError::BadRequest(format!("unknown role {r:?} (known: {})", names.join(", ")))
        })?,
    };
    if req.services.len() > MAX_SERVICES {
        return Err(ApiError::BadRequest(format!(
            "{} services: at most {MAX_SERVICES} per identity",
            req.services.len()
        )));
    }
    if req.services.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(ApiError::BadRequest(
            "service names must be 1 to 256 bytes".into(),
        ));
    }
    let days = req.days.unwrap_or(DEFAULT_DAYS);
    if days == 0 || days > mtls::MAX_DAYS {
        return Err(ApiError::BadRequest(format!(
            "days {days}: 1 to {} (TLS clients refuse longer-lived certificates)",
            mtls::MAX_DAYS
        )));
    }
    // Everything is checked before anything is registered.
    let issued = match (&req.csr, &state.client_ca) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ApiError::BadRequest(
                "the server trusts an outside client CA ([tls] client_ca): issue certificates with it, and bind their identities with `tracevault cert register`".into(),
            ));
        }
        (Some(_), Some(_)) if !req.identity.starts_with("spiffe://") => {
            return Err(ApiError::BadRequest(
                "certificates are issued for SPIFFE IDs; subject identities are for outside CAs"
                    .into(),
            ));
        }
        (Some(csr), Some(_)) if csr.len() > 16 * 1024 => {
            return Err(ApiError::BadRequest(
                "certificate signing request is over 16 KiB".into(),
            ));
        }
        (Some(csr), Some(ca)) => {
            let (id, csr, ca) = (req.identity.clone(), csr.clone(), ca.clone());
            let r = tokio::task::spawn_blocking(move || mtls::issue(&ca, &csr, &id, days))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::BadRequest(format!("{e:#}")))?;
            Some(r)
        }
    };
    let workload = Workload {
        identity: req.identity.clone(),
        tenant: tenant.to_string(),
        role,
        services: req.services.clone(),
        registered_unix: now_unix(),
    };
    // Registrations of the built-in CA's identities are per tenant (a certificate acts for the
    // tenant it was issued for); an outside CA's identity has one registration.
    state
        .workloads
        .register(workload.clone(), outside_ca(&state))
        .map_err(|e| ApiError::Internal(format!("storing the registration: {e:#}")))?;
    let mut out = json!({ "workload": workload });
    if let Some((pem, serial, not_after)) = issued {
        let rec = IssuedCert {
            serial: serial.clone(),
            identity: req.identity.clone(),
            tenant: tenant.to_string(),
            issued_unix: now_unix(),
            not_after,
            revoked_unix: None,
        };
        state
            .workloads
            .record_issued(rec.clone())
            .map_err(|e| ApiError::Internal(format!("recording the certificate: {e:#}")))?;
        let ca = state
            .client_ca
            .as_ref()
            .and_then(|ca| std::fs::read_to_string(&ca.cert).ok())
            .unwrap_or_default();
        out["certificate"] = json!(pem);
        out["client_ca"] = json!(ca);
        out["issued"] = json!(rec);
        tracing::info!(identity = %req.identity, serial = %serial, tenant = %tenant, role = role.name(), by = %caller.principal.name, "client certificate issued");
    } else {
        tracing::info!(identity = %req.identity, tenant = %tenant, role = role.name(), by = %caller.principal.name, "workload identity registered");
    }
    let resource = format!(
        "identity:{} tenant={} role={}{}",
        req.identity,
        tenant,
        role.name(),
        out["issued"]["serial"]
            .as_str()
            .map(|s| format!(" serial={s}"))
            .unwrap_or_default()
    );
    Ok(crate::api::noted(
        (StatusCode::CREATED, Json(out)).into_response(),
        &auth,
        1,
        Some(resource),
    ))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let auth = permit.authorize(&state)?;
    let mine = |t: &str| permit.may(&state, t);
    let (workloads, certs, revoked) = state.workloads.list();
    let workloads: Vec<_> = workloads.into_iter().filter(|w| mine(&w.tenant)).collect();
    let certs: Vec<_> = certs.into_iter().filter(|c| mine(&c.tenant)).collect();
    // Serials of outside certificates name no tenant: every-tenant admins only.
    let revoked: Vec<_> = revoked
        .into_iter()
        .filter(|(s, _)| match state.workloads.certificate(s) {
            Some(c) => mine(&c.tenant),
            None => caller.principal.tenants == TenantScope::All,
        })
        .map(|(serial, at)| json!({"serial": serial, "revoked_unix": at}))
        .collect();
    let n = workloads.len() + certs.len();
    Ok(crate::api::noted(
        Json(json!({
            "workloads": workloads,
            "certificates": certs,
            "revoked": revoked,
        }))
        .into_response(),
        &auth,
        n,
        None,
    ))
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<Revoke>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let Json(req) = body.map_err(|e| ApiError::json_body("revocation", e))?;
    match (req.serial, req.identity) {
        (Some(serial), None) => {
            let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
            let serial = serial.trim_start_matches("00").to_string();
            if serial.is_empty()
                || serial.len() > 40
                || !serial.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(ApiError::BadRequest(
                    "serial must be 1 to 40 hex digits (as `cert list` shows it)".into(),
                ));
            }
            // The tenant the certificate was issued for is what is acted on. A serial of
            // another tenant, and one this server never issued, answer alike for a tenant
            // admin; only an admin of every tenant revokes outside serials.
            let auth = match state.workloads.certificate(&serial) {
                Some(c) if permit.may(&state, &c.tenant) => {
                    let t = TenantId::parse(&c.tenant)
                        .map_err(|e| ApiError::Internal(format!("stored tenant: {e}")))?;
                    permit.authorize_on(&state, t)?
                }
                None if caller.principal.tenants == TenantScope::All => {
                    permit.authorize_every(&state, "revoking a serial this server did not issue")?
                }
                _ => {
                    return Err(ApiError::NotFound(format!(
                        "no certificate with serial {serial} issued for a tenant this credential administers"
                    )));
                }
            };
            let fresh = state
                .workloads
                .revoke_serial(&serial)
                .map_err(|e| ApiError::Internal(format!("storing the revocation: {e:#}")))?;
            tracing::info!(serial = %serial, by = %caller.principal.name, "client certificate revoked");
            let resource = Some(format!("serial:{serial}"));
            Ok(crate::api::noted(
                Json(json!({"revoked": [serial], "already_revoked": !fresh})).into_response(),
                &auth,
                1,
                resource,
            ))
        }
        (None, Some(identity)) => {
            outside_ca_needs_every_tenant(&state, caller)?;
            // Only registrations in tenants this credential administers exist for it.
            let mut held: Vec<_> = state
                .workloads
                .registrations(&identity)
                .into_iter()
                .filter(|w| permit.may(&state, &w.tenant))
                .collect();
            let w = match held.len() {
                0 => {
                    return Err(ApiError::NotFound(format!(
                        "no registered identity {:?} in a tenant this credential administers",
                        identity.chars().take(256).collect::<String>()
                    )));
                }
                1 => held.remove(0),
                _ => {
                    // Several of the caller's own tenants: the one X-Scope-OrgID names.
                    let t = caller.requested_tenant().as_str();
                    let i = held.iter().position(|w| w.tenant == t).ok_or_else(|| {
                        let names: Vec<&str> = held.iter().map(|w| w.tenant.as_str()).collect();
                        ApiError::BadRequest(format!(
                            "identity is registered in tenants [{}]: name one with X-Scope-OrgID (--tenant)",
                            names.join(", ")
                        ))
                    })?;
                    held.remove(i)
                }
            };
            let t = TenantId::parse(&w.tenant)
                .map_err(|e| ApiError::Internal(format!("stored tenant: {e}")))?;
            let auth = permit.authorize_on(&state, t)?;
            let serials = state
                .workloads
                .revoke_identity(auth.tenant().as_str(), &identity)
                .map_err(|e| ApiError::Internal(format!("storing the revocation: {e:#}")))?
                .unwrap_or_default();
            tracing::info!(identity = %identity, tenant = %auth.tenant(), certificates = serials.len(), by = %caller.principal.name, "workload identity removed");
            let (n, resource) = (serials.len(), Some(format!("identity:{identity}")));
            Ok(crate::api::noted(
                Json(json!({"revoked": serials, "unregistered": identity})).into_response(),
                &auth,
                n,
                resource,
            ))
        }
        _ => Err(ApiError::BadRequest(
            "name exactly one of serial or identity".into(),
        )),
    }
}
