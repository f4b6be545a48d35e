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
    /// Back up the whole key store of a running server, encrypted with age to a recipient public
    /// key or a passphrase (read from a file or TRACEVAULT_BACKUP_PASSPHRASE). A credential of
    /// every tenant. Keep it apart from data backups.
    Backup {
        /// Where to write the backup (created 0600; an existing file is not overwritten)
        #[arg(long)]
        out: std::path::PathBuf,
        /// An age X25519 recipient (`age1...`, e.g. from `age-keygen`)
        #[arg(long, conflicts_with = "passphrase_file")]
        recipient: Option<String>,
        /// A file holding the passphrase (first line)
        #[arg(long)]
        passphrase_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Restore a key backup into a stopped server's keys directory (offline). Keys of tenants
    /// erased since the backup (DIR/erased/) are never restored; the next start audits the restore.
    Restore {
        /// The backup file
        #[arg(long = "in")]
        input: std::path::PathBuf,
        /// An age identity file (`AGE-SECRET-KEY-1...`)
        #[arg(long, conflicts_with = "passphrase_file")]
        identity: Option<std::path::PathBuf>,
        /// A file holding the passphrase (first line)
        #[arg(long)]
        passphrase_file: Option<std::path::PathBuf>,
        #[arg(long, default_value = "./tracevault-data")]
        data_dir: std::path::PathBuf,
        /// [default: DIR/keys]
        #[arg(long)]
        keys_dir: Option<std::path::PathBuf>,
        /// Replace key files that exist with other contents (default: refuse, writing nothing)
        #[arg(long)]
        overwrite: bool,
    },
    /// Start a new key version for a tenant's new data; data under older versions stays readable.
    Rotate {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

/// The backup passphrase: the file's first line, else TRACEVAULT_BACKUP_PASSPHRASE.
fn passphrase(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    let text = match file {
        Some(f) => zeroize::Zeroizing::new(
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        ),
        None => match std::env::var("TRACEVAULT_BACKUP_PASSPHRASE") {
            Ok(v) => zeroize::Zeroizing::new(v),
            Err(_) => return Ok(None),
        },
    };
    let first = text.lines().next().unwrap_or("").trim_end().to_string();
    if first.chars().count() < 12 {
        anyhow::bail!("the backup passphrase must have at least 12 characters");
    }
    Ok(Some(zeroize::Zeroizing::new(first)))
}

pub async fn run(cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Backup {
            out,
            recipient,
            passphrase_file,
            conn,
        } => {
            if out.exists() {
                anyhow::bail!("{} exists; choose another file", out.display());
            }
            // With a passphrase, the server encrypts to a one-time key of this process, which
            // re-encrypts under the passphrase.
            let pass = match &recipient {
                Some(_) => None,
                None => Some(passphrase(passphrase_file.as_deref())?.ok_or_else(|| {
                    anyhow::anyhow!("give --recipient age1... or --passphrase-file (or TRACEVAULT_BACKUP_PASSPHRASE)")
                })?),
            };
            let once = age::x25519::Identity::generate();
            let to = recipient.unwrap_or_else(|| once.to_public().to_string());
            let v = conn
                .post_json(
                    "/api/admin/keys/backup",
                    &serde_json::json!({ "recipient": to }),
                )
                .await?;
            let sealed = v["backup"].as_str().unwrap_or_default().to_string();
            let text = match &pass {
                None => sealed,
                Some(p) => {
                    let id = zeroize::Zeroizing::new(
                        age::secrecy::ExposeSecret::expose_secret(&once.to_string()).to_string(),
                    );
                    let archive = tv_crypto::backup::open(
                        sealed.as_bytes(),
                        tv_crypto::backup::Opener::Identity(&id),
                    )?;
                    tv_crypto::backup::seal_with_passphrase(&archive, p)?
                }
            };
            tv_crypto::fsio::create_private_file(&out, text.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "key backup written to {} ({} files, tenants [{}], root {}), encrypted {}",
                out.display(),
                v["files"].as_u64().unwrap_or(0),
                v["tenants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                v["root"].as_str().unwrap_or("?"),
                if pass.is_some() {
                    "under the passphrase"
                } else {
                    "to the recipient"
                },
            );
            println!(
                "keep it apart from data backups: with both, a tenant erased later can be read again"
            );
            Ok(())
        }
        KeysCmd::Restore {
            input,
            identity,
            passphrase_file,
            data_dir,
            keys_dir,
            overwrite,
        } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let archive = match &identity {
                Some(f) => {
                    let text = zeroize::Zeroizing::new(
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))?,
                    );
                    tv_crypto::backup::open(&bytes, tv_crypto::backup::Opener::Identity(&text))?
                }
                None => {
                    let p = passphrase(passphrase_file.as_deref())?.ok_or_else(|| {
                        anyhow::anyhow!("give --identity FILE or --passphrase-file (or TRACEVAULT_BACKUP_PASSPHRASE)")
                    })?;
                    tv_crypto::backup::open(&bytes, tv_crypto::backup::Opener::Passphrase(&p))?
                }
            };
            // Not under a running server: it would keep using the keys it has.
            let _lock = tv_store::lock_data_dir(&data_dir)?;
            let erased: Vec<String> = tv_store::erase::records(&data_dir)
                .with_context(|| format!("reading the erasure records of {}", data_dir.display()))?
                .into_iter()
                .map(|r| r.tenant)
                .collect();
            let keys_dir = keys_dir.unwrap_or_else(|| data_dir.join("keys"));
            let r = tv_crypto::backup::restore(&keys_dir, &archive, &erased, overwrite)?;
            println!(
                "restored {} files into {} ({} already there) from a backup made {}",
                r.written.len(),
                keys_dir.display(),
                r.unchanged,
                crate::when::local_secs(r.backup_created_unix)
            );
            for t in &r.erased_not_restored {
                println!(
                    "NOT restored: tenant {t} was erased after this backup was made; its keys stay destroyed"
                );
            }
            println!("the server's next start records this restore in the audit log");
            Ok(())
        }
        KeysCmd::Usage { data_dir, json } => {
            let uses = tv_store::keyuse::key_use(
                &tv_store::objects::LocalDir::new(&data_dir),
                &data_dir.join("wal"),
            )
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
                            crate::when::local_secs(x["created_unix"].as_u64().unwrap_or(0))
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
                "re-wrapped {} tenant keys and {} system secrets under {} in {:.1} ms",
                v["rewrapped"].as_u64().unwrap_or(0),
                v["system"].as_u64().unwrap_or(0),
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
