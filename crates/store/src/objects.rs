//! The storage seam (docs/adr/0021): immutable objects under string keys, created once, with
//! compare-and-swap for the few mutable pointers. [`LocalDir`] keeps them as files under a
//! directory (today's layout: a key is a relative path); an object-store implementation
//! (S3-compatible, through the `object_store` crate) comes next and must behave the same, which
//! the tests here describe.
//!
//! Not wired in yet: blocks, log tiles and state files still use their own file code.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tv_crypto::fsio;

/// An object's name, size and version (local: the SHA-256 of its bytes; S3: its ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub version: String,
}

/// How a `put` may treat an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Only if no object has the key (S3 `If-None-Match: *`).
    Create,
    /// Only if the object's version is still this one (S3 `If-Match`). Versions are content
    /// hashes: a pointer's body must carry a generation number, or writing the same bytes
    /// twice would pass an outdated check (ABA).
    IfMatch(String),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    #[error("object {0} already exists")]
    AlreadyExists(String),
    #[error("object {key} changed since version {expected} was read")]
    Conflict { key: String, expected: String },
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object {key}: range {start}..{end} is outside its {size} bytes")]
    Range {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("bad object key {key:?}: {why}")]
    BadKey { key: String, why: &'static str },
    #[error("object {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where immutable objects live.
pub trait Objects: Send + Sync + std::fmt::Debug {
    /// Writes `data` under `key` as `mode` allows; the new object's meta.
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta, ObjectError>;
    /// The whole object.
    fn get(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), ObjectError>;
    /// Bytes `range` of the object (S3 ranged GET); a range past its end is an error.
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, ObjectError>;
    /// The object's meta, or `None` when there is none.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError>;
    /// Every object whose key starts with `prefix` (a plain string prefix, as S3's), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError>;
    /// Removes the object; removing one that is not there is not an error.
    fn delete(&self, key: &str) -> Result<(), ObjectError>;
}

/// Checks a key: relative `/`-separated segments of printable ASCII without `.`/`..` segments,
/// at most 1024 bytes (S3's limit), so the same key is a safe path here and a valid S3 key.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    let bad = |why| {
        Err(ObjectError::BadKey {
            key: key.chars().take(80).collect(),
            why,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return bad("keys are 1 to 1024 bytes");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return bad("keys are printable ASCII without spaces or backslashes");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("keys are relative, with no empty, `.` or `..` segment");
    }
    if key.split('/').any(|s| s.contains(".tmp-")) {
        return bad("`.tmp-` marks files being written");
    }
    Ok(())
}

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

fn version_of(data: &[u8]) -> String {
    hex::encode(tv_tlog::commit::sha256(data))
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
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(ObjectError::AlreadyExists(key.to_owned()))
                }
                Err(e) => Err(io(key)(e)),
            },
            PutMode::IfMatch(expected) => {
                let _g = self.swap.lock().expect("swap lock");
                match std::fs::read(&path) {
                    Ok(cur) if &version_of(&cur) == expected => {
                        std::fs::rename(&tmp, &path).map_err(io(key))
                    }
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
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: data.len() as u64,
            version: version_of(data),
        })
    }

    fn get(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), ObjectError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(data) => {
                let meta = ObjectMeta {
                    key: key.to_owned(),
                    size: data.len() as u64,
                    version: version_of(&data),
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
        match self.get(key) {
            Ok((_, meta)) => Ok(Some(meta)),
            Err(ObjectError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
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
            let data = std::fs::read(&path).map_err(io(&key))?;
            out.push(ObjectMeta {
                size: data.len() as u64,
                version: version_of(&data),
                key,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => fsio::sync_dir(fsio::parent_dir(&path)).map_err(io(key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(key)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalDir) {
        let t = tempfile::tempdir().unwrap();
        let s = LocalDir::new(t.path().join("objects"));
        (t, s)
    }

    #[test]
    fn objects_are_created_once() {
        let (_t, s) = store();
        let m = s.put("log/tile/0/000", b"one", PutMode::Create).unwrap();
        assert_eq!(m.size, 3);
        let e = s
            .put("log/tile/0/000", b"two", PutMode::Create)
            .unwrap_err();
        assert!(matches!(e, ObjectError::AlreadyExists(_)), "{e}");
        assert_eq!(s.get("log/tile/0/000").unwrap().0, b"one");
        assert!(s.list("").unwrap().iter().all(|o| !o.key.contains(".tmp-")));
    }

    #[test]
    fn concurrent_creates_have_one_winner() {
        let (_t, s) = store();
        let s = std::sync::Arc::new(s);
        for round in 0..20 {
            let key = format!("checkpoints/{round:020}");
            let wins: usize = (0..8)
                .map(|i| {
                    let (s, key) = (s.clone(), key.clone());
                    std::thread::spawn(move || {
                        s.put(&key, format!("writer {i}").as_bytes(), PutMode::Create)
                            .is_ok()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap() as usize)
                .sum();
            assert_eq!(wins, 1, "round {round}");
        }
    }

    #[test]
    fn pointers_change_only_from_the_version_read() {
        let (_t, s) = store();
        let v1 = s.put("log/checkpoint", b"gen 1", PutMode::Create).unwrap();
        let v2 = s
            .put(
                "log/checkpoint",
                b"gen 2",
                PutMode::IfMatch(v1.version.clone()),
            )
            .unwrap();
        let e = s
            .put("log/checkpoint", b"gen 3", PutMode::IfMatch(v1.version))
            .unwrap_err();
        assert!(matches!(e, ObjectError::Conflict { .. }), "{e}");
        assert_eq!(s.head("log/checkpoint").unwrap().unwrap(), v2);
        let e = s
            .put("absent", b"x", PutMode::IfMatch(v2.version))
            .unwrap_err();
        assert!(matches!(e, ObjectError::NotFound(_)), "{e}");
    }

    #[test]
    fn ranges_lists_and_deletes_behave_as_s3() {
        let (_t, s) = store();
        for k in [
            "blocks/acme/2.tvb",
            "blocks/acme/1.tvb",
            "blocks/b/1.tvb",
            "log/x",
        ] {
            s.put(k, k.as_bytes(), PutMode::Create).unwrap();
        }
        assert_eq!(s.get_range("blocks/b/1.tvb", 7..9).unwrap(), b"b/");
        let e = s.get_range("blocks/b/1.tvb", 5..99).unwrap_err();
        assert!(matches!(e, ObjectError::Range { .. }), "{e}");
        let keys =
            |p: &str| -> Vec<String> { s.list(p).unwrap().into_iter().map(|o| o.key).collect() };
        assert_eq!(
            keys("blocks/acme/"),
            ["blocks/acme/1.tvb", "blocks/acme/2.tvb"]
        );
        assert_eq!(keys("blocks/a"), ["blocks/acme/1.tvb", "blocks/acme/2.tvb"]);
        assert_eq!(keys("").len(), 4);
        assert!(keys("nothing/").is_empty());
        s.delete("blocks/b/1.tvb").unwrap();
        s.delete("blocks/b/1.tvb").unwrap();
        assert!(s.head("blocks/b/1.tvb").unwrap().is_none());
        // An object cannot also be a prefix of others (S3 refuses that too).
        let e = s.put("log/x/y", b"", PutMode::Create).unwrap_err();
        assert!(matches!(e, ObjectError::BadKey { .. }), "{e}");
        let e = s.put("blocks/acme", b"", PutMode::Create).unwrap_err();
        assert!(matches!(e, ObjectError::BadKey { .. }), "{e}");
    }

    #[test]
    fn keys_that_would_escape_or_confuse_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            "a b",
            "a\\b",
            "a\u{7f}",
            "x.tmp-1",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a",
            "blocks/acme/00000000000000a1.tvb",
            "log/tile/0/x001/234.p/7",
        ] {
            check_key(good).unwrap();
        }
        let (_t, s) = store();
        assert!(matches!(
            s.get("../outside").unwrap_err(),
            ObjectError::BadKey { .. }
        ));
    }
}
