//! The root of the key hierarchy in an external KMS: the transit secrets engine of OpenBao or
//! HashiCorp Vault (issue 6).
//!
//! Every tenant has its own transit key (`<prefix>-tenant-<tenant>`), so erasing a tenant can
//! delete exactly its key in the KMS; what is not a tenant's (the log's signing seeds, the token
//! HMAC key, audit keys) is wrapped under `<prefix>-system`. Transit keys are created by the first
//! `encrypt` (upsert) and never leave the KMS: tracevault sends a 32-byte key to wrap and stores the
//! `vault:v<N>:...` ciphertext it gets back. The wrapping context is bound by prefixing the
//! plaintext with SHA-256(context) and checking it after `decrypt` (transit's own associated data
//! is not available on every server version).
//!
//! The HTTP API is small (`encrypt`, `decrypt`, `rewrap`, AppRole `login`); it is spoken with the
//! server's own reqwest/rustls stack on a dedicated thread, so the synchronous
//! [`RootKeySource`] calls work from any thread, with a per-call timeout. Credentials come from a
//! file or the environment only, and never appear in logs or errors.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use tv_crypto::{CryptoError, RootKeySource, SecretKey};
use zeroize::Zeroizing;

/// Environment variables credentials may come from.
pub const TOKEN_ENV: &str = "TRACEVAULT_TRANSIT_TOKEN";
pub const SECRET_ID_ENV: &str = "TRACEVAULT_TRANSIT_SECRET_ID";

/// `[keys.transit]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransitConfig {
    /// `https://kms.example:8200` (plain http only to loopback, with a warning).
    pub address: String,
    /// Where the transit engine is mounted.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Transit key names are `<prefix>-tenant-<tenant>` and `<prefix>-system`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// CA bundle for the KMS's TLS certificate.
    pub ca_file: Option<PathBuf>,
    /// A file holding a token (or set TRACEVAULT_TRANSIT_TOKEN).
    pub token_file: Option<PathBuf>,
    /// AppRole instead of a token: the role id (not secret) and a file with the secret id (or
    /// TRACEVAULT_TRANSIT_SECRET_ID).
    pub approle_role_id: Option<String>,
    pub approle_secret_id_file: Option<PathBuf>,
    /// Where AppRole is mounted.
    #[serde(default = "default_approle_mount")]
    pub approle_mount: String,
    /// Seconds one KMS call may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// How often the KMS is asked to confirm the cached tenant keys (and whether it answers).
    #[serde(default = "default_refresh")]
    pub refresh_secs: f64,
    /// How long a cached tenant key is used without the KMS confirming it: the outage ingest and
    /// queries ride through, and the delay before a key disabled in the KMS stops working.
    #[serde(default = "default_max_stale")]
    pub max_stale_secs: f64,
}

fn default_mount() -> String {
    "transit".into()
}
fn default_prefix() -> String {
    "tracevault".into()
}
fn default_approle_mount() -> String {
    "approle".into()
}
fn default_timeout() -> f64 {
    5.0
}
fn default_refresh() -> f64 {
    60.0
}
fn default_max_stale() -> f64 {
    3600.0
}

