//! The decode-only OTLP receiver `bench ingest --compare` measures tracevault against (issue 22):
//! gRPC over the same TLS certificate and key as the server (`DIR/tls/server.pem`), the same
//! bearer token check, tonic and prost decoding into owned opentelemetry-proto types, and
//! nothing else: no validation, storage, redaction or detection. Its speed is the ceiling a
//! secure pipeline is compared with.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tv_model::otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};

/// The running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    /// Spans decoded so far.
    pub spans: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct DecodeOnly {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for DecodeOnly {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        // The decoded message is read, so the decode cannot be optimized away.
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Pins the calling thread to `core` (a CPU number as `taskset` counts them).
pub fn pin(core: usize) -> anyhow::Result<()> {
    // Not checked against the caller's own affinity: a thread pinned elsewhere may pin again.
    anyhow::ensure!(
        core_affinity::set_for_current(core_affinity::CoreId { id: core }),
        "cannot pin to CPU core {core} (is there one, and may this process use it?)"
    );
    Ok(())
}

impl Receiver {
    /// Starts the receiver on 127.0.0.1 (a free port) on a thread of its own with a
    /// single-threaded runtime, pinned to `core` if given. TLS uses `DIR/tls/server.pem` and
    /// `server.key`; requests must carry `authorization: Bearer <token>`.
    pub fn start(data_dir: &Path, token: &str, core: Option<usize>) -> anyhow::Result<Receiver> {
        let read = |name: &str| {
            let p = data_dir.join("tls").join(name);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        let identity =
            tonic::transport::Identity::from_pem(read("server.pem")?, read("server.key")?);
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the receiver")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let spans = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let expected = format!("Bearer {token}").into_bytes();
        let svc_spans = spans.clone();
        let thread = std::thread::Builder::new()
            .name("tv-bench-receiver".into())
            .spawn(move || {
                let setup = (|| -> anyhow::Result<tokio::runtime::Runtime> {
                    if let Some(c) = core {
                        pin(c)?;
                    }
                    Ok(tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?)
                })();
                let rt = match setup {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let check = move |req: tonic::Request<()>| {
                        let ok = req
                            .metadata()
                            .get("authorization")
                            .map(|v| {
                                aws_lc_rs::constant_time::verify_slices_are_equal(
                                    v.as_bytes(),
                                    &expected,
                                )
                                .is_ok()
                            })
                            .unwrap_or(false);
                        if ok {
                            Ok(req)
                        } else {
                            Err(tonic::Status::unauthenticated(
                                "a valid bearer token is required",
                            ))
                        }
                    };
                    let svc = tonic::service::interceptor::InterceptedService::new(
                        TraceServiceServer::new(DecodeOnly { spans: svc_spans })
                            .max_decoding_message_size(64 * 1024 * 1024),
                        check,
                    );
                    let server = tonic::transport::Server::builder()
                        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity));
                    let mut server = match server {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    if let Err(e) = server
                        .add_service(svc)
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stopped.await;
                        })
                        .await
                    {
                        eprintln!("bench receiver: {e}");
                    }
                });
            })?;
        ready_rx
            .recv()
            .context("the receiver thread ended before it was ready")??;
        Ok(Receiver {
            addr,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the receiver and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}
