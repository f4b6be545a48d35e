//! `tracevault`: the server, and the command line for everything else.
#![forbid(unsafe_code)]

mod audit_cmd;
mod bench;
mod cert_cmd;
mod client;
mod demo;
mod doctor_cmd;
mod eval_cmd;
mod keys_cmd;
mod logging;
mod login_cmd;
mod query;
mod redact_cmd;
mod response_cmd;
mod state_cmd;
mod tenant_cmd;
mod token_cmd;
mod verify;
mod when;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc: the ingest and seal paths allocate many small objects; glibc malloc spent a quarter
/// of the CPU in its own bookkeeping and kept freed memory resident (docs/adr/0003).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tv_server::{RawConfig, Server};

#[derive(Parser)]
#[command(
    name = "tracevault",
    version,
    about = "Security-first OpenTelemetry tracing backend"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (zero config: TLS, authentication and loopback listeners by default).
    Serve(Box<ServeArgs>),
    /// Grade a deployment: the configuration and data directory `serve` with the same flags
    /// would use (TLS, authentication, keys, redaction, detection, witnesses, permissions,
    /// clock). Exit 0: nothing high or critical; 1: something is; 2: usage errors.
    Doctor(Box<doctor_cmd::DoctorArgs>),
    /// Query a running server.
    #[command(subcommand)]
    Query(query::QueryCmd),
    /// Manage API tokens on a running server (admin).
    #[command(subcommand)]
    Token(token_cmd::TokenCmd),
    /// Workload (mTLS) identities: issue client certificates, bind identities, revoke.
    #[command(subcommand)]
    Cert(cert_cmd::CertCmd),
    /// Tenant key versions on a running server: list, rotate (admin).
    #[command(subcommand)]
    Keys(keys_cmd::KeysCmd),
    /// Tenants on a running server: erase (crypto-shred) one (admin).
    #[command(subcommand)]
    Tenant(tenant_cmd::TenantCmd),
    /// Read the audit log of a running server (auditor or admin).
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Load generators.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// The tamper-evident log.
    #[command(subcommand)]
    Log(LogCmd),
    /// Run a C2SP tlog-witness that cosigns consistent checkpoints of the configured logs.
    Witness(WitnessArgs),
    /// The trusted state files outside the log (offline, server stopped): reseal after a change
    /// you made on purpose.
    #[command(subcommand)]
    State(state_cmd::StateCmd),
    /// Check a data directory against its transparency log (offline; exit 2 on any problem).
    Verify(verify::VerifyArgs),
    /// Check a span receipt with nothing but the log's verifier keys (exit 0 only if valid).
    VerifyReceipt(verify::VerifyReceiptArgs),
    /// The standalone receipt verifier page (one HTML file that reaches no network): print its
    /// SHA-256, and with --out write it, to open offline in a browser.
    VerifyPage(verify::VerifyPageArgs),
    /// Apply redaction rules to OTLP JSON offline: redacted JSON out, a report of what fired where
    /// (never a value) on stderr. Test a rules file before deploying it.
    Redact(redact_cmd::RedactArgs),
    /// Automated responses on a running server: list, release a quarantined or throttled
    /// credential (admin).
    #[command(subcommand)]
    Response(response_cmd::ResponseCmd),
    /// Print a tenant's pseudonym of a value (an email, a user id), as redaction writes it:
    /// what the stored traces hold instead of the value (investigator or admin; rate-limited
    /// and audited). `query search --user VALUE` finds that person's traces.
    Pseudonym(query::PseudonymArgs),
    /// Print a single-use link that signs you in to the web UI (valid 5 minutes, once).
    LoginUrl(login_cmd::LoginUrlArgs),
    /// Start a server with a demo shop's traffic (and a few attacks) in it, and say what
    /// tracevault made of it; serves until Ctrl-C (or stops with --exit).
    Demo(demo::DemoArgs),
    /// Measure detection quality on labeled data: per-class recall, false-positive rate and a
    /// confusion table (`tracevault eval detect --evaldata ../shared/evaldata`).
    #[command(subcommand)]
    Eval(eval_cmd::EvalCmd),
}

#[derive(Args)]
struct WitnessArgs {
    /// Witness state directory (its key, its TLS certificate, the latest checkpoint per log)
    #[arg(long, default_value = "./tracevault-witness")]
    data_dir: PathBuf,
    /// Listen address (TLS)
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: SocketAddr,
    /// A log verifier key; give both of each log's keys (`tracevault log keys`)
    #[arg(long = "log-vkey", required = true)]
    log_vkeys: Vec<String>,
    /// The witness's key name (used when its key is first created)
    #[arg(long, default_value = "tracevault-witness.local/w1")]
    name: String,
    /// Serve WITHOUT TLS (insecure; for a loopback test only)
    #[arg(long)]
    insecure_plaintext: bool,
}