impl TransitConfig {
    /// Checks what can be checked before talking to the KMS.
    pub fn check(&self) -> anyhow::Result<()> {
        let url = url::Url::parse(&self.address)
            .with_context(|| format!("keys.transit.address {:?}", self.address))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => bail!(
                "keys.transit.address must be https:// (http:// only to a loopback address), not {:?}",
                self.address
            ),
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        };
        if !name_ok(&self.key_prefix) {
            bail!("keys.transit.key_prefix must be 1-64 letters, digits, '-' or '_'");
        }
        if !self.mount.split('/').all(name_ok) {
            bail!("keys.transit.mount must be a path of letters, digits, '-' or '_'");
        }
        if !(0.1..=60.0).contains(&self.timeout_secs) {
            bail!("keys.transit.timeout_secs must be between 0.1 and 60");
        }
        if !(0.5..=86_400.0).contains(&self.refresh_secs) {
            bail!("keys.transit.refresh_secs must be between 0.5 and 86400");
        }
        if !(self.refresh_secs..=7.0 * 86_400.0).contains(&self.max_stale_secs) {
            bail!("keys.transit.max_stale_secs must be at least refresh_secs and at most 7 days");
        }
        match (&self.token_file, &self.approle_role_id) {
            (Some(_), Some(_)) => {
                bail!("keys.transit: give token_file or approle_role_id, not both")
            }
            (None, Some(_))
                if self.approle_secret_id_file.is_none()
                    && std::env::var_os(SECRET_ID_ENV).is_none() =>
            {
                bail!(
                    "keys.transit: AppRole needs approle_secret_id_file or {SECRET_ID_ENV} in the environment"
                )
            }
            (None, None) if std::env::var_os(TOKEN_ENV).is_none() => bail!(
                "keys.transit: no credentials: set token_file, approle_role_id, or {TOKEN_ENV} in the environment"
            ),
            _ => {}
        }
        Ok(())
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Reads a secret from a file (must not be readable by group or others) or the environment.
fn read_secret(file: Option<&Path>, env: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = file {
        let mode =
            tv_crypto::fsio::mode_of(p).with_context(|| format!("reading {}", p.display()))?;
        if mode & 0o077 != 0 {
            bail!(
                "credential file {} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                p.display(),
                p.display()
            );
        }
        let s = Zeroizing::new(
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        );
        let t = Zeroizing::new(s.trim().to_string());
        if t.is_empty() {
            bail!("credential file {} is empty", p.display());
        }
        return Ok(t);
    }
    match std::env::var(env) {
        Ok(v) if !v.trim().is_empty() => Ok(Zeroizing::new(v.trim().to_string())),
        _ => bail!("{env} is not set"),
    }
}

/// One KMS call for the worker thread.
struct Call {
    path: String,
    body: serde_json::Value,
    delete: bool,
    reply: mpsc::SyncSender<Result<serde_json::Value, String>>,
}

/// The transit engine as the root key source.
pub struct TransitRootKey {
    cfg: TransitConfig,
    calls: mpsc::SyncSender<Call>,
}

impl std::fmt::Debug for TransitRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransitRootKey({} {})", self.cfg.address, self.cfg.mount)
    }
}

#[derive(Deserialize)]
struct Wrapped<T> {
    data: T,
}

#[derive(Deserialize)]
struct Ciphertext {
    ciphertext: String,
}

#[derive(Deserialize)]
struct Plaintext {
    plaintext: String,
}

#[derive(Deserialize)]
struct Auth {
    auth: AuthData,
}

#[derive(Deserialize)]
struct AuthData {
    client_token: String,
}

