//! C2SP tlog-cosignature (c2sp.org/tlog-cosignature): timestamped cosignatures on checkpoints.
//!
//! - type 0x04, Ed25519: signs `cosignature/v1\ntime <T>\n` followed by the checkpoint text
//!   ("Ed25519 signed message"); used by witnesses.
//! - type 0x06, ML-DSA-44 (FIPS 204, empty context): signs the `cosigned_message` structure
//!   (`subtree/v1\n\0`, cosigner name, timestamp, origin, start, end, hash; "ML-DSA-44 signed
//!   message"); a checkpoint is the subtree `[0, size)`. The log signs every checkpoint this way
//!   beside its Ed25519 note signature.
//!
//! Both encode the signature as `timestamp (u64, big-endian) || signature`.

use aws_lc_rs::signature::{
    ED25519, Ed25519KeyPair, KeyPair, ML_DSA_44, ML_DSA_44_SIGNING, PqdsaKeyPair, UnparsedPublicKey,
};
use zeroize::Zeroizing;

use crate::checkpoint::Checkpoint;
use crate::note::{
    NoteError, NoteSigner, NoteVerifier, format_vkey, is_valid_name, key_id, random_seed,
    split_vkey,
};

/// Signature type 0x04: timestamped Ed25519 cosignatures.
pub const TYPE_ED25519_COSIG: u8 = 0x04;
/// Signature type 0x06: timestamped ML-DSA-44 (sub)tree cosignatures.
pub const TYPE_MLDSA44_COSIG: u8 = 0x06;
/// ML-DSA-44 public key and signature sizes (FIPS 204, table 2).
pub const MLDSA44_PUBLIC_KEY_LEN: usize = 1312;
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;

/// The Ed25519 cosignature message: header, timestamp line, checkpoint text.
pub fn ed25519_message(timestamp: u64, checkpoint_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

/// The ML-DSA-44 `cosigned_message` (RFC 8446 section 3 presentation language).
pub fn mldsa_message(
    cosigner: &str,
    timestamp: u64,
    origin: &str,
    start: u64,
    end: u64,
    hash: &[u8; 32],
) -> Result<Vec<u8>, NoteError> {
    if start > 0 && timestamp > 0 {
        return Err(NoteError::BadSignerKey(
            "a subtree with start > 0 has timestamp 0",
        ));
    }
    if cosigner.is_empty() || cosigner.len() > 255 || origin.is_empty() || origin.len() > 255 {
        return Err(NoteError::BadSignerKey("names must be 1 to 255 bytes"));
    }
    let mut m = Vec::with_capacity(12 + 1 + cosigner.len() + 8 + 1 + origin.len() + 16 + 32);
    m.extend_from_slice(b"subtree/v1\n\0");
    m.push(cosigner.len() as u8);
    m.extend_from_slice(cosigner.as_bytes());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.push(origin.len() as u8);
    m.extend_from_slice(origin.as_bytes());
    m.extend_from_slice(&start.to_be_bytes());
    m.extend_from_slice(&end.to_be_bytes());
    m.extend_from_slice(hash);
    Ok(m)
}

fn split_timestamp(sig: &[u8], len: usize) -> Option<(u64, &[u8])> {
    if sig.len() != 8 + len {
        return None;
    }
    let t = u64::from_be_bytes(sig[..8].try_into().ok()?);
    (t <= i64::MAX as u64).then_some((t, &sig[8..]))
}

/// The timestamp of a cosignature line's signature bytes (after the key ID).
pub fn cosignature_timestamp(sig: &[u8]) -> Option<u64> {
    split_timestamp(sig, sig.len().checked_sub(8)?).map(|(t, _)| t)
}

/// Verifies ML-DSA-44 cosignatures (type 0x06) of checkpoints.
pub struct MlDsaCosigVerifier {
    name: String,
    id: u32,
    key: Vec<u8>,
}

impl MlDsaCosigVerifier {
    /// Parses a type 0x06 vkey (its key ID is checked against the key).
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_vkey(vkey)?;
        if key[0] != TYPE_MLDSA44_COSIG {
            return Err(NoteError::BadVerifierKey(
                "not an ML-DSA-44 cosignature (type 0x06) key",
            ));
        }
        if key.len() != 1 + MLDSA44_PUBLIC_KEY_LEN {
            return Err(NoteError::BadVerifierKey(
                "ML-DSA-44 public keys are 1312 bytes",
            ));
        }
        Ok(Self {
            name,
            id,
            key: key[1..].to_vec(),
        })
    }

    /// This key as a vkey.
    pub fn vkey(&self) -> String {
        let mut tk = vec![TYPE_MLDSA44_COSIG];
        tk.extend_from_slice(&self.key);
        format_vkey(&self.name, &tk)
    }

    /// Verifies a subtree cosignature (`sig` = timestamp || ML-DSA-44 signature).
    pub fn verify_subtree(
        &self,
        origin: &str,
        start: u64,
        end: u64,
        hash: &[u8; 32],
        sig: &[u8],
    ) -> bool {
        let Some((t, s)) = split_timestamp(sig, MLDSA44_SIGNATURE_LEN) else {
            return false;
        };
        let Ok(m) = mldsa_message(&self.name, t, origin, start, end, hash) else {
            return false;
        };
        UnparsedPublicKey::new(&ML_DSA_44, &self.key)
            .verify(&m, s)
            .is_ok()
    }
}

