//! Time every `|re` pattern of a rules directory (default: the built-in pack) alone, and each
//! list of them as the one set the evaluator compiles per field, on the inputs of an ordinary
//! HTTP span (a Chrome user agent, an API path, a query); show the slowest and the largest.
//! `cargo run --release -p tv-detect --example regex_cost [-- DIR]`
use std::time::Instant;

const INPUTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.1000.10 Safari/537.36",
    "/api/orders/1042",
    "page=2&sort=asc&q=red+running+shoes",
];

fn main() {
    let dir = std::env::args_os().nth(1).map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"),
        std::path::PathBuf::from,
    );
    // (rule id, the patterns of one field)
    let mut lists: Vec<(String, Vec<String>)> = Vec::new();
    for f in tv_detect::files_under(&dir).unwrap() {
        if !matches!(f.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in text.split("\n---") {
            let Ok(v) = yaml_serde::from_str::<yaml_serde::Value>(doc) else {
                continue;
            };
            let id = v["id"].as_str().unwrap_or("?").to_owned();
            let mut ls = Vec::new();
            pattern_lists(&v["detection"], &mut ls);
            lists.extend(ls.into_iter().map(|l| (id.clone(), l)));
        }
    }
    let mut sets = Vec::new();
    let mut singles = Vec::new();
    for (id, l) in &lists {
        let Ok(set) = regex::RegexSet::new(l) else {
            println!("{id}: a pattern does not compile");
            continue;
        };
        sets.push((per_span_us(|i| set.is_match(i)), id, l.len()));
        for p in l {
            let re = regex::Regex::new(p).unwrap();
            singles.push((per_span_us(|i| re.is_match(i)), id, p, min_size(p)));
        }
    }
    sets.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = sets.iter().map(|s| s.0).sum();
    println!("{} lists, {total:.1} us per span for all", sets.len());
    for (us, id, n) in sets.iter().take(8) {
        println!("list   {us:8.2} us  {id} ({n} patterns)");
    }
    singles.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (us, id, p, _) in singles.iter().take(8) {
        println!("single {us:8.2} us  {id}  {}", &p[..p.len().min(90)]);
    }
    singles.sort_by_key(|s| std::cmp::Reverse(s.3));
    for (_, id, p, size) in singles.iter().take(5) {
        println!(
            "size {:>6} KiB  {id}  {}",
            size / 1024,
            &p[..p.len().min(90)]
        );
    }
}

/// Microseconds per span (all [`INPUTS`]) for one matcher.
fn per_span_us(m: impl Fn(&str) -> bool) -> f64 {
    let t0 = Instant::now();
    for _ in 0..500 {
        for i in INPUTS {
            std::hint::black_box(m(i));
        }
    }
    t0.elapsed().as_secs_f64() * 1e6 / 500.0
}

/// The pattern lists under every `...|re` key.
fn pattern_lists(v: &yaml_serde::Value, out: &mut Vec<Vec<String>>) {
    match v {
        yaml_serde::Value::Sequence(items) => items.iter().for_each(|i| pattern_lists(i, out)),
        yaml_serde::Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str().is_some_and(|k| k.contains("|re")) {
                    out.push(match v {
                        yaml_serde::Value::String(s) => vec![s.clone()],
                        yaml_serde::Value::Sequence(s) => s
                            .iter()
                            .filter_map(|p| p.as_str().map(str::to_owned))
                            .collect(),
                        _ => vec![],
                    });
                } else {
                    pattern_lists(v, out);
                }
            }
        }
        _ => {}
    }
}

/// The smallest `size_limit` the pattern compiles under.
fn min_size(p: &str) -> usize {
    let (mut lo, mut hi) = (1usize, 1usize << 28);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if regex::RegexBuilder::new(p).size_limit(mid).build().is_ok() {
            hi = mid
        } else {
            lo = mid + 1
        }
    }
    lo
}
