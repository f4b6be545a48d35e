//! Request templates: realistic spans generated once, pre-encoded, and patched per request with
//! fresh trace and span ids (XOR with a per-request mask, which keeps parent links intact), fresh
//! `request.id` values and current timestamps.

use std::collections::HashSet;

use prost::Message;
use rand::Rng;
use rand::seq::IndexedRandom;
use tv_model::otlp::*;

use super::IngestArgs;

/// A pre-encoded request and where its ids and timestamps sit.
pub(super) struct Template {
    pub(super) bytes: Vec<u8>,
    trace_ids: Vec<usize>,
    span_ids: Vec<usize>,
    /// 32-character hex strings (request.id) replaced per request.
    hex_ids: Vec<usize>,
    times: Vec<usize>,
    base: u64,
    pub(super) spans: u64,
}

pub(super) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

const SERVICES: &[&str] = &[
    "frontend",
    "checkout",
    "cart",
    "payment",
    "shipping",
    "catalog",
    "currency",
    "email",
    "recommendation",
    "ad",
    "auth",
    "inventory",
];
const ROUTES: &[&str] = &[
    "/api/v1/users/{id}",
    "/api/v1/cart/{id}/items",
    "/api/v1/orders/{id}",
    "/api/v1/products/{id}",
    "/api/v1/checkout",
    "/api/v1/payments/{id}/capture",
    "/healthz",
    "/api/v2/search",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const TABLES: &[&str] = &[
    "users",
    "orders",
    "order_items",
    "products",
    "payments",
    "sessions",
];

fn s(v: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v)),
    })
}
fn i(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    })
}
fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value,
        ..Default::default()
    }
}

fn attributes(
    rng: &mut impl Rng,
    n: usize,
    db: bool,
    request_ids: &mut HashSet<String>,
) -> Vec<KeyValue> {
    let user = rng.random_range(1..50_000u32);
    let id = rng.random_range(1..10_000_000u64);
    let route = *ROUTES.choose(rng).expect("non-empty");
    let table = *TABLES.choose(rng).expect("non-empty");
    let status = *[200, 200, 200, 200, 201, 204, 302, 400, 404, 500]
        .choose(rng)
        .expect("non-empty");
    let mut all = vec![
        kv(
            "http.request.method",
            s(METHODS.choose(rng).expect("non-empty").to_string()),
        ),
        kv("url.path", s(route.replace("{id}", &id.to_string()))),
        kv("http.response.status_code", i(status)),
        kv("http.route", s(route.to_owned())),
        kv("user.id", s(format!("u-{user:06}"))),
        kv(
            "server.address",
            s(format!(
                "10.{}.{}.{}",
                rng.random_range(0..4),
                rng.random_range(0..255),
                rng.random_range(1..255)
            )),
        ),
        kv(
            "server.port",
            i(*[80, 443, 8080, 9090].choose(rng).expect("non-empty")),
        ),
        kv(
            "request.id",
            s({
                let id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
                request_ids.insert(id.clone());
                id
            }),
        ),
        kv(
            "user_agent.original",
            s(format!(
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/{}.0.{}.{}",
                rng.random_range(110..130),
                rng.random_range(1000..6000),
                rng.random_range(10..200)
            )),
        ),
        kv("thread.id", i(rng.random_range(1..256))),
        kv(
            "client.address",
            s(format!("192.0.2.{}", rng.random_range(1..255))),
        ),
        kv("network.protocol.version", s("1.1".into())),
    ];
    if db {
        all.insert(0, kv("db.system", s("postgresql".into())));
        all.insert(
            1,
            kv(
                "db.query.text",
                s(format!(
                    "SELECT id, name, created_at FROM {table} WHERE id = {id} AND tenant_id = {} LIMIT {}",
                    rng.random_range(1..500),
                    rng.random_range(1..100)
                )),
            ),
        );
    }
    all.truncate(n);
    while all.len() < n {
        let k = format!("app.attr_{}", all.len());
        all.push(kv(&k, s(format!("{:x}", rng.next_u64()))));
    }
    all
}

