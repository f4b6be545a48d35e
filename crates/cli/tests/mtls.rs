//! Workload identities by mTLS against the real binary: `tracevault cert issue|register|revoke`,
//! spans written with a client certificate alone (reqwest, tonic, the OpenTelemetry Python SDK),
//! service ownership, and every certificate that must be refused (wrong CA, the server CA,
//! expired, no clientAuth usage, revoked — on new and on open connections); server certificate
//! and client CA rotation without a restart.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};

async fn export(
    c: &reqwest::Client,
    srv: &Server,
    service: &str,
) -> Result<(u16, String, [u8; 16]), reqwest::Error> {
    let (req, tid) = request(service, 3);
    let r = c
        .post(format!("{}/v1/traces", srv.http))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&req).unwrap())
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default(), tid))
}

async fn admin_spans(srv: &Server, tenant: &str, tid: [u8; 16]) -> usize {
    let r = srv
        .http_client()
        .get(format!("{}/api/traces/{}", srv.api, hex::encode(tid)))
        .bearer_auth(srv.token())
        .header("x-scope-orgid", tenant)
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return 0;
    }
    assert_eq!(r.status(), 200);
    count_json_spans(&r.json().await.unwrap())
}

type Ca = Issuer<'static, KeyPair>;

/// A CA (`name`), self-signed: the issuer and its certificate's PEM.
fn make_ca(name: &str) -> (Ca, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = p.clone().self_signed(&key).unwrap().pem();
    (Issuer::new(p, key), pem)
}

/// A CA from its certificate and key files.
fn ca_from_files(cert: &Path, key: &Path) -> Ca {
    let key = KeyPair::from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    Issuer::from_ca_cert_pem(&std::fs::read_to_string(cert).unwrap(), key).unwrap()
}

/// A leaf signed by `ca`; returns (cert PEM, key PEM).
fn leaf(
    ca: &Ca,
    sans: Vec<SanType>,
    eku: Vec<ExtendedKeyUsagePurpose>,
    not_after_days: i64,
) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = sans;
    p.extended_key_usages = eku;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(10);
    p.not_after = now + time::Duration::days(not_after_days);
    (p.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
}

