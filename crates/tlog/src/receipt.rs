//! Span receipts (issue 3): everything a third party needs to check offline that one span was
//! committed at a log position under a signed checkpoint, revealing no other span.
//!
//! The log part is a C2SP tlog-proof (c2sp.org/tlog-proof): `c2sp.org/tlog-proof@v1`, an
//! optional `extra` line, `index N`, the inclusion proof hashes (base64, one per line), an empty
//! line and the signed checkpoint note (with any witness cosignatures). Around it, as JSON: the
//! log entry (a record leaf, see [`crate::leaf`]), the span's position in its record, the audit
//! path from the span's commitment to the record's span root, and the span's fields, each revealed
//! (name, value, salt) or withheld (its field hash only; see [`crate::commit`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::Hash;
use crate::commit::{self, FieldOpening};
use crate::leaf::{Leaf, RecordLeaf};
use crate::merkle;
use crate::policy::{LogKeys, Policy, VerifiedCheckpoint, verify_checkpoint};

pub const FORMAT: &str = "tracevault-span-receipt/v1";
const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// One field of a receipt: `name`, `value` and `salt` when revealed, `withheld` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// base64 of the committed value bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// base64 of the field hash of a field the receipt does not reveal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

/// A span receipt as served by `GET /api/traces/{id}/receipt` (one per span).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub format: String,
    /// Lowercase hex, for people; the committed ids are the `trace_id` and `span_id` fields.
    pub trace_id: String,
    pub span_id: String,
    /// base64 of the log entry (a record leaf).
    pub leaf: String,
    pub span_index: u64,
    pub span_count: u64,
    /// base64 hashes from the span's commitment to the record's span root (RFC 9162 audit path).
    pub span_path: Vec<String>,
    pub fields: Vec<ReceiptField>,
    /// The C2SP tlog-proof of the leaf.
    pub proof: String,
}

/// Why a receipt did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receipt: {0}")]
pub struct ReceiptError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ReceiptError> {
    Err(ReceiptError(msg.into()))
}

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub hashes: Vec<Hash>,
    pub checkpoint: Vec<u8>,
}

/// Formats a tlog-proof.
pub fn format_proof(index: u64, hashes: &[Hash], checkpoint_note: &[u8]) -> String {
    let mut s = format!("{PROOF_HEADER}\nindex {index}\n");
    for h in hashes {
        s.push_str(&B64.encode(h.0));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&String::from_utf8_lossy(checkpoint_note));
    s
}

/// Parses a tlog-proof strictly (c2sp.org/tlog-proof, "Format").
pub fn parse_proof(text: &str) -> Result<TlogProof, ReceiptError> {
    let mut rest = text;
    let mut line = || -> Result<&str, ReceiptError> {
        let (l, r) = rest
            .split_once('\n')
            .ok_or_else(|| ReceiptError("proof ends before its checkpoint".into()))?;
        rest = r;
        Ok(l)
    };
    if line()? != PROOF_HEADER {
        return err(format!("proof does not start with {PROOF_HEADER}"));
    }
    let mut l = line()?;
    let mut extra = None;
    if let Some(x) = l.strip_prefix("extra ") {
        extra = Some(
            B64.decode(x)
                .map_err(|_| ReceiptError("proof extra data is not base64".into()))?,
        );
        l = line()?;
    }
    let idx = l
        .strip_prefix("index ")
        .ok_or_else(|| ReceiptError("proof has no index line".into()))?;
    if idx.is_empty()
        || (idx.len() > 1 && idx.starts_with('0'))
        || !idx.bytes().all(|b| b.is_ascii_digit())
    {
        return err("proof index is not a decimal number without leading zeros");
    }
    let index: u64 = idx
        .parse()
        .map_err(|_| ReceiptError("proof index is out of range".into()))?;
    let mut hashes = Vec::new();
    loop {
        let l = line()?;
        if l.is_empty() {
            break;
        }
        let b = B64
            .decode(l)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| ReceiptError("proof hash line is not a base64 SHA-256 hash".into()))?;
        if hashes.len() >= 64 {
            return err("proof has more than 64 hashes");
        }
        hashes.push(Hash(b));
    }
    Ok(TlogProof {
        extra,
        index,
        hashes,
        checkpoint: rest.as_bytes().to_vec(),
    })
}

impl ReceiptField {
    pub fn from_opening(f: &FieldOpening) -> Self {
        match f {
            FieldOpening::Revealed { name, value, salt } => Self {
                name: Some(name.clone()),
                value: Some(B64.encode(value)),
                salt: Some(B64.encode(salt)),
                withheld: None,
            },
            FieldOpening::Withheld { hash } => Self {
                name: None,
                value: None,
                salt: None,
                withheld: Some(B64.encode(hash)),
            },
        }
    }