pub(super) fn build_template(rng: &mut impl Rng, args: &IngestArgs, base: u64) -> Template {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    let per_trace = args.spans_per_trace.max(1);
    let mut made = 0;
    let mut trace_set: HashSet<[u8; 16]> = HashSet::new();
    let mut span_set: HashSet<[u8; 8]> = HashSet::new();
    let mut time_set: HashSet<u64> = HashSet::new();
    let mut request_ids: HashSet<String> = HashSet::new();
    while made < args.spans_per_request {
        let mut tid = [0u8; 16];
        rng.fill_bytes(&mut tid);
        trace_set.insert(tid);
        let t0 = base - rng.random_range(1_000_000..2_000_000_000);
        let root_dur = rng.random_range(5_000_000..900_000_000u64);
        let mut ids: Vec<[u8; 8]> = Vec::new();
        for k in 0..per_trace.min(args.spans_per_request - made) {
            let mut sid = [0u8; 8];
            rng.fill_bytes(&mut sid);
            span_set.insert(sid);
            let parent = if k == 0 {
                vec![]
            } else {
                ids[rng.random_range(0..ids.len())].to_vec()
            };
            ids.push(sid);
            let start = t0
                + if k == 0 {
                    0
                } else {
                    rng.random_range(0..root_dur / 2)
                };
            let dur = if k == 0 {
                root_dur
            } else {
                rng.random_range(100_000..root_dur / 2)
            };
            let db = k > 0 && rng.random_bool(0.4);
            let svc = rng.random_range(0..SERVICES.len());
            time_set.insert(start);
            time_set.insert(start + dur);
            by_service[svc].push(Span {
                trace_id: tid.to_vec(),
                span_id: sid.to_vec(),
                parent_span_id: parent,
                name: if db {
                    format!("SELECT {}", TABLES.choose(rng).expect("non-empty"))
                } else {
                    format!(
                        "{} {}",
                        METHODS.choose(rng).expect("non-empty"),
                        ROUTES.choose(rng).expect("non-empty")
                    )
                },
                kind: if k == 0 { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + dur,
                attributes: attributes(rng, args.attributes, db, &mut request_ids),
                status: Some(Status {
                    code: if rng.random_bool(0.03) { 2 } else { 0 },
                    ..Default::default()
                }),
                ..Default::default()
            });
            made += 1;
        }
    }
    let req = ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s(SERVICES[k].to_owned())),
                        kv("service.version", s("1.4.2".into())),
                        kv("deployment.environment.name", s("production".into())),
                        kv("host.name", s(format!("node-{k:02}"))),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "tracevault-bench".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    let bytes = req.encode_to_vec();
    // Locate the fields to patch: trace_id (tag 1, len 16), span_id (tag 2, len 8),
    // parent_span_id (tag 4, len 8), start/end (fixed64 tags 7 and 8) - matched against the
    // known random values, so a coincidental byte pattern elsewhere is not patched.
    let (mut trace_ids, mut span_ids, mut times) = (Vec::new(), Vec::new(), Vec::new());
    let mut hex_ids = Vec::new();
    let mut p = 0;
    while p + 2 < bytes.len() {
        match (bytes[p], bytes[p + 1]) {
            (0x0a, 0x10) if p + 18 <= bytes.len() => {
                let v: [u8; 16] = bytes[p + 2..p + 18].try_into().expect("16 bytes");
                if trace_set.contains(&v) {
                    trace_ids.push(p + 2);
                    p += 18;
                    continue;
                }
            }
            (0x12, 0x08) | (0x22, 0x08) if p + 10 <= bytes.len() => {
                let v: [u8; 8] = bytes[p + 2..p + 10].try_into().expect("8 bytes");
                if span_set.contains(&v) {
                    span_ids.push(p + 2);
                    p += 10;
                    continue;
                }
            }
            // A request.id string value: fresh per request, like the ids.
            (0x0a, 0x20)
                if p + 34 <= bytes.len()
                    && std::str::from_utf8(&bytes[p + 2..p + 34])
                        .is_ok_and(|v| request_ids.contains(v)) =>
            {
                hex_ids.push(p + 2);
                p += 34;
                continue;
            }
            (0x39, _) | (0x41, _) if p + 9 <= bytes.len() => {
                let v = u64::from_le_bytes(bytes[p + 1..p + 9].try_into().expect("8 bytes"));
                if time_set.contains(&v) {
                    times.push(p + 1);
                    p += 9;
                    continue;
                }
            }
            _ => {}
        }
        p += 1;
    }
    Template {
        bytes,
        trace_ids,
        span_ids,
        hex_ids,
        times,
        base,
        spans: args.spans_per_request as u64,
    }
}