impl TransitRootKey {
    /// Starts the client thread and checks that the KMS answers with these credentials (one
    /// encrypt and decrypt under the system key).
    pub fn connect(cfg: TransitConfig) -> anyhow::Result<Self> {
        cfg.check()?;
        if cfg.address.starts_with("http://") {
            tracing::warn!(address = %cfg.address, "the KMS is reached over plaintext HTTP on loopback: keys to wrap cross it in clear");
        }
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs_f64(cfg.timeout_secs));
        if cfg.address.starts_with("https://") {
            let mut roots = rustls::RootCertStore::empty();
            match &cfg.ca_file {
                Some(ca) => {
                    use rustls_pki_types::pem::PemObject;
                    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)
                        .with_context(|| format!("reading keys.transit.ca_file {}", ca.display()))?
                    {
                        roots
                            .add(c.with_context(|| format!("parsing {}", ca.display()))?)
                            .with_context(|| format!("keys.transit.ca_file {}", ca.display()))?;
                    }
                }
                None => bail!("keys.transit.ca_file is needed for https (the KMS's CA bundle)"),
            }
            let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .context("TLS for the KMS")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            b = b.use_preconfigured_tls(tls);
        }
        let http = b.build().context("building the KMS client")?;
        let token = match (&cfg.token_file, &cfg.approle_role_id) {
            (_, Some(_)) => None,
            (file, None) => Some(read_secret(file.as_deref(), TOKEN_ENV)?),
        };
        let secret_id = match &cfg.approle_role_id {
            Some(_) => Some(read_secret(
                cfg.approle_secret_id_file.as_deref(),
                SECRET_ID_ENV,
            )?),
            None => None,
        };
        let (tx, rx) = mpsc::sync_channel::<Call>(64);
        let worker = Worker {
            http,
            base: format!("{}/v1", cfg.address.trim_end_matches('/')),
            token,
            approle: cfg
                .approle_role_id
                .clone()
                .zip(secret_id)
                .map(|(r, s)| (cfg.approle_mount.clone(), r, s)),
            session: None,
        };
        std::thread::Builder::new()
            .name("tv-kms".into())
            .spawn(move || worker.run(rx))
            .context("starting the KMS client thread")?;
        let me = Self { cfg, calls: tx };
        // Fail at start, with the reason, rather than at the first write.
        me.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(me)
    }

    /// The transit key a wrapping context belongs to.
    pub fn key_for(&self, context: &[u8]) -> String {
        match tenant_of(context) {
            Some(t) => format!("{}-tenant-{t}", self.cfg.key_prefix),
            None => format!("{}-system", self.cfg.key_prefix),
        }
    }

    fn call(
        &self,
        path: String,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CryptoError> {
        self.call_as(path, body, false)
    }

    fn call_as(
        &self,
        path: String,
        body: serde_json::Value,
        delete: bool,
    ) -> Result<serde_json::Value, CryptoError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.calls
            .send(Call {
                path,
                body,
                delete,
                reply,
            })
            .map_err(|_| CryptoError::Kms("the KMS client thread stopped".into()))?;
        let wait = Duration::from_secs_f64(self.cfg.timeout_secs * 2.0 + 1.0);
        match rx.recv_timeout(wait) {
            Ok(r) => r.map_err(CryptoError::Kms),
            Err(_) => Err(CryptoError::Kms(format!(
                "no answer from {} within {:.1} s",
                self.cfg.address,
                wait.as_secs_f64()
            ))),
        }
    }
}

/// The tenant of a tenant key's wrapping context (`tracevault/v1/tenant-kek|<tenant>|<v>`).
pub fn tenant_of(context: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(context).ok()?;
    let rest = s.strip_prefix("tracevault/v1/tenant-kek|")?;
    let (t, _) = rest.split_once('|')?;
    Some(t)
}

/// A stored wrapped key as the `vault:v<N>:...` ciphertext transit gave.
fn transit_ciphertext(wrapped: &[u8]) -> Result<&str, CryptoError> {
    std::str::from_utf8(wrapped)
        .ok()
        .filter(|s| s.starts_with("vault:v"))
        .ok_or_else(|| CryptoError::Decrypt("wrapped key (not a transit ciphertext)".into()))
}

/// The ciphertext of an `encrypt` or `rewrap` answer.
fn ciphertext_of(v: serde_json::Value, what: &str) -> Result<Vec<u8>, CryptoError> {
    let c: Wrapped<Ciphertext> = serde_json::from_value(v)
        .map_err(|e| CryptoError::Kms(format!("unexpected {what} answer: {e}")))?;
    Ok(c.data.ciphertext.into_bytes())
}

fn context_digest(context: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, context);
    d.as_ref().try_into().expect("32-byte digest")
}

impl RootKeySource for TransitRootKey {
    fn describe(&self) -> String {
        format!(
            "transit {} (mount {}, keys {}-*)",
            self.cfg.address, self.cfg.mount, self.cfg.key_prefix
        )
    }

