//! Sealed state: the files the server trusts that the transparency log does not cover.
//!
//! Credentials and their revocations (`tokens.json`), workload registrations and revoked
//! certificates (`workloads.json`), automated responses (`responses.json`), the behavioural
//! detectors' state (`detect/<tenant>.state`) and the client CA certificate (`tls/client-ca.pem`)
//! are each sealed with HMAC-SHA256 under a key wrapped by the root key
//! (`keys/state-seal.json`). The seals are listed in `DIR/state-seal.json`, itself sealed, so a
//! file that is changed, deleted, or put back in an older form, and a trusted file that appears
//! unsealed, are found by name: at start (the server refuses to start on credentials and
//! registrations that do not match, and warns on detector state) and by `tracevault verify`.
//!
//! The seal authenticates a file's content as the server last wrote it; it does not stop someone
//! holding the root key from re-sealing. Replaying the whole directory (files and manifest
//! together) from an older backup is not detected here (the transparency log's checkpoints are
//! what date a backup).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use tv_crypto::{RootKeySource, SecretKey, fsio};

/// The seal key's file under the keys directory, and its wrapping context.
pub const KEY_FILE: &str = "state-seal.json";
pub const KEY_CONTEXT: &[u8] = b"tracevault/v1/state-seal-key";
/// The manifest under the data directory.
pub const MANIFEST: &str = "state-seal.json";
/// Left by `tracevault state reseal` for the next start to record in the audit log.
pub const RESEAL_MARKER: &str = "state-resealed.json";

/// At start: a reseal since the last run becomes an audit record.
pub fn audit_reseal(data_dir: &Path, audit: &crate::audit::Audit) {
    let marker = data_dir.join(RESEAL_MARKER);
    let Ok(bytes) = std::fs::read(&marker) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let accepted: Vec<String> = v["accepted"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let detail = format!(
        "state: {} trusted files resealed offline at unix {}; accepted: [{}]",
        v["files"].as_u64().unwrap_or(0),
        v["resealed_unix"].as_u64().unwrap_or(0),
        accepted.join("; ")
    )
    .chars()
    .take(512)
    .collect();
    tracing::warn!(
        accepted = accepted.len(),
        "the trusted state files were resealed offline since the last run"
    );
    audit.system(
        "state_reseal",
        detail,
        &tv_model::TenantId::default_tenant(),
    );
    if let Err(e) = std::fs::remove_file(&marker) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot remove the reseal marker");
    }
}

const FORMAT: u32 = 1;

/// A trusted file and what a mismatch means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Credentials, revocations, registrations, responses, the client CA: the server refuses to
    /// start on a mismatch.
    Security,
    /// Learned detector state: a mismatch is reported and the state relearned.
    Detector,
}

/// Which files under the data directory are trusted, by relative path.
pub fn trust_of(rel: &str) -> Option<Trust> {
    match rel {
        "tokens.json" | "workloads.json" | "responses.json" | "tls/client-ca.pem" => {
            Some(Trust::Security)
        }
        r if r.starts_with("detect/") && r.ends_with(".state") => Some(Trust::Detector),
        _ => None,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Relative path -> hex HMAC of (path, content).
    files: BTreeMap<String, String>,
    /// Hex HMAC of the list above.
    mac: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    format: u32,
    wrapped: String,
}

/// What a check found wrong with one trusted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub trust: Trust,
    pub what: &'static str,
}

/// The seal key and the manifest of one data directory.
pub struct StateSeal {
    key: hmac::Key,
    data_dir: PathBuf,
    manifest: Mutex<Manifest>,
    /// Whether the manifest existed when opened (a first start or an upgrade seals what is
    /// there).
    pub existed: bool,
}

impl std::fmt::Debug for StateSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateSeal({})", self.data_dir.display())
    }
}

/// Loads (or, with `create`, makes) the seal key.
pub fn load_key(
    keys_dir: &Path,
    root: &dyn RootKeySource,
    create: bool,
) -> anyhow::Result<hmac::Key> {
    let path = keys_dir.join(KEY_FILE);
    if !path.exists() {
        if !create {
            bail!("{} does not exist", path.display());
        }
        let secret = SecretKey::random();
        let file = KeyFile {
            format: FORMAT,
            wrapped: hex::encode(root.wrap(KEY_CONTEXT, &secret)?),
        };
        fsio::create_private_file(&path, &serde_json::to_vec_pretty(&file)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let file: KeyFile = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    if file.format != FORMAT {
        bail!(
            "{} has format {}; this build reads {FORMAT}",
            path.display(),
            file.format
        );
    }
    let wrapped = hex::decode(&file.wrapped).context("wrapped seal key is not hex")?;
    let secret = root.unwrap(KEY_CONTEXT, &wrapped)?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, secret.expose()))
}

