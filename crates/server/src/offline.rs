//! Operations on a stopped server's data directory (issue 6): erasing a tenant when the server
//! cannot run. It takes the data directory's lock (refused while a server holds it), runs the
//! same recovery a start does, and writes the same log entries and audit record the API would.

use std::sync::Arc;

use tv_crypto::Keyring;
use tv_model::TenantId;
use tv_store::StoreConfig;

use crate::config::ServeConfig;

/// Erases `tenant` in `cfg`'s data directory (with `confirm`), or answers what that would
/// destroy. The same answer as `POST /api/admin/tenants/erase`.
pub async fn erase_tenant(
    cfg: &ServeConfig,
    tenant: &TenantId,
    confirm: bool,
) -> anyhow::Result<serde_json::Value> {
    // Never create a data directory or a root key here: only work on what a server made.
    if !cfg.data_dir.join("log/checkpoint").is_file() {
        anyhow::bail!(
            "{} is not a tracevault data directory (it has no log/checkpoint)",
            cfg.data_dir.display()
        );
    }
    if matches!(cfg.root, crate::config::RootSource::File)
        && !cfg.keys_dir.join("root.key").is_file()
    {
        anyhow::bail!(
            "no root key at {} (for a KMS root, pass the server's --config)",
            cfg.keys_dir.join("root.key").display()
        );
    }
    let lock = Arc::new(tv_store::lock_data_dir(&cfg.data_dir)?);
    if tv_store::erase::is_erased(&cfg.data_dir, tenant)? {
        anyhow::bail!("tenant {tenant} was already erased");
    }
    let root = crate::open_root(cfg)?;
    if cfg.cluster.is_some() {
        anyhow::bail!(
            "this configuration names an object store: a cluster node's tenants are erased through a running node's API (POST /api/admin/tenants/erase), not offline"
        );
    }
    let keyring = Arc::new(Keyring::open(&cfg.keys_dir, root.clone())?);
    let log = crate::logkeys::load_or_create(&cfg.keys_dir, root.as_ref())?;
    let origin = log.origin.clone();
    let mut scfg = StoreConfig::new(&cfg.data_dir);
    scfg.lock = Some(lock);
    let store = crate::open_store(scfg, log, cfg.checkpoint_interval, keyring.clone()).await?;
    if !confirm {
        let preview = crate::api::admin::keys::erase_preview(tenant, &keyring, &store);
        store.shutdown();
        return Ok(preview?);
    }
    let audit = crate::audit::Audit::open(
        &cfg.data_dir,
        None,
        &cfg.keys_dir,
        root.clone(),
        &origin,
        None,
        cfg.checkpoint_interval,
        Arc::new(crate::metrics::Metrics::new()),
    )?;
    let started = std::time::Instant::now();
    let res = store.erase_tenant(tenant).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let out = match res {
        Ok(rec) => {
            audit.system(
                "admin_keys",
                format!(
                    "{} (offline, on the stopped server's data directory)",
                    crate::api::admin::keys::erase_resource(tenant, &rec)
                ),
                tenant,
            );
            Ok(crate::api::admin::keys::erase_done(
                tenant,
                root.as_ref(),
                &rec,
                ms,
            ))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("erasing tenant {tenant}"))),
    };
    audit.shutdown();
    store.shutdown();
    out
}
