//! Backup and restore of the key store (issue 6): every file under the keys directory (the root
//! key file with a file root, the wrapped tenant keys, the pseudonym keys, the signing keys), in
//! one archive encrypted with age (<https://age-encryption.org/v1>) to an X25519 recipient or a
//! passphrase (scrypt). The `age` tool decrypts it too, so a backup does not depend on tracevault
//! to be read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{CryptoError, fsio};

const ARCHIVE_FORMAT: u32 = 1;

/// The marker `keys restore` leaves for the server to audit at its next start.
pub const RESTORE_MARKER: &str = "restored.json";

/// The plaintext of a backup.
#[derive(Serialize, Deserialize)]
pub struct KeyArchive {
    pub format: u32,
    pub created_unix: u64,
    /// The root the keys are under (`file ...` or `transit ...`).
    pub root: String,
    /// Tenants with keys in the archive.
    pub tenants: Vec<String>,
    /// Path relative to the keys directory -> hex of the file.
    files: BTreeMap<String, String>,
}

impl Drop for KeyArchive {
    fn drop(&mut self) {
        for v in self.files.values_mut() {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

impl KeyArchive {
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CryptoError> {
    for e in std::fs::read_dir(dir).map_err(|e| CryptoError::io(dir, e))? {
        let p = e.map_err(|e| CryptoError::io(dir, e))?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads the key store under `keys_dir` into an archive.
pub fn collect(keys_dir: &Path, root: String) -> Result<KeyArchive, CryptoError> {
    let mut paths = Vec::new();
    walk(keys_dir, &mut paths)?;
    let mut files = BTreeMap::new();
    let mut tenants = Vec::new();
    for p in paths {
        let rel = p
            .strip_prefix(keys_dir)
            .expect("under the keys dir")
            .to_string_lossy()
            .into_owned();
        if rel.contains(".tmp-") || rel == RESTORE_MARKER {
            continue;
        }
        if let Some(t) = rel
            .strip_prefix("tenants/")
            .and_then(|r| r.split('/').next())
            && !tenants.iter().any(|x| x == t)
        {
            tenants.push(t.to_string());
        }
        let bytes = Zeroizing::new(std::fs::read(&p).map_err(|e| CryptoError::io(&p, e))?);
        files.insert(rel, hex::encode(&*bytes));
    }
    tenants.sort();
    Ok(KeyArchive {
        format: ARCHIVE_FORMAT,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        root,
        tenants,
        files,
    })
}

fn backup_error(what: &str, e: impl std::fmt::Display) -> CryptoError {
    CryptoError::BadKeyFile {
        path: "key backup".into(),
        reason: format!("{what}: {e}"),
    }
}

/// Encrypts an archive to an age X25519 recipient (`age1...`); ASCII-armored.
pub fn seal_to_recipient(archive: &KeyArchive, recipient: &str) -> Result<String, CryptoError> {
    let r: age::x25519::Recipient = recipient
        .trim()
        .parse()
        .map_err(|e| backup_error("recipient is not an age X25519 public key (age1...)", e))?;
    let plain =
        Zeroizing::new(serde_json::to_vec(archive).map_err(|e| backup_error("encoding", e))?);
    age::encrypt_and_armor(&r, &plain).map_err(|e| backup_error("encrypting", e))
}

/// Encrypts an archive under a passphrase (age scrypt recipient); ASCII-armored.
pub fn seal_with_passphrase(archive: &KeyArchive, passphrase: &str) -> Result<String, CryptoError> {
    let r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    let plain =
        Zeroizing::new(serde_json::to_vec(archive).map_err(|e| backup_error("encoding", e))?);
    age::encrypt_and_armor(&r, &plain).map_err(|e| backup_error("encrypting", e))
}

/// How to open a backup.
pub enum Opener<'a> {
    /// An age identity file's text (`AGE-SECRET-KEY-1...`).
    Identity(&'a str),
    Passphrase(&'a str),
}

/// Decrypts and parses a backup.
pub fn open(ciphertext: &[u8], how: Opener<'_>) -> Result<KeyArchive, CryptoError> {
    let plain = Zeroizing::new(match how {
        Opener::Identity(text) => {
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .ok_or_else(|| backup_error("identity", "no AGE-SECRET-KEY-1... line"))?;
            let id: age::x25519::Identity =
                line.parse().map_err(|e| backup_error("identity", e))?;
            age::decrypt(&id, ciphertext)
                .map_err(|e| backup_error("cannot decrypt with this identity", e))?
        }
        Opener::Passphrase(p) => {
            let id = age::scrypt::Identity::new(age::secrecy::SecretString::from(p.to_owned()));
            age::decrypt(&id, ciphertext)
                .map_err(|e| backup_error("cannot decrypt with this passphrase", e))?
        }
    });
    let a: KeyArchive =
        serde_json::from_slice(&plain).map_err(|e| backup_error("not a key backup", e))?;
    if a.format != ARCHIVE_FORMAT {
        return Err(CryptoError::Version {
            what: "key backup".into(),
            version: a.format,
        });
    }
    Ok(a)
}

/// What a restore did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Restored {
    pub backup_created_unix: u64,
    pub written: Vec<String>,
    pub unchanged: usize,
    /// Tenants erased after the backup was made: their keys were not restored.
    pub erased_not_restored: Vec<String>,
}

/// Writes the archive's files into `keys_dir` (0600, directories 0700): files that are missing;
/// identical ones are left; a file that exists with other contents stops the restore (naming it)
/// unless `overwrite`. Keys of tenants in `erased` are never written.
pub fn restore(
    keys_dir: &Path,
    archive: &KeyArchive,
    erased: &[String],
    overwrite: bool,
) -> Result<Restored, CryptoError> {
    let mut out = Restored {
        backup_created_unix: archive.created_unix,
        ..Default::default()
    };
    let mut todo = Vec::new();
    let mut conflicts = Vec::new();
    for (rel, hexed) in &archive.files {
        let rel_path = Path::new(rel);
        if rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(backup_error("archive", format!("unsafe path {rel:?}")));
        }
        if let Some(t) = rel
            .strip_prefix("tenants/")
            .and_then(|r| r.split('/').next())
            && erased.iter().any(|e| e == t)
        {
            if !out.erased_not_restored.iter().any(|x| x == t) {
                out.erased_not_restored.push(t.to_string());
            }
            continue;
        }
        let bytes = Zeroizing::new(hex::decode(hexed).map_err(|e| backup_error("archive", e))?);
        let path = keys_dir.join(rel_path);
        match std::fs::read(&path) {
            Ok(cur) if cur == *bytes => out.unchanged += 1,
            Ok(_) if !overwrite => conflicts.push(rel.clone()),
            Ok(_) => todo.push((path, rel.clone(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                todo.push((path, rel.clone(), bytes))
            }
            Err(e) => return Err(CryptoError::io(&path, e)),
        }
    }
    if !conflicts.is_empty() {
        return Err(backup_error(
            "restore refused",
            format!(
                "{} files exist with other contents ({}); nothing was written (--overwrite replaces them)",
                conflicts.len(),
                conflicts.join(", ")
            ),
        ));
    }
    for (path, rel, bytes) in todo {
        if let Some(d) = path.parent() {
            fsio::create_private_dir(d).map_err(|e| CryptoError::io(d, e))?;
        }
        fsio::atomic_write(&path, &bytes, 0o600).map_err(|e| CryptoError::io(&path, e))?;
        out.written.push(rel);
    }
    let marker = keys_dir.join(RESTORE_MARKER);
    let json = serde_json::to_vec_pretty(&out).map_err(|e| backup_error("marker", e))?;
    fsio::atomic_write(&marker, &json, 0o600).map_err(|e| CryptoError::io(&marker, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_round_trips_and_restore_skips_erased_tenants_and_conflicts() {
        let d = tempfile::tempdir().unwrap();
        let keys = d.path().join("keys");
        for (rel, body) in [
            ("root.key", "root"),
            ("tenants/acme/kek-v1.json", "a1"),
            ("tenants/globex/kek-v1.json", "g1"),
        ] {
            let p = keys.join(rel);
            fsio::create_private_dir(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
        }
        let a = collect(&keys, "file".into()).unwrap();
        assert_eq!(a.tenants, vec!["acme", "globex"]);
        let id = age::x25519::Identity::generate();
        let sealed = seal_to_recipient(&a, &id.to_public().to_string()).unwrap();
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        let id_text = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
        let back = open(sealed.as_bytes(), Opener::Identity(&id_text)).unwrap();
        assert_eq!(back.files(), 3);
        // The wrong identity or passphrase: refused, saying so.
        let other = age::x25519::Identity::generate();
        let other_text = age::secrecy::ExposeSecret::expose_secret(&other.to_string()).to_string();
        let e = open(sealed.as_bytes(), Opener::Identity(&other_text))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot decrypt with this identity"), "{e}");
        assert!(seal_to_recipient(&a, "age1nope").is_err());

        // Restore into an empty keys dir, acme erased since: acme is not written.
        let fresh = d.path().join("fresh");
        let r = restore(&fresh, &back, &["acme".to_string()], false).unwrap();
        assert_eq!(r.erased_not_restored, vec!["acme"]);
        assert!(!fresh.join("tenants/acme").exists());
        assert_eq!(
            std::fs::read(fresh.join("tenants/globex/kek-v1.json")).unwrap(),
            b"g1"
        );
        assert_eq!(fsio::mode_of(&fresh.join("root.key")).unwrap(), 0o600);
        assert!(fresh.join(RESTORE_MARKER).exists());
        // Again, without the erasure: only acme's key is new. A changed file stops the restore
        // unless overwriting.
        assert_eq!(restore(&fresh, &back, &[], false).unwrap().written.len(), 1);
        std::fs::write(fresh.join("root.key"), "other").unwrap();
        let e = restore(&fresh, &back, &[], false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("root.key") && e.contains("nothing was written"),
            "{e}"
        );
        assert!(restore(&fresh, &back, &[], true).is_ok());
        assert_eq!(std::fs::read(fresh.join("root.key")).unwrap(), b"root");
    }

    #[test]
    fn passphrase_backups_open_with_the_passphrase_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("root.key"), "root").unwrap();
        let a = collect(d.path(), "file".into()).unwrap();
        let sealed = seal_with_passphrase(&a, "correct horse").unwrap();
        assert!(open(sealed.as_bytes(), Opener::Passphrase("correct horse")).is_ok());
        assert!(open(sealed.as_bytes(), Opener::Passphrase("wrong")).is_err());
    }
}
