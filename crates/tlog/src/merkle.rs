//! Merkle tree hashing and proofs per RFC 9162 section 2.1 (RFC 6962 section 2.1): leaf hash
//! `SHA-256(0x00 || data)`, node hash `SHA-256(0x01 || left || right)`, audit paths (2.1.3) and
//! consistency proofs (2.1.4).

use tlog_tiles::{Hash, HashReader};

/// Why a proof or a tree operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MerkleError {
    #[error("invalid proof")]
    InvalidProof,
    #[error("proof has {got} hashes; a proof for these sizes has exactly {want}")]
    ProofLength { got: usize, want: usize },
    #[error("index {index} is not in a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("consistency needs 0 < old size <= new size, got {old} and {new}")]
    Sizes { old: u64, new: u64 },
    #[error("hash store: {0}")]
    Store(String),
}

impl From<tlog_tiles::Error> for MerkleError {
    fn from(e: tlog_tiles::Error) -> Self {
        match e {
            tlog_tiles::Error::InvalidProof => Self::InvalidProof,
            other => Self::Store(other.to_string()),
        }
    }
}

/// RFC 9162 section 2.1.1: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    tlog_tiles::record_hash(data)
}

/// RFC 9162 section 2.1.1: the hash of an interior node.
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    tlog_tiles::node_hash(left, right)
}

/// The hash of the empty tree (SHA-256 of the empty string).
pub const EMPTY_ROOT: Hash = tlog_tiles::EMPTY_HASH;

/// Where the stored hashes of a log live (tiles on disk, or memory in tests). Indexes follow the
/// "stored hash index" numbering of `tlog_tiles` (Go's `sumdb/tlog`).
pub trait HashStore {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

struct Reader<'a, S: HashStore + ?Sized>(&'a S);

impl<S: HashStore + ?Sized> HashReader for Reader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let v = self
            .0
            .read(indexes)
            .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?;
        if v.len() != indexes.len() {
            return Err(tlog_tiles::Error::InvalidInput(
                "hash store returned the wrong number of hashes".into(),
            ));
        }
        Ok(v)
    }
}

/// The stored hashes that appending leaf number `n` with `data` adds (in stored-hash-index order).
pub fn hashes_to_store<S: HashStore + ?Sized>(
    n: u64,
    data: &[u8],
    store: &S,
) -> Result<Vec<Hash>, MerkleError> {
    Ok(tlog_tiles::stored_hashes(n, data, &Reader(store))?)
}

/// [`hashes_to_store`] for a leaf known only by its leaf hash (a level-0 tile of a log whose
/// entry bundles were pruned).
pub fn hashes_to_store_for_leaf_hash<S: HashStore + ?Sized>(
    n: u64,
    leaf: Hash,
    store: &S,
) -> Result<Vec<Hash>, MerkleError> {
    Ok(tlog_tiles::stored_hashes_for_record_hash(
        n,
        leaf,
        &Reader(store),
    )?)
}

/// The root hash of the first `size` leaves.
pub fn root<S: HashStore + ?Sized>(size: u64, store: &S) -> Result<Hash, MerkleError> {
    Ok(tlog_tiles::tree_hash(size, &Reader(store))?)
}

/// Number of hashes in an RFC 9162 inclusion proof for `index` in a tree of `size` leaves.
pub fn inclusion_proof_len(size: u64, index: u64) -> usize {
    // Walk down: each level of the recursion in 2.1.3.1 adds one hash.
    let (mut lo, mut hi, mut n) = (0u64, size, 0usize);
    while hi - lo > 1 {
        let k = largest_pow2_below(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        n += 1;
    }
    n
}

/// Number of hashes in an RFC 9162 consistency proof from `old` to `new` leaves.
pub fn consistency_proof_len(old: u64, new: u64) -> usize {
    if old == new || old == 0 {
        return 0;
    }
    // 2.1.4.1 SUBPROOF(m, D[n], true)
    fn sub(m: u64, n: u64, complete: bool) -> usize {
        if m == n {
            return if complete { 0 } else { 1 };
        }
        let k = largest_pow2_below(n);
        if m <= k {
            sub(m, k, complete) + 1
        } else {
            sub(m - k, n - k, false) + 1
        }
    }
    sub(old, new, true)
}

/// The largest power of two strictly less than `n` (n >= 2).
fn largest_pow2_below(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 section 2.1.3.1: the audit path of leaf `index` in the tree of `size` leaves.
pub fn prove_inclusion<S: HashStore + ?Sized>(
    size: u64,
    index: u64,
    store: &S,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::OutOfRange { index, size });
    }
    Ok(tlog_tiles::prove_record(size, index, &Reader(store))?)
}

