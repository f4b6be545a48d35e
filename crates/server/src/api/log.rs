//! The transparency log over HTTP (issue 3).
//!
//! - `GET /log/checkpoint`, `GET /log/tile/<L>/<N>[.p/<W>]`, `GET /log/tile/entries/<N>[.p/<W>]`:
//!   the C2SP tlog-tiles read API, so any tlog-tiles client can follow the log. Needs a token
//!   unless the operator made the log public (`--log-public`).
//! - `GET /api/log/checkpoint`: the latest checkpoint, with witness cosignatures when configured.
//! - `GET /api/log/proof/inclusion?index=I[&size=N]`, `GET /api/log/proof/consistency?old=M&new=N`.
//! - `GET /api/traces/{id}/receipt[?withhold=FIELD,...]`: span receipts (see `tv_tlog::receipt`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, StatusCode, header};
use serde_json::json;
use tv_model::TraceId;
use tv_tlog::receipt::{self, Receipt, ReceiptField};

use super::{Permit, RouteAction};
use crate::AppState;
use crate::auth::authenticate_api;
use crate::error::ApiError;

fn text(body: Vec<u8>, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

fn log(state: &AppState) -> Result<&Arc<tv_store::TxLog>, ApiError> {
    state
        .store
        .log()
        .ok_or_else(|| ApiError::Unavailable("this server runs without a transparency log".into()))
}

/// The checkpoint to hand out: cosigned by the witnesses when they have answered for it.
pub fn current_checkpoint(state: &AppState) -> Result<Vec<u8>, ApiError> {
    let plain = log(state)?
        .checkpoint()
        .ok_or_else(|| ApiError::Unavailable("no checkpoint has been signed yet".into()))?;
    let cosigned = state
        .cosigned
        .lock()
        .expect("cosigned lock poisoned")
        .clone();
    Ok(match cosigned {
        Some(c) if c.starts_with(note_body(&plain)) => c,
        _ => plain,
    })
}

/// The text of a note up to and including the blank line.
fn note_body(note: &[u8]) -> &[u8] {
    match note.windows(2).position(|w| w == b"\n\n") {
        Some(i) => &note[..i + 2],
        None => note,
    }
}

/// `GET /log/{*path}`: the tlog-tiles resources.
pub async fn tiles(
    State(state): State<Arc<AppState>>,
    Extension(RouteAction(action)): Extension<RouteAction>,
    Path(path): Path<String>,
    peer: Option<Extension<crate::mtls::PeerInfo>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.log_public {
        let resource = format!("/log/{}", path.chars().take(256).collect::<String>());
        let caller = authenticate_api(
            &state,
            &http::Method::GET,
            &http::Uri::from_static("/log"),
            &headers,
            peer.as_deref(),
        )
        .map_err(|r| {
            r.audit(
                &state.audit,
                peer.as_deref(),
                "api",
                action.name(),
                resource.clone(),
            );
            r.error
        })?;
        state
            .admit(&caller)
            .and_then(|()| state.authorize(&caller, action).map(drop))
            .inspect_err(|e| {
                state.audit.denied(
                    &caller.principal,
                    caller.requested_tenant(),
                    peer.as_deref(),
                    "api",
                    action.name(),
                    resource.clone(),
                    e.status().as_u16(),
                    e.to_string(),
                )
            })?;
    }
    if path == "checkpoint" {
        return Ok(text(current_checkpoint(&state)?, "no-cache, max-age=1"));
    }
    if tv_tlog::tiles::parse_path(&path).is_none() {
        return Err(ApiError::NotFound(format!(
            "{path} is not a tlog-tiles resource (checkpoint, tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>])"
        )));
    }
    let st = state.clone();
    let p = path.clone();
    let data = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, ApiError> {
        log(&st)?.read_tile(&p).map_err(ApiError::from_store)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    match data {
        // Tiles never change once written (a partial tile's width is in its path).
        Some(d) => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            d,
        )
            .into_response()),
        None => Err(ApiError::NotFound(format!("{path} does not exist (yet)"))),
    }
}

pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    permit: Permit,
) -> Result<Response, ApiError> {
    permit.authorize(&state)?;
    Ok(text(current_checkpoint(&state)?, "no-cache"))
}

fn num(params: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(key)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a non-negative integer, got {v:?}"))
            })
        })
        .transpose()
}

fn b64s(hs: &[tv_tlog::Hash]) -> Vec<String> {
    hs.iter().map(|h| B64.encode(h.0)).collect()
}

/// The size of the latest signed checkpoint.
fn signed_size(state: &AppState) -> Result<u64, ApiError> {
    Ok(log(state)?.durable_size())
}

