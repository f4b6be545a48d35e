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
    let (srv, _) = start_with_config(
        tmp,
        &format!(
            "[oidc]\nissuer = \"https://idp.example\"\naudience = \"tracevault\"\njwks_file = {:?}\n",
            jwks.display().to_string()
        ),
        &[],
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

/// Serves `doc` over plain HTTP on loopback to every request (a stand-in for the provider's
/// `jwks_uri`).
async fn jwks_server(doc: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let doc = doc.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = doc.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_at_start_and_refreshed() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut keys = Vec::new();
    for _ in 0..2 {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        keys.push((pkcs8, public));
    }
    let jwk = |kid: &str, public: &[u8]| {
        format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"{kid}","alg":"EdDSA"}}"#,
            b64(public)
        )
    };
    let doc = std::sync::Arc::new(std::sync::Mutex::new(format!(
        r#"{{"keys":[{}]}}"#,
        jwk("k1", &keys[0].1)
    )));
    let url = jwks_server(doc.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let (srv, cfg) = start_with_config(
        tmp,
        &format!(
            "[oidc]\nissuer = \"https://idp.example\"\naudience = \"tracevault\"\njwks_url = {url:?}\njwks_refresh_secs = 1\n"
        ),
        &[],
    );
    let mint = |kid: &str, pkcs8: &[u8]| {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        let c = serde_json::json!({
            "sub": "bob", "iss": "https://idp.example", "aud": "tracevault", "exp": now() + 600,
            "tracevault_role": "reader", "tracevault_tenants": ["acme"],
        });
        encode(&h, &c, &EncodingKey::from_ed_der(pkcs8)).unwrap()
    };
    let status = |tok: String| {
        let c = srv.http_client();
        let url = format!("{}/api/search/tags", srv.api);
        async move {
            c.get(url)
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(mint("k1", keys[0].0.as_ref())).await, 200);
    // The provider rotates in a new key: refused until the next refresh, then accepted.
    let k2 = mint("k2", keys[1].0.as_ref());
    assert_eq!(status(k2.clone()).await, 401);
    *doc.lock().unwrap() = format!(
        r#"{{"keys":[{},{}]}}"#,
        jwk("k1", &keys[0].1),
        jwk("k2", &keys[1].1)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(k2.clone()).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "new key never picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A provider that cannot be reached keeps the server from starting, saying why.
    std::fs::write(
        &cfg,
        "[oidc]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"http://127.0.0.1:9/jwks\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(cfg.parent().unwrap().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fetching the JWKS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
