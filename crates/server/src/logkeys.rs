//! The log's checkpoint signing keys (issue 3): an Ed25519 note key and an ML-DSA-44 cosignature
//! key under the log's origin name, generated on first start and kept as seeds wrapped by the root
//! key in `keys/log-signing.json` (0600). The verifier keys are stored beside them in clear so
//! `tracevault log keys` can print them without the root key; verifiers should pin them from
//! outside the data directory.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tv_crypto::{RootKeySource, SecretKey, fsio, random_bytes};
use tv_tlog::cosig::MlDsaCosigSigner;
use tv_tlog::note::Ed25519Signer;

const FILE: &str = "log-signing.json";
/// The audit log's keys: their own pair, named for the origin `<log origin>/audit`.
const AUDIT_FILE: &str = "audit-signing.json";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: u32,
    origin: String,
    ed25519_vkey: String,
    mldsa44_vkey: String,
    /// hex of the root-wrapped 32-byte seeds
    ed25519_seed: String,
    mldsa44_seed: String,
}

/// The log's signers.
pub struct LogSigners {
    pub origin: String,
    pub ed25519: Ed25519Signer,
    pub mldsa: MlDsaCosigSigner,
}

impl LogSigners {
    /// The same keys under the origin `<origin>/<node>`: in a cluster each node sequences its
    /// own log, and a checkpoint of one node's log cannot pass for another's.
    pub fn for_node(self, node: &str) -> anyhow::Result<LogSigners> {
        let origin = format!("{}/{node}", self.origin);
        Ok(LogSigners {
            ed25519: Ed25519Signer::from_seed(&origin, *self.ed25519.seed())?,
            mldsa: MlDsaCosigSigner::from_seed(&origin, *self.mldsa.seed())?,
            origin,
        })
    }
}

fn ctx(kind: &str, origin: &str) -> Vec<u8> {
    format!("tracevault/v1/log-{kind}-seed|{origin}").into_bytes()
}

/// Loads the signing keys, creating them (and the log's origin) on first use.
pub fn load_or_create(keys_dir: &Path, root: &dyn RootKeySource) -> anyhow::Result<LogSigners> {
    load_or_create_file(&keys_dir.join(FILE), root, || {
        format!("tracevault/{}", hex::encode(random_bytes::<8>()))
    })
}

/// The audit log's signing keys (origin `<log origin>/audit`), created on first use.
pub fn load_or_create_audit(
    keys_dir: &Path,
    root: &dyn RootKeySource,
    log_origin: &str,
) -> anyhow::Result<LogSigners> {
    let s = load_or_create_file(&keys_dir.join(AUDIT_FILE), root, || {
        format!("{log_origin}/audit")
    })?;
    if s.origin != format!("{log_origin}/audit") {
        bail!(
            "{}: the audit keys are for origin {:?}, not this log's {log_origin:?}/audit",
            keys_dir.join(AUDIT_FILE).display(),
            s.origin
        );
    }
    Ok(s)
}

fn load_or_create_file(
    path: &Path,
    root: &dyn RootKeySource,
    new_origin: impl FnOnce() -> String,
) -> anyhow::Result<LogSigners> {
    let path = path.to_owned();
    if !path.exists() {
        let origin = new_origin();
        let ed = Ed25519Signer::generate(&origin)?;
        let pq = MlDsaCosigSigner::generate(&origin)?;
        let wrap = |kind: &str, seed: &[u8; 32]| -> anyhow::Result<String> {
            Ok(hex::encode(root.wrap(
                &ctx(kind, &origin),
                &SecretKey::from_bytes(*seed),
            )?))
        };
        let file = KeyFile {
            format: FORMAT,
            origin: origin.clone(),
            ed25519_vkey: ed.vkey(),
            mldsa44_vkey: pq.vkey(),
            ed25519_seed: wrap("ed25519", ed.seed())?,
            mldsa44_seed: wrap("mldsa44", pq.seed())?,
        };
        fsio::create_private_file(&path, &serde_json::to_vec_pretty(&file)?)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(origin = %origin, "created the log's checkpoint signing keys (Ed25519 and ML-DSA-44)");
    }
    let file = read(&path)?;
    let unwrap = |kind: &str, hexs: &str| -> anyhow::Result<[u8; 32]> {
        let w = hex::decode(hexs).context("wrapped seed is not hex")?;
        Ok(*root.unwrap(&ctx(kind, &file.origin), &w)?.expose())
    };
    let ed = Ed25519Signer::from_seed(&file.origin, unwrap("ed25519", &file.ed25519_seed)?)?;
    let pq = MlDsaCosigSigner::from_seed(&file.origin, unwrap("mldsa44", &file.mldsa44_seed)?)?;
    if ed.vkey() != file.ed25519_vkey || pq.vkey() != file.mldsa44_vkey {
        bail!(
            "{}: the stored verifier keys do not match the signing keys; the file was altered",
            path.display()
        );
    }
    Ok(LogSigners {
        origin: file.origin,
        ed25519: ed,
        mldsa: pq,
    })
}

/// Re-wraps one root-wrapped hex field of a JSON key file under the root's newest version (a KMS
/// rewraps without revealing the key).
fn rewrap_field(
    root: &dyn RootKeySource,
    v: &mut serde_json::Value,
    field: &str,
    context: &[u8],
) -> anyhow::Result<()> {
    let old = hex::decode(v[field].as_str().unwrap_or_default())
        .with_context(|| format!("{field} is not hex"))?;
    let new = tv_crypto::rewrap_checked(root, context, &old)?;
    v[field] = serde_json::Value::String(hex::encode(new));
    Ok(())
}