pub async fn inclusion(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    permit.authorize(&state)?;
    let index =
        num(&params, "index")?.ok_or_else(|| ApiError::BadRequest("index is required".into()))?;
    let signed = signed_size(&state)?;
    let size = num(&params, "size")?.unwrap_or(signed);
    if size > signed || index >= size {
        return Err(ApiError::BadRequest(format!(
            "need index < size <= {signed} (the latest checkpoint's size); got index {index}, size {size}"
        )));
    }
    let min = log(&state)?.minimum_index();
    if index < min {
        return Err(ApiError::NotFound(format!(
            "entry {index} was pruned: the log keeps entries from {min} on (older than anything still stored)"
        )));
    }
    let st = state.clone();
    let (hashes, leaf) = tokio::task::spawn_blocking(move || {
        log(&st)?.with_tree(|t| {
            Ok::<_, ApiError>((
                t.prove_inclusion(size, index)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                t.entry(index)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            ))
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({
        "index": index,
        "size": size,
        "leaf": B64.encode(&leaf),
        "hashes": b64s(&hashes),
        "checkpoint": String::from_utf8_lossy(&current_checkpoint(&state)?),
    }))
    .into_response())
}

pub async fn consistency(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    permit.authorize(&state)?;
    let signed = signed_size(&state)?;
    let old = num(&params, "old")?.ok_or_else(|| ApiError::BadRequest("old is required".into()))?;
    let new = num(&params, "new")?.unwrap_or(signed);
    if old == 0 || old > new || new > signed {
        return Err(ApiError::BadRequest(format!(
            "need 0 < old <= new <= {signed} (the latest checkpoint's size); got old {old}, new {new}"
        )));
    }
    let st = state.clone();
    let hashes = tokio::task::spawn_blocking(move || {
        log(&st)?.with_tree(|t| {
            t.prove_consistency(new, old)
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({"old": old, "new": new, "hashes": b64s(&hashes)})).into_response())
}

/// Span receipts. Fields of classes the caller may not read or `reveal` are withheld; the caller
/// can withhold more with `?withhold=` (e.g. to share a receipt without the user id).
pub async fn receipts(
    State(state): State<Arc<AppState>>,
    permit: Permit,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let auth = permit.authorize(&state)?;
    let tid = TraceId::from_hex(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // Fields of classes this caller may not read are withheld, as in every other response.
    let classes = crate::mask::Masker::new(&state, &auth).withholding();
    let mut withhold: Vec<String> = Vec::new();
    if let Some(w) = params.get("withhold") {
        withhold.extend(w.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    if withhold.iter().any(|w| w == "span") {
        return Err(ApiError::BadRequest(
            "the span field (ids, kind, times) cannot be withheld: a receipt names the span it proves"
                .into(),
        ));
    }
    let tenant = auth.tenant().clone();
    let st = state.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<Receipt>, ApiError> {
        let w = withhold;
        let proofs = st
            .store
            .span_proofs(&tenant, tid, &|name, value| {
                w.iter().any(|x| x == name) || classes.withholds(name, value)
            })
            .map_err(ApiError::from_store)?;
        let log = log(&st)?;
        if let Some(max) = proofs
            .iter()
            .filter(|p| p.node.is_none())
            .map(|p| p.leaf_index)
            .max()
        {
            // A batch acknowledged a moment ago may not be in a checkpoint yet.
            log.flush_through(max).map_err(ApiError::from_store)?;
        }
        let note = current_checkpoint(&st)?;
        let size = tv_store::txlog::note_checkpoint(&note)
            .map_err(ApiError::Internal)?
            .size;
        // Spans other nodes of a cluster committed are proved in their logs, against their
        // latest checkpoints (signed with the cluster's keys under the node's origin).
        let mut peers: HashMap<String, tv_store::txlog::PeerLog> = HashMap::new();
        let mut out = Vec::with_capacity(proofs.len());
        for p in proofs {
            let (incl, leaf, note) = match &p.node {
                None => {
                    let (incl, leaf) = log.with_tree(|t| {
                        Ok::<_, ApiError>((
                            t.prove_inclusion(size, p.leaf_index)
                                .map_err(|e| ApiError::Internal(e.to_string()))?,
                            t.entry(p.leaf_index)
                                .map_err(|e| ApiError::Internal(e.to_string()))?,
                        ))
                    })?;
                    (incl, leaf, note.clone())
                }
                Some(node) => {
                    if !peers.contains_key(node) {
                        let objects = st
                            .store
                            .peer_nodes()
                            .into_iter()
                            .find(|(n, _)| n == node)
                            .map(|(_, o)| o)
                            .ok_or_else(|| {
                                ApiError::Unavailable(format!(
                                    "node {node} is no longer listed in the cluster; try again"
                                ))
                            })?;
                        let peer = tv_store::txlog::PeerLog::open(objects, "log/")
                            .map_err(ApiError::from_store)?;
                        peers.insert(node.clone(), peer);
                    }
                    let peer = &peers[node];
                    if p.leaf_index >= peer.size() {
                        return Err(ApiError::Unavailable(format!(
                            "node {node} has not signed a checkpoint over this span's record yet (entry {} of {}); try again in a second",
                            p.leaf_index,
                            peer.size()
                        )));
                    }
                    let (leaf, incl) = peer.prove(p.leaf_index).map_err(ApiError::from_store)?;
                    (incl, leaf, peer.note().to_vec())
                }
            };
            out.push(Receipt {
                format: receipt::FORMAT.to_owned(),
                trace_id: hex::encode(&p.trace_id),
                span_id: hex::encode(&p.span_id),
                leaf: B64.encode(&leaf),
                span_index: p.span_index,
                span_count: p.span_count,
                span_path: b64s(&p.path),
                fields: p.fields.iter().map(ReceiptField::from_opening).collect(),
                proof: receipt::format_proof(p.leaf_index, &incl, &note),
            });
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if out.is_empty() {
        return Err(ApiError::NotFound(format!(
            "trace {} not found",
            tid.to_hex()
        )));
    }
    let n = out.len();
    Ok(crate::api::noted(
        (StatusCode::OK, Json(json!({ "receipts": out }))).into_response(),
        &auth,
        n,
        None,
    ))
}
