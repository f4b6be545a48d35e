//! Development aid: which rules fire on each line of stdin, sent as a search parameter, a JSON
//! body value and a message payload. `echo "' or 1=1--" | cargo run --release -p tv-detect --example probe`
use std::io::BufRead;

use tv_detect::evalset::{kv_str, query_span, request, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};

fn main() {
    let sig = Signatures::new(RuleSet::builtin());
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        if line.trim().is_empty() {
            continue;
        }
        let json = serde_json::json!({ "q": line }).to_string();
        let places = [
            ("query", query_span(1, &line, false)),
            (
                "body",
                server_span(
                    2,
                    vec![
                        kv_str("http.request.header.content-type", "application/json"),
                        kv_str("http.request.body.content", &json),
                    ],
                    "POST /api/x",
                ),
            ),
            (
                "message",
                server_span(
                    3,
                    vec![kv_str("messaging.message.body", &line)],
                    "process x",
                ),
            ),
        ];
        let mut row = Vec::new();
        for (place, span) in places {
            let found = sig.scan(
                Sender {
                    tenant: "t",
                    principal: None,
                },
                &request("probe", vec![span]),
                0,
            );
            let ids: Vec<&str> = found.iter().map(|f| f.analytic_uid.as_str()).collect();
            if std::env::var_os("PROBE_PATTERNS").is_some() {
                for e in found.iter().flat_map(|f| &f.evidence) {
                    println!("    {place} {} {:?}", e.field, e.pattern);
                }
            }
            row.push(format!(
                "{place}:{}",
                if ids.is_empty() {
                    "-".into()
                } else {
                    ids.join(",")
                }
            ));
        }
        println!("{line}\n    {}", row.join("  "));
    }
}
