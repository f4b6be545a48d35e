//! `tracevault token create|list|revoke`: manage API tokens on a running server (admin only).

use anyhow::Context;
use clap::Subcommand;

use crate::client::ConnFlags;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token; its text is printed alone on the last line, once (only its hash is kept).
    Create {
        /// Tenant it may act for (repeatable; an admin of every tenant may omit it)
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// admin, ingest, reader, investigator, auditor or metrics
        #[arg(long)]
        role: String,
        /// Service it may write spans for (repeatable; default: any)
        #[arg(long = "service")]
        services: Vec<String>,
        /// Lifetime, e.g. 90d, 12h, 30m [default: no expiry]
        #[arg(long)]
        expires: Option<String>,
        /// A name for people reading `token list`
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// List tokens (ids, roles, scopes, expiry, revocation; never secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Revoke a token by id; every listener refuses it from the next request on.
    Revoke {
        id: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

/// `90d`, `12h`, `30m`, `45s` or a Go duration, in seconds.
fn lifetime(s: &str) -> anyhow::Result<u64> {
    if let Some(d) = s.strip_suffix('d') {
        let n: u64 = d
            .parse()
            .with_context(|| format!("--expires {s:?}: use forms like 90d, 12h, 30m"))?;
        return Ok(n * 86_400);
    }
    let ns = tv_server::params::parse_go_duration(s)
        .map_err(|e| anyhow::anyhow!("--expires: {e}; days as 90d"))?;
    Ok(ns.div_ceil(1_000_000_000))
}

fn when(unix: Option<u64>) -> String {
    match unix {
        None => "never".into(),
        Some(u) => crate::when::local_secs(u),
    }
}

pub async fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            tenants,
            role,
            services,
            expires,
            name,
            conn,
        } => {
            let expires_in_secs = expires.as_deref().map(lifetime).transpose()?;
            let body = serde_json::json!({
                "name": name,
                "role": role,
                "tenants": tenants,
                "services": services,
                "expires_in_secs": expires_in_secs,
            });
            let v = conn.post_json("/api/admin/tokens", &body).await?;
            let info = &v["info"];
            eprintln!(
                "created token {} (role {}, tenants {}, services {}, expires {}); it is shown once:",
                info["id"].as_str().unwrap_or("?"),
                info["role"].as_str().unwrap_or("?"),
                list(&info["tenants"], "all"),
                list(&info["services"], "any"),
                when(info["expires_unix"].as_u64()),
            );
            println!(
                "{}",
                v["token"].as_str().context("no token in the response")?
            );
            Ok(())
        }
        TokenCmd::List { json, conn } => {
            let v = conn.get_json("/api/admin/tokens").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v["tokens"])?);
                return Ok(());
            }
            println!(
                "{:<16}  {:<12}  {:<20}  {:<20}  {:<18}  {:<7}  name",
                "id", "role", "tenants", "services", "expires", "revoked"
            );
            for t in v["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{:<16}  {:<12}  {:<20}  {:<20}  {:<18}  {:<7}  {}",
                    t["id"].as_str().unwrap_or(""),
                    t["role"].as_str().unwrap_or(""),
                    list(&t["tenants"], "all"),
                    list(&t["services"], "any"),
                    when(t["expires_unix"].as_u64()),
                    t["revoked"].as_bool().unwrap_or(false),
                    t["name"].as_str().unwrap_or(""),
                );
            }
            Ok(())
        }
        TokenCmd::Revoke { id, conn } => {
            let url = conn.url(&format!("/api/admin/tokens/{id}"));
            let resp = conn
                .client()?
                .delete(&url)
                .bearer_auth(conn.token()?)
                .send()
                .await
                .with_context(|| format!("DELETE {url}"))?;
            if !resp.status().is_success() {
                return Err(ConnFlags::fail(resp).await);
            }
            eprintln!("revoked token {id}");
            Ok(())
        }
    }
}

/// A JSON array of strings joined by commas, or `empty`.
pub(crate) fn list(v: &serde_json::Value, empty: &str) -> String {
    let items: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .collect();
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(",")
    }
}
