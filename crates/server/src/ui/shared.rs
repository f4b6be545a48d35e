//! The web UI's sessions, login codes and OIDC sign-ins shared by a cluster's nodes (issue 21):
//! behind a load balancer, a link minted on one node signs in on another, and a session made on
//! one node holds on every node until it ends on any of them.
//!
//! Each is one object under `cluster/ui/` of the bucket, named by the SHA-256 of its secret (the
//! cookie, code or state; never the secret itself), encrypted and authenticated under the
//! cluster state key with its name in the associated data ([`crate::cluster::StateDoc`]), so a
//! bucket reader learns nothing of who is signed in and a bucket writer cannot forge or move one.
//! Codes and sign-ins are used once across the cluster: using one creates a marker object
//! (`used/<digest>`, create-only), and only the node whose create succeeds goes on.

use tv_access::{Credential, Principal, Role, SharedDoc, TenantScope};
use tv_model::TenantId;
use tv_store::objects::{ObjectError, PutMode, SharedObjects};

use super::session::Binding;
use crate::cluster::StateDoc;

/// A principal as stored.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredPrincipal {
    name: String,
    /// ("token", id, "") | ("oidc", issuer, subject) | ("workload", identity, serial)
    credential: (String, String, String),
    role: Role,
    /// None: every tenant.
    tenants: Option<Vec<String>>,
    services: Vec<String>,
}

impl StoredPrincipal {
    pub fn from(p: &Principal) -> Option<Self> {
        let credential = match &p.credential {
            Credential::ApiToken { id } => ("token".into(), id.clone(), String::new()),
            Credential::Oidc { issuer, subject } => {
                ("oidc".into(), issuer.clone(), subject.clone())
            }
            Credential::Workload { identity, serial } => {
                ("workload".into(), identity.clone(), serial.clone())
            }
            // A credential this build cannot store is not shared (the session stays local).
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        Some(StoredPrincipal {
            name: p.name.clone(),
            credential,
            role: p.role,
            tenants: match &p.tenants {
                TenantScope::All => None,
                TenantScope::Only(v) => Some(v.iter().map(|t| t.to_string()).collect()),
            },
            services: p.services.clone(),
        })
    }

    pub fn principal(self) -> Option<Principal> {
        let (kind, a, b) = self.credential;
        let credential = match kind.as_str() {
            "token" => Credential::ApiToken { id: a },
            "oidc" => Credential::Oidc {
                issuer: a,
                subject: b,
            },
            "workload" => Credential::Workload {
                identity: a,
                serial: b,
            },
            _ => return None,
        };
        let tenants = match self.tenants {
            None => TenantScope::All,
            Some(v) => TenantScope::Only(
                v.iter()
                    .map(|t| TenantId::parse(t))
                    .collect::<Result<_, _>>()
                    .ok()?,
            ),
        };
        Some(Principal {
            name: self.name,
            credential,
            role: self.role,
            tenants,
            services: self.services,
        })
    }
}

/// A binding as stored: (API token id, JWT expiry).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredBinding(Option<String>, Option<u64>);

impl StoredBinding {
    pub fn from(b: &Binding) -> Self {
        match b {
            Binding::Token(id) => StoredBinding(Some(id.clone()), None),
            Binding::Jwt { expires_unix } => StoredBinding(None, Some(*expires_unix)),
        }
    }

    pub fn binding(self) -> Option<Binding> {
        match self {
            StoredBinding(Some(id), None) => Some(Binding::Token(id)),
            StoredBinding(None, Some(e)) => Some(Binding::Jwt { expires_unix: e }),
            _ => None,
        }
    }
}

/// A session as shared.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredSession {
    pub principal: StoredPrincipal,
    pub binding: StoredBinding,
    pub csrf: String,
    pub created_unix: u64,
    /// When a node last recorded a use (nodes record at most every quarter of the idle timeout).
    pub last_used_unix: u64,
}

/// A login code as shared.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredCode {
    pub principal: StoredPrincipal,
    pub binding: StoredBinding,
    pub next: String,
    pub expires_unix: u64,
    pub session_started_unix: Option<u64>,
}

/// An OIDC sign-in under way, as shared.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredOidc {
    pub verifier: String,
    pub nonce: String,
    pub next: String,
    pub redirect_uri: String,
    pub started_unix: u64,
}

/// The kinds of shared UI objects: their directory under `cluster/ui/`.
#[derive(Clone, Copy)]
pub enum Kind {
    Session,
    Code,
    Oidc,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Session => "sessions",
            Kind::Code => "codes",
            Kind::Oidc => "oidc",
        }
    }
}

/// The bucket side of the UI's shared state.
pub struct SharedUi {
    bucket: SharedObjects,
    key: tv_crypto::SecretKey,
}

