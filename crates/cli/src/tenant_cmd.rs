//! `tracevault tenant erase T [--yes]`: crypto-shredding a tenant on a running server (issue 6;
//! needs `admin_keys` for the tenant).

use clap::Subcommand;

use crate::client::ConnFlags;

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Erase a tenant: destroy every version of its keys (and its KMS key), delete its blocks,
    /// refuse its data from then on. Irreversible. Without --yes, says what would be destroyed
    /// and stops.
    Erase {
        tenant: String,
        /// Confirm: destroy the keys now.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
        /// Work on a stopped server's --data-dir instead of asking a running server
        #[arg(long)]
        offline: bool,
        /// With --offline: the server's config file (its [keys] root, keys_dir)
        #[arg(long, requires = "offline")]
        config: Option<std::path::PathBuf>,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

pub async fn run(cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Erase {
            tenant,
            yes,
            json,
            offline,
            config,
            conn,
        } => {
            let v = if offline {
                let id = tv_model::TenantId::parse(&tenant)
                    .map_err(|e| anyhow::anyhow!("tenant {tenant:?}: {e}"))?;
                let flags = tv_server::RawConfig {
                    data_dir: Some(conn.data_dir()),
                    ..Default::default()
                };
                let cfg = tv_server::RawConfig::resolve(&flags, config.as_deref())?;
                tv_server::offline::erase_tenant(&cfg, &id, yes).await?
            } else {
                conn.post_json(
                    "/api/admin/tenants/erase",
                    &serde_json::json!({ "tenant": tenant, "confirm": yes }),
                )
                .await?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let versions: Vec<String> = v["key_versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_u64())
                .map(|x| format!("v{x}"))
                .collect();
            let versions = if versions.is_empty() {
                "none".to_string()
            } else {
                versions.join(", ")
            };
            if !yes {
                println!("tenant {tenant}: nothing was erased (no --yes). Erasing would:");
                println!(
                    "  destroy every version of its keys ({versions}) under {}",
                    v["root"].as_str().unwrap_or("the root")
                );
                println!(
                    "  delete its {} blocks ({} spans) and refuse its data from then on",
                    v["blocks"].as_u64().unwrap_or(0),
                    v["spans"].as_u64().unwrap_or(0)
                );
            } else {
                println!(
                    "tenant {tenant} erased in {:.1} ms: key versions {versions} destroyed{}; {} blocks ({} spans) deleted; log entry {}",
                    v["millis"].as_f64().unwrap_or(0.0),
                    v["root_key"]
                        .as_str()
                        .map(|k| format!(", KMS key {k} deleted"))
                        .unwrap_or_default(),
                    v["blocks"].as_u64().unwrap_or(0),
                    v["spans"].as_u64().unwrap_or(0),
                    v["log_index"]
                        .as_u64()
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                );
            }
            println!("limits:");
            for l in v["limits"].as_array().into_iter().flatten() {
                println!("  - {}", l.as_str().unwrap_or(""));
            }
            if !yes {
                println!("run again with --yes to erase");
            }
            Ok(())
        }
    }
}
