//! `tracevault bench ingest`: an OTLP load generator in the spirit of telemetrygen.
//!
//! Requests are generated once as templates with realistic http/db attributes and pre-encoded;
//! every send copies a template and patches fresh trace and span ids (XOR with a per-request random
//! mask, which keeps parent links intact), fresh `request.id` values and current timestamps into
//! the encoded bytes, so each request is unique while the generator stays cheap (see
//! [`template`]). Works against any OTLP endpoint: gRPC or HTTP, TLS or plaintext, with or without
//! a token.

mod log;
mod receiver;
mod template;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes};
use clap::{Args, Subcommand, ValueEnum};
use prost::Message;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use template::{Template, build_template, now_nanos};
use tv_model::otlp::{ExportTraceServiceResponse, TracesData};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Send generated spans as fast as the server acknowledges them.
    Ingest(IngestArgs),
    /// Measure trace-by-id latency for trace ids saved by `bench ingest --ids-out`, or the
    /// latency of TraceQL searches and metrics queries (`--search`, `--metrics`).
    Query(QueryArgs),
    /// Measure the transparency log in process: commitments, signing, leaves/s, proof sizes.
    Log(log::LogArgs),
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// File of trace ids, one hex id per line
    #[arg(long, required_unless_present_any = ["search", "metrics"])]
    pub ids: Option<std::path::PathBuf>,
    /// A TraceQL search to time (`/api/search?q=`); may be given several times
    #[arg(long)]
    pub search: Vec<String>,
    /// A TraceQL metrics query to time over the last hour (`/api/metrics/query_range`); may be
    /// given several times
    #[arg(long)]
    pub metrics: Vec<String>,
    /// Lookups to make
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Lookups in flight
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    #[command(flatten)]
    pub server: crate::client::ServerFlags,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Protocol {
    Grpc,
    Http,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// OTLP endpoint: https://host:4317 (gRPC), https://host:4318 (HTTP; /v1/traces is added),
    /// or http:// for plaintext collectors
    #[arg(long, default_value = "https://127.0.0.1:4317")]
    pub endpoint: String,
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: Protocol,
    /// CA certificate for TLS endpoints [default: DIR/tls/ca.pem]
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Token file [default: DIR/admin.token]
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// Send no Authorization header (collectors without authentication, or mTLS alone)
    #[arg(long)]
    pub no_token: bool,
    /// Client certificate (PEM) to present: authenticate by mTLS (`tracevault cert issue`)
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM)
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    #[arg(long, default_value = "./tracevault-data")]
    pub data_dir: std::path::PathBuf,
    /// X-Scope-OrgID: a tenant of its own by default, so synthetic spans stay out of real data
    /// (`tracevault tenant erase bench` removes them)
    #[arg(long, default_value = "bench")]
    pub tenant: String,
    #[arg(long, default_value_t = 512)]
    pub spans_per_request: usize,
    #[arg(long, default_value_t = 10)]
    pub attributes: usize,
    /// Spans per trace (one root, the rest its descendants)
    #[arg(long, default_value_t = 8)]
    pub spans_per_trace: usize,
    /// Requests in flight
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds to run
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Stop after this many requests (0 = no limit)
    #[arg(long, default_value_t = 0)]
    pub max_requests: u64,
    /// Distinct request templates to generate (attribute values other than ids repeat once every
    /// this many requests)
    #[arg(long, default_value_t = 128)]
    pub templates: usize,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Compression,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Append one acknowledged trace id per request to this file (for `bench query`)
    #[arg(long)]
    pub ids_out: Option<std::path::PathBuf>,
    /// Also start a decode-only OTLP receiver in this process (gRPC, the server's TLS certificate
    /// and token, prost decoding and nothing else) and alternate runs against the endpoint and
    /// it: `--pairs` pairs of `--duration` each, then both medians and their ratio. Pin the
    /// server to one core (`taskset -c 0 tracevault serve`) and give the same core to
    /// `--pin-server`, and another to `--pin-client`
    #[arg(long)]
    pub compare: bool,
    /// Pairs of runs for --compare
    #[arg(long, default_value_t = 3)]
    pub pairs: usize,
    /// CPU core for the decode-only receiver of --compare (the server itself: `taskset -c N`)
    #[arg(long, requires = "compare")]
    pub pin_server: Option<usize>,
    /// CPU core for this load generator (all of its threads)
    #[arg(long)]
    pub pin_client: Option<usize>,
    /// Offer this many spans/s (whole requests on a fixed schedule; 0: as fast as the endpoint
    /// acknowledges). Latency is then counted from each request's scheduled time, so a server
    /// that falls behind shows its queueing (measure at 80% of the maximum rate)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

