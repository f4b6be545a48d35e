//! `tracevault demo`: a server in a temporary data directory (or `--data-dir`), a small shop
//! driven through it over OTLP/HTTP + TLS (frontend, cart, payment, db; emails, card numbers and
//! bearer tokens in attributes, SQL with literals; then a few attacks: SQL injection, path
//! traversal, a scanner, a credential brute force, a new lateral call), and what happened:
//! spans stored, values redacted by type, findings, the signed checkpoint, a receipt verified,
//! and a login link for the web UI. It keeps serving until Ctrl-C, or stops with `--exit`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use prost::Message;
use rand::Rng;
use tv_model::otlp::{
    AnyValue, ArrayValue, ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource,
    ResourceSpans, ScopeSpans, Span, Status, any_value,
};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the demo's data here (default: a temporary directory removed at exit)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Stop after printing the summary instead of serving until Ctrl-C
    #[arg(long)]
    pub exit: bool,
    /// Query API and web UI address
    #[arg(long, default_value = "127.0.0.1:3200")]
    pub api: SocketAddr,
    /// OTLP/HTTP address
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub otlp_http: SocketAddr,
    /// OTLP/gRPC address
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub otlp_grpc: SocketAddr,
}

/// The demo's server settings: learning of normal behaviour ends a minute after the first span
/// (so the attacks sent after the shop's history are judged against it).
const DEMO_CONFIG: &str = "version = 1\n\n# tracevault demo: behaviour is learned from the first minute of spans\n[detection.behaviour]\nlearning_secs = 60\n\n# a credential that rewrites a span it already sent is quarantined until an admin releases it\n[[detection.responses]]\naction = \"quarantine\"\nrules = [\"tv-integrity-span-reuse\"]\n";

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn i(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    })
}

fn strings(vs: &[&str]) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: vs.iter().map(|v| s(v).unwrap()).collect(),
        })),
    })
}

fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value,
        ..Default::default()
    }
}

const MS: u64 = 1_000_000;

/// The shop's traffic, one batch per service.
#[derive(Default)]
struct Shop {
    by_service: BTreeMap<&'static str, Vec<Span>>,
    spans: usize,
    traces: usize,
}

struct Call {
    id: [u8; 8],
}

