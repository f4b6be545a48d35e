//! Workload identities by mTLS (issue 5).
//!
//! Listeners ask for a client certificate and accept connections without one (people and
//! scrapers use bearer tokens). A presented certificate must chain to the **client CA** (kept
//! apart from the CA that issues the server certificate), carry the clientAuth extended key usage,
//! be within its validity and not be revoked; otherwise the handshake fails. The identity is the
//! certificate's SPIFFE ID (its one `spiffe://` URI SAN) or, failing that, `subject:<DN>`.
//!
//! An identity means nothing until it is **registered**: bound to a tenant, a role (`ingest` by
//! default) and the services it owns. `tracevault cert issue` registers and issues in one step
//! from the built-in client CA; `tracevault cert register` binds identities whose certificates an
//! outside CA (SPIRE, a corporate PKI) issues. Registrations, issued certificates and revoked
//! serial numbers live in `DIR/workloads.json`; revocation is checked at every handshake and on
//! every request, so it also ends connections already open.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName as RDn, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use tv_access::{AuthError, Credential, Principal, Role, TenantScope, now_unix};
use tv_crypto::fsio;
use tv_model::TenantId;

/// The client CA certificate, under `DIR/tls/`.
pub const CLIENT_CA_PEM: &str = "client-ca.pem";
/// The client CA key, under the keys directory.
pub const CLIENT_CA_KEY: &str = "client-ca.key";
/// Longest lifetime `cert issue` grants.
pub const MAX_DAYS: u32 = 397;

/// Who is on the other end of a connection: its address, and its verified client certificate.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub cert: Option<Arc<PeerCert>>,
    /// The connection the request came on (its slot, timeouts and response budget).
    pub conn: Option<Arc<crate::conns::Conn>>,
}

/// What the server keeps of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// `spiffe://...`, or `subject:<RFC 4514 DN>` without a SPIFFE ID.
    pub identity: String,
    /// Serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// Checks a SPIFFE ID's syntax (SPIFFE-ID spec, section 2): `spiffe://<trust domain>/<path>`,
/// trust domain of lower-case letters, digits, `.`, `-`, `_`; path segments non-empty, not `.`
/// or `..`, of letters, digits, `.`, `-`, `_`; no query, fragment, port or user info.
pub fn check_spiffe_id(id: &str) -> Result<(), String> {
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or_else(|| "a SPIFFE ID starts with spiffe://".to_string())?;
    if id.len() > 2048 {
        return Err("a SPIFFE ID is at most 2048 bytes".into());
    }
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    if td.is_empty() || td.len() > 255 {
        return Err("the trust domain must be 1 to 255 bytes".into());
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
    {
        return Err(
            "the trust domain may hold only lower-case letters, digits, '.', '-' and '_'".into(),
        );
    }
    if path.is_empty() {
        return Err("a workload SPIFFE ID has a path (spiffe://domain/path)".into());
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err("path segments must be non-empty and not '.' or '..'".into());
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        {
            return Err(
                "path segments may hold only letters, digits, '.', '-' and '_'".to_string(),
            );
        }
    }
    Ok(())
}

/// Why a client certificate is refused (beyond chain and validity, which webpki checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCertError {
    #[error("the certificate does not parse: {0}")]
    Parse(String),
    #[error("the certificate lacks the clientAuth extended key usage")]
    NotClientAuth,
    #[error("the certificate carries {0} SPIFFE IDs; exactly one is allowed")]
    ManySpiffeIds(usize),
    #[error("the certificate's SPIFFE ID is malformed: {0}")]
    BadSpiffeId(String),
    #[error("the certificate has neither a SPIFFE ID nor a subject")]
    NoIdentity,
}

