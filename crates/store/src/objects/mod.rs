//! The storage seam (docs/adr/0021): immutable objects under string keys, created once, with
//! compare-and-swap for the few mutable pointers. [`LocalDir`] keeps them as files under a
//! directory (today's layout: a key is a relative path); [`Remote`] keeps them in an
//! S3-compatible bucket (or GCS, Azure) through the `object_store` crate. Both pass the same
//! tests (`crates/store/tests/objects.rs`, the bucket one against a real SeaweedFS).

mod cache;
mod local;
mod remote;

pub use cache::RangeCache;
pub use local::LocalDir;
use std::sync::Arc;

/// The store behind `objects`, shared.
pub type SharedObjects = Arc<dyn Objects>;
pub use remote::{Remote, RemoteConfig, RemoteConfigError};

/// An object's name, size and version (local: the SHA-256 of its bytes; S3: its ETag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The object store refused the credentials, or the bucket does not exist.
    #[error("object {key}: access refused: {reason}")]
    Denied { key: String, reason: String },
    /// The object store did not answer, or answered with a server error.
    #[error("object {key}: object store unavailable: {reason}")]
    Unavailable { key: String, reason: String },
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
    /// The names of the "directories" right under `prefix` (which ends with `/`): the next key
    /// segment of every object below it, sorted (S3's common prefixes).
    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ObjectError>;
    /// Writes the file at `path` (complete and synced) under `key`, as `put`; the file stays
    /// where it is. The local side links it instead of copying.
    fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        mode: PutMode,
    ) -> Result<ObjectMeta, ObjectError> {
        let data = std::fs::read(path).map_err(|source| ObjectError::Io {
            key: key.to_owned(),
            source,
        })?;
        self.put(key, &data, mode)
    }
    /// Where the object is a local file (the local side), for direct reads.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// What this is, for messages: a directory or a bucket URL.
    fn describe(&self) -> String;
}

/// Objects under a key prefix of another store (a node's own objects in a shared bucket).
#[derive(Debug, Clone)]
pub struct Prefixed {
    inner: std::sync::Arc<dyn Objects>,
    prefix: String,
}

impl Prefixed {
    /// `prefix` is a key (segments without a trailing slash).
    pub fn new(inner: std::sync::Arc<dyn Objects>, prefix: &str) -> Result<Self, ObjectError> {
        check_key(prefix)?;
        Ok(Prefixed {
            inner,
            prefix: format!("{prefix}/"),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn unkey(&self, mut e: ObjectError) -> ObjectError {
        let strip = |k: &mut String| {
            if let Some(r) = k.strip_prefix(&self.prefix) {
                *k = r.to_owned();
            }
        };
        match &mut e {
            ObjectError::AlreadyExists(k) | ObjectError::NotFound(k) => strip(k),
            ObjectError::Conflict { key, .. }
            | ObjectError::Range { key, .. }
            | ObjectError::BadKey { key, .. }
            | ObjectError::Denied { key, .. }
            | ObjectError::Unavailable { key, .. }
            | ObjectError::Io { key, .. } => strip(key),
        }
        e
    }

    fn meta(&self, mut m: ObjectMeta) -> ObjectMeta {
        if let Some(r) = m.key.strip_prefix(&self.prefix) {
            m.key = r.to_owned();
        }
        m
    }
}

impl Objects for Prefixed {
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta, ObjectError> {
        check_key(key)?;
        self.inner
            .put(&self.key(key), data, mode)
            .map(|m| self.meta(m))
            .map_err(|e| self.unkey(e))
    }
    fn get(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), ObjectError> {
        check_key(key)?;
        self.inner
            .get(&self.key(key))
            .map(|(d, m)| (d, self.meta(m)))
            .map_err(|e| self.unkey(e))
    }
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, ObjectError> {
        check_key(key)?;
        self.inner
            .get_range(&self.key(key), range)
            .map_err(|e| self.unkey(e))
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        check_key(key)?;
        self.inner
            .head(&self.key(key))
            .map(|m| m.map(|m| self.meta(m)))
            .map_err(|e| self.unkey(e))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        Ok(self
            .inner
            .list(&self.key(prefix))
            .map_err(|e| self.unkey(e))?
            .into_iter()
            .map(|m| self.meta(m))
            .collect())
    }
    fn delete(&self, key: &str) -> Result<(), ObjectError> {
        check_key(key)?;
        self.inner.delete(&self.key(key)).map_err(|e| self.unkey(e))
    }
    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        self.inner
            .list_dirs(&self.key(prefix))
            .map_err(|e| self.unkey(e))
    }
    fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        mode: PutMode,
    ) -> Result<ObjectMeta, ObjectError> {
        check_key(key)?;
        self.inner
            .put_file(&self.key(key), path, mode)
            .map(|m| self.meta(m))
            .map_err(|e| self.unkey(e))
    }
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(&self.key(key))
    }
    fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.inner.describe(),
            self.prefix.trim_end_matches('/')
        )
    }
}

impl ObjectError {
    /// Whether trying again later may succeed (the store or the disk, not the request, failed).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ObjectError::Unavailable { .. } | ObjectError::Denied { .. } | ObjectError::Io { .. }
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = tempfile::tempdir().unwrap();
        let s = LocalDir::new(t.path());
        assert!(matches!(
            s.get("../outside").unwrap_err(),
            ObjectError::BadKey { .. }
        ));
    }
}
