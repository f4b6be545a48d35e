//! Attack recall per request-carrying field (issue 17): the PayloadsAllTheThings payloads of every
//! class placed the way applications carry them — a query parameter (the placement the
//! development-set tables use), a JSON body field, a form body, a message payload, a GraphQL
//! string argument, gRPC metadata, and an exception message quoting the input — each with its
//! own encoding. Prints recall per class and field; asserts that no field falls more than ten
//! points below the query placement of the same payloads (a field the rules do not read, or
//! read with the wrong context, shows up here).

use std::collections::BTreeMap;

use tv_detect::evalset::{self, kv_str, query_span, request, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};
use tv_model::otlp::{Span, span};

const FIELDS: &[&str] = &[
    "query",
    "json body",
    "form body",
    "message",
    "graphql",
    "grpc metadata",
    "exception",
];

fn form_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn placed(field: &str, n: u64, payload: &str) -> Span {
    match field {
        "query" => query_span(n, payload, false),
        "json body" => server_span(
            n,
            vec![
                kv_str("http.request.method", "POST"),
                kv_str("http.request.header.content-type", "application/json"),
                kv_str(
                    "http.request.body.content",
                    &serde_json::json!({"name": payload, "page": 2}).to_string(),
                ),
            ],
            "POST /api/items",
        ),
        "form body" => server_span(
            n,
            vec![
                kv_str("http.request.method", "POST"),
                kv_str(
                    "http.request.header.content-type",
                    "application/x-www-form-urlencoded",
                ),
                kv_str(
                    "http.request.body.content",
                    &format!("name={}&page=2", form_encode(payload)),
                ),
            ],
            "POST /items",
        ),
        "message" => {
            let mut s = server_span(
                n,
                vec![
                    kv_str("messaging.system", "kafka"),
                    kv_str(
                        "messaging.message.body",
                        &serde_json::json!({"comment": payload}).to_string(),
                    ),
                ],
                "process orders",
            );
            s.kind = 5;
            s
        }
        "graphql" => {
            let lit = serde_json::to_string(payload).unwrap_or_default();
            server_span(
                n,
                vec![kv_str(
                    "graphql.document",
                    &format!("query {{ search(term: {lit}) {{ id }} }}"),
                )],
                "POST /graphql",
            )
        }
        "grpc metadata" => server_span(
            n,
            vec![
                kv_str("rpc.system", "grpc"),
                kv_str("rpc.grpc.request.metadata.x-search", payload),
            ],
            "shop.Catalog/Search",
        ),
        _ => {
            let mut s = server_span(n, vec![], "GET /items");
            s.events.push(span::Event {
                name: "exception".into(),
                attributes: vec![kv_str(
                    "exception.message",
                    &format!("invalid item name: {payload}"),
                )],
                ..Default::default()
            });
            s
        }
    }
}

#[test]
fn attack_recall_holds_in_every_request_field() {
    let Some(root) = evalset::dev_data(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let sig = Signatures::new(RuleSet::builtin());
    let (payloads, _) = evalset::patt_payloads(&root.join("payloadsallthethings")).unwrap();
    // At most 300 payloads per class, spread over its files.
    let mut by_class: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, class, line) in payloads {
        by_class.entry(class).or_default().push(line);
    }
    let mut table: BTreeMap<(String, &str), [usize; 2]> = BTreeMap::new();
    let mut misses: BTreeMap<(String, &str), Vec<String>> = BTreeMap::new();
    let mut n = 10_000u64;
    for (class, payloads) in &by_class {
        let step = (payloads.len() / 300).max(1);
        for p in payloads.iter().step_by(step).take(300) {
            for field in FIELDS {
                n += 1;
                let found = sig.scan(
                    Sender {
                        tenant: "t",
                        principal: None,
                    },
                    &request("web", vec![placed(field, n, p)]),
                    0,
                );
                let e = table.entry((class.clone(), field)).or_default();
                e[0] += 1;
                e[1] += (!found.is_empty()) as usize;
                if found.is_empty() {
                    let m = misses.entry((class.clone(), field)).or_default();
                    if m.len() < 400 {
                        m.push(p.clone());
                    }
                }
            }
        }
    }
    print!("{:<8}", "class");
    for f in FIELDS {
        print!(" {f:>14}");
    }
    println!();
    let mut failures = Vec::new();
    for class in by_class.keys() {
        print!("{class:<8}");
        let rate = |f: &str| {
            let [t, h] = table[&(class.clone(), f)];
            h as f64 * 100.0 / t as f64
        };
        let base = rate("query");
        for f in FIELDS {
            let r = rate(f);
            print!(" {r:>13.1}%");
            if r + 10.0 < base {
                failures.push(format!("{class} in {f}: {r:.1}% vs {base:.1}% as a query"));
            }
        }
        println!();
    }
    if std::env::var("TV_SHOW_MISSES").is_ok() {
        for ((class, field), m) in &misses {
            let q = misses
                .get(&(class.clone(), "query"))
                .cloned()
                .unwrap_or_default();
            let only: Vec<&String> = m.iter().filter(|p| !q.contains(p)).take(15).collect();
            println!("{class} {field}: missed here, found as a query: {only:#?}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
