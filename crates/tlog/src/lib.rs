//! The transparency log: RFC 6962 / RFC 9162 Merkle hashing, inclusion and consistency proofs
//! ([`merkle`]), C2SP signed notes ([`note`]), checkpoints ([`checkpoint`]) and cosignatures
//! ([`cosig`]: Ed25519 type 0x04 and ML-DSA-44 type 0x06) tile resource names ([`tiles`]) a log stored as tiles ([`tiled`]), and the
//! two-signature checkpoint policy ([`policy`]). Pure: no I/O; storage sits behind
//! [`merkle::HashStore`].
//!
//! The Merkle math is the maintained `tlog_tiles` crate (a port of Go's `sumdb/tlog`); this crate
//! wraps it so that proofs from untrusted sources are checked for shape before they reach it, and
//! cross-checks it against the independent `ct-merkle` implementation in tests.
//!
//! ```
//! use tv_tlog::merkle::MemoryTree;
//! let mut t = MemoryTree::default();
//! for leaf in [b"a".as_slice(), b"b", b"c"] {
//!     t.append(leaf).unwrap();
//! }
//! let root = t.root(3).unwrap();
//! let proof = t.prove_inclusion(3, 1).unwrap();
//! tv_tlog::merkle::verify_inclusion(&proof, 3, root, 1, tv_tlog::merkle::leaf_hash(b"b")).unwrap();
//! ```
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod commit;
pub mod cosig;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod receipt;
pub mod tiled;
pub mod tiles;

pub use tlog_tiles::{HASH_SIZE, Hash};
