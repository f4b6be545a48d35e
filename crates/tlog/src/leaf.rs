//! The log's entries (issue 3). Every entry is a fixed-layout binary record that commits only to
//! digests and tenant-neutral metadata; no span content, no tenant name.
//!
//! ```text
//! record leaf (one per WAL DATA record, appended as part of its commit), 162 bytes:
//!   version 0x01 | kind 0x01 | segment u64 | key index u32 | counter u64 | received unix ns u64
//!   | SHA-256 of the DATA record body [32] | data key commitment [32] | span root [32]
//!   | span count u32 | redaction policy digest [32]
//! block leaf (one per sealed block, before its WAL segment is deleted), 134 bytes:
//!   version 0x01 | kind 0x02 | block id u64 | sealed unix ns u64 | SHA-256 of the block file [32]
//!   | data key commitment [32] | records digest [32] | record count u32 | span count u64
//!   | first record leaf u64
//! prune leaf (a block deleted by retention, before the file is removed), 58 bytes:
//!   version 0x01 | kind 0x03 | block id u64 | pruned unix ns u64 | SHA-256 of the block file [32]
//!   | retention period in seconds u64
//! erase leaf (a tenant's keys destroyed, before its blocks are deleted), 50 bytes:
//!   version 0x01 | kind 0x04 | erased unix ns u64 | tenant commitment [32] | block count u64
//! erased-block leaf (a block of an erased tenant deleted, before the file is removed), 58 bytes:
//!   version 0x01 | kind 0x05 | block id u64 | deleted unix ns u64 | SHA-256 of the block file [32]
//!   | index of the erase leaf u64
//! log-prune leaf (entry bundles below an index deleted; the hash tiles stay), 18 bytes:
//!   version 0x01 | kind 0x06 | pruned unix ns u64 | minimum index u64 (a multiple of 256)
//! state leaf (a cluster state document this node wrote, or holds: its version anchored), 82 bytes:
//!   version 0x01 | kind 0x07 | written unix ns u64 | name digest [32] | generation u64
//!   | SHA-256 of the stored object [32]
//! replaced leaf (a block merged into a larger one by compaction, before its file is removed),
//! 58 bytes:
//!   version 0x01 | kind 0x08 | block id u64 | replaced unix ns u64 | SHA-256 of the block file [32]
//!   | index of the replacing block's leaf u64
//! ```
//!
//! Compaction writes the merged block with a normal block leaf (its id has the top bit set), then
//! one replaced leaf per block it merged, in the order the merged block holds their records: the
//! replacing block's record list is the replaced blocks' record lists one after the other, so a
//! verifier with the root key checks each run against the replaced block's leaf.
//!
//! The name digest is SHA-256(`tracevault/v1/cluster-state|` || document name), see
//! [`state_name_digest`].
//!
//! The tenant commitment is SHA-256(`tracevault/v1/erased-tenant` || salt || tenant id) with a
//! random 32-byte salt kept in the erasure record (`DIR/erased/<tenant>.json`): the public log
//! does not name the tenant, and a verifier holding the record can check which tenant it was.
//!
//! All integers big-endian. The records digest is SHA-256 over the block's records in block
//! order, each `record leaf index u64 || span count u32`; with the root key a verifier re-derives
//! each record's span root from the block's rows and compares it with that record's leaf.

use crate::commit::Digest;

pub const VERSION: u8 = 1;
const KIND_RECORD: u8 = 1;
const KIND_BLOCK: u8 = 2;
const KIND_PRUNE: u8 = 3;
const KIND_ERASE: u8 = 4;
const KIND_ERASED_BLOCK: u8 = 5;
const KIND_LOG_PRUNE: u8 = 6;
const KIND_STATE: u8 = 7;
const KIND_REPLACED: u8 = 8;
pub const REPLACED_LEAF_LEN: usize = 58;
pub const LOG_PRUNE_LEAF_LEN: usize = 18;
pub const STATE_LEAF_LEN: usize = 82;
pub const PRUNE_LEAF_LEN: usize = 58;
pub const ERASE_LEAF_LEN: usize = 50;
pub const ERASED_BLOCK_LEAF_LEN: usize = 58;
pub const RECORD_LEAF_LEN: usize = 162;
pub const BLOCK_LEAF_LEN: usize = 134;

