//! People by OIDC: `Authorization: Bearer <JWT>` from an identity provider, checked against its
//! JWKS (`jsonwebtoken`, aws-lc-rs backend): signature by a key of the set (chosen by `kid`),
//! an allowed asymmetric algorithm (never `none`, never HS*: a public key is not a shared secret),
//! issuer, audience, `exp`/`nbf` with bounded clock skew. Claims name the role and the tenants.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tv_model::TenantId;

use crate::{AuthError, Credential, Principal, Role, TenantScope};

/// `[oidc]` in the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    /// The provider's JWKS as a file ...
    #[serde(default)]
    pub jwks_file: Option<std::path::PathBuf>,
    /// ... or its `jwks_uri` (https, or http to a loopback address), fetched at start and every
    /// `jwks_refresh_secs`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// CA certificate (PEM) for the JWKS URL when the provider uses a private CA.
    #[serde(default)]
    pub jwks_ca: Option<std::path::PathBuf>,
    #[serde(default = "refresh")]
    pub jwks_refresh_secs: u64,
    /// Claim holding the role name (`admin`, `reader`, ...).
    #[serde(default = "role_claim")]
    pub role_claim: String,
    /// Claim holding the tenants (a string or a list of strings).
    #[serde(default = "tenants_claim")]
    pub tenants_claim: String,
    /// Allowed algorithms (asymmetric only).
    #[serde(default = "algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, seconds (at most 300).
    #[serde(default = "leeway")]
    pub leeway_secs: u64,
    /// Web UI sign-in (authorization code + PKCE): this server's client id at the provider. With
    /// `authorization_endpoint` and `token_endpoint`, the sign-in page offers the provider; the
    /// ID token it returns (audience: this client id) is checked like any JWT.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// A file holding the client secret, for providers that require one (a public client with
    /// PKCE needs none).
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Scopes asked for (default `openid`; add the scope that carries the role and tenant claims).
    #[serde(default = "scopes")]
    pub scopes: String,
    /// The redirect URI registered at the provider (default `https://<host the browser used>/ui/oidc/callback`).
    #[serde(default)]
    pub redirect_uri: Option<String>,
}

fn scopes() -> String {
    "openid".into()
}

/// An https URL, or http to a loopback address.
fn check_url(name: &str, u: &str) -> Result<(), String> {
    let loopback_http = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| u.starts_with(p));
    if !u.starts_with("https://") && !loopback_http {
        return Err(format!(
            "oidc.{name} {u:?}: must be https (plain http only to a loopback address)"
        ));
    }
    Ok(())
}

fn role_claim() -> String {
    "tracevault_role".into()
}
fn tenants_claim() -> String {
    "tracevault_tenants".into()
}
fn algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn leeway() -> u64 {
    60
}
fn refresh() -> u64 {
    300
}

/// A configured verifier.
pub struct OidcVerifier {
    cfg: OidcConfig,
    keys: std::sync::RwLock<HashMap<String, DecodingKey>>,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OidcVerifier({})", self.cfg.issuer)
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

/// The keys of a JWKS document by `kid`.
fn parse_jwks(jwks: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let set: JwkSet =
        serde_json::from_str(jwks).map_err(|e| format!("JWKS is not a key set: {e}"))?;
    let mut keys = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| format!("JWKS key {i} has no kid"))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| format!("JWKS key {kid:?} is not usable: {e}"))?;
        keys.insert(kid, key);
    }
    if keys.is_empty() {
        return Err("JWKS has no keys".into());
    }
    Ok(keys)
}

