//! Tenant key-encryption keys (versioned, wrapped by the root key) and data-key wrapping.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrap};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tv_model::TenantId;

use crate::{CryptoError, DataKey, RootKeySource, SecretKey, fsio};

/// Format version of tenant key files.
const KEK_FILE_VERSION: u32 = 1;

/// A data key wrapped under a tenant key (AES-KW, RFC 3394), with the tenant key version and a key
/// commitment. Serialized as a fixed 76-byte record.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub kek_version: u32,
    pub wrapped: [u8; 40],
    pub commitment: [u8; 32],
}

impl std::fmt::Debug for WrappedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedDataKey(kek v{})", self.kek_version)
    }
}

impl WrappedDataKey {
    pub const LEN: usize = 4 + 40 + 32;

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.kek_version.to_le_bytes());
        out[4..44].copy_from_slice(&self.wrapped);
        out[44..].copy_from_slice(&self.commitment);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        let mut wrapped = [0u8; 40];
        wrapped.copy_from_slice(&b[4..44]);
        let mut commitment = [0u8; 32];
        commitment.copy_from_slice(&b[44..]);
        Some(Self {
            kek_version: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            wrapped,
            commitment,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct KekFile {
    format: u32,
    tenant: String,
    version: u32,
    created_unix: u64,
    /// hex of the root-wrapped key
    wrapped: String,
}

impl KekFile {
    /// Reads and checks a root-wrapped key file (`kek-v<N>.json`, `pseudonym.json`).
    fn read(path: &Path) -> Result<Self, CryptoError> {
        let bytes = std::fs::read(path).map_err(|e| CryptoError::io(path, e))?;
        let file: KekFile = serde_json::from_slice(&bytes).map_err(|e| bad_file(path, e))?;
        if file.format != KEK_FILE_VERSION {
            return Err(CryptoError::Version {
                what: format!("tenant key file {}", path.display()),
                version: file.format,
            });
        }
        Ok(file)
    }

    fn wrapped(&self, path: &Path) -> Result<Vec<u8>, CryptoError> {
        hex::decode(&self.wrapped).map_err(|e| bad_file(path, e))
    }

    /// Writes the file atomically (0600).
    fn write(&self, path: &Path) -> Result<(), CryptoError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| bad_file(path, e))?;
        fsio::atomic_write(path, &json, 0o600).map_err(|e| CryptoError::io(path, e))
    }
}

fn bad_file(path: &Path, reason: impl std::fmt::Display) -> CryptoError {
    CryptoError::BadKeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The newest key version of every tenant under `keys_dir` and when it was created (unix
/// seconds), read from the key files alone (no root key is needed): for reports such as
/// `tracevault doctor`. Sorted by tenant.
pub fn current_versions(keys_dir: &Path) -> Result<Vec<(String, u32, u64)>, CryptoError> {
    let dir = keys_dir.join("tenants");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CryptoError::io(&dir, e)),
    };
    let mut out = Vec::new();
    for t in rd {
        let t = t.map_err(|e| CryptoError::io(&dir, e))?;
        if !t.path().is_dir() {
            continue;
        }
        let newest = std::fs::read_dir(t.path())
            .map_err(|e| CryptoError::io(&t.path(), e))?
            .filter_map(|f| {
                let name = f.ok()?.file_name();
                kek_version(name.to_str()?)
            })
            .max();
        if let Some(v) = newest {
            let created = KekFile::read(&t.path().join(format!("kek-v{v}.json")))?.created_unix;
            out.push((t.file_name().to_string_lossy().into_owned(), v, created));
        }
    }
    out.sort();
    Ok(out)
}

/// A cluster's shared copy of the tenant key files (the bucket): the files as on disk (keys
/// wrapped by the root), each created once, so nodes with their own keys directories agree on
/// every tenant's keys, whichever node makes them first.
pub trait KeyShare: Send + Sync {
    /// Creates `rel` (a path under `tenants/`: `<tenant>/kek-v<N>.json`, `<tenant>/pseudonym.json`)
    /// with `bytes` unless it exists; returns the bytes the cluster holds.
    fn create(&self, rel: &str, bytes: &[u8]) -> Result<Vec<u8>, String>;
    /// The file `rel`, if the cluster holds it.
    fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, String>;
    /// The names of the files of `tenant`.
    fn list(&self, tenant: &str) -> Result<Vec<String>, String>;
    /// Removes every file of `tenant` (an erasure).
    fn remove(&self, tenant: &str) -> Result<(), String>;
    /// Replaces `rel` with `bytes` if it still holds `expected` (the same key re-wrapped under
    /// the root's newest version); false when it changed meanwhile.
    fn replace(&self, rel: &str, expected: &[u8], bytes: &[u8]) -> Result<bool, String>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// The root-wrapping context of a tenant key file (`kek-v<N>.json`, `pseudonym.json`).
fn file_context(tenant: &TenantId, name: &str) -> Option<Vec<u8>> {
    match name {
        "pseudonym.json" => Some(pseudonym_context(tenant)),
        _ => kek_version(name).map(|v| kek_context(tenant, v)),
    }
}

/// The version a tenant key file's name (`kek-v<N>.json`) names.
fn kek_version(name: &str) -> Option<u32> {
    name.strip_prefix("kek-v")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// Writes a new key file (0600, its directory 0700); one already there is an error unless
/// `existing_ok` (a copy of the cluster's file: any node's copy is the same).
fn write_key_file(path: &Path, bytes: &[u8], existing_ok: bool) -> Result<(), CryptoError> {
    let dir = fsio::parent_dir(path);
    fsio::create_private_dir(dir).map_err(|e| CryptoError::io(dir, e))?;
    match fsio::create_private_file(path, bytes) {
        Ok(()) => Ok(()),
        Err(e) if existing_ok && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CryptoError::io(path, e)),
    }
}

fn share_error(share: &dyn KeyShare, why: String) -> CryptoError {
    CryptoError::Kms(format!("shared tenant keys in {}: {why}", share.describe()))
}

/// A tenant key unwrapped, and when the root last confirmed it.
struct Cached {
    key: Arc<SecretKey>,
    confirmed: std::time::Instant,
}

/// The key ring: tenant keys under the root key, cached unwrapped in memory. With an external
/// root (a KMS), [`Keyring::refresh`] re-confirms the cached keys with the root periodically and
/// a key the root has not confirmed for `max_stale` is no longer used.
pub struct Keyring {
    dir: PathBuf,
    root: Arc<dyn RootKeySource>,
    cache: Mutex<HashMap<(TenantId, u32), Cached>>,
    current: Mutex<HashMap<TenantId, u32>>,
    max_stale: Mutex<Option<std::time::Duration>>,
    /// Data keys re-wrapped under a newer tenant key, by key commitment (loaded per tenant from
    /// `tenants/<tenant>/rewrapped.json`).
    rewrapped: Mutex<HashMap<TenantId, HashMap<[u8; 32], WrappedDataKey>>>,
    /// Tenants erased: no key of theirs is created, unwrapped or used again.
    erased: Mutex<std::collections::HashSet<TenantId>>,
    /// A cluster's shared copy of the key files.
    share: std::sync::OnceLock<Arc<dyn KeyShare>>,
}

/// What [`Keyring::destroy`] destroyed.
#[derive(Debug, Default, Clone)]
pub struct Destroyed {
    /// Tenant key versions whose files were removed.
    pub versions: Vec<u32>,
    /// Data-key re-wrappings removed.
    pub rewrapped: usize,
    /// The root's own key for the tenant (a KMS key name), when it had one.
    pub root_key: Option<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring({}, root {})",
            self.dir.display(),
            self.root.describe()
        )
    }
}