fn spiffe(id: &str) -> Vec<SanType> {
    vec![SanType::URI(id.try_into().unwrap())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_certificates_write_only_their_services_and_bad_ones_are_refused() {
    let srv = Server::start(&[]);
    let out = srv.dir.parent().unwrap().join("checkout");
    let id = "spiffe://shop.test/ns/prod/sa/checkout";
    let (ok, text) = srv.issue_cert(id, &out, &["--service", "checkout", "--days", "30"]);
    assert!(ok, "{text}");
    assert!(text.contains(id) && text.contains("tenant acme"), "{text}");
    let serial = serial_of(&text);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out.join("client.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The key never went to the server: the private scalar (after the PKCS#8 prefix every P-256
    // key shares) is in no file under the data directory.
    let key_pem = std::fs::read(out.join("client.key")).unwrap();
    assert!(key_pem.starts_with(
        b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
    ));
    let (n, hits) = files_containing(&srv.dir, &key_pem[76..92]);
    assert!(
        n > 5 && hits.is_empty(),
        "private key found on the server: {hits:?}"
    );

    // Spans for its own service, over HTTP and gRPC, with the certificate alone.
    let a = files_client(&out.join("server-ca.pem"), &out);
    let (status, body, tid) = export(&a, &srv, "checkout").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(admin_spans(&srv, "acme", tid).await, 3);
    let ident = tonic::transport::Identity::from_pem(
        std::fs::read(out.join("client.pem")).unwrap(),
        std::fs::read(out.join("client.key")).unwrap(),
    );
    let ep = tonic::transport::Endpoint::from_shared(srv.grpc.clone())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(
                    std::fs::read(srv.ca()).unwrap(),
                ))
                .identity(ident),
        )
        .unwrap();
    let mut g = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(ep.connect().await.unwrap());
    let (req, gtid) = request("checkout", 2);
    g.export(req).await.unwrap();
    assert_eq!(admin_spans(&srv, "acme", gtid).await, 2);

    // Another service's spans: the whole batch is refused with 403 and nothing is stored.
    let (status, body, spoofed) = export(&a, &srv, "payments").await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only for services [checkout]"), "{body}");
    let (req, gspoof) = request("payments", 2);
    let e = g.export(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(admin_spans(&srv, "acme", spoofed).await, 0);
    assert_eq!(admin_spans(&srv, "acme", gspoof).await, 0);
    // An ingest identity reads nothing, and cannot reach another tenant.
    let r = a
        .get(format!("{}/api/search", srv.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = a
        .post(format!("{}/v1/traces", srv.http))
        .header("x-scope-orgid", "other")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&request("checkout", 1).0).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Certificates that must be refused at the handshake.
    // The server's CAs, as issuers the test signs with (to make what the CLI would never issue).
    let cca = ca_from_files(
        &srv.dir.join("tls/client-ca.pem"),
        &srv.dir.join("keys/client-ca.key"),
    );
    let server_ca = ca_from_files(&srv.ca(), &srv.dir.join("keys/ca.key"));
    let (other, _) = make_ca("some other CA");
    let client_auth = || vec![ExtendedKeyUsagePurpose::ClientAuth];
    let refused: Vec<(&str, (String, String))> = vec![
        ("wrong CA", leaf(&other, spiffe(id), client_auth(), 30)),
        (
            "the server CA",
            leaf(&server_ca, spiffe(id), client_auth(), 30),
        ),
        ("expired", leaf(&cca, spiffe(id), client_auth(), -1)),
        (
            "serverAuth only",
            leaf(
                &cca,
                spiffe(id),
                vec![ExtendedKeyUsagePurpose::ServerAuth],
                30,
            ),
        ),
        ("no extended key usage", leaf(&cca, spiffe(id), vec![], 30)),
    ];
    for (what, (cert, key)) in &refused {
        let c = client_with(&srv.ca(), cert, key);
        let r = export(&c, &srv, "checkout").await;
        assert!(r.is_err(), "{what}: accepted: {r:?}");
    }

    // Rotation: a second certificate for the same identity works beside the first.
    let out2 = srv.dir.parent().unwrap().join("checkout-2");
    let (ok, text) = srv.issue_cert(id, &out2, &["--service", "checkout"]);
    assert!(ok, "{text}");
    let b = files_client(&srv.ca(), &out2);
    assert_eq!(export(&b, &srv, "checkout").await.unwrap().0, 200);

    // Revoking the first: refused at once on the connection already open, and at the handshake.
    let (ok, list) = srv.cli(&["cert", "list", "--json"]);
    assert!(ok && list.contains(&serial), "{list}");
    let (ok, text) = srv.cli(&["cert", "revoke", &serial]);
    assert!(ok, "{text}");
    let (status, body, _) = export(&a, &srv, "checkout").await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    let fresh = files_client(&srv.ca(), &out);
    assert!(export(&fresh, &srv, "checkout").await.is_err());
    // The rotated certificate is unaffected.
    assert_eq!(export(&b, &srv, "checkout").await.unwrap().0, 200);

    // Removing the identity ends every certificate of it.
    let (ok, text) = srv.cli(&["cert", "revoke", "--identity", id]);
    assert!(ok, "{text}");
    let (status, _, _) = export(&b, &srv, "checkout").await.unwrap();
    assert_eq!(status, 401);
    // Bad input to the CLI and API: a clear refusal naming what is wrong.
    let (ok, text) = srv.issue_cert("https://x/y", &out2, &[]);
    assert!(!ok && text.contains("SPIFFE"), "{text}");
    let (ok, text) = srv.issue_cert(id, &out2, &["--days", "4000"]);
    assert!(!ok && text.contains("397"), "{text}");
    // The server kept serving through all of it.
    assert_eq!(srv.ready_status().await, 200);
}

/// The serial `cert issue` printed ("issued certificate <serial> for ...").
fn trusting(ca: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client(ca))
        .build()
        .unwrap()
}

async fn ready(c: &reqwest::Client, srv: &Server) -> bool {
    matches!(c.get(format!("{}/ready", srv.api)).send().await, Ok(r) if r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_client_ca_and_server_certificate_rotate_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let (ca1, ca1_pem) = make_ca("server CA 1");
    let (ca2, ca2_pem) = make_ca("server CA 2");
    std::fs::write(p("ca1.pem"), &ca1_pem).unwrap();
    std::fs::write(p("ca2.pem"), &ca2_pem).unwrap();
    let server_sans = || {
        vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ]
    };
    let (cert, key) = leaf(
        &ca1,
        server_sans(),
        vec![ExtendedKeyUsagePurpose::ServerAuth],
        30,
    );
    std::fs::write(p("server.pem"), cert).unwrap();
    std::fs::write(p("server.key"), key).unwrap();
    // The workloads' CA is the operator's (SPIRE, a corporate PKI), not the server's.
    let (x, x_pem) = make_ca("workload CA X");
    let (y, y_pem) = make_ca("workload CA Y");
    std::fs::write(p("clients.pem"), &x_pem).unwrap();
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        p("server.pem"),
        p("server.key"),
        p("clients.pem")
    );
    let ca1_path = p("ca1.pem");
    let (srv, _) = start_with_config(tmp, &config, &[]);
    let ca1s = ca1_path.to_str().unwrap();
    assert!(ready(&trusting(&ca1_path), &srv).await);
    let ca2_path = ca1_path.with_file_name("ca2.pem");
    assert!(!ready(&trusting(&ca2_path), &srv).await);

    // Identities of the outside CA are bound with `cert register`; issuing is refused.
    let billing = "spiffe://ext.test/ns/prod/sa/billing";
    let (ok, text) = srv.cli(&[
        "cert",
        "register",
        "--identity",
        billing,
        "--tenant",
        "acme",
        "--service",
        "billing",
        "--ca",
        ca1s,
    ]);
    assert!(ok, "{text}");
    let (ok, text) = srv.cli(&[
        "cert",
        "register",
        "--identity",
        "subject:CN=legacy-batch",
        "--tenant",
        "acme",
        "--ca",
        ca1s,
    ]);
    assert!(ok, "{text}");
    let out = ca1_path.with_file_name("issued");
    let (ok, text) = srv.issue_cert(billing, &out, &["--ca", ca1s]);
    assert!(!ok && text.contains("outside client CA"), "{text}");

    let client_auth = || vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (c, k) = leaf(&x, spiffe(billing), client_auth(), 30);
    let (status, body, tid) = export(&client_with(&ca1_path, &c, &k), &srv, "billing")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Without a SPIFFE ID the subject is the identity.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut sp = CertificateParams::new(Vec::<String>::new()).unwrap();
    sp.distinguished_name = DistinguishedName::new();
    sp.distinguished_name
        .push(DnType::CommonName, "legacy-batch");
    sp.extended_key_usages = client_auth();
    let legacy = sp.signed_by(&key, &x).unwrap().pem();
    let (status, body, _) = export(
        &client_with(&ca1_path, &legacy, &key.serialize_pem()),
        &srv,
        "anything",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // A registered identity from a CA the server does not trust (yet).
    let (yc, yk) = leaf(&y, spiffe(billing), client_auth(), 30);
    assert!(
        export(&client_with(&ca1_path, &yc, &yk), &srv, "billing")
            .await
            .is_err()
    );

    // Rotation: a new server certificate from another CA, and a client CA bundle with Y added.
    let (cert, key) = leaf(
        &ca2,
        server_sans(),
        vec![ExtendedKeyUsagePurpose::ServerAuth],
        30,
    );
    std::fs::write(ca1_path.with_file_name("server.pem"), cert).unwrap();
    std::fs::write(ca1_path.with_file_name("server.key"), key).unwrap();
    std::fs::write(ca1_path.with_file_name("clients.pem"), x_pem + &y_pem).unwrap();
    Command::new("kill")
        .args(["-HUP", &srv.pid().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready(&trusting(&ca2_path), &srv).await {
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not served: {}",
            srv.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!ready(&trusting(&ca1_path), &srv).await);
    let (status, body, tid2) = export(&client_with(&ca2_path, &yc, &yk), &srv, "billing")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Same process: what was written before the rotation is still there.
    let admin = trusting(&ca2_path);
    for (t, n) in [(tid, 3), (tid2, 3)] {
        let r = admin
            .get(format!("{}/api/traces/{}", srv.api, hex::encode(t)))
            .bearer_auth(srv.token())
            .header("x-scope-orgid", "acme")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(count_json_spans(&r.json().await.unwrap()), n);
    }
    assert!(
        srv.log_text()
            .contains("SIGHUP: TLS certificates and client CA reloaded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_manage_only_their_tenants_identities() {
    let srv = Server::start(&[]);
    let globex_id = "spiffe://t.test/globex/billing";
    let (ok, text) = srv.cli(&[
        "cert",
        "register",
        "--identity",
        globex_id,
        "--tenant",
        "globex",
    ]);
    assert!(ok, "{text}");
    let acme_admin = create_token(&srv, &["--role", "admin", "--tenant", "acme"]);
    let tf = srv.dir.parent().unwrap().join("acme-admin.token");
    std::fs::write(&tf, &acme_admin).unwrap();
    let tfs = tf.to_str().unwrap();
    let as_acme = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--token-file", tfs]);
        srv.cli(&a)
    };
    let (ok, text) = as_acme(&[
        "cert",
        "register",
        "--identity",
        "spiffe://t.test/acme/web",
        "--tenant",
        "acme",
    ]);
    assert!(ok, "{text}");
    // Not for another tenant, and not by taking over another tenant's identity.
    let (ok, text) = as_acme(&[
        "cert",
        "register",
        "--identity",
        "spiffe://t.test/acme/x",
        "--tenant",
        "globex",
    ]);
    assert!(!ok && text.contains("403"), "{text}");
    // Another tenant's identity: revoking it answers as if nobody held it, and it does not
    // show in acme's list.
    let (ok, text) = as_acme(&["cert", "revoke", "--identity", globex_id]);
    assert!(!ok && text.contains("404"), "{text}");
    let (ok, list) = as_acme(&["cert", "list", "--json"]);
    assert!(ok, "{list}");
    assert!(
        list.contains("spiffe://t.test/acme/web") && !list.contains(globex_id),
        "{list}"
    );
    // Registering the same name in acme is acme's own registration; globex's stays.
    let (ok, text) = as_acme(&[
        "cert",
        "register",
        "--identity",
        globex_id,
        "--tenant",
        "acme",
    ]);
    assert!(ok, "{text}");
    // The globex identity is still bound to globex.
    let (ok, list) = srv.cli(&["cert", "list", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let tenants: Vec<_> = v["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["identity"] == globex_id)
        .map(|w| w["tenant"].clone())
        .collect();
    assert!(tenants.contains(&serde_json::json!("globex")), "{list}");
    // Readers manage no identities at all.
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    std::fs::write(&tf, &reader).unwrap();
    let (ok, text) = as_acme(&["cert", "list"]);
    assert!(!ok && text.contains("403"), "{text}");
}
