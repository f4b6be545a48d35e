//! Salted span commitments (issue 3): what a log leaf commits to instead of span contents.
//!
//! A committed record (one acknowledged batch) holds a random 32-byte *record secret* inside its
//! encrypted payload. Every field of every span gets its own 16-byte salt, taken in order from the
//! AES-256-CTR keystream under that secret (zero IV), so salts cost no stored bytes and revealing
//! one field's salt says nothing about any other salt.
//!
//! ```text
//! field hash        SHA-256(tag || salt[16] || name part || value)   (see write_field_header)
//! span commitment   SHA-256(0x11 || u32 BE field count || field hash || field hash ...)
//! record span root  RFC 9162 Merkle tree hash over the span commitments (as leaf data)
//! ```
//!
//! The distinct first bytes keep field hashes (0x20-0x2f), span commitments (0x11) and Merkle
//! leaves and nodes (0x00/0x01) apart.
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

/// Writes a field hash's input up to its value: a tag naming the field (most fields are one
/// byte, so typical fields hash in a single SHA-256 block), the salt, and the name's variable part.
///
/// ```text
/// resource 0x20 | scope 0x21 | span 0x22 | trace_state 0x23 | name 0x24 | status 0x25
/// attributes/<key>  0x26 | u16 key length | key        events/<i> 0x27 | u32 i
/// links/<i>         0x28 | u32 i                       any other  0x2f | u32 length | name
/// ```
/// followed by the salt and then the value: `tag || salt || name part || value`.
pub fn write_field_header(out: &mut Vec<u8>, salt: &Salt, prefix: &str, rest: &str) {
    let fixed = |tag: u8, out: &mut Vec<u8>| {
        out.push(tag);
        out.extend_from_slice(salt);
    };
    let index = |tag: u8, out: &mut Vec<u8>| -> bool {
        match rest.parse::<u32>() {
            Ok(i) if i.to_string() == rest => {
                fixed(tag, out);
                out.extend_from_slice(&i.to_be_bytes());
                true
            }
            _ => false,
        }
    };
    match (prefix, rest) {
        ("resource", "") => fixed(0x20, out),
        ("scope", "") => fixed(0x21, out),
        ("span", "") => fixed(0x22, out),
        ("trace_state", "") => fixed(0x23, out),
        ("name", "") => fixed(0x24, out),
        ("status", "") => fixed(0x25, out),
        ("attributes/", key) if key.len() <= u16::MAX as usize => {
            fixed(0x26, out);
            out.extend_from_slice(&(key.len() as u16).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
        }
        ("events/", _) if index(0x27, out) => {}
        ("links/", _) if index(0x28, out) => {}
        _ => {
            fixed(FIELD_OTHER, out);
            out.extend_from_slice(&((prefix.len() + rest.len()) as u32).to_be_bytes());
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(rest.as_bytes());
        }
    }
}

const FIELD_OTHER: u8 = 0x2f;

/// Splits a field name into the prefix and variable part [`write_field_header`] takes.
fn split_name(name: &str) -> (&str, &str) {
    for p in ["attributes/", "events/", "links/"] {
        if let Some(rest) = name.strip_prefix(p) {
            return (p, rest);
        }
    }
    (name, "")
}

/// Hashes one field. `scratch` is reused between calls to avoid allocations.
pub fn field_hash_with(scratch: &mut Vec<u8>, salt: &Salt, name: &str, value: &[u8]) -> Digest {
    scratch.clear();
    let (prefix, rest) = split_name(name);
    write_field_header(scratch, salt, prefix, rest);
    scratch.extend_from_slice(value);
    sha256(scratch)
}

pub fn field_hash(salt: &Salt, name: &str, value: &[u8]) -> Digest {
    field_hash_with(&mut Vec::new(), salt, name, value)
}

/// A span's commitment from its field hashes in canonical order.
pub fn span_commitment(fields: &[Digest]) -> Digest {
    span_commitment_with(&mut Vec::new(), fields)
}

/// [`span_commitment`] with a reusable buffer (one SHA-256 call over contiguous bytes).
pub fn span_commitment_with(scratch: &mut Vec<u8>, fields: &[Digest]) -> Digest {
    scratch.clear();
    scratch.push(SPAN_PREFIX);
    scratch.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    for f in fields {
        scratch.extend_from_slice(f);
    }
    sha256(scratch)
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
        assert_ne!(
            field_hash(&s, "attributes/ab", b"c"),
            field_hash(&s, "attributes/a", b"bc")
        );
        // Each field kind hashes differently, even with equal bytes after the tag.
        assert_ne!(field_hash(&s, "name", b"x"), field_hash(&s, "status", b"x"));
        assert_ne!(
            field_hash(&s, "events/1", b"x"),
            field_hash(&s, "links/1", b"x")
        );
        // Non-canonical indexes do not alias canonical ones.
        assert_ne!(
            field_hash(&s, "events/01", b"x"),
            field_hash(&s, "events/1", b"x")
        );
    }

    #[test]
    fn common_fields_fit_one_sha256_block() {
        let mut buf = Vec::new();
        write_field_header(&mut buf, &[0; 16], "attributes/", "http.request.method");
        // tag, salt, length, key: a short value still fits the 55 bytes of one block.
        assert_eq!(buf.len(), 1 + 16 + 2 + 19);
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