impl NoteVerifier for MlDsaCosigVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sig_type(&self) -> u8 {
        TYPE_MLDSA44_COSIG
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(c) = std::str::from_utf8(msg)
            .ok()
            .and_then(|t| Checkpoint::parse(t).ok())
        else {
            return false;
        };
        self.verify_subtree(&c.origin, 0, c.size, &c.root.0, sig)
    }
}

/// Produces ML-DSA-44 checkpoint cosignatures (type 0x06) from a 32-byte seed.
pub struct MlDsaCosigSigner {
    name: String,
    id: u32,
    pair: PqdsaKeyPair,
    public: Vec<u8>,
    seed: Zeroizing<[u8; 32]>,
    clock: fn() -> u64,
}

impl std::fmt::Debug for MlDsaCosigSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MlDsaCosigSigner({}+{:08x})", self.name, self.id)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl MlDsaCosigSigner {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) || name.len() > 255 {
            return Err(NoteError::InvalidSigner);
        }
        let pair = PqdsaKeyPair::from_seed(&ML_DSA_44_SIGNING, &seed)
            .map_err(|_| NoteError::BadSignerKey("unusable ML-DSA-44 seed"))?;
        let public = pair.public_key().as_ref().to_vec();
        let mut tk = vec![TYPE_MLDSA44_COSIG];
        tk.extend_from_slice(&public);
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &tk),
            pair,
            public,
            seed: Zeroizing::new(seed),
            clock: unix_now,
        })
    }

    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::from_seed(name, *random_seed()?)
    }

    /// Uses `clock` (unix seconds) for timestamps; tests pin it.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    pub fn vkey(&self) -> String {
        let mut tk = vec![TYPE_MLDSA44_COSIG];
        tk.extend_from_slice(&self.public);
        format_vkey(&self.name, &tk)
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
}

impl NoteSigner for MlDsaCosigSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        let text = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed)?;
        let c = Checkpoint::parse(text).map_err(|_| NoteError::Malformed)?;
        let t = (self.clock)();
        let m = mldsa_message(&self.name, t, &c.origin, 0, c.size, &c.root.0)?;
        let mut sig = vec![0u8; MLDSA44_SIGNATURE_LEN];
        let n = self.pair.sign(&m, &mut sig).map_err(|_| NoteError::Sign)?;
        sig.truncate(n);
        let mut out = t.to_be_bytes().to_vec();
        out.extend_from_slice(&sig);
        Ok(out)
    }
}

/// Verifies Ed25519 cosignatures (type 0x04), e.g. a witness's.
pub struct Ed25519CosigVerifier {
    name: String,
    id: u32,
    key: [u8; 32],
}