/// A pre-encoded request and where its ids and timestamps sit.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RespDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RespDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportTraceServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = RespDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RespDecoder {
        RespDecoder
    }
}

enum Sender {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http(reqwest::Client, String),
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    spans: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

async fn make_sender(args: &IngestArgs) -> anyhow::Result<Sender> {
    let tls = args.endpoint.starts_with("https://");
    let ca = args
        .ca
        .clone()
        .unwrap_or_else(|| args.data_dir.join("tls/ca.pem"));
    let identity = match (&args.client_cert, &args.client_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    match args.protocol {
        Protocol::Grpc => {
            let mut ep = tonic::transport::Endpoint::from_shared(args.endpoint.clone())
                .context("invalid endpoint")?;
            if tls {
                let pem =
                    std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
                let mut cfg = tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem));
                if let Some((c, k)) = &identity {
                    let read = |p: &std::path::Path| {
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))
                    };
                    cfg = cfg.identity(tonic::transport::Identity::from_pem(read(c)?, read(k)?));
                }
                ep = ep.tls_config(cfg)?;
            }
            let ch = ep
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.endpoint))?;
            let mut g = tonic::client::Grpc::new(ch);
            if args.compression == Compression::Gzip {
                g = g.send_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            Ok(Sender::Grpc(g))
        }
        Protocol::Http => {
            let mut b = reqwest::Client::builder();
            if tls {
                b = b.use_preconfigured_tls(crate::client::tls_client_config_with(
                    &ca,
                    identity.as_ref(),
                )?);
            }
            let url = if args.endpoint.ends_with("/v1/traces") {
                args.endpoint.clone()
            } else {
                format!("{}/v1/traces", args.endpoint.trim_end_matches('/'))
            };
            Ok(Sender::Http(b.build()?, url))
        }
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

/// Sends one request; returns rejected span count.
async fn send(
    sender: &mut Sender,
    body: Vec<u8>,
    token: Option<&str>,
    tenant: &str,
    compression: Compression,
) -> anyhow::Result<i64> {
    match sender {
        Sender::Grpc(g) => {
            g.ready().await.context("channel not ready")?;
            let mut req = tonic::Request::new(Bytes::from(body));
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse()?);
            }
            req.metadata_mut().insert("x-scope-orgid", tenant.parse()?);
            let path = http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            );
            let resp = g
                .unary(req, path, RawCodec)
                .await
                .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
            Ok(resp
                .into_inner()
                .partial_success
                .map(|p| p.rejected_spans)
                .unwrap_or(0))
        }
        Sender::Http(c, url) => {
            let mut rb = c
                .post(url.as_str())
                .header("content-type", "application/x-protobuf")
                .header("x-scope-orgid", tenant);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let body = if compression == Compression::Gzip {
                rb = rb.header("content-encoding", "gzip");
                gzip(&body)
            } else {
                body
            };
            let resp = rb.body(body).send().await?;
            let status = resp.status();
            let bytes = resp.bytes().await?;
            if !status.is_success() {
                bail!("HTTP {status}");
            }
            Ok(ExportTraceServiceResponse::decode(bytes)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| p.rejected_spans)
                .unwrap_or(0))
        }
    }
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let args = match cmd {
        BenchCmd::Ingest(a) => a,
        BenchCmd::Query(q) => return query(q).await,
        BenchCmd::Log(l) => return tokio::task::block_in_place(|| log::run(l)),
    };
    match args.pin_client {
        None => ingest(args).await,
        // Every thread of the load generator on one core: a runtime of its own, on a thread
        // pinned first (threads it starts inherit the affinity).
        Some(core) => tokio::task::spawn_blocking(move || {
            receiver::pin(core)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(ingest(args))
        })
        .await
        .context("the pinned load generator")?,
    }
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.spans_per_request == 0 || args.concurrency == 0 || args.templates == 0 {
        bail!("--spans-per-request, --concurrency and --templates must be at least 1");
    }
    let token = if args.no_token {
        None
    } else {
        let p = args
            .token_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join("admin.token"));
        Some(
            std::fs::read_to_string(&p)
                .with_context(|| {
                    format!("reading token file {} (or pass --no-token)", p.display())
                })?
                .trim()
                .to_owned(),
        )
    };
    let base = now_nanos();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let templates: Arc<Vec<Template>> = Arc::new(
        (0..args.templates)
            .map(|_| build_template(&mut rng, &args, base))
            .collect(),
    );
    if args.compare {
        return compare(&args, token, templates).await;
    }
    let (result, sampled) = load(&args, token, templates, !args.quiet && !args.json).await?;
    if let Some(p) = &args.ids_out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening {}", p.display()))?;
        for id in &sampled {
            writeln!(f, "{}", hex::encode(id))?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let f = |k: &str| result[k].as_f64().unwrap_or(0.0);
        println!(
            "{} spans accepted in {:.1} s: {:.0} spans/s ({} requests of {} spans, {} attributes/span, ~{} KiB each)",
            result["spans_accepted"],
            f("seconds"),
            f("spans_per_second"),
            result["requests_ok"],
            args.spans_per_request,
            args.attributes,
            result["request_bytes_avg"].as_u64().unwrap_or(0) / 1024
        );
        println!(
            "request latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            f("latency_ms_p50"),
            f("latency_ms_p99"),
            f("latency_ms_max")
        );
        println!(
            "errors: {}, spans rejected: {}",
            result["errors"], result["spans_rejected"]
        );
        if let Some(kinds) = result["error_kinds"].as_object() {
            for (k, n) in kinds {
                println!("  {n} x {k}");
            }
        }
    }
    Ok(())
}

