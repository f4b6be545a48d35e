//! Errors that teach: a request that reached the wrong listener, or plaintext sent to a TLS
//! port, gets an answer naming the right scheme and port instead of a bare 404, a gRPC
//! `UNIMPLEMENTED` or a TLS alert the client shows as "Socket closed" / "Received HTTP/0.9".
//!
//! The hints name only what any client of this host can already see (its ports and schemes),
//! so they are given before authentication. A host from the request's `Host` header is used
//! only when it is a plain host name or address, so the answer can be followed as written.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::time::Instant;

use crate::error::ApiError;

/// The server's three listeners, as the hints name them.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// `None` on a query node (no OTLP listeners).
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    pub api: SocketAddr,
    pub tls: bool,
}

impl Listeners {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `host:port` of `addr`'s port as the client reaches this server: the host it used when
    /// that is a plain name or address, else the listener's own address (`<this host>` for a
    /// wildcard bind, whose address names no host).
    fn reach(&self, host: Option<&str>, addr: SocketAddr) -> String {
        match host {
            Some(h) => format!("{h}:{}", addr.port()),
            None if addr.ip().is_unspecified() => format!("<this host>:{}", addr.port()),
            None => addr.to_string(),
        }
    }
}

/// The host part of the request's `Host` header, when it is a plain DNS name, IPv4 address or
/// bracketed IPv6 address.
fn client_host(headers: &HeaderMap) -> Option<String> {
    plain_host(headers.get(header::HOST)?.to_str().ok()?)
}

/// The host the request named: HTTP/1.1's `Host`, or HTTP/2's `:authority` (which hyper keeps
/// in the URI, not in the headers).
fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    client_host(req.headers()).or_else(|| plain_host(req.uri().authority()?.as_str()))
}

fn plain_host(v: &str) -> Option<String> {
    let host = match v.strip_prefix('[') {
        Some(rest) => format!("[{}]", rest.split(']').next()?),
        None => v.split(':').next()?.to_owned(),
    };
    let plain = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    plain.then_some(host)
}

/// A gRPC request (any `application/grpc*` content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A trailers-only gRPC answer with `code` and `msg`.
pub fn grpc_error(code: tonic::Code, msg: &str) -> Response {
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(msg)) {
        h.insert("grpc-message", v);
    }
    r
}

/// gRPC message header values are percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The listener a middleware instance guards, and all three addresses.
#[derive(Debug, Clone)]
pub struct Guard {
    pub listener: &'static str,
    pub listeners: Arc<Listeners>,
}

