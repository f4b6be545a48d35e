//! `tracevault keys list|rotate`: tenant key versions on a running server (needs `admin_keys`).

use anyhow::Context;
use clap::Subcommand;

use crate::client::ConnFlags;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Each tenant's key versions (the newest wraps new data) and where the root is.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Which tenant key version wraps each block and WAL segment (read from the files, offline,
    /// no key needed).
    Usage {
        #[arg(long, default_value = "./tracevault-data")]
        data_dir: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap every stored data key of a tenant under its current key version (blocks and WAL
    /// segments are not rewritten); afterwards older versions wrap nothing still stored.
    Rewrap {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Re-wrap every tenant key under the root's newest version (after rotating the transit keys
    /// in the KMS; then its older versions can be retired). A credential of every tenant.
    RewrapRoot {
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Start a new key version for a tenant's new data; data under older versions stays readable.
    Rotate {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

pub async fn run(cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Usage { data_dir, json } => {
            let uses = tv_store::keyuse::key_use(&data_dir)
                .with_context(|| format!("reading {}", data_dir.display()))?;
            for u in uses {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "file": u.file.display().to_string(),
                            "tenant": u.tenant,
                            "kek_version": u.kek_version,
                        })
                    );
                } else {
                    println!(
                        "{}  tenant {}  key v{}",
                        u.file.display(),
                        u.tenant,
                        u.kek_version
                    );
                }
            }
            Ok(())
        }
        KeysCmd::List { json, conn } => {
            let v = conn.get_json("/api/admin/keys").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("root: {}", v["root"].as_str().unwrap_or("?"));
            for t in v["tenants"].as_array().into_iter().flatten() {
                let versions: Vec<String> = t["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        format!(
                            "v{} (created {})",
                            x["version"].as_u64().unwrap_or(0),
                            x["created_unix"].as_u64().unwrap_or(0)
                        )
                    })
                    .collect();
                println!(
                    "{}: current v{}; {}",
                    t["tenant"].as_str().unwrap_or("?"),
                    t["current"].as_u64().unwrap_or(0),
                    versions.join(", ")
                );
            }
            Ok(())
        }
        KeysCmd::Rewrap { tenant, conn } => {
            let v = conn
                .post_json(
                    "/api/admin/keys/rewrap",
                    &serde_json::json!({ "tenant": tenant }),
                )
                .await?;
            println!(
                "tenant {}: re-wrapped {} data keys under key v{} ({} already current) in {:.1} ms",
                tenant,
                v["rewrapped"].as_u64().unwrap_or(0),
                v["version"].as_u64().unwrap_or(0),
                v["already_current"].as_u64().unwrap_or(0),
                v["millis"].as_f64().unwrap_or(0.0),
            );
            Ok(())
        }
        KeysCmd::RewrapRoot { conn } => {
            let v = conn
                .post_json("/api/admin/keys/rewrap-root", &serde_json::json!({}))
                .await?;
            println!(
                "re-wrapped {} tenant keys under {} in {:.1} ms",
                v["rewrapped"].as_u64().unwrap_or(0),
                v["root"].as_str().unwrap_or("the root"),
                v["millis"].as_f64().unwrap_or(0.0),
            );
            Ok(())
        }
        KeysCmd::Rotate { tenant, conn } => {
            let v = conn
                .post_json(
                    "/api/admin/keys/rotate",
                    &serde_json::json!({ "tenant": tenant }),
                )
                .await?;
            println!(
                "tenant {} now wraps new data under key v{}; older versions stay for the data they wrap",
                tenant,
                v["version"].as_u64().unwrap_or(0)
            );
            Ok(())
        }
    }
}