fn kek_context(tenant: &TenantId, version: u32) -> Vec<u8> {
    format!("tracevault/v1/tenant-kek|{tenant}|{version}").into_bytes()
}

/// The pseudonym key's wrapping context: under the tenant's own root key (a KMS key per tenant).
fn pseudonym_context(tenant: &TenantId) -> Vec<u8> {
    format!("tracevault/v1/tenant-kek|{tenant}|pseudonym").into_bytes()
}

impl Keyring {
    /// Opens the key ring rooted at `keys_dir` (tenant keys live in `keys_dir/tenants`).
    pub fn open(keys_dir: &Path, root: Arc<dyn RootKeySource>) -> Result<Self, CryptoError> {
        let dir = keys_dir.join("tenants");
        fsio::create_private_dir(&dir).map_err(|e| CryptoError::io(&dir, e))?;
        Ok(Self {
            dir,
            root,
            cache: Mutex::new(HashMap::new()),
            current: Mutex::new(HashMap::new()),
            max_stale: Mutex::new(None),
            rewrapped: Mutex::new(HashMap::new()),
            erased: Mutex::new(std::collections::HashSet::new()),
            share: std::sync::OnceLock::new(),
        })
    }

    /// Shares the tenant key files with a cluster's other nodes from now on: keys are created
    /// there once (a node that made one second takes the first), and a key file this directory
    /// lacks is read from there.
    pub fn share_with(&self, share: Arc<dyn KeyShare>) {
        let _ = self.share.set(share);
    }

    /// Puts the key files this directory holds into the share (each created once; a node
    /// joining a cluster with keys made before the share existed), except those of `erased`
    /// tenants (erased elsewhere while this node was away: it destroys its copies next). Returns
    /// how many it added, and the files whose share copy differs (two keys made for one version:
    /// a broken cluster the operator must resolve).
    pub fn publish_local(&self, erased: &[TenantId]) -> Result<(usize, Vec<String>), CryptoError> {
        let Some(sh) = self.share.get() else {
            return Ok((0, Vec::new()));
        };
        let (mut added, mut differ) = (0, Vec::new());
        for tenant in self.tenants()? {
            if erased.contains(&tenant) {
                continue;
            }
            let dir = self.tenant_dir(&tenant);
            let rd = std::fs::read_dir(&dir).map_err(|e| CryptoError::io(&dir, e))?;
            for e in rd {
                let path = e.map_err(|e| CryptoError::io(&dir, e))?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !(name == "pseudonym.json" || kek_version(name).is_some()) {
                    continue;
                }
                let rel = format!("{tenant}/{name}");
                let bytes = std::fs::read(&path).map_err(|e| CryptoError::io(&path, e))?;
                let held = sh
                    .create(&rel, &bytes)
                    .map_err(|e| share_error(sh.as_ref(), e))?;
                if held == bytes {
                    added += 1;
                    continue;
                }
                // Other bytes: the same key wrapped differently (re-wrapped under a newer root
                // version on another node, or here) is no conflict; this node takes the
                // cluster's wrapping. Two different keys for one file are.
                let ctx = file_context(&tenant, name).unwrap_or_default();
                let open = |b: &[u8]| -> Option<SecretKey> {
                    let f: KekFile = serde_json::from_slice(b).ok()?;
                    self.root.unwrap(&ctx, &hex::decode(&f.wrapped).ok()?).ok()
                };
                match (open(&bytes), open(&held)) {
                    (Some(mine), Some(theirs))
                        if aws_lc_rs::constant_time::verify_slices_are_equal(
                            mine.expose(),
                            theirs.expose(),
                        )
                        .is_ok() =>
                    {
                        fsio::atomic_write(&path, &held, 0o600)
                            .map_err(|e| CryptoError::io(&path, e))?;
                    }
                    // This copy no longer opens (its root version retired) but the cluster's does.
                    (None, Some(_)) => {
                        fsio::atomic_write(&path, &held, 0o600)
                            .map_err(|e| CryptoError::io(&path, e))?;
                    }
                    _ => differ.push(rel),
                }
            }
        }
        Ok((added, differ))
    }

    /// Creates the key file `path` (`rel` under `tenants/`) with `json`, or, in a cluster whose
    /// share already holds it, with the share's bytes; returns what the file holds.
    fn create_file(&self, path: &Path, rel: &str, json: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let bytes = match self.share.get() {
            Some(sh) => sh
                .create(rel, json)
                .map_err(|e| share_error(sh.as_ref(), e))?,
            None => json.to_vec(),
        };
        write_key_file(path, &bytes, self.share.get().is_some())?;
        Ok(bytes)
    }

    /// In a cluster, copies the key file `rel` from the share when this directory lacks it;
    /// whether the file is here now.
    fn ensure_local(&self, path: &Path, rel: &str) -> Result<bool, CryptoError> {
        if path.exists() {
            return Ok(true);
        }
        let Some(sh) = self.share.get() else {
            return Ok(false);
        };
        let Some(bytes) = sh.get(rel).map_err(|e| share_error(sh.as_ref(), e))? else {
            return Ok(false);
        };
        write_key_file(path, &bytes, true)?;
        Ok(true)
    }

