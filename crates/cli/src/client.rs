//! The common `--server --ca --token-file` client flags and an HTTPS client built on them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How CLI commands reach a running server.
#[derive(Args, Clone, Debug)]
pub struct ConnFlags {
    /// Server query API URL
    #[arg(long, default_value = "https://127.0.0.1:3200")]
    pub server: String,
    /// CA certificate to trust [default: DIR/tls/ca.pem]
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// File holding the API token [default: DIR/admin.token]
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Data directory the defaults above are taken from
    #[arg(long, default_value = "./tracevault-data")]
    pub data_dir: PathBuf,
}

/// [`ConnFlags`] and the tenant a query acts for.
#[derive(Args, Clone, Debug)]
pub struct ServerFlags {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Tenant (X-Scope-OrgID)
    #[arg(long, default_value = "default")]
    pub tenant: String,
}

impl std::ops::Deref for ServerFlags {
    type Target = ConnFlags;
    fn deref(&self) -> &ConnFlags {
        &self.conn
    }
}

impl ConnFlags {
    /// `server` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.trim_end_matches('/'), path)
    }

    /// The server's error message (`{"message": ...}`) or the body.
    pub async fn fail(resp: reqwest::Response) -> anyhow::Error {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(body);
        anyhow::anyhow!("server answered {status}: {msg}")
    }

    /// `GET path` with the token; the JSON answer, or the server's refusal as the error.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path);
        let resp = self
            .client()?
            .get(&url)
            .bearer_auth(self.token()?)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            return Err(Self::fail(resp).await);
        }
        resp.json().await.context("reading the response")
    }

    /// `POST path` with a JSON body and the token; the JSON answer, or the refusal as the error.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path);
        let resp = self
            .client()?
            .post(&url)
            .bearer_auth(self.token()?)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !resp.status().is_success() {
            return Err(Self::fail(resp).await);
        }
        resp.json().await.context("reading the response")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.ca
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls/ca.pem"))
    }

    pub fn token(&self) -> anyhow::Result<String> {
        let p = self
            .token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.token"));
        let t = std::fs::read_to_string(&p)
            .with_context(|| format!("reading token file {}", p.display()))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            bail!("token file {} is empty", p.display());
        }
        Ok(t)
    }

    /// An HTTP client trusting only the configured CA (TLS 1.3, aws-lc-rs).
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder();
        if self.server.starts_with("https://") {
            b = b.use_preconfigured_tls(tls_client_config(&self.ca_path())?);
        }
        b.build().context("building the HTTP client")
    }
}

/// A rustls client configuration trusting only the CA in `ca` (TLS 1.3 only).
pub fn tls_client_config(ca: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
    tls_client_config_with(ca, None)
}

/// [`tls_client_config`], presenting a client certificate `(cert PEM file, key PEM file)`.
pub fn tls_client_config_with(
    ca: &std::path::Path,
    identity: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading CA file {}", ca.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing CA file {}", ca.display()))?;
    for c in certs {
        roots.add(c).context("adding CA certificate")?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots);
    let mut cfg = match identity {
        None => cfg.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing {}", cert.display()))?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading {}", key.display()))?;
            cfg.with_client_auth_cert(chain, key)
                .context("client certificate and key")?
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