fn file_mac(key: &hmac::Key, rel: &str, content: &[u8]) -> String {
    let mut c = hmac::Context::with_key(key);
    c.update(b"tracevault/v1/state-file\0");
    c.update(&(rel.len() as u64).to_be_bytes());
    c.update(rel.as_bytes());
    c.update(content);
    hex::encode(c.sign().as_ref())
}

fn manifest_mac(key: &hmac::Key, files: &BTreeMap<String, String>) -> String {
    let mut c = hmac::Context::with_key(key);
    c.update(b"tracevault/v1/state-manifest\0");
    for (p, m) in files {
        c.update(&(p.len() as u64).to_be_bytes());
        c.update(p.as_bytes());
        c.update(m.as_bytes());
    }
    hex::encode(c.sign().as_ref())
}

fn ct_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl StateSeal {
    /// Opens the seal of `data_dir` (the key is created on first use). A manifest whose own
    /// seal does not verify is refused.
    pub fn open(
        data_dir: &Path,
        keys_dir: &Path,
        root: &dyn RootKeySource,
    ) -> anyhow::Result<Self> {
        let key = load_key(keys_dir, root, true)?;
        Self::with_key(data_dir, key)
    }

    /// A seal that starts from an empty list, whatever is on disk (`tracevault state reseal`).
    pub fn fresh(data_dir: &Path, key: hmac::Key) -> Self {
        StateSeal {
            key,
            data_dir: data_dir.to_owned(),
            manifest: Mutex::new(Manifest {
                format: FORMAT,
                ..Default::default()
            }),
            existed: false,
        }
    }

    /// Opens the manifest with a key already loaded (`verify`).
    pub fn with_key(data_dir: &Path, key: hmac::Key) -> anyhow::Result<Self> {
        let path = data_dir.join(MANIFEST);
        let (manifest, existed) = match std::fs::read(&path) {
            Ok(b) => {
                let m: Manifest = serde_json::from_slice(&b)
                    .with_context(|| format!("parsing {}", path.display()))?;
                if m.format != FORMAT {
                    bail!(
                        "{} has format {}; this build reads {FORMAT}",
                        path.display(),
                        m.format
                    );
                }
                if !ct_eq(&manifest_mac(&key, &m.files), &m.mac) {
                    bail!(
                        "{} does not match its seal: the list of trusted files was changed outside the server",
                        path.display()
                    );
                }
                (m, true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Manifest {
                    format: FORMAT,
                    ..Default::default()
                },
                false,
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(StateSeal {
            key,
            data_dir: data_dir.to_owned(),
            manifest: Mutex::new(manifest),
            existed,
        })
    }

    fn save(&self, m: &mut Manifest) -> anyhow::Result<()> {
        m.mac = manifest_mac(&self.key, &m.files);
        let path = self.data_dir.join(MANIFEST);
        fsio::atomic_write(&path, &serde_json::to_vec_pretty(m)?, 0o600)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// How many files the manifest lists.
    pub fn sealed(&self) -> usize {
        self.manifest.lock().expect("state seal lock").files.len()
    }

    /// The data directory the seal is for.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Seals `rel` as it is on disk now (call after every write of a trusted file); a file that
    /// is gone is dropped from the manifest.
    pub fn seal(&self, rel: &str) -> anyhow::Result<()> {
        let mut m = self.manifest.lock().expect("state seal lock");
        match std::fs::read(self.data_dir.join(rel)) {
            Ok(content) => {
                m.files
                    .insert(rel.to_owned(), file_mac(&self.key, rel, &content));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                m.files.remove(rel);
            }
            Err(e) => return Err(e).with_context(|| format!("reading {rel}")),
        }
        self.save(&mut m)
    }

    /// Seals `rel`, logging (not failing the caller) when the manifest cannot be written: the
    /// next start then reports the file.
    pub fn seal_or_warn(&self, rel: &str) {
        if let Err(e) = self.seal(rel) {
            tracing::error!(file = rel, error = %format!("{e:#}"), "cannot seal a trusted file; the next start will report it");
        }
    }

    /// The trusted files under the data directory now, by relative path.
    fn present(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            "tokens.json",
            "workloads.json",
            "responses.json",
            "tls/client-ca.pem",
        ]
        .into_iter()
        .filter(|r| self.data_dir.join(r).exists())
        .map(str::to_owned)
        .collect();
        for (dir, ext) in [("detect", ".state"), ("graph", ".graph")] {
            if let Ok(rd) = std::fs::read_dir(self.data_dir.join(dir)) {
                for e in rd.flatten() {
                    if let Some(n) = e.file_name().to_str()
                        && n.ends_with(ext)
                    {
                        out.push(format!("{dir}/{n}"));
                    }
                }
            }
        }
        out
    }

    /// Seals every trusted file present (a first start, an upgrade, `tracevault state
    /// reseal`); returns how many.
    pub fn seal_all(&self) -> anyhow::Result<usize> {
        let present = self.present();
        let mut m = self.manifest.lock().expect("state seal lock");
        m.files.clear();
        for rel in &present {
            let content =
                std::fs::read(self.data_dir.join(rel)).with_context(|| format!("reading {rel}"))?;
            m.files
                .insert(rel.clone(), file_mac(&self.key, rel, &content));
        }
        self.save(&mut m)?;
        Ok(present.len())
    }

    /// Every trusted file that does not match the manifest: changed, deleted, or unsealed.
    pub fn check(&self) -> Vec<Mismatch> {
        let m = self.manifest.lock().expect("state seal lock");
        let mut out = Vec::new();
        for (rel, mac) in &m.files {
            let trust = trust_of(rel).unwrap_or(Trust::Security);
            match std::fs::read(self.data_dir.join(rel)) {
                Ok(content) => {
                    if !ct_eq(&file_mac(&self.key, rel, &content), mac) {
                        out.push(Mismatch {
                            path: rel.clone(),
                            trust,
                            what: "changed outside the server (its seal does not match)",
                        });
                    }
                }
                Err(_) => out.push(Mismatch {
                    path: rel.clone(),
                    trust,
                    what: "deleted (the server sealed it and it is gone)",
                }),
            }
        }
        for rel in self.present() {
            if !m.files.contains_key(&rel) {
                out.push(Mismatch {
                    trust: trust_of(&rel).unwrap_or(Trust::Security),
                    path: rel,
                    what: "not written by the server (no seal)",
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(dir: &Path) -> StateSeal {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        StateSeal::with_key(dir, key).unwrap()
    }

    #[test]
    fn changed_deleted_and_unsealed_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokens.json"), b"{\"tokens\":[]}").unwrap();
        std::fs::create_dir_all(d.path().join("detect")).unwrap();
        std::fs::write(d.path().join("detect/acme.state"), b"state").unwrap();
        let s = seal(d.path());
        assert!(!s.existed);
        assert_eq!(s.seal_all().unwrap(), 2);
        assert!(s.check().is_empty());
        // The server writes and seals: still clean, also after reopening.
        std::fs::write(d.path().join("tokens.json"), b"{\"tokens\":[1]}").unwrap();
        s.seal("tokens.json").unwrap();
        let s = seal(d.path());
        assert!(s.existed && s.check().is_empty());
        // Someone else writes, deletes, adds.
        std::fs::write(d.path().join("tokens.json"), b"{\"tokens\":[2]}").unwrap();
        std::fs::remove_file(d.path().join("detect/acme.state")).unwrap();
        std::fs::write(d.path().join("workloads.json"), b"{}").unwrap();
        let found: Vec<(String, Trust)> =
            s.check().into_iter().map(|m| (m.path, m.trust)).collect();
        assert_eq!(
            found,
            vec![
                ("detect/acme.state".to_string(), Trust::Detector),
                ("tokens.json".to_string(), Trust::Security),
                ("workloads.json".to_string(), Trust::Security),
            ]
        );
        // Editing the manifest to match is refused: it is sealed too.
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join(MANIFEST)).unwrap()).unwrap();
        m["files"]["workloads.json"] = serde_json::json!("00");
        std::fs::write(d.path().join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        let err = StateSeal::with_key(d.path(), hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match its seal"), "{err}");
    }
}
