//! An independent implementation (`ct-merkle`, RFC 6962) agrees with ours on random trees: roots,
//! inclusion proofs and consistency proofs, byte for byte.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use proptest::prelude::*;
use sha2_11::Sha256;
use tv_tlog::merkle::MemoryTree;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn roots_and_proofs_match_ct_merkle(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..200), i in any::<u64>(), j in any::<u64>()) {
        let mut ours = MemoryTree::default();
        let mut theirs: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
        for l in &leaves {
            ours.append(l).unwrap();
            theirs.push(l.clone());
        }
        let n = leaves.len() as u64;
        let (a, b) = (ours.root(n).unwrap().0.to_vec(), theirs.root().as_bytes().to_vec());
        prop_assert_eq!(a, b);
        let idx = i % n;
        let p: Vec<u8> = ours.prove_inclusion(n, idx).unwrap().iter().flat_map(|h| h.0).collect();
        let q = theirs.prove_inclusion(idx as usize).as_bytes().to_vec();
        prop_assert_eq!(p, q);
        let old = 1 + j % n;
        if old < n {
            let c: Vec<u8> = ours.prove_consistency(n, old).unwrap().iter().flat_map(|h| h.0).collect();
            let d = theirs.prove_consistency((n - old) as usize).as_bytes().to_vec();
            prop_assert_eq!(c, d);
        }
    }
}
