//! Ordinary values must survive redaction (issue 17: at most 1% changed). A hand-written set of
//! what services put in spans that holds no personal data and no secret (user agents, versions,
//! order ids and SKUs, timestamps, request and resource ids, routes, messages, SQL with
//! placeholders, prices, search terms, product codes), each under the key an instrumentation
//! would use, is generated with random parts from a fixed seed and run through the engine as one
//! batch. Every changed value is printed with its family.
//!
//! Not in the set, because changing them is the documented scrubbing and not a detector's
//! mistake: literals in `db.statement` (`LIMIT 39` becomes `LIMIT ?`) and identifiers in URL
//! paths (`/orders/666290` becomes `/orders/{id}`).

use std::collections::BTreeMap;

use tv_model::otlp::{AnyValue, KeyValue, any_value::Value};

mod generate;
use generate::{Rng, kv, redact_attributes};

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// One ordinary value: (family, key, value).
type Case = (&'static str, &'static str, String);

fn cases(r: &mut Rng) -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for _ in 0..12 {
        let (maj, build, patch) = (r.n(100, 131), r.n(5000, 6999), r.n(0, 250));
        let ua = match r.n(0, 7) {
            0 => format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{maj}.0.{build}.{patch} Safari/537.36"
            ),
            1 => format!(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{} Safari/605.1.15",
                r.n(0, 5)
            ),
            2 => format!(
                "Mozilla/5.0 (X11; Linux x86_64; rv:{maj}.0) Gecko/20100101 Firefox/{maj}.0"
            ),
            3 => format!(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
                r.n(0, 6)
            ),
            4 => format!(
                "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UD1A.{}.{:03})",
                r.n(230_000, 240_000),
                r.n(1, 999)
            ),
            5 => format!("okhttp/4.{}.{}", r.n(9, 12), r.n(0, 3)),
            6 => format!(
                "aws-sdk-java/2.{}.{} Linux/5.10.{} OpenJDK_64-Bit_Server_VM/17.0.{}+{} Java/17.0.{}",
                r.n(20, 25),
                r.n(0, 40),
                r.n(100, 220),
                r.n(1, 12),
                r.n(1, 9),
                r.n(1, 12)
            ),
            _ => format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{maj}.0.0.0 Safari/537.36 Edg/{maj}.0.{build}.{patch}"
            ),
        };
        out.push(("user agent", "user_agent.original", ua));
    }
    for _ in 0..10 {
        let v = match r.n(0, 4) {
            0 => format!("{}.{}.{}", r.n(0, 20), r.n(0, 40), r.n(0, 200)),
            1 => format!(
                "{}.{}.{}.{}",
                r.n(1, 12),
                r.n(0, 9),
                r.n(0, 30000),
                r.n(0, 999)
            ),
            2 => format!(
                "v{}.{}.{}-rc.{}",
                r.n(0, 9),
                r.n(0, 30),
                r.n(0, 9),
                r.n(1, 5)
            ),
            3 => format!("2024.{:02}.{:02}", r.n(1, 12), r.n(1, 28)),
            _ => format!(
                "{}.{}.{}+build.{}",
                r.n(0, 9),
                r.n(0, 9),
                r.n(0, 9),
                r.n(1000, 99999)
            ),
        };
        out.push(("version", "service.version", v));
    }
    for _ in 0..30 {
        let (key, v) = match r.n(0, 9) {
            0 => (
                "order.id",
                format!("ORD-{}-{}", r.n(2020, 2026), r.digits(6)),
            ),
            1 => ("order.id", r.digits(9)),
            2 => ("order.id", r.digits(10)),
            3 => (
                "app.product.sku",
                format!(
                    "{}-{}-{}",
                    r.chars(UPPER, 2),
                    r.digits(4),
                    r.pick(&["XS", "S", "M", "L", "XL"])
                ),
            ),
            4 => (
                "app.product.sku",
                format!("SKU-{}-{}", r.digits(6), r.pick(&["BLK", "WHT", "RED"])),
            ),
            5 => ("invoice.number", format!("INV-{}", r.digits(7))),
            6 => (
                "app.product.id",
                format!("{}{}", r.chars(UPPER, 2), r.digits(8)),
            ),
            7 => ("app.cart.item_count", r.n(1, 40).to_string()),
            8 => (
                "shipment.tracking",
                format!(
                    "1Z{}{}",
                    r.chars(b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ", 6),
                    r.digits(10)
                ),
            ),
            _ => (
                "app.product.ean",
                format!("{}", r.n(4_000_000_000_000, 4_999_999_999_999)),
            ),
        };
        out.push(("order id / SKU", key, v));
    }
    for _ in 0..20 {
        let (key, v) = match r.n(0, 6) {
            0 => (
                "http.request.id",
                format!(
                    "{}-{}-4{}-a{}-{}",
                    r.hex(8),
                    r.hex(4),
                    r.hex(3),
                    r.hex(3),
                    r.hex(12)
                ),
            ),
            1 => ("app.trace_ref", r.hex(32)),
            2 => ("container.id", r.hex(64)),
            3 => (
                "k8s.pod.name",
                format!(
                    "checkout-{}-{}",
                    r.chars(LOWER_ALNUM, 9),
                    r.chars(LOWER_ALNUM, 5)
                ),
            ),
            4 => (
                "cloud.resource_id",
                format!(
                    "arn:aws:lambda:us-east-1:{}:function:checkout-{}",
                    r.digits(12),
                    r.pick(&["prod", "staging"])
                ),
            ),
            5 => ("host.id", format!("i-0{}", r.hex(16))),
            _ => ("vcs.commit", r.hex(40)),
        };
        out.push(("request / resource id", key, v));
    }
    for _ in 0..15 {
        let (key, v) = match r.n(0, 5) {
            0 => (
                "app.timestamp",
                format!(
                    "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    r.n(1, 12),
                    r.n(1, 28),
                    r.n(0, 23),
                    r.n(0, 59),
                    r.n(0, 59),
                    r.n(0, 999)
                ),
            ),
            1 => (
                "app.epoch_ms",
                r.n(1_600_000_000_000, 1_800_000_000_000).to_string(),
            ),
            2 => ("app.epoch", r.n(1_600_000_000, 1_800_000_000).to_string()),
            3 => (
                "app.date",
                format!("{:02}/{:02}/2024", r.n(1, 12), r.n(1, 28)),
            ),
            4 => (
                "job.schedule",
                format!("{} */{} * * *", r.n(0, 59), r.n(2, 12)),
            ),
            _ => ("app.duration", format!("{} ms", r.n(1, 90_000))),
        };
        out.push(("time", key, v));
    }
    for _ in 0..25 {
        let (key, v) = match r.n(0, 9) {
            0 => (
                "log.message",
                format!("Processed {} items in {} ms", r.n(1, 100_000), r.n(1, 9999)),
            ),
            1 => (
                "log.message",
                format!("Retrying in {}s (attempt {} of 5)", r.n(1, 30), r.n(1, 5)),
            ),
            2 => (
                "log.message",
                format!(
                    "cache hit ratio {}.{}% over {} requests",
                    r.n(50, 99),
                    r.n(0, 9),
                    r.n(100, 99999)
                ),
            ),
            3 => (
                "db.statement",
                format!(
                    "SELECT id, name, price FROM products WHERE category_id = ? ORDER BY {} LIMIT ?",
                    r.pick(&["price", "name", "created_at"])
                ),
            ),
            4 => (
                "exception.message",
                format!("Connection refused: db-{}.internal:5432", r.n(1, 9)),
            ),
            5 => (
                "exception.stacktrace",
                format!(
                    "at com.example.checkout.CartService.addItem(CartService.java:{})\nat com.example.checkout.CartController.post(CartController.java:{})",
                    r.n(10, 900),
                    r.n(10, 900)
                ),
            ),
            6 => (
                "log.message",
                format!(
                    "GET /api/v1/orders/{} 200 OK in {} ms",
                    r.digits(7),
                    r.n(1, 999)
                ),
            ),
            7 => (
                "log.message",
                format!(
                    "Password reset email queued for user {}",
                    r.n(1000, 999_999)
                ),
            ),
            8 => (
                "log.message",
                format!("token bucket refilled: {} tokens available", r.n(1, 500)),
            ),
            _ => (
                "log.message",
                format!(
                    "build {}.{}.{} deployed to eu-west-{}",
                    r.n(1, 9),
                    r.n(0, 40),
                    r.n(0, 300),
                    r.n(1, 3)
                ),
            ),
        };
        out.push(("message", key, v));
    }
    for _ in 0..15 {
        let (key, v) = match r.n(0, 6) {
            0 => (
                "url.full",
                format!(
                    "https://shop.example.com/cart?item={}&qty={}",
                    r.n(1000, 99999),
                    r.n(1, 9)
                ),
            ),
            1 => ("http.route", "/api/v1/orders/{order_id}/items".to_string()),
            2 => (
                "url.path",
                format!(
                    "/api/v1/products/{}/reviews",
                    r.pick(&["blue-running-shoes", "usb-c-cable-2m", "espresso-machine"])
                ),
            ),
            3 => (
                "url.query",
                format!(
                    "page={}&per_page={}&sort=created_at",
                    r.n(1, 50),
                    r.pick(&["20", "50", "100"])
                ),
            ),
            4 => (
                "server.address",
                format!("{}.internal", r.pick(&["orders-db", "cache", "inventory"])),
            ),
            5 => (
                "url.full",
                format!("https://cdn.example.net/assets/app.{}.js", r.hex(8)),
            ),
            _ => (
                "container.image.name",
                format!(
                    "ghcr.io/acme/checkout:1.{}.{}@sha256:{}",
                    r.n(0, 9),
                    r.n(0, 9),
                    r.hex(64)
                ),
            ),
        };
        out.push(("url / route / image", key, v));
    }
    for _ in 0..15 {
        let (key, v) = match r.n(0, 4) {
            0 => ("app.price", format!("{}.{:02}", r.n(1, 999), r.n(0, 99))),
            1 => (
                "app.total",
                format!("{},{:03}.{:02} USD", r.n(1, 99), r.n(0, 999), r.n(0, 99)),
            ),
            2 => ("geo.location", format!("{}.{}", r.n(10, 60), r.digits(4))),
            3 => ("app.discount", format!("{}% off", r.n(5, 70))),
            _ => ("app.weight", format!("{}.{} kg", r.n(0, 40), r.n(0, 9))),
        };
        out.push(("number", key, v));
    }
    for _ in 0..15 {
        let v = match r.n(0, 4) {
            0 => format!("running shoes size {}", r.n(5, 13)),
            1 => format!(
                "{}k tv {} inch",
                r.pick(&["4", "8"]),
                r.pick(&["43", "55", "65"])
            ),
            2 => format!(
                "iphone {} pro max {}gb",
                r.n(12, 16),
                r.pick(&["128", "256", "512"])
            ),
            3 => format!("order by price {}", r.pick(&["asc", "desc"])),
            _ => format!("usb c cable {} m", r.n(1, 3)),
        };
        out.push(("search term", "app.search.query", v));
    }
    for _ in 0..15 {
        let (key, v) = match r.n(0, 5) {
            0 => (
                "app.product.isbn",
                format!(
                    "978-{}-{}-{}-{}",
                    r.n(0, 9),
                    r.digits(2),
                    r.digits(6),
                    r.n(0, 9)
                ),
            ),
            1 => (
                "app.part_number",
                format!("PN {}-{}-{}", r.digits(4), r.digits(3), r.digits(3)),
            ),
            2 => (
                "app.model",
                format!("{}-{}{}", r.chars(UPPER, 3), r.digits(4), r.chars(UPPER, 1)),
            ),
            3 => (
                "app.batch",
                format!("LOT{}{}", r.digits(6), r.chars(UPPER, 2)),
            ),
            4 => ("app.ticket", format!("JIRA-{}", r.digits(5))),
            _ => ("app.serial", format!("SN{}", r.digits(11))),
        };
        out.push(("product code", key, v));
    }
    for _ in 0..20 {
        let (key, v) = match r.n(0, 9) {
            0 => (
                "cloud.availability_zone",
                format!(
                    "{}-{}-{}{}",
                    r.pick(&["us", "eu", "ap"]),
                    r.pick(&["east", "west", "central"]),
                    r.n(1, 3),
                    r.pick(&["a", "b", "c"])
                ),
            ),
            1 => (
                "k8s.deployment.name",
                format!(
                    "{}-{}",
                    r.pick(&["checkout", "payments", "search"]),
                    r.pick(&["api", "worker", "v2"])
                ),
            ),
            2 => (
                "messaging.destination.name",
                format!(
                    "{}.{}.v{}",
                    r.pick(&["orders", "payments"]),
                    r.pick(&["created", "settled"]),
                    r.n(1, 3)
                ),
            ),
            3 => (
                "file.path",
                format!(
                    "/var/lib/app/data/2024/{:02}/{:02}/part-{:05}.parquet",
                    r.n(1, 12),
                    r.n(1, 28),
                    r.n(0, 99999)
                ),
            ),
            4 => (
                "http.request.header.accept-language",
                format!(
                    "{},en;q=0.{}",
                    r.pick(&["en-US", "de-DE", "fr-FR"]),
                    r.n(5, 9)
                ),
            ),
            5 => ("http.response.header.etag", format!("\"{}\"", r.hex(40))),
            6 => (
                "http.response.header.cache-control",
                format!("max-age={}, public", r.n(60, 86400)),
            ),
            7 => match r.n(0, 2) {
                0 => (
                    "graphql.document",
                    "query GetCart($id: ID!) { cart(id: $id) { items { sku qty price } } }"
                        .to_string(),
                ),
                1 => (
                    "app.package.license",
                    r.pick(&["Apache-2.0", "MIT", "BSD-3-Clause", "MPL-2.0"])
                        .to_string(),
                ),
                _ => (
                    "user.last_login",
                    format!(
                        "2024-{:02}-{:02}T{:02}:{:02}:00Z",
                        r.n(1, 12),
                        r.n(1, 28),
                        r.n(0, 23),
                        r.n(0, 59)
                    ),
                ),
            },
            8 => (
                "feature_flag.key",
                format!(
                    "{}-{}",
                    r.pick(&["new-checkout", "fast-search", "dark-mode"]),
                    r.pick(&["rollout", "beta"])
                ),
            ),
            _ => (
                "rpc.method",
                r.pick(&["GetOrder", "ListItems", "SettlePayment"])
                    .to_string(),
            ),
        };
        out.push(("infrastructure / protocol", key, v));
    }
    out
}

