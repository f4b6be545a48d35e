//! Key management over the API (`/api/admin/keys`), for `tracevault keys list|rotate` (issue 6).
//! Needs `admin_keys`; an admin bound to tenants sees and rotates its tenants' keys only. Every
//! call is an audit record (the auth middleware records `admin_keys` with the tenant and version).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tv_access::TenantScope;
use tv_model::TenantId;

use crate::AppState;
use crate::api::Permit;
use crate::error::ApiError;

/// `POST /api/admin/keys/rotate` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    pub tenant: String,
}

fn key_error(e: tv_crypto::CryptoError) -> ApiError {
    match e {
        tv_crypto::CryptoError::Kms(m) if m.contains(" 403 ") => ApiError::Unavailable(format!(
            "the KMS refused the operation ({m}): the server's KMS credential lacks a permission (see the operator's guide); grant it and run the command again"
        )),
        tv_crypto::CryptoError::Kms(m) => ApiError::Unavailable(format!(
            "the KMS holding the root does not answer ({m}); retry later"
        )),
        tv_crypto::CryptoError::Erased(t) => ApiError::Forbidden(format!(
            "tenant {t} was erased: it has no keys to rotate or rewrap"
        )),
        other => {
            tracing::error!(error = %other, "key operation failed");
            ApiError::Internal("key operation failed (details are in the server log)".into())
        }
    }
}

/// Authorizes `admin_keys` on the tenant a request body names: the tenant acted on is the one
/// authorized, whatever `X-Scope-OrgID` says.
fn authorize_body_tenant(
    state: &AppState,
    permit: &Permit,
    tenant: &str,
) -> Result<crate::auth::Authorized, ApiError> {
    let tenant = TenantId::parse(tenant).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    permit.authorize_on(state, tenant)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let auth = permit.authorize(&state)?;
    let st = state.clone();
    let p = permit.clone();
    let tenants =
        tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, ApiError> {
            let kr = &st.keyring;
            let mut out = Vec::new();
            // Only the tenants whose keys the policies let this caller administer.
            for t in kr.tenants().map_err(key_error)? {
                if !p.may(&st, t.as_str()) {
                    continue;
                }
                let versions = kr.versions(&t).map_err(key_error)?;
                let current = versions.last().map(|v| v.0).unwrap_or(0);
                out.push(json!({
                    "tenant": t.as_str(),
                    "current": current,
                    "versions": versions
                        .iter()
                        .map(|(v, c)| json!({"version": v, "created_unix": c}))
                        .collect::<Vec<_>>(),
                }));
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let n = tenants.len();
    // Where the root key lives (a file path, a KMS key) is the operator's, not a tenant's.
    let root =
        (caller.principal.tenants == TenantScope::All).then(|| state.keyring.root().describe());
    Ok(crate::api::noted(
        Json(json!({ "tenants": tenants, "root": root })).into_response(),
        &auth,
        n,
        None,
    ))
}

pub async fn rotate(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<Rotate>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let Json(req) = body.map_err(|e| ApiError::json_body("rotation", e))?;
    let auth = authorize_body_tenant(&state, &permit, &req.tenant)?;
    let tenant = auth.tenant().clone();
    let kr = state.keyring.clone();
    let t = tenant.clone();
    let version = tokio::task::spawn_blocking(move || kr.rotate(&t))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(key_error)?;
    tracing::info!(tenant = %tenant, version, by = %caller.principal.name, "tenant key rotated");
    Ok(crate::api::noted(
        Json(json!({ "tenant": tenant.as_str(), "version": version })).into_response(),
        &auth,
        1,
        Some(format!("tenant-key:{tenant} rotated to v{version}")),
    ))
}

/// `POST /api/admin/keys/rewrap` `{tenant}`: re-wraps every data key of the tenant's blocks and
/// WAL segments under its current key version, without rewriting those files (the new wrappings
/// live beside the tenant's keys). Afterwards older versions wrap nothing still stored.
pub async fn rewrap(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<Rotate>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let Json(req) = body.map_err(|e| ApiError::json_body("rewrap", e))?;
    let auth = authorize_body_tenant(&state, &permit, &req.tenant)?;
    let tenant = auth.tenant().clone();
    let st = state.clone();
    let t = tenant.clone();
    let started = std::time::Instant::now();
    let (done, current, version) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let uses = st.store.key_use().map_err(ApiError::from_store)?;
        let keys: Vec<_> = uses
            .into_iter()
            .filter(|u| u.tenant == t.as_str())
            .map(|u| u.wrapped)
            .collect();
        let (done, current) = st.keyring.rewrap(&t, &keys).map_err(key_error)?;
        let version = st.keyring.current_kek(&t).map_err(key_error)?.0;
        Ok((done, current, version))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(tenant = %tenant, version, rewrapped = done, already = current, ms, by = %caller.principal.name, "tenant data keys re-wrapped");
    Ok(crate::api::noted(
        Json(json!({
            "tenant": tenant.as_str(),
            "version": version,
            "rewrapped": done,
            "already_current": current,
            "millis": ms,
        }))
        .into_response(),
        &auth,
        done,
        Some(format!(
            "tenant-key:{tenant} rewrapped {done} data keys to v{version}"
        )),
    ))
}

/// `POST /api/admin/keys/rewrap-root`: re-wraps every tenant key under the root's newest version
/// (run after rotating the transit keys in the KMS; then old KMS key versions can be retired).
/// Needs `admin_keys` with a credential of every tenant.
pub async fn rewrap_root(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let auth = permit.authorize_every(&state, "re-wrapping under the root")?;
    let (kr, audit) = (state.keyring.clone(), state.audit.clone());
    let started = std::time::Instant::now();
    let (n, system) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let n = kr.rewrap_under_root().map_err(key_error)?;
        let system = crate::logkeys::rewrap_system_secrets(kr.keys_dir(), kr.root().as_ref())
            .and_then(|s| Ok(s + audit.rewrap_keys()?))
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "re-wrapping the system secrets failed");
                ApiError::Internal(
                    "re-wrapping the system secrets failed (details are in the server log)".into(),
                )
            })?;
        Ok((n, system))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(keys = n, system, ms, by = %caller.principal.name, "tenant keys and system secrets re-wrapped under the root's newest version");
    Ok(crate::api::noted(
        Json(json!({
            "rewrapped": n,
            "system": system,
            "millis": ms,
            "root": state.keyring.root().describe(),
        }))
        .into_response(),
        &auth,
        n,
        Some(format!(
            "root: rewrapped {n} tenant keys and {system} system secrets"
        )),
    ))
}

