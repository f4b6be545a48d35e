//! `[tls] min_version` and `[tls] post_quantum`: by default only TLS 1.3, with the hybrid
//! post-quantum key exchange; an operator may let TLS 1.2 clients in or switch the hybrid off
//! (for old clients or middleboxes), and the server says so loudly at every start.

mod common;

use std::sync::Arc;

use common::*;

/// TLS 1.2 only, trusting `ca`.
fn tls12_client(ca: &std::path::Path) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

/// The key exchange groups the server counted handshakes for (`/metrics`).
async fn groups(srv: &Server) -> String {
    let text = srv.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("tracevault_tls_handshakes_total{"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn tls12_and_classical_key_exchange_only_when_the_operator_asks() {
    // The default: a TLS 1.2 client is refused; TLS 1.3 clients get the hybrid.
    let srv = Server::start(&[]);
    let r = tls12_client(&srv.ca())
        .get(format!("{}/ready", srv.api))
        .send()
        .await;
    assert!(r.is_err(), "TLS 1.2 is refused by default: {r:?}");
    assert_eq!(srv.ready_status().await, 200);
    let g = groups(&srv).await;
    assert!(g.contains("X25519MLKEM768"), "{g}");
    assert!(!srv.log_text().contains("WEAKENED"));

    // Relaxed on purpose: TLS 1.2 gets in, the hybrid is not offered, and the log says so.
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(
        tmp,
        "[tls]\nmin_version = \"1.2\"\npost_quantum = false\n",
        &[],
    );
    let r = tls12_client(&srv.ca())
        .get(format!("{}/ready", srv.api))
        .send()
        .await
        .expect("TLS 1.2 is accepted with min_version = \"1.2\"");
    assert_eq!(r.status(), 200);
    assert_eq!(srv.ready_status().await, 200);
    let g = groups(&srv).await;
    assert!(!g.contains("MLKEM"), "no post-quantum group: {g}");
    assert!(g.contains("X25519"), "{g}");
    let log = srv.log_text();
    assert!(
        log.contains("WEAKENED: [tls] min_version") && log.contains("WEAKENED: [tls] post_quantum"),
        "{log}"
    );
}

#[test]
fn an_unknown_tls_version_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tv.toml");
    std::fs::write(&cfg, "[tls]\nmin_version = \"1.0\"\n").unwrap();
    let err = serve_refused(&cfg, &tmp.path().join("data"));
    assert!(
        err.contains("tls.min_version") && err.contains("\"1.3\""),
        "{err}"
    );
}