/// Offset of the span root inside an encoded record leaf.
pub const SPAN_ROOT_OFFSET: usize = 2 + 8 + 4 + 8 + 8 + 32 + 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLeaf {
    pub segment: u64,
    pub key_index: u32,
    pub counter: u64,
    pub received_unix_nanos: u64,
    pub body_sha256: Digest,
    pub key_commitment: Digest,
    pub span_root: Digest,
    pub span_count: u32,
    pub policy_digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLeaf {
    pub block_id: u64,
    pub sealed_unix_nanos: u64,
    pub file_sha256: Digest,
    pub key_commitment: Digest,
    pub records_sha256: Digest,
    pub record_count: u32,
    pub span_count: u64,
    /// The smallest record leaf index the block covers (a cheap hint; the digest is binding).
    pub first_record: u64,
}

/// A block deleted by retention: verify reports it as pruned, not as missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneLeaf {
    pub block_id: u64,
    pub pruned_unix_nanos: u64,
    pub file_sha256: Digest,
    pub retention_secs: u64,
}

/// A tenant erased (crypto-shredded): every version of its keys was destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseLeaf {
    pub erased_unix_nanos: u64,
    pub tenant_commitment: Digest,
    /// How many of the tenant's blocks were deleted after it (one erased-block leaf each).
    pub blocks: u64,
}

/// The commitment an erase leaf makes to its tenant.
pub fn tenant_commitment(salt: &[u8; 32], tenant: &str) -> Digest {
    let mut buf = Vec::with_capacity(64 + tenant.len());
    buf.extend_from_slice(b"tracevault/v1/erased-tenant");
    buf.extend_from_slice(salt);
    buf.extend_from_slice(tenant.as_bytes());
    crate::commit::sha256(&buf)
}

/// A block of an erased tenant, deleted after its keys were destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedBlockLeaf {
    pub block_id: u64,
    pub deleted_unix_nanos: u64,
    pub file_sha256: Digest,
    /// The erase leaf this deletion follows.
    pub erase_index: u64,
}

/// The log's own entry bundles below `minimum_index` deleted (they are older than anything any
/// tenant still retains); the hash tiles stay, so every checkpoint still verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPruneLeaf {
    pub pruned_unix_nanos: u64,
    pub minimum_index: u64,
}

/// A cluster state document (`cluster/<name>` in the bucket) as this node wrote it: a rolled-back
/// or altered document shows as a generation or digest the logs do not end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLeaf {
    pub written_unix_nanos: u64,
    pub name_digest: Digest,
    pub generation: u64,
    pub object_sha256: Digest,
}

/// A block merged into a larger block by compaction: `verify` reports it as compacted, not as
/// missing, and finds its records in the replacing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedLeaf {
    pub block_id: u64,
    pub replaced_unix_nanos: u64,
    pub file_sha256: Digest,
    /// The index of the replacing block's leaf (it comes before this one).
    pub replacement_index: u64,
}

