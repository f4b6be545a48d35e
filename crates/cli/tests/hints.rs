//! Errors that teach: plaintext sent to a TLS port, and requests sent to the wrong listener,
//! get an answer naming the right scheme and port; the server logs refused handshakes (peer
//! and reason, rate-limited, never a credential) and keeps serving.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

/// Sends `req` over a plain TCP socket and returns what came back until the server closed.
fn raw(addr: &str, req: &[u8]) -> String {
    let hostport = addr.split("://").nth(1).unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_on_tls_ports_gets_a_hint_naming_https_and_the_port() {
    let srv = Server::start(&[]);
    for (addr, path) in [
        (&srv.api, "/api/search"),
        (&srv.http, "/v1/traces"),
        (&srv.grpc, "/"),
    ] {
        let hostport = addr.split("://").nth(1).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer tv_secret_never_logged\r\n\r\n"
        );
        let resp = raw(addr, req.as_bytes());
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "plaintext to {addr}: {resp}"
        );
        assert!(
            resp.contains(&format!("https://{hostport}")),
            "the hint names https and the port of {addr}: {resp}"
        );
        assert!(resp.contains("ca.pem"), "the hint names the CA: {resp}");
    }

    // An insecure gRPC channel (HTTP/2 with prior knowledge) to the TLS gRPC port.
    let plain = format!("http://{}", srv.grpc.split("://").nth(1).unwrap());
    let ch = tonic::transport::Endpoint::from_shared(plain)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (req, _) = request("hinted", 1);
    let err = TraceServiceClient::new(ch).export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("https://127.0.0.1:{}", port(&srv.grpc))),
        "{}",
        err.message()
    );

    // A broken TLS handshake is refused and logged with the peer and the reason.
    let garbage = [0x16u8, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef];
    let _ = raw(&srv.api, &garbage);

    assert_eq!(srv.ready_status().await, 200, "the server keeps serving");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = srv.log_text();
        if log.contains("TLS handshake failed") && log.contains("plaintext on a TLS port") {
            assert!(log.contains("peer=127.0.0.1:"), "the peer is logged: {log}");
            assert!(
                !log.contains("tv_secret_never_logged"),
                "no credential in the log"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals not logged: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_on_the_wrong_listener_are_told_the_right_one() {
    let srv = Server::start(&[]);
    let (grpc_port, http_port, api_port) = (port(&srv.grpc), port(&srv.http), port(&srv.api));

    // OTLP gRPC (over TLS) sent to the query API and to the OTLP/HTTP port.
    for addr in [&srv.api, &srv.http] {
        let ep = tonic::transport::Endpoint::from_shared(addr.clone())
            .unwrap()
            .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
                tonic::transport::Certificate::from_pem(std::fs::read(srv.ca()).unwrap()),
            ))
            .unwrap();
        let (req, _) = request("lost", 1);
        let err = TraceServiceClient::new(ep.connect().await.unwrap())
            .export(req)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{addr}: {err:?}");
        assert!(
            err.message().contains(&format!("127.0.0.1:{grpc_port}")),
            "{addr}: the gRPC port is named: {}",
            err.message()
        );
    }

    let c = srv.http_client();
    let (req, _) = request("lost", 1);
    let body = prost::Message::encode_to_vec(&req);
    // OTLP/HTTP sent to the query API and to the gRPC port.
    for addr in [&srv.api, &srv.grpc] {
        let r = c
            .post(format!("{addr}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{addr}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains(&format!("https://127.0.0.1:{http_port}/v1/traces")),
            "{addr}: the OTLP/HTTP endpoint is named: {text}"
        );
    }
    // The query API asked of the OTLP/HTTP port.
    let r = c
        .get(format!("{}/api/search?q=%7B%7D", srv.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!("https://127.0.0.1:{api_port}/api/search")),
        "the query API is named: {text}"
    );
    // The right listeners still work.
    let r = srv.post_otlp("application/x-protobuf", body.clone()).await;
    assert_eq!(r.status(), 200);
}
