//! Salted span commitments (issue 3): what a log leaf commits to instead of span contents.
//!
//! A committed record (one acknowledged batch) holds a random 32-byte *record secret* inside its
//! encrypted payload. Every field of every span gets its own 16-byte salt, taken in order from the
//! AES-256-CTR keystream under that secret (zero IV), so salts cost no stored bytes and revealing
//! one field's salt says nothing about any other salt.
//!
//! ```text
//! field hash        SHA-256(0x10 || salt[16] || u32 BE len(name) || name || value)
//! span commitment   SHA-256(0x11 || u32 BE field count || field hash || field hash ...)
//! record span root  RFC 9162 Merkle tree hash over the span commitments (as leaf data)
//! ```
//!
//! The distinct prefixes keep field hashes, span commitments and Merkle nodes (0x00/0x01) apart.
//! A receipt opens one span: each field is either revealed (name, value, salt) or withheld (its
//! field hash only), so a reader can check the span against the record's span root without
//! learning withheld values, and the salts stop anyone from confirming a guessed value.

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::digest;
use aws_lc_rs::iv::FixedLength;

use crate::Hash;
use crate::merkle::{self, MemoryTree, MerkleError};

pub const SALT_LEN: usize = 16;
pub type Salt = [u8; SALT_LEN];
pub type Digest = [u8; 32];

const FIELD_PREFIX: u8 = 0x10;
const SPAN_PREFIX: u8 = 0x11;

/// The salts `first .. first + count` of a record's keystream.
pub fn salts(secret: &[u8; 32], count: usize) -> Vec<Salt> {
    let mut buf = vec![0u8; count * SALT_LEN];
    if count > 0 {
        let key = UnboundCipherKey::new(&AES_256, secret).expect("32-byte AES-256 key");
        let enc = EncryptingKey::ctr(key).expect("CTR mode");
        enc.less_safe_encrypt(
            &mut buf,
            EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
        )
        .expect("CTR encryption of a buffer cannot fail");
    }
    buf.chunks_exact(SALT_LEN)
        .map(|c| c.try_into().expect("16 bytes"))
        .collect()
}

/// Hashes one field. `scratch` is reused between calls to avoid allocations.
pub fn field_hash_with(scratch: &mut Vec<u8>, salt: &Salt, name: &str, value: &[u8]) -> Digest {
    scratch.clear();
    scratch.push(FIELD_PREFIX);
    scratch.extend_from_slice(salt);
    scratch.extend_from_slice(&(name.len() as u32).to_be_bytes());
    scratch.extend_from_slice(name.as_bytes());
    scratch.extend_from_slice(value);
    sha256(scratch)
}

pub fn field_hash(salt: &Salt, name: &str, value: &[u8]) -> Digest {
    field_hash_with(&mut Vec::new(), salt, name, value)
}

/// A span's commitment from its field hashes in canonical order.
pub fn span_commitment(fields: &[Digest]) -> Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[SPAN_PREFIX]);
    ctx.update(&(fields.len() as u32).to_be_bytes());
    for f in fields {
        ctx.update(f);
    }
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