/// Reads the identity, serial and expiry of an end-entity client certificate, insisting on the
/// clientAuth extended key usage.
pub fn peer_cert(der: &[u8]) -> Result<PeerCert, PeerCertError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PeerCertError::Parse(e.to_string()))?;
    let eku = cert
        .extended_key_usage()
        .map_err(|e| PeerCertError::Parse(e.to_string()))?;
    if !eku.is_some_and(|e| e.value.client_auth) {
        return Err(PeerCertError::NotClientAuth);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PeerCertError::Parse(e.to_string()))?;
    let spiffe: Vec<&str> = san
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|g| match g {
            GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
            _ => None,
        })
        .collect();
    let identity = match spiffe.as_slice() {
        [one] => {
            check_spiffe_id(one).map_err(PeerCertError::BadSpiffeId)?;
            one.to_string()
        }
        [] => {
            let dn = cert.subject().to_string();
            if dn.is_empty() {
                return Err(PeerCertError::NoIdentity);
            }
            format!("subject:{dn}")
        }
        many => return Err(PeerCertError::ManySpiffeIds(many.len())),
    };
    let raw = cert.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    Ok(PeerCert {
        identity,
        serial: hex::encode(&raw[first..]),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// What an identity may do: the tenant it acts for, its role, the services it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub identity: String,
    pub tenant: String,
    pub role: Role,
    /// Services it may write spans for; empty: any.
    pub services: Vec<String>,
    pub registered_unix: u64,
}

fn key(tenant: &str, identity: &str) -> String {
    format!("{tenant} {identity}")
}

/// A certificate `cert issue` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub serial: String,
    pub identity: String,
    pub tenant: String,
    pub issued_unix: u64,
    pub not_after: i64,
    #[serde(default)]
    pub revoked_unix: Option<u64>,
}

/// `workloads.json` format 2: registrations keyed by tenant and identity (format 1 keyed them by
/// identity alone; it is read and rewritten as 2).
const FORMAT: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    format: u32,
    /// Key: `<tenant> <identity>` (a tenant id has no space).
    workloads: BTreeMap<String, Workload>,
    certificates: BTreeMap<String, IssuedCert>,
    /// Revoked serial numbers (also of certificates an outside CA issued) -> when.
    revoked: BTreeMap<String, u64>,
}

/// A cluster's shared registry document and the version of it this node holds.
struct Shared {
    doc: Arc<dyn tv_access::SharedDoc>,
    version: std::sync::Mutex<Option<String>>,
}

impl Registry {
    fn empty() -> Self {
        Registry {
            format: FORMAT,
            ..Default::default()
        }
    }
}

/// Registered workload identities, issued certificates and revoked serials (`DIR/workloads.json`,
/// or, in a cluster, one document in the bucket that every node reads).
pub struct Workloads {
    path: PathBuf,
    inner: RwLock<Registry>,
    /// Sealed after every write (see `stateseal`).
    seal: std::sync::OnceLock<Arc<crate::stateseal::StateSeal>>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for Workloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shared {
            Some(s) => write!(f, "Workloads({})", s.doc.describe()),
            None => write!(f, "Workloads({})", self.path.display()),
        }
    }
}

/// A registry as stored (format 1 is read and upgraded).
fn parse_registry(b: &[u8], what: &str) -> anyhow::Result<Registry> {
    let mut r: Registry = serde_json::from_slice(b).with_context(|| format!("parsing {what}"))?;
    match r.format {
        1 => {
            r.workloads = r
                .workloads
                .into_values()
                .map(|w| (key(&w.tenant, &w.identity), w))
                .collect();
            r.format = FORMAT;
        }
        FORMAT => {}
        other => {
            anyhow::bail!("{what} has format {other}; this build reads formats 1 and {FORMAT}")
        }
    }
    Ok(r)
}

impl Workloads {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reg = match std::fs::read(path) {
            Ok(b) => parse_registry(&b, &path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::empty(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self {
            path: path.to_owned(),
            inner: RwLock::new(reg),
            seal: std::sync::OnceLock::new(),
            shared: None,
        })
    }

    /// The registry a cluster's nodes share (`doc`): registrations and revocations made on any
    /// node hold on every node within the refresh interval ([`Self::refresh`]).
    pub fn open_shared(doc: Arc<dyn tv_access::SharedDoc>) -> anyhow::Result<Self> {
        let (reg, version) = match doc.load().map_err(anyhow::Error::msg)? {
            Some((b, v)) => (parse_registry(&b, &doc.describe())?, Some(v)),
            None => (Registry::empty(), None),
        };
        Ok(Self {
            path: PathBuf::new(),
            inner: RwLock::new(reg),
            seal: std::sync::OnceLock::new(),
            shared: Some(Shared {
                doc,
                version: std::sync::Mutex::new(version),
            }),
        })
    }

