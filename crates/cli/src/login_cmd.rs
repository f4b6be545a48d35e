//! `tracevault login-url [--next PATH]`: a single-use link that signs the caller in to the web
//! UI (issue 19). The code travels in the URL's fragment, which browsers never send to a
//! server, link prefetchers do not see and access logs do not record; the page exchanges it by
//! a POST. It works once, within 5 minutes, as the principal whose token minted it.

use anyhow::bail;
use clap::Args;

use crate::client::ConnFlags;

#[derive(Args)]
pub struct LoginUrlArgs {
    /// The UI page to land on: a same-origin relative path (/, /search?q=..., /trace/<id>, ...)
    #[arg(long, default_value = "/")]
    pub next: String,
    #[command(flatten)]
    pub conn: ConnFlags,
}

pub async fn run(a: LoginUrlArgs) -> anyhow::Result<()> {
    if !a.next.starts_with('/') || a.next.starts_with("//") || a.next.contains('\\') {
        bail!(
            "--next {:?}: must be a path of this server's UI starting with / (a link may not lead elsewhere)",
            a.next
        );
    }
    let origin = origin(&a.conn.server_url())?;
    let v = a
        .conn
        .post_json(
            "/api/ui/login-codes",
            &serde_json::json!({ "next": a.next }),
        )
        .await?;
    let (Some(code), Some(next)) = (v["code"].as_str(), v["next"].as_str()) else {
        bail!("the server's answer has no code");
    };
    if origin.starts_with("http://") {
        eprintln!("warning: the server speaks plain HTTP: this link is a credential in clear text");
    }
    println!("{origin}{next}#login={code}");
    eprintln!(
        "valid once, for {} s; it signs in as the token's principal",
        v["expires_in_secs"].as_u64().unwrap_or(300)
    );
    Ok(())
}

/// The scheme, host and port of `--server`.
fn origin(server: &str) -> anyhow::Result<String> {
    let (scheme, rest) = server
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "https" | "http"))
        .ok_or_else(|| anyhow::anyhow!("--server {server:?}: expected https://host:port"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        bail!("--server {server:?}: expected https://host:port");
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_is_scheme_host_and_port_only() {
        assert_eq!(
            super::origin("https://127.0.0.1:3200/").unwrap(),
            "https://127.0.0.1:3200"
        );
        assert_eq!(
            super::origin("https://h.example:3200/base?x#y").unwrap(),
            "https://h.example:3200"
        );
        for bad in ["ftp://h", "h:3200", "https://", "https://u:p@h/"] {
            assert!(super::origin(bad).is_err(), "{bad}");
        }
    }
}
