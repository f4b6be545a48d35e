//! The checkpoint verification policy: a checkpoint is trusted only when **both** the log's
//! Ed25519 note signature (signed-note type 0x01) and its ML-DSA-44 cosignature (tlog-cosignature
//! type 0x06) verify. Accepting "any valid signature" would let an attacker strip the
//! post-quantum line; classical-only verification exists, but only when asked for explicitly.

use crate::checkpoint::Checkpoint;
use crate::cosig::MlDsaCosigVerifier;
use crate::note::{Ed25519Verifier, NoteError, NoteVerifier, Verifiers, open};

/// Which signatures a checkpoint must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Ed25519 and ML-DSA-44 (the default).
    Both,
    /// Ed25519 alone, for classical-only verifiers. Callers must warn loudly when they use it.
    ClassicalOnly,
}

/// The log's verifier keys.
pub struct LogKeys {
    pub ed25519: Ed25519Verifier,
    pub mldsa: MlDsaCosigVerifier,
}

impl LogKeys {
    /// Parses the two vkeys (`tracevault log keys` prints them, one per line, in any order).
    pub fn from_vkeys<S: AsRef<str>>(vkeys: &[S]) -> Result<Self, NoteError> {
        let mut ed = None;
        let mut pq = None;
        for k in vkeys {
            let k = k.as_ref().trim();
            if let Ok(v) = Ed25519Verifier::from_vkey(k) {
                ed = Some(v);
            } else {
                pq = Some(MlDsaCosigVerifier::from_vkey(k)?);
            }
        }
        match (ed, pq) {
            (Some(ed25519), Some(mldsa)) => Ok(Self { ed25519, mldsa }),
            _ => Err(NoteError::BadVerifierKey(
                "need the log's Ed25519 (type 0x01) and ML-DSA-44 (type 0x06) verifier keys",
            )),
        }
    }
}

/// A checkpoint whose signatures passed the policy. Only [`verify_checkpoint`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: Vec<u8>,
}

impl VerifiedCheckpoint {
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
    /// The signed note as received.
    pub fn note(&self) -> &[u8] {
        &self.note
    }
}

/// Why a checkpoint was not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("checkpoint is missing the log's {0} signature")]
    Missing(&'static str),
    #[error("checkpoint origin {got:?} is not the log's key name {want:?}")]
    Origin { got: String, want: String },
    #[error("malformed checkpoint body: {0}")]
    Body(String),
}

/// Opens a signed checkpoint note and applies `policy`.
pub fn verify_checkpoint(
    note: &[u8],
    keys: &LogKeys,
    policy: Policy,
) -> Result<VerifiedCheckpoint, PolicyError> {
    // Verifiers own their keys; rebuild the pair from the vkeys for this list.
    let vs = Verifiers::new(vec![
        Box::new(Ed25519Verifier::from_vkey(&keys.ed25519.vkey())?),
        Box::new(MlDsaCosigVerifier::from_vkey(&keys.mldsa.vkey())?),
    ]);
    let n = open(note, &vs)?;
    let has = |v: &dyn NoteVerifier| {
        n.sigs
            .iter()
            .any(|s| s.name == v.name() && s.key_id == v.key_id())
    };
    if !has(&keys.ed25519) {
        return Err(PolicyError::Missing("Ed25519"));
    }
    if policy == Policy::Both && !has(&keys.mldsa) {
        return Err(PolicyError::Missing("ML-DSA-44"));
    }
    let c = Checkpoint::parse(&n.text).map_err(|e| PolicyError::Body(e.to_string()))?;
    if c.origin != keys.ed25519.name() {
        return Err(PolicyError::Origin {
            got: c.origin,
            want: keys.ed25519.name().to_owned(),
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint: c,
        note: note.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosig::MlDsaCosigSigner;
    use crate::note::{Ed25519Signer, Note, sign};

    const CP: &str = "log.example/tv\n5\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n";

    fn setup() -> (Ed25519Signer, MlDsaCosigSigner, LogKeys) {
        let ed = Ed25519Signer::generate("log.example/tv").unwrap();
        let pq = MlDsaCosigSigner::generate("log.example/tv").unwrap();
        let keys = LogKeys::from_vkeys(&[pq.vkey(), ed.vkey()]).unwrap();
        (ed, pq, keys)
    }

    #[test]
    fn both_signatures_are_required() {
        let (ed, pq, keys) = setup();
        let both = sign(
            &Note {
                text: CP.into(),
                ..Default::default()
            },
            &[&ed, &pq],
        )
        .unwrap();
        let v = verify_checkpoint(&both, &keys, Policy::Both).unwrap();
        assert_eq!(v.checkpoint().size, 5);
        let ed_only = sign(
            &Note {
                text: CP.into(),
                ..Default::default()
            },
            &[&ed],
        )
        .unwrap();
        assert_eq!(
            verify_checkpoint(&ed_only, &keys, Policy::Both),
            Err(PolicyError::Missing("ML-DSA-44"))
        );
        assert!(verify_checkpoint(&ed_only, &keys, Policy::ClassicalOnly).is_ok());
        let pq_only = sign(
            &Note {
                text: CP.into(),
                ..Default::default()
            },
            &[&pq],
        )
        .unwrap();
        assert_eq!(
            verify_checkpoint(&pq_only, &keys, Policy::ClassicalOnly),
            Err(PolicyError::Missing("Ed25519"))
        );
    }

    #[test]
    fn reordered_signatures_still_verify_and_garbage_does_not() {
        let (ed, pq, keys) = setup();
        let both = String::from_utf8(
            sign(
                &Note {
                    text: CP.into(),
                    ..Default::default()
                },
                &[&ed, &pq],
            )
            .unwrap(),
        )
        .unwrap();
        let (text, sigs) = both.split_once("\n\n").unwrap();
        let lines: Vec<&str> = sigs.lines().collect();
        let reordered = format!("{text}\n\n{}\n{}\n", lines[1], lines[0]);
        assert!(verify_checkpoint(reordered.as_bytes(), &keys, Policy::Both).is_ok());
        let garbage = format!("{both}trailing garbage\n");
        assert!(verify_checkpoint(garbage.as_bytes(), &keys, Policy::Both).is_err());
        // An unknown extra signature (a witness) is ignored.
        let w = Ed25519Signer::generate("witness.example/w").unwrap();
        let n = crate::note::open(
            both.as_bytes(),
            &Verifiers::new(vec![Box::new(
                Ed25519Verifier::from_vkey(&ed.vkey()).unwrap(),
            )]),
        )
        .unwrap();
        let with_w = sign(&n, &[&w]).unwrap();
        assert!(verify_checkpoint(&with_w, &keys, Policy::Both).is_ok());
    }

    #[test]
    fn a_checkpoint_for_another_origin_is_refused() {
        let (ed, pq, keys) = setup();
        let other = CP.replace("log.example/tv", "other.example/log");
        let n = sign(
            &Note {
                text: other,
                ..Default::default()
            },
            &[&ed, &pq],
        )
        .unwrap();
        assert!(matches!(
            verify_checkpoint(&n, &keys, Policy::Both),
            Err(PolicyError::Origin { .. })
        ));
    }
}