    fn wrap(&self, context: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(64));
        plain.extend_from_slice(&context_digest(context));
        plain.extend_from_slice(key.expose());
        let b64 = Zeroizing::new(B64.encode(&*plain));
        let v = self.call(
            format!("{}/encrypt/{}", self.cfg.mount, self.key_for(context)),
            serde_json::json!({ "plaintext": b64.as_str() }),
        )?;
        ciphertext_of(v, "encrypt")
    }

    fn rewrap(&self, context: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ct = transit_ciphertext(wrapped)?;
        let v = self.call(
            format!("{}/rewrap/{}", self.cfg.mount, self.key_for(context)),
            serde_json::json!({ "ciphertext": ct }),
        )?;
        ciphertext_of(v, "rewrap")
    }

    /// Deletes the tenant's transit key: allows deletion in its config, then deletes it (every
    /// version). A key that does not exist (already deleted) is not an error.
    fn destroy_tenant(&self, tenant: &str) -> Result<Option<String>, CryptoError> {
        let name = format!("{}-tenant-{tenant}", self.cfg.key_prefix);
        let absent = |e: &CryptoError| matches!(e, CryptoError::Kms(m) if m.contains("404"));
        match self.call(
            format!("{}/keys/{name}/config", self.cfg.mount),
            serde_json::json!({ "deletion_allowed": true }),
        ) {
            Ok(_) => {}
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        match self.call_as(
            format!("{}/keys/{name}", self.cfg.mount),
            serde_json::json!({}),
            true,
        ) {
            Ok(_) => Ok(Some(name)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn check(&self) -> Result<(), CryptoError> {
        let probe = SecretKey::random();
        let w = self.wrap(b"tracevault/v1/kms-probe", &probe)?;
        let back = self.unwrap(b"tracevault/v1/kms-probe", &w)?;
        if back.expose() != probe.expose() {
            return Err(CryptoError::Kms(
                "the KMS returned another key than it wrapped".into(),
            ));
        }
        Ok(())
    }

    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        let ct = transit_ciphertext(wrapped)?;
        let v = self.call(
            format!("{}/decrypt/{}", self.cfg.mount, self.key_for(context)),
            serde_json::json!({ "ciphertext": ct }),
        )?;
        let p: Wrapped<Plaintext> = serde_json::from_value(v)
            .map_err(|e| CryptoError::Kms(format!("unexpected decrypt answer: {e}")))?;
        let raw = Zeroizing::new(
            B64.decode(p.data.plaintext.as_bytes())
                .map_err(|_| CryptoError::Decrypt("wrapped key (KMS answer)".into()))?,
        );
        if raw.len() != 64 {
            return Err(CryptoError::Decrypt("wrapped key (length)".into()));
        }
        let want = context_digest(context);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&raw[..32], &want[..])) {
            return Err(CryptoError::Decrypt(
                "wrapped key (bound to another context)".into(),
            ));
        }
        let arr: [u8; 32] = raw[32..].try_into().expect("32 bytes");
        Ok(SecretKey::from_bytes(arr))
    }
}

struct Worker {
    http: reqwest::Client,
    base: String,
    token: Option<Zeroizing<String>>,
    approle: Option<(String, String, Zeroizing<String>)>,
    session: Option<Zeroizing<String>>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Call>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "KMS client runtime");
                return;
            }
        };
        while let Ok(call) = rx.recv() {
            let r = rt.block_on(self.request(&call.path, &call.body, call.delete));
            let _ = call.reply.send(r);
        }
    }

    async fn login(&mut self) -> Result<(), String> {
        let Some((mount, role, secret)) = &self.approle else {
            return Ok(());
        };
        let url = format!("{}/auth/{mount}/login", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "role_id": role, "secret_id": secret.as_str() }))
            .send()
            .await
            .map_err(|e| format!("AppRole login at {url}: {}", without_url(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("AppRole login refused ({status})"));
        }
        let a: Auth = resp
            .json()
            .await
            .map_err(|e| format!("AppRole login answer: {e}"))?;
        self.session = Some(Zeroizing::new(a.auth.client_token));
        Ok(())
    }

    async fn request(
        &mut self,
        path: &str,
        body: &serde_json::Value,
        delete: bool,
    ) -> Result<serde_json::Value, String> {
        for attempt in 0..2 {
            if self.approle.is_some() && self.session.is_none() {
                self.login().await?;
            }
            let token = match (&self.token, &self.session) {
                (Some(t), _) => t.as_str().to_owned(),
                (None, Some(s)) => s.as_str().to_owned(),
                (None, None) => return Err("no KMS credentials".into()),
            };
            let token = Zeroizing::new(token);
            let url = format!("{}/{path}", self.base);
            let req = if delete {
                self.http.delete(&url)
            } else {
                self.http.post(&url).json(body)
            };
            let resp = req
                .header("X-Vault-Token", token.as_str())
                .send()
                .await
                .map_err(|e| format!("{path}: {}", without_url(&e)))?;
            let status = resp.status();
            if status == reqwest::StatusCode::NO_CONTENT {
                return Ok(serde_json::Value::Null);
            }
            if status.is_success() {
                return resp
                    .json()
                    .await
                    .map_err(|e| format!("{path}: unreadable answer: {e}"));
            }
            // An expired AppRole session: log in again once.
            if status == reqwest::StatusCode::FORBIDDEN && self.approle.is_some() && attempt == 0 {
                self.session = None;
                continue;
            }
            // Vault's error bodies are {"errors": [...]}: messages about the request, not secrets.
            let text = resp.text().await.unwrap_or_default();
            let errs = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errors"].as_array().cloned())
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str())
                        .map(|s| s.chars().take(200).collect::<String>())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(format!("{path}: the KMS answered {status}: {errs}"));
        }
        Err(format!("{path}: refused after logging in again"))
    }
}