impl Template {
    /// The patched bytes and the first trace id they carry.
    pub(super) fn instantiate(&self, rng: &mut impl Rng, now: u64) -> (Vec<u8>, [u8; 16]) {
        let mut b = self.bytes.clone();
        let mut tmask = [0u8; 16];
        rng.fill_bytes(&mut tmask);
        let mut smask = [0u8; 8];
        rng.fill_bytes(&mut smask);
        for &o in &self.trace_ids {
            for k in 0..16 {
                b[o + k] ^= tmask[k];
            }
        }
        for &o in &self.span_ids {
            for k in 0..8 {
                b[o + k] ^= smask[k];
            }
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &o in &self.hex_ids {
            let (a, b2) = (rng.next_u64(), rng.next_u64());
            for k in 0..16 {
                b[o + k] = HEX[((a >> (k * 4)) & 0xf) as usize];
                b[o + 16 + k] = HEX[((b2 >> (k * 4)) & 0xf) as usize];
            }
        }
        let delta = now.saturating_sub(self.base);
        for &o in &self.times {
            let v = u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes")) + delta;
            b[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        let first = self
            .trace_ids
            .first()
            .map(|&o| b[o..o + 16].try_into().expect("16 bytes"))
            .unwrap_or([0; 16]);
        (b, first)
    }
}

/// Sends pre-encoded request bytes through tonic unchanged.
#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rand::SeedableRng;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: IngestArgs,
    }

    #[test]
    fn templates_patch_every_id_time_and_request_id() {
        let args = Wrap::parse_from(["x", "--spans-per-request", "64"]).args;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let base = 1_750_000_000_000_000_000;
        let t = build_template(&mut rng, &args, base);
        assert_eq!(t.trace_ids.len(), 64);
        assert_eq!(t.times.len(), 128);
        assert_eq!(t.hex_ids.len(), 64);
        let decode = |b: &[u8]| ExportTraceServiceRequest::decode(b).unwrap();
        let spans = |r: &ExportTraceServiceRequest| -> Vec<Span> {
            r.resource_spans
                .iter()
                .flat_map(|x| &x.scope_spans)
                .flat_map(|x| x.spans.clone())
                .collect()
        };
        let (a, _) = t.instantiate(&mut rng, base + 1_000);
        let (b, first) = t.instantiate(&mut rng, base + 1_000);
        let (sa, sb) = (spans(&decode(&a)), spans(&decode(&b)));
        assert_eq!(sa.len(), 64);
        assert_eq!(sb[0].trace_id, first.to_vec());
        let ids: HashSet<Vec<u8>> = sb.iter().map(|s| s.span_id.clone()).collect();
        for (x, y) in sa.iter().zip(&sb) {
            assert_ne!(x.trace_id, y.trace_id);
            assert_ne!(x.span_id, y.span_id);
            assert!(y.parent_span_id.is_empty() || ids.contains(&y.parent_span_id));
            let rid = |s: &Span| s.attributes.iter().find(|k| k.key == "request.id").cloned();
            assert_ne!(rid(x), rid(y));
            assert_eq!(x.attributes.len(), 10);
            assert_eq!(x.start_time_unix_nano, y.start_time_unix_nano);
        }
    }
}
