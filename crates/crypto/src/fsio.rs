//! Small durable-file helpers: private directories, 0600 files, atomic replace with fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700 if absent.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// The directory `path` is in: `.` for a bare file name (whose `parent()` is empty).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to `path` atomically (temp file, fsync, rename, fsync dir) with the given mode.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(crate::random_bytes::<6>())));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Overwrites `path` with zeros (fsynced), then removes it. On copy-on-write or flash storage the
/// old blocks may survive the overwrite; what makes a destroyed key unrecoverable is that no copy
/// of its wrapped form and the root survives together (see the operator's guide).
pub fn shred(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            let len = f.metadata()?.len();
            f.write_all(&vec![0u8; len as usize])?;
            f.sync_all()?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads a JSON map of hex SHA-256 digests to hex byte strings (the files holding re-wrapped
/// keys, keyed by what they re-wrap); empty when the file does not exist.
pub fn read_digest_map(
    path: &Path,
) -> Result<std::collections::HashMap<[u8; 32], Vec<u8>>, crate::CryptoError> {
    let bad = |reason: String| crate::CryptoError::BadKeyFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(crate::CryptoError::io(path, e)),
    };
    let m: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    m.into_iter()
        .map(|(k, v)| {
            let k: [u8; 32] = hex::decode(&k)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| bad(format!("{k:?} is not a hex SHA-256 digest")))?;
            let v = hex::decode(&v).map_err(|e| bad(e.to_string()))?;
            Ok((k, v))
        })
        .collect()
}

/// Writes what [`read_digest_map`] reads (0600, atomically).
pub fn write_digest_map(
    path: &Path,
    map: &std::collections::HashMap<[u8; 32], Vec<u8>>,
) -> Result<(), crate::CryptoError> {
    let file: std::collections::BTreeMap<String, String> = map
        .iter()
        .map(|(k, v)| (hex::encode(k), hex::encode(v)))
        .collect();
    let json = serde_json::to_vec_pretty(&file).map_err(|e| crate::CryptoError::BadKeyFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    atomic_write(path, &json, 0o600).map_err(|e| crate::CryptoError::io(path, e))
}

/// Creates `path` with `data` and mode 0600, failing if it exists.
pub fn create_private_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    sync_dir(parent_dir(path))?;
    Ok(())
}

/// The permission bits of `path`.
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Finds files and directories under `dir` (recursively) that group or others may access:
/// `(path, mode)`.
pub fn open_to_others(dir: &Path) -> io::Result<Vec<(std::path::PathBuf, u32)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = mode_of(&d)?;
        if m & 0o077 != 0 {
            out.push((d.clone(), m));
        }
        for e in fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let m = mode_of(&p)?;
                if m & 0o077 != 0 {
                    out.push((p, m));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        // `keys backup --out keys.age` wrote the file, then failed to sync "" (its parent).
        assert_eq!(parent_dir(Path::new("keys.age")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/keys.age")), Path::new("out"));
        assert_eq!(parent_dir(Path::new("/keys.age")), Path::new("/"));
    }
}