/// RFC 9162 section 2.1.3.2: checks that `leaf` is leaf `index` of the tree of `size` leaves
/// whose root is `root`. Proofs of the wrong length are refused before any hashing.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::OutOfRange { index, size });
    }
    let want = inclusion_proof_len(size, index);
    if proof.len() != want {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    Ok(tlog_tiles::check_record(
        &proof.to_vec(),
        size,
        root,
        index,
        leaf,
    )?)
}

/// RFC 9162 section 2.1.4.1: the consistency proof from `old` to `new` leaves.
pub fn prove_consistency<S: HashStore + ?Sized>(
    new: u64,
    old: u64,
    store: &S,
) -> Result<Vec<Hash>, MerkleError> {
    if old == 0 || old > new {
        return Err(MerkleError::Sizes { old, new });
    }
    Ok(tlog_tiles::prove_tree(new, old, &Reader(store))?)
}

/// RFC 9162 section 2.1.4.2: checks that the tree of `old` leaves with root `old_root` is a prefix
/// of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    proof: &[Hash],
    new: u64,
    new_root: Hash,
    old: u64,
    old_root: Hash,
) -> Result<(), MerkleError> {
    if old == 0 || old > new {
        return Err(MerkleError::Sizes { old, new });
    }
    let want = consistency_proof_len(old, new);
    if proof.len() != want {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    Ok(tlog_tiles::check_tree(
        &proof.to_vec(),
        new,
        new_root,
        old,
        old_root,
    )?)
}

/// An in-memory tree (tests, and computing a batch's span-commitment root).
#[derive(Default, Debug, Clone)]
pub struct MemoryTree {
    stored: Vec<Hash>,
    size: u64,
}

impl HashStore for MemoryTree {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                self.stored
                    .get(i as usize)
                    .copied()
                    .ok_or_else(|| MerkleError::Store(format!("no stored hash {i}")))
            })
            .collect()
    }
}

