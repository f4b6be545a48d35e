//! API tokens stored as keyed hashes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tv_crypto::{RootKeySource, SecretKey, fsio, random_bytes};
use tv_model::TenantId;
use zeroize::Zeroizing;

use crate::{AuthError, Credential, Principal, Role, TenantScope};

const PREFIX: &str = "tvk_";
const FILE_VERSION: u32 = 1;

/// A presented token, parsed. Holds the secret zeroized on drop and never prints it.
pub struct TokenSecret {
    id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSecret({}, ..)", self.id)
    }
}

impl TokenSecret {
    /// Parses `tvk_<16 hex>_<64 hex>`.
    pub fn parse(s: String) -> Result<Self, AuthError> {
        let s = Zeroizing::new(s);
        let rest = s.strip_prefix(PREFIX).ok_or(AuthError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
        if id.len() != 16 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed);
        }
        if secret.len() != 64 {
            return Err(AuthError::Malformed);
        }
        let secret = Zeroizing::new(hex::decode(secret).map_err(|_| AuthError::Malformed)?);
        Ok(Self {
            id: id.to_ascii_lowercase(),
            secret,
        })
    }

    /// Parses an `Authorization` header value.
    pub fn from_header(value: Option<&str>) -> Result<Self, AuthError> {
        let v = value.ok_or(AuthError::Missing)?;
        let (scheme, tok) = v.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        Self::parse(tok.trim().to_owned())
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A stored token: the hash of its secret, never the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// hex HMAC-SHA256(server key, secret)
    pub hash: String,
    pub role: Role,
    /// empty = all tenants (admin bootstrap only)
    pub tenants: Vec<String>,
    pub created_unix: u64,
    #[serde(default)]
    pub expires_unix: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    /// Services it may write spans for; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// What `token list` shows of a record: everything but the hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// empty = all tenants
    pub tenants: Vec<String>,
    pub services: Vec<String>,
    pub created_unix: u64,
    pub expires_unix: Option<u64>,
    pub revoked: bool,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> Self {
        TokenInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            role: r.role,
            tenants: r.tenants.clone(),
            services: r.services.clone(),
            created_unix: r.created_unix,
            expires_unix: r.expires_unix,
            revoked: r.revoked,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TokenFile {
    format: u32,
    tokens: Vec<TokenRecord>,
}

#[derive(Serialize, Deserialize)]
struct HmacKeyFile {
    format: u32,
    wrapped: String,
}

/// A registry document kept elsewhere than a local file (a cluster's bucket): read whole,
/// written by compare-and-swap. The implementation encrypts and authenticates it.
pub trait SharedDoc: Send + Sync {
    /// The document and its version, or `None` when there is none yet.
    fn load(&self) -> Result<Option<(Vec<u8>, String)>, String>;
    /// Writes `bytes` if the document is still at `expected` (`None`: only if there is none).
    /// `Err(None)`: it changed since (read again and retry); `Err(Some(why))`: it failed.
    fn store(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, Option<String>>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// How a [`SharedDoc`] is read and written: its parsed form `D` and the errors `E` of its owner.
pub struct DocFormat<'a, D, E> {
    pub parse: &'a dyn Fn(&[u8]) -> Result<D, E>,
    /// The document when there is none yet.
    pub empty: &'a dyn Fn() -> D,
    pub encode: &'a dyn Fn(&D) -> Result<Vec<u8>, E>,
    /// A failure of the document's store, as `E`.
    pub fail: &'a dyn Fn(String) -> E,
}

/// Changes a shared document by compare-and-swap: reads it, applies `f`, writes it back if no
/// one changed it meanwhile, else reads it again and re-applies `f` (up to 20 times). Returns
/// what `f` answered, the document as written and its version.
pub fn update_shared<D, E, R>(
    doc: &dyn SharedDoc,
    format: &DocFormat<'_, D, E>,
    mut f: impl FnMut(&mut D) -> R,
) -> Result<(R, D, String), E> {
    for _ in 0..20 {
        let (mut d, seen) = match doc.load().map_err(format.fail)? {
            Some((b, v)) => ((format.parse)(&b)?, Some(v)),
            None => ((format.empty)(), None),
        };
        let r = f(&mut d);
        match doc.store(&(format.encode)(&d)?, seen.as_deref()) {
            Ok(v) => return Ok((r, d, v)),
            Err(None) => continue,
            Err(Some(why)) => return Err((format.fail)(why)),
        }
    }
    Err((format.fail)(
        "changed by other nodes 20 times in a row; try again".into(),
    ))
}

/// A cluster's shared registry and the version of it this node holds.
type Shared = (
    std::sync::Arc<dyn SharedDoc>,
    std::sync::Mutex<Option<String>>,
);

/// The token registry (`DIR/tokens.json`, or one document shared by a cluster's nodes), with
/// the HMAC key wrapped by the root key in `keys/token-hmac.json`.
pub struct TokenStore {
    path: PathBuf,
    key: hmac::Key,
    records: RwLock<HashMap<String, TokenRecord>>,
    /// The cluster's shared registry and the version this node holds.
    shared: Option<Shared>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenStore({})", self.path.display())
    }
}

/// Seconds since the Unix epoch (token creation and expiry).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenStoreError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid token file {path}: {reason}")]
    Format { path: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] tv_crypto::CryptoError),
}