    /// The tenant's key versions here and, in a cluster, in the share.
    fn versions_known(&self, tenant: &TenantId) -> Result<Vec<u32>, CryptoError> {
        let mut v = self.versions_on_disk(tenant)?;
        if let Some(sh) = self.share.get() {
            for name in sh
                .list(tenant.as_str())
                .map_err(|e| share_error(sh.as_ref(), e))?
            {
                v.extend(kek_version(&name));
            }
            v.sort_unstable();
            v.dedup();
        }
        Ok(v)
    }

    /// Marks `tenant` erased: from now on no key of it is created, unwrapped or used (its cached
    /// keys are dropped, which zeroizes them once no data key in use holds them).
    pub fn mark_erased(&self, tenant: &TenantId) {
        self.erased
            .lock()
            .expect("keyring lock poisoned")
            .insert(tenant.clone());
        self.cache
            .lock()
            .expect("keyring lock poisoned")
            .retain(|(t, _), _| t != tenant);
        self.current
            .lock()
            .expect("keyring lock poisoned")
            .remove(tenant);
        self.rewrapped
            .lock()
            .expect("keyring lock poisoned")
            .remove(tenant);
    }

    pub fn is_erased(&self, tenant: &TenantId) -> bool {
        self.erased
            .lock()
            .expect("keyring lock poisoned")
            .contains(tenant)
    }

    fn refuse_erased(&self, tenant: &TenantId) -> Result<(), CryptoError> {
        if self.is_erased(tenant) {
            return Err(CryptoError::Erased(tenant.to_string()));
        }
        Ok(())
    }