/// Re-wraps the system secrets (the log's and the audit log's signing seeds, the token HMAC key)
/// under the root's newest key version, after the KMS key was rotated. Returns how many.
pub fn rewrap_system_secrets(keys_dir: &Path, root: &dyn RootKeySource) -> anyhow::Result<usize> {
    let mut n = 0;
    // (file, [(field, seed kind, or None for the token HMAC key)])
    type Fields = Vec<(&'static str, Option<&'static str>)>;
    let files: [(&str, Fields); 4] = [
        (
            FILE,
            vec![
                ("ed25519_seed", Some("ed25519")),
                ("mldsa44_seed", Some("mldsa44")),
            ],
        ),
        (
            AUDIT_FILE,
            vec![
                ("ed25519_seed", Some("ed25519")),
                ("mldsa44_seed", Some("mldsa44")),
            ],
        ),
        (tv_access::HMAC_KEY_FILE, vec![("wrapped", None)]),
        (crate::stateseal::KEY_FILE, vec![("wrapped", None)]),
    ];
    for (name, fields) in files {
        let path = keys_dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let mut v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        let origin = v["origin"].as_str().unwrap_or_default().to_string();
        for (field, kind) in fields {
            let context = match kind {
                Some(k) => ctx(k, &origin),
                None if name == crate::stateseal::KEY_FILE => {
                    crate::stateseal::KEY_CONTEXT.to_vec()
                }
                None => tv_access::HMAC_KEY_CONTEXT.to_vec(),
            };
            rewrap_field(root, &mut v, field, &context)
                .with_context(|| format!("re-wrapping {}", path.display()))?;
            n += 1;
        }
        let json = if name == tv_access::HMAC_KEY_FILE {
            serde_json::to_vec(&v)?
        } else {
            serde_json::to_vec_pretty(&v)?
        };
        fsio::atomic_write(&path, &json, 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(n)
}

fn read(path: &Path) -> anyhow::Result<KeyFile> {
    let file: KeyFile = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    if file.format != FORMAT {
        bail!(
            "{} has format version {}; this build reads version {FORMAT}",
            path.display(),
            file.format
        );
    }
    Ok(file)
}

/// The verifier keys (Ed25519 first, then ML-DSA-44), without touching the root key.
pub fn verifier_keys(keys_dir: &Path) -> anyhow::Result<Vec<String>> {
    verifier_keys_file(keys_dir, FILE)
}

/// The audit log's verifier keys (Ed25519 first, then ML-DSA-44).
pub fn audit_verifier_keys(keys_dir: &Path) -> anyhow::Result<Vec<String>> {
    verifier_keys_file(keys_dir, AUDIT_FILE)
}

/// The same verifier key under the name `<name>/<node>`: a cluster node's log is signed with the
/// cluster's keys under its own origin.
pub fn node_vkey(vkey: &str, node: &str) -> anyhow::Result<String> {
    let (name, _, key) = tv_tlog::note::split_vkey(vkey)
        .map_err(|e| anyhow::anyhow!("verifier key {vkey:?}: {e}"))?;
    Ok(tv_tlog::note::format_vkey(&format!("{name}/{node}"), &key))
}

fn verifier_keys_file(keys_dir: &Path, file: &str) -> anyhow::Result<Vec<String>> {
    let path = keys_dir.join(file);
    if !path.exists() {
        bail!(
            "no log signing keys in {} yet: start the server once to create them",
            keys_dir.display()
        );
    }
    let f = read(&path)?;
    Ok(vec![f.ed25519_vkey, f.mldsa44_vkey])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tv_crypto::FileRootKey;

    #[test]
    fn keys_are_created_once_wrapped_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let (root, _) = FileRootKey::load_or_create(&d.path().join("root.key")).unwrap();
        let a = load_or_create(d.path(), &root).unwrap();
        let b = load_or_create(d.path(), &root).unwrap();
        assert_eq!(a.ed25519.vkey(), b.ed25519.vkey());
        assert_eq!(a.mldsa.vkey(), b.mldsa.vkey());
        let vk = verifier_keys(d.path()).unwrap();
        assert_eq!(vk, vec![a.ed25519.vkey(), a.mldsa.vkey()]);
        assert!(tv_tlog::policy::LogKeys::from_vkeys(&vk).is_ok());
        let text = std::fs::read_to_string(d.path().join(FILE)).unwrap();
        assert!(
            !text.contains(&hex::encode(a.ed25519.seed())),
            "seed stored in clear"
        );
        assert_eq!(fsio::mode_of(&d.path().join(FILE)).unwrap(), 0o600);
        // Swapped verifier keys are noticed.
        let other = tempfile::tempdir().unwrap();
        load_or_create(other.path(), &root).unwrap();
        let mut f: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o: serde_json::Value =
            serde_json::from_slice(&std::fs::read(other.path().join(FILE)).unwrap()).unwrap();
        f["ed25519_vkey"] = o["ed25519_vkey"].clone();
        std::fs::write(d.path().join(FILE), serde_json::to_vec(&f).unwrap()).unwrap();
        assert!(load_or_create(d.path(), &root).is_err());
    }
}
