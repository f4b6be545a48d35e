//! The SigmaHQ web rules in ../shared/evaldata/sigma-web-rules (DRL 1.1) load, the ones with no
//! trace equivalent are reported with the reason, and the loaded ones fire on spans through the
//! Sigma-web-field -> OpenTelemetry mapping.
use std::path::PathBuf;

use tv_detect::evalset::{kv_str, request, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};

fn rules_dir() -> Option<PathBuf> {
    tv_detect::evalset::dev_data(env!("CARGO_MANIFEST_DIR"))
        .map(|d| d.join("sigma-web-rules/rules"))
}

fn fired(sig: &Signatures, attrs: Vec<tv_model::otlp::KeyValue>) -> Vec<String> {
    let req = request("web", vec![server_span(1, attrs, "GET /")]);
    let mut ids: Vec<String> = sig
        .scan(
            Sender {
                tenant: "t",
                principal: None,
            },
            &req,
            0,
        )
        .into_iter()
        .map(|f| f.analytic_uid)
        .collect();
    ids.sort();
    ids
}

#[test]
fn sigma_web_rules_load_and_fire_on_spans() {
    let Some(dir) = rules_dir() else { return };
    let mut rules = RuleSet::empty();
    let n = rules.add_dir(&dir).unwrap();
    for u in &rules.unsupported {
        println!("unsupported: {} ({:?}): {}", u.source, u.title, u.reason);
    }
    assert_eq!(n, 42, "loaded");
    assert_eq!(rules.unsupported.len(), 3);
    assert!(rules.unsupported.iter().all(|u| {
        (u.source.contains("/apache/") || u.source.contains("/nginx/"))
            && u.reason.contains("spans carry no such lines")
    }));
    let sig = Signatures::new(rules);
    // c-useragent|startswith (proxy_ua_rclone.yml).
    assert!(
        fired(&sig, vec![kv_str("user_agent.original", "rclone/v1.66.0")])
            .contains(&"2c03648b-e081-41a5-b9fb-7d854a915091".to_owned())
    );
    // cs-uri-query|contains, raw encoded form (web_path_traversal_exploitation_attempt.yml).
    let hits = fired(
        &sig,
        vec![
            kv_str("url.path", "/download"),
            kv_str("url.query", "file=..%252f..%252f..%252fetc%252fpasswd"),
        ],
    );
    assert!(!hits.is_empty(), "path traversal rule did not fire");
    // An ordinary request fires none of them.
    assert_eq!(
        fired(
            &sig,
            vec![
                kv_str("url.path", "/products"),
                kv_str("url.query", "page=2"),
                kv_str(
                    "user_agent.original",
                    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
                ),
                kv_str("http.request.method", "GET"),
            ],
        ),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_fields_and_bad_documents_are_reported_not_fatal() {
    let mut rules = RuleSet::empty();
    rules.add_yaml(
        "win.yml",
        "title: Win\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: '\\\\cmd.exe'\n  condition: sel\n",
    );
    rules.add_yaml(
        "field.yml",
        "title: Field\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    TargetFilename: x\n  condition: sel\n",
    );
    rules.add_yaml("broken.yml", "title: [unclosed\n");
    rules.add_yaml(
        "regex.yml",
        "title: Regex\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    url.query|re: '(?<=a)b'\n  condition: sel\n",
    );
    rules.add_yaml(
        "ok.yml",
        "title: Ok\nid: ok-1\nlogsource:\n  category: webserver\ndetection:\n  sel:\n    url.query|base64offset|contains: 'secret'\n  condition: sel\n",
    );
    let reasons: Vec<String> = rules
        .unsupported
        .iter()
        .map(|u| format!("{}: {}", u.source, u.reason))
        .collect();
    println!("{reasons:#?}");
    assert_eq!(rules.rules().len(), 1, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("win.yml") && r.contains("product 'windows'"))
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("field.yml") && r.contains("TargetFilename"))
    );
    assert!(reasons.iter().any(|r| r.starts_with("broken.yml")));
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("regex.yml") && r.contains("compile"))
    );
}

/// `detection.disabled_rules`: a switched-off rule no longer fires, the others still do, and an
/// id that no loaded file has is reported (the server refuses to start on it).
#[test]
fn disabled_rules_are_not_loaded_and_unknown_ids_are_reported() {
    let probe = || {
        vec![
            kv_str("url.path", "/login"),
            kv_str("url.query", "user=admin*&next=%2F"),
        ]
    };
    let all = Signatures::new(RuleSet::builtin());
    assert_eq!(fired(&all, probe()), ["tv-ldapi-probe"]);

    let mut rules = RuleSet::empty();
    rules.disable(["tv-ldapi-probe".to_owned(), "tv-no-such-rule".to_owned()]);
    rules.add_builtin();
    assert_eq!(rules.disabled_unknown(), ["tv-no-such-rule"]);
    assert!(rules.rules().iter().all(|r| r.id != "tv-ldapi-probe"));
    assert_eq!(rules.rules().len() + 1, all.rules.rules().len());
    let sig = Signatures::new(rules);
    assert!(fired(&sig, probe()).is_empty());
    let sqli = vec![kv_str(
        "url.query",
        "id=1%27%20UNION%20SELECT%20pass%20FROM%20users--",
    )];
    assert!(fired(&sig, sqli).iter().any(|r| r.starts_with("tv-sqli")));

    // Switching off a rule that could not load anyway silences its report.
    let apache = "title: Segfault\nid: op-segfault\nlogsource:\n  service: apache\ndetection:\n  keywords:\n    - 'segfault'\n  condition: keywords\n";
    let mut rules = RuleSet::empty();
    rules.add_yaml("op.yml", apache);
    assert_eq!(rules.unsupported.len(), 1);
    let mut rules = RuleSet::empty();
    rules.disable(["op-segfault".to_owned()]);
    rules.add_yaml("op.yml", apache);
    assert!(rules.unsupported.is_empty() && rules.disabled_unknown().is_empty());
}

/// An operator rule whose regular expression would compile to megabytes (a Unicode class under a
/// counted repetition) is refused with the reason; the same rule with an ASCII class loads.
#[test]
fn regexes_that_would_slow_every_span_are_refused() {
    let rule = |class: &str| {
        format!(
            "title: Long token\nid: op-long-token\nlogsource:\n  product: opentelemetry\n  category: span\ndetection:\n  selection:\n    url.query|re: 'token={class}{{1,80}}'\n  condition: selection\nlevel: low\n"
        )
    };
    let mut rules = RuleSet::empty();
    rules.add_yaml("op.yml", &rule("\\w"));
    assert!(rules.rules().is_empty());
    assert_eq!(rules.unsupported.len(), 1);
    let reason = &rules.unsupported[0].reason;
    assert!(
        reason.contains("compiles to more than 1024 KiB") && reason.contains("[a-z0-9_]"),
        "{reason}"
    );
    let mut rules = RuleSet::empty();
    rules.add_yaml("op.yml", &rule("[a-z0-9_]"));
    assert!(rules.unsupported.is_empty(), "{:?}", rules.unsupported);
    let sig = Signatures::new(rules);
    assert_eq!(
        fired(&sig, vec![kv_str("url.query", "token=abc123")]),
        ["op-long-token"]
    );
}