/// The token HMAC key's file under the keys directory, and its wrapping context.
pub const HMAC_KEY_FILE: &str = "token-hmac.json";
pub const HMAC_KEY_CONTEXT: &[u8] = b"tracevault/v1/token-hmac-key";

impl TokenStore {
    /// Opens (or creates) the registry at `path`, with its HMAC key under `keys_dir`.
    pub fn open(
        path: &Path,
        keys_dir: &Path,
        root: &dyn RootKeySource,
    ) -> Result<Self, TokenStoreError> {
        let io = |p: &Path, e| TokenStoreError::Io {
            path: p.display().to_string(),
            source: e,
        };
        let key = load_hmac_key(keys_dir, root)?;
        let records = if path.exists() {
            parse_file(
                &std::fs::read(path).map_err(|e| io(path, e))?,
                &path.display().to_string(),
            )?
        } else {
            HashMap::new()
        };
        Ok(Self {
            path: path.to_owned(),
            key,
            records: RwLock::new(records),
            shared: None,
        })
    }

    /// Opens the registry a cluster's nodes share (`doc`), with the HMAC key under `keys_dir`
    /// (the nodes share it too).
    pub fn open_shared(
        doc: std::sync::Arc<dyn SharedDoc>,
        keys_dir: &Path,
        root: &dyn RootKeySource,
    ) -> Result<Self, TokenStoreError> {
        let key = load_hmac_key(keys_dir, root)?;
        let (records, version) = match doc.load().map_err(|reason| TokenStoreError::Format {
            path: doc.describe(),
            reason,
        })? {
            Some((b, v)) => (parse_file(&b, &doc.describe())?, Some(v)),
            None => (HashMap::new(), None),
        };
        Ok(Self {
            path: PathBuf::from(doc.describe()),
            key,
            records: RwLock::new(records),
            shared: Some((doc, std::sync::Mutex::new(version))),
        })
    }

    /// Whether the registry is shared by a cluster (not a local file).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Reads the shared registry again when another node changed it (new tokens, revocations);
    /// `Ok(true)` when it changed. A local registry never changes under the process.
    pub fn refresh(&self) -> Result<bool, TokenStoreError> {
        let Some((doc, version)) = &self.shared else {
            return Ok(false);
        };
        let fmt = |reason: String| TokenStoreError::Format {
            path: doc.describe(),
            reason,
        };
        let Some((b, v)) = doc.load().map_err(fmt)? else {
            return Ok(false);
        };
        let mut cur = version.lock().expect("token version lock poisoned");
        if cur.as_deref() == Some(v.as_str()) {
            return Ok(false);
        }
        let recs = parse_file(&b, &doc.describe())?;
        *self.records.write().expect("token lock poisoned") = recs;
        *cur = Some(v);
        Ok(true)
    }

