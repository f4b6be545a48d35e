//! A node of a cluster on a bucket (issue 21, docs/adr/0021): opening the bucket at start with
//! errors that say what to fix, and the node's state for `/ready`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tv_store::objects::{ObjectError, Remote, RemoteConfig, SharedObjects};

use crate::config::ClusterSettings;

/// How long a node's lease lasts without renewal (renewed every refresh interval).
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Opens the bucket and checks that it answers with these credentials (one signed request).
pub async fn open_bucket(c: &ClusterSettings) -> anyhow::Result<SharedObjects> {
    let mut rc = RemoteConfig::new(&c.url);
    rc.options = c.options.clone();
    rc.request_timeout = c.request_timeout;
    rc.deadline = c.request_timeout * 2;
    let remote = Remote::open(&rc)?;
    if remote.plain_http {
        tracing::warn!(
            url = %c.url,
            "INSECURE: the object store is reached over plain HTTP (AWS_ALLOW_HTTP), for a test server on this machine only; blocks are encrypted, but credentials and metadata are not protected in transit"
        );
    }
    let bucket: SharedObjects = Arc::new(remote);
    let probe = bucket.clone();
    let node = c.node.clone();
    // A listing (not a HEAD): its error answer names the cause (NoSuchBucket,
    // SignatureDoesNotMatch, AccessDenied, ...).
    let r = tokio::task::spawn_blocking(move || probe.list_dirs(&format!("nodes/{node}/"))).await?;
    match r {
        Ok(_) => {}
        Err(ObjectError::Denied { reason, .. }) => bail!(
            "object store {}: access refused ({reason}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the config's storage.object_store_options) and that the bucket exists",
            c.url
        ),
        Err(e) => bail!(
            "object store {} does not answer ({e}); check the endpoint (AWS_ENDPOINT_URL) and the network",
            c.url
        ),
    }
    tracing::info!(url = %c.url, node = %c.node, "cluster node on the object store");
    Ok(bucket)
}
