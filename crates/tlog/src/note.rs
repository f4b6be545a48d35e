//! C2SP signed-note (c2sp.org/signed-note): text, a blank line, then signature lines
//! `— <key name> base64(key ID || signature)`; verifier keys `<name>+<hex key ID>+base64(type ||
//! public key)`. Behaviour follows the spec's "Format" and "Signatures" sections and matches the
//! reference implementation (golang.org/x/mod/sumdb/note), whose test vectors are the tests here.

use std::collections::HashSet;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

/// Signature type 0x01: Ed25519 over the note text (signed-note, "Ed25519 signatures").
pub const TYPE_ED25519: u8 = 0x01;
/// More signature lines than this make a note malformed (the spec requires accepting at least 16;
/// the reference implementation stops at 100).
pub const MAX_SIGNATURES: usize = 100;

/// Why a note, key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("malformed note")]
    Malformed,
    #[error("note has no verifiable signatures")]
    NoVerifiableSignatures,
    #[error("invalid signature for key {name}+{id:08x}")]
    InvalidSignature { name: String, id: u32 },
    #[error("ambiguous key {name}+{id:08x}")]
    AmbiguousKey { name: String, id: u32 },
    #[error("invalid verifier key: {0}")]
    BadVerifierKey(&'static str),
    #[error("invalid signer key: {0}")]
    BadSignerKey(&'static str),
    #[error("invalid signer name")]
    InvalidSigner,
    #[error("signing failed")]
    Sign,
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// base64(key ID || signature), as on the line.
    pub base64: String,
}

impl NoteSignature {
    /// The signature bytes after the key ID.
    pub fn signature_bytes(&self) -> Option<Vec<u8>> {
        let raw = B64.decode(&self.base64).ok()?;
        (raw.len() >= 5).then(|| raw[4..].to_vec())
    }
}

/// A parsed note: `sigs` verified by a known key, `unverified` from unknown keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Note {
    pub text: String,
    pub sigs: Vec<NoteSignature>,
    pub unverified: Vec<NoteSignature>,
}

/// Checks signatures of one key.
pub trait NoteVerifier: Send + Sync {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    /// Verifies `sig` (without the key ID) over the note text `msg`.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
    /// The signature type byte of this key.
    fn sig_type(&self) -> u8;
}

/// Produces signatures of one key.
pub trait NoteSigner: Send + Sync {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError>;
}

/// 32 random bytes for a new signing key.
pub(crate) fn random_seed() -> Result<Zeroizing<[u8; 32]>, NoteError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut seed[..]).map_err(|_| NoteError::Sign)?;
    Ok(seed)
}

/// Whether a key name is valid: non-empty, no Unicode spaces, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// signed-note, "Signatures": `SHA-256(key name || 0x0A || signature type || public key)[:4]`.
pub fn key_id(name: &str, type_and_key: &[u8]) -> u32 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(type_and_key);
    let d = ctx.finish();
    u32::from_be_bytes(d.as_ref()[..4].try_into().expect("4 bytes"))
}

/// The verifiers a reader trusts.
#[derive(Default)]
pub struct Verifiers(Vec<Box<dyn NoteVerifier>>);

impl Verifiers {
    pub fn new(list: Vec<Box<dyn NoteVerifier>>) -> Self {
        Self(list)
    }
    pub fn push(&mut self, v: Box<dyn NoteVerifier>) {
        self.0.push(v);
    }
    pub fn iter(&self) -> impl Iterator<Item = &dyn NoteVerifier> {
        self.0.iter().map(|b| b.as_ref())
    }
    /// The verifier for (name, key ID): `Ok(None)` when unknown, an error when listed twice.
    pub fn find(&self, name: &str, id: u32) -> Result<Option<&dyn NoteVerifier>, NoteError> {
        let mut found = None;
        for v in &self.0 {
            if v.name() == name && v.key_id() == id {
                if found.is_some() {
                    return Err(NoteError::AmbiguousKey {
                        name: name.to_owned(),
                        id,
                    });
                }
                found = Some(v.as_ref());
            }
        }
        Ok(found)
    }
}

