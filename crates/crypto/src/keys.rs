//! Secret keys and AES-256-GCM sealing under a data key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// Fills a buffer from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // aws-lc's RNG only fails if the OS entropy source is broken; nothing safe can continue then.
    aws_lc_rs::rand::fill(&mut b).expect("system random number generator failed");
    b
}

/// 256 bits of secret key material, zeroized on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn random() -> Self {
        Self(random_bytes())
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
    /// Key commitment: HMAC-SHA256 under the key of a fixed label.
    pub fn commitment(&self) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let tag = hmac::sign(&k, b"tracevault/v1/key-commitment");
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A data key ready to seal and open with AES-256-GCM.
pub struct DataKey {
    secret: SecretKey,
    aead: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl DataKey {
    /// A fresh random data key.
    pub fn random() -> Self {
        Self::from_secret(SecretKey::random())
    }

    pub fn from_secret(secret: SecretKey) -> Self {
        // A 32-byte key is always a valid AES-256 key.
        let unbound = UnboundKey::new(&AES_256_GCM, secret.expose()).expect("32-byte AES key");
        Self {
            secret,
            aead: LessSafeKey::new(unbound),
        }
    }

    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// Encrypts `buf` in place and appends the 16-byte tag. The caller guarantees `counter` is
    /// never reused with this key (each object has its own key and counts its chunks).
    pub fn seal(&self, counter: u64, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.aead
            .seal_in_place_append_tag(nonce(counter), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Primitive("aes-256-gcm seal"))
    }

    /// Decrypts `buf` in place, returning the plaintext slice.
    pub fn open<'a>(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        self.aead
            .open_in_place(nonce(counter), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Decrypt("sealed data".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_tamper_detection() {
        let k = DataKey::random();
        let mut buf = b"hello".to_vec();
        k.seal(1, b"a", &mut buf).unwrap();
        assert_ne!(&buf[..5], b"hello");
        let mut c = buf.clone();
        assert_eq!(k.open(1, b"a", &mut c).unwrap(), b"hello");
        let mut wrong_aad = buf.clone();
        assert!(k.open(1, b"b", &mut wrong_aad).is_err());
        let mut wrong_nonce = buf.clone();
        assert!(k.open(2, b"a", &mut wrong_nonce).is_err());
        buf[0] ^= 1;
        assert!(k.open(1, b"a", &mut buf).is_err());
    }

    #[test]
    fn different_keys_have_different_commitments() {
        assert_ne!(
            SecretKey::random().commitment(),
            SecretKey::random().commitment()
        );
        let k = SecretKey::from_bytes([3; 32]);
        assert_eq!(k.commitment(), k.clone().commitment());
        assert_eq!(format!("{k:?}"), "SecretKey(..)");
    }
}
