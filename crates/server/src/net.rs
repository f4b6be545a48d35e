//! Listeners: accept, take a connection slot, TLS handshake, HTTP/1.1 + HTTP/2 (gRPC) via hyper,
//! the connection timeouts of [`crate::conns`], response budgets, and graceful shutdown (stop
//! accepting, let in-flight requests finish).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::budget::Budget;
use crate::conns::{Closed, Conn, Conns, ResponseBody, WatchedBody};
use crate::error::ApiError;
use crate::metrics::{GroupLabels, Metrics};
use crate::mtls::{PeerCert, PeerInfo};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection with nothing in flight, told to close (GOAWAY), may take to finish
/// (an HTTP/2 client acknowledges with a PING; one that does not is cut off).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

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

/// What every connection of a listener shares.
#[derive(Clone)]
pub struct Shared {
    pub conns: Arc<Conns>,
    /// Bytes of responses all connections together may hold unwritten.
    pub responses: Arc<Budget>,
    pub metrics: Arc<Metrics>,
    /// Rate-limited warnings about handshakes that failed and plaintext on TLS ports.
    pub conn_log: Arc<crate::hints::ConnLog>,
}

impl Shared {
    /// Slots and budgets with `settings`, a response budget of `response_bytes`.
    pub fn new(
        settings: crate::conns::ConnSettings,
        response_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Shared {
            conns: Conns::new(settings, metrics.clone()),
            // Responses do not wait for room: they are refused at once (see `hold`).
            responses: Budget::new("unread responses", response_bytes, Duration::ZERO),
            metrics,
            conn_log: Arc::default(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains connections. Every request
/// carries a [`PeerInfo`] extension: the client's address, its verified certificate and its
/// connection.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Tls>,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    shared: Shared,
) {
    // Every connection task holds a sender; when all are gone, the listener has drained.
    let (drained_tx, mut drained_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // A flood can make every accept fail (no file descriptors left): warn at a
                // bounded rate, not once per attempt.
                tracing::debug!(listener = name, error = %e, "accept failed");
                shared.conns.warn(
                    name,
                    "accept failed (out of file descriptors or memory?); retrying",
                    "accept_failed",
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = shared.conns.admit(name) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let drained = drained_tx.clone();
        tokio::spawn(async move {
            let _drained = drained;
            let conn = slot.conn.clone();
            let settings = &shared.conns.settings;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(settings.first_request.max(settings.idle));
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(100)
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20));
            let service = |cert: Option<Arc<PeerCert>>| {
                TowerToHyperService::new(Tracked {
                    app,
                    info: PeerInfo {
                        addr: peer,
                        cert,
                        conn: Some(conn.clone()),
                    },
                    shared: shared.clone(),
                })
            };
            match tls {
                Some(tls) => {
                    // A TLS connection starts with a handshake record (0x16); anything else is
                    // plaintext sent to a TLS port, which gets an answer saying so.
                    let deadline = Instant::now() + settings.handshake;
                    let mut first = [0u8; 1];
                    let peeked = tokio::select! {
                        r = tokio::time::timeout_at(deadline, tcp.peek(&mut first)) => r,
                        _ = conn.shed() => return,
                    };
                    match peeked {
                        Ok(Ok(1..)) if first[0] != 0x16 => {
                            shared.metrics.tls_handshake_failures.inc();
                            shared.conn_log.warn(
                                name,
                                "plaintext on a TLS port: answered with a hint naming https and the port",
                                peer,
                                "the client did not start a TLS handshake",
                            );
                            if let Ok(local) = tcp.local_addr() {
                                crate::hints::serve_plaintext(name, local, tcp, settings.handshake)
                                    .await;
                            }
                            return;
                        }
                        Ok(Ok(1..)) => {}
                        Ok(_) => return,
                        Err(_) => {
                            shared.metrics.tls_handshake_failures.inc();
                            shared.conns.closed(name, Closed::HandshakeTimeout);
                            return;
                        }
                    }
                    let acc = tls.acceptor();
                    let handshake = tokio::time::timeout_at(deadline, acc.accept(tcp));
                    let stream = tokio::select! {
                        r = handshake => r,
                        _ = conn.shed() => return,
                    };
                    let stream = match stream {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            shared.metrics.tls_handshake_failures.inc();
                            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                                // A client that hung up mid-handshake (a browser's spare
                                // connection, a probe): nothing to act on.
                                tracing::debug!(listener = name, %peer, "TLS handshake abandoned");
                            } else {
                                shared.conn_log.warn(
                                    name,
                                    "TLS handshake failed",
                                    peer,
                                    &e.to_string(),
                                );
                            }
                            return;
                        }
                        Err(_) => {
                            shared.metrics.tls_handshake_failures.inc();
                            shared.conns.closed(name, Closed::HandshakeTimeout);
                            return;
                        }
                    };
                    let group = stream
                        .get_ref()
                        .1
                        .negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                        .unwrap_or_else(|| "none".into());
                    shared
                        .metrics
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
                    let served =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service(cert));
                    drive(name, served, &conn, &shared.conns, shutdown).await;
                }
                None => {
                    let served =
                        builder.serve_connection_with_upgrades(TokioIo::new(tcp), service(None));
                    drive(name, served, &conn, &shared.conns, shutdown).await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    drop(drained_tx);
    tracing::info!(listener = name, "stopped accepting; draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, drained_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after the drain timeout"
        );
    }
}

/// Runs one connection until it ends, its timeouts expire, it is shed, or the server shuts
/// down (then it finishes its requests first).
async fn drive<F>(
    name: &'static str,
    served: auto::UpgradeableConnection<'_, F, TowerToHyperService<Tracked>, TokioExecutor>,
    conn: &Conn,
    conns: &Conns,
    mut shutdown: watch::Receiver<bool>,
) where
    F: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::pin!(served);
    let handshaken = Instant::now();
    let mut closing: Option<Instant> = None;
    loop {
        let grace = async {
            match closing {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = name, error = %e, "connection ended with error");
                }
                return;
            }
            _ = conn.shed() => return,
            _ = shutdown.wait_for(|s| *s), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                // In-flight requests may finish; an idle connection has nothing to finish.
                let grace = if conn.in_flight() > 0 { DRAIN_TIMEOUT } else { CLOSE_GRACE };
                closing = Some(Instant::now() + grace);
            }
            why = conn.expired(&conns.settings, handshaken), if closing.is_none() => {
                conns.closed(name, why);
                if why == Closed::Idle {
                    // HTTP/2 gets a GOAWAY, HTTP/1.1 a close; nothing is in flight.
                    served.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                } else {
                    return;
                }
            }
            _ = grace => return,
        }
    }
}