/// Parses `msg` and verifies its signatures against `known` (signed-note, "Signatures"): unknown
/// keys are ignored, a known key's bad signature rejects the note, at least one must verify.
pub fn open(msg: &[u8], known: &Verifiers) -> Result<Note, NoteError> {
    let s = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed)?;
    if s.chars().any(|c| c < '\u{20}' && c != '\n') {
        return Err(NoteError::Malformed);
    }
    let split = s.rfind("\n\n").ok_or(NoteError::Malformed)?;
    let (text, mut sigs) = (&s[..split + 1], &s[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed);
    }
    let mut note = Note {
        text: text.to_owned(),
        ..Default::default()
    };
    let mut seen: HashSet<(String, u32)> = HashSet::new();
    let mut seen_unverified: HashSet<&str> = HashSet::new();
    let mut count = 0usize;
    while !sigs.is_empty() {
        let i = sigs.find('\n').expect("ends with a newline");
        let line = &sigs[..i];
        sigs = &sigs[i + 1..];
        let rest = line.strip_prefix("— ").ok_or(NoteError::Malformed)?;
        let (name, b64) = rest.split_once(' ').unwrap_or((rest, ""));
        let raw = B64.decode(b64).map_err(|_| NoteError::Malformed)?;
        if !is_valid_name(name) || b64.is_empty() || raw.len() < 5 {
            return Err(NoteError::Malformed);
        }
        count += 1;
        if count > MAX_SIGNATURES {
            return Err(NoteError::Malformed);
        }
        let id = u32::from_be_bytes(raw[..4].try_into().expect("4 bytes"));
        let sig = NoteSignature {
            name: name.to_owned(),
            key_id: id,
            base64: b64.to_owned(),
        };
        match known.find(name, id)? {
            None => {
                if seen_unverified.insert(rest) {
                    note.unverified.push(sig);
                }
            }
            Some(v) => {
                if !seen.insert((name.to_owned(), id)) {
                    continue;
                }
                if !v.verify(text.as_bytes(), &raw[4..]) {
                    return Err(NoteError::InvalidSignature {
                        name: name.to_owned(),
                        id,
                    });
                }
                note.sigs.push(sig);
            }
        }
    }
    if note.sigs.is_empty() {
        return Err(NoteError::NoVerifiableSignatures);
    }
    Ok(note)
}

/// Signs `note.text` with `signers`, keeping the note's other signatures (those of keys not among
/// the signers) before the new ones.
pub fn sign(note: &Note, signers: &[&dyn NoteSigner]) -> Result<Vec<u8>, NoteError> {
    if !note.text.ends_with('\n') {
        return Err(NoteError::Malformed);
    }
    let mut out = note.text.clone();
    let mut new_lines = String::new();
    let mut have: HashSet<(String, u32)> = HashSet::new();
    for s in signers {
        if !is_valid_name(s.name()) {
            return Err(NoteError::InvalidSigner);
        }
        have.insert((s.name().to_owned(), s.key_id()));
        let mut raw = s.key_id().to_be_bytes().to_vec();
        raw.extend_from_slice(&s.sign(note.text.as_bytes())?);
        new_lines.push_str(&format!("— {} {}\n", s.name(), B64.encode(raw)));
    }
    out.push('\n');
    for sig in note.sigs.iter().chain(&note.unverified) {
        if !is_valid_name(&sig.name) {
            return Err(NoteError::Malformed);
        }
        if have.contains(&(sig.name.clone(), sig.key_id)) {
            continue;
        }
        let raw = B64.decode(&sig.base64).map_err(|_| NoteError::Malformed)?;
        if raw.len() < 4 || u32::from_be_bytes(raw[..4].try_into().expect("4")) != sig.key_id {
            return Err(NoteError::Malformed);
        }
        out.push_str(&format!("— {} {}\n", sig.name, sig.base64));
    }
    out.push_str(&new_lines);
    Ok(out.into_bytes())
}

/// Splits a vkey into (name, key ID, type || key material).
pub fn split_vkey(vkey: &str) -> Result<(String, u32, Vec<u8>), NoteError> {
    let bad = NoteError::BadVerifierKey;
    let mut parts = vkey.splitn(3, '+');
    let name = parts.next().ok_or(bad("missing name"))?;
    let hex = parts.next().ok_or(bad("missing key ID"))?;
    let b64 = parts.next().ok_or(bad("missing key material"))?;
    if !is_valid_name(name) {
        return Err(bad("invalid key name"));
    }
    if hex.len() != 8 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("key ID must be 8 hex digits"));
    }
    let id = u32::from_str_radix(hex, 16).map_err(|_| bad("key ID must be 8 hex digits"))?;
    let key = B64
        .decode(b64)
        .map_err(|_| bad("key material is not base64"))?;
    if key.is_empty() {
        return Err(bad("empty key material"));
    }
    if key_id(name, &key) != id {
        return Err(bad("key ID does not match the key"));
    }
    Ok((name.to_owned(), id, key))
}

