//! Crypto-shredding a tenant (issue 6, GDPR Art. 17).
//!
//! Order, each step durable before the next, so a crash part-way leaves a state the next start
//! finishes (an erasure record in `DIR/erased/` is the promise to finish):
//!
//! 1. the store refuses new writes for the tenant and seals what it holds into blocks;
//! 2. the log gets an erase leaf (committing to the tenant through a salted digest, never its
//!    name) and is flushed; the erasure record `DIR/erased/<tenant>.json` is written;
//! 3. every version of the tenant's keys is destroyed (files overwritten and removed, its KMS
//!    key deleted) and the cached keys dropped;
//! 4. each of its blocks gets an erased-block leaf (flushed), then the file is deleted.
//!
//! `verify` then passes: every deleted block is accounted for by a leaf, and the record names the
//! tenant the erase leaf commits to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tv_crypto::fsio;
use tv_model::TenantId;
use tv_tlog::leaf::{self, EraseLeaf, ErasedBlockLeaf, Leaf};

use crate::StoreError;
use crate::store::Inner;

const RECORD_FORMAT: u32 = 1;

/// The erasure record of one tenant (`DIR/erased/<tenant>.json`). It holds no key material; it
/// is what keeps the tenant refused after a restart or a key restore, and what lets `verify`
/// name the tenant an erase leaf commits to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Erasure {
    pub format: u32,
    pub tenant: String,
    /// Hex of the salt of the log's tenant commitment.
    pub salt: String,
    pub erased_unix_nanos: u64,
    /// The erase leaf's index (None when the store runs without a log: benchmarks only).
    pub log_index: Option<u64>,
    /// Tenant key versions destroyed.
    pub key_versions: Vec<u32>,
    /// The KMS key deleted, when the root is a KMS.
    pub root_key: Option<String>,
    /// Blocks deleted, and the spans they held (as far as the store knew them).
    pub blocks: u64,
    pub spans: u64,
    /// Every step done (false: a start finishes it).
    pub complete: bool,
}

impl Erasure {
    /// The tenant commitment the erase leaf holds, re-derived from this record.
    pub fn commitment(&self) -> Option<[u8; 32]> {
        let salt: [u8; 32] = hex::decode(&self.salt).ok()?.try_into().ok()?;
        Some(leaf::tenant_commitment(&salt, &self.tenant))
    }
}

pub fn erased_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("erased")
}

fn record_path(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    erased_dir(data_dir).join(format!("{tenant}.json"))
}

/// Every erasure record under `data_dir`, by tenant name.
pub fn records(data_dir: &Path) -> Result<Vec<Erasure>, StoreError> {
    let dir = erased_dir(data_dir);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    for e in rd {
        let path = e.map_err(|e| StoreError::io(&dir, e))?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        out.push(read_record(&path)?);
    }
    out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(out)
}

fn read_record(path: &Path) -> Result<Erasure, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let r: Erasure = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corruption {
        path: path.display().to_string(),
        offset: 0,
        reason: format!("not an erasure record: {e}"),
    })?;
    if r.format != RECORD_FORMAT {
        return Err(StoreError::Version {
            what: format!("erasure record {}", path.display()),
            version: r.format,
            supported: format!("version {RECORD_FORMAT}"),
        });
    }
    Ok(r)
}

/// The erasure record of `tenant`, if it was (or is being) erased.
pub fn record_of(data_dir: &Path, tenant: &TenantId) -> Result<Option<Erasure>, StoreError> {
    let path = record_path(data_dir, tenant);
    if !path.exists() {
        return Ok(None);
    }
    read_record(&path).map(Some)
}

/// Whether `tenant`'s erasure is finished (an interrupted one is finished by erasing again).
pub fn is_erased(data_dir: &Path, tenant: &TenantId) -> Result<bool, StoreError> {
    Ok(record_of(data_dir, tenant)?.is_some_and(|r| r.complete))
}

fn write_record(data_dir: &Path, r: &Erasure) -> Result<(), StoreError> {
    let dir = erased_dir(data_dir);
    fsio::create_private_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let tenant = TenantId::parse(&r.tenant).map_err(|e| StoreError::Decode(e.to_string()))?;
    let path = record_path(data_dir, &tenant);
    let json = serde_json::to_vec_pretty(r).map_err(|e| StoreError::Decode(e.to_string()))?;
    fsio::atomic_write(&path, &json, 0o600).map_err(|e| StoreError::io(&path, e))
}

