//! Submitting checkpoints to witnesses (c2sp.org/tlog-witness, "add-checkpoint", client side).
//!
//! Whenever the log signs a new checkpoint, each configured witness gets it with a consistency
//! proof from the size it last cosigned (`old N`, proof lines, blank line, checkpoint). A 409 with
//! `text/x.tlog.size` tells the witness's size; the submission is retried once from there. The
//! returned cosignature lines are checked against the witness's key and added to the checkpoint
//! that `GET /api/log/checkpoint` and `GET /log/checkpoint` hand out; the latest cosigned note is
//! kept in `DIR/log-cosigned.checkpoint`. A refusal (a split view or rollback shows up as 409/422)
//! is logged as an error and counted; the log keeps working.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tv_tlog::cosig::Ed25519CosigVerifier;
use tv_tlog::note::{NoteVerifier, Verifiers};

use crate::AppState;
use crate::config::WitnessConfig;

struct Witness {
    cfg: WitnessConfig,
    client: reqwest::Client,
    /// The size this witness last cosigned (learned from its 409 answers after a restart).
    old: u64,
    last_error: Option<String>,
}

fn client_for(w: &WitnessConfig) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &w.ca_cert {
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading witness CA {}", ca.display()))?
        {
            roots.add(c.context("witness CA certificate")?)?;
        }
    } else if w.url.starts_with("https://") {
        bail!(
            "witness {}: give its CA certificate (URL,VKEY,CA_PEM) so its TLS certificate can be checked",
            w.url
        );
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Checks the state of the witness configuration at start (bad CA files fail the start).
pub fn check(witnesses: &[WitnessConfig]) -> anyhow::Result<()> {
    for w in witnesses {
        client_for(w)?;
        if w.url.starts_with("http://") {
            tracing::warn!(url = %w.url, "witness over plaintext HTTP: checkpoints and cosignatures are public data, but the connection is not authenticated");
        }
    }
    Ok(())
}

impl Witness {
    async fn submit(&mut self, state: &AppState, note: &[u8], size: u64) -> anyhow::Result<String> {
        let log = state.store.log().ok_or_else(|| anyhow!("no log"))?;
        let url = format!("{}/add-checkpoint", self.cfg.url.trim_end_matches('/'));
        for _ in 0..2 {
            let old = self.old;
            let mut body = format!("old {old}\n");
            if old > 0 && old < size {
                let proof = log
                    .with_tree(|t| t.prove_consistency(size, old))
                    .map_err(|e| anyhow!("consistency proof {old}..{size}: {e}"))?;
                for h in proof {
                    body.push_str(&B64.encode(h.0));
                    body.push('\n');
                }
            }
            body.push('\n');
            let mut bytes = body.into_bytes();
            bytes.extend_from_slice(note);
            let resp = self.client.post(&url).body(bytes).send().await?;
            let status = resp.status();
            let is_size = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/x.tlog.size"));
            let text = resp.text().await.unwrap_or_default();
            match status.as_u16() {
                200 => {
                    let line = self.check_cosignature(note, &text)?;
                    self.old = size;
                    return Ok(line);
                }
                409 if is_size => {
                    let theirs: u64 = text
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("409 with a malformed size {text:?}"))?;
                    if theirs > size {
                        bail!(
                            "the witness has cosigned size {theirs}, larger than this log's {size}: the log was rolled back or forked"
                        );
                    }
                    if theirs == old {
                        bail!("the witness keeps answering 409 for size {old}");
                    }
                    self.old = theirs;
                }
                code => bail!("{code}: {}", text.trim()),
            }
        }
        bail!("the witness's size changed while submitting")
    }

    /// The witness's cosignature line, checked against its key.
    fn check_cosignature(&self, note: &[u8], body: &str) -> anyhow::Result<String> {
        let v = Ed25519CosigVerifier::from_vkey(&self.cfg.vkey)?;
        let (name, id) = (v.name().to_owned(), v.key_id());
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("— {name} ")))
            .ok_or_else(|| anyhow!("the answer holds no cosignature by {name}"))?;
        let mut cosigned = note.to_vec();
        cosigned.extend_from_slice(line.as_bytes());
        cosigned.push(b'\n');
        let opened = tv_tlog::note::open(&cosigned, &Verifiers::new(vec![Box::new(v)]))
            .map_err(|e| anyhow!("cosignature does not verify: {e}"))?;
        if !opened.sigs.iter().any(|s| s.name == name && s.key_id == id) {
            bail!("cosignature by {name} does not verify");
        }
        Ok(format!("{line}\n"))
    }
}

/// Submits every new checkpoint to the witnesses, for as long as the server runs.
pub async fn run(state: Arc<AppState>, witnesses: Vec<WitnessConfig>, data_dir: PathBuf) {
    let mut ws: Vec<Witness> = Vec::new();
    for cfg in witnesses {
        match client_for(&cfg) {
            Ok(client) => ws.push(Witness {
                cfg,
                client,
                old: 0,
                last_error: None,
            }),
            Err(e) => tracing::error!(error = %e, "witness not usable"),
        }
    }
    if ws.is_empty() {
        return;
    }
    let mut done: Option<Vec<u8>> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(note) = state.store.log().and_then(|l| l.checkpoint()) else {
            continue;
        };
        if done.as_ref() == Some(&note) {
            continue;
        }
        let Ok(cp) = tv_store::txlog::note_checkpoint(&note) else {
            continue;
        };
        let mut lines = String::new();
        let mut all = true;
        for w in &mut ws {
            match w.submit(&state, &note, cp.size).await {
                Ok(line) => {
                    if w.last_error.take().is_some() {
                        tracing::info!(witness = %w.cfg.url, "witness cosigns again");
                    }
                    lines.push_str(&line);
                }
                Err(e) => {
                    all = false;
                    let msg = e.to_string();
                    if w.last_error.as_deref() != Some(msg.as_str()) {
                        tracing::error!(witness = %w.cfg.url, size = cp.size, error = %msg, "witness refused or did not answer; checkpoints go out without its cosignature");
                    }
                    state.metrics.witness_failures.inc();
                    w.last_error = Some(msg);
                }
            }
        }
        if !lines.is_empty() {
            let mut cosigned = note.clone();
            cosigned.extend_from_slice(lines.as_bytes());
            if let Err(e) = tv_crypto::fsio::atomic_write(
                &data_dir.join("log-cosigned.checkpoint"),
                &cosigned,
                0o644,
            ) {
                tracing::warn!(error = %e, "cannot store the cosigned checkpoint");
            }
            *state.cosigned.lock().expect("cosigned lock poisoned") = Some(cosigned);
        }
        if all {
            done = Some(note);
        } else {
            // Back off a little before retrying a failing witness.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