impl Ed25519CosigVerifier {
    /// Parses a type 0x04 vkey.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_vkey(vkey)?;
        if key[0] != TYPE_ED25519_COSIG {
            return Err(NoteError::BadVerifierKey(
                "not an Ed25519 cosignature (type 0x04) key",
            ));
        }
        let key: [u8; 32] = key[1..]
            .try_into()
            .map_err(|_| NoteError::BadVerifierKey("Ed25519 keys are 32 bytes"))?;
        Ok(Self { name, id, key })
    }
}

impl NoteVerifier for Ed25519CosigVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sig_type(&self) -> u8 {
        TYPE_ED25519_COSIG
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((t, s)) = split_timestamp(sig, 64) else {
            return false;
        };
        let Ok(text) = std::str::from_utf8(msg) else {
            return false;
        };
        if Checkpoint::parse(text).is_err() {
            return false;
        }
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(&ed25519_message(t, text), s)
            .is_ok()
    }
}

/// Produces Ed25519 cosignatures (type 0x04).
pub struct Ed25519CosigSigner {
    name: String,
    id: u32,
    pair: Ed25519KeyPair,
    seed: Zeroizing<[u8; 32]>,
    clock: fn() -> u64,
}

impl std::fmt::Debug for Ed25519CosigSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519CosigSigner({}+{:08x})", self.name, self.id)
    }
}

impl Ed25519CosigSigner {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidSigner);
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadSignerKey("unusable Ed25519 seed"))?;
        let mut tk = vec![TYPE_ED25519_COSIG];
        tk.extend_from_slice(pair.public_key().as_ref());
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &tk),
            pair,
            seed: Zeroizing::new(seed),
            clock: unix_now,
        })
    }

    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::from_seed(name, *random_seed()?)
    }

    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    pub fn vkey(&self) -> String {
        let mut tk = vec![TYPE_ED25519_COSIG];
        tk.extend_from_slice(self.pair.public_key().as_ref());
        format_vkey(&self.name, &tk)
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
}

