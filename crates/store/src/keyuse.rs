//! Which tenant key version wraps the data key of each stored object, read from the files without
//! any key: block headers (`blocks/<tenant>/*.tvb`) and the key records of WAL segments.

use std::path::{Path, PathBuf};

use crate::StoreError;
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

fn files_with(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_with(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

/// Every block's and WAL segment's data keys with the tenant key version wrapping them.
pub fn key_use(data_dir: &Path) -> Result<Vec<KeyUse>, StoreError> {
    let rel = |p: &Path| p.strip_prefix(data_dir).unwrap_or(p).to_path_buf();
    let mut out = Vec::new();
    let mut blocks = Vec::new();
    files_with(&data_dir.join("blocks"), "tvb", &mut blocks);
    for b in blocks {
        let (tenant, w) = crate::block::wrapped_key_of(&b)?;
        out.push(KeyUse {
            file: rel(&b),
            tenant,
            kek_version: w.kek_version,
            wrapped: w,
        });
    }
    let mut segs = Vec::new();
    files_with(&data_dir.join("wal"), "wal", &mut segs);
    for s in segs {
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
