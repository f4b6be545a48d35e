//! Finding a person's traces by a known identity value, without the raw value ever being
//! stored: `POST /api/pseudonym` turns a value into the tenant's pseudonym of it (through the
//! normalization redaction uses), and `POST /api/search/user` searches the identity attributes
//! redaction pseudonymizes (`enduser.id`, `user.email`, `user.id`, ...) for it.
//!
//! Guessable values make both an oracle (try every employee's address, see which exist), so:
//! the `lookup_person` action (investigators and admins), at most [`PER_WINDOW`] lookups per
//! principal every [`WINDOW`] (429 with Retry-After beyond), and an audit record for every use
//! with the principal's running count. The value travels in the body (never a URL) and is in no
//! log, audit record or error.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Permit, noted};
use crate::AppState;
use crate::audit::AuditNote;
use crate::error::ApiError;

/// Lookups one principal may make per [`WINDOW`].
pub const PER_WINDOW: usize = 30;
pub const WINDOW: Duration = Duration::from_secs(600);
/// The longest value looked up.
const MAX_VALUE: usize = 1024;

/// Per-principal lookup counts: the times of the lookups in the window, and the total.
#[derive(Default)]
pub struct Lookups {
    by: Mutex<HashMap<String, (VecDeque<Instant>, u64)>>,
}

