//! Fetching the OIDC provider's JWKS from `oidc.jwks_url`: once at start (a start without keys
//! fails), then every `jwks_refresh_secs`; a failed refresh keeps the keys it had and says so.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tv_access::OidcVerifier;

const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// An HTTP client trusting `oidc.jwks_ca` (TLS 1.3, aws-lc-rs); https needs the CA named.
pub fn client(v: &OidcVerifier) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cfg = v.config();
    let url = cfg.jwks_url.as_deref().unwrap_or("");
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.jwks_ca {
        Some(ca) => {
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading oidc.jwks_ca {}", ca.display()))?
            {
                roots.add(c.context("oidc.jwks_ca certificate")?)?;
            }
        }
        None if url.starts_with("https://") => bail!(
            "oidc.jwks_url is https: name the CA bundle that signs it in oidc.jwks_ca (for a public provider, the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt)"
        ),
        None => {}
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Fetches the JWKS document.
pub async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("fetching the JWKS from {url}"))?;
    if !resp.status().is_success() {
        bail!("fetching the JWKS from {url}: HTTP {}", resp.status());
    }
    let body = resp.bytes().await.context("reading the JWKS")?;
    if body.len() > MAX_JWKS_BYTES {
        bail!("the JWKS from {url} is over {MAX_JWKS_BYTES} bytes");
    }
    String::from_utf8(body.to_vec()).context("the JWKS is not UTF-8")
}

/// Loads the keys now (error: the server does not start), then refreshes them in the background.
pub async fn start(v: Arc<OidcVerifier>) -> anyhow::Result<()> {
    let Some(url) = v.config().jwks_url.clone() else {
        return Ok(());
    };
    let client = client(&v)?;
    let doc = fetch(&client, &url).await?;
    let n = v
        .replace_keys(&doc)
        .map_err(|e| anyhow::anyhow!("the JWKS from {url}: {e}"))?;
    tracing::info!(url = %url, keys = n, "OIDC keys loaded");
    let every = Duration::from_secs(v.config().jwks_refresh_secs);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match fetch(&client, &url).await.and_then(|d| {
                v.replace_keys(&d)
                    .map_err(|e| anyhow::anyhow!("the JWKS from {url}: {e}"))
            }) {
                Ok(n) => tracing::debug!(keys = n, "OIDC keys refreshed"),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "OIDC key refresh failed; the previous keys stay")
                }
            }
        }
    });
    Ok(())
}