#[derive(Subcommand)]
enum LogCmd {
    /// Print the log's verifier keys, one per line (Ed25519, then ML-DSA-44). Pin them outside
    /// the data directory: whoever can write the directory could replace them.
    Keys {
        #[arg(long, default_value = "./tracevault-data")]
        data_dir: PathBuf,
        /// Key material directory [default: DIR/keys]
        #[arg(long)]
        keys_dir: Option<PathBuf>,
        /// The audit log's verifier keys instead
        #[arg(long)]
        audit: bool,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file (flags override it; DIR/config.toml is read when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory [config: data_dir] [default: ./tracevault-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Key material directory [config: keys_dir] [default: DIR/keys]
    #[arg(long)]
    keys_dir: Option<PathBuf>,
    /// OTLP gRPC listener [config: listen.otlp_grpc] [default: 127.0.0.1:4317]
    #[arg(long)]
    otlp_grpc: Option<SocketAddr>,
    /// OTLP HTTP listener [config: listen.otlp_http] [default: 127.0.0.1:4318]
    #[arg(long)]
    otlp_http: Option<SocketAddr>,
    /// Query API, /metrics and /ready [config: listen.api] [default: 127.0.0.1:3200]
    #[arg(long)]
    api: Option<SocketAddr>,
    /// Operator's certificate chain (PEM) instead of the generated one [config: tls.cert]
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Operator's private key (PEM) [config: tls.key]
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve WITHOUT TLS. Insecure; logs a warning at every start [config: tls.insecure_plaintext]
    #[arg(long)]
    insecure_plaintext: bool,
    /// Store spans WITHOUT redaction. Insecure; logs a warning at every start (flag only; rules
    /// live in the config's [redaction] table and reload on SIGHUP)
    #[arg(long)]
    no_redaction: bool,
    /// Maximum request size after decompression, bytes [config: limits.max_request_bytes]
    #[arg(long)]
    max_request_bytes: Option<usize>,
    /// Maximum spans per request [config: limits.max_spans_per_request]
    #[arg(long)]
    max_spans_per_request: Option<usize>,
    /// Maximum attributes per span, event or link [config: limits.max_attributes_per_span]
    #[arg(long)]
    max_attributes_per_span: Option<usize>,
    /// Maximum attribute value length, bytes [config: limits.max_attribute_value_bytes]
    #[arg(long)]
    max_attribute_value_bytes: Option<usize>,
    /// Maximum AnyValue nesting depth [config: limits.max_value_depth]
    #[arg(long)]
    max_value_depth: Option<usize>,
    /// Refuse spans that started more than this many seconds ago [config: limits.max_span_age_secs]
    #[arg(long)]
    max_span_age_secs: Option<u64>,
    /// Refuse spans starting more than this many seconds ahead [config: limits.max_span_future_secs]
    #[arg(long)]
    max_span_future_secs: Option<u64>,
    /// Maximum concurrent connections over all listeners [config: limits.max_connections]
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seal the WAL into blocks at least this often, seconds [config: storage.seal_interval_secs]
    #[arg(long)]
    seal_interval_secs: Option<f64>,
    /// WAL segment size that triggers sealing, bytes [config: storage.segment_max_bytes]
    #[arg(long)]
    segment_max_bytes: Option<u64>,
    /// zstd level for sealed blocks, 1-19 [config: storage.block_zstd_level]
    #[arg(long)]
    block_zstd_level: Option<i32>,
    /// Delete blocks whose newest span ended more than this many seconds ago; each deletion is
    /// recorded in the transparency log first [config: storage.retention_secs] [default: keep all]
    #[arg(long)]
    retention_secs: Option<u64>,
    /// Merge small blocks into larger ones this often, seconds
    /// [config: storage.compaction_interval_secs] [default: 60]
    #[arg(long)]
    compaction_interval_secs: Option<f64>,
    /// Keep blocks and the transparency log in a bucket shared by the cluster's nodes:
    /// s3://BUCKET/PREFIX (gs://, az:// too); credentials, region and endpoint from the standard
    /// AWS_* (GOOGLE_*, AZURE_*) environment [config: storage.object_store]
    #[arg(long, value_name = "URL")]
    object_store: Option<String>,
    /// This node's id in the cluster (required with --object-store) [config: storage.node_id]
    #[arg(long)]
    node_id: Option<String>,
    /// all, ingest or query (a query node opens no OTLP listeners) [config: storage.role]
    /// [default: all]
    #[arg(long)]
    role: Option<String>,
    /// The write-ahead log's directory; put it on durable storage [config: storage.wal_dir]
    /// [default: DIR/wal]
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Log format: text or json [config: log_format] [default: text]
    #[arg(long)]
    log_format: Option<String>,
    /// Serve the transparency log (GET /log/...) without a token, for outside monitors and
    /// witnesses; it reveals ingest volume and timing [config: log.public]
    #[arg(long)]
    log_public: bool,
    /// Submit checkpoints to a witness: `URL,VKEY[,CA_PEM]`, repeatable [config: log.witnesses]
    #[arg(long = "witness", value_name = "URL,VKEY[,CA_PEM]")]
    witnesses: Vec<String>,
}

impl ServeArgs {
    pub fn raw(&self) -> RawConfig {
        let mut r = RawConfig {
            data_dir: self.data_dir.clone(),
            keys_dir: self.keys_dir.clone(),
            log_format: self.log_format.clone(),
            ..Default::default()
        };
        r.listen.otlp_grpc = self.otlp_grpc;
        r.listen.otlp_http = self.otlp_http;
        r.listen.api = self.api;
        r.tls.cert = self.tls_cert.clone();
        r.tls.key = self.tls_key.clone();
        r.tls.insecure_plaintext = self.insecure_plaintext.then_some(true);
        r.no_redaction = self.no_redaction.then_some(true);
        r.limits.max_request_bytes = self.max_request_bytes;
        r.limits.max_spans_per_request = self.max_spans_per_request;
        r.limits.max_attributes_per_span = self.max_attributes_per_span;
        r.limits.max_attribute_value_bytes = self.max_attribute_value_bytes;
        r.limits.max_value_depth = self.max_value_depth;
        r.limits.max_span_age_secs = self.max_span_age_secs;
        r.limits.max_span_future_secs = self.max_span_future_secs;
        r.limits.max_connections = self.max_connections;
        r.storage.seal_interval_secs = self.seal_interval_secs;
        r.storage.segment_max_bytes = self.segment_max_bytes;
        r.storage.block_zstd_level = self.block_zstd_level;
        r.storage.retention_secs = self.retention_secs;
        r.storage.compaction_interval_secs = self.compaction_interval_secs;
        r.storage.object_store = self.object_store.clone();
        r.storage.node_id = self.node_id.clone();
        r.storage.role = self.role.clone();
        r.storage.wal_dir = self.wal_dir.clone();
        r.log.public = self.log_public.then_some(true);
        if !self.witnesses.is_empty() {
            r.log.witnesses = Some(
                self.witnesses
                    .iter()
                    .map(|w| {
                        let mut p = w.splitn(3, ',');
                        tv_server::config::WitnessConfig {
                            url: p.next().unwrap_or_default().to_owned(),
                            vkey: p.next().unwrap_or_default().to_owned(),
                            ca_cert: p.next().map(PathBuf::from),
                        }
                    })
                    .collect(),
            );
        }
        r
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRACEVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(logging::Stderr { ansi });
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// The demo's server logs: warnings and errors only (its own lines are the story).
fn init_demo_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRACEVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(logging::Stderr { ansi })
        .init();
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// Keeps key material out of core dumps: no core file, and the process is not dumpable (which
/// also stops other processes of the same user from attaching a debugger to read its memory).
fn no_core_dumps() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, none) {
        tracing::warn!(error = %e, "cannot disable core dumps");
    }
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot mark the process not dumpable");
    }
}

/// No transparent huge pages for the server's memory (issue 22): mimalloc asks the kernel for
/// them on its large regions, and a 2 MiB page stays resident while any of it is in use. At
/// saturation that held 150-180 MB of huge pages and a peak RSS of 300-322 MB; without them,
/// 254-270 MB, for 1-3% less throughput (within the noise of the runs).
fn no_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off; memory use may be higher");
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = RawConfig::resolve(&args.raw(), args.config.as_deref())?;
    init_logging(cfg.log_json);
    no_core_dumps();
    no_huge_pages();
    let server = Server::bootstrap(cfg).await?;
    tracing::info!(
        admin_token = %server.admin_token_path.display(),
        "admin token file (read it with care; it is never logged)"
    );
    tokio::spawn(reload_on_sighup(
        args.raw(),
        args.config.clone(),
        server.state().clone(),
    ));
    server.run(shutdown_signal()).await
}

/// SIGHUP re-reads the configuration and swaps in its redaction rules and access policies; a file
/// that does not load keeps the running ones and logs why.
async fn reload_on_sighup(
    flags: RawConfig,
    config: Option<PathBuf>,
    state: std::sync::Arc<tv_server::AppState>,
) {
    use tv_server::metrics::ResultLabels;
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; rules and policies reload only on restart");
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(tls) = &state.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates and client CA reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: TLS files do not load; the running certificates stay")
                }
            }
        }
        let before = state.redaction.active().version();
        match RawConfig::resolve(&flags, config.as_deref()) {
            Ok(cfg) => {
                state.redaction.replace(cfg.redaction);
                *state.policy.write().expect("policy lock") = cfg.policy.clone();
                *state.field_classes.write().expect("classes lock") = cfg.field_classes.clone();
                let after = state.redaction.active().version();
                state
                    .metrics
                    .redaction_reloads
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                tracing::info!(from = %before, to = %after, operator_policies = cfg.policy.operator_policies, "SIGHUP: redaction rules and access policies reloaded (other settings take effect at the next start)");
            }
            Err(e) => {
                state
                    .metrics
                    .redaction_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                tracing::error!(error = %format!("{e:#}"), policy_version = %before, "SIGHUP: configuration not reloaded; the running redaction rules and access policies stay");
            }
        }
    }
}

