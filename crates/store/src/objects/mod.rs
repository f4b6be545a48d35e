//! The storage seam (docs/adr/0021): immutable objects under string keys, created once, with
//! compare-and-swap for the few mutable pointers. [`LocalDir`] keeps them as files under a
//! directory (today's layout: a key is a relative path); [`Remote`] keeps them in an
//! S3-compatible bucket (or GCS, Azure) through the `object_store` crate. Both pass the same
//! tests (`crates/store/tests/objects.rs`, the bucket one against a real SeaweedFS).

mod local;
mod remote;

pub use local::LocalDir;
pub use remote::{Remote, RemoteConfig, RemoteConfigError};

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