impl OidcVerifier {
    /// Checks the configuration and loads the key set (`jwks` is the JWKS document; `None` with
    /// `jwks_url`: no key until the server fetches them with [`OidcVerifier::replace_keys`]).
    pub fn new(cfg: OidcConfig, jwks: Option<&str>) -> Result<Self, String> {
        if cfg.issuer.is_empty() || cfg.audience.is_empty() {
            return Err("oidc.issuer and oidc.audience are required".into());
        }
        if cfg.leeway_secs > 300 {
            return Err(format!(
                "oidc.leeway_secs = {}: at most 300",
                cfg.leeway_secs
            ));
        }
        let mut algorithms = Vec::new();
        for a in &cfg.algorithms {
            let alg: Algorithm = a
                .parse()
                .map_err(|_| format!("oidc.algorithms: unknown algorithm {a:?}"))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(format!(
                    "oidc.algorithms: {a} is symmetric; a JWKS holds public keys, and accepting HS* would let anyone who has one forge tokens"
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("oidc.algorithms is empty".into());
        }
        if cfg.jwks_file.is_some() == cfg.jwks_url.is_some() {
            return Err("name exactly one of oidc.jwks_file and oidc.jwks_url".into());
        }
        let ui = [
            cfg.client_id.is_some(),
            cfg.authorization_endpoint.is_some(),
            cfg.token_endpoint.is_some(),
        ];
        if ui.iter().any(|x| *x) && !ui.iter().all(|x| *x) {
            return Err(
                "oidc: web UI sign-in needs client_id, authorization_endpoint and token_endpoint together".into(),
            );
        }
        for (name, u) in [
            ("authorization_endpoint", &cfg.authorization_endpoint),
            ("token_endpoint", &cfg.token_endpoint),
            ("redirect_uri", &cfg.redirect_uri),
        ] {
            if let Some(u) = u {
                check_url(name, u)?;
            }
        }
        if let Some(u) = &cfg.jwks_url {
            check_url("jwks_url", u)?;
            if cfg.jwks_refresh_secs < 1 {
                return Err("oidc.jwks_refresh_secs must be at least 1".into());
            }
        }
        let keys = match jwks {
            Some(j) => parse_jwks(j)?,
            None if cfg.jwks_url.is_some() => HashMap::new(),
            None => return Err("oidc: no JWKS".into()),
        };
        Ok(OidcVerifier {
            cfg,
            keys: std::sync::RwLock::new(keys),
            algorithms,
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// Replaces the key set (a refreshed JWKS); the old set stays if this one does not parse.
    pub fn replace_keys(&self, jwks: &str) -> Result<usize, String> {
        let keys = parse_jwks(jwks)?;
        let n = keys.len();
        *self.keys.write().expect("jwks lock") = keys;
        Ok(n)
    }

    /// Whether a bearer value has a JWT's shape (three base64url parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// Validates a JWT and maps its claims to a principal. Errors never carry the token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_until(token).map(|(p, _)| p)
    }

    /// [`OidcVerifier::verify`], with the token's expiry (`exp`, unix seconds): what a session
    /// made from the token is bound to.
    pub fn verify_until(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        self.verify_with(token, &self.cfg.audience, None)
    }

    /// The ID token of a web UI sign-in: its audience is this server's client id, and its
    /// `nonce` must be the one the sign-in sent.
    pub fn verify_id_token(&self, token: &str, nonce: &str) -> Result<(Principal, u64), AuthError> {
        let client = self
            .cfg
            .client_id
            .as_deref()
            .ok_or_else(|| AuthError::Rejected("oidc.client_id is not set".into()))?;
        self.verify_with(token, client, Some(nonce))
    }

    fn verify_with(
        &self,
        token: &str,
        audience: &str,
        nonce: Option<&str>,
    ) -> Result<(Principal, u64), AuthError> {
        let header = decode_header(token).map_err(|_| {
            AuthError::Rejected("not a JWT with a supported algorithm (alg none is refused)".into())
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::Rejected(format!(
                "JWT algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Rejected("JWT header has no kid".into()))?;
        let keys = self.keys.read().expect("jwks lock");
        let key = keys
            .get(&kid)
            .ok_or_else(|| AuthError::Rejected("JWT signed by a key not in the JWKS".into()))?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.cfg.leeway_secs;
        v.validate_nbf = true;
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<Claims>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => AuthError::Expired,
                K::InvalidIssuer => AuthError::Rejected("JWT issuer is not accepted".into()),
                K::InvalidAudience => AuthError::Rejected("JWT audience is not accepted".into()),
                K::ImmatureSignature => AuthError::Rejected("JWT is not valid yet (nbf)".into()),
                K::MissingRequiredClaim(c) => {
                    AuthError::Rejected(format!("JWT lacks the {c} claim"))
                }
                K::InvalidAlgorithm => {
                    AuthError::Rejected("JWT algorithm does not match its key".into())
                }
                _ => AuthError::Invalid,
            }
        })?;
        let c = data.claims;
        if let Some(want) = nonce {
            let got = c.rest.get("nonce").and_then(|v| v.as_str()).unwrap_or("");
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                got.as_bytes(),
                want.as_bytes(),
            )) {
                return Err(AuthError::Rejected(
                    "ID token's nonce is not this sign-in's (a replayed or injected token)".into(),
                ));
            }
        }
        let role = c
            .rest
            .get(&self.cfg.role_claim)
            .and_then(|v| v.as_str())
            .and_then(Role::parse)
            .ok_or_else(|| {
                AuthError::Rejected(format!(
                    "JWT has no known role in the {} claim",
                    self.cfg.role_claim
                ))
            })?;
        let tenants: Vec<&str> = match c.rest.get(&self.cfg.tenants_claim) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        let tenants: Vec<TenantId> = tenants
            .into_iter()
            .map(TenantId::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| AuthError::Rejected("JWT names an invalid tenant".into()))?;
        if tenants.is_empty() {
            // A person's token always names its tenants; "every tenant" is for the bootstrap
            // admin token only.
            return Err(AuthError::Rejected(format!(
                "JWT names no tenant in the {} claim",
                self.cfg.tenants_claim
            )));
        }
        let p = Principal {
            name: c.sub.clone(),
            credential: Credential::Oidc {
                issuer: self.cfg.issuer.clone(),
                subject: c.sub,
            },
            role,
            tenants: TenantScope::Only(tenants),
            services: Vec::new(),
        };
        Ok((p, c.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header, encode};

    struct Idp {
        pkcs8: Vec<u8>,
        jwks: String,
        public: Vec<u8>,
    }

    fn idp() -> Idp {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = kp.public_key().as_ref().to_vec();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&public);
        let jwks = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"k1","alg":"EdDSA","use":"sig"}}]}}"#
        );
        Idp {
            pkcs8: pkcs8.as_ref().to_vec(),
            jwks,
            public,
        }
    }

    fn cfg(jwks_file: &str) -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            audience: "tracevault".into(),
            jwks_file: Some(jwks_file.into()),
            jwks_url: None,
            jwks_ca: None,
            jwks_refresh_secs: 300,
            role_claim: role_claim(),
            tenants_claim: tenants_claim(),
            algorithms: algorithms(),
            leeway_secs: 60,
            client_id: None,
            authorization_endpoint: None,
            token_endpoint: None,
            client_secret_file: None,
            scopes: scopes(),
            redirect_uri: None,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn token(idp: &Idp, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("k1".into());
        encode(&h, &claims, &EncodingKey::from_ed_der(&idp.pkcs8)).unwrap()
    }

    fn claims(over: serde_json::Value) -> serde_json::Value {
        let mut c = serde_json::json!({
            "sub": "alice", "iss": "https://idp.example", "aud": "tracevault",
            "exp": now() + 600, "iat": now(),
            "tracevault_role": "reader", "tracevault_tenants": ["acme"],
        });
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn good_tokens_map_claims_to_a_principal() {
        let i = idp();
        let v = OidcVerifier::new(cfg("x"), Some(&i.jwks)).unwrap();
        let p = v.verify(&token(&i, claims(serde_json::json!({})))).unwrap();
        assert_eq!(p.role, Role::Reader);
        assert_eq!(p.name, "alice");
        assert_eq!(p.id(), "oidc:https://idp.example:alice");
        assert_eq!(
            p.tenants,
            TenantScope::Only(vec![TenantId::parse("acme").unwrap()])
        );
    }

    #[test]
    fn bad_tokens_are_refused_for_the_right_reason() {
        let i = idp();
        let v = OidcVerifier::new(cfg("x"), Some(&i.jwks)).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (
                token(&i, claims(serde_json::json!({"exp": now() - 3600}))),
                "expired",
            ),
            (
                token(&i, claims(serde_json::json!({"aud": "grafana"}))),
                "audience",
            ),
            (
                token(
                    &i,
                    claims(serde_json::json!({"iss": "https://evil.example"})),
                ),
                "issuer",
            ),
            (
                token(&i, claims(serde_json::json!({"tracevault_role": "root"}))),
                "no known role",
            ),
            (
                token(&i, claims(serde_json::json!({"tracevault_tenants": []}))),
                "no tenant",
            ),
            (
                token(&i, claims(serde_json::json!({"nbf": now() + 3600}))),
                "not valid yet",
            ),
        ];
        for (t, want) in cases {
            let e = v.verify(&t).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        // alg none: header {"alg":"none"}, no signature.
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            b64(&claims(serde_json::json!({})).to_string())
        );
        assert!(
            v.verify(&none)
                .unwrap_err()
                .to_string()
                .contains("alg none")
        );
        // Key confusion: HS256 with the public key as the HMAC secret.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let forged = encode(
            &h,
            &claims(serde_json::json!({"tracevault_role": "admin"})),
            &EncodingKey::from_secret(&i.public),
        )
        .unwrap();
        let e = v.verify(&forged).unwrap_err().to_string();
        assert!(e.contains("not allowed"), "{e}");
        // Another key, same kid: signature fails.
        let other = idp();
        let e = v
            .verify(&token(&other, claims(serde_json::json!({}))))
            .unwrap_err();
        assert_eq!(e, AuthError::Invalid);
        // A tampered payload fails too.
        let t = token(&i, claims(serde_json::json!({})));
        let mut parts: Vec<&str> = t.split('.').collect();
        let evil = b64(&claims(serde_json::json!({"tracevault_role": "admin"})).to_string());
        parts[1] = &evil;
        assert_eq!(v.verify(&parts.join(".")).unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn ui_sign_in_needs_its_three_settings_and_safe_urls() {
        let i = idp();
        let mut c = cfg("x");
        c.client_id = Some("ui".into());
        let e = OidcVerifier::new(c.clone(), Some(&i.jwks)).unwrap_err();
        assert!(e.contains("together"), "{e}");
        c.authorization_endpoint = Some("http://idp.example/auth".into());
        c.token_endpoint = Some("https://idp.example/token".into());
        let e = OidcVerifier::new(c.clone(), Some(&i.jwks)).unwrap_err();
        assert!(
            e.contains("authorization_endpoint") && e.contains("https"),
            "{e}"
        );
        c.authorization_endpoint = Some("https://idp.example/auth".into());
        assert!(OidcVerifier::new(c, Some(&i.jwks)).is_ok());
    }

    #[test]
    fn an_id_token_needs_this_clients_audience_and_the_sign_ins_nonce() {
        let i = idp();
        let mut c = cfg("x");
        c.client_id = Some("tracevault-ui".into());
        c.authorization_endpoint = Some("https://idp.example/auth".into());
        c.token_endpoint = Some("https://idp.example/token".into());
        let v = OidcVerifier::new(c, Some(&i.jwks)).unwrap();
        let good = token(
            &i,
            claims(serde_json::json!({"aud": "tracevault-ui", "nonce": "n1"})),
        );
        assert!(v.verify_id_token(&good, "n1").is_ok());
        let e = v.verify_id_token(&good, "n2").unwrap_err();
        assert!(e.to_string().contains("nonce"), "{e}");
        // An API token (audience tracevault) is not an ID token for the UI, and back.
        let api = token(&i, claims(serde_json::json!({"nonce": "n1"})));
        assert!(v.verify_id_token(&api, "n1").is_err());
        assert!(v.verify(&good).is_err());
    }

    #[test]
    fn symmetric_algorithms_are_refused_in_the_configuration() {
        let i = idp();
        let mut c = cfg("x");
        c.algorithms = vec!["HS256".into()];
        assert!(
            OidcVerifier::new(c, Some(&i.jwks))
                .unwrap_err()
                .contains("symmetric")
        );
    }
}
