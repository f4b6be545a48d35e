//! Key hierarchy and envelope encryption for tracevault.
//!
//! Keys form three levels (see docs/ARCHITECTURE.md):
//!
//! ```text
//! root key (RootKeySource: a 0600 file by default)
//!   └─ tenant key-encryption key, versioned, wrapped by the root key (AES-256-GCM)
//!        └─ data key, fresh per block / per WAL segment, wrapped by the tenant key (AES-KW, RFC 3394)
//! ```
//!
//! Data is sealed with AES-256-GCM under a data key; nonces are a per-object counter, and a data
//! key is never reused across objects, so a nonce never repeats under a key. Every wrapped data key
//! carries a key commitment (HMAC-SHA256 of a fixed label under the key) checked on unwrap, so a
//! header cannot be made to open under two keys. All primitives come from `aws-lc-rs`.
//!
//! This crate does not decide *what* to encrypt; `tv-store` does.
//!
//! ```
//! use tv_crypto::DataKey;
//! let key = DataKey::random();
//! let mut buf = b"span".to_vec();
//! key.seal(7, b"aad", &mut buf).unwrap();
//! assert_eq!(key.open(7, b"aad", &mut buf).unwrap(), b"span");
//! ```
#![forbid(unsafe_code)]

pub mod backup;
pub mod fsio;
mod keyring;
mod keys;
mod root;

pub use keyring::{Destroyed, KeyShare, Keyring, WrappedDataKey, current_versions};
pub use keys::{DataKey, SecretKey, random_bytes};
pub use root::{FileRootKey, RootKeySource, rewrap_checked};

/// Errors from key handling and envelope encryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("decryption failed for {0}: wrong key or damaged data")]
    Decrypt(String),
    #[error("key commitment mismatch for {0}: the wrapped key does not match its commitment")]
    Commitment(String),
    #[error("{what} has unsupported format version {version}")]
    Version { what: String, version: u32 },
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: String, mode: u32 },
    #[error("key material for tenant {tenant} version {version} is missing")]
    MissingKey { tenant: String, version: u32 },
    /// The tenant was erased: its keys are destroyed and nothing of it is read or written again.
    #[error("tenant {0} was erased (its keys were destroyed)")]
    Erased(String),
    #[error("invalid key file {path}: {reason}")]
    BadKeyFile { path: String, reason: String },
    #[error("crypto operation failed: {0}")]
    Primitive(&'static str),
    /// The external KMS refused or did not answer (never includes credentials).
    #[error("key management service: {0}")]
    Kms(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CryptoError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