/// What went wrong with a request (the token travels in a header, never in the URL or here).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_contexts_pick_the_tenant_key() {
        assert_eq!(tenant_of(b"tracevault/v1/tenant-kek|acme|3"), Some("acme"));
        assert_eq!(tenant_of(b"tracevault/v1/log-ed25519-seed|x"), None);
        assert_eq!(tenant_of(b"tracevault/v1/tenant-kek|acme"), None);
    }
}

/// Whether the KMS answers, for `/ready` and `/metrics`.
#[derive(Debug)]
pub struct KmsHealth {
    /// Unix seconds of the last answer (0: never).
    last_ok: std::sync::atomic::AtomicU64,
    /// Unix seconds the current outage began (0: none).
    down_since: std::sync::atomic::AtomicU64,
    pub max_stale: Duration,
}

impl KmsHealth {
    pub fn new(max_stale: Duration) -> Self {
        Self {
            last_ok: std::sync::atomic::AtomicU64::new(tv_access::now_unix()),
            down_since: std::sync::atomic::AtomicU64::new(0),
            max_stale,
        }
    }

    fn ok(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_ok.store(tv_access::now_unix(), Relaxed);
        self.down_since.store(0, Relaxed);
    }

    fn failed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .down_since
            .compare_exchange(0, tv_access::now_unix(), Relaxed, Relaxed);
    }

    /// None when the KMS answers; otherwise how long it has not (seconds).
    pub fn outage(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        match self.down_since.load(Relaxed) {
            0 => None,
            _ => Some(tv_access::now_unix().saturating_sub(self.last_ok.load(Relaxed))),
        }
    }
}

/// Every `refresh`: asks the KMS to answer and to confirm the cached tenant keys; logs outages and
/// recoveries and keeps `health` current.
pub async fn watch(
    keyring: std::sync::Arc<tv_crypto::Keyring>,
    health: std::sync::Arc<KmsHealth>,
    refresh: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    metrics.kms_up.set(1);
    loop {
        tokio::time::sleep(refresh).await;
        let kr = keyring.clone();
        let r = tokio::task::spawn_blocking(move || {
            kr.root().check()?;
            kr.refresh()
        })
        .await;
        match r {
            Ok(Ok(_)) => {
                if let Some(secs) = health.outage() {
                    tracing::info!(
                        outage_secs = secs,
                        "the KMS answers again; tenant keys confirmed"
                    );
                }
                health.ok();
                metrics.kms_up.set(1);
            }
            Ok(Err(e)) => {
                if health.outage().is_none() {
                    tracing::error!(error = %e, max_stale_secs = health.max_stale.as_secs(), "the KMS does not answer: ingest and queries continue with cached tenant keys until they are max_stale; readiness reports degraded");
                }
                health.failed();
                metrics.kms_up.set(0);
            }
            Err(e) => tracing::error!(error = %e, "KMS check task failed"),
        }
    }
}