impl SharedUi {
    pub fn new(bucket: SharedObjects, key: tv_crypto::SecretKey) -> Self {
        SharedUi { bucket, key }
    }

    fn doc(&self, kind: Kind, digest: &[u8; 32]) -> StateDoc {
        StateDoc::new(
            self.bucket.clone(),
            &format!("ui/{}/{}", kind.dir(), hex::encode(digest)),
            self.key.clone(),
        )
    }

    /// Stores `value` as a new object, or over `version` (what [`Self::get`] returned).
    pub fn put<T: serde::Serialize>(
        &self,
        kind: Kind,
        digest: &[u8; 32],
        value: &T,
        version: Option<&str>,
    ) -> Result<String, String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        self.doc(kind, digest)
            .store(&bytes, version)
            .map_err(|e| e.unwrap_or_else(|| "changed meanwhile on another node".into()))
    }

    /// The object and its version, if there is one (one that does not open is refused).
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        digest: &[u8; 32],
    ) -> Result<Option<(T, String)>, String> {
        match self.doc(kind, digest).load()? {
            None => Ok(None),
            Some((b, v)) => Ok(Some((
                serde_json::from_slice(&b).map_err(|e| e.to_string())?,
                v,
            ))),
        }
    }

    pub fn delete(&self, kind: Kind, digest: &[u8; 32]) {
        let key = format!("cluster/ui/{}/{}", kind.dir(), hex::encode(digest));
        if let Err(e) = self.bucket.delete(&key) {
            tracing::warn!(error = %e, "cannot remove an ended UI session or used link from the bucket");
        }
    }

    /// Claims a code or sign-in for this node, once in the whole cluster: true for the one
    /// node whose marker was created.
    pub fn claim(&self, kind: Kind, digest: &[u8; 32]) -> Result<bool, String> {
        let key = format!("cluster/ui/used/{}-{}", kind.dir(), hex::encode(digest));
        // Unique to this claim: a create that meets an object with its own bytes counts as its
        // own earlier attempt (the seam's answer to a lost reply), so equal markers would both win.
        let made = format!(
            "{} {}",
            tv_access::now_unix(),
            hex::encode(tv_crypto::random_bytes::<16>())
        );
        match self.bucket.put(&key, made.as_bytes(), PutMode::Create) {
            Ok(_) => Ok(true),
            Err(ObjectError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The digests of every object of `kind` in the bucket.
    pub fn list(&self, kind: Kind) -> Result<std::collections::HashSet<[u8; 32]>, String> {
        let prefix = format!("cluster/ui/{}/", kind.dir());
        Ok(self
            .bucket
            .list(&prefix)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|o| {
                let h = hex::decode(o.key.strip_prefix(&prefix)?).ok()?;
                <[u8; 32]>::try_from(h.as_slice()).ok()
            })
            .collect())
    }

    /// Removes what has ended from the bucket: sessions past their idle or absolute timeout,
    /// codes and sign-ins past their time, and use markers once what they mark has expired
    /// (an expired code or sign-in is refused anyway). Returns how many objects it removed.
    pub fn sweep(&self, idle: std::time::Duration, max: std::time::Duration) -> usize {
        let now = tv_access::now_unix();
        let mut removed = 0;
        let mut gone = |kind: Kind, d: &[u8; 32]| {
            self.delete(kind, d);
            removed += 1;
        };
        for d in self.list(Kind::Session).unwrap_or_default() {
            if let Ok(Some((s, _))) = self.get::<StoredSession>(Kind::Session, &d)
                && (now.saturating_sub(s.last_used_unix) >= idle.as_secs()
                    || now.saturating_sub(s.created_unix) >= max.as_secs())
            {
                gone(Kind::Session, &d);
            }
        }
        for d in self.list(Kind::Code).unwrap_or_default() {
            if let Ok(Some((c, _))) = self.get::<StoredCode>(Kind::Code, &d)
                && c.expires_unix <= now
            {
                gone(Kind::Code, &d);
            }
        }
        for d in self.list(Kind::Oidc).unwrap_or_default() {
            if let Ok(Some((o, _))) = self.get::<StoredOidc>(Kind::Oidc, &d)
                && now.saturating_sub(o.started_unix) >= super::session::OIDC_TTL.as_secs()
            {
                gone(Kind::Oidc, &d);
            }
        }
        // Markers hold the time they were made; they outlive what they mark by a margin.
        let keep = super::session::OIDC_TTL.as_secs() * 2;
        for o in self.bucket.list("cluster/ui/used/").unwrap_or_default() {
            let made = self.bucket.get(&o.key).ok().and_then(|(b, _)| {
                std::str::from_utf8(&b)
                    .ok()?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
            if made.is_none_or(|t| now.saturating_sub(t) >= keep)
                && self.bucket.delete(&o.key).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}