/// The digest a state leaf names its document by.
pub fn state_name_digest(name: &str) -> Digest {
    crate::commit::sha256(&[b"tracevault/v1/cluster-state|", name.as_bytes()].concat())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    Record(RecordLeaf),
    Block(BlockLeaf),
    Prune(PruneLeaf),
    Erase(EraseLeaf),
    ErasedBlock(ErasedBlockLeaf),
    LogPrune(LogPruneLeaf),
    State(StateLeaf),
    Replaced(ReplacedLeaf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log entry: {0}")]
pub struct LeafError(pub String);

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        a.try_into().expect("length checked before reading")
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
}

impl Leaf {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(RECORD_LEAF_LEN);
        o.push(VERSION);
        match self {
            Leaf::Record(r) => {
                o.push(KIND_RECORD);
                o.extend_from_slice(&r.segment.to_be_bytes());
                o.extend_from_slice(&r.key_index.to_be_bytes());
                o.extend_from_slice(&r.counter.to_be_bytes());
                o.extend_from_slice(&r.received_unix_nanos.to_be_bytes());
                o.extend_from_slice(&r.body_sha256);
                o.extend_from_slice(&r.key_commitment);
                o.extend_from_slice(&r.span_root);
                o.extend_from_slice(&r.span_count.to_be_bytes());
                o.extend_from_slice(&r.policy_digest);
            }
            Leaf::Block(b) => {
                o.push(KIND_BLOCK);
                o.extend_from_slice(&b.block_id.to_be_bytes());
                o.extend_from_slice(&b.sealed_unix_nanos.to_be_bytes());
                o.extend_from_slice(&b.file_sha256);
                o.extend_from_slice(&b.key_commitment);
                o.extend_from_slice(&b.records_sha256);
                o.extend_from_slice(&b.record_count.to_be_bytes());
                o.extend_from_slice(&b.span_count.to_be_bytes());
                o.extend_from_slice(&b.first_record.to_be_bytes());
            }
            Leaf::Prune(p) => {
                o.push(KIND_PRUNE);
                o.extend_from_slice(&p.block_id.to_be_bytes());
                o.extend_from_slice(&p.pruned_unix_nanos.to_be_bytes());
                o.extend_from_slice(&p.file_sha256);
                o.extend_from_slice(&p.retention_secs.to_be_bytes());
            }
            Leaf::Erase(e) => {
                o.push(KIND_ERASE);
                o.extend_from_slice(&e.erased_unix_nanos.to_be_bytes());
                o.extend_from_slice(&e.tenant_commitment);
                o.extend_from_slice(&e.blocks.to_be_bytes());
            }
            Leaf::ErasedBlock(d) => {
                o.push(KIND_ERASED_BLOCK);
                o.extend_from_slice(&d.block_id.to_be_bytes());
                o.extend_from_slice(&d.deleted_unix_nanos.to_be_bytes());
                o.extend_from_slice(&d.file_sha256);
                o.extend_from_slice(&d.erase_index.to_be_bytes());
            }
            Leaf::LogPrune(p) => {
                o.push(KIND_LOG_PRUNE);
                o.extend_from_slice(&p.pruned_unix_nanos.to_be_bytes());
                o.extend_from_slice(&p.minimum_index.to_be_bytes());
            }
            Leaf::State(st) => {
                o.push(KIND_STATE);
                o.extend_from_slice(&st.written_unix_nanos.to_be_bytes());
                o.extend_from_slice(&st.name_digest);
                o.extend_from_slice(&st.generation.to_be_bytes());
                o.extend_from_slice(&st.object_sha256);
            }
            Leaf::Replaced(x) => {
                o.push(KIND_REPLACED);
                o.extend_from_slice(&x.block_id.to_be_bytes());
                o.extend_from_slice(&x.replaced_unix_nanos.to_be_bytes());
                o.extend_from_slice(&x.file_sha256);
                o.extend_from_slice(&x.replacement_index.to_be_bytes());
            }
        }
        o
    }

    pub fn parse(b: &[u8]) -> Result<Leaf, LeafError> {
        if b.len() < 2 {
            return Err(LeafError(format!("{} bytes is too short", b.len())));
        }
        if b[0] != VERSION {
            return Err(LeafError(format!(
                "unknown version {} (this build reads {VERSION})",
                b[0]
            )));
        }
        let want = match b[1] {
            KIND_RECORD => RECORD_LEAF_LEN,
            KIND_BLOCK => BLOCK_LEAF_LEN,
            KIND_PRUNE => PRUNE_LEAF_LEN,
            KIND_ERASE => ERASE_LEAF_LEN,
            KIND_ERASED_BLOCK => ERASED_BLOCK_LEAF_LEN,
            KIND_LOG_PRUNE => LOG_PRUNE_LEAF_LEN,
            KIND_STATE => STATE_LEAF_LEN,
            KIND_REPLACED => REPLACED_LEAF_LEN,
            k => return Err(LeafError(format!("unknown kind {k}"))),
        };
        if b.len() != want {
            return Err(LeafError(format!(
                "{} bytes; this kind has exactly {want}",
                b.len()
            )));
        }
        let mut r = Reader(&b[2..]);
        if b[1] == KIND_LOG_PRUNE {
            return Ok(Leaf::LogPrune(LogPruneLeaf {
                pruned_unix_nanos: r.u64(),
                minimum_index: r.u64(),
            }));
        }
        if b[1] == KIND_STATE {
            return Ok(Leaf::State(StateLeaf {
                written_unix_nanos: r.u64(),
                name_digest: r.take(),
                generation: r.u64(),
                object_sha256: r.take(),
            }));
        }
        if b[1] == KIND_REPLACED {
            return Ok(Leaf::Replaced(ReplacedLeaf {
                block_id: r.u64(),
                replaced_unix_nanos: r.u64(),
                file_sha256: r.take(),
                replacement_index: r.u64(),
            }));
        }
        if b[1] == KIND_ERASE {
            return Ok(Leaf::Erase(EraseLeaf {
                erased_unix_nanos: r.u64(),
                tenant_commitment: r.take(),
                blocks: r.u64(),
            }));
        }
        if b[1] == KIND_ERASED_BLOCK {
            return Ok(Leaf::ErasedBlock(ErasedBlockLeaf {
                block_id: r.u64(),
                deleted_unix_nanos: r.u64(),
                file_sha256: r.take(),
                erase_index: r.u64(),
            }));
        }
        if b[1] == KIND_PRUNE {
            return Ok(Leaf::Prune(PruneLeaf {
                block_id: r.u64(),
                pruned_unix_nanos: r.u64(),
                file_sha256: r.take(),
                retention_secs: r.u64(),
            }));
        }
        Ok(if b[1] == KIND_RECORD {
            Leaf::Record(RecordLeaf {
                segment: r.u64(),
                key_index: r.u32(),
                counter: r.u64(),
                received_unix_nanos: r.u64(),
                body_sha256: r.take(),
                key_commitment: r.take(),
                span_root: r.take(),
                span_count: r.u32(),
                policy_digest: r.take(),
            })
        } else {
            Leaf::Block(BlockLeaf {
                block_id: r.u64(),
                sealed_unix_nanos: r.u64(),
                file_sha256: r.take(),
                key_commitment: r.take(),
                records_sha256: r.take(),
                record_count: r.u32(),
                span_count: r.u64(),
                first_record: r.u64(),
            })
        })
    }
}

