//! State the server keeps for a tenant between runs (the behavioural baselines, the service
//! graph): JSON encrypted under a fresh data key of the tenant, so erasing the tenant makes it
//! unreadable. Layout: `magic || wrapped data key || AES-GCM(JSON)`, with the tenant in the
//! associated data (a file moved to another tenant's name does not open).

use tv_crypto::{Keyring, WrappedDataKey};
use tv_model::TenantId;

/// What a kind of state file is: its magic and the label its associated data starts with.
pub struct Kind {
    pub magic: &'static [u8],
    pub label: &'static [u8],
    /// For errors: "detection state", "service graph".
    pub what: &'static str,
}

fn aad(kind: &Kind, tenant: &TenantId) -> Vec<u8> {
    [kind.label, tenant.as_str().as_bytes()].concat()
}

/// `value` as JSON, encrypted under a fresh data key of `tenant`.
pub fn seal<T: serde::Serialize>(
    kind: &Kind,
    keyring: &Keyring,
    tenant: &TenantId,
    value: &T,
) -> anyhow::Result<Vec<u8>> {
    let (key, wrapped) = keyring.new_data_key(tenant)?;
    let mut buf = serde_json::to_vec(value)?;
    key.seal(0, &aad(kind, tenant), &mut buf)?;
    Ok([kind.magic, &wrapped.to_bytes(), &buf].concat())
}

/// The value [`seal`] wrote for `tenant`.
pub fn open<T: serde::de::DeserializeOwned>(
    kind: &Kind,
    keyring: &Keyring,
    tenant: &TenantId,
    bytes: &[u8],
) -> anyhow::Result<T> {
    let rest = bytes
        .strip_prefix(kind.magic)
        .ok_or_else(|| anyhow::anyhow!("not a {} file", kind.what))?;
    if rest.len() < WrappedDataKey::LEN {
        anyhow::bail!("{} file is truncated", kind.what);
    }
    let wrapped = WrappedDataKey::from_bytes(&rest[..WrappedDataKey::LEN])
        .ok_or_else(|| anyhow::anyhow!("bad key header"))?;
    let key = keyring.open_data_key(tenant, &wrapped)?;
    let mut buf = rest[WrappedDataKey::LEN..].to_vec();
    let plain = key.open(0, &aad(kind, tenant), &mut buf)?;
    Ok(serde_json::from_slice(plain)?)
}
