//! Issue 17: attacks travel in every field that carries request data, not only the query
//! string and path: bodies under their semantic-convention names, message payloads, GraphQL
//! string arguments, gRPC metadata, the fragment, a server's raw request line, an exception
//! quoting the input; and scanners whose agents do not carry their short names. The same
//! fields holding ordinary content raise nothing.

use tv_detect::evalset::{kv_str, request, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};
use tv_model::otlp::{KeyValue, Span, span};

fn classes(sig: &Signatures, span: Span) -> Vec<String> {
    let req = request("web", vec![span]);
    let mut out: Vec<String> = sig
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
    out.sort();
    out.dedup();
    out
}

fn with(attrs: Vec<KeyValue>) -> Span {
    server_span(1, attrs, "POST /api")
}

#[test]
fn attacks_in_every_request_field_are_seen() {
    let sig = Signatures::new(RuleSet::builtin());
    let sqli = "1' UNION SELECT password FROM users--";
    let mut exception = server_span(2, vec![], "GET /items");
    exception.events.push(span::Event {
        name: "exception".into(),
        attributes: vec![kv_str("exception.message", &format!("invalid id {sqli}"))],
        ..Default::default()
    });
    let cases: Vec<(&str, Span)> = vec![
        (
            "http.request.body.content",
            with(vec![kv_str(
                "http.request.body.content",
                &format!(r#"{{"id":"{sqli}"}}"#),
            )]),
        ),
        (
            "messaging.message.body",
            with(vec![kv_str(
                "messaging.message.body",
                &format!("id={sqli}"),
            )]),
        ),
        (
            "graphql.document",
            with(vec![kv_str(
                "graphql.document",
                &format!(r#"query {{ user(id: "{sqli}") {{ name }} }}"#),
            )]),
        ),
        (
            "rpc metadata",
            with(vec![kv_str("rpc.grpc.request.metadata.x-user", sqli)]),
        ),
        (
            "url.fragment",
            with(vec![kv_str(
                "url.fragment",
                "<script>alert(document.cookie)</script>",
            )]),
        ),
        (
            "span name",
            server_span(
                3,
                vec![],
                "GET /search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            ),
        ),
        ("exception.message", exception),
    ];
    for (field, span) in cases {
        let fired = classes(&sig, span);
        assert!(!fired.is_empty(), "nothing fired for an attack in {field}");
    }
    for ua in [
        "Fuzz Faster U Fool v2.1.0-dev",
        "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
        "Expanse, a Palo Alto Networks company, searches across the global IPv4 space",
        "dirsearch/0.4.3",
    ] {
        let fired = classes(&sig, with(vec![kv_str("user_agent.original", ua)]));
        assert!(
            fired.contains(&"tv-scanner-user-agent".to_string()),
            "{ua}: {fired:?}"
        );
    }
}

#[test]
fn ordinary_content_in_those_fields_raises_nothing() {
    let sig = Signatures::new(RuleSet::builtin());
    let mut db = server_span(4, vec![], "SELECT * FROM users WHERE name = 'x'");
    db.kind = 3;
    let cases: Vec<Span> = vec![
        with(vec![kv_str(
            "http.request.body.content",
            r#"{"name":"Jane","items":[{"sku":"A-1","qty":2}],"note":"leave at the door"}"#,
        )]),
        with(vec![kv_str(
            "graphql.document",
            r#"query Search($q: String!) { products(query: $q, first: 20, orderBy: "price") { edges { node { id name } } } }"#,
        )]),
        with(vec![kv_str("messaging.message.body", "order 42 shipped")]),
        with(vec![kv_str("url.fragment", "section-2")]),
        with(vec![kv_str(
            "rpc.grpc.request.metadata.x-request-id",
            "7f3a-22",
        )]),
        server_span(5, vec![], "GET /api/users/{id}"),
        db,
    ];
    for span in cases {
        let name = span.name.clone();
        let fired = classes(&sig, span);
        assert!(fired.is_empty(), "{name}: {fired:?}");
    }
}

/// Payloads written so that a rule reading the text as sent does not see them: HTML character
/// references without semicolons, JavaScript escapes (as a JSON API or a JavaScript sink reads
/// them), base64 (a whole value, a `data:` URI) and base64 of an escaped payload. Each reaches
/// the rules decoded, in a JSON body, a message payload and a query parameter.
#[test]
fn escaped_and_base64_payloads_are_decoded_before_the_rules() {
    let sig = Signatures::new(RuleSet::builtin());
    let xss = "tv-xss-syntax";
    for (payload, rule) in [
        (
            "<img src=x onerror=&#97;&#108;&#101;&#114;&#116;&#40;1&#41;>",
            xss,
        ),
        ("alert&#x28;document.cookie&#x29", xss),
        (r"\u003cscript\u003ealert(1)\u003c/script\u003e", xss),
        (r"\x3csvg onload=alert(1)\x3e", xss),
        ("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", xss),
        (
            "<a href=\"data:text/html;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\">x</a>",
            xss,
        ),
        // base64 of `&lt;script&gt;alert(1)&lt;/script&gt;`
        ("Jmx0O3NjcmlwdCZndDthbGVydCgxKSZsdDsvc2NyaXB0Jmd0Ow==", xss),
        // base64 of `' UNION SELECT password FROM users--`
        (
            "JyBVTklPTiBTRUxFQ1QgcGFzc3dvcmQgRlJPTSB1c2Vycy0t",
            "tv-sqli-syntax",
        ),
        // base64 of `;cat /etc/passwd`
        ("O2NhdCAvZXRjL3Bhc3N3ZA==", "tv-rce-command"),
    ] {
        let json = serde_json::json!({ "comment": payload }).to_string();
        let query = format!(
            "q={}",
            percent_encoding::utf8_percent_encode(payload, percent_encoding::NON_ALPHANUMERIC)
        );
        for (field, span) in [
            (
                "JSON body",
                with(vec![
                    kv_str("http.request.header.content-type", "application/json"),
                    kv_str("http.request.body.content", &json),
                ]),
            ),
            (
                "message payload",
                with(vec![kv_str("messaging.message.body", &json)]),
            ),
            ("query", with(vec![kv_str("url.query", &query)])),
        ] {
            let fired = classes(&sig, span);
            assert!(
                fired.iter().any(|r| r == rule),
                "{rule} not raised for {payload:?} in the {field}: {fired:?}"
            );
        }
    }
}