/// `--compare`: alternating runs against the endpoint and an in-process decode-only receiver.
async fn compare(
    args: &IngestArgs,
    token: Option<String>,
    templates: Arc<Vec<Template>>,
) -> anyhow::Result<()> {
    if args.protocol != Protocol::Grpc || !args.endpoint.starts_with("https://") {
        bail!("--compare measures gRPC over TLS: use an https:// endpoint with --protocol grpc");
    }
    let t = token
        .clone()
        .context("--compare checks the same bearer token as the server: do not pass --no-token")?;
    let rx = receiver::Receiver::start(&args.data_dir, &t, args.pin_server)?;
    let mut against = IngestArgs {
        endpoint: format!("https://localhost:{}", rx.addr.port()),
        ..args.clone()
    };
    against.ids_out = None;
    let mut pairs = Vec::new();
    for i in 0..args.pairs.max(1) {
        let (s, _) = load(args, token.clone(), templates.clone(), false).await?;
        let (r, _) = load(&against, token.clone(), templates.clone(), false).await?;
        let rate = |v: &serde_json::Value| v["spans_per_second"].as_f64().unwrap_or(0.0);
        for (what, v) in [("tracevault", &s), ("decode-only", &r)] {
            if v["errors"].as_u64().unwrap_or(0) > 0 {
                eprintln!(
                    "compare pair {}: {what} had {} errors: {}",
                    i + 1,
                    v["errors"],
                    v["error_kinds"]
                );
            }
        }
        println!(
            "pair {}: tracevault {:.0} spans/s (p99 {:.1} ms), decode-only {:.0} spans/s (p99 {:.1} ms): ratio {:.3}",
            i + 1,
            rate(&s),
            s["latency_ms_p99"].as_f64().unwrap_or(0.0),
            rate(&r),
            r["latency_ms_p99"].as_f64().unwrap_or(0.0),
            rate(&s) / rate(&r).max(1.0)
        );
        pairs.push((rate(&s), rate(&r)));
    }
    // Every span the receiver acknowledged was decoded (a cross-check of its own count).
    let decoded = rx.spans.load(Ordering::Relaxed);
    rx.stop();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(pairs.iter().map(|(s, r)| s / r.max(1.0)).collect());
    let server = median(pairs.iter().map(|p| p.0).collect());
    let decode = median(pairs.iter().map(|p| p.1).collect());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "pairs": pairs.iter().map(|(s, r)| serde_json::json!({"tracevault": s, "decode_only": r})).collect::<Vec<_>>(),
                "tracevault_median": server,
                "decode_only_median": decode,
                "ratio_median": ratio,
                "decode_only_spans_decoded": decoded,
            }))?
        );
    } else {
        println!(
            "median of {} pairs: tracevault {server:.0} spans/s, decode-only {decode:.0} spans/s, ratio {ratio:.3} (the receiver decoded {decoded} spans)",
            pairs.len()
        );
    }
    Ok(())
}

