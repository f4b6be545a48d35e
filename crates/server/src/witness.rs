//! A C2SP tlog-witness (c2sp.org/tlog-witness, "add-checkpoint"): cosigns checkpoints of the logs it
//! is configured for, only when they are consistent with the last checkpoint it cosigned for that
//! origin. Trust without a blockchain: a log that shows two different histories (a split view) or
//! rolls back cannot get both cosigned.
//!
//! State (`DIR/state.json`: latest size and root per origin) is checked and persisted under one
//! lock, atomically, before the cosignature is returned. The witness signs with its own Ed25519
//! cosignature key (type 0x04, tlog-cosignature), kept in `DIR/witness.key` (0600).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tv_crypto::{fsio, random_bytes};
use tv_tlog::Hash;
use tv_tlog::cosig::Ed25519CosigSigner;
use tv_tlog::merkle::verify_consistency;
use tv_tlog::note::NoteSigner;
use tv_tlog::policy::{LogKeys, Policy, PolicyError, verify_checkpoint};

/// Most consistency proof lines a request may carry (tlog-witness, "add-checkpoint").
const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted (two signatures with ML-DSA-44 are about 3.4 KiB).
const MAX_BODY: usize = 64 * 1024;

#[derive(Serialize, Deserialize, Default, Clone)]
struct Seen {
    size: u64,
    root: String,
}

struct WitnessState {
    dir: PathBuf,
    logs: Vec<LogKeys>,
    signer: Ed25519CosigSigner,
    latest: Mutex<BTreeMap<String, Seen>>,
}

/// A configured witness, bound and ready to serve.
pub struct Witness {
    state: Arc<WitnessState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    pub addr: SocketAddr,
}

fn load_signer(dir: &Path, name: &str) -> anyhow::Result<Ed25519CosigSigner> {
    let path = dir.join("witness.key");
    if !path.exists() {
        let seed = random_bytes::<32>();
        let text = zeroize::Zeroizing::new(format!("{name}\n{}\n", hex::encode(seed)));
        fsio::create_private_file(&path, text.as_bytes())?;
    }
    if fsio::mode_of(&path)? & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by group or others; chmod 600 it",
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path)?);
    let mut lines = text.lines();
    let stored_name = lines.next().context("witness key file: missing name")?;
    let seed: [u8; 32] = hex::decode(lines.next().context("witness key file: missing seed")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("witness key file: seed must be 32 bytes"))?;
    Ok(Ed25519CosigSigner::from_seed(stored_name, seed)?)
}

impl Witness {
    /// Prepares the witness in `dir` for the logs whose verifier keys are `log_vkeys` (two per
    /// log: Ed25519 and ML-DSA-44; both signatures are required on every checkpoint).
    pub async fn bootstrap(
        dir: &Path,
        listen: SocketAddr,
        name: &str,
        log_vkeys: &[String],
        plaintext: bool,
    ) -> anyhow::Result<Self> {
        fsio::create_private_dir(dir)?;
        let signer = load_signer(dir, name)?;
        std::fs::write(dir.join("witness.vkey"), format!("{}\n", signer.vkey()))?;
        // Group the vkeys by key name: each log contributes one Ed25519 and one ML-DSA-44 key.
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in log_vkeys {
            let name = k.split('+').next().unwrap_or_default().to_owned();
            by_name.entry(name).or_default().push(k.clone());
        }
        let logs = by_name
            .values()
            .map(|ks| LogKeys::from_vkeys(ks))
            .collect::<Result<Vec<_>, _>>()
            .context("--log-vkey: each log needs its Ed25519 and its ML-DSA-44 key")?;
        if logs.is_empty() {
            anyhow::bail!("no logs configured: pass --log-vkey for each log key");
        }
        let state_path = dir.join("state.json");
        let latest = if state_path.exists() {
            serde_json::from_slice(&std::fs::read(&state_path)?)
                .with_context(|| format!("parsing {}", state_path.display()))?
        } else {
            BTreeMap::new()
        };
        let tls = if plaintext {
            tracing::warn!("INSECURE: the witness is serving plaintext HTTP");
            None
        } else {
            let keys = dir.join("keys");
            fsio::create_private_dir(&keys)?;
            let files = crate::tls::ensure_generated(dir, &keys)
                .context("creating the witness's TLS certificate")?;
            Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                &files, None,
            )?))
        };
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the witness listener on {listen}"))?;
        let addr = listener.local_addr()?;
        fsio::atomic_write(
            &dir.join("listen.json"),
            serde_json::to_string(&serde_json::json!({"addr": addr}))?.as_bytes(),
            0o644,
        )?;
        tracing::info!(vkey = %signer.vkey(), %addr, logs = logs.len(), "witness ready");
        Ok(Self {
            state: Arc::new(WitnessState {
                dir: dir.to_owned(),
                logs,
                signer,
                latest: Mutex::new(latest),
            }),
            listener,
            tls,
            addr,
        })
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let app = axum::Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .with_state(self.state.clone());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(crate::net::serve(
            "witness",
            self.listener,
            self.tls.map(crate::net::Tls::Fixed),
            app,
            rx,
            crate::net::Shared::new(
                crate::conns::ConnSettings {
                    max: 1024,
                    ..Default::default()
                },
                64 * 1024 * 1024,
                Arc::new(crate::metrics::Metrics::new()),
            ),
        ));
        shutdown.await;
        let _ = tx.send(true);
        let _ = task.await;
        Ok(())
    }
}

