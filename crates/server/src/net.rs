//! Listeners: accept, cap connections, TLS handshake, HTTP/1.1 + HTTP/2 (gRPC) via hyper, and
//! graceful shutdown (stop accepting, let in-flight requests finish).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::metrics::{GroupLabels, Metrics};
use crate::mtls::{PeerCert, PeerInfo};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a listener's TLS settings come from.
#[derive(Clone)]
pub enum Tls {
    Fixed(TlsAcceptor),
    /// Rebuilt without a restart; each new connection takes the settings in force.
    Reloading(Arc<crate::tls::TlsSource>),
}

impl Tls {
    fn acceptor(&self) -> TlsAcceptor {
        match self {
            Tls::Fixed(a) => a.clone(),
            Tls::Reloading(s) => s.acceptor(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains connections. Every request
/// carries a [`PeerInfo`] extension: the client's address and its verified certificate.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Tls>,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    conns: Arc<Semaphore>,
    metrics: Arc<Metrics>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tracing::warn!(
                listener = name,
                "connection limit reached; refusing connection"
            );
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let with_peer = |cert: Option<Arc<PeerCert>>| {
                let info = PeerInfo { addr: peer, cert };
                TowerToHyperService::new(tower::ServiceExt::map_request(
                    app,
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        req
                    },
                ))
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // Slow or idle clients cannot hold a connection slot forever.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20));
            match tls {
                Some(tls) => {
                    let acc = tls.acceptor();
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            metrics.tls_handshake_failures.inc();
                            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics.tls_handshake_failures.inc();
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let group = stream
                        .get_ref()
                        .1
                        .negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                        .unwrap_or_else(|| "none".into());
                    metrics
                        .tls_handshakes
                        .get_or_create(&GroupLabels { group })
                        .inc();
                    // The verifier accepted it; keep what authentication needs.
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crate::mtls::peer_cert(c).ok())
                        .map(Arc::new);
                    let svc = with_peer(cert);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with error");
                    }
                }
                None => {
                    let svc = with_peer(None);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with error");
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!(listener = name, "stopped accepting; draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after the drain timeout"
        );
    }
}
