//! Test harness: runs the real `tracevault` binary on port 0 with TLS and talks to it with real
//! clients (reqwest, tonic, the OpenTelemetry Python SDK).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tv_model::otlp::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_tracevault");

/// Every listener on a free loopback port.
pub const PORT0: [&str; 6] = [
    "--otlp-grpc",
    "127.0.0.1:0",
    "--otlp-http",
    "127.0.0.1:0",
    "--api",
    "127.0.0.1:0",
];

pub struct Server {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub child: Option<Child>,
    pub grpc: String,
    pub http: String,
    pub api: String,
    pub args: Vec<String>,
    pub log: PathBuf,
    /// Extra environment for the server process (e.g. the object store's credentials).
    pub env: Vec<(String, String)>,
}

fn read_addrs(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("listen.json")).ok()?;
    serde_json::from_str(&text).ok()
}

impl Server {
    pub fn start(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        Self::start_at(dir, Some(tmp), args)
    }

    /// Starts with the data directory at `dir` (its parent must exist and hold the log).
    pub fn start_at(dir: PathBuf, tmp: Option<tempfile::TempDir>, args: &[&str]) -> Self {
        Self::launch(dir, tmp, args, Vec::new())
    }

    /// [`Server::start_at`] with extra environment variables.
    pub fn start_with_env(dir: PathBuf, args: &[&str], env: Vec<(String, String)>) -> Self {
        Self::launch(dir, None, args, env)
    }

    fn launch(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        args: &[&str],
        env: Vec<(String, String)>,
    ) -> Self {
        let mut s = Server {
            dir,
            _tmp: tmp,
            child: None,
            grpc: String::new(),
            http: String::new(),
            api: String::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log: PathBuf::new(),
            env,
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("listen.json"));
        std::fs::create_dir_all(self.dir.parent().unwrap()).unwrap();
        self.log = self.dir.parent().unwrap().join(format!(
            "server-{}.log",
            Instant::now().elapsed().as_nanos() ^ std::process::id() as u128 ^ rand_u64() as u128
        ));
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(PORT0)
            .args(&self.args)
            .env("TRACEVAULT_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tracevault");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(a) = read_addrs(&self.dir) {
                let scheme = if self.args.iter().any(|a| a == "--insecure-plaintext") {
                    "http"
                } else {
                    "https"
                };
                // A query node has no OTLP listeners.
                self.grpc = a["otlp_grpc"]
                    .as_str()
                    .map(|g| format!("{scheme}://{g}"))
                    .unwrap_or_default();
                self.http = a["otlp_http"]
                    .as_str()
                    .map(|h| format!("{scheme}://{h}"))
                    .unwrap_or_default();
                self.api = format!("{scheme}://{}", a["api"].as_str().unwrap());
                break;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({st}): {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Runs `tracevault ARGS --server API --data-dir DIR`; returns (success, stdout + stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--server")
            .arg(&self.api)
            .arg("--data-dir")
            .arg(&self.dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// `tracevault cert issue --spiffe-id ID --tenant acme --out OUT [EXTRA...]` (admin token);
    /// returns (success, output).
    pub fn issue_cert(&self, id: &str, out: &Path, extra: &[&str]) -> (bool, String) {
        let mut args = vec![
            "cert",
            "issue",
            "--spiffe-id",
            id,
            "--tenant",
            "acme",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// reqwest client trusting the server's CA.
    pub fn http_client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder();
        if self.api.starts_with("https") {
            b = b.use_preconfigured_tls(rustls_client(&self.ca()));
        }
        b.build().unwrap()
    }

    pub async fn grpc_client(&self) -> TraceServiceClient<tonic::transport::Channel> {
        let mut ep = tonic::transport::Endpoint::from_shared(self.grpc.clone()).unwrap();
        if self.grpc.starts_with("https") {
            ep = ep
                .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
                    tonic::transport::Certificate::from_pem(std::fs::read(self.ca()).unwrap()),
                ))
                .unwrap();
        }
        TraceServiceClient::new(ep.connect().await.unwrap()).max_decoding_message_size(64 << 20)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http_client()
            .get(format!("{}{}", self.api, path))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap()
    }

    /// Status of `GET /ready`, the one endpoint that needs no token.
    pub async fn ready_status(&self) -> u16 {
        self.http_client()
            .get(format!("{}/ready", self.api))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Posts OTLP/HTTP with the admin token.
    pub async fn post_otlp(&self, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.http_client()
            .post(format!("{}/v1/traces", self.http))
            .bearer_auth(self.token())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Exports `req` over OTLP/HTTP protobuf with the admin token; asserts it was accepted.
    pub async fn export(&self, req: &ExportTraceServiceRequest) {
        let r = self
            .post_otlp("application/x-protobuf", prost::Message::encode_to_vec(req))
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }

    pub async fn flush(&self) {
        let r = self
            .http_client()
            .post(format!("{}/api/admin/flush", self.api))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Peak resident memory of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn rand_u64() -> u64 {
    use rand::Rng;
    rand::rng().random()
}

pub fn rustls_client(ca: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn sv(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

pub fn iv(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    })
}

pub fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

pub fn random_id<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for x in b.iter_mut() {
        *x = (rand_u64() & 0xff) as u8;
    }
    if b == [0u8; N] {
        b[0] = 1;
    }
    b
}

/// A request with one resource (`service`) and `spans` spans of one new trace.
pub fn request(service: &str, spans: usize) -> (ExportTraceServiceRequest, [u8; 16]) {
    let tid = random_id::<16>();
    let now = now_nanos();
    let root = random_id::<8>();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", sv(service))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "test".into(),
                    ..Default::default()
                }),
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: tid.to_vec(),
                        span_id: if i == 0 {
                            root.to_vec()
                        } else {
                            random_id::<8>().to_vec()
                        },
                        parent_span_id: if i == 0 { vec![] } else { root.to_vec() },
                        name: format!("op-{i}"),
                        kind: 2,
                        start_time_unix_nano: now - 5_000_000 + i as u64,
                        end_time_unix_nano: now,
                        attributes: vec![
                            kv(
                                "http.response.status_code",
                                Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(200 + i as i64)),
                                }),
                            ),
                            kv("note", sv(&format!("n{i}"))),
                        ],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, tid)
}

/// Counts spans in a `{"batches":[...]}` or `{"trace":{"resourceSpans":[...]}}` JSON trace.
pub fn count_json_spans(v: &serde_json::Value) -> usize {
    let batches = v
        .get("batches")
        .or_else(|| v.get("trace").and_then(|t| t.get("resourceSpans")))
        .and_then(|b| b.as_array())
        .cloned()
        .unwrap_or_default();
    batches
        .iter()
        .flat_map(|b| b["scopeSpans"].as_array().cloned().unwrap_or_default())
        .map(|s| s["spans"].as_array().map(|a| a.len()).unwrap_or(0))
        .sum()
}

/// `google.rpc.Status`, the body of OTLP/HTTP protobuf errors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Counts the files under `dir` and lists those whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else {
                n += 1;
                let b = std::fs::read(&e).unwrap();
                if b.windows(needle.len()).any(|w| w == needle) {
                    hits.push(e.display().to_string());
                }
            }
        }
    }
    (n, hits)
}

