//! Root key sources. The embedded default is a 0600 file; an external KMS comes later behind the
//! same trait.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{CryptoError, SecretKey, fsio, random_bytes};

/// Something that can wrap and unwrap tenant keys under the root of the hierarchy.
pub trait RootKeySource: Send + Sync + std::fmt::Debug {
    /// A short description for logs (never key material).
    fn describe(&self) -> String;
    /// Wraps `key`, binding `context` as associated data.
    fn wrap(&self, context: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError>;
    /// Unwraps what [`RootKeySource::wrap`] produced for the same `context`.
    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError>;
    /// Whether the source answers now (a remote KMS is asked; a file always answers).
    fn check(&self) -> Result<(), CryptoError> {
        Ok(())
    }
    /// Destroys whatever the root keeps for `tenant` alone (a KMS key of its own); a file root
    /// keeps nothing per tenant. Succeeds when there is nothing (left) to destroy.
    fn destroy_tenant(&self, _tenant: &str) -> Result<Option<String>, CryptoError> {
        Ok(None)
    }
    /// Re-wraps `wrapped` under the root's newest key version (a KMS rewraps without revealing
    /// the key; the default unwraps and wraps again).
    fn rewrap(&self, context: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let k = self.unwrap(context, wrapped)?;
        self.wrap(context, &k)
    }
}

/// Re-wraps `wrapped` under the root's newest key version and checks that the new wrapping opens
/// to the same key (a KMS answering with another key is refused, not stored).
pub fn rewrap_checked(
    root: &dyn RootKeySource,
    context: &[u8],
    wrapped: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let new = root.rewrap(context, wrapped)?;
    let (before, after) = (root.unwrap(context, wrapped)?, root.unwrap(context, &new)?);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &before.expose()[..],
        &after.expose()[..],
    )) {
        return Err(CryptoError::Decrypt(
            "a key re-wrapped under the root's newest version opened to another key".into(),
        ));
    }
    Ok(new)
}

const ROOT_HEADER: &str = "tracevault-root-key v1";

/// A root key kept in a file (mode 0600) under the keys directory.
pub struct FileRootKey {
    path: PathBuf,
    aead: LessSafeKey,
}

impl std::fmt::Debug for FileRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileRootKey({})", self.path.display())
    }
}

impl FileRootKey {
    /// Loads the root key at `path`, creating a new random one (mode 0600) if absent.
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        let created = if path.exists() {
            false
        } else {
            let key = SecretKey::random();
            let text =
                zeroize::Zeroizing::new(format!("{ROOT_HEADER}\n{}\n", hex::encode(key.expose())));
            if let Some(dir) = path.parent() {
                fsio::create_private_dir(dir).map_err(|e| CryptoError::io(dir, e))?;
            }
            fsio::create_private_file(path, text.as_bytes())
                .map_err(|e| CryptoError::io(path, e))?;
            true
        };
        let mode = fsio::mode_of(path).map_err(|e| CryptoError::io(path, e))?;
        if mode & 0o077 != 0 {
            return Err(CryptoError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| CryptoError::io(path, e))?,
        );
        let bad = |reason: &str| CryptoError::BadKeyFile {
            path: path.display().to_string(),
            reason: reason.to_owned(),
        };
        let mut lines = text.lines();
        match lines.next() {
            Some(h) if h == ROOT_HEADER => {}
            Some(h) if h.starts_with("tracevault-root-key ") => {
                return Err(CryptoError::Version {
                    what: format!("root key file {}", path.display()),
                    version: h
                        .trim_start_matches("tracevault-root-key v")
                        .parse()
                        .unwrap_or(0),
                });
            }
            _ => return Err(bad("missing header line")),
        }
        let hexkey = lines.next().ok_or_else(|| bad("missing key line"))?;
        let raw = zeroize::Zeroizing::new(hex::decode(hexkey.trim()).map_err(|_| bad("not hex"))?);
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad("key is not 32 bytes"))?;
        let key = SecretKey::from_bytes(arr);
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.expose()).map_err(|_| bad("unusable key"))?;
        Ok((
            Self {
                path: path.to_owned(),
                aead: LessSafeKey::new(unbound),
            },
            created,
        ))
    }
}

impl RootKeySource for FileRootKey {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn wrap(&self, context: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        // Random 96-bit nonces are safe here: the root key wraps a handful of tenant keys.
        let n: [u8; NONCE_LEN] = random_bytes();
        let mut buf = key.expose().to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(n),
                Aad::from(context),
                &mut buf,
            )
            .map_err(|_| CryptoError::Primitive("root wrap"))?;
        let mut out = n.to_vec();
        out.extend_from_slice(&buf);
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(out)
    }

    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        if wrapped.len() != NONCE_LEN + 32 + 16 {
            return Err(CryptoError::Decrypt(
                "wrapped tenant key (bad length)".into(),
            ));
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&wrapped[..NONCE_LEN]);
        let mut buf = zeroize::Zeroizing::new(wrapped[NONCE_LEN..].to_vec());
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(n),
                Aad::from(context),
                &mut buf,
            )
            .map_err(|_| CryptoError::Decrypt("wrapped tenant key".into()))?;
        let arr: [u8; 32] = (&*plain)
            .try_into()
            .map_err(|_| CryptoError::Decrypt("wrapped tenant key".into()))?;
        Ok(SecretKey::from_bytes(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_key_and_reloads_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys/root.key");
        let (k, created) = FileRootKey::load_or_create(&p).unwrap();
        assert!(created);
        assert_eq!(fsio::mode_of(&p).unwrap(), 0o600);
        assert_eq!(fsio::mode_of(p.parent().unwrap()).unwrap(), 0o700);
        let t = SecretKey::random();
        let w = k.wrap(b"ctx", &t).unwrap();
        let (k2, created2) = FileRootKey::load_or_create(&p).unwrap();
        assert!(!created2);
        assert_eq!(k2.unwrap(b"ctx", &w).unwrap().expose(), t.expose());
        assert!(k2.unwrap(b"other", &w).is_err());
    }

    #[test]
    fn refuses_world_readable_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("root.key");
        FileRootKey::load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = FileRootKey::load_or_create(&p).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
