//! People by OIDC (issue 5): JWTs from a test identity provider (an Ed25519 JWKS generated here)
//! are accepted by the real server with their role and tenants; expired, wrong-audience,
//! wrong-issuer, `alg: none` and key-confusion tokens get 401.

mod common;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_from_the_configured_provider_act_with_their_role_and_tenants() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let tmp = tempfile::tempdir().unwrap();
    let jwks = tmp.path().join("jwks.json");
    std::fs::write(
        &jwks,
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"k1","alg":"EdDSA"}}]}}"#,
            b64(&public)
        ),
    )
    .unwrap();
    let cfg = tmp.path().join("tv.toml");
    std::fs::write(
        &cfg,
        format!(
            "[oidc]\nissuer = \"https://idp.example\"\naudience = \"tracevault\"\njwks_file = {:?}\n",
            jwks.display().to_string()
        ),
    )
    .unwrap();
    let srv = Server::start_at(
        tmp.path().join("data"),
        None,
        &["--config", cfg.to_str().unwrap()],
    );
    let mint = |over: serde_json::Value, alg: Algorithm, key: &EncodingKey| {
        let mut c = serde_json::json!({
            "sub": "alice@example.com", "iss": "https://idp.example", "aud": "tracevault",
            "exp": now() + 600, "tracevault_role": "reader", "tracevault_tenants": ["acme"],
        });
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        let mut h = Header::new(alg);
        h.kid = Some("k1".into());
        encode(&h, &c, key).unwrap()
    };
    let key = EncodingKey::from_ed_der(pkcs8.as_ref());
    let get = |tok: String, tenant: Option<&'static str>| {
        let mut r = srv
            .http_client()
            .get(format!("{}/api/search/tags", srv.api))
            .bearer_auth(tok);
        if let Some(t) = tenant {
            r = r.header("x-scope-orgid", t);
        }
        r.send()
    };
    // A reader of acme reads acme, not another tenant, and cannot ingest.
    let good = mint(serde_json::json!({}), Algorithm::EdDSA, &key);
    assert_eq!(get(good.clone(), None).await.unwrap().status(), 200);
    assert_eq!(
        get(good.clone(), Some("globex")).await.unwrap().status(),
        403
    );
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(&good)
        .header("content-type", "application/x-protobuf")
        .body(prost::Message::encode_to_vec(&request("a", 1).0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // API tokens keep working beside OIDC.
    assert_eq!(get(srv.token(), Some("acme")).await.unwrap().status(), 200);
    // Refusals, each for its reason, none echoing the token.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(serde_json::json!({"sub":"x","iss":"https://idp.example","aud":"tracevault","exp":now()+600,"tracevault_role":"admin","tracevault_tenants":["acme"]}).to_string().as_bytes())
    );
    let confused = mint(
        serde_json::json!({"tracevault_role": "admin"}),
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
    );
    for (tok, want) in [
        (
            mint(
                serde_json::json!({"exp": now() - 3600}),
                Algorithm::EdDSA,
                &key,
            ),
            "expired",
        ),
        (
            mint(
                serde_json::json!({"aud": "grafana"}),
                Algorithm::EdDSA,
                &key,
            ),
            "audience",
        ),
        (
            mint(
                serde_json::json!({"iss": "https://evil.example"}),
                Algorithm::EdDSA,
                &key,
            ),
            "issuer",
        ),
        (none, "alg none"),
        (confused, "not allowed"),
    ] {
        let r = get(tok.clone(), None).await.unwrap();
        assert_eq!(r.status(), 401, "{want}");
        let body = r.text().await.unwrap();
        assert!(body.contains(want), "{want}: {body}");
        assert!(!body.contains(&tok[..20]), "token echoed");
    }
}