/// The service of one connection: marks requests on the connection, watches bodies, and
/// holds each response's bytes in the connection's and the server's response budgets.
#[derive(Clone)]
struct Tracked {
    app: axum::Router,
    info: PeerInfo,
    shared: Shared,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Tracked {
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let conn = self
            .info
            .conn
            .clone()
            .expect("every served connection has its state");
        let guard = conn.request_started();
        let mut req = req.map(|b| axum::body::Body::new(WatchedBody::new(b, conn.clone())));
        req.extensions_mut().insert(self.info.clone());
        let app = self.app.clone();
        let shared = self.shared.clone();
        let per_conn = shared.conns.settings.response_bytes_per_connection;
        let unread = conn
            .response_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        if unread >= per_conn {
            // Its client is not reading what it has: no new work for it.
            shared.metrics.responses_refused.inc();
            let resp = axum::response::IntoResponse::into_response(ApiError::Unavailable(
                unread_message(unread, per_conn),
            ));
            let resp = resp.map(|b| axum::body::Body::new(ResponseBody::new(b, guard, 0, None)));
            return Box::pin(async move { Ok(resp) });
        }
        Box::pin(async move {
            let resp = match tower::ServiceExt::oneshot(app, req).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            Ok(hold(resp, guard, &conn, &shared))
        })
    }
}

/// Counts a response's bytes against its connection (`[connections]
/// response_bytes_per_connection`) and the server (`response_budget_bytes`) until it is written;
/// when neither has room it is replaced by a 503 at once, so unread responses cannot pile up.
fn hold(
    resp: http::Response<axum::body::Body>,
    guard: crate::conns::RequestGuard,
    conn: &Conn,
    shared: &Shared,
) -> http::Response<axum::body::Body> {
    use http_body::Body as _;
    use std::sync::atomic::Ordering;
    let hint = resp.body().size_hint();
    let size = hint.exact().unwrap_or(hint.lower()) as usize;
    let per_conn = shared.conns.settings.response_bytes_per_connection;
    let before = conn.response_bytes.fetch_add(size, Ordering::Relaxed);
    // A response larger than the connection's share still goes when it is alone.
    let conn_room = before == 0 || before + size <= per_conn;
    let global = if conn_room {
        shared.responses.try_take(size)
    } else {
        None
    };
    match global {
        Some(ticket) => {
            resp.map(|b| axum::body::Body::new(ResponseBody::new(b, guard, size, Some(ticket))))
        }
        None => {
            conn.response_bytes.fetch_sub(size, Ordering::Relaxed);
            drop(resp);
            shared.metrics.responses_refused.inc();
            let msg = if conn_room {
                format!(
                    "the server holds {} MiB of responses its clients have not read yet; retry later",
                    shared.responses.limit() / (1024 * 1024)
                )
            } else {
                unread_message(before, per_conn)
            };
            let resp = axum::response::IntoResponse::into_response(ApiError::Unavailable(msg));
            resp.map(|b| axum::body::Body::new(ResponseBody::new(b, guard, 0, None)))
        }
    }
}

fn unread_message(unread: usize, per_conn: usize) -> String {
    format!(
        "this connection has {unread} bytes of responses its client has not read (the limit is {per_conn}); read them first or retry later"
    )
}