    /// Reads the shared registry again (a cluster); whether it changed. Without one, nothing.
    pub fn refresh(&self) -> anyhow::Result<bool> {
        let Some(sh) = &self.shared else {
            return Ok(false);
        };
        let Some((b, v)) = sh.doc.load().map_err(anyhow::Error::msg)? else {
            return Ok(false);
        };
        let mut held = sh.version.lock().expect("workloads version lock");
        if held.as_deref() == Some(v.as_str()) {
            return Ok(false);
        }
        *self.inner.write().expect("workloads lock") = parse_registry(&b, &sh.doc.describe())?;
        *held = Some(v);
        Ok(true)
    }

    /// Seals the registry after every write from now on.
    pub fn seal_with(&self, seal: Arc<crate::stateseal::StateSeal>) {
        let _ = self.seal.set(seal);
    }

    fn save(&self, r: &Registry) -> anyhow::Result<()> {
        fsio::atomic_write(&self.path, &serde_json::to_vec_pretty(r)?, 0o600)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Runs `f` on the registry and saves it; nothing changes in memory if saving fails. In a
    /// cluster `f` runs on the shared registry as it is now, and again if another node changed
    /// it meanwhile (compare-and-swap).
    fn update<T>(&self, mut f: impl FnMut(&mut Registry) -> T) -> anyhow::Result<T> {
        if let Some(sh) = &self.shared {
            let at = sh.doc.describe();
            let mut held = sh.version.lock().expect("workloads version lock");
            let (out, next, v) = tv_access::update_shared(
                sh.doc.as_ref(),
                &tv_access::DocFormat {
                    parse: &|b| parse_registry(b, &at),
                    empty: &Registry::empty,
                    encode: &|r| Ok(serde_json::to_vec(r)?),
                    fail: &|why| anyhow::anyhow!("{at}: {why}"),
                },
                &mut f,
            )?;
            *self.inner.write().expect("workloads lock") = next;
            *held = Some(v);
            return Ok(out);
        }
        let mut g = self.inner.write().expect("workloads lock");
        let mut next = Registry {
            format: FORMAT,
            workloads: g.workloads.clone(),
            certificates: g.certificates.clone(),
            revoked: g.revoked.clone(),
        };
        let out = f(&mut next);
        self.save(&next)?;
        *g = next;
        if let Some(s) = self.seal.get() {
            s.seal("workloads.json")?;
        }
        Ok(out)
    }

    /// Binds (or re-binds) an identity in its tenant. With `exclusive` (identities of an outside
    /// CA, which name the same workload in every tenant), its registrations in other tenants
    /// are removed.
    pub fn register(&self, w: Workload, exclusive: bool) -> anyhow::Result<()> {
        self.update(|r| {
            if exclusive {
                r.workloads.retain(|_, o| o.identity != w.identity);
            }
            r.workloads.insert(key(&w.tenant, &w.identity), w.clone());
        })
    }

    pub fn record_issued(&self, c: IssuedCert) -> anyhow::Result<()> {
        self.update(|r| {
            r.certificates.insert(c.serial.clone(), c.clone());
        })
    }

    /// Revokes a serial number (whoever issued it). Returns false when it was revoked already.
    pub fn revoke_serial(&self, serial: &str) -> anyhow::Result<bool> {
        let now = now_unix();
        self.update(|r| {
            if let Some(c) = r.certificates.get_mut(serial) {
                c.revoked_unix.get_or_insert(now);
            }
            r.revoked.insert(serial.to_string(), now).is_none()
        })
    }

    /// Removes an identity's registration in `tenant` and revokes every certificate issued to
    /// it for that tenant; returns the serials revoked, or None when it was not registered there.
    pub fn revoke_identity(
        &self,
        tenant: &str,
        identity: &str,
    ) -> anyhow::Result<Option<Vec<String>>> {
        let now = now_unix();
        self.update(|r| {
            r.workloads.remove(&key(tenant, identity))?;
            let mut serials = Vec::new();
            for c in r.certificates.values_mut() {
                if c.identity == identity && c.tenant == tenant && c.revoked_unix.is_none() {
                    c.revoked_unix = Some(now);
                    serials.push(c.serial.clone());
                }
            }
            for s in &serials {
                r.revoked.insert(s.clone(), now);
            }
            Some(serials)
        })
    }

    pub fn is_revoked(&self, serial: &str) -> bool {
        self.inner
            .read()
            .expect("workloads lock")
            .revoked
            .contains_key(serial)
    }

    /// The registration of `identity` in `tenant`.
    pub fn workload(&self, tenant: &str, identity: &str) -> Option<Workload> {
        self.inner
            .read()
            .expect("workloads lock")
            .workloads
            .get(&key(tenant, identity))
            .cloned()
    }

    /// Every tenant's registration of `identity`.
    pub fn registrations(&self, identity: &str) -> Vec<Workload> {
        self.inner
            .read()
            .expect("workloads lock")
            .workloads
            .values()
            .filter(|w| w.identity == identity)
            .cloned()
            .collect()
    }

    pub fn certificate(&self, serial: &str) -> Option<IssuedCert> {
        self.inner
            .read()
            .expect("workloads lock")
            .certificates
            .get(serial)
            .cloned()
    }

    /// Registrations, issued certificates and the revoked serials.
    pub fn list(&self) -> (Vec<Workload>, Vec<IssuedCert>, BTreeMap<String, u64>) {
        let r = self.inner.read().expect("workloads lock");
        (
            r.workloads.values().cloned().collect(),
            r.certificates.values().cloned().collect(),
            r.revoked.clone(),
        )
    }

    /// The principal a verified certificate stands for, checked again on every request (a
    /// revocation or expiry ends connections already open).
    pub fn principal(&self, cert: &PeerCert) -> Result<Principal, AuthError> {
        if self.is_revoked(&cert.serial) {
            return Err(AuthError::Rejected(format!(
                "client certificate {} has been revoked",
                cert.serial
            )));
        }
        if cert.not_after < now_unix() as i64 {
            return Err(AuthError::Rejected(format!(
                "client certificate {} has expired",
                cert.serial
            )));
        }
        let unregistered = || {
            AuthError::Rejected(format!(
                "workload identity {} is not registered: `tracevault cert issue` or `tracevault cert register` binds it to a tenant and role",
                cert.identity
            ))
        };
        // A certificate this server issued acts for the tenant it was issued for, and only
        // through that tenant's registration of its identity; an outside CA's identity has one
        // registration (see `register`).
        let w = match self.certificate(&cert.serial) {
            Some(issued) => self
                .workload(&issued.tenant, &cert.identity)
                .ok_or_else(unregistered)?,
            None => {
                let mut all = self.registrations(&cert.identity);
                if all.len() > 1 {
                    return Err(AuthError::Rejected(format!(
                        "workload identity {} is registered in {} tenants and its certificate was not issued by this server: register it in one tenant",
                        cert.identity,
                        all.len()
                    )));
                }
                all.pop().ok_or_else(unregistered)?
            }
        };
        let tenant = TenantId::parse(&w.tenant)
            .map_err(|e| AuthError::Rejected(format!("registered tenant: {e}")))?;
        Ok(Principal {
            name: cert.identity.clone(),
            credential: Credential::Workload {
                identity: cert.identity.clone(),
                serial: cert.serial.clone(),
            },
            role: w.role,
            tenants: TenantScope::Only(vec![tenant]),
            services: w.services,
        })
    }
}

/// The built-in client CA: its certificate and the directory holding its key.
#[derive(Debug, Clone)]
pub struct OwnClientCa {
    pub cert: PathBuf,
    pub keys_dir: PathBuf,
}

/// Makes sure the built-in client CA exists: `DIR/tls/client-ca.pem` and `keys/client-ca.key`.
/// Returns the certificate's path.
pub fn ensure_client_ca(data_dir: &Path, keys_dir: &Path) -> anyhow::Result<PathBuf> {
    let tls_dir = data_dir.join("tls");
    fsio::create_private_dir(&tls_dir)?;
    let pem = tls_dir.join(CLIENT_CA_PEM);
    let key = keys_dir.join(CLIENT_CA_KEY);
    crate::tls::ensure_ca(
        &key,
        &pem,
        "tracevault client CA",
        "created the client CA for workload certificates (apart from the server CA)",
    )?;
    Ok(pem)
}

/// Signs a client certificate for `spiffe_id` over the public key of a PEM certificate signing
/// request (whose signature proves the requester holds the key; its subject and extensions are
/// ignored). Returns (certificate PEM, serial, not_after).
pub fn issue(
    ca: &OwnClientCa,
    csr_pem: &str,
    spiffe_id: &str,
    days: u32,
) -> anyhow::Result<(String, String, i64)> {
    let key = std::fs::read_to_string(ca.keys_dir.join(CLIENT_CA_KEY))
        .context("reading the client CA key")?;
    let kp = KeyPair::from_pem(&key).context("parsing the client CA key")?;
    let ca_pem = std::fs::read_to_string(&ca.cert).context("reading the client CA certificate")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, kp).context("the client CA certificate")?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| anyhow::anyhow!("certificate signing request: {e}"))?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.subject_alt_names = vec![SanType::URI(
        spiffe_id
            .try_into()
            .map_err(|e| anyhow::anyhow!("SPIFFE ID: {e}"))?,
    )];
    p.distinguished_name = DistinguishedName::new();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let mut serial = tv_crypto::random_bytes::<16>();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(days.into());
    let not_after = p.not_after.unix_timestamp();
    csr.params = p;
    let cert = csr.signed_by(&issuer)?;
    Ok((cert.pem(), hex::encode(serial), not_after))
}

