//! The common `--server --ca --token-file` client flags and an HTTPS client built on them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How CLI commands reach a running server. Each setting is taken from the first of: its flag or
/// environment variable; the data directory named by `--data-dir`; the client config file
/// (`TRACEVAULT_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/tracevault/client.toml` or
/// `~/.config/tracevault/client.toml`); then `./tracevault-data`. When the client config names
/// the server, the CA and token never come from `./tracevault-data` (a local admin token is not
/// sent to the server a config names).
#[derive(Args, Clone, Debug)]
pub struct ConnFlags {
    /// Server query API URL [default: the API address of --data-dir's server, else the client
    /// config's `server`, else ./tracevault-data's server, else https://127.0.0.1:3200]
    #[arg(long, env = "TRACEVAULT_SERVER")]
    pub server: Option<String>,
    /// CA certificate to trust [default: the client config's `ca`, else DIR/tls/ca.pem]
    #[arg(long, env = "TRACEVAULT_CA")]
    pub ca: Option<PathBuf>,
    /// File holding the API token [default: the client config's `token_file`, else
    /// DIR/admin.token]
    #[arg(long, env = "TRACEVAULT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A local server's data directory, where the defaults above are found
    /// [default: ./tracevault-data]
    #[arg(long, env = "TRACEVAULT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// [`ConnFlags`] and the tenant a query acts for.
#[derive(Args, Clone, Debug)]
pub struct ServerFlags {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Tenant (X-Scope-OrgID) [default: the client config's `tenant`, else "default"]
    #[arg(long, env = "TRACEVAULT_TENANT")]
    pub tenant: Option<String>,
}

impl std::ops::Deref for ServerFlags {
    type Target = ConnFlags;
    fn deref(&self) -> &ConnFlags {
        &self.conn
    }
}

impl ServerFlags {
    /// `GET path?params` for the tenant, asking for `accept`; the response, or the refusal as
    /// the error.
    pub async fn tenant_get(
        &self,
        path: &str,
        params: &[(&str, String)],
        accept: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.url(path);
        let req = self
            .client()?
            .get(&url)
            .query(params)
            .header("X-Scope-OrgID", self.tenant())
            .header("Accept", accept);
        self.conn.send(&url, req).await
    }

    /// `POST path` with a JSON body for the tenant; the JSON answer, or the refusal as the error.
    pub async fn tenant_post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path);
        let req = self
            .client()?
            .post(&url)
            .header("X-Scope-OrgID", self.tenant())
            .json(body);
        let resp = self.conn.send(&url, req).await?;
        resp.json().await.context("reading the response")
    }

    /// The tenant: `--tenant`, `TRACEVAULT_TENANT`, the client config's, else `default`.
    pub fn tenant(&self) -> String {
        self.tenant
            .clone()
            .or_else(|| ClientConfig::load().ok().flatten().and_then(|c| c.tenant))
            .unwrap_or_else(|| "default".into())
    }
}

/// The client config file (`client.toml`): where a person's CLI finds its server.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub server: Option<String>,
    pub ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub tenant: Option<String>,
}

impl ClientConfig {
    /// Where the file is looked for.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("TRACEVAULT_CLIENT_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("tracevault/client.toml"))
    }

    /// The file's settings (relative paths in it are relative to the file), `None` when
    /// there is no file; a file that does not parse is an error naming it.
    pub fn load() -> anyhow::Result<Option<Self>> {
        let Some(p) = Self::path() else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let mut c: ClientConfig = toml::from_str(&text).with_context(|| {
            format!(
                "client config {}: expected server, ca, token_file, tenant",
                p.display()
            )
        })?;
        let dir = p.parent().unwrap_or(std::path::Path::new("."));
        for f in [&mut c.ca, &mut c.token_file] {
            if let Some(v) = f.as_mut()
                && v.is_relative()
            {
                *v = dir.join(&*v);
            }
        }
        Ok(Some(c))
    }
}

const LOCAL_DATA_DIR: &str = "./tracevault-data";

