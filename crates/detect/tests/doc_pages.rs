//! Every finding a built-in rule or detector makes links a page under `docs/findings/` (shown by
//! `tracevault query findings` and in the API's `remediation`): the page must exist, and say
//! how to tune the rule.

use std::path::Path;

/// The ids of the built-in Sigma rules and of the detectors (`"tv-..."` literals in the
/// detector sources), read from the sources so a new one cannot miss its page.
fn builtin_ids() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ids = Vec::new();
    for e in std::fs::read_dir(root.join("rules")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("id:") {
                ids.push(id.trim().to_owned());
            }
        }
    }
    for src in ["src/behaviour.rs"] {
        let text = std::fs::read_to_string(root.join(src)).unwrap();
        for (at, _) in text.match_indices("\"tv-") {
            let rest = &text[at + 1..];
            let Some(end) = rest.find('"') else { continue };
            let id = &rest[..end];
            if id.len() > 5 && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                ids.push(id.to_owned());
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn every_builtin_rule_and_detector_has_a_page() {
    let ids = builtin_ids();
    assert!(ids.len() >= 25, "found only {ids:?}");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/findings");
    let index = std::fs::read_to_string(docs.join("README.md")).expect("docs/findings/README.md");
    for id in &ids {
        let page = docs.join(format!("{id}.md"));
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|_| panic!("{id} has no page {}", page.display()));
        assert!(text.starts_with(&format!("# {id}")), "{id}: title line");
        assert!(
            text.contains("disabled_rules") || text.contains("[detection.behaviour]"),
            "{id}: the page says how to tune or disable it"
        );
        assert!(
            index.contains(id.as_str()),
            "{id} is missing from the index"
        );
    }
}

#[test]
fn findings_name_their_page() {
    let f = tv_detect::finding::Finding {
        uid: "ab".into(),
        group: "g".into(),
        stage: tv_detect::finding::Stage::Signature,
        analytic_uid: "tv-sqli-syntax".into(),
        title: "SQL injection".into(),
        severity: tv_detect::finding::Severity::High,
        classes: vec![],
        attacks: vec![],
        tenant: "acme".into(),
        time_unix_nano: 1,
        detected_unix_nano: 2,
        trace_id: String::new(),
        span_id: String::new(),
        service: String::new(),
        operation: String::new(),
        principal: None,
        evidence: vec![],
        tags: vec![],
        count: 1,
        message: String::new(),
    };
    let v = f.to_ocsf();
    assert_eq!(
        v["remediation"]["references"][0],
        "docs/findings/tv-sqli-syntax.md"
    );
    let operator = tv_detect::finding::Finding {
        analytic_uid: "acme-login-abuse".into(),
        ..f
    };
    assert!(operator.to_ocsf().get("remediation").is_none());
}