/// A closed standard output (`tracevault query search | head`) ends the command quietly:
/// printing panics on EPIPE, and this hook turns that one panic into a silent exit.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    // The offline checks need no runtime and set their own exit codes.
    let offline = match cli.cmd {
        Cmd::Verify(a) => Some(verify::verify(a)),
        Cmd::VerifyReceipt(a) => Some(verify::verify_receipt(a)),
        Cmd::VerifyPage(a) => Some(verify::verify_page(a)),
        Cmd::Redact(a) => Some(redact_cmd::run(a).map(|()| ExitCode::SUCCESS)),
        Cmd::Eval(a) => Some(eval_cmd::run(a).map(|()| ExitCode::SUCCESS)),
        Cmd::State(s) => Some(state_cmd::run(s)),
        Cmd::Doctor(a) => Some(Ok(doctor_cmd::run(*a))),
        cmd => {
            return run(cmd);
        }
    };
    match offline {
        Some(Ok(code)) => code,
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

fn run(cmd: Cmd) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async {
        match cmd {
            Cmd::Serve(a) => serve(*a).await,
            Cmd::Query(q) => query::run(q).await,
            Cmd::Token(t) => token_cmd::run(t).await,
            Cmd::Cert(c) => cert_cmd::run(c).await,
            Cmd::Audit(a) => audit_cmd::run(a).await,
            Cmd::Keys(k) => keys_cmd::run(k).await,
            Cmd::Tenant(t) => tenant_cmd::run(t).await,
            Cmd::Response(r) => response_cmd::run(r).await,
            Cmd::LoginUrl(a) => login_cmd::run(a).await,
            Cmd::Pseudonym(a) => query::pseudonym(a).await,
            Cmd::Demo(a) => {
                init_demo_logging();
                demo::run(a).await
            }
            Cmd::Bench(b) => bench::run(b).await,
            Cmd::Witness(w) => {
                init_logging(false);
                let wit = tv_server::witness::Witness::bootstrap(
                    &w.data_dir,
                    w.listen,
                    &w.name,
                    &w.log_vkeys,
                    w.insecure_plaintext,
                )
                .await?;
                wit.run(shutdown_signal()).await
            }
            Cmd::Log(LogCmd::Keys {
                data_dir,
                keys_dir,
                audit,
            }) => {
                let keys = keys_dir.unwrap_or_else(|| data_dir.join("keys"));
                let vkeys = if audit {
                    tv_server::logkeys::audit_verifier_keys(&keys)?
                } else {
                    tv_server::logkeys::verifier_keys(&keys)?
                };
                for k in vkeys {
                    println!("{k}");
                }
                Ok(())
            }
            Cmd::Verify(_)
            | Cmd::VerifyReceipt(_)
            | Cmd::VerifyPage(_)
            | Cmd::Redact(_)
            | Cmd::Eval(_)
            | Cmd::Doctor(_)
            | Cmd::State(_) => Ok(()),
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