impl NoteSigner for Ed25519CosigSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        let text = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed)?;
        Checkpoint::parse(text).map_err(|_| NoteError::Malformed)?;
        let t = (self.clock)();
        let sig = self
            .pair
            .try_sign(&ed25519_message(t, text))
            .map_err(|_| NoteError::Sign)?;
        let mut out = t.to_be_bytes().to_vec();
        out.extend_from_slice(sig.as_ref());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Ed25519Signer, Ed25519Verifier, Note, Verifiers, open, sign};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    const CP: &str = "test\n123\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n";

    #[test]
    fn torchwood_subtree_vector_verifies() {
        // transparency-dev/formats TestMLDSAVerifyTorchwood (see testdata/README.md).
        let vkey = include_str!("../testdata/mldsa44-subtree-vkey.txt").trim();
        let line = include_str!("../testdata/mldsa44-subtree-sig.txt").trim();
        let v = MlDsaCosigVerifier::from_vkey(vkey).unwrap();
        assert_eq!(v.key_id(), 0x7118e8f9);
        let b64 = line.rsplit(' ').next().unwrap();
        let raw = B64.decode(b64).unwrap();
        assert_eq!(raw.len(), 4 + 8 + MLDSA44_SIGNATURE_LEN);
        assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), 0x7118e8f9);
        let root: [u8; 32] = B64
            .decode("E7ERCtFloiK1fdb+B6/dLG0pM1nmIR0ETKBSauCjtVw=")
            .unwrap()
            .try_into()
            .unwrap();
        assert!(v.verify_subtree("example.com/log", 8, 13, &root, &raw[4..]));
        // Any other statement fails.
        assert!(!v.verify_subtree("example.com/log", 8, 14, &root, &raw[4..]));
        assert!(!v.verify_subtree("example.com/lag", 8, 13, &root, &raw[4..]));
        let mut flipped = raw[4..].to_vec();
        flipped[100] ^= 1;
        assert!(!v.verify_subtree("example.com/log", 8, 13, &root, &flipped));
        // The reconstructed message matches the bytes the vector was made over.
        let m = mldsa_message("witness.example/w1", 0, "example.com/log", 8, 13, &root).unwrap();
        assert_eq!(
            hex::encode(&m),
            "737562747265652f76310a00127769746e6573732e6578616d706c652f773100000000000000000f6578616d706c652e636f6d2f6c6f670000000000000008000000000000000d13b1110ad165a222b57dd6fe07afdd2c6d293359e6211d044ca0526ae0a3b55c"
        );
    }

    #[test]
    fn mldsa_message_rules() {
        let h = [0u8; 32];
        assert!(
            mldsa_message("w", 5, "o", 1, 2, &h).is_err(),
            "start > 0 needs timestamp 0"
        );
        assert!(mldsa_message("w", 0, &"t".repeat(256), 0, 2, &h).is_err());
        assert!(mldsa_message(&format!("mldsa{}", "a".repeat(255)), 0, "o", 0, 2, &h).is_err());
    }

    #[test]
    fn checkpoint_with_both_signatures_roundtrips_and_needs_both() {
        let ed = Ed25519Signer::generate("log.example/tv").unwrap();
        let pq = MlDsaCosigSigner::generate("log.example/tv")
            .unwrap()
            .with_clock(|| 1_700_000_000);
        let msg = sign(
            &Note {
                text: CP.into(),
                ..Default::default()
            },
            &[&ed, &pq],
        )
        .unwrap();
        let both = Verifiers::new(vec![
            Box::new(Ed25519Verifier::from_vkey(&ed.vkey()).unwrap()),
            Box::new(MlDsaCosigVerifier::from_vkey(&pq.vkey()).unwrap()),
        ]);
        let n = open(&msg, &both).unwrap();
        assert_eq!(n.sigs.len(), 2);
        let ts = n.sigs[1].signature_bytes().unwrap();
        assert_eq!(cosignature_timestamp(&ts), Some(1_700_000_000));
        // Strip the ML-DSA line: it still opens (one key verifies), so a two-signature policy
        // must count which keys verified.
        let text = String::from_utf8(msg.clone()).unwrap();
        // (The ML-DSA-44 line is the one thousands of characters long.)
        let stripped: String = text
            .lines()
            .filter(|l| l.len() < 1000)
            .map(|l| format!("{l}\n"))
            .collect();
        let n = open(stripped.as_bytes(), &both).unwrap();
        assert_eq!(n.sigs.len(), 1);
        // A flipped byte in the ML-DSA signature fails the whole note.
        let mut raw = msg.clone();
        let at = raw.len() - 40;
        raw[at] = if raw[at] == b'A' { b'B' } else { b'A' };
        assert!(open(&raw, &both).is_err());
    }

    #[test]
    fn ed25519_cosignatures_cover_extension_lines() {
        let w = Ed25519CosigSigner::generate("witness.example/w")
            .unwrap()
            .with_clock(|| 1727964367);
        let ext = "test\n123\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\nExtendo\n";
        let msg = sign(
            &Note {
                text: ext.into(),
                ..Default::default()
            },
            &[&w],
        )
        .unwrap();
        let vs = Verifiers::new(vec![Box::new(
            Ed25519CosigVerifier::from_vkey(&w.vkey()).unwrap(),
        )]);
        assert!(open(&msg, &vs).is_ok());
        let tampered = String::from_utf8(msg)
            .unwrap()
            .replace("Extendo", "Extendi");
        assert!(open(tampered.as_bytes(), &vs).is_err());
        // The reference timestamp vector.
        let raw = B64
            .decode("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==")
            .unwrap();
        assert_eq!(cosignature_timestamp(&raw[4..]), Some(1727964367));
    }

    #[test]
    fn vkey_types_are_not_interchangeable() {
        let ed = Ed25519Signer::generate("k").unwrap();
        assert!(MlDsaCosigVerifier::from_vkey(&ed.vkey()).is_err());
        assert!(Ed25519CosigVerifier::from_vkey(&ed.vkey()).is_err());
        let pq = MlDsaCosigSigner::generate("k").unwrap();
        assert!(Ed25519Verifier::from_vkey(&pq.vkey()).is_err());
        assert_ne!(ed.key_id(), pq.key_id());
    }
}