impl Shop {
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &'static str,
        trace: [u8; 16],
        parent: Option<[u8; 8]>,
        name: &str,
        kind: i32,
        start: u64,
        dur: u64,
        attributes: Vec<KeyValue>,
        error: bool,
    ) -> Call {
        let id: [u8; 8] = rand::rng().random();
        self.by_service.entry(service).or_default().push(Span {
            trace_id: trace.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: name.into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes,
            status: error.then(|| Status {
                code: 2,
                message: "request failed".into(),
            }),
            ..Default::default()
        });
        self.spans += 1;
        Call { id }
    }

    fn new_trace(&mut self) -> [u8; 16] {
        self.traces += 1;
        rand::rng().random()
    }

    /// One customer's checkout: frontend → cart → db, frontend → payment → db.
    fn order(&mut self, n: usize, t: u64) {
        let tr = self.new_trace();
        let email = format!("customer{n}@example.com");
        let jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjdXN0b21lciIsImV4cCI6MTkwMDAwMDAwMH0.c2lnbmF0dXJlLW5vdC1yZWFs";
        let root = self.span(
            "frontend",
            tr,
            None,
            "POST /checkout",
            2,
            t,
            180 * MS,
            vec![
                kv("http.request.method", s("POST")),
                kv("url.path", s("/checkout")),
                kv("http.route", s("/checkout")),
                kv("http.response.status_code", i(200)),
                kv("client.address", s(&format!("198.51.100.{}", n % 200 + 1))),
                kv(
                    "user_agent.original",
                    s("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0"),
                ),
                kv("enduser.id", i(10_000 + n as i64)),
                kv("user.email", s(&email)),
                kv(
                    "http.request.header.authorization",
                    strings(&[&format!("Bearer {jwt}")]),
                ),
            ],
            false,
        );
        let cart = self.call(
            tr,
            root.id,
            ("frontend", "cart"),
            ("CartService/GetCart", "CartService/GetCart"),
            (t + 5 * MS, 40 * MS),
            vec![
                kv("rpc.system", s("grpc")),
                kv("rpc.service", s("CartService")),
                kv("rpc.method", s("GetCart")),
            ],
            vec![
                kv("rpc.system", s("grpc")),
                kv("rpc.grpc.status_code", i(0)),
                kv("rpc.grpc.request.metadata.x-user-email", strings(&[&email])),
            ],
            false,
        );
        self.call(
            tr,
            cart.id,
            ("cart", "db"),
            ("SELECT carts", "SELECT carts"),
            (t + 8 * MS, 20 * MS),
            vec![kv("db.system", s("postgresql"))],
            vec![
                kv("db.system", s("postgresql")),
                kv(
                    "db.query.text",
                    s(&format!(
                        "SELECT item_id, qty FROM carts WHERE customer_email = '{email}' AND id = {n}"
                    )),
                ),
            ],
            false,
        );
        let pay = self.call(
            tr,
            root.id,
            ("frontend", "payment"),
            ("POST /charge", "Charge"),
            (t + 50 * MS, 120 * MS),
            vec![kv("http.request.method", s("POST"))],
            vec![
                kv("app.payment.card_number", s("4111 1111 1111 1111")),
                kv("app.payment.card_type", s("visa")),
                kv("app.payment.amount", s(&format!("{}.99", 10 + n % 90))),
                kv("user.email", s(&email)),
            ],
            n % 17 == 5,
        );
        self.call(
            tr,
            pay.id,
            ("payment", "db"),
            ("INSERT payments", "INSERT payments"),
            (t + 60 * MS, 30 * MS),
            vec![kv("db.system", s("postgresql"))],
            vec![
                kv("db.system", s("postgresql")),
                kv(
                    "db.query.text",
                    s(&format!(
                        "INSERT INTO payments (email, card, amount) VALUES ('{email}', '4111111111111111', {})",
                        10 + n % 90
                    )),
                ),
            ],
            false,
        );
    }

    /// A call between services: the caller's client span and, under it, the callee's server
    /// span (a millisecond later, ending a millisecond earlier); returns the server span.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        trace: [u8; 16],
        parent: [u8; 8],
        (caller, callee): (&'static str, &'static str),
        (client_name, server_name): (&str, &str),
        (start, dur): (u64, u64),
        mut client: Vec<KeyValue>,
        server: Vec<KeyValue>,
        error: bool,
    ) -> Call {
        client.push(kv("server.address", s(callee)));
        let c = self.span(
            caller,
            trace,
            Some(parent),
            client_name,
            3,
            start,
            dur,
            client,
            false,
        );
        self.span(
            callee,
            trace,
            Some(c.id),
            server_name,
            2,
            start + MS,
            dur - 2 * MS,
            server,
            error,
        )
    }

    /// A request to the frontend alone (the attacks).
    fn hit(&mut self, t: u64, name: &str, attrs: Vec<KeyValue>, status: i64) -> Call {
        let tr = self.new_trace();
        let mut a = vec![kv("http.response.status_code", i(status))];
        a.extend(attrs);
        self.span(
            "frontend",
            tr,
            None,
            name,
            2,
            t,
            4_000_000,
            a,
            status >= 500,
        )
    }

    fn request(&mut self) -> ExportTraceServiceRequest {
        let by = std::mem::take(&mut self.by_service);
        ExportTraceServiceRequest {
            resource_spans: by
                .into_iter()
                .map(|(service, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", s(service)),
                            kv("service.version", s("1.4.2")),
                            kv("deployment.environment.name", s("demo")),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "tracevault-demo".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// The attacks, sent after the shop's history; returns the trace of the lateral call.
fn attacks(shop: &mut Shop, t: u64) -> [u8; 16] {
    shop.hit(
        t,
        "GET /search",
        vec![
            kv("http.request.method", s("GET")),
            kv("url.path", s("/search")),
            kv(
                "url.query",
                s("q=1%27%20UNION%20SELECT%20username%2C%20password%20FROM%20users--"),
            ),
            kv("client.address", s("203.0.113.50")),
        ],
        500,
    );
    shop.hit(
        t + 10 * MS,
        "GET /static",
        vec![
            kv("http.request.method", s("GET")),
            kv("url.path", s("/static/../../../../etc/passwd")),
            kv("client.address", s("203.0.113.51")),
        ],
        404,
    );
    for (k, path) in ["/admin.php", "/.git/config", "/wp-login.php"]
        .iter()
        .enumerate()
    {
        shop.hit(
            t + (20 + k as u64) * MS,
            "GET",
            vec![
                kv("http.request.method", s("GET")),
                kv("url.path", s(path)),
                kv(
                    "user_agent.original",
                    s("Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"),
                ),
                kv("client.address", s("203.0.113.52")),
            ],
            404,
        );
    }
    for k in 0..30 {
        shop.hit(
            t + (100 + k * 50) * MS,
            "POST /login",
            vec![
                kv("http.request.method", s("POST")),
                kv("url.path", s("/login")),
                kv("client.address", s("203.0.113.66")),
                kv("user.name", s(&format!("admin{}", k % 3))),
            ],
            401,
        );
    }
    // cart calls payment directly: a call the shop never made.
    let tr = shop.new_trace();
    let root = shop.span(
        "cart",
        tr,
        None,
        "RefundWorker",
        1,
        t + 3000 * MS,
        60 * MS,
        vec![],
        false,
    );
    shop.call(
        tr,
        root.id,
        ("cart", "payment"),
        ("POST /charge", "Charge"),
        (t + 3005 * MS, 50 * MS),
        vec![],
        vec![kv("app.payment.amount", s("4999.00"))],
        false,
    );
    tr
}

struct Client {
    http: reqwest::Client,
    api: String,
    otlp: String,
    admin: String,
}

impl Client {
    async fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.admin)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
        Ok(r.json().await?)
    }

    async fn text(&self, path: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.admin)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
        Ok(r.text().await?)
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            let st = r.status();
            bail!("POST {path}: {st}: {}", r.text().await.unwrap_or_default());
        }
        Ok(r.json().await?)
    }

    async fn send(&self, token: &str, req: &ExportTraceServiceRequest) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/traces", self.otlp))
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .context("OTLP/HTTP export")?;
        if !r.status().is_success() {
            bail!("OTLP export refused: {}", r.status());
        }
        Ok(())
    }
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let (dir, temporary) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => {
            let n: u64 = rand::rng().random();
            (
                std::env::temp_dir().join(format!("tracevault-demo-{n:016x}")),
                true,
            )
        }
    };
    // Private from the start: the demo's keys and tokens live here.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let cfg_file = dir.join("config.toml");
    if !cfg_file.exists() {
        std::fs::write(&cfg_file, DEMO_CONFIG)?;
    }
    let res = demo(&a, &dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    res
}

