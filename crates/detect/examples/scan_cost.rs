//! Development aid: time the signature stage on ordinary HTTP server spans (like
//! `tracevault bench ingest` sends). `cargo run --release -p tv-detect --example scan_cost`
use std::time::Instant;

use tv_detect::evalset::{kv_str, request, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};

fn main() {
    // SCAN_COST_DISABLE=tv-sqli-probe,... measures the pack without some rules.
    let mut rules = RuleSet::empty();
    if let Ok(ids) = std::env::var("SCAN_COST_DISABLE") {
        rules.disable(ids.split(',').map(str::to_owned));
    }
    rules.add_builtin();
    let sig = Signatures::new(rules);
    let n = 20_000u64;
    let spans: Vec<_> = (0..n)
        .map(|i| {
            server_span(
                i,
                vec![
                    kv_str("http.request.method", "GET"),
                    kv_str("url.path", &format!("/api/orders/{}", 1000 + i)),
                    kv_str("http.route", "/api/orders/{id}"),
                    kv_str("user.id", &format!("u-{:06}", i % 5000)),
                    kv_str("server.address", "10.1.2.3"),
                    kv_str("request.id", &format!("{:032x}", i * 7919)),
                    kv_str(
                        "user_agent.original",
                        &format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.1000.10 Safari/537.36", 110 + i % 20),
                    ),
                    kv_str("client.address", "192.0.2.7"),
                ],
                "GET /api/orders/{id}",
            )
        })
        .collect();
    let req = request("shop", spans);
    for round in 0..3 {
        let t = Instant::now();
        let f = sig.scan(
            Sender {
                tenant: "t",
                principal: None,
            },
            &req,
            0,
        );
        let e = t.elapsed();
        println!(
            "round {round}: {n} spans in {:.1} ms: {:.2} us/span, {} findings",
            e.as_secs_f64() * 1e3,
            e.as_secs_f64() * 1e6 / n as f64,
            f.len()
        );
    }
}