/// The log's verifier keys of a data directory (`tracevault log keys`).
pub fn vkeys(data: &Path) -> Vec<String> {
    cli_lines(&["log", "keys"], data)
}

/// Runs `tracevault verify --data-dir DATA --vkey ... EXTRA`; returns (exit code, stdout+stderr).
pub fn run_verify(data: &Path, keys: &[String], extra: &[&str]) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.arg("verify").arg("--data-dir").arg(data).args(extra);
    for k in keys {
        c.arg("--vkey").arg(k);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Writes `config` to `tmp/tv.toml` and starts a server on `tmp/data` with `--config` (keeping
/// `tmp` alive); returns the server and the config path (rewrite it, then SIGHUP, to reload).
pub fn start_with_config(tmp: tempfile::TempDir, config: &str, args: &[&str]) -> (Server, PathBuf) {
    let cfg = tmp.path().join("tv.toml");
    std::fs::write(&cfg, config).unwrap();
    let dir = tmp.path().join("data");
    let mut all = vec!["--config", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    let all: Vec<String> = all.iter().map(|a| a.to_string()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    (Server::start_at(dir, Some(tmp), &all), cfg)
}

/// Runs `tracevault token ...` against the server with the admin token (or `token_file`).
pub fn token_cmd(
    srv: &Server,
    args: &[&str],
    token_file: Option<&std::path::Path>,
) -> (i32, String, String) {
    let mut c = std::process::Command::new(BIN);
    c.arg("token").args(args).args([
        "--server",
        &srv.api,
        "--data-dir",
        srv.dir.to_str().unwrap(),
    ]);
    if let Some(f) = token_file {
        c.arg("--token-file").arg(f);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a token with the CLI; returns its text (the last line of stdout).
pub fn create_token(srv: &Server, args: &[&str]) -> String {
    let mut a = vec!["create"];
    a.extend_from_slice(args);
    let (code, out, err) = token_cmd(srv, &a, None);
    assert_eq!(code, 0, "{err}");
    let last = out.lines().last().unwrap().to_string();
    assert!(last.starts_with("tvk_"), "{out}");
    assert_eq!(out.lines().count(), 1, "the token alone on stdout: {out}");
    last
}

pub async fn call(
    srv: &Server,
    method: &str,
    path: &str,
    token: &str,
    tenant: &str,
) -> (u16, String) {
    let c = srv.http_client();
    let url = format!("{}{}", srv.api, path);
    let b = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        _ => c.delete(url),
    };
    let r = b
        .bearer_auth(token)
        .header("x-scope-orgid", tenant)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Runs `tracevault serve --config CONFIG --data-dir DATA` on port 0, expects it to refuse to start,
/// and returns its stderr.
pub fn serve_refused(config: &Path, data: &Path) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(PORT0)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the server started: {err}");
    err
}

/// Sends `spans` spans of service `checkout` to `tenant` as the bootstrap admin over OTLP/HTTP
/// JSON; (status, body, trace id).
pub async fn send_spans(
    c: &reqwest::Client,
    srv: &Server,
    tenant: &str,
    spans: usize,
) -> (u16, String, [u8; 16]) {
    let (req, tid) = request("checkout", spans);
    let r = c
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("x-scope-orgid", tenant)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&req).unwrap())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.text().await.unwrap_or_default(), tid)
}

/// Runs `cmd`, asserting it succeeds (its stderr in the failure message).
pub fn succeeds(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The lines `tracevault ARGS` prints (asserting it succeeds).
pub fn cli_lines(args: &[&str], data: &Path) -> Vec<String> {
    let out = succeeds(Command::new(BIN).args(args).arg("--data-dir").arg(data));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `admin_keys` audit records of every tenant, as the bootstrap admin reads them (JSON).
pub async fn key_audit(srv: &Server) -> String {
    let (st, body) = call(
        srv,
        "GET",
        "/api/audit?action=admin_keys&all_tenants=true",
        &srv.token(),
        "default",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    body
}

/// Runs `tracevault ARGS`; (success, stdout + stderr).
pub fn tv(args: &[&str]) -> (bool, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// A TLS connection to `addr` (`https://host:port` or `host:port`) trusting the server's CA,
/// offering `alpn` (e.g. `b"http/1.1"` or `b"h2"`).
pub async fn tls_connect(
    srv: &Server,
    addr: &str,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut cfg = rustls_client(&srv.ca());
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr.trim_start_matches("https://")).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

/// `n` empty spans (2 bytes each on the wire) in one OTLP protobuf request, encoded the way an
/// attacker would: no ids, no names, nothing but the span's field tag and a zero length.
pub fn empty_spans_protobuf(n: usize) -> Vec<u8> {
    let mut scope = Vec::with_capacity(2 * n);
    for _ in 0..n {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut rs = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut rs);
    rs.extend_from_slice(&scope);
    let mut out = vec![0x0a];
    prost::encoding::encode_varint(rs.len() as u64, &mut out);
    out.extend_from_slice(&rs);
    out
}

/// A gRPC message frame (uncompressed) around `msg`.
pub fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(msg);
    frame
}

/// Posts a raw gRPC `Export` frame over HTTP/2 with the admin token; returns the grpc-status
/// and grpc-message (trailers-only answers carry them in the headers).
pub async fn grpc_export_raw(srv: &Server, frame: Vec<u8>) -> (Option<String>, String) {
    let r = srv
        .http_client()
        .post(format!(
            "{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            srv.grpc
        ))
        .bearer_auth(srv.token())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .version(http::Version::HTTP_2)
        .body(frame)
        .send()
        .await
        .unwrap();
    let h = r.headers();
    let code = h.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    // grpc-message is percent-encoded (gRPC over HTTP/2, "Responses").
    let raw = h
        .get("grpc-message")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let mut msg = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|x| std::str::from_utf8(x).ok());
        match hex.and_then(|x| u8::from_str_radix(x, 16).ok()) {
            Some(b) if raw[i] == b'%' => {
                msg.push(b);
                i += 3;
            }
            _ => {
                msg.push(raw[i]);
                i += 1;
            }
        }
    }
    (code, String::from_utf8_lossy(&msg).into_owned())
}

/// Two traces across two services:
/// - "checkout": frontend `GET /checkout` (server) > frontend `call checkout` (client) >
///   checkout `POST /pay` (server, error, user.tier=gold, http.status_code=500) > checkout
///   `SELECT` (client, db.system=postgres);
/// - "home": frontend `GET /home` (server, ok).
pub fn two_service_traces() -> (ExportTraceServiceRequest, String, String) {
    let now = now_nanos();
    let checkout = random_id::<16>();
    let home = random_id::<16>();
    let ids: Vec<[u8; 8]> = (0..5).map(|_| random_id::<8>()).collect();
    let span = |tid: &[u8; 16],
                id: usize,
                parent: Option<usize>,
                name: &str,
                kind: i32,
                code: i32,
                attrs: Vec<KeyValue>| Span {
        trace_id: tid.to_vec(),
        span_id: ids[id].to_vec(),
        parent_span_id: parent.map(|p| ids[p].to_vec()).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: now - 100_000_000 + id as u64 * 1_000_000,
        end_time_unix_nano: now - 10_000_000 - id as u64 * 1_000_000,
        attributes: attrs,
        status: Some(Status {
            code,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", sv(service))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            resource(
                "frontend",
                vec![
                    span(&checkout, 0, None, "GET /checkout", 2, 1, vec![]),
                    span(&checkout, 1, Some(0), "call checkout", 3, 0, vec![]),
                    span(&home, 4, None, "GET /home", 2, 1, vec![]),
                ],
            ),
            resource(
                "checkout",
                vec![
                    span(
                        &checkout,
                        2,
                        Some(1),
                        "POST /pay",
                        2,
                        2,
                        vec![kv("user.tier", sv("gold")), kv("http.status_code", iv(500))],
                    ),
                    span(
                        &checkout,
                        3,
                        Some(2),
                        "SELECT",
                        3,
                        0,
                        vec![kv("db.system", sv("postgres"))],
                    ),
                ],
            ),
        ],
    };
    (req, hex::encode(checkout), hex::encode(home))
}

/// Sends `req` as the admin to tenant `acme`.
pub async fn send_acme(srv: &Server, req: &ExportTraceServiceRequest) {
    let (st, body) = send_as(srv, &srv.token(), "acme", req).await;
    assert_eq!(st, 200, "{body}");
}

/// Sends `req` (OTLP/HTTP protobuf) with `token` to `tenant`: the status and the body.
pub async fn send_as(
    srv: &Server,
    token: &str,
    tenant: &str,
    req: &ExportTraceServiceRequest,
) -> (u16, String) {
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(token)
        .header("x-scope-orgid", tenant)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned(),
    )
}

/// `s` percent-encoded for a query string.
pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The test venv's Python (`TRACEVAULT_PYTHON`, set by `scripts/test`, which installs the
/// OpenTelemetry SDK, OpenBao and schemathesis into it). Outside CI a missing interpreter skips
/// the calling test loudly; under `CI=true` it fails.
pub fn python() -> Option<String> {
    match std::env::var("TRACEVAULT_PYTHON") {
        Ok(p) if std::path::Path::new(&p).exists() => Some(p),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "TRACEVAULT_PYTHON is not set under CI=true: run the suite via scripts/test"
                );
            }
            eprintln!(
                "SKIPPED: TRACEVAULT_PYTHON not set (run scripts/test to install the test venv)"
            );
            None
        }
    }
}

/// A rustls client trusting `ca` that presents `cert` (PEM chain) with `key`.
pub fn client_with(ca: &Path, cert: &str, key: &str) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

/// A client presenting the certificate `cert issue` wrote to `dir`, trusting `ca`.
pub fn files_client(ca: &Path, dir: &Path) -> reqwest::Client {
    client_with(
        ca,
        &std::fs::read_to_string(dir.join("client.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("client.key")).unwrap(),
    )
}

/// The serial number `cert issue` printed.
pub fn serial_of(text: &str) -> String {
    text.split("issued certificate ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no serial in {text}"))
        .to_string()
}