impl ConnFlags {
    /// The data directory the local defaults come from: `--data-dir`, else `./tracevault-data`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(LOCAL_DATA_DIR))
    }

    /// The API address a local server wrote to `DIR/listen.json` (loopback for a wildcard),
    /// `https://` unless the server says it serves plaintext.
    fn local_api(dir: &std::path::Path) -> Option<String> {
        let text = std::fs::read_to_string(dir.join("listen.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let mut addr: std::net::SocketAddr = v["api"].as_str()?.parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if v["tls"] == false { "http" } else { "https" };
        Some(format!("{scheme}://{addr}"))
    }

    /// Whether the server URL comes from the client config file (not a flag, a variable or a
    /// data directory).
    fn server_from_config(&self) -> bool {
        self.server.is_none()
            && self
                .data_dir
                .as_ref()
                .is_none_or(|d| Self::local_api(d).is_none())
            && matches!(
                ClientConfig::load(),
                Ok(Some(ClientConfig {
                    server: Some(_),
                    ..
                }))
            )
    }

    /// The server URL: `--server`/`TRACEVAULT_SERVER`, the data directory named by
    /// `--data-dir`, the client config, `./tracevault-data`, else https://127.0.0.1:3200.
    pub fn server_url(&self) -> String {
        if let Some(s) = &self.server {
            return s.clone();
        }
        if let Some(d) = &self.data_dir
            && let Some(s) = Self::local_api(d)
        {
            return s;
        }
        if let Ok(Some(ClientConfig {
            server: Some(s), ..
        })) = ClientConfig::load()
        {
            return s;
        }
        Self::local_api(std::path::Path::new(LOCAL_DATA_DIR))
            .unwrap_or_else(|| "https://127.0.0.1:3200".into())
    }

    /// A local file setting: the flag (or its variable), `--data-dir`, the client config, then
    /// `./tracevault-data` when the file is there and the server is not the config's.
    fn local_file(
        &self,
        flag: &Option<PathBuf>,
        from_config: impl Fn(ClientConfig) -> Option<PathBuf>,
        in_dir: &str,
    ) -> anyhow::Result<Option<PathBuf>> {
        if let Some(p) = flag {
            return Ok(Some(p.clone()));
        }
        if let Some(d) = &self.data_dir {
            return Ok(Some(d.join(in_dir)));
        }
        if let Some(p) = ClientConfig::load()?.and_then(from_config) {
            return Ok(Some(p));
        }
        if self.server_from_config() {
            // The config names a server but not this file: the local one is not for it.
            return Ok(None);
        }
        let local = std::path::Path::new(LOCAL_DATA_DIR).join(in_dir);
        Ok(local.exists().then_some(local))
    }

    fn not_configured(&self, what: &str, flag: &str, env: &str, key: &str) -> anyhow::Error {
        let cfg = ClientConfig::path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "~/.config/tracevault/client.toml".into());
        anyhow::anyhow!(
            "no {what} for {}: pass {flag}, set {env}, put `{key} = \"...\"` in {cfg}, or run where the server's ./tracevault-data is (or pass --data-dir)",
            self.server_url()
        )
    }

    /// The server URL + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server_url().trim_end_matches('/'), path)
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

    /// Sends `req` (to `url`) with the token; the response, or the server's refusal as the error.
    async fn send(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(self.token()?)
            .send()
            .await
            .with_context(|| unreachable(url))?;
        if !resp.status().is_success() {
            return Err(Self::fail(resp).await);
        }
        Ok(resp)
    }

    /// `GET path` with the token; the JSON answer, or the server's refusal as the error.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path);
        let req = self.client()?.get(&url);
        let resp = self.send(&url, req).await?;
        resp.json().await.context("reading the response")
    }

    /// `POST path` with a JSON body and the token; the JSON answer, or the refusal as the error.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path);
        let req = self.client()?.post(&url).json(body);
        let resp = self.send(&url, req).await?;
        resp.json().await.context("reading the response")
    }

    /// The CA certificate to trust (see [`ConnFlags`] for where it is looked for).
    pub fn ca_path(&self) -> anyhow::Result<PathBuf> {
        self.local_file(&self.ca, |c| c.ca, "tls/ca.pem")?
            .ok_or_else(|| {
                self.not_configured("CA certificate", "--ca FILE", "TRACEVAULT_CA", "ca")
            })
    }

    /// The API token (see [`ConnFlags`] for where its file is looked for).
    pub fn token(&self) -> anyhow::Result<String> {
        let p = self
            .local_file(&self.token_file, |c| c.token_file, "admin.token")?
            .ok_or_else(|| {
                self.not_configured(
                    "API token file",
                    "--token-file FILE",
                    "TRACEVAULT_TOKEN_FILE",
                    "token_file",
                )
            })?;
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
        if self.server_url().starts_with("https://") {
            b = b.use_preconfigured_tls(tls_client_config(&self.ca_path()?)?);
        }
        b.build().context("building the HTTP client")
    }
}

/// The context of a request that did not reach the server.
pub fn unreachable(url: &str) -> String {
    format!(
        "cannot reach {url}: is the server running, and is this its query API (port 3200 by default)? Set another with --server or TRACEVAULT_SERVER"
    )
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