    /// Crypto-shreds `tenant`: marks it erased, destroys the root's key for it (a KMS key), then
    /// overwrites and removes every version of its key files and its re-wrapped data keys.
    /// Idempotent: a second call (after a crash part-way) destroys what is left.
    pub fn destroy(&self, tenant: &TenantId) -> Result<Destroyed, CryptoError> {
        self.mark_erased(tenant);
        let mut out = Destroyed {
            root_key: self.root.destroy_tenant(tenant.as_str())?,
            ..Default::default()
        };
        let dir = self.tenant_dir(tenant);
        let rw = self.rewrapped_path(tenant);
        if let Ok(b) = std::fs::read(&rw) {
            out.rewrapped = serde_json::from_slice::<HashMap<String, String>>(&b)
                .map(|m| m.len())
                .unwrap_or(0);
        }
        out.versions = self.versions_on_disk(tenant)?;
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(CryptoError::io(&dir, e)),
        };
        for e in rd {
            let path = e.map_err(|e| CryptoError::io(&dir, e))?.path();
            fsio::shred(&path).map_err(|e| CryptoError::io(&path, e))?;
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CryptoError::io(&dir, e)),
        }
        fsio::sync_dir(&self.dir).map_err(|e| CryptoError::io(&self.dir, e))?;
        if let Some(sh) = self.share.get() {
            sh.remove(tenant.as_str())
                .map_err(|e| share_error(sh.as_ref(), e))?;
        }
        Ok(out)
    }

    fn rewrapped_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenant_dir(tenant).join("rewrapped.json")
    }

    /// The newest wrapping of a data key (its re-wrapped form when there is one).
    fn newest_wrapping(
        &self,
        tenant: &TenantId,
        w: &WrappedDataKey,
    ) -> Result<WrappedDataKey, CryptoError> {
        self.refuse_erased(tenant)?;
        let mut all = self.rewrapped.lock().expect("keyring lock poisoned");
        if !all.contains_key(tenant) {
            let path = self.rewrapped_path(tenant);
            let mut map = HashMap::new();
            for (c, wk) in fsio::read_digest_map(&path)? {
                let wk = WrappedDataKey::from_bytes(&wk)
                    .ok_or_else(|| bad_file(&path, "not a wrapped data key"))?;
                map.insert(c, wk);
            }
            all.insert(tenant.clone(), map);
        }
        Ok(all
            .get(tenant)
            .and_then(|m| m.get(&w.commitment))
            .cloned()
            .unwrap_or_else(|| w.clone()))
    }

    /// Re-wraps data keys of `tenant` under its current key version, without touching the files
    /// that hold them: the new wrappings go to `tenants/<tenant>/rewrapped.json` (keyed by the
    /// data key's commitment) and are used from then on. Returns (re-wrapped, already current).
    pub fn rewrap(
        &self,
        tenant: &TenantId,
        keys: &[WrappedDataKey],
    ) -> Result<(usize, usize), CryptoError> {
        let (version, kek) = self.current_kek(tenant)?;
        let mut fresh = Vec::new();
        let mut current = 0;
        for w in keys {
            let newest = self.newest_wrapping(tenant, w)?;
            if newest.kek_version >= version {
                current += 1;
                continue;
            }
            let dek = self.open_data_key(tenant, &newest)?;
            let kw = KeyEncryptionKey::new(&AES_256, kek.expose())
                .map_err(|_| CryptoError::Primitive("aes-kw key"))?;
            let mut wrapped = [0u8; 40];
            kw.wrap(dek.secret().expose(), &mut wrapped)
                .map_err(|_| CryptoError::Primitive("aes-kw wrap"))?;
            fresh.push(WrappedDataKey {
                kek_version: version,
                wrapped,
                commitment: w.commitment,
            });
        }
        if fresh.is_empty() {
            return Ok((0, current));
        }
        let mut all = self.rewrapped.lock().expect("keyring lock poisoned");
        let map = all.entry(tenant.clone()).or_default();
        for w in &fresh {
            map.insert(w.commitment, w.clone());
        }
        let file = map
            .iter()
            .map(|(c, w)| (*c, w.to_bytes().to_vec()))
            .collect();
        fsio::write_digest_map(&self.rewrapped_path(tenant), &file)?;
        Ok((fresh.len(), current))
    }

    /// Bounds how long a cached tenant key is used without the root confirming it (None: for the
    /// life of the process, right for a file root).
    pub fn set_max_stale(&self, d: Option<std::time::Duration>) {
        *self.max_stale.lock().expect("keyring lock poisoned") = d;
    }

    /// Re-unwraps every cached tenant key through the root, renewing what it confirms. Returns
    /// how many keys it confirmed, or the first failure (the cache keeps the keys until they
    /// are `max_stale`).
    pub fn refresh(&self) -> Result<usize, CryptoError> {
        let ids: Vec<(TenantId, u32)> = self
            .cache
            .lock()
            .expect("keyring lock poisoned")
            .keys()
            .cloned()
            .collect();
        let mut n = 0;
        for (tenant, version) in ids {
            let key = self.unwrap_from_disk(&tenant, version)?;
            let mut c = self.cache.lock().expect("keyring lock poisoned");
            if let Some(e) = c.get_mut(&(tenant, version)) {
                if e.key.expose() != key.expose() {
                    return Err(CryptoError::Decrypt(
                        "a tenant key unwrapped differently than before".into(),
                    ));
                }
                e.confirmed = std::time::Instant::now();
                n += 1;
            }
        }
        Ok(n)
    }

    /// The keys directory (the tenant keys are under its `tenants/`).
    pub fn keys_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    pub fn root(&self) -> &Arc<dyn RootKeySource> {
        &self.root
    }

    fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(tenant.as_str())
    }

    fn kek_path(&self, tenant: &TenantId, version: u32) -> PathBuf {
        self.tenant_dir(tenant).join(format!("kek-v{version}.json"))
    }

    /// Lists the key versions present on disk for `tenant`, ascending.
    fn versions_on_disk(&self, tenant: &TenantId) -> Result<Vec<u32>, CryptoError> {
        let dir = self.tenant_dir(tenant);
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(CryptoError::io(&dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| CryptoError::io(&dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            out.extend(kek_version(&name));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Tenants with keys on disk.
    pub fn tenants(&self) -> Result<Vec<TenantId>, CryptoError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| CryptoError::io(&self.dir, e))? {
            let e = e.map_err(|e| CryptoError::io(&self.dir, e))?;
            if let Ok(t) = TenantId::parse(&e.file_name().to_string_lossy())
                && !self.is_erased(&t)
                && !self.versions_on_disk(&t)?.is_empty()
            {
                out.push(t);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The key versions of `tenant` on disk with their creation times (unix seconds), ascending.
    pub fn versions(&self, tenant: &TenantId) -> Result<Vec<(u32, u64)>, CryptoError> {
        let mut out = Vec::new();
        for v in self.versions_on_disk(tenant)? {
            out.push((v, KekFile::read(&self.kek_path(tenant, v))?.created_unix));
        }
        Ok(out)
    }

    /// Destroys the key versions of `tenant` that wrap none of `in_use` (the data keys still
    /// stored, as their files hold them; a re-wrapped key counts under its newest wrapping):
    /// never the current version, and only a version whose successor was created more than
    /// `grace` ago. Returns the versions destroyed.
    pub fn destroy_unused_versions(
        &self,
        tenant: &TenantId,
        in_use: &[WrappedDataKey],
        grace: std::time::Duration,
    ) -> Result<Vec<u32>, CryptoError> {
        self.refuse_erased(tenant)?;
        let versions = self.versions(tenant)?;
        let Some(&(current, _)) = versions.last() else {
            return Ok(Vec::new());
        };
        let mut used = std::collections::HashSet::new();
        for w in in_use {
            used.insert(self.newest_wrapping(tenant, w)?.kek_version);
        }
        let now = now_unix();
        let mut out = Vec::new();
        for pair in versions.windows(2) {
            let ((v, _), (_, next_created)) = (pair[0], pair[1]);
            if v == current
                || used.contains(&v)
                || now.saturating_sub(next_created) < grace.as_secs()
            {
                continue;
            }
            let path = self.kek_path(tenant, v);
            fsio::shred(&path).map_err(|e| CryptoError::io(&path, e))?;
            self.cache
                .lock()
                .expect("keyring lock poisoned")
                .remove(&(tenant.clone(), v));
            tracing::info!(tenant = %tenant, version = v, "destroyed a tenant key version that wraps nothing still stored");
            out.push(v);
        }
        Ok(out)
    }

    /// The tenant's pseudonymization secret (HMAC key for redaction's `hmac:` values): its own
    /// key, wrapped by the root in `tenants/<tenant>/pseudonym.json`, stable across key
    /// rotation and destroyed with the tenant. Created on first use; a tenant whose key v1
    /// predates this file keeps the pseudonyms it had (derived from v1 once, then stored).
    pub fn pseudonym_secret(&self, tenant: &TenantId) -> Result<SecretKey, CryptoError> {
        self.refuse_erased(tenant)?;
        let path = self.pseudonym_path(tenant);
        let rel = format!("{tenant}/pseudonym.json");
        let ctx = pseudonym_context(tenant);
        if self.ensure_local(&path, &rel)? {
            let file = KekFile::read(&path)?;
            if file.tenant != tenant.as_str() {
                return Err(bad_file(&path, "tenant does not match its directory"));
            }
            return self.root.unwrap(&ctx, &file.wrapped(&path)?);
        }
        let key = if self.versions_known(tenant)?.first() == Some(&1) {
            let kek = self.kek(tenant, 1)?;
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, kek.expose());
            let tag = aws_lc_rs::hmac::sign(&k, b"tracevault/v1/pseudonym-key");
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(tag.as_ref());
            SecretKey::from_bytes(*secret)
        } else {
            SecretKey::random()
        };
        let dir = self.tenant_dir(tenant);
        fsio::create_private_dir(&dir).map_err(|e| CryptoError::io(&dir, e))?;
        let file = KekFile {
            format: KEK_FILE_VERSION,
            tenant: tenant.to_string(),
            version: 0,
            created_unix: now_unix(),
            wrapped: hex::encode(self.root.wrap(&ctx, &key)?),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| bad_file(&path, e))?;
        if self.share.get().is_some() {
            // Another node may have made it first: the file now holds the cluster's.
            self.create_file(&path, &rel, &json)?;
            return self.pseudonym_secret(tenant);
        }
        match fsio::create_private_file(&path, &json) {
            Ok(()) => Ok(key),
            // Another thread created it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.pseudonym_secret(tenant)
            }
            Err(e) => Err(CryptoError::io(&path, e)),
        }
    }

    /// Makes a new key version of `tenant` the one new data keys are wrapped under; older
    /// versions stay and keep unwrapping what they wrapped. Returns the new version.
    pub fn rotate(&self, tenant: &TenantId) -> Result<u32, CryptoError> {
        self.refuse_erased(tenant)?;
        let mut current = self.current.lock().expect("keyring lock poisoned");
        let next = self.versions_known(tenant)?.last().map_or(1, |v| v + 1);
        self.create_kek(tenant, next)?;
        current.insert(tenant.clone(), next);
        Ok(next)
    }

    /// Takes up key versions another process made in a shared keys directory (a cluster's
    /// nodes): each tenant in use here wraps new data keys under its newest version on disk from
    /// now on. Returns the tenants whose current version changed.
    pub fn reload_current(&self) -> Result<Vec<(TenantId, u32)>, CryptoError> {
        let tenants: Vec<(TenantId, u32)> = self
            .current
            .lock()
            .expect("keyring lock poisoned")
            .iter()
            .map(|(t, v)| (t.clone(), *v))
            .collect();
        let mut changed = Vec::new();
        for (tenant, v) in tenants {
            if self.is_erased(&tenant) {
                continue;
            }
            if let Some(&newest) = self.versions_known(&tenant)?.last()
                && newest > v
            {
                // The key must unwrap before it is used for writing.
                self.kek(&tenant, newest)?;
                let mut current = self.current.lock().expect("keyring lock poisoned");
                let c = current.entry(tenant.clone()).or_insert(newest);
                *c = (*c).max(newest);
                changed.push((tenant, newest));
            }
        }
        Ok(changed)
    }

    /// Re-wraps every version of every tenant key under the root's newest key version (after the
    /// KMS key was rotated) and checks each still unwraps to the same key. Returns how many.
    pub fn rewrap_under_root(&self) -> Result<usize, CryptoError> {
        let mut n = 0;
        for t in self.tenants()? {
            for v in self.versions_on_disk(&t)? {
                self.rewrap_file(&t, &format!("kek-v{v}.json"))?;
                n += 1;
            }
            if self.pseudonym_path(&t).exists() {
                self.rewrap_file(&t, "pseudonym.json")?;
            }
        }
        Ok(n)
    }

    /// Re-wraps one root-wrapped key file of `tenant` under the root's newest version, in place;
    /// in a cluster the shared copy gets the same bytes (compare-and-swap on what it held), so
    /// every node that reads it from there can open it once older root versions are retired.
    fn rewrap_file(&self, tenant: &TenantId, name: &str) -> Result<(), CryptoError> {
        let path = self.tenant_dir(tenant).join(name);
        let context = file_context(tenant, name).unwrap_or_default();
        let mut file = KekFile::read(&path)?;
        let new = crate::rewrap_checked(self.root.as_ref(), &context, &file.wrapped(&path)?)?;
        file.wrapped = hex::encode(new);
        file.write(&path)?;
        let Some(sh) = self.share.get() else {
            return Ok(());
        };
        let rel = format!("{tenant}/{name}");
        let bytes = std::fs::read(&path).map_err(|e| CryptoError::io(&path, e))?;
        for _ in 0..3 {
            let held = sh.get(&rel).map_err(|e| share_error(sh.as_ref(), e))?;
            let Some(held) = held else {
                sh.create(&rel, &bytes)
                    .map_err(|e| share_error(sh.as_ref(), e))?;
                return Ok(());
            };
            if held == bytes
                || sh
                    .replace(&rel, &held, &bytes)
                    .map_err(|e| share_error(sh.as_ref(), e))?
            {
                return Ok(());
            }
        }
        Err(share_error(
            sh.as_ref(),
            format!("{rel} kept changing while it was re-wrapped; run rewrap-root again"),
        ))
    }

    fn pseudonym_path(&self, tenant: &TenantId) -> PathBuf {
        self.tenant_dir(tenant).join("pseudonym.json")
    }

    /// Rotates every tenant whose current key was created more than `max_age` ago; returns
    /// `(tenant, new version)` for each.
    pub fn rotate_older_than(
        &self,
        max_age: std::time::Duration,
    ) -> Result<Vec<(TenantId, u32)>, CryptoError> {
        let now = now_unix();
        let mut out = Vec::new();
        for t in self.tenants()? {
            if let Some((_, created)) = self.versions(&t)?.last()
                && now.saturating_sub(*created) > max_age.as_secs()
            {
                out.push((t.clone(), self.rotate(&t)?));
            }
        }
        Ok(out)
    }

    /// The current key version of `tenant` and its key, creating version 1 on first use.
    pub fn current_kek(&self, tenant: &TenantId) -> Result<(u32, Arc<SecretKey>), CryptoError> {
        self.refuse_erased(tenant)?;
        let mut current = self.current.lock().expect("keyring lock poisoned");
        if let Some(v) = current.get(tenant).copied() {
            drop(current);
            return Ok((v, self.kek(tenant, v)?));
        }
        let version = match self.versions_known(tenant)?.last() {
            Some(v) => *v,
            None => {
                self.create_kek(tenant, 1)?;
                1
            }
        };
        current.insert(tenant.clone(), version);
        drop(current);
        Ok((version, self.kek(tenant, version)?))
    }

    fn create_kek(&self, tenant: &TenantId, version: u32) -> Result<(), CryptoError> {
        self.refuse_erased(tenant)?;
        let dir = self.tenant_dir(tenant);
        fsio::create_private_dir(&dir).map_err(|e| CryptoError::io(&dir, e))?;
        let key = SecretKey::random();
        let wrapped = self.root.wrap(&kek_context(tenant, version), &key)?;
        let file = KekFile {
            format: KEK_FILE_VERSION,
            tenant: tenant.to_string(),
            version,
            created_unix: now_unix(),
            wrapped: hex::encode(wrapped),
        };
        let path = self.kek_path(tenant, version);
        let json = serde_json::to_vec_pretty(&file).map_err(|e| bad_file(&path, e))?;
        let held = self.create_file(&path, &format!("{tenant}/kek-v{version}.json"), &json)?;
        if held != json {
            // Another node of the cluster made this version first: that key is the tenant's.
            tracing::info!(tenant = %tenant, version, "took the tenant key another node made");
            self.kek(tenant, version)?;
            return Ok(());
        }
        tracing::info!(tenant = %tenant, version, "created tenant key");
        self.cache.lock().expect("keyring lock poisoned").insert(
            (tenant.clone(), version),
            Cached {
                key: Arc::new(key),
                confirmed: std::time::Instant::now(),
            },
        );
        Ok(())
    }

    /// The tenant key `version` of `tenant`.
    pub fn kek(&self, tenant: &TenantId, version: u32) -> Result<Arc<SecretKey>, CryptoError> {
        self.refuse_erased(tenant)?;
        let max_stale = *self.max_stale.lock().expect("keyring lock poisoned");
        if let Some(k) = self
            .cache
            .lock()
            .expect("keyring lock poisoned")
            .get(&(tenant.clone(), version))
        {
            match max_stale {
                Some(m) if k.confirmed.elapsed() > m => {}
                _ => return Ok(k.key.clone()),
            }
        }
        // Not cached, or not confirmed by the root for too long: ask the root now.
        let key = Arc::new(self.unwrap_from_disk(tenant, version).map_err(|e| match e {
            CryptoError::Kms(why) => CryptoError::Kms(format!(
                "tenant {tenant} key v{version} is not in the cache and cannot be unwrapped: {why}"
            )),
            other => other,
        })?);
        self.cache.lock().expect("keyring lock poisoned").insert(
            (tenant.clone(), version),
            Cached {
                key: key.clone(),
                confirmed: std::time::Instant::now(),
            },
        );
        Ok(key)
    }

    /// Reads tenant key `version` of `tenant` from its file and unwraps it through the root.
    fn unwrap_from_disk(&self, tenant: &TenantId, version: u32) -> Result<SecretKey, CryptoError> {
        let path = self.kek_path(tenant, version);
        if !self.ensure_local(&path, &format!("{tenant}/kek-v{version}.json"))? {
            return Err(CryptoError::MissingKey {
                tenant: tenant.to_string(),
                version,
            });
        }
        let file = KekFile::read(&path)?;
        if file.tenant != tenant.as_str() || file.version != version {
            return Err(bad_file(
                &path,
                "tenant or version does not match its file name",
            ));
        }
        self.root
            .unwrap(&kek_context(tenant, version), &file.wrapped(&path)?)
    }

    /// A fresh data key for `tenant`, and its wrapped form to store beside the data.
    pub fn new_data_key(
        &self,
        tenant: &TenantId,
    ) -> Result<(DataKey, WrappedDataKey), CryptoError> {
        let (version, kek) = self.current_kek(tenant)?;
        let dek = SecretKey::random();
        let kw = KeyEncryptionKey::new(&AES_256, kek.expose())
            .map_err(|_| CryptoError::Primitive("aes-kw key"))?;
        let mut wrapped = [0u8; 40];
        kw.wrap(dek.expose(), &mut wrapped)
            .map_err(|_| CryptoError::Primitive("aes-kw wrap"))?;
        let commitment = dek.commitment();
        Ok((
            DataKey::from_secret(dek),
            WrappedDataKey {
                kek_version: version,
                wrapped,
                commitment,
            },
        ))
    }

    /// Unwraps a data key of `tenant` and checks its key commitment.
    pub fn open_data_key(
        &self,
        tenant: &TenantId,
        w: &WrappedDataKey,
    ) -> Result<DataKey, CryptoError> {
        let w = &self.newest_wrapping(tenant, w)?;
        let kek = self.kek(tenant, w.kek_version)?;
        let kw = KeyEncryptionKey::new(&AES_256, kek.expose())
            .map_err(|_| CryptoError::Primitive("aes-kw key"))?;
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        kw.unwrap(&w.wrapped, &mut out[..])
            .map_err(|_| CryptoError::Decrypt(format!("data key of tenant {tenant}")))?;
        let dek = SecretKey::from_bytes(*out);
        if !bool::from(dek.commitment().ct_eq(&w.commitment)) {
            return Err(CryptoError::Commitment(format!(
                "data key of tenant {tenant}"
            )));
        }
        Ok(DataKey::from_secret(dek))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileRootKey;

    fn ring(dir: &Path) -> Keyring {
        let (root, _) = FileRootKey::load_or_create(&dir.join("root.key")).unwrap();
        Keyring::open(dir, Arc::new(root)).unwrap()
    }

    #[test]
    fn rotation_makes_a_new_version_current_and_old_data_stays_readable() {
        let d = tempfile::tempdir().unwrap();
        let t = TenantId::parse("acme").unwrap();
        let ring1 = ring(d.path());
        let (_, w1) = ring1.new_data_key(&t).unwrap();
        assert_eq!(w1.kek_version, 1);
        assert_eq!(ring1.rotate(&t).unwrap(), 2);
        let (_, w2) = ring1.new_data_key(&t).unwrap();
        assert_eq!(w2.kek_version, 2);
        let reopened = ring(d.path());
        assert!(reopened.open_data_key(&t, &w1).is_ok());
        assert!(reopened.open_data_key(&t, &w2).is_ok());
        assert_eq!(reopened.current_kek(&t).unwrap().0, 2);
        let v: Vec<u32> = reopened.versions(&t).unwrap().iter().map(|x| x.0).collect();
        assert_eq!(v, vec![1, 2]);
        assert_eq!(reopened.tenants().unwrap(), vec![t.clone()]);
        // By age: nothing is older than an hour; everything is older than zero seconds... after
        // the clock moves past its creation second.
        assert!(
            reopened
                .rotate_older_than(std::time::Duration::from_secs(3600))
                .unwrap()
                .is_empty()
        );
        let path = d.path().join("tenants/acme/kek-v2.json");
        let mut f: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f["created_unix"] = serde_json::json!(1);
        std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        let rotated = reopened
            .rotate_older_than(std::time::Duration::from_secs(90 * 86400))
            .unwrap();
        assert_eq!(rotated, vec![(t.clone(), 3)]);
    }

    #[test]
    fn a_version_rotated_by_another_process_sharing_the_keys_becomes_current_here() {
        let d = tempfile::tempdir().unwrap();
        let t = TenantId::parse("acme").unwrap();
        let (node_a, node_b) = (ring(d.path()), ring(d.path()));
        assert_eq!(node_b.new_data_key(&t).unwrap().1.kek_version, 1);
        assert_eq!(node_a.rotate(&t).unwrap(), 2);
        // Until it reloads, B keeps the version it read.
        assert_eq!(node_b.new_data_key(&t).unwrap().1.kek_version, 1);
        assert_eq!(node_b.reload_current().unwrap(), vec![(t.clone(), 2)]);
        let (_, w) = node_b.new_data_key(&t).unwrap();
        assert_eq!(w.kek_version, 2);
        assert!(node_a.open_data_key(&t, &w).is_ok());
        assert!(node_b.reload_current().unwrap().is_empty(), "nothing new");
    }

    /// The share as a map (the bucket's create-once semantics; the server's is the bucket).
    #[derive(Default)]
    struct MapShare(Mutex<std::collections::BTreeMap<String, Vec<u8>>>);

    impl KeyShare for MapShare {
        fn create(&self, rel: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .entry(rel.to_owned())
                .or_insert_with(|| bytes.to_vec())
                .clone())
        }
        fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.lock().unwrap().get(rel).cloned())
        }
        fn list(&self, tenant: &str) -> Result<Vec<String>, String> {
            let p = format!("{tenant}/");
            Ok(self
                .0
                .lock()
                .unwrap()
                .keys()
                .filter_map(|k| k.strip_prefix(&p).map(str::to_owned))
                .collect())
        }
        fn remove(&self, tenant: &str) -> Result<(), String> {
            let p = format!("{tenant}/");
            self.0.lock().unwrap().retain(|k, _| !k.starts_with(&p));
            Ok(())
        }
        fn replace(&self, rel: &str, expected: &[u8], bytes: &[u8]) -> Result<bool, String> {
            let mut m = self.0.lock().unwrap();
            match m.get_mut(rel) {
                Some(b) if b.as_slice() == expected => {
                    *b = bytes.to_vec();
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        fn describe(&self) -> String {
            "map".into()
        }
    }

    #[test]
    fn nodes_with_their_own_key_directories_agree_on_every_tenant_key_through_the_share() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // One root (the cluster's), two keys directories.
        let (root, _) = FileRootKey::load_or_create(&da.path().join("root.key")).unwrap();
        let root: Arc<dyn RootKeySource> = Arc::new(root);
        let share: Arc<dyn KeyShare> = Arc::new(MapShare::default());
        let a = Keyring::open(da.path(), root.clone()).unwrap();
        let b = Keyring::open(db.path(), root).unwrap();
        let t = TenantId::parse("acme").unwrap();
        // B made its first key before it joined: that file goes to the share at join.
        let early = TenantId::parse("early").unwrap();
        let (_, w_early) = b.new_data_key(&early).unwrap();
        b.share_with(share.clone());
        // Not a tenant the cluster erased meanwhile.
        assert_eq!(
            b.publish_local(std::slice::from_ref(&early)).unwrap(),
            (0, Vec::new())
        );
        assert!(share.list("early").unwrap().is_empty());
        assert_eq!(b.publish_local(&[]).unwrap(), (1, Vec::new()));
        a.share_with(share.clone());
        assert!(
            a.open_data_key(&early, &w_early).is_ok(),
            "read from the share"
        );
        // Both make the tenant's first key: whichever is second takes the first one's.
        let (ka, wa) = a.new_data_key(&t).unwrap();
        let (kb, wb) = b.new_data_key(&t).unwrap();
        // Sealed under one node's data key, opened with the other's unwrapping of it.
        let same = |k1: &crate::DataKey, k2: &crate::DataKey| {
            let mut buf = b"span".to_vec();
            k1.seal(0, b"aad", &mut buf).unwrap();
            k2.open(0, b"aad", &mut buf).map(|p| p.to_vec()).ok() == Some(b"span".to_vec())
        };
        assert!(same(&kb, &a.open_data_key(&t, &wb).unwrap()));
        assert!(same(&ka, &b.open_data_key(&t, &wa).unwrap()));
        assert_eq!(
            a.pseudonym_secret(&t).unwrap().expose(),
            b.pseudonym_secret(&t).unwrap().expose()
        );
        // A rotation on A is the newest version for B too.
        assert_eq!(a.rotate(&t).unwrap(), 2);
        assert_eq!(b.reload_current().unwrap(), vec![(t.clone(), 2)]);
        assert_eq!(b.new_data_key(&t).unwrap().1.kek_version, 2);
        // Re-wrapping under the root on A re-wraps the shared copies too; B, whose copies are
        // still wrapped the old way, holds the same keys and is no conflict at its next start:
        // it takes the cluster's wrapping.
        let before = share.get("acme/kek-v1.json").unwrap().unwrap();
        a.rewrap_under_root().unwrap();
        let after = share.get("acme/kek-v1.json").unwrap().unwrap();
        assert_ne!(before, after);
        assert_eq!(
            std::fs::read(da.path().join("tenants/acme/kek-v1.json")).unwrap(),
            after
        );
        assert_eq!(b.publish_local(&[]).unwrap().1, Vec::<String>::new());
        assert_eq!(
            std::fs::read(db.path().join("tenants/acme/kek-v1.json")).unwrap(),
            after
        );
        // A different key under a name the cluster holds is a conflict, named.
        let other = tempfile::tempdir().unwrap();
        let (root2, _) = FileRootKey::load_or_create(&da.path().join("root.key")).unwrap();
        let c = Keyring::open(other.path(), Arc::new(root2)).unwrap();
        c.new_data_key(&t).unwrap();
        c.share_with(share.clone());
        assert_eq!(
            c.publish_local(&[]).unwrap().1,
            vec!["acme/kek-v1.json".to_string()]
        );
        // An erasure removes the tenant's files from the share too.
        a.destroy(&t).unwrap();
        assert!(share.list("acme").unwrap().is_empty());
    }

    #[test]
    fn rewrap_moves_data_keys_to_the_newest_version_without_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        let t = TenantId::parse("acme").unwrap();
        let r = ring(d.path());
        let (k1, w1) = r.new_data_key(&t).unwrap();
        r.rotate(&t).unwrap();
        let (_, w2) = r.new_data_key(&t).unwrap();
        assert_eq!(r.rewrap(&t, &[w1.clone(), w2.clone()]).unwrap(), (1, 1));
        assert_eq!(r.rewrap(&t, &[w1.clone(), w2.clone()]).unwrap(), (0, 2));
        // Version 1 gone: the old data key still opens, through its new wrapping.
        std::fs::remove_file(d.path().join("tenants/acme/kek-v1.json")).unwrap();
        let reopened = ring(d.path());
        let k = reopened.open_data_key(&t, &w1).unwrap();
        assert_eq!(k.secret().expose(), k1.secret().expose());
        assert!(reopened.open_data_key(&t, &w2).is_ok());
        // Re-wrapping under the root rewrites the key file and keeps the key.
        let before = std::fs::read(d.path().join("tenants/acme/kek-v2.json")).unwrap();
        assert_eq!(reopened.rewrap_under_root().unwrap(), 1);
        let after = std::fs::read(d.path().join("tenants/acme/kek-v2.json")).unwrap();
        assert_ne!(before, after);
        assert!(ring(d.path()).open_data_key(&t, &w1).is_ok());
    }

    #[test]
    fn data_keys_roundtrip_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        let t = TenantId::parse("acme").unwrap();
        let (k, w) = ring(d.path()).new_data_key(&t).unwrap();
        let mut buf = b"payload".to_vec();
        k.seal(0, b"x", &mut buf).unwrap();
        let reopened = ring(d.path());
        let k2 = reopened
            .open_data_key(&t, &WrappedDataKey::from_bytes(&w.to_bytes()).unwrap())
            .unwrap();
        assert_eq!(k2.open(0, b"x", &mut buf).unwrap(), b"payload");
        assert_eq!(
            fsio::mode_of(&d.path().join("tenants/acme/kek-v1.json")).unwrap(),
            0o600
        );
    }

    #[test]
    fn tenants_cannot_open_each_others_keys() {
        let d = tempfile::tempdir().unwrap();
        let r = ring(d.path());
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let (_, w) = r.new_data_key(&a).unwrap();
        r.current_kek(&b).unwrap();
        assert!(r.open_data_key(&b, &w).is_err());
    }

    #[test]
    fn destroy_removes_every_version_and_refuses_the_tenant_from_then_on() {
        let d = tempfile::tempdir().unwrap();
        let r = ring(d.path());
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let (_, wa1) = r.new_data_key(&a).unwrap();
        r.rotate(&a).unwrap();
        let (_, wa2) = r.new_data_key(&a).unwrap();
        r.rewrap(&a, std::slice::from_ref(&wa1)).unwrap();
        let (_, wb) = r.new_data_key(&b).unwrap();
        let gone = r.destroy(&a).unwrap();
        assert_eq!(gone.versions, vec![1, 2]);
        assert_eq!(gone.rewrapped, 1);
        assert!(!d.path().join("tenants/a").exists());
        for w in [&wa1, &wa2] {
            assert!(matches!(
                r.open_data_key(&a, w),
                Err(CryptoError::Erased(_))
            ));
        }
        assert!(matches!(r.new_data_key(&a), Err(CryptoError::Erased(_))));
        assert!(matches!(r.rotate(&a), Err(CryptoError::Erased(_))));
        // Even a key ring that does not know of the erasure has nothing to unwrap.
        let fresh = ring(d.path());
        assert!(matches!(
            fresh.open_data_key(&a, &wa1),
            Err(CryptoError::MissingKey { .. })
        ));
        assert!(fresh.open_data_key(&b, &wb).is_ok());
        assert_eq!(r.tenants().unwrap(), vec![b.clone()]);
        // Again: nothing left to destroy, no error.
        assert!(r.destroy(&a).unwrap().versions.is_empty());
    }

    #[test]
    fn unused_versions_are_destroyed_once_their_successor_is_old_enough() {
        let d = tempfile::tempdir().unwrap();
        let t = TenantId::parse("acme").unwrap();
        let r = ring(d.path());
        let pseud = r.pseudonym_secret(&t).unwrap();
        let (_, w1) = r.new_data_key(&t).unwrap();
        r.rotate(&t).unwrap();
        let (_, w2) = r.new_data_key(&t).unwrap();
        r.rotate(&t).unwrap();
        let grace = std::time::Duration::from_secs(600);
        // Successors are brand new: nothing goes yet.
        assert!(
            r.destroy_unused_versions(&t, std::slice::from_ref(&w2), grace)
                .unwrap()
                .is_empty()
        );
        for v in [2, 3] {
            let path = d.path().join(format!("tenants/acme/kek-v{v}.json"));
            let mut f: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            f["created_unix"] = serde_json::json!(1);
            std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        }
        // v1 wraps nothing still stored (its data was deleted), v2 does, v3 is current.
        assert_eq!(
            r.destroy_unused_versions(&t, std::slice::from_ref(&w2), grace)
                .unwrap(),
            vec![1]
        );
        assert!(!d.path().join("tenants/acme/kek-v1.json").exists());
        assert!(r.open_data_key(&t, &w2).is_ok());
        assert!(r.open_data_key(&t, &w1).is_err());
        // The pseudonym key is its own: unchanged without v1, and after a reopen.
        assert_eq!(r.pseudonym_secret(&t).unwrap().expose(), pseud.expose());
        assert_eq!(
            ring(d.path()).pseudonym_secret(&t).unwrap().expose(),
            pseud.expose()
        );
        // Nothing in use: v2 goes too, the current version never.
        assert_eq!(r.destroy_unused_versions(&t, &[], grace).unwrap(), vec![2]);
        assert_eq!(r.current_kek(&t).unwrap().0, 3);
        // Root rotation re-wraps the pseudonym key as well.
        let before = std::fs::read(d.path().join("tenants/acme/pseudonym.json")).unwrap();
        r.rewrap_under_root().unwrap();
        assert_ne!(
            std::fs::read(d.path().join("tenants/acme/pseudonym.json")).unwrap(),
            before
        );
        assert_eq!(
            ring(d.path()).pseudonym_secret(&t).unwrap().expose(),
            pseud.expose()
        );
    }

    #[test]
    fn tampered_commitment_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let r = ring(d.path());
        let a = TenantId::parse("a").unwrap();
        let (_, mut w) = r.new_data_key(&a).unwrap();
        w.commitment[0] ^= 1;
        assert!(matches!(
            r.open_data_key(&a, &w),
            Err(CryptoError::Commitment(_))
        ));
    }
}