    /// Applies `f` to the records and stores them: the local file, or the shared registry by
    /// compare-and-swap (read, apply, write if unchanged; again if another node wrote first).
    fn update<R>(
        &self,
        mut f: impl FnMut(&mut HashMap<String, TokenRecord>) -> R,
    ) -> Result<R, TokenStoreError> {
        let Some((doc, version)) = &self.shared else {
            let mut recs = self.records.write().expect("token lock poisoned");
            let r = f(&mut recs);
            self.persist(&recs)?;
            return Ok(r);
        };
        let at = doc.describe();
        let mut cur = version.lock().expect("token version lock poisoned");
        let (r, recs, v) = update_shared(
            doc.as_ref(),
            &DocFormat {
                parse: &|b| parse_file(b, &at),
                empty: &HashMap::new,
                encode: &|recs| encode_file(recs, &at),
                fail: &|reason| TokenStoreError::Format {
                    path: at.clone(),
                    reason,
                },
            },
            &mut f,
        )?;
        *self.records.write().expect("token lock poisoned") = recs;
        *cur = Some(v);
        Ok(r)
    }

    /// Creates the first admin token when the registry is empty (a cluster's first node; the
    /// others find it and create none). `None`: there are tokens already.
    pub fn create_first_admin(
        &self,
        name: &str,
    ) -> Result<Option<Zeroizing<String>>, TokenStoreError> {
        let mut made = None;
        self.update(|recs| {
            made = None;
            if recs.is_empty() {
                let (text, rec) = self.new_record(name, Role::Admin, Vec::new(), Vec::new(), None);
                recs.insert(rec.id.clone(), rec);
                made = Some(text);
            }
        })?;
        Ok(made)
    }
}

/// The HMAC key under `keys_dir`, created (wrapped by the root) on first use.
fn load_hmac_key(keys_dir: &Path, root: &dyn RootKeySource) -> Result<hmac::Key, TokenStoreError> {
    let io = |p: &Path, e| TokenStoreError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let fmt = |p: &Path, r: String| TokenStoreError::Format {
        path: p.display().to_string(),
        reason: r,
    };
    let kpath = keys_dir.join(HMAC_KEY_FILE);
    const CTX: &[u8] = HMAC_KEY_CONTEXT;
    let key = if kpath.exists() {
        let f: HmacKeyFile =
            serde_json::from_slice(&std::fs::read(&kpath).map_err(|e| io(&kpath, e))?)
                .map_err(|e| fmt(&kpath, e.to_string()))?;
        if f.format != FILE_VERSION {
            return Err(fmt(
                &kpath,
                format!("unsupported format version {}", f.format),
            ));
        }
        let w = hex::decode(&f.wrapped).map_err(|e| fmt(&kpath, e.to_string()))?;
        root.unwrap(CTX, &w)?
    } else {
        let k = SecretKey::random();
        let f = HmacKeyFile {
            format: FILE_VERSION,
            wrapped: hex::encode(root.wrap(CTX, &k)?),
        };
        let bytes = serde_json::to_vec(&f).map_err(|e| fmt(&kpath, e.to_string()))?;
        match fsio::create_private_file(&kpath, &bytes) {
            Ok(()) => k,
            // Another node sharing the keys directory made it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return load_hmac_key(keys_dir, root);
            }
            Err(e) => return Err(io(&kpath, e)),
        }
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, key.expose()))
}