impl MemoryTree {
    pub fn len(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Appends a leaf with data `data`; returns its index.
    pub fn append(&mut self, data: &[u8]) -> Result<u64, MerkleError> {
        let new = hashes_to_store(self.size, data, self)?;
        self.stored.extend(new);
        self.size += 1;
        Ok(self.size - 1)
    }
    /// Appends a leaf known only by its leaf hash; returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        let new = hashes_to_store_for_leaf_hash(self.size, leaf, self)?;
        self.stored.extend(new);
        self.size += 1;
        Ok(self.size - 1)
    }
    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        if size > self.size {
            return Err(MerkleError::OutOfRange {
                index: size,
                size: self.size,
            });
        }
        root(size, self)
    }
    pub fn prove_inclusion(&self, size: u64, index: u64) -> Result<Vec<Hash>, MerkleError> {
        prove_inclusion(size, index, self)
    }
    pub fn prove_consistency(&self, new: u64, old: u64) -> Result<Vec<Hash>, MerkleError> {
        prove_consistency(new, old, self)
    }
    /// The bytes tile `n` at `level` (tlog-tiles height 8) holds when `width` hashes wide.
    pub fn tile_bytes(&self, level: u8, n: u64, width: u64) -> Result<Vec<u8>, MerkleError> {
        let idx: Vec<u64> = (0..width)
            .map(|i| tlog_tiles::stored_hash_index(8 * level, n * 256 + i))
            .collect();
        Ok(self.read(&idx)?.iter().flat_map(|h| h.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree(n: usize) -> MemoryTree {
        let mut t = MemoryTree::default();
        for i in 0..n {
            t.append(format!("leaf {i}").as_bytes()).unwrap();
        }
        t
    }

    #[test]
    fn a_tree_rebuilt_from_leaf_hashes_has_the_same_roots() {
        let full = tree(700);
        let mut t = MemoryTree::default();
        for i in 0..700 {
            t.append_leaf_hash(leaf_hash(format!("leaf {i}").as_bytes()))
                .unwrap();
        }
        for size in [1, 255, 256, 257, 512, 699, 700] {
            assert_eq!(t.root(size).unwrap(), full.root(size).unwrap());
        }
        assert_eq!(
            t.tile_bytes(1, 0, 2).unwrap(),
            full.tile_bytes(1, 0, 2).unwrap()
        );
    }

    #[test]
    fn domain_separation_per_rfc_9162_2_1_1() {
        // Leaf: SHA-256(0x00 || ""), the well-known value.
        assert_eq!(
            hex::encode(leaf_hash(b"").0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(EMPTY_ROOT.0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // A one-leaf tree's root is its leaf hash; two leaves hash with the 0x01 prefix.
        let t = tree(2);
        assert_eq!(t.root(1).unwrap(), leaf_hash(b"leaf 0"));
        assert_eq!(
            t.root(2).unwrap(),
            node_hash(leaf_hash(b"leaf 0"), leaf_hash(b"leaf 1"))
        );
    }

    #[test]
    fn malformed_proofs_are_errors_not_panics() {
        let t = tree(13);
        let root = t.root(13).unwrap();
        let p = t.prove_inclusion(13, 5).unwrap();
        let leaf = leaf_hash(b"leaf 5");
        assert!(verify_inclusion(&p, 13, root, 5, leaf).is_ok());
        let mut short = p.clone();
        short.pop();
        assert!(matches!(
            verify_inclusion(&short, 13, root, 5, leaf),
            Err(MerkleError::ProofLength { .. })
        ));
        let mut long = p.clone();
        long.push(leaf);
        assert!(verify_inclusion(&long, 13, root, 5, leaf).is_err());
        assert!(verify_inclusion(&p, 13, root, 13, leaf).is_err());
        assert!(verify_inclusion(&[], 0, root, 0, leaf).is_err());
        let c = t.prove_consistency(13, 6).unwrap();
        let r6 = t.root(6).unwrap();
        assert!(verify_consistency(&c, 13, root, 6, r6).is_ok());
        assert!(verify_consistency(&c[1..], 13, root, 6, r6).is_err());
        assert!(verify_consistency(&c, 13, root, 0, r6).is_err());
        assert!(verify_consistency(&c, 5, root, 6, r6).is_err());
        assert!(verify_consistency(&[], 13, root, 13, root).is_ok());
        assert!(verify_consistency(&[], 13, root, 13, r6).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_proof_verifies_and_every_altered_proof_fails(
            n in 1usize..300, i in any::<u64>(), j in any::<u64>(), flip in any::<(usize, u8)>()
        ) {
            let t = tree(n);
            let size = n as u64;
            let root = t.root(size).unwrap();
            let index = i % size;
            let leaf = leaf_hash(format!("leaf {index}").as_bytes());
            let p = t.prove_inclusion(size, index).unwrap();
            prop_assert_eq!(p.len(), inclusion_proof_len(size, index));
            prop_assert!(verify_inclusion(&p, size, root, index, leaf).is_ok());
            if !p.is_empty() {
                let mut bad = p.clone();
                let k = flip.0 % bad.len();
                bad[k].0[(flip.1 % 32) as usize] ^= 1;
                prop_assert!(verify_inclusion(&bad, size, root, index, leaf).is_err());
            }
            let wrong_leaf = leaf_hash(b"not a leaf");
            prop_assert!(verify_inclusion(&p, size, root, index, wrong_leaf).is_err());

            let old = 1 + j % size;
            let old_root = t.root(old).unwrap();
            let c = t.prove_consistency(size, old).unwrap();
            prop_assert_eq!(c.len(), consistency_proof_len(old, size));
            prop_assert!(verify_consistency(&c, size, root, old, old_root).is_ok());
            if !c.is_empty() {
                let mut bad = c.clone();
                let k = flip.0 % bad.len();
                bad[k].0[(flip.1 % 32) as usize] ^= 0x80;
                prop_assert!(verify_consistency(&bad, size, root, old, old_root).is_err());
            }
            if old < size {
                let other = t.root(old.saturating_sub(1).max(1)).unwrap();
                if other != old_root {
                    prop_assert!(verify_consistency(&c, size, root, old, other).is_err());
                }
            }
        }
    }
}