/// The rustls client-certificate check: webpki against the client CA bundle (chain, validity,
/// signatures), then the clientAuth usage, the identity's syntax and the revocation list.
/// Connections without a certificate are let through to bearer-token authentication.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    workloads: Arc<Workloads>,
}

impl ClientVerifier {
    pub fn new(ca_bundle: &Path, workloads: Arc<Workloads>) -> anyhow::Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca_bundle)
            .with_context(|| format!("reading client CA {}", ca_bundle.display()))?
        {
            roots
                .add(c.with_context(|| format!("parsing client CA {}", ca_bundle.display()))?)
                .with_context(|| format!("client CA {}", ca_bundle.display()))?;
        }
        if roots.is_empty() {
            anyhow::bail!("no certificate in client CA file {}", ca_bundle.display());
        }
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::provider(),
        )
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")?;
        Ok(Self { inner, workloads })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[RDn] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let p = peer_cert(end_entity).map_err(|e| match e {
            PeerCertError::NotClientAuth => {
                rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
            }
            other => rustls::Error::General(other.to_string()),
        })?;
        if self.workloads.is_revoked(&p.serial) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::DnType;

    fn cert(p: CertificateParams) -> Vec<u8> {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        p.self_signed(&k).unwrap().der().to_vec()
    }

    #[test]
    fn identity_is_the_spiffe_id_or_the_subject_and_client_auth_is_required() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![
            SanType::DnsName("x.example".try_into().unwrap()),
            SanType::URI(
                "spiffe://prod.example/ns/shop/sa/checkout"
                    .try_into()
                    .unwrap(),
            ),
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from_slice(&[0, 0x12, 0x34]));
        let got = peer_cert(&cert(p.clone())).unwrap();
        assert_eq!(got.identity, "spiffe://prod.example/ns/shop/sa/checkout");
        assert_eq!(got.serial, "1234");

        let mut subj = CertificateParams::new(Vec::<String>::new()).unwrap();
        subj.distinguished_name = DistinguishedName::new();
        subj.distinguished_name.push(DnType::CommonName, "billing");
        subj.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        assert_eq!(
            peer_cert(&cert(subj)).unwrap().identity,
            "subject:CN=billing"
        );

        let mut server_only = p.clone();
        server_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        assert_eq!(
            peer_cert(&cert(server_only)),
            Err(PeerCertError::NotClientAuth)
        );
        let mut none = p.clone();
        none.extended_key_usages = vec![];
        assert_eq!(peer_cert(&cert(none)), Err(PeerCertError::NotClientAuth));

        let mut two = p.clone();
        two.subject_alt_names.push(SanType::URI(
            "spiffe://prod.example/other".try_into().unwrap(),
        ));
        assert_eq!(peer_cert(&cert(two)), Err(PeerCertError::ManySpiffeIds(2)));
    }

    #[test]
    fn spiffe_id_syntax() {
        for ok in [
            "spiffe://example.org/ns/default/sa/checkout",
            "spiffe://td_1-x/a.b/c",
        ] {
            assert!(check_spiffe_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://example.org/x",
            "spiffe://Example.org/x",
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a?b=c",
            "spiffe://user@example.org/a",
            "spiffe://example.org:8443/a",
        ] {
            assert!(check_spiffe_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_binds_revokes_and_persists() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("workloads.json");
        let w = Workloads::open(&path).unwrap();
        let cert = PeerCert {
            identity: "spiffe://t/a".into(),
            serial: "0a".into(),
            not_after: now_unix() as i64 + 3600,
        };
        assert!(w.principal(&cert).is_err(), "unregistered");
        w.register(
            Workload {
                identity: cert.identity.clone(),
                tenant: "acme".into(),
                role: Role::Ingest,
                services: vec!["checkout".into()],
                registered_unix: 0,
            },
            true,
        )
        .unwrap();
        let p = w.principal(&cert).unwrap();
        assert_eq!(p.id(), "mtls:spiffe://t/a");
        assert_eq!(p.services, vec!["checkout".to_string()]);
        let expired = PeerCert {
            not_after: 1,
            ..cert.clone()
        };
        assert!(w.principal(&expired).is_err());
        assert!(w.revoke_serial("0a").unwrap());
        assert!(!w.revoke_serial("0a").unwrap());
        let again = Workloads::open(&path).unwrap();
        assert!(again.is_revoked("0a"));
        assert!(again.principal(&cert).is_err());
        assert_eq!(
            again.revoke_identity("acme", "spiffe://t/a").unwrap(),
            Some(vec![])
        );
        assert_eq!(again.revoke_identity("acme", "spiffe://t/a").unwrap(), None);
    }

    #[test]
    fn issued_certificates_act_for_the_tenant_they_were_issued_for() {
        let d = tempfile::tempdir().unwrap();
        let w = Workloads::open(&d.path().join("workloads.json")).unwrap();
        let id = "spiffe://t/shared";
        for (tenant, role) in [("legal", Role::Admin), ("acme", Role::Ingest)] {
            w.register(
                Workload {
                    identity: id.into(),
                    tenant: tenant.into(),
                    role,
                    services: vec![],
                    registered_unix: 0,
                },
                false,
            )
            .unwrap();
        }
        w.record_issued(IssuedCert {
            serial: "0b".into(),
            identity: id.into(),
            tenant: "acme".into(),
            issued_unix: 0,
            not_after: i64::MAX,
            revoked_unix: None,
        })
        .unwrap();
        let cert = |serial: &str| PeerCert {
            identity: id.into(),
            serial: serial.into(),
            not_after: i64::MAX,
        };
        // acme's certificate is acme's ingest identity, never legal's admin one.
        let p = w.principal(&cert("0b")).unwrap();
        assert_eq!(p.role, Role::Ingest);
        assert!(p.tenants.allows(&TenantId::parse("acme").unwrap()));
        assert!(!p.tenants.allows(&TenantId::parse("legal").unwrap()));
        // An outside certificate for an identity registered twice is refused, not guessed.
        let err = w.principal(&cert("0c")).unwrap_err().to_string();
        assert!(err.contains("registered in 2 tenants"), "{err}");
    }
}