/// The records of a registry document.
fn parse_file(b: &[u8], what: &str) -> Result<HashMap<String, TokenRecord>, TokenStoreError> {
    let fmt = |reason: String| TokenStoreError::Format {
        path: what.to_owned(),
        reason,
    };
    let f: TokenFile = serde_json::from_slice(b).map_err(|e| fmt(e.to_string()))?;
    if f.format != FILE_VERSION {
        return Err(fmt(format!("unsupported format version {}", f.format)));
    }
    Ok(f.tokens.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// A registry document of `records`, oldest first.
fn encode_file(
    records: &HashMap<String, TokenRecord>,
    what: &str,
) -> Result<Vec<u8>, TokenStoreError> {
    let mut tokens: Vec<TokenRecord> = records.values().cloned().collect();
    tokens.sort_by(|a, b| a.created_unix.cmp(&b.created_unix).then(a.id.cmp(&b.id)));
    serde_json::to_vec_pretty(&TokenFile {
        format: FILE_VERSION,
        tokens,
    })
    .map_err(|e| TokenStoreError::Format {
        path: what.to_owned(),
        reason: e.to_string(),
    })
}

impl TokenStore {
    fn hash(&self, secret: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn persist(&self, records: &HashMap<String, TokenRecord>) -> Result<(), TokenStoreError> {
        let bytes = encode_file(records, &self.path.display().to_string())?;
        fsio::atomic_write(&self.path, &bytes, 0o600).map_err(|e| TokenStoreError::Io {
            path: self.path.display().to_string(),
            source: e,
        })
    }

    /// Creates a token and returns its full text (shown once; only the hash is stored).
    pub fn create(
        &self,
        name: &str,
        role: Role,
        tenants: Vec<TenantId>,
        expires_unix: Option<u64>,
    ) -> Result<(Zeroizing<String>, TokenRecord), TokenStoreError> {
        self.create_for(name, role, tenants, Vec::new(), expires_unix)
    }

    /// Creates a token limited to writing spans of `services` (empty: any).
    pub fn create_for(
        &self,
        name: &str,
        role: Role,
        tenants: Vec<TenantId>,
        services: Vec<String>,
        expires_unix: Option<u64>,
    ) -> Result<(Zeroizing<String>, TokenRecord), TokenStoreError> {
        let (text, rec) = self.new_record(name, role, tenants, services, expires_unix);
        self.update(|recs| {
            recs.insert(rec.id.clone(), rec.clone());
        })?;
        Ok((text, rec))
    }

    /// A new token's text and record (not stored yet).
    fn new_record(
        &self,
        name: &str,
        role: Role,
        tenants: Vec<TenantId>,
        services: Vec<String>,
        expires_unix: Option<u64>,
    ) -> (Zeroizing<String>, TokenRecord) {
        let id = hex::encode(random_bytes::<8>());
        let secret = Zeroizing::new(random_bytes::<32>());
        let text = Zeroizing::new(format!("{PREFIX}{id}_{}", hex::encode(*secret)));
        let rec = TokenRecord {
            id,
            name: name.to_owned(),
            hash: hex::encode(self.hash(&*secret)),
            role,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            created_unix: now_unix(),
            expires_unix,
            revoked: false,
            services,
        };
        (text, rec)
    }

    /// Every token, oldest first, without hashes.
    pub fn list(&self) -> Vec<TokenInfo> {
        let recs = self.records.read().expect("token lock poisoned");
        let mut v: Vec<TokenInfo> = recs.values().map(TokenInfo::from).collect();
        v.sort_by(|a, b| a.created_unix.cmp(&b.created_unix).then(a.id.cmp(&b.id)));
        v
    }

    /// The record of `id`, without its hash.
    pub fn get(&self, id: &str) -> Option<TokenInfo> {
        let recs = self.records.read().expect("token lock poisoned");
        recs.get(id).map(TokenInfo::from)
    }

    /// Revokes `id` (durably, then at once for every listener). `Ok(false)`: no such token.
    pub fn revoke(&self, id: &str) -> Result<bool, TokenStoreError> {
        {
            // Revoked in memory at once; a failed write is reported, and the token stays
            // revoked here until the restart (fail closed).
            let mut recs = self.records.write().expect("token lock poisoned");
            match recs.get_mut(id) {
                None if self.shared.is_none() => return Ok(false),
                None => {}
                Some(r) if r.revoked && self.shared.is_none() => return Ok(true),
                Some(r) => r.revoked = true,
            }
        }
        let found = self.update(|recs| match recs.get_mut(id) {
            None => false,
            Some(r) => {
                r.revoked = true;
                true
            }
        });
        if found.is_err()
            && let Some(r) = self
                .records
                .write()
                .expect("token lock poisoned")
                .get_mut(id)
        {
            r.revoked = true;
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.records.read().expect("token lock poisoned").is_empty()
    }

    /// Checks a presented token and returns who it is.
    pub fn authenticate(&self, tok: &TokenSecret) -> Result<Principal, AuthError> {
        let recs = self.records.read().expect("token lock poisoned");
        // Hash even when the id is unknown, so timing does not reveal which ids exist.
        let presented = self.hash(&tok.secret);
        let Some(rec) = recs.get(&tok.id) else {
            return Err(AuthError::Invalid);
        };
        let stored = hex::decode(&rec.hash).unwrap_or_default();
        if !bool::from(presented.as_slice().ct_eq(stored.as_slice())) {
            return Err(AuthError::Invalid);
        }
        if rec.revoked {
            return Err(AuthError::Revoked);
        }
        if rec.expires_unix.is_some_and(|e| now_unix() >= e) {
            return Err(AuthError::Expired);
        }
        let tenants = if rec.tenants.is_empty() {
            TenantScope::All
        } else {
            TenantScope::Only(
                rec.tenants
                    .iter()
                    .filter_map(|t| TenantId::parse(t).ok())
                    .collect(),
            )
        };
        Ok(Principal {
            name: rec.name.clone(),
            credential: Credential::ApiToken { id: rec.id.clone() },
            role: rec.role,
            tenants,
            services: rec.services.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tv_crypto::FileRootKey;

    fn store(d: &Path) -> TokenStore {
        let (root, _) = FileRootKey::load_or_create(&d.join("keys/root.key")).unwrap();
        TokenStore::open(&d.join("tokens.json"), &d.join("keys"), &root).unwrap()
    }

    #[test]
    fn created_tokens_authenticate_and_are_stored_hashed() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let (text, rec) = s.create("admin", Role::Admin, vec![], None).unwrap();
        assert!(text.starts_with("tvk_"));
        assert_eq!(text.len(), 4 + 16 + 1 + 64);
        let p = s
            .authenticate(&TokenSecret::parse(text.to_string()).unwrap())
            .unwrap();
        assert_eq!(p.role, Role::Admin);
        assert_eq!(p.tenants, TenantScope::All);
        let file = std::fs::read_to_string(d.path().join("tokens.json")).unwrap();
        let secret_part = text.rsplit('_').next().unwrap();
        assert!(!file.contains(secret_part), "secret stored in clear");
        assert!(file.contains(&rec.hash));
        assert_eq!(fsio::mode_of(&d.path().join("tokens.json")).unwrap(), 0o600);
        // Survives a restart (HMAC key persisted, wrapped).
        let s2 = store(d.path());
        assert!(
            s2.authenticate(&TokenSecret::parse(text.to_string()).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn wrong_secret_and_unknown_id_are_invalid() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let (text, rec) = s.create("w", Role::Ingest, vec![], None).unwrap();
        let mut wrong = text.to_string();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            s.authenticate(&TokenSecret::parse(wrong).unwrap()),
            Err(AuthError::Invalid)
        );
        let unknown = format!("tvk_{}_{}", "0".repeat(16), "a".repeat(64));
        assert_ne!(rec.id, "0".repeat(16));
        assert_eq!(
            s.authenticate(&TokenSecret::parse(unknown).unwrap()),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn revoked_tokens_fail_at_once_and_after_a_restart_and_lists_hold_no_hash() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let t = TenantId::parse("acme").unwrap();
        let (text, rec) = s
            .create_for("svc", Role::Ingest, vec![t], vec!["checkout".into()], None)
            .unwrap();
        let p = s
            .authenticate(&TokenSecret::parse(text.to_string()).unwrap())
            .unwrap();
        assert_eq!(p.services, vec!["checkout".to_string()]);
        let listed = serde_json::to_string(&s.list()).unwrap();
        assert!(!listed.contains(&rec.hash));
        assert!(s.revoke(&rec.id).unwrap());
        assert!(!s.revoke("0000000000000000").unwrap());
        assert_eq!(
            s.authenticate(&TokenSecret::parse(text.to_string()).unwrap()),
            Err(AuthError::Revoked)
        );
        assert_eq!(
            store(d.path()).authenticate(&TokenSecret::parse(text.to_string()).unwrap()),
            Err(AuthError::Revoked)
        );
        // Records written before roles were renamed still load.
        assert_eq!(
            serde_json::from_str::<Role>("\"writer\"").unwrap(),
            Role::Ingest
        );
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            TokenSecret::from_header(None).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            TokenSecret::from_header(Some("Basic abc")).unwrap_err(),
            AuthError::Malformed
        );
        let ok = format!("Bearer tvk_{}_{}", "a".repeat(16), "b".repeat(64));
        assert!(TokenSecret::from_header(Some(&ok)).is_ok());
        let dbg = format!("{:?}", TokenSecret::from_header(Some(&ok)).unwrap());
        assert!(!dbg.contains("bbbb"), "{dbg}");
    }
}