impl Lookups {
    /// Takes one lookup for `principal`: its running total, or the seconds to wait.
    fn take(&self, principal: &str) -> Result<u64, u64> {
        let now = Instant::now();
        let mut by = self.by.lock().expect("lookups lock");
        if by.len() > 10_000 {
            by.retain(|_, (q, _)| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let (q, total) = by.entry(principal.to_owned()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.len() >= PER_WINDOW {
            let oldest = *q.front().expect("a full window has a first entry");
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)).as_secs() + 1);
        }
        q.push_back(now);
        *total += 1;
        Ok(*total)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PseudonymRequest {
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSearch {
    user: String,
    start: Option<u64>,
    end: Option<u64>,
    limit: Option<usize>,
}

fn body<T: serde::de::DeserializeOwned>(b: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(b)
        .map_err(|e| ApiError::BadRequest(format!("body: expected {expected}: {e}")))
}

fn check_value(v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        return Err(ApiError::BadRequest("the value is empty".into()));
    }
    if v.len() > MAX_VALUE {
        return Err(ApiError::BadRequest(format!(
            "the value is {} bytes; the limit is {MAX_VALUE}",
            v.len()
        )));
    }
    Ok(())
}

/// Counts the lookup against the caller's window; its running total.
fn take(state: &AppState, permit: &Permit) -> Result<u64, ApiError> {
    charge(state, &permit.caller.principal.id())
}

/// Counts one lookup by `principal` (a [`tv_access::Principal::id`]); its running total, or a
/// 429 naming the limit.
pub(crate) fn charge(state: &AppState, principal: &str) -> Result<u64, ApiError> {
    state
        .person_lookups
        .take(principal)
        .map_err(|wait| {
            ApiError::RateLimited(
                format!(
                    "at most {PER_WINDOW} person lookups per {} minutes per principal; retry in {wait} s",
                    WINDOW.as_secs() / 60
                ),
                wait,
            )
        })
}

/// What a lookup of `value` in `tenant` finds, under one snapshot of the rules in force.
struct Lookup {
    /// The pseudonym redaction writes for the value as a whole identity attribute.
    primary: String,
    /// `primary`, then the value's other normalizations, deduplicated.
    all: Vec<String>,
    /// The identity attributes the tenant's rules pseudonymize.
    keys: Vec<String>,
}

fn lookup(state: &AppState, tenant: &tv_model::TenantId, value: &str) -> Result<Lookup, ApiError> {
    let active = state.redaction.active();
    let rules = active.rules.as_ref().ok_or_else(redaction_off)?;
    let key = state
        .redaction
        .pseudonym_key(tenant)
        .map_err(|e| ApiError::Internal(format!("pseudonym key: {e}")))?;
    let primary = tv_redact::pseudonym_of(rules, &key, value);
    let mut all = vec![primary.clone()];
    for p in tv_redact::pseudonyms_of(rules, &key, value) {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    Ok(Lookup {
        primary,
        all,
        keys: rules.identity_keys(tenant.as_str()),
    })
}

fn redaction_off() -> ApiError {
    ApiError::BadRequest(
        "redaction is off on this server (--no-redaction): values are stored as sent and have no pseudonyms".into(),
    )
}

/// `POST /api/pseudonym`: `{"value": "alice@example.com"}` -> the tenant's pseudonym of it.
pub async fn pseudonym(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    b: Bytes,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let req: PseudonymRequest = body(&b, r#"{"value": "..."}"#)?;
    check_value(&req.value)?;
    let count = take(&state, &permit)?;
    let tenant = auth.tenant().clone();
    let found = lookup(&state, &tenant, &req.value)?;
    let resp = Json(json!({
        "tenant": tenant.as_str(),
        "pseudonym": found.primary,
        "variants": found.all,
        "identity_attributes": found.keys,
    }))
    .into_response();
    Ok(noted(
        resp,
        &auth,
        1,
        Some(format!(
            "pseudonym lookup (lookup {count} of this principal)"
        )),
    ))
}

/// `POST /api/search/user`: `{"user": "alice@example.com", "start"?, "end"?, "limit"?}` ->
/// Tempo search results: the traces whose identity attributes hold the value's pseudonym.
pub async fn search_user(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    b: Bytes,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let req: UserSearch = body(
        &b,
        r#"{"user": "...", "start": unix seconds, "end": unix seconds, "limit": n}"#,
    )?;
    check_value(&req.user)?;
    let count = take(&state, &permit)?;
    let tenant = auth.tenant().clone();
    let Lookup { all, keys, .. } = lookup(&state, &tenant, &req.user)?;
    let keys = keys
        .into_iter()
        // Keys TraceQL takes as written (the built-in ones all are).
        .filter(|k| {
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .collect::<Vec<_>>();
    if keys.is_empty() {
        return Err(ApiError::BadRequest(
            "this tenant's redaction rules pseudonymize no identity attribute (no `hash` key rule)"
                .into(),
        ));
    }
    // `.key` matches the key on the span or its resource; the literals are pseudonyms, which
    // only a caller who may read pseudonyms (this action's roles) can match.
    let mut terms = Vec::new();
    for k in &keys {
        for p in &all {
            terms.push(format!(".{k} = \"{p}\""));
        }
    }
    let q = format!("{{ {} }}", terms.join(" || "));
    let mut params = HashMap::new();
    if let Some(s) = req.start {
        params.insert("start".to_owned(), s.to_string());
    }
    if let Some(e) = req.end {
        params.insert("end".to_owned(), e.to_string());
    }
    params.insert("limit".to_owned(), req.limit.unwrap_or(20).to_string());
    let mut resp = super::traceql::search(&state, &auth, &q, &params).await?;
    let found = resp
        .extensions()
        .get::<AuditNote>()
        .and_then(|n| n.results)
        .unwrap_or(0);
    resp.extensions_mut().insert(AuditNote {
        resource: Some(format!(
            "person search in [{}] (lookup {count} of this principal)",
            keys.join(",")
        )),
        results: Some(found),
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_limited_per_principal_and_counted() {
        let l = Lookups::default();
        for i in 1..=PER_WINDOW as u64 {
            assert_eq!(l.take("token:a"), Ok(i));
        }
        let wait = l.take("token:a").unwrap_err();
        assert!(wait > 0 && wait <= WINDOW.as_secs() + 1, "{wait}");
        assert_eq!(
            l.take("token:b"),
            Ok(1),
            "another principal has its own window"
        );
    }
}