/// `POST /api/admin/tenants/erase` body: without `confirm`, only what would be destroyed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erase {
    pub tenant: String,
    #[serde(default)]
    pub confirm: bool,
}

/// What erasure cannot reach, said with every answer (and in the operator's guide).
pub fn erase_limits(root: &dyn tv_crypto::RootKeySource) -> Vec<String> {
    let mut out = vec![
        "The erasure is irreversible: no command brings the tenant's data back.".to_string(),
        "Anything decrypted before now (query results, exports, the SIEM) is outside the server and not erased.".to_string(),
    ];
    if root.describe().starts_with("transit") {
        out.push("The root is a KMS: its own backups or snapshots taken before now still hold the tenant's transit key; purge them to finish the erasure.".into());
    } else {
        out.push("The root is a file: a backup holding both the keys directory (or a `keys backup` file) and the data from before now can still decrypt the tenant; keys must be backed up apart from data and such backups destroyed or restored only through `keys restore`, which refuses erased tenants.".into());
    }
    out
}

/// The audit resource of an erasure.
pub fn erase_resource(tenant: &TenantId, rec: &tv_store::erase::Erasure) -> String {
    let versions: Vec<String> = rec.key_versions.iter().map(|v| format!("v{v}")).collect();
    format!(
        "tenant:{tenant} erased: key versions [{}] destroyed{}, {} blocks deleted, log entry {}",
        versions.join(", "),
        rec.root_key
            .as_ref()
            .map(|k| format!(", KMS key {k} deleted"))
            .unwrap_or_default(),
        rec.blocks,
        rec.log_index
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into()),
    )
}