/// Formats a vkey.
pub fn format_vkey(name: &str, type_and_key: &[u8]) -> String {
    format!(
        "{name}+{:08x}+{}",
        key_id(name, type_and_key),
        B64.encode(type_and_key)
    )
}

/// An Ed25519 (type 0x01) verifier.
pub struct Ed25519Verifier {
    name: String,
    id: u32,
    key: [u8; 32],
}

impl Ed25519Verifier {
    /// Parses a `0x01` vkey.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_vkey(vkey)?;
        if key[0] != TYPE_ED25519 {
            return Err(NoteError::BadVerifierKey("not an Ed25519 (type 0x01) key"));
        }
        let key: [u8; 32] = key[1..]
            .try_into()
            .map_err(|_| NoteError::BadVerifierKey("Ed25519 keys are 32 bytes"))?;
        Ok(Self { name, id, key })
    }

    /// This key as a vkey.
    pub fn vkey(&self) -> String {
        let mut tk = vec![TYPE_ED25519];
        tk.extend_from_slice(&self.key);
        format_vkey(&self.name, &tk)
    }
}

impl NoteVerifier for Ed25519Verifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sig_type(&self) -> u8 {
        TYPE_ED25519
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(msg, sig)
            .is_ok()
    }
}

/// An Ed25519 (type 0x01) signer, from a 32-byte seed.
pub struct Ed25519Signer {
    name: String,
    id: u32,
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519Signer({}+{:08x})", self.name, self.id)
    }
}

impl Ed25519Signer {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidSigner);
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadSignerKey("unusable Ed25519 seed"))?;
        let mut tk = vec![TYPE_ED25519];
        tk.extend_from_slice(pair.public_key().as_ref());
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &tk),
            seed: Zeroizing::new(seed),
            pair,
        })
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::from_seed(name, *random_seed()?)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadSignerKey;
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad("missing PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let name = parts.next().ok_or(bad("missing name"))?;
        let hex = parts.next().ok_or(bad("missing key ID"))?;
        let b64 = parts.next().ok_or(bad("missing key material"))?;
        if hex.len() != 8 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("key ID must be 8 hex digits"));
        }
        let id = u32::from_str_radix(hex, 16).map_err(|_| bad("key ID"))?;
        let key = Zeroizing::new(B64.decode(b64).map_err(|_| bad("not base64"))?);
        if key.len() != 33 || key[0] != TYPE_ED25519 {
            return Err(bad("not an Ed25519 seed"));
        }
        let seed: [u8; 32] = key[1..].try_into().expect("32 bytes");
        let s = Self::from_seed(name, seed)?;
        if s.id != id {
            return Err(bad("key ID does not match the key"));
        }
        Ok(s)
    }

    /// The verifier key of this signer.
    pub fn vkey(&self) -> String {
        let mut tk = vec![TYPE_ED25519];
        tk.extend_from_slice(self.pair.public_key().as_ref());
        format_vkey(&self.name, &tk)
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
}