async fn demo(a: &DemoArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let flags = tv_server::RawConfig {
        data_dir: Some(dir.to_path_buf()),
        listen: tv_server::config::RawListen {
            otlp_grpc: Some(a.otlp_grpc),
            otlp_http: Some(a.otlp_http),
            api: Some(a.api),
        },
        ..Default::default()
    };
    let cfg = tv_server::RawConfig::resolve(&flags, None)?;
    let keys_dir = cfg.keys_dir.clone();
    let server = tv_server::Server::bootstrap(cfg).await?;
    let addrs = server.addrs.clone();
    let (Some(otlp_grpc), Some(otlp_http)) = (addrs.otlp_grpc, addrs.otlp_http) else {
        anyhow::bail!("the demo server has no OTLP listeners");
    };
    let admin = std::fs::read_to_string(&server.admin_token_path)?
        .trim()
        .to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let api = format!("https://{}", addrs.api);
    println!(
        "tracevault demo: a server at {api} (OTLP/gRPC {}, OTLP/HTTP {}; data in {})",
        otlp_grpc,
        otlp_http,
        dir.display()
    );

    let tls = crate::client::tls_client_config(&dir.join("tls/ca.pem"))?;
    let c = Client {
        http: reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()?,
        api: api.clone(),
        otlp: format!("https://{otlp_http}"),
        admin,
    };
    let ingest = c
        .post(
            "/api/admin/tokens",
            serde_json::json!({"name": "demo-shop", "role": "ingest", "tenants": ["default"]}),
        )
        .await?["token"]
        .as_str()
        .context("no ingest token in the answer")?
        .to_owned();

    // Four minutes of shop history (learned as normal), then the attacks, now.
    let now = now_nanos();
    let mut shop = Shop::default();
    let orders = 60;
    for n in 0..orders {
        let t = now - 240_000_000_000 + n as u64 * 3_000_000_000;
        shop.order(n, t);
        if n % 10 == 9 {
            c.send(&ingest, &shop.request()).await?;
        }
    }
    let history = (shop.traces, shop.spans);
    let lateral = attacks(&mut shop, now - 5_000_000_000);
    c.send(&ingest, &shop.request()).await?;
    // A second credential re-sends a span it already sent, with other content (a tampering
    // collector): detection flags it and the response rule above quarantines the credential.
    let rogue = c
        .post(
            "/api/admin/tokens",
            serde_json::json!({"name": "build-agent", "role": "ingest", "tenants": ["default"]}),
        )
        .await?["token"]
        .as_str()
        .context("no token in the answer")?
        .to_owned();
    let tr = shop.new_trace();
    shop.span(
        "cart",
        tr,
        None,
        "GET /cart",
        2,
        now - 4_000_000_000,
        3_000_000,
        vec![],
        false,
    );
    let first = shop.request();
    c.send(&rogue, &first).await?;
    let mut rewritten = first.clone();
    rewritten.resource_spans[0].scope_spans[0].spans[0].name = "GET /cart/export-all".into();
    c.send(&rogue, &rewritten).await?;
    println!(
        "sent over OTLP/HTTP + TLS: {} traces ({} spans) of a shop (frontend, cart, payment, db), then {} attack traces ({} spans)",
        history.0,
        history.1,
        shop.traces - history.0,
        shop.spans - history.1
    );

    // Seal what was sent, so every span has a receipt under a signed checkpoint.
    c.post("/api/admin/flush", serde_json::json!({})).await?;
    let metrics = c.text("/metrics").await?;
    let stored = metric_sum(&metrics, "tracevault_spans_accepted_total");
    println!("stored: {stored} spans, encrypted at rest, each committed to the transparency log");
    // The same reading of the counters as the UI's security overview.
    let mut sample = tv_server::ui::security::sample(&metrics, 0);
    let redacted = sample.counters.remove("redacted").unwrap_or_default();
    let total: f64 = redacted.values().sum();
    println!("redacted at ingest: {total} values, by type:");
    for (rule, n) in &redacted {
        println!("  {rule:<28} {n}");
    }

    // Findings: signatures at once, behaviour once its stage has seen the batches.
    let mut findings = serde_json::Value::Null;
    for _ in 0..60 {
        findings = c.json("/api/findings?limit=1000").await?;
        let rules = rules_of(&findings);
        if ["auth-burst", "new-edge", "span-reuse"]
            .iter()
            .all(|want| rules.iter().any(|r| r.contains(want)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let list = findings["findings"].as_array().cloned().unwrap_or_default();
    println!("findings: {}", list.len());
    let mut by_rule: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in &list {
        let rule = f["finding_info"]["analytic"]["uid"].as_str().unwrap_or("?");
        let title = f["finding_info"]["title"].as_str().unwrap_or("");
        let sev = f["severity"].as_str().unwrap_or("?").to_lowercase();
        *by_rule
            .entry((format!("{sev:<8} {rule}"), title.to_owned()))
            .or_default() += 1;
    }
    for ((rule, title), n) in &by_rule {
        println!("  {rule:<40} {n:>3}  {title}");
    }

    let responses = c.json("/api/admin/responses").await?;
    for r in responses["responses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        println!(
            "automated response: {} {} (rule {}); an admin releases it on the UI's Findings page",
            r["action"].as_str().unwrap_or("?"),
            r["principal"].as_str().unwrap_or("?"),
            r["rule"].as_str().unwrap_or("?")
        );
    }

    // The signed checkpoint and one receipt, checked here with the log's public keys only.
    let cp = c.text("/api/log/checkpoint").await?;
    let mut lines = cp.lines();
    let origin = lines.next().unwrap_or("");
    let size = lines.next().unwrap_or("");
    let root = lines.next().unwrap_or("");
    let sigs = cp.lines().filter(|l| l.starts_with('\u{2014}')).count();
    println!(
        "signed checkpoint: {origin}, {size} entries, root {root} ({sigs} signatures: Ed25519 and ML-DSA-44)"
    );
    let vkeys = tv_server::logkeys::verifier_keys(&keys_dir)?;
    let keys = tv_tlog::policy::LogKeys::from_vkeys(&vkeys)
        .map_err(|e| anyhow::anyhow!("log keys: {e}"))?;
    let receipts = c
        .json(&format!("/api/traces/{}/receipt", hex::encode(lateral)))
        .await?;
    let r: tv_tlog::receipt::Receipt = serde_json::from_value(
        receipts["receipts"]
            .get(0)
            .cloned()
            .context("no receipt for the lateral call's trace")?,
    )?;
    match tv_tlog::receipt::verify(&r, &keys, tv_tlog::policy::Policy::Both) {
        Ok(v) => println!(
            "receipt of span {} (trace {}): verified: entry {} of the log, under the checkpoint of size {}, both signatures",
            r.span_id,
            r.trace_id,
            v.index,
            v.checkpoint.checkpoint().size
        ),
        Err(e) => bail!("the demo's own receipt did not verify: {e}"),
    }
    println!("verifier keys (pin them in the UI under Verifier keys):");
    for k in &vkeys {
        println!("  {k}");
    }
    let code = c
        .post(
            "/api/ui/login-codes",
            serde_json::json!({"next": "/search"}),
        )
        .await?;
    println!(
        "open the web UI (this link signs in once, within 5 minutes, as the demo's admin):\n  {api}{}#login={}",
        code["next"].as_str().unwrap_or("/"),
        code["code"].as_str().unwrap_or("")
    );
    println!(
        "  another link: tracevault login-url --server {api} --data-dir {}",
        dir.display()
    );
    if a.exit {
        println!("--exit: stopping");
    } else {
        println!("serving until Ctrl-C");
        crate::shutdown_signal().await;
    }
    let _ = stop.send(());
    serving.await.context("server task")??;
    Ok(())
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn rules_of(findings: &serde_json::Value) -> Vec<String> {
    findings["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    f["finding_info"]["analytic"]["uid"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}
