//! Development aid (issue 22): the `|re` patterns the built-in rules' regex index holds, by field, run
//! over the inputs of ordinary HTTP server spans (like `scan_cost`'s) as separate regexes (what
//! the rule engine does, rule by rule, before its candidate index and short-circuits prune) and
//! as `RegexSet`s of `CHUNK` patterns each (one pass per set). A set too large for the lazy DFA's
//! cache falls back to a far slower engine: try `CHUNK=16`, `24`, `48`.
//! `CHUNK=24 cargo run --release -p tv-detect --example regex_set_cost`
use std::time::Instant;

use tv_detect::evalset::{kv_str, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::view::SpanView;

fn main() {
    let mut rules = RuleSet::empty();
    rules.add_builtin();
    let by_field = rules.regex_patterns();
    let n = 5000u64;
    let spans: Vec<_> = (0..n)
        .map(|i| {
            server_span(
                i,
                vec![
                    kv_str("http.request.method", "GET"),
                    kv_str("url.path", &format!("/api/orders/{}", 1000 + i)),
                    kv_str("http.route", "/api/orders/{id}"),
                    kv_str("user.id", &format!("u-{:06}", i % 5000)),
                    kv_str("request.id", &format!("{:032x}", i * 7919)),
                    kv_str("user_agent.original", &format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.1000.10 Safari/537.36", 110 + i % 20)),
                ],
                "GET /api/orders/{id}",
            )
        })
        .collect();
    let mut total_sep = 0.0;
    let mut total_set = 0.0;
    for (field, pats) in by_field {
        let values: Vec<Vec<String>> = spans
            .iter()
            .map(|s| {
                let v = SpanView::new(None, s);
                use rsigma_eval::event::{Event, EventValue};
                match v.get_field(field) {
                    Some(EventValue::Array(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(|c| c.into_owned()))
                        .collect(),
                    Some(x) => x.as_str().map(|c| vec![c.into_owned()]).unwrap_or_default(),
                    None => vec![],
                }
            })
            .collect();
        let seps: Vec<regex::Regex> = pats.iter().map(|p| regex::Regex::new(p).unwrap()).collect();
        let chunk: usize = std::env::var("CHUNK")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1000);
        let sets: Vec<regex::RegexSet> = pats
            .chunks(chunk)
            .map(|c| regex::RegexSet::new(c).unwrap())
            .collect();
        let mut hits = (0, 0);
        let t = Instant::now();
        for vs in &values {
            for v in vs {
                hits.0 += seps.iter().filter(|r| r.is_match(v)).count();
            }
        }
        let sep = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for vs in &values {
            for v in vs {
                hits.1 += sets
                    .iter()
                    .map(|set| set.matches(v).iter().count())
                    .sum::<usize>();
            }
        }
        let st = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let index = tv_detect::regex_index::RegexIndex::new(pats).unwrap();
        let mut hits_idx = 0;
        let mut buf = Vec::new();
        let t = Instant::now();
        for vs in &values {
            for v in vs {
                buf.clear();
                index.matches(v, &mut buf);
                hits_idx += buf.len();
            }
        }
        let ix = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{field:20} index (calibrated chunks) {ix:.2} us/span (hits {hits_idx})");
        total_sep += sep;
        total_set += st;
        println!(
            "{field:20} {:3} patterns, {:.1} values/span: separate {sep:.2} us/span, set {st:.2} us/span (hits {} / {})",
            pats.len(),
            values.iter().map(|v| v.len()).sum::<usize>() as f64 / n as f64,
            hits.0,
            hits.1
        );
    }
    println!("total: separate {total_sep:.2} us/span, set {total_set:.2} us/span");
}
