//! Which tenant key version wraps the data key of each stored object, read from the files without
//! any key: block headers (`blocks/<tenant>/*.tvb`) and the key records of WAL segments.

use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::objects::Objects;
use crate::wal::{self, Recovered};

/// One data key on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// Relative to the data directory.
    pub file: PathBuf,
    pub tenant: String,
    pub kek_version: u32,
    pub wrapped: tv_crypto::WrappedDataKey,
}

/// The files under `dir` whose extension is `ext`, in name order.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    crate::verify::walk(dir, &mut all);
    all.retain(|p| p.extension().is_some_and(|e| e == ext));
    all
}

/// Every block's (in `objects`) and WAL segment's (under `wal_dir`) data keys with the tenant
/// key version wrapping them.
pub fn key_use(objects: &dyn Objects, wal_dir: &Path) -> Result<Vec<KeyUse>, StoreError> {
    let mut out = Vec::new();
    for b in objects.list("blocks/")? {
        if crate::block::parse_block_key(&b.key).is_none() {
            continue;
        }
        let (tenant, w) = crate::block::wrapped_key_of(objects, &b.key)?;
        out.push(KeyUse {
            file: PathBuf::from(&b.key),
            tenant,
            kek_version: w.kek_version,
            wrapped: w,
        });
    }
    let rel = |p: &Path| {
        let base = wal_dir.parent().unwrap_or(wal_dir);
        p.strip_prefix(base).unwrap_or(p).to_path_buf()
    };
    for s in files_with(wal_dir, "wal") {
        for r in wal::read_segment(&s)?.records {
            if let Recovered::Key {
                tenant, wrapped, ..
            } = r
            {
                out.push(KeyUse {
                    file: rel(&s),
                    tenant: tenant.to_string(),
                    kek_version: wrapped.kek_version,
                    wrapped,
                });
            }
        }
    }
    Ok(out)
}
