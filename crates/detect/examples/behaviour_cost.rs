//! Development aid: cost of the behavioural stage per span and memory of its state, on
//! ordinary HTTP spans like `tracevault bench ingest` sends (`--ops N` distinct operations).
//! `cargo run --release -p tv-detect --example behaviour_cost -- 1000`
use std::time::Instant;

/// Counts live heap bytes (the `cap` crate's allocator), so the state's memory is measured.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn live() -> isize {
    ALLOC.allocated() as isize
}

use tv_detect::behaviour::{BatchInfo, Behaviour, BehaviourConfig, facts};
use tv_detect::evalset::{kv_str, request, server_span};

fn main() {
    let ops: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut b = Behaviour::new(BehaviourConfig {
        learning_secs: 0,
        ..Default::default()
    });
    let t0 = 1_700_000_000_000_000_000u64;
    let per_batch = 512u64;
    let batches = 4000u64;
    let before = live();
    let mut spent = 0.0;
    for k in 0..batches {
        let spans: Vec<_> = (0..per_batch)
            .map(|i| {
                let n = k * per_batch + i;
                let mut s = server_span(
                    n,
                    vec![
                        kv_str("http.request.method", "GET"),
                        kv_str("url.path", &format!("/api/{}/{}", n % ops, n)),
                        kv_str("client.address", "192.0.2.7"),
                    ],
                    &format!("GET /api/{}", n % ops),
                );
                // 300 s of event time over the run, 20 ms spans.
                s.start_time_unix_nano = t0 + n * 300_000_000_000 / (batches * per_batch);
                s.end_time_unix_nano = s.start_time_unix_nano + 20_000_000;
                s
            })
            .collect();
        let req = request("svc", spans);
        let t = Instant::now();
        let f = facts(&req);
        b.observe(
            BatchInfo {
                tenant: "t",
                principal: None,
                received_unix_nano: t0 + 400 * 1_000_000_000,
            },
            &f,
        );
        spent += t.elapsed().as_secs_f64();
    }
    let n = batches * per_batch;
    let whole = live() - before;
    let st = &b.tenants["t"];
    let l0 = live();
    let learned = st.learned.clone();
    let learned_bytes = live() - l0;
    println!(
        "{n} spans, {ops} (service, operation) pairs: {:.2} us/span; heap of the tenant's state {:.1} MB (estimate {:.1} MB); learned baselines {} pairs, {:.1} KB = {:.0} KB per 1,000 pairs",
        spent * 1e6 / n as f64,
        whole as f64 / 1e6,
        st.approx_bytes() as f64 / 1e6,
        learned.latency.len(),
        learned_bytes as f64 / 1e3,
        learned_bytes as f64 / learned.latency.len().max(1) as f64,
    );
}