pub fn sha256(data: &[u8]) -> Digest {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

/// The Merkle tree over a record's span commitments.
#[derive(Debug, Clone, Default)]
pub struct SpanTree {
    tree: MemoryTree,
}

impl SpanTree {
    pub fn new(commitments: &[Digest]) -> Self {
        let mut tree = MemoryTree::default();
        for c in commitments {
            tree.append(c).expect("memory tree appends cannot fail");
        }
        Self { tree }
    }
    pub fn len(&self) -> u64 {
        self.tree.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
    /// The record's span root (the empty-tree hash for a record without spans).
    pub fn root(&self) -> Digest {
        self.tree
            .root(self.tree.len())
            .expect("root of the whole tree")
            .0
    }
    /// The audit path of span `index` (RFC 9162 section 2.1.3).
    pub fn path(&self, index: u64) -> Result<Vec<Hash>, MerkleError> {
        self.tree.prove_inclusion(self.tree.len(), index)
    }
}

/// Checks that `commitment` is span `index` of `count` under `root`.
pub fn verify_span_path(
    path: &[Hash],
    count: u64,
    root: &Digest,
    index: u64,
    commitment: &Digest,
) -> Result<(), MerkleError> {
    merkle::verify_inclusion(
        path,
        count,
        Hash(*root),
        index,
        merkle::leaf_hash(commitment),
    )
}

/// One field of an opened span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOpening {
    Revealed {
        name: String,
        value: Vec<u8>,
        salt: Salt,
    },
    Withheld {
        hash: Digest,
    },
}

impl FieldOpening {
    pub fn hash(&self) -> Digest {
        match self {
            FieldOpening::Revealed { name, value, salt } => field_hash(salt, name, value),
            FieldOpening::Withheld { hash } => *hash,
        }
    }
}

/// The commitment an opening recomputes to.
pub fn commitment_of(fields: &[FieldOpening]) -> Digest {
    let hashes: Vec<Digest> = fields.iter().map(FieldOpening::hash).collect();
    span_commitment(&hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn salts_are_a_deterministic_keystream() {
        let s = [7u8; 32];
        let a = salts(&s, 5);
        let b = salts(&s, 3);
        assert_eq!(a[..3], b[..]);
        assert_ne!(a[0], a[1]);
        assert_ne!(salts(&[8u8; 32], 1)[0], a[0]);
        assert!(salts(&s, 0).is_empty());
    }

    #[test]
    fn withholding_a_field_keeps_the_commitment() {
        let salts = salts(&[1u8; 32], 3);
        let fields = [
            ("name", b"GET /".as_slice()),
            ("attributes/user", b"alice"),
            ("kind", b"\0\0\0\x02"),
        ];
        let hashes: Vec<Digest> = fields
            .iter()
            .zip(&salts)
            .map(|((n, v), s)| field_hash(s, n, v))
            .collect();
        let c = span_commitment(&hashes);
        let mut open: Vec<FieldOpening> = fields
            .iter()
            .zip(&salts)
            .map(|((n, v), s)| FieldOpening::Revealed {
                name: n.to_string(),
                value: v.to_vec(),
                salt: *s,
            })
            .collect();
        assert_eq!(commitment_of(&open), c);
        open[1] = FieldOpening::Withheld { hash: hashes[1] };
        assert_eq!(commitment_of(&open), c);
        // Any change to a revealed value, name or salt, or the order, breaks it.
        let mut bad = open.clone();
        if let FieldOpening::Revealed { value, .. } = &mut bad[0] {
            value[0] ^= 1;
        }
        assert_ne!(commitment_of(&bad), c);
        let mut bad = open.clone();
        bad.swap(0, 2);
        assert_ne!(commitment_of(&bad), c);
        let mut bad = open.clone();
        bad.pop();
        assert_ne!(commitment_of(&bad), c);
    }

    #[test]
    fn name_and_value_boundary_is_unambiguous() {
        let s = [0u8; 16];
        assert_ne!(field_hash(&s, "ab", b"c"), field_hash(&s, "a", b"bc"));
    }

    proptest! {
        #[test]
        fn every_span_path_verifies_and_altered_ones_fail(n in 1usize..70, pick in any::<u64>(), flip in any::<u8>()) {
            let commitments: Vec<Digest> = (0..n).map(|i| sha256(&(i as u64).to_be_bytes())).collect();
            let t = SpanTree::new(&commitments);
            let root = t.root();
            let i = pick % n as u64;
            let path = t.path(i).unwrap();
            prop_assert!(verify_span_path(&path, n as u64, &root, i, &commitments[i as usize]).is_ok());
            let mut other = commitments[i as usize];
            other[(flip % 32) as usize] ^= 1;
            prop_assert!(verify_span_path(&path, n as u64, &root, i, &other).is_err());
            if n > 1 {
                let j = (i + 1) % n as u64;
                prop_assert!(verify_span_path(&path, n as u64, &root, j, &commitments[i as usize]).is_err());
            }
        }
    }
}