/// Numbers sent as ints: (key, value).
fn int_cases(r: &mut Rng) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for _ in 0..30 {
        out.push(match r.n(0, 7) {
            0 => (
                "http.response.status_code",
                *[200i64, 201, 204, 301, 404, 500]
                    .get(r.n(0, 5) as usize)
                    .unwrap(),
            ),
            1 => ("server.port", r.n(1024, 65535) as i64),
            2 => ("http.response.body.size", r.n(0, 5_000_000) as i64),
            3 => (
                "app.epoch_ms",
                r.n(1_600_000_000_000, 1_800_000_000_000) as i64,
            ),
            4 => ("messaging.kafka.offset", r.n(0, 90_000_000_000) as i64),
            5 => ("db.response.returned_rows", r.n(0, 10_000) as i64),
            6 => ("order.id", r.n(100_000_000, 9_999_999_999) as i64),
            _ => ("thread.id", r.n(1, 90_000) as i64),
        });
    }
    out
}

#[test]
fn ordinary_values_survive_redaction() {
    let mut r = Rng(0x6f72_6469_6e61_7279);
    let cases = cases(&mut r);
    let ints = int_cases(&mut r);
    let mut attributes: Vec<KeyValue> = cases.iter().map(|(_, k, v)| kv(k, v)).collect();
    attributes.extend(ints.iter().map(|(k, v)| KeyValue {
        key: (*k).into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(*v)),
        }),
        ..Default::default()
    }));
    let attrs = redact_attributes("checkout", attributes);
    let mut by_family: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    let mut changed = Vec::new();
    for (i, (family, key, value)) in cases.iter().enumerate() {
        let after = attrs
            .get(i)
            .filter(|a| a.key == *key)
            .and_then(|a| a.value.as_ref())
            .map(tv_model::any_value_to_string);
        let same = after.as_deref() == Some(value.as_str());
        let e = by_family.entry(family).or_default();
        e[0] += 1;
        e[1] += (!same) as usize;
        if !same {
            changed.push(format!("{family}: {key}={value:?} -> {after:?}"));
        }
    }
    for (j, (key, value)) in ints.iter().enumerate() {
        let after = attrs.get(cases.len() + j).and_then(|a| a.value.as_ref());
        let same =
            matches!(after, Some(AnyValue { value: Some(Value::IntValue(v)) }) if v == value);
        let e = by_family.entry("int").or_default();
        e[0] += 1;
        e[1] += (!same) as usize;
        if !same {
            changed.push(format!("int: {key}={value} -> {after:?}"));
        }
    }
    let total = cases.len() + ints.len();
    println!("{:<26} {:>6} {:>8}", "family", "values", "changed");
    for (f, [n, c]) in &by_family {
        println!("{f:<26} {n:>6} {c:>8}");
    }
    let rate = changed.len() as f64 / total as f64;
    println!(
        "ORDINARY values changed {}/{} = {:.1}%",
        changed.len(),
        total,
        rate * 100.0
    );
    println!("changed: {changed:#?}");
    assert!(
        rate <= 0.01,
        "{:.1}% of ordinary values changed (> 1%): {changed:#?}",
        rate * 100.0
    );
}
