//! Tenant identifiers, validated before they touch a path, a key or a metric label.

use std::fmt;

/// A tenant id matching `[a-z0-9][a-z0-9_-]{0,62}`. Only [`TenantId::parse`] makes one, so a
/// `TenantId` is always safe to use as a file name component or a metric label value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

/// Why a tenant id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid tenant id: must match [a-z0-9][a-z0-9_-]{{0,62}} (1 to 63 characters, lowercase letters, digits, '_' and '-', not starting with '_' or '-')"
)]
pub struct InvalidTenant;

impl TenantId {
    /// The tenant used when a request names none.
    pub const DEFAULT: &'static str = "default";

    /// Parses and validates a tenant id.
    pub fn parse(s: &str) -> Result<Self, InvalidTenant> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 63 {
            return Err(InvalidTenant);
        }
        if !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
            return Err(InvalidTenant);
        }
        if !b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        {
            return Err(InvalidTenant);
        }
        Ok(Self(s.to_owned()))
    }

    /// The default tenant.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["default", "a", "0", "acme-prod_2", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_path_and_label_tricks() {
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a/b",
            "..",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
            "a\0",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parsed_ids_are_path_safe(s in "\\PC{0,80}") {
            if let Ok(t) = TenantId::parse(&s) {
                prop_assert!(!t.as_str().contains('/') && !t.as_str().contains('.'));
                prop_assert!(t.as_str().len() <= 63);
            }
        }
    }
}
