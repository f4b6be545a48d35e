//! `tracevault state reseal`: accept the trusted state files as they are now (offline, with the
//! server stopped), after an operator changed one on purpose. The next start records it in the
//! audit log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use tv_server::stateseal;

#[derive(Subcommand)]
pub enum StateCmd {
    /// Seal the trusted files (tokens.json, workloads.json, responses.json, detector state, the
    /// client CA) as they are now; run it only for a change you made yourself
    Reseal {
        #[arg(long, default_value = "./tracevault-data")]
        data_dir: PathBuf,
        /// Key material directory [default: DIR/keys]
        #[arg(long)]
        keys_dir: Option<PathBuf>,
        /// The server's config file, to reach a root key kept in a KMS
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: StateCmd) -> anyhow::Result<ExitCode> {
    let StateCmd::Reseal {
        data_dir,
        keys_dir,
        config,
    } = cmd;
    let keys_dir = keys_dir.unwrap_or_else(|| data_dir.join("keys"));
    // The server must not be running: it owns the files and the list.
    let _lock = tv_store::lock_data_dir(&data_dir)
        .context("the data directory is in use: stop the server first")?;
    let root: Arc<dyn tv_crypto::RootKeySource> = match config {
        Some(cfg) => {
            match tv_server::RawConfig::resolve(&tv_server::RawConfig::default(), Some(&cfg))?.root
            {
                tv_server::config::RootSource::Transit(t) => Arc::new(
                    tv_server::kms::TransitRootKey::connect(*t)
                        .context("connecting to the KMS ([keys.transit])")?,
                ),
                tv_server::config::RootSource::File => file_root(&keys_dir)?,
            }
        }
        None => file_root(&keys_dir)?,
    };
    let key = stateseal::load_key(&keys_dir, root.as_ref(), true)?;
    // What changed, as far as the old list can still tell.
    let before: Vec<String> = match stateseal::StateSeal::with_key(&data_dir, key.clone()) {
        Ok(old) => old
            .check()
            .into_iter()
            .map(|m| format!("{}: {}", m.path, m.what))
            .collect(),
        Err(e) => vec![format!("{}: {e:#}", stateseal::MANIFEST)],
    };
    for b in &before {
        println!("accepting {b}");
    }
    let n = stateseal::StateSeal::fresh(&data_dir, key).seal_all()?;
    tv_crypto::fsio::atomic_write(
        &data_dir.join(stateseal::RESEAL_MARKER),
        &serde_json::to_vec(&serde_json::json!({
            "resealed_unix": tv_access::now_unix(),
            "files": n,
            "accepted": before,
        }))?,
        0o600,
    )?;
    println!("sealed {n} trusted files; the next start records this in the audit log");
    Ok(ExitCode::SUCCESS)
}

fn file_root(keys_dir: &std::path::Path) -> anyhow::Result<Arc<dyn tv_crypto::RootKeySource>> {
    let p = keys_dir.join("root.key");
    anyhow::ensure!(
        p.exists(),
        "no root key at {} (give --config for a KMS root)",
        p.display()
    );
    let (root, _) = tv_crypto::FileRootKey::load_or_create(&p)?;
    Ok(Arc::new(root))
}
