//! Development aid: how the Nezha outcome depends on where 10 s windows fall (timestamps shifted
//! by 0..9 s). `cargo run --release -p tv-detect --example alignment`
use std::path::PathBuf;

use tv_detect::behaviour::{BatchInfo, Behaviour, BehaviourConfig, facts};
use tv_detect::evalset::{self, NezhaSpan};

fn run(spans: &[NezhaSpan], shift: i64) -> Vec<(u64, String, String)> {
    let req = evalset::nezha_request(spans, shift);
    let mut all = facts(&req);
    all.sort_by_key(|s| s.end);
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let d = BehaviourConfig::default();
    let mut b = Behaviour::new(BehaviourConfig {
        learning_secs: 30,
        k: env("K", d.k),
        latency_min_ratio: env("RATIO", d.latency_min_ratio),
        consecutive_windows: env("CONSEC", d.consecutive_windows as f64) as u32,
        window_secs: env("WIN", d.window_secs as f64) as u64,
        min_volume: env("VOL", d.min_volume as f64) as u64,
        ..d
    });
    let mut out = Vec::new();
    for (sec, batch) in evalset::second_batches(&all) {
        for f in b.observe(
            BatchInfo {
                tenant: "n",
                principal: None,
                received_unix_nano: (sec + 1) * 1_000_000_000,
            },
            batch,
        ) {
            out.push((f.time_unix_nano, f.analytic_uid, f.message));
        }
    }
    out
}

fn main() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evaldata/nezha-traces");
    let d = root.join("rca_data");
    let cases = [
        ("2022-08-22", &["05_27", "05_28"], "2022-08-22 05:27:06"),
        ("2022-08-22", &["07_10", "07_11"], "2022-08-22 07:10:43"),
        ("2022-08-23", &["16_31", "16_32"], "2022-08-23 16:31:35"),
    ];
    let clean =
        evalset::nezha_csv(&root.join("construct_data/2022-08-23/trace/17_00_trace.csv")).unwrap();
    for off in 0..10i64 {
        let shift = off * 1_000_000_000;
        let mut flagged = 0;
        for (day, files, at) in &cases {
            let mut spans = Vec::new();
            for f in files.iter() {
                spans.extend(
                    evalset::nezha_csv(&d.join(day).join(format!("trace/{f}_trace.csv"))).unwrap(),
                );
            }
            spans.sort_by_key(|s| s.start);
            let inject = evalset::utc_nanos(at).unwrap() as i64 + shift;
            let hit = run(&spans, shift).iter().any(|(t, id, _)| {
                id == "tv-behaviour-latency"
                    && (*t as i64) + 90_000_000_000 >= inject
                    && (*t as i64) <= inject + 90_000_000_000
            });
            flagged += hit as u32;
        }
        let fps: Vec<_> = run(&clean, shift)
            .into_iter()
            .filter(|(_, id, _)| id == "tv-behaviour-latency" || id == "tv-behaviour-errors")
            .collect();
        let fp = fps.len();
        for (_, _, m) in &fps {
            println!("   fp: {m}");
        }
        println!(
            "shift {off} s: faults flagged {flagged}/3, fault-free latency/error findings {fp}"
        );
    }
}
