//! Durable, encrypted trace storage: a group-committed write-ahead log and sealed blocks.
//!
//! Data flow: [`Store::append`] hands an [`EncodedBatch`] (a validated batch, protobuf-encoded and
//! zstd-compressed by the caller's thread) to the WAL writer thread, which encrypts it under the
//! tenant's segment key, writes it, and acknowledges only after the `fdatasync` that covers it has
//! returned (group commit: every request waiting at that moment shares the sync). Closed segments
//! are sealed by a background thread into per-tenant blocks (see [`block`]) and then deleted.
//! Queries read the in-memory head (acknowledged, not yet sealed) and the blocks.
//!
//! Nothing under the data directory is plaintext span data: WAL records, blocks and their indexes
//! are all AES-256-GCM encrypted under keys from [`tv_crypto::Keyring`].
#![forbid(unsafe_code)]

pub mod block;
pub mod cluster;
pub mod columns;
pub mod commit;
pub mod erase;
pub mod format;
pub mod logdir;
pub mod objects;
pub mod prove;
mod query;
mod store;
pub mod txlog;
pub mod verify;
pub mod wal;

/// Which tenant key version wraps each stored object (issue 6).
pub mod keyuse;

pub use query::{BlockHints, SearchQuery, TagScope, TraceSummary, Visit};
pub use store::{
    BatchSummary, CompactionConfig, CompactionReport, EncodedBatch, Store, StoreConfig,
    StoreObserver, StoreStats,
};
pub use txlog::{LogConfig, TxLog};
pub use wal::SyncHook;

/// Storage errors, each mapping to a request outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        path: String,
        offset: u64,
        reason: String,
    },
    #[error("{what} has unsupported format version {version}; this build reads {supported}")]
    Version {
        what: String,
        version: u32,
        /// The versions this build reads, in words ("version 2", "versions 2 to 3").
        supported: String,
    },
    #[error(transparent)]
    Crypto(tv_crypto::CryptoError),
    #[error("storage is overloaded ({0}); retry later")]
    Overloaded(String),
    /// Another process holds the data directory.
    #[error("{0} is in use by another tracevault process (a running server?); stop it first")]
    Locked(String),
    /// Another process writes the same log (or holds the same node id): this one must stop.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The tenant was erased (or is being erased): it accepts and holds no data.
    #[error("tenant {0} was erased: it accepts no data and holds none")]
    Erased(String),
    #[error("storage is shutting down")]
    ShuttingDown,
    #[error("invalid stored data: {0}")]
    Decode(String),
    #[error(transparent)]
    Object(#[from] crate::objects::ObjectError),
}

impl StoreError {
    /// Whether trying again later may succeed (a full disk, an unreachable object store).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io { .. } => true,
            StoreError::Object(e) => e.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Takes the data directory's exclusive lock (`DIR/lock`, released when the file is dropped or
/// the process ends): one server, or one offline tool that writes, at a time.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StoreError> {
    tv_crypto::fsio::create_private_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
    }
}

pub(crate) fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
