//! Identities and API tokens.
//!
//! Every request resolves to one [`Principal`], whatever proved it (today: API tokens; mTLS
//! workload certificates (mTLS) and OIDC JWTs are the other [`Credential`] kinds). Tokens look like
//! `tvk_<16 hex id>_<64 hex secret>`: the id is public and finds the record, the 256-bit secret is
//! checked against a stored HMAC-SHA256 under a server key, compared in constant time. A slow
//! password hash would be a CPU denial of service at ingest rates; the secret has full entropy, so
//! a keyed fast hash is the right tool.
//!
//! ```
//! use tv_access::TokenSecret;
//! assert!(TokenSecret::parse("tvk_0011223344556677_".to_string() + &"ab".repeat(32)).is_ok());
//! assert!(TokenSecret::parse("Bearer nope".into()).is_err());
//! ```
#![forbid(unsafe_code)]

pub mod oidc;
pub mod policy;
mod tokens;

pub use oidc::{OidcConfig, OidcVerifier};
pub use policy::{Action, BuiltIn, PolicyEngine, PolicyError, Verdict};
pub use tokens::{
    DocFormat, HMAC_KEY_CONTEXT, HMAC_KEY_FILE, SharedDoc, TokenInfo, TokenRecord, TokenSecret,
    TokenStore, TokenStoreError, now_unix, update_shared,
};

use tv_model::TenantId;

/// Roles out of the box (Cedar policies refine them later):
/// - `admin`: everything, including token management;
/// - `ingest`: write spans only (`writer` is accepted as its old name);
/// - `reader`: traces, search, receipts, the log's proofs;
/// - `investigator`: what a reader may, and (with field classes) restricted values;
/// - `auditor`: the audit log only;
/// - `metrics`: `/metrics` only, so a Prometheus scraper needs no admin token.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    #[serde(alias = "writer")]
    Ingest,
    Reader,
    Investigator,
    Auditor,
    Metrics,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Ingest,
        Role::Reader,
        Role::Investigator,
        Role::Auditor,
        Role::Metrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Reader => "reader",
            Role::Investigator => "investigator",
            Role::Auditor => "auditor",
            Role::Metrics => "metrics",
        }
    }

    /// Parses a role name (`writer` is the old name of `ingest`).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "writer" => Some(Role::Ingest),
            _ => Role::ALL.into_iter().find(|r| r.name() == s),
        }
    }
}

/// Which tenants a credential may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant (the bootstrap admin token).
    All,
    Only(Vec<TenantId>),
}

impl TenantScope {
    pub fn allows(&self, t: &TenantId) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.contains(t),
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    ApiToken {
        id: String,
    },
    /// A person, by an OIDC identity provider's JWT.
    Oidc {
        issuer: String,
        subject: String,
    },
    /// A workload, by an mTLS client certificate: its SPIFFE ID (or `subject:<DN>`) and the
    /// certificate's serial number (lower-case hex).
    Workload {
        identity: String,
        serial: String,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub credential: Credential,
    pub role: Role,
    pub tenants: TenantScope,
    /// The services it may write spans for (`service.name`); empty: any.
    pub services: Vec<String>,
}

impl Principal {
    /// A stable id for policies and caches: `token:<id>` for API tokens.
    pub fn id(&self) -> String {
        match &self.credential {
            Credential::ApiToken { id } => format!("token:{id}"),
            Credential::Oidc { issuer, subject } => format!("oidc:{issuer}:{subject}"),
            Credential::Workload { identity, .. } => format!("mtls:{identity}"),
        }
    }
}

/// Authentication failures. The messages never include the presented secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <token>` or a client certificate")]
    Missing,
    #[error("malformed authorization header: expected `Bearer tvk_<id>_<secret>`")]
    Malformed,
    #[error("invalid token")]
    Invalid,
    #[error("token has been revoked")]
    Revoked,
    #[error("token has expired")]
    Expired,
    /// An OIDC token refused for a stated reason (never the token itself).
    #[error("{0}")]
    Rejected(String),
}
