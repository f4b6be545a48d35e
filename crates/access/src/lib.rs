//! Identities and API tokens.
//!
//! Every request resolves to one [`Principal`], whatever proved it (today: API tokens; mTLS
//! identities and OIDC join later as further [`Credential`] kinds). Tokens look like
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

mod tokens;

pub use tokens::{TokenRecord, TokenSecret, TokenStore};

use tv_model::TenantId;

/// Roles, coarse for now; Cedar policies refine them later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Writer,
    Reader,
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
    ApiToken { id: String },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub credential: Credential,
    pub role: Role,
    pub tenants: TenantScope,
}

impl Principal {
    pub fn may_ingest(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Writer)
    }
    pub fn may_read(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Reader)
    }
}

/// Authentication failures. The messages never include the presented secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("malformed authorization header: expected `Bearer tvk_<id>_<secret>`")]
    Malformed,
    #[error("invalid token")]
    Invalid,
    #[error("token has been revoked")]
    Revoked,
    #[error("token has expired")]
    Expired,
}