    pub fn to_opening(&self) -> Result<FieldOpening, ReceiptError> {
        let b32 = |s: &str, what: &str| -> Result<[u8; 32], ReceiptError> {
            B64.decode(s)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ReceiptError(format!("{what} is not 32 base64 bytes")))
        };
        match (&self.name, &self.value, &self.salt, &self.withheld) {
            (Some(name), Some(value), Some(salt), None) => Ok(FieldOpening::Revealed {
                name: name.clone(),
                value: B64
                    .decode(value)
                    .map_err(|_| ReceiptError(format!("field {name}: value is not base64")))?,
                salt: B64
                    .decode(salt)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        ReceiptError(format!("field {name}: salt is not 16 base64 bytes"))
                    })?,
            }),
            (None, None, None, Some(h)) => Ok(FieldOpening::Withheld {
                hash: b32(h, "a withheld field hash")?,
            }),
            _ => err("a field must have either name, value and salt, or withheld"),
        }
    }
}

/// What a valid receipt proves.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    pub checkpoint: VerifiedCheckpoint,
    pub index: u64,
    pub leaf: RecordLeaf,
    /// Revealed fields (name, value bytes), in order.
    pub revealed: Vec<(String, Vec<u8>)>,
    pub withheld: usize,
}

/// Verifies a receipt with nothing but the log's verifier keys.
pub fn verify(
    r: &Receipt,
    keys: &LogKeys,
    policy: Policy,
) -> Result<VerifiedReceipt, ReceiptError> {
    if r.format != FORMAT {
        return err(format!("unknown format {:?} (expected {FORMAT})", r.format));
    }
    let proof = parse_proof(&r.proof)?;
    let cp = verify_checkpoint(&proof.checkpoint, keys, policy)
        .map_err(|e| ReceiptError(format!("checkpoint: {e}")))?;
    let leaf = B64
        .decode(&r.leaf)
        .map_err(|_| ReceiptError("leaf is not base64".into()))?;
    merkle::verify_inclusion(
        &proof.hashes,
        cp.checkpoint().size,
        cp.checkpoint().root,
        proof.index,
        merkle::leaf_hash(&leaf),
    )
    .map_err(|e| {
        ReceiptError(format!(
            "the leaf is not at index {} of the checkpointed tree of size {}: {e}",
            proof.index,
            cp.checkpoint().size
        ))
    })?;
    let rec = match Leaf::parse(&leaf).map_err(|e| ReceiptError(e.to_string()))? {
        Leaf::Record(rec) => rec,
        _ => return err("the leaf is not a committed record's leaf"),
    };
    if r.span_count != rec.span_count as u64 {
        return err(format!(
            "span count {} differs from the leaf's {}",
            r.span_count, rec.span_count
        ));
    }
    let openings = r
        .fields
        .iter()
        .map(ReceiptField::to_opening)
        .collect::<Result<Vec<_>, _>>()?;
    let path = r
        .span_path
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Hash)
                .ok_or_else(|| ReceiptError("span path hash is not 32 base64 bytes".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let c = commit::commitment_of(&openings);
    commit::verify_span_path(&path, r.span_count, &rec.span_root, r.span_index, &c).map_err(
        |e| {
            ReceiptError(format!(
                "the span's fields do not hash to span {} of the record's span root: {e}",
                r.span_index
            ))
        },
    )?;
    let mut revealed = Vec::new();
    let mut withheld = 0;
    for o in openings {
        match o {
            FieldOpening::Revealed { name, value, .. } => revealed.push((name, value)),
            FieldOpening::Withheld { .. } => withheld += 1,
        }
    }
    // The ids shown for people must be the committed ones (the `span` field starts with them).
    match revealed.iter().find(|(n, _)| n == "span") {
        Some((_, v)) if v.len() >= 24 => {
            if hex_lower(&v[..16]) != r.trace_id || hex_lower(&v[16..24]) != r.span_id {
                return err(format!(
                    "trace {} span {} are not the committed ids",
                    r.trace_id, r.span_id
                ));
            }
        }
        Some(_) => return err("the span field is too short to hold the ids"),
        None => return err("the receipt withholds the span field (its ids)"),
    }
    Ok(VerifiedReceipt {
        checkpoint: cp,
        index: proof.index,
        leaf: rec,
        revealed,
        withheld,
    })
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlog_proof_roundtrips_and_parses_the_spec_example_shape() {
        let note = b"example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\xe2\x80\x94 example.com/fancylog hI2DJw==\n";
        let hashes = vec![Hash([1; 32]), Hash([2; 32])];
        let text = format_proof(73894, &hashes, note);
        let p = parse_proof(&text).unwrap();
        assert_eq!(p.index, 73894);
        assert_eq!(p.hashes, hashes);
        assert_eq!(p.checkpoint, note.to_vec());
        assert!(p.extra.is_none());
        // The spec's example starts with an extra line.
        let with_extra = text.replacen("index", "extra YWdl\nindex", 1);
        assert_eq!(parse_proof(&with_extra).unwrap().extra.unwrap(), b"age");
        for bad in [
            text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            text.replacen("index 73894", "index 073894", 1),
            text.replacen("index 73894", "index -1", 1),
            text.replacen("index 73894\n", "", 1),
            format!("{PROOF_HEADER}\nindex 1\nnot base64!\n\n"),
            format!("{PROOF_HEADER}\nindex 1\n"),
        ] {
            assert!(parse_proof(&bad).is_err(), "{bad}");
        }
    }
}