/// One run of the load against `args.endpoint`: the result as JSON, and the sampled trace ids.
async fn load(
    args: &IngestArgs,
    token: Option<String>,
    templates: Arc<Vec<Template>>,
    show: bool,
) -> anyhow::Result<(serde_json::Value, Vec<[u8; 16]>)> {
    let avg_bytes = templates.iter().map(|t| t.bytes.len()).sum::<usize>() / templates.len();
    let totals = Arc::new(Totals::default());
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let hist = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
            .context("histogram bounds")?,
    ));
    let sampled: Arc<std::sync::Mutex<Vec<[u8; 16]>>> = Arc::default();
    let errors_seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    // With --rate: request n is due at started + n * interval, whichever worker sends it.
    let interval = (args.rate > 0.0)
        .then(|| Duration::from_secs_f64(args.spans_per_request as f64 / args.rate));
    let slots = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let mut sender = make_sender(args).await?;
        let templates = templates.clone();
        let totals = totals.clone();
        let hist = hist.clone();
        let errs = errors_seen.clone();
        let sampled = sampled.clone();
        let sample = args.ids_out.is_some();
        let token = token.clone();
        let tenant = args.tenant.clone();
        let compression = args.compression;
        let max = args.max_requests;
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64 ^ now_nanos());
            let mut local = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
                .expect("valid bounds");
            let mut k = w;
            while Instant::now() < deadline {
                if max > 0 && totals.requests.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
                let t = &templates[k % templates.len()];
                k += 1;
                let due = match interval {
                    None => None,
                    Some(every) => {
                        let n = slots.fetch_add(1, Ordering::Relaxed);
                        let due = started + every.mul_f64(n as f64);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        Some(due)
                    }
                };
                let (body, first_trace) = t.instantiate(&mut rng, now_nanos());
                // Without --rate, latency starts when the request is ready to send.
                let t0 = due.unwrap_or_else(Instant::now);
                match send(&mut sender, body, token.as_deref(), &tenant, compression).await {
                    Ok(rejected) => {
                        let _ = local.record(t0.elapsed().as_micros() as u64);
                        if sample {
                            sampled.lock().expect("lock").push(first_trace);
                        }
                        if max == 0 {
                            totals.requests.fetch_add(1, Ordering::Relaxed);
                        }
                        totals
                            .spans
                            .fetch_add(t.spans - rejected.max(0) as u64, Ordering::Relaxed);
                        totals
                            .rejected
                            .fetch_add(rejected.max(0) as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        let msg: String = e.to_string().chars().take(120).collect();
                        *errs.lock().expect("lock").entry(msg).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            let _ = hist.lock().expect("lock").add(&local);
        }));
    }
    let pb = if !show {
        None
    } else {
        let pb = indicatif::ProgressBar::new((args.duration * 10.0) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(pb)
    };
    let plain = show && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let duration = args.duration;
    let ticker = {
        let totals = totals.clone();
        let pb = pb.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let spans = totals.spans.load(Ordering::Relaxed);
                let rate = (spans - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), spans);
                // Without a terminal the bar is hidden: a line every 5 s instead.
                let ticks = (started.elapsed().as_millis() / 500) as u64;
                if plain && ticks.is_multiple_of(10) {
                    eprintln!(
                        "bench ingest: {:.0}/{:.0} s, {spans} spans, {rate:.0} spans/s, {} errors",
                        started.elapsed().as_secs_f64(),
                        duration,
                        totals.errors.load(Ordering::Relaxed)
                    );
                }
                if let Some(pb) = &pb {
                    pb.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
                    pb.set_message(format!(
                        "{spans} spans, {rate:.0} spans/s, {} errors",
                        totals.errors.load(Ordering::Relaxed)
                    ));
                }
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    ticker.abort();
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = hist.lock().expect("lock");
    let spans = totals.spans.load(Ordering::Relaxed);
    let ok_requests = h.len();
    let result = serde_json::json!({
        "endpoint": args.endpoint,
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "spans_per_request": args.spans_per_request,
        "attributes_per_span": args.attributes,
        "concurrency": args.concurrency,
        "rate_offered": args.rate,
        "seconds": elapsed,
        "requests_ok": ok_requests,
        "spans_accepted": spans,
        "spans_rejected": totals.rejected.load(Ordering::Relaxed),
        "errors": totals.errors.load(Ordering::Relaxed),
        "spans_per_second": spans as f64 / elapsed,
        "latency_ms_p50": h.value_at_quantile(0.5) as f64 / 1000.0,
        "latency_ms_p99": h.value_at_quantile(0.99) as f64 / 1000.0,
        "latency_ms_max": h.max() as f64 / 1000.0,
        "request_bytes_avg": avg_bytes,
        "error_kinds": *errors_seen.lock().expect("lock"),
    });
    let ids = std::mem::take(&mut *sampled.lock().expect("lock"));
    Ok((result, ids))
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    if !args.search.is_empty() || !args.metrics.is_empty() {
        return queries(args).await;
    }
    let Some(ids_file) = args.ids.as_ref() else {
        bail!("--ids, --search or --metrics is needed");
    };
    let text = std::fs::read_to_string(ids_file)
        .with_context(|| format!("reading {}", ids_file.display()))?;
    let ids: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    if ids.is_empty() {
        bail!("no trace ids in {}", ids_file.display());
    }
    let client = args.server.client()?;
    let token = args.server.token()?;
    let tenant = args.server.tenant();
    let base = args.server.server_url().trim_end_matches('/').to_owned();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let picks: Vec<String> = (0..args.requests)
        .map(|_| ids.choose(&mut rng).expect("non-empty").clone())
        .collect();
    let hist = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("bounds")?,
    ));
    let missing = Arc::new(AtomicU64::new(0));
    let spans = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    use futures::StreamExt;
    futures::stream::iter(picks)
        .for_each_concurrent(args.concurrency.max(1), |id| {
            let (client, token, base, tenant) =
                (client.clone(), token.clone(), base.clone(), tenant.clone());
            let (hist, missing, spans) = (hist.clone(), missing.clone(), spans.clone());
            async move {
                let t0 = Instant::now();
                let r = client
                    .get(format!("{base}/api/traces/{id}"))
                    .bearer_auth(&token)
                    .header("x-scope-orgid", tenant)
                    .header("accept", "application/protobuf")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let b = r.bytes().await.unwrap_or_default();
                        let _ = hist
                            .lock()
                            .expect("lock")
                            .record(t0.elapsed().as_micros() as u64);
                        if let Ok(d) = TracesData::decode(b) {
                            let n = tv_model::span_count(&d.resource_spans);
                            spans.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let h = hist.lock().expect("lock");
    println!(
        "{} trace-by-id lookups in {:.1} s ({} not found): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.1} spans/trace",
        h.len(),
        started.elapsed().as_secs_f64(),
        missing.load(Ordering::Relaxed),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        spans.load(Ordering::Relaxed) as f64 / h.len().max(1) as f64
    );
    Ok(())
}

/// Times each `--search` and `--metrics` query (`--requests` times each, `--concurrency` in
/// flight) and prints p50/p99 latency and what the last answer held.
async fn queries(args: QueryArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let token = args.server.token()?;
    let tenant = args.server.tenant();
    let base = args.server.server_url().trim_end_matches('/').to_owned();
    let enc = |q: &str| {
        q.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut jobs: Vec<(String, String)> = Vec::new();
    for q in &args.search {
        jobs.push((
            format!("search  {q}"),
            format!("{base}/api/search?limit=20&q={}", enc(q)),
        ));
    }
    for q in &args.metrics {
        jobs.push((
            format!("metrics {q}"),
            format!("{base}/api/metrics/query_range?since=1h&q={}", enc(q)),
        ));
    }
    use futures::StreamExt;
    for (label, url) in jobs {
        let hist = Arc::new(std::sync::Mutex::new(
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("bounds")?,
        ));
        let failed = Arc::new(AtomicU64::new(0));
        let last = Arc::new(std::sync::Mutex::new(String::new()));
        futures::stream::iter(0..args.requests.max(1))
            .for_each_concurrent(args.concurrency.max(1), |_| {
                let (client, token, url, tenant) =
                    (client.clone(), token.clone(), url.clone(), tenant.clone());
                let (hist, failed, last) = (hist.clone(), failed.clone(), last.clone());
                async move {
                    let t0 = Instant::now();
                    let r = client
                        .get(url)
                        .bearer_auth(&token)
                        .header("x-scope-orgid", tenant)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let body = r.text().await.unwrap_or_default();
                            let _ = hist
                                .lock()
                                .expect("lock")
                                .record(t0.elapsed().as_micros() as u64);
                            let v: serde_json::Value =
                                serde_json::from_str(&body).unwrap_or_default();
                            let held = v["traces"]
                                .as_array()
                                .map(|a| format!("{} traces", a.len()))
                                .or_else(|| {
                                    v["series"]
                                        .as_array()
                                        .map(|a| format!("{} series", a.len()))
                                })
                                .unwrap_or_default();
                            *last.lock().expect("lock") = held;
                        }
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *last.lock().expect("lock") = format!("HTTP {}", r.status());
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *last.lock().expect("lock") = e.to_string();
                        }
                    }
                }
            })
            .await;
        let h = hist.lock().expect("lock");
        println!(
            "{label}: {} ok, {} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; last answer: {}",
            h.len(),
            failed.load(Ordering::Relaxed),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            last.lock().expect("lock")
        );
    }
    Ok(())
}