/// The blocks of `tenant` still stored (any left after its keys are gone): (id, key).
fn block_files(inner: &Inner, tenant: &TenantId) -> Result<Vec<(u64, String)>, StoreError> {
    let mut out = Vec::new();
    for o in inner
        .objects
        .list(&format!("blocks/{}/", tenant.as_str()))?
    {
        if let Some((t, id)) = crate::block::parse_block_key(&o.key)
            && &t == tenant
        {
            out.push((id, o.key));
        }
    }
    out.sort();
    Ok(out)
}

/// Steps 2 to 4 for `tenant` (its writes already refused and its head sealed). `earlier`: the
/// record of an erasure a crash interrupted, to finish.
pub(crate) fn erase_blocking(
    inner: &Inner,
    tenant: &TenantId,
    earlier: Option<Erasure>,
) -> Result<Erasure, StoreError> {
    let _one = inner.maintenance.lock().expect("maintenance lock poisoned");
    let data_dir = inner.cfg.data_dir.clone();
    let files = block_files(inner, tenant)?;
    let spans: u64 = {
        let st = inner.state.read().expect("state lock poisoned");
        st.blocks
            .get(tenant)
            .map(|v| v.iter().map(|b| b.index.span_count).sum())
            .unwrap_or(0)
    };
    let mut rec = match earlier {
        Some(r) => r,
        None => {
            let salt = tv_crypto::random_bytes::<32>();
            let now = crate::now_unix_nanos();
            let log_index = match &inner.log {
                Some(log) => {
                    let i = log.push(
                        Leaf::Erase(EraseLeaf {
                            erased_unix_nanos: now,
                            tenant_commitment: leaf::tenant_commitment(&salt, tenant.as_str()),
                            blocks: files.len() as u64,
                        })
                        .encode(),
                    );
                    log.flush_through(i)?;
                    Some(i)
                }
                None => None,
            };
            let r = Erasure {
                format: RECORD_FORMAT,
                tenant: tenant.to_string(),
                salt: hex::encode(salt),
                erased_unix_nanos: now,
                log_index,
                key_versions: Vec::new(),
                root_key: None,
                blocks: files.len() as u64,
                spans,
                complete: false,
            };
            write_record(&data_dir, &r)?;
            r
        }
    };
    // Nothing of the tenant is served from here on, even if destroying its keys fails now.
    {
        let mut st = inner.state.write().expect("state lock poisoned");
        st.blocks.remove(tenant);
        st.peers.remove(tenant);
        st.head.retain(|r| &r.tenant != tenant);
    }
    // The keys: after this nothing can decrypt the tenant's data, wherever a copy of it is.
    let destroyed = inner.keyring.destroy(tenant).map_err(StoreError::Crypto)?;
    if !destroyed.versions.is_empty() {
        rec.key_versions = destroyed.versions;
    }
    if destroyed.root_key.is_some() {
        rec.root_key = destroyed.root_key;
    }
    write_record(&data_dir, &rec)?;
    // The ciphertext: each deletion logged first, so verify tells it from tampering.
    if let (Some(log), Some(ei)) = (&inner.log, rec.log_index)
        && !files.is_empty()
    {
        let mut last = 0;
        for (id, key) in &files {
            let digest = tv_tlog::commit::sha256(&inner.objects.get(key)?.0);
            last = log.push(
                Leaf::ErasedBlock(ErasedBlockLeaf {
                    block_id: *id,
                    deleted_unix_nanos: crate::now_unix_nanos(),
                    file_sha256: digest,
                    erase_index: ei,
                })
                .encode(),
            );
        }
        log.flush_through(last)?;
    }
    for (_, key) in &files {
        inner.objects.delete(key)?;
    }
    rec.complete = true;
    write_record(&data_dir, &rec)?;
    tracing::warn!(tenant = %tenant, blocks = rec.blocks, spans = rec.spans, versions = ?rec.key_versions, "tenant erased: its keys are destroyed and its blocks deleted");
    Ok(rec)
}

/// At start: every erased tenant is refused from now on, and an erasure a crash interrupted is
/// finished. Runs before blocks are loaded (an erased tenant's blocks have no keys).
pub(crate) fn apply_records(inner: &Arc<Inner>) -> Result<Vec<Erasure>, StoreError> {
    let recs = records(&inner.cfg.data_dir)?;
    for r in &recs {
        let t = TenantId::parse(&r.tenant).map_err(|e| StoreError::Corruption {
            path: erased_dir(&inner.cfg.data_dir).display().to_string(),
            offset: 0,
            reason: format!("erasure record of an invalid tenant id: {e}"),
        })?;
        inner.keyring.mark_erased(&t);
    }
    Ok(recs)
}
