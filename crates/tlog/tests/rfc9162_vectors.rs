//! Known-answer tests for RFC 6962 / RFC 9162 Merkle hashing and proofs, from the
//! transparency-dev/merkle test vectors (testonly/constants.go and the verifier's test tables;
//! Apache-2.0). Their inclusion vectors number leaves from 1; they are converted to 0-based here.

use tv_tlog::Hash;
use tv_tlog::merkle::{MemoryTree, leaf_hash, verify_consistency, verify_inclusion};

fn h(s: &str) -> Hash {
    Hash(hex::decode(s).unwrap().try_into().unwrap())
}

fn leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|x| hex::decode(x).unwrap())
    .collect()
}

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn tree() -> MemoryTree {
    let mut t = MemoryTree::default();
    for l in leaves() {
        t.append(&l).unwrap();
    }
    t
}

#[test]
fn roots_for_every_size() {
    let t = tree();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(t.root(size as u64).unwrap(), h(want), "size {size}");
    }
    assert_eq!(
        leaf_hash(&leaves()[1]),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")
    );
}

#[test]
fn inclusion_proofs() {
    let t = tree();
    // (0-based index, size, proof)
    let cases: Vec<(u64, u64, Vec<&str>)> = vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            vec![
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, proof) in cases {
        let want: Vec<Hash> = proof.iter().map(|x| h(x)).collect();
        assert_eq!(
            t.prove_inclusion(size, index).unwrap(),
            want,
            "{index}/{size}"
        );
        let leaf = leaf_hash(&leaves()[index as usize]);
        let root = h(ROOTS[size as usize]);
        verify_inclusion(&want, size, root, index, leaf).unwrap();
        // The verifier's negative cases: other index, other size, other leaf, other root.
        assert!(verify_inclusion(&want, size, root, index ^ 2, leaf).is_err());
        assert!(verify_inclusion(&want, size * 2, root, index, leaf).is_err());
        assert!(verify_inclusion(&want, size, root, index, leaf_hash(b"wrong")).is_err());
        assert!(verify_inclusion(&want, size, h(ROOTS[0]), index, leaf).is_err());
        let mut longer = want.clone();
        longer.push(root);
        assert!(verify_inclusion(&longer, size, root, index, leaf).is_err());
    }
}

#[test]
fn consistency_proofs() {
    let t = tree();
    let cases: Vec<(u64, u64, Vec<&str>)> = vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, proof) in cases {
        let want: Vec<Hash> = proof.iter().map(|x| h(x)).collect();
        assert_eq!(t.prove_consistency(new, old).unwrap(), want, "{old}->{new}");
        let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
        verify_consistency(&want, new, r2, old, r1).unwrap();
        if old != new {
            assert!(
                verify_consistency(&want, new, r1, old, r2).is_err(),
                "swapped roots"
            );
            assert!(verify_consistency(&want[..want.len() - 1], new, r2, old, r1).is_err());
            assert!(verify_consistency(&want, new, r2, old, h(ROOTS[0])).is_err());
        }
    }
}