/// The records digest of a block leaf.
pub fn records_digest(records: &[(u64, u32)]) -> Digest {
    let mut buf = Vec::with_capacity(records.len() * 12);
    for (leaf, spans) in records {
        buf.extend_from_slice(&leaf.to_be_bytes());
        buf.extend_from_slice(&spans.to_be_bytes());
    }
    crate::commit::sha256(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Leaf {
        Leaf::Record(RecordLeaf {
            segment: 3,
            key_index: 1,
            counter: 9,
            received_unix_nanos: 1_700_000_000_000_000_000,
            body_sha256: [1; 32],
            key_commitment: [2; 32],
            span_root: [3; 32],
            span_count: 512,
            policy_digest: [4; 32],
        })
    }

    #[test]
    fn leaves_roundtrip_at_their_documented_sizes() {
        let r = record();
        let e = r.encode();
        assert_eq!(e.len(), RECORD_LEAF_LEN);
        assert_eq!(&e[SPAN_ROOT_OFFSET..SPAN_ROOT_OFFSET + 32], &[3u8; 32]);
        assert_eq!(Leaf::parse(&e).unwrap(), r);
        let b = Leaf::Block(BlockLeaf {
            block_id: 7,
            sealed_unix_nanos: 5,
            file_sha256: [9; 32],
            key_commitment: [8; 32],
            records_sha256: records_digest(&[(0, 3), (1, 4)]),
            record_count: 2,
            span_count: 7,
            first_record: 0,
        });
        let e = b.encode();
        assert_eq!(e.len(), BLOCK_LEAF_LEN);
        assert_eq!(Leaf::parse(&e).unwrap(), b);
        let p = Leaf::Prune(PruneLeaf {
            block_id: 7,
            pruned_unix_nanos: 9,
            file_sha256: [9; 32],
            retention_secs: 86400,
        });
        let e = p.encode();
        assert_eq!(e.len(), PRUNE_LEAF_LEN);
        assert_eq!(Leaf::parse(&e).unwrap(), p);
        let x = Leaf::Erase(EraseLeaf {
            erased_unix_nanos: 11,
            tenant_commitment: tenant_commitment(&[5; 32], "acme"),
            blocks: 3,
        });
        let e = x.encode();
        assert_eq!(e.len(), ERASE_LEAF_LEN);
        assert_eq!(Leaf::parse(&e).unwrap(), x);
        let d = Leaf::ErasedBlock(ErasedBlockLeaf {
            block_id: 7,
            deleted_unix_nanos: 12,
            file_sha256: [9; 32],
            erase_index: 40,
        });
        let e = d.encode();
        assert_eq!(e.len(), ERASED_BLOCK_LEAF_LEN);
        assert_eq!(Leaf::parse(&e).unwrap(), d);
        let l = Leaf::LogPrune(LogPruneLeaf {
            pruned_unix_nanos: 13,
            minimum_index: 512,
        });
        let e = l.encode();
        assert_eq!(e.len(), LOG_PRUNE_LEAF_LEN);
        assert_eq!(Leaf::parse(&e).unwrap(), l);
        let st = Leaf::State(StateLeaf {
            written_unix_nanos: 14,
            name_digest: state_name_digest("tokens"),
            generation: 3,
            object_sha256: [7; 32],
        });
        let e = st.encode();
        assert_eq!(e.len(), STATE_LEAF_LEN);
        let x = Leaf::Replaced(ReplacedLeaf {
            block_id: 6,
            replaced_unix_nanos: 15,
            file_sha256: [6; 32],
            replacement_index: 41,
        });
        let ex = x.encode();
        assert_eq!(ex.len(), REPLACED_LEAF_LEN);
        assert_eq!(ex[1], 8);
        assert_eq!(Leaf::parse(&ex).unwrap(), x);
        assert_eq!(&e[10..42], &state_name_digest("tokens"));
        assert_eq!(Leaf::parse(&e).unwrap(), st);
        assert_ne!(state_name_digest("tokens"), state_name_digest("workloads"));
        // The commitment depends on both the salt and the tenant.
        assert_ne!(
            tenant_commitment(&[5; 32], "acme"),
            tenant_commitment(&[6; 32], "acme")
        );
        assert_ne!(
            tenant_commitment(&[5; 32], "acme"),
            tenant_commitment(&[5; 32], "acmf")
        );
    }

    #[test]
    fn malformed_leaves_are_refused_with_a_reason() {
        let mut e = record().encode();
        assert!(
            Leaf::parse(&e[..100])
                .unwrap_err()
                .0
                .contains("exactly 162")
        );
        e[0] = 2;
        assert!(Leaf::parse(&e).unwrap_err().0.contains("unknown version 2"));
        e[0] = 1;
        e[1] = 9;
        assert!(Leaf::parse(&e).unwrap_err().0.contains("unknown kind 9"));
        assert!(Leaf::parse(&[]).is_err());
    }
}
