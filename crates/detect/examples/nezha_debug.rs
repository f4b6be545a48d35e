//! Development aid: the behavioural findings for Nezha trace files.
//! `cargo run --release -p tv-detect --example nezha_debug -- FILE...`
use tv_detect::behaviour::{BatchInfo, Behaviour, BehaviourConfig, facts};
use tv_detect::evalset;

fn main() {
    let mut spans = Vec::new();
    for f in std::env::args().skip(1) {
        spans.extend(evalset::nezha_csv(std::path::Path::new(&f)).unwrap());
    }
    spans.sort_by_key(|s| s.start);
    let req = evalset::nezha_request(&spans, 0);
    let mut all = facts(&req);
    all.sort_by_key(|s| s.end);
    let mut b = Behaviour::new(BehaviourConfig {
        learning_secs: 30,
        ..Default::default()
    });
    let mut i = 0;
    while i < all.len() {
        let sec = all[i].end / 1_000_000_000;
        let j = all[i..]
            .iter()
            .position(|s| s.end / 1_000_000_000 != sec)
            .map_or(all.len(), |p| i + p);
        for f in b.observe(
            BatchInfo {
                tenant: "n",
                principal: None,
                received_unix_nano: (sec + 1) * 1_000_000_000,
            },
            &all[i..j],
        ) {
            println!(
                "{} {} {}",
                f.time_unix_nano / 1_000_000_000,
                f.analytic_uid,
                f.message
            );
        }
        i = j;
    }
    let t = &b.tenants["n"];
    for (k, e) in &t.learned.latency {
        if k.contains("Frontend/Recv")
            || k.contains("frontend\u{1f}hipstershop.CurrencyService/Convert")
        {
            println!(
                "baseline {k:?}: median {:.1} ms dev {:.2} n {}",
                e.mean.exp(),
                e.dev,
                e.n
            );
        }
    }
    println!("late spans {}", t.late_spans);
}