/// Answers requests that belong on another listener with a hint naming it; passes the rest.
pub async fn wrong_port(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let grpc = is_grpc(req.headers());
    let path = req.uri().path();
    // Every request passes here (ingest included): decide first, build the hint only if it is one.
    let elsewhere = match g.listener {
        "api" => grpc || (path == "/v1/traces" && req.method() == Method::POST),
        "otlp-http" => grpc || path != "/v1/traces",
        // The export path with another content type is the gRPC router's 415 to give.
        "otlp-grpc" => !grpc && !path.starts_with("/opentelemetry.proto."),
        _ => false,
    };
    if !elsewhere {
        return next.run(req).await;
    }
    let l = &g.listeners;
    let host = request_host(&req);
    let s = l.scheme();
    let api = l.reach(host.as_deref(), l.api);
    let (Some(grpc_addr), Some(http_addr)) = (l.otlp_grpc, l.otlp_http) else {
        // A query node: only the API listener exists.
        let msg = "this tracevault node answers queries only (role query) and takes no OTLP; send traces to an ingest node";
        return if grpc {
            grpc_error(tonic::Code::Unimplemented, msg)
        } else {
            ApiError::NotFound(msg.into()).into_response()
        };
    };
    let otlp_grpc = l.reach(host.as_deref(), grpc_addr);
    let otlp_http = l.reach(host.as_deref(), http_addr);
    match g.listener {
        "api" if grpc => grpc_error(
            tonic::Code::Unimplemented,
            &format!(
                "this is tracevault's query API port ({api}); send OTLP over gRPC to {otlp_grpc} ({})",
                if l.tls { "TLS" } else { "plaintext" }
            ),
        ),
        "api" if path == "/v1/traces" && req.method() == Method::POST => {
            ApiError::NotFound(format!(
                "this is tracevault's query API port; send OTLP/HTTP to {s}://{otlp_http}/v1/traces"
            ))
            .into_response()
        }
        "otlp-http" if grpc => grpc_error(
            tonic::Code::Unimplemented,
            &format!(
                "this is tracevault's OTLP/HTTP port ({otlp_http}); send OTLP over gRPC to {otlp_grpc}"
            ),
        ),
        "otlp-http" if path != "/v1/traces" => ApiError::NotFound(format!(
            "this is tracevault's OTLP/HTTP port: it serves POST /v1/traces only; the query API and the web UI are at {s}://{api}{}",
            short(path)
        ))
        .into_response(),
        "otlp-grpc" => ApiError::NotFound(format!(
            "this is tracevault's OTLP gRPC port; OTLP/HTTP goes to {s}://{otlp_http}/v1/traces, and the query API and the web UI are at {s}://{api}/"
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

fn short(path: &str) -> String {
    path.chars()
        .take(128)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

/// What a plaintext request on a TLS listener is told.
fn plaintext_message(listener: &'static str, port: u16, host: &str) -> String {
    let what = match listener {
        "otlp-grpc" => format!(
            "OTLP gRPC here needs TLS: use the endpoint https://{host}:{port} with the server's CA certificate (tracevault-data/tls/ca.pem; in the OpenTelemetry SDKs OTEL_EXPORTER_OTLP_CERTIFICATE), not an insecure channel"
        ),
        "otlp-http" => format!(
            "OTLP/HTTP here needs TLS: send to https://{host}:{port}/v1/traces with the server's CA certificate (tracevault-data/tls/ca.pem; in the OpenTelemetry SDKs OTEL_EXPORTER_OTLP_CERTIFICATE)"
        ),
        "api" => format!(
            "use https://{host}:{port}/ with the server's CA certificate (tracevault-data/tls/ca.pem), e.g. curl --cacert tracevault-data/tls/ca.pem https://{host}:{port}/ready"
        ),
        _ => format!("use https://{host}:{port}/"),
    };
    format!(
        "plain HTTP was sent to a TLS port (tracevault's {listener} listener, port {port}): {what}"
    )
}

/// Serves a plaintext connection that reached a TLS listener: every request (HTTP/1.1, or
/// HTTP/2 with prior knowledge, as an insecure gRPC channel sends) gets the hint, then the
/// connection closes. Bounded by `limit`, so it holds its slot no longer than a handshake.
pub async fn serve_plaintext(
    listener: &'static str,
    local: SocketAddr,
    tcp: tokio::net::TcpStream,
    limit: Duration,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let host = request_host(&req).unwrap_or_else(|| local.ip().to_string());
        let msg = plaintext_message(listener, local.port(), &host);
        let resp = if is_grpc(req.headers()) {
            grpc_error(tonic::Code::FailedPrecondition, &msg)
        } else {
            let mut r = Response::new(Body::from(format!("400 Bad Request: {msg}\n")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        };
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(limit);
    b.http2().timer(TokioTimer::new()).max_concurrent_streams(4);
    let conn = b.serve_connection(TokioIo::new(tcp), svc);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = &mut deadline => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// Warnings about connections that failed before a request, at most one line per kind every
/// 10 s, with the number left out since and the latest peer and reason.
#[derive(Default)]
pub struct ConnLog {
    kinds: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl ConnLog {
    /// Logs `what` for `peer` (reason: a TLS library error or our own words, never request
    /// content), unless a line of this kind was written in the last 10 s.
    pub fn warn(&self, listener: &'static str, kind: &'static str, peer: SocketAddr, reason: &str) {
        let now = Instant::now();
        let also = {
            let mut k = self.kinds.lock().expect("conn log");
            match k.get_mut(kind) {
                Some((last, skipped)) if now.duration_since(*last) < LOG_EVERY => {
                    *skipped += 1;
                    return;
                }
                Some((last, skipped)) => {
                    *last = now;
                    std::mem::take(skipped)
                }
                None => {
                    k.insert(kind, (now, 0));
                    0
                }
            }
        };
        let reason: String = reason.chars().take(200).collect();
        tracing::warn!(
            listener,
            %peer,
            reason = %reason,
            similar_since_last_line = also,
            "{kind}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(v: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        client_host(&h)
    }

    #[test]
    fn the_client_host_is_used_only_when_plain() {
        assert_eq!(host("example.com:3200").as_deref(), Some("example.com"));
        assert_eq!(host("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(host("[::1]:4318").as_deref(), Some("[::1]"));
        assert_eq!(host("evil.com/<script>"), None);
        assert_eq!(host("a b"), None);
        assert_eq!(host(""), None);
    }

    #[test]
    fn the_plaintext_hint_names_the_scheme_and_port() {
        let m = plaintext_message("otlp-grpc", 4317, "127.0.0.1");
        assert!(m.contains("https://127.0.0.1:4317"), "{m}");
        assert!(m.contains("ca.pem"), "{m}");
        let m = plaintext_message("api", 3200, "example.com");
        assert!(m.contains("https://example.com:3200/"), "{m}");
    }
}
