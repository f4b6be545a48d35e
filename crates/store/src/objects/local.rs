//! Objects as files under a directory: today's data-directory layout.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tv_crypto::fsio;

use super::{ObjectError, ObjectMeta, Objects, PutMode, check_key};

/// Objects as files under a directory (mode 0600, directories 0700), each written to a
/// temporary file, synced, then linked or renamed into place and the directory synced.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    /// Serializes compare-and-swap within the process (the data directory's lock keeps other
    /// processes out).
    swap: Mutex<()>,
}

fn io(key: &str) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Io {
        key: key.to_owned(),
        source,
    }
}

/// Objects up to this size are versioned by their content's hash (pointers, which compare and
/// swap); larger ones (blocks, created once) by file identity, so listing reads no contents.
const HASHED_VERSION_MAX: u64 = 64 * 1024;

fn version_of(data: &[u8]) -> String {
    hex::encode(tv_tlog::commit::sha256(data))
}

/// The version of the file at `path` with metadata `m` (and its bytes, when already read).
fn version_at(path: &Path, m: &std::fs::Metadata, data: Option<&[u8]>) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    if m.len() <= HASHED_VERSION_MAX {
        return Ok(match data {
            Some(d) => version_of(d),
            None => version_of(&std::fs::read(path)?),
        });
    }
    Ok(format!(
        "f{:x}-{:x}-{:x}",
        m.ino(),
        m.len(),
        m.mtime_nsec() as u64 ^ ((m.mtime() as u64) << 30)
    ))
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir {
            root: root.into(),
            swap: Mutex::new(()),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, ObjectError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// A synced temporary file beside `path` holding `data`.
    fn temp(&self, key: &str, path: &Path, data: &[u8]) -> Result<PathBuf, ObjectError> {
        let dir = fsio::parent_dir(path);
        for d in dir.ancestors().take_while(|d| d.starts_with(&self.root)) {
            if d.is_file() {
                return Err(ObjectError::BadKey {
                    key: key.to_owned(),
                    why: "a prefix of the key is itself an object",
                });
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(key))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(
            "{name}.tmp-{}",
            hex::encode(tv_crypto::random_bytes::<6>())
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(key))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(io(key))?;
        Ok(tmp)
    }
}

impl Objects for LocalDir {
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta, ObjectError> {
        let path = self.path(key)?;
        if path.is_dir() {
            return Err(ObjectError::BadKey {
                key: key.to_owned(),
                why: "the key is a prefix of other objects",
            });
        }
        let tmp = self.temp(key, &path, data)?;
        let placed = match &mode {
            // A hard link fails if the name exists: create-only without a window.
            PutMode::Create => match std::fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(()),
                // The same bytes again are a retried write: done (as on the bucket side).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match std::fs::read(&path) {
                        Ok(cur) if cur == data => Ok(()),
                        _ => Err(ObjectError::AlreadyExists(key.to_owned())),
                    }
                }
                Err(e) => Err(io(key)(e)),
            },
            PutMode::IfMatch(expected) => {
                let _g = self.swap.lock().expect("swap lock");
                let current = std::fs::metadata(&path).and_then(|m| version_at(&path, &m, None));
                match current {
                    Ok(cur) if &cur == expected => std::fs::rename(&tmp, &path).map_err(io(key)),
                    Ok(_) => Err(ObjectError::Conflict {
                        key: key.to_owned(),
                        expected: expected.clone(),
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(ObjectError::NotFound(key.to_owned()))
                    }
                    Err(e) => Err(io(key)(e)),
                }
            }
        };
        let _ = std::fs::remove_file(&tmp);
        placed?;
        fsio::sync_dir(fsio::parent_dir(&path)).map_err(io(key))?;
        let m = std::fs::metadata(&path).map_err(io(key))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: data.len() as u64,
            version: version_at(&path, &m, Some(data)).map_err(io(key))?,
        })
    }

    fn get(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), ObjectError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(data) => {
                let m = std::fs::metadata(&path).map_err(io(key))?;
                let meta = ObjectMeta {
                    key: key.to_owned(),
                    size: data.len() as u64,
                    version: version_at(&path, &m, Some(&data)).map_err(io(key))?,
                };
                Ok((data, meta))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ObjectError::NotFound(key.to_owned()))
            }
            Err(e) => Err(io(key)(e)),
        }
    }

    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let path = self.path(key)?;
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound(key.to_owned()));
            }
            Err(e) => return Err(io(key)(e)),
        };
        let size = f.metadata().map_err(io(key))?.len();
        if range.start > range.end || range.end > size {
            return Err(ObjectError::Range {
                key: key.to_owned(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        let mut out = vec![0u8; (range.end - range.start) as usize];
        f.seek(SeekFrom::Start(range.start)).map_err(io(key))?;
        f.read_exact(&mut out).map_err(io(key))?;
        Ok(out)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: m.len(),
                version: version_at(&path, &m, None).map_err(io(key))?,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(key)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let key = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let t = e.file_type()?;
                if t.is_dir() {
                    walk(&e.path(), &key, out)?;
                } else if t.is_file() && !name.contains(".tmp-") {
                    out.push((key, e.path()));
                }
            }
            Ok(())
        }
        // Only the directory the prefix's complete segments name needs walking.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if !dir_part.is_empty() {
            check_key(dir_part)?;
        }
        let mut found = Vec::new();
        walk(&self.root.join(dir_part), dir_part, &mut found).map_err(io(prefix))?;
        let mut out = Vec::new();
        for (key, path) in found {
            if !key.starts_with(prefix) {
                continue;
            }
            let m = match std::fs::metadata(&path) {
                Ok(m) => m,
                // Deleted since the walk saw it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&key)(e)),
            };
            out.push(ObjectMeta {
                size: m.len(),
                version: version_at(&path, &m, None).map_err(io(&key))?,
                key,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let dir = match prefix.strip_suffix('/') {
            Some(d) => {
                check_key(d)?;
                self.root.join(d)
            }
            None if prefix.is_empty() => self.root.clone(),
            None => {
                return Err(ObjectError::BadKey {
                    key: prefix.to_owned(),
                    why: "a directory prefix ends with `/`",
                });
            }
        };
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(prefix)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io(prefix))?;
            if e.file_type().map_err(io(prefix))?.is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn put_file(&self, key: &str, src: &Path, mode: PutMode) -> Result<ObjectMeta, ObjectError> {
        let PutMode::Create = mode else {
            let data = std::fs::read(src).map_err(io(key))?;
            return self.put(key, &data, mode);
        };
        let path = self.path(key)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(fsio::parent_dir(&path))
            .map_err(io(key))?;
        // A hard link fails if the name exists: create-only without a window, and no copy.
        match std::fs::hard_link(src, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let same = std::fs::read(&path).ok() == std::fs::read(src).ok();
                if !same {
                    return Err(ObjectError::AlreadyExists(key.to_owned()));
                }
            }
            Err(e) => return Err(io(key)(e)),
        }
        fsio::sync_dir(fsio::parent_dir(&path)).map_err(io(key))?;
        let m = std::fs::metadata(&path).map_err(io(key))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: m.len(),
            version: version_at(&path, &m, None).map_err(io(key))?,
        })
    }

    fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {
                fsio::sync_dir(fsio::parent_dir(&path)).map_err(io(key))?;
                // Directories left empty go too (S3 has none), never the root.
                for d in path.ancestors().skip(1) {
                    if d == self.root
                        || !d.starts_with(&self.root)
                        || std::fs::remove_dir(d).is_err()
                    {
                        break;
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(key)(e)),
        }
    }
}