impl NoteSigner for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        Ok(self
            .pair
            .try_sign(msg)
            .map_err(|_| NoteError::Sign)?
            .as_ref()
            .to_vec())
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from golang.org/x/mod/sumdb/note (note_test.go) and the signed-note spec example.
    use super::*;

    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn v(k: &str) -> Box<dyn NoteVerifier> {
        Box::new(Ed25519Verifier::from_vkey(k).unwrap())
    }

    #[test]
    fn sign_reproduces_the_reference_signature() {
        let s = Ed25519Signer::from_skey(SKEY).unwrap();
        assert_eq!(s.vkey(), VKEY);
        let out = sign(
            &Note {
                text: TEXT.into(),
                ..Default::default()
            },
            &[&s],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{TEXT}\n{PETER_SIG}")
        );
        // An old signature by the same key is replaced, not duplicated.
        let old = Note {
            text: TEXT.into(),
            sigs: vec![NoteSignature {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3,
                base64: "BADSIGN=".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(sign(&old, &[&s]).unwrap()).unwrap(),
            format!("{TEXT}\n{PETER_SIG}")
        );
        assert_eq!(
            sign(
                &Note {
                    text: "abc".into(),
                    ..Default::default()
                },
                &[&s]
            ),
            Err(NoteError::Malformed)
        );
    }

    #[test]
    fn open_follows_the_reference_behaviour() {
        let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let n = open(msg.as_bytes(), &Verifiers::new(vec![v(VKEY)])).unwrap();
        assert_eq!(n.text, TEXT);
        assert_eq!(n.sigs.len(), 1);
        assert_eq!(n.sigs[0].key_id, 0xc74f20a3);
        assert_eq!(n.unverified[0].name, "EnochRoot");
        let n = open(msg.as_bytes(), &Verifiers::new(vec![v(VKEY), v(ENOCH)])).unwrap();
        assert_eq!(n.sigs.len(), 2);
        assert_eq!(
            open(msg.as_bytes(), &Verifiers::default()),
            Err(NoteError::NoVerifiableSignatures)
        );
        let amb = format!("{TEXT}\n{ENOCH_SIG}");
        assert_eq!(
            open(
                amb.as_bytes(),
                &Verifiers::new(vec![v(ENOCH), v(VKEY), v(ENOCH)])
            )
            .unwrap_err()
            .to_string(),
            "ambiguous key EnochRoot+af0cfe78"
        );
        let ok = format!("{TEXT}\n{PETER_SIG}");
        assert!(
            open(
                ok.as_bytes(),
                &Verifiers::new(vec![v(ENOCH), v(VKEY), v(ENOCH)])
            )
            .is_ok()
        );
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
        assert_eq!(
            open(many.as_bytes(), &Verifiers::new(vec![v(VKEY)])),
            Err(NoteError::Malformed)
        );
        let tampered = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert_eq!(
            open(tampered.as_bytes(), &Verifiers::new(vec![v(VKEY)]))
                .unwrap_err()
                .to_string(),
            "invalid signature for key PeterNeumann+c74f20a3"
        );
        // Duplicates: one verified Peter, Enoch once, the altered Enoch line as another unknown.
        let dup = format!(
            "{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{}ABCD{}",
            &ENOCH_SIG[..60],
            &ENOCH_SIG[60..]
        );
        let n = open(dup.as_bytes(), &Verifiers::new(vec![v(VKEY)])).unwrap();
        assert_eq!(n.sigs.len(), 1);
        assert_eq!(n.unverified.len(), 2);
        for bad in [
            TEXT.to_string(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!(
                "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        ] {
            assert_eq!(
                open(bad.as_bytes(), &Verifiers::new(vec![v(VKEY)])),
                Err(NoteError::Malformed),
                "{bad:?}"
            );
        }
        let mut invalid_utf8 = b"\xff".to_vec();
        invalid_utf8.extend_from_slice(format!("{TEXT}\n{PETER_SIG}").as_bytes());
        assert_eq!(
            open(&invalid_utf8, &Verifiers::new(vec![v(VKEY)])),
            Err(NoteError::Malformed)
        );
    }

    #[test]
    fn spec_example_verifies() {
        let vk = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
        let msg = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let n = open(msg.as_bytes(), &Verifiers::new(vec![v(vk)])).unwrap();
        assert_eq!(n.text, "This is an example message.\n");
    }

    #[test]
    fn bad_verifier_keys_are_refused() {
        assert!(
            Ed25519Verifier::from_vkey(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert!(
            Ed25519Verifier::from_vkey(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            )
            .is_err()
        );
        // Every proper prefix and every single-byte change of a good key is refused.
        for i in 0..VKEY.len() {
            assert!(
                Ed25519Verifier::from_vkey(&VKEY[..i]).is_err(),
                "prefix {i}"
            );
            let mut b = VKEY.as_bytes().to_vec();
            b[i] = b[i].wrapping_add(1);
            if let Ok(s) = String::from_utf8(b) {
                assert!(Ed25519Verifier::from_vkey(&s).is_err(), "byte {i}");
            }
        }
        // A key whose base64 contains '+' (split on the first two '+' only).
        assert!(split_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").is_ok());
        for bad in [
            "bananas.sigstore.dev+12344556",
            "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        ] {
            assert!(split_vkey(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_keys_roundtrip() {
        let s = Ed25519Signer::generate("log.example/test").unwrap();
        let text = "hello\n";
        let msg = sign(
            &Note {
                text: text.into(),
                ..Default::default()
            },
            &[&s],
        )
        .unwrap();
        let n = open(&msg, &Verifiers::new(vec![v(&s.vkey())])).unwrap();
        assert_eq!(n.text, text);
    }
}