/// What erasing `tenant` would destroy now (the answer without `confirm`).
pub fn erase_preview(
    tenant: &TenantId,
    keyring: &tv_crypto::Keyring,
    store: &tv_store::Store,
) -> Result<serde_json::Value, tv_crypto::CryptoError> {
    let versions: Vec<u32> = keyring.versions(tenant)?.iter().map(|v| v.0).collect();
    let (blocks, block_spans, head_spans) = store.tenant_holdings(tenant);
    Ok(json!({
        "tenant": tenant.as_str(),
        "erased": false,
        "key_versions": versions,
        "root": keyring.root().describe(),
        "blocks": blocks,
        "spans": block_spans + head_spans,
        "limits": erase_limits(keyring.root().as_ref()),
    }))
}

/// The answer to a finished erasure.
pub fn erase_done(
    tenant: &TenantId,
    root: &dyn tv_crypto::RootKeySource,
    rec: &tv_store::erase::Erasure,
    ms: f64,
) -> serde_json::Value {
    json!({
        "tenant": tenant.as_str(),
        "erased": true,
        "key_versions": rec.key_versions,
        "root_key": rec.root_key,
        "blocks": rec.blocks,
        "spans": rec.spans,
        "log_index": rec.log_index,
        "millis": ms,
        "limits": erase_limits(root),
    })
}

/// `POST /api/admin/tenants/erase` `{tenant, confirm}`: crypto-shreds a tenant (issue 6). With
/// `confirm`, destroys every version of its keys (and its KMS key), deletes its blocks and
/// refuses it from then on; without, answers what that would destroy. Needs `admin_keys` for
/// the tenant. Audited.
pub async fn erase(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<Erase>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let Json(req) = body.map_err(|e| ApiError::json_body("erase", e))?;
    let auth = authorize_body_tenant(&state, &permit, &req.tenant)?;
    let tenant = auth.tenant().clone();
    // Finished erasures are refused; one a failure interrupted (the KMS not answering, say) is
    // finished by running the command again.
    if tv_store::erase::is_erased(&state.data_dir, &tenant).map_err(ApiError::from_store)? {
        return Err(ApiError::BadRequest(format!(
            "tenant {tenant} was already erased"
        )));
    }
    if !req.confirm {
        let (st, t) = (state.clone(), tenant.clone());
        let preview =
            tokio::task::spawn_blocking(move || erase_preview(&t, &st.keyring, &st.store))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(key_error)?;
        return Ok(crate::api::noted(
            Json(preview).into_response(),
            &auth,
            0,
            Some(format!("tenant:{tenant} erase previewed")),
        ));
    }
    let started = std::time::Instant::now();
    // In a cluster the erasure is recorded for every node first (each erases what it holds);
    // if that fails nothing is erased yet.
    if let Some((node, erasures)) = state.cluster.clone() {
        let t = tenant.clone();
        tokio::task::spawn_blocking(move || erasures.record(&t, &node))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| {
                ApiError::Unavailable(format!(
                    "cannot record the erasure in the cluster's state ({e:#}); nothing was erased: try again"
                ))
            })?;
    }
    let rec = erase_here(&state, &tenant).await.map_err(|e| match e {
        tv_store::StoreError::Erased(t) => {
            ApiError::BadRequest(format!("tenant {t} was already erased"))
        }
        tv_store::StoreError::Crypto(c) => key_error(c),
        other => ApiError::from_store(other),
    })?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::warn!(tenant = %tenant, blocks = rec.blocks, spans = rec.spans, ms, by = %caller.principal.name, "tenant erased");
    Ok(crate::api::noted(
        Json(erase_done(&tenant, state.keyring.root().as_ref(), &rec, ms)).into_response(),
        &auth,
        rec.blocks as usize,
        Some(erase_resource(&tenant, &rec)),
    ))
}

