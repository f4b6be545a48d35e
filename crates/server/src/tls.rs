//! TLS: the local CA and server certificate made on first start, and the one rustls
//! `ServerConfig` (TLS 1.3 only, aws-lc-rs, X25519MLKEM768 preferred) shared by every listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tv_crypto::fsio;

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

const SERVER_VALIDITY_DAYS: i64 = 397;
const RENEW_BEFORE_DAYS: i64 = 30;

/// A 10-year CA certificate's parameters under the common name `name`.
pub(crate) fn ca_params_named(name: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "tracevault");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = time_now() - days(1);
    p.not_after = time_now() + days(3650);
    Ok(p)
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    ca_params_named("tracevault local CA")
}

fn days(d: i64) -> std::time::Duration {
    std::time::Duration::from_secs((d * 86400) as u64)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The certificate kept beside a CA key in the keys directory (`ca.key` -> `ca.pem`), so that
/// nodes sharing a keys directory share the CA.
pub(crate) fn key_side_cert(key_path: &Path) -> std::path::PathBuf {
    key_path.with_extension("pem")
}

/// Makes sure a CA exists: its key under the keys directory, its certificate there too and at
/// `pem` (the data directory's copy clients are given). A key already there is kept: a node
/// starting with a new data directory on a shared keys directory takes the CA the others use
/// (its certificate from beside the key, or one made again for the same key and name) instead
/// of replacing their key. Returns the key.
pub(crate) fn ensure_ca(
    key_path: &Path,
    pem: &Path,
    name: &str,
    created: &str,
) -> anyhow::Result<KeyPair> {
    let beside = key_side_cert(key_path);
    if key_path.exists() {
        let kp = KeyPair::from_pem(&std::fs::read_to_string(key_path)?)
            .with_context(|| format!("reading {}", key_path.display()))?;
        if !pem.exists() {
            let cert = match std::fs::read_to_string(&beside) {
                Ok(c) => c,
                Err(_) => {
                    let c = ca_params_named(name)?.self_signed(&kp)?.pem();
                    fsio::atomic_write(&beside, c.as_bytes(), 0o600)?;
                    c
                }
            };
            fsio::atomic_write(pem, cert.as_bytes(), 0o644)?;
            tracing::info!(ca = %pem.display(), key = %key_path.display(), "using the certificate authority of the keys directory");
        } else if !beside.exists() {
            fsio::atomic_write(&beside, &std::fs::read(pem)?, 0o600)?;
        }
        return Ok(kp);
    }
    let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let ca = ca_params_named(name)?.self_signed(&kp)?;
    fsio::create_private_file(key_path, kp.serialize_pem().as_bytes())?;
    fsio::atomic_write(&beside, ca.pem().as_bytes(), 0o600)?;
    fsio::atomic_write(pem, ca.pem().as_bytes(), 0o644)?;
    tracing::info!(ca = %pem.display(), "{created}");
    Ok(kp)
}

/// Whether the CA certificate is newer than the server certificate's record (the server
/// certificate must then be issued again under it).
fn ca_changed(ca_pem: &Path, meta: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(ca_pem), modified(meta)), (Some(c), Some(m)) if c > m)
}

/// Makes sure `DIR/tls/ca.pem`, `DIR/tls/server.pem` and `DIR/tls/server.key` exist (CA key under
/// the keys directory), renewing the server certificate when it is close to expiry.
pub fn ensure_generated(data_dir: &Path, keys_dir: &Path) -> anyhow::Result<TlsFiles> {
    let tls_dir = data_dir.join("tls");
    fsio::create_private_dir(&tls_dir)?;
    let ca_pem = tls_dir.join("ca.pem");
    let ca_key_path = keys_dir.join("ca.key");
    let cert = tls_dir.join("server.pem");
    let key = tls_dir.join("server.key");
    let meta = tls_dir.join("server.expires");

    let ca_key = ensure_ca(
        &ca_key_path,
        &ca_pem,
        "tracevault local CA",
        "created local certificate authority",
    )?;
    if !cert.exists() || ca_changed(&ca_pem, &meta) {
        let _ = std::fs::remove_file(&cert);
    }
    let now = time_now().unix_timestamp();
    let expires: i64 = std::fs::read_to_string(&meta)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if !cert.exists() || !key.exists() || expires - now < RENEW_BEFORE_DAYS * 86400 {
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "tracevault server");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = time_now() - days(1);
        p.not_after = time_now() + days(SERVER_VALIDITY_DAYS);
        let c = p.signed_by(&server_key, &issuer)?;
        fsio::atomic_write(&key, server_key.serialize_pem().as_bytes(), 0o600)?;
        fsio::atomic_write(&cert, c.pem().as_bytes(), 0o644)?;
        fsio::atomic_write(
            &meta,
            (now + SERVER_VALIDITY_DAYS * 86400).to_string().as_bytes(),
            0o644,
        )?;
        tracing::info!(cert = %cert.display(), "issued server certificate for localhost, 127.0.0.1 and ::1");
    }
    Ok(TlsFiles { cert, key })
}

