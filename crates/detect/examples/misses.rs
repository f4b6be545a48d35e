//! Development aid: print the cases of one set/class that the built-in rules miss (or, for
//! benign sets, flag). `cargo run --release -p tv-detect --example misses -- crs sqli 40`
use std::path::PathBuf;

use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures, evalset};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (set, class, limit) = (
        args[1].as_str(),
        args[2].as_str(),
        args.get(3).and_then(|s| s.parse().ok()).unwrap_or(40usize),
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evaldata");
    let cases = match set {
        "crs" => evalset::crs(&root.join("crs-regression/tests"), &["93", "94"]).unwrap(),
        "patt" => evalset::patt(&root.join("payloadsallthethings")).unwrap().0,
        "libinjection" => evalset::libinjection_benign(&root.join("libinjection")).unwrap(),
        "params" => evalset::common_params_benign(),
        "ordinary" => evalset::ordinary_requests_benign(),
        "presidio" => evalset::presidio_benign(&root.join("presidio-research")).unwrap(),
        _ => evalset::sqlglot_benign(&root.join("sqlglot-benign-sql")).unwrap(),
    };
    let sig = Signatures::new(RuleSet::builtin());
    let mut shown = 0;
    for c in cases.iter().filter(|c| c.class == class) {
        let f = sig.scan(
            Sender {
                tenant: "t",
                principal: None,
            },
            &c.req,
            0,
        );
        let benign = class == evalset::BENIGN;
        if f.is_empty() == benign {
            continue;
        }
        shown += 1;
        if shown > limit {
            break;
        }
        let span = &c.req.resource_spans[0].scope_spans[0].spans[0];
        let attrs: Vec<String> = span
            .attributes
            .iter()
            .filter(|kv| {
                matches!(
                    kv.key.as_str(),
                    "url.path"
                        | "url.query"
                        | "db.statement"
                        | "http.request.body"
                        | "http.request.body.content"
                        | "user_agent.original"
                ) || kv.key.starts_with("http.request.header.cookie")
                    || kv.key.starts_with("http.request.body")
            })
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    tv_model::any_value_to_string(kv.value.as_ref().unwrap())
                )
            })
            .collect();
        let rules: Vec<&str> = f.iter().map(|f| f.analytic_uid.as_str()).collect();
        println!("{} | {} | {:?}", c.group, attrs.join(" "), rules);
        if std::env::var_os("MISSES_PATTERNS").is_some() {
            for e in f.iter().flat_map(|f| &f.evidence) {
                println!("    {} {:?}", e.field, e.pattern);
            }
        }
    }
}