/// Erases `tenant` on this node: its blocks and keys (the store), then what the server keeps
/// of it in memory and in its state files.
pub async fn erase_here(
    state: &AppState,
    tenant: &TenantId,
) -> Result<tv_store::erase::Erasure, tv_store::StoreError> {
    let rec = state.store.erase_tenant(tenant).await?;
    state.redaction.forget(tenant);
    state.findings_seal.forget(tenant);
    state.findings_index.forget(tenant);
    state
        .graph
        .erase(tenant, &state.data_dir, &state.state_seal);
    if state.cluster.is_some() {
        // The baseline this node shared (its copy in the data directory goes with the worker's
        // next save).
        crate::baseline_share::erase(&**state.store.objects(), tenant);
    }
    Ok(rec)
}

/// `POST /api/admin/keys/backup` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// The age X25519 recipient (`age1...`) the backup is encrypted to.
    pub recipient: String,
}

/// `POST /api/admin/keys/backup` `{recipient}`: the whole key store (every tenant's keys, and the
/// root key file with a file root), encrypted with age to `recipient`; key material leaves the
/// server only in that form. Needs `admin_keys` with a credential of every tenant. Audited.
pub async fn backup(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    body: Result<Json<Backup>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = &permit.caller;
    let auth = permit.authorize_every(&state, "a key backup (it holds every tenant's keys)")?;
    let Json(req) = body.map_err(|e| ApiError::json_body("backup", e))?;
    let kr = state.keyring.clone();
    let (sealed, files, tenants) = tokio::task::spawn_blocking(move || {
        let archive = tv_crypto::backup::collect(kr.keys_dir(), kr.root().describe())?;
        let sealed = tv_crypto::backup::seal_to_recipient(&archive, &req.recipient)?;
        Ok::<_, tv_crypto::CryptoError>((sealed, archive.files(), archive.tenants.clone()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        tv_crypto::CryptoError::BadKeyFile { reason, .. } if reason.starts_with("recipient") => {
            ApiError::BadRequest(reason)
        }
        other => key_error(other),
    })?;
    tracing::warn!(files, tenants = tenants.len(), by = %caller.principal.name, "key store backed up (encrypted to a recipient)");
    Ok(crate::api::noted(
        Json(json!({
            "backup": sealed,
            "files": files,
            "tenants": tenants,
            "root": state.keyring.root().describe(),
        }))
        .into_response(),
        &auth,
        files,
        Some(format!(
            "keys: backup of {files} files ({} tenants) encrypted to a recipient",
            tenants.len()
        )),
    ))
}

/// At start: a `keys restore` since the last run left a marker; it becomes an audit record.
pub fn audit_restore(state: &AppState) {
    let marker = state
        .keyring
        .keys_dir()
        .join(tv_crypto::backup::RESTORE_MARKER);
    let Ok(bytes) = std::fs::read(&marker) else {
        return;
    };
    let r: tv_crypto::backup::Restored = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %marker.display(), error = %e, "unreadable key restore marker");
            return;
        }
    };
    let detail = format!(
        "keys: restored {} files from a backup made at unix {}; erased tenants not restored: [{}]",
        r.written.len(),
        r.backup_created_unix,
        r.erased_not_restored.join(", ")
    );
    tracing::warn!(
        files = r.written.len(),
        "the key store was restored from a backup since the last run"
    );
    state.audit.system(
        "admin_keys",
        detail,
        &TenantId::parse("default").expect("valid"),
    );
    if let Err(e) = std::fs::remove_file(&marker) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot remove the key restore marker");
    }
}

/// Rotates every tenant key older than `max_age` now and then once a day.
pub async fn rotate_by_age(state: Arc<AppState>, max_age: std::time::Duration) {
    loop {
        let kr = state.keyring.clone();
        match tokio::task::spawn_blocking(move || kr.rotate_older_than(max_age)).await {
            Ok(Ok(rotated)) => {
                for (t, v) in rotated {
                    tracing::info!(tenant = %t, version = v, max_age_days = max_age.as_secs() / 86400, "tenant key rotated by age");
                    state.audit.system(
                        "admin_keys",
                        format!("tenant-key:{t} rotated to v{v} (by age)"),
                        &t,
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "rotation by age failed; retrying in a day"),
            Err(e) => tracing::error!(error = %e, "rotation by age task failed"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
    }
}