fn reply(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

/// Parses `old N`, proof lines, a blank line, then the checkpoint note.
fn parse_request(body: &[u8]) -> Result<(u64, Vec<Hash>, &[u8]), String> {
    let text = std::str::from_utf8(body).map_err(|_| "request body is not UTF-8".to_string())?;
    let (head, note) = text.split_once("\n\n").ok_or(
        "request body must be an old size line, proof lines, a blank line, then a checkpoint",
    )?;
    let mut lines = head.split('\n');
    let old_line = lines.next().unwrap_or_default();
    let old_s = old_line
        .strip_prefix("old ")
        .ok_or("first line must be `old <size>`")?;
    if old_s.is_empty()
        || !old_s.bytes().all(|c| c.is_ascii_digit())
        || (old_s.len() > 1 && old_s.starts_with('0'))
    {
        return Err("old size must be decimal without leading zeros".into());
    }
    let old: u64 = old_s
        .parse()
        .map_err(|_| "old size out of range".to_string())?;
    let mut proof = Vec::new();
    for l in lines {
        if proof.len() == MAX_PROOF_LINES {
            return Err(format!(
                "more than {MAX_PROOF_LINES} consistency proof lines"
            ));
        }
        let raw = B64
            .decode(l)
            .map_err(|_| "proof line is not base64".to_string())?;
        let h: [u8; 32] = raw
            .try_into()
            .map_err(|_| "proof hashes must be 32 bytes".to_string())?;
        proof.push(Hash(h));
    }
    Ok((old, proof, note.as_bytes()))
}

async fn add_checkpoint(State(st): State<Arc<WitnessState>>, body: Bytes) -> Response {
    if body.len() > MAX_BODY {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request over {MAX_BODY} bytes"),
        );
    }
    let (old, proof, note) = match parse_request(&body) {
        Ok(x) => x,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e),
    };
    // Which log? The origin line, before trusting anything else.
    let Some(origin) = std::str::from_utf8(note)
        .ok()
        .and_then(|n| n.split('\n').next())
        .map(str::to_owned)
    else {
        return reply(StatusCode::BAD_REQUEST, "checkpoint is not UTF-8");
    };
    use tv_tlog::note::NoteVerifier;
    let Some(keys) = st.logs.iter().find(|k| k.ed25519.name() == origin) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("unknown log origin {origin:?}"),
        );
    };
    let verified = match verify_checkpoint(note, keys, Policy::Both) {
        Ok(v) => v,
        Err(PolicyError::Body(e)) => return reply(StatusCode::BAD_REQUEST, e),
        Err(e) => return reply(StatusCode::FORBIDDEN, format!("checkpoint signature: {e}")),
    };
    let cp = verified.checkpoint().clone();
    if old > cp.size {
        return reply(
            StatusCode::BAD_REQUEST,
            format!(
                "old size {old} is larger than the checkpoint size {}",
                cp.size
            ),
        );
    }
    if old == 0 && !proof.is_empty() {
        return reply(
            StatusCode::BAD_REQUEST,
            "the proof must be empty when the old size is 0",
        );
    }
    // Check against the latest cosigned checkpoint and persist, under one lock.
    let mut latest = st.latest.lock().expect("witness lock poisoned");
    let seen = latest.get(&cp.origin).cloned().unwrap_or_default();
    if old != seen.size {
        return (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{}\n", seen.size),
        )
            .into_response();
    }
    let root_b64 = B64.encode(cp.root.0);
    if old == cp.size {
        if old > 0 && seen.root != root_b64 {
            tracing::warn!(origin = %cp.origin, size = old, "split view: two different roots for one size");
            return reply(
                StatusCode::CONFLICT,
                format!("split view: a different root was cosigned for size {old}"),
            );
        }
    } else if old > 0 {
        let Some(old_root) = B64
            .decode(&seen.root)
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
        else {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "witness state is damaged",
            );
        };
        if let Err(e) = verify_consistency(&proof, cp.size, cp.root, old, Hash(old_root)) {
            tracing::warn!(origin = %cp.origin, old, new = cp.size, "inconsistent checkpoint refused");
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "consistency proof from {old} to {} does not verify: {e}",
                    cp.size
                ),
            );
        }
    }
    let mut next = latest.clone();
    next.insert(
        cp.origin.clone(),
        Seen {
            size: cp.size,
            root: root_b64,
        },
    );
    let bytes = match serde_json::to_vec_pretty(&next) {
        Ok(b) => b,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Err(e) = fsio::atomic_write(&st.dir.join("state.json"), &bytes, 0o600) {
        tracing::error!(error = %e, "cannot persist witness state");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot persist witness state",
        );
    }
    *latest = next;
    drop(latest);
    let text = cp.to_text();
    let sig = match st.signer.sign(text.as_bytes()) {
        Ok(s) => s,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut raw = st.signer.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(&sig);
    tracing::info!(origin = %cp.origin, size = cp.size, "cosigned");
    (
        StatusCode::OK,
        format!("— {} {}\n", st.signer.name(), B64.encode(raw)),
    )
        .into_response()
}