/// The process-wide crypto provider: aws-lc-rs with rustls' default group order
/// (X25519MLKEM768 first, X25519 kept for middleboxes that drop large ClientHellos).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What the operator relaxed for old clients or middleboxes (`[tls] min_version`,
/// `[tls] post_quantum`); the default is neither. `tracevault doctor` grades both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Accept TLS 1.2 as well as 1.3.
    pub tls12: bool,
    /// Offer the hybrid post-quantum key exchange (X25519MLKEM768) first.
    pub post_quantum: bool,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            tls12: false,
            post_quantum: true,
        }
    }
}

impl TlsPolicy {
    /// The provider for this policy: without post-quantum, the classical groups only.
    fn provider(self) -> Arc<rustls::crypto::CryptoProvider> {
        let mut p = rustls::crypto::aws_lc_rs::default_provider();
        if !self.post_quantum {
            p.kx_groups
                .retain(|g| !format!("{:?}", g.name()).contains("MLKEM"));
        }
        Arc::new(p)
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        if self.tls12 { &BOTH } else { &BOTH[..1] }
    }
}

/// Builds the one TLS 1.3-only server configuration every listener shares. With `client` the
/// listeners ask for (and check) client certificates; connections without one still pass to
/// bearer-token authentication.
pub fn server_config(
    files: &TlsFiles,
    client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<Arc<ServerConfig>> {
    server_config_with(files, client, TlsPolicy::default())
}

/// [`server_config`] under `policy`.
pub fn server_config_with(
    files: &TlsFiles,
    client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    policy: TlsPolicy,
) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", files.cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate found in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading private key {}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(policy.provider())
        .with_protocol_versions(policy.versions())
        .context("TLS with the aws-lc-rs provider")?;
    let builder = match client {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What the listeners' TLS settings are built from.
#[derive(Debug, Clone)]
pub struct TlsParams {
    /// The operator's certificate and key; None: generated under the data directory.
    pub files: Option<TlsFiles>,
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub client_ca: PathBuf,
    pub policy: TlsPolicy,
}

type Stamp = Vec<Option<(std::time::SystemTime, u64)>>;

impl TlsParams {
    fn server_files(&self) -> TlsFiles {
        match &self.files {
            Some(f) => f.clone(),
            None => TlsFiles {
                cert: self.data_dir.join("tls/server.pem"),
                key: self.data_dir.join("tls/server.key"),
            },
        }
    }

    fn stamp(&self) -> Stamp {
        let f = self.server_files();
        [f.cert, f.key, self.client_ca.clone()]
            .iter()
            .map(|p| stamp_of(p))
            .collect()
    }

    fn build(
        &self,
        workloads: &Arc<crate::mtls::Workloads>,
    ) -> anyhow::Result<(Arc<ServerConfig>, Stamp)> {
        let files = match &self.files {
            Some(f) => f.clone(),
            None => ensure_generated(&self.data_dir, &self.keys_dir)?,
        };
        let verifier = crate::mtls::ClientVerifier::new(&self.client_ca, workloads.clone())?;
        let cfg = server_config_with(&files, Some(Arc::new(verifier)), self.policy)?;
        Ok((cfg, self.stamp()))
    }
}

/// The listeners' TLS settings, rebuilt without a restart (on SIGHUP, or when
/// [`TlsSource::reload_if_changed`] sees a file change): the server certificate and key (the
/// operator's files, or the generated ones, renewed when close to expiry) and the client CA
/// bundle. Connections already open keep the settings they were made with.
pub struct TlsSource {
    params: TlsParams,
    workloads: Arc<crate::mtls::Workloads>,
    current: std::sync::RwLock<Arc<ServerConfig>>,
    stamp: std::sync::Mutex<Stamp>,
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsSource({:?})", self.params)
    }
}

impl TlsSource {
    pub fn new(params: TlsParams, workloads: Arc<crate::mtls::Workloads>) -> anyhow::Result<Self> {
        let (cfg, stamp) = params.build(&workloads)?;
        Ok(Self {
            params,
            workloads,
            current: std::sync::RwLock::new(cfg),
            stamp: std::sync::Mutex::new(stamp),
        })
    }

    /// An acceptor with the settings in force.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().expect("tls lock").clone())
    }

    /// Rebuilds from the files now; a failure keeps the settings in force.
    pub fn reload(&self) -> anyhow::Result<()> {
        let (cfg, stamp) = self.params.build(&self.workloads)?;
        *self.current.write().expect("tls lock") = cfg;
        *self.stamp.lock().expect("tls lock") = stamp;
        Ok(())
    }

    /// Rebuilds when a file changed (modification time or size) or the generated server
    /// certificate is due for renewal. Returns whether it did.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let due = self.params.files.is_none() && generated_due(&self.params.data_dir);
        if !due && *self.stamp.lock().expect("tls lock") == self.params.stamp() {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }
}

fn stamp_of(p: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Whether the generated server certificate is within its renewal window.
fn generated_due(data_dir: &Path) -> bool {
    let expires: i64 = std::fs::read_to_string(data_dir.join("tls/server.expires"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    expires - time_now().unix_timestamp() < RENEW_BEFORE_DAYS * 86400
}
