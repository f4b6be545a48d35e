//! The engine end to end on OTLP batches: every place a value can hide, the documented precedence,
//! allowlists that fail closed, pseudonyms, and the properties redaction must keep.

use proptest::prelude::*;
use tv_model::otlp::{
    AnyValue, ArrayValue, ExportTraceServiceRequest, InstrumentationScope, KeyValue, KeyValueList,
    Resource, ResourceSpans, ScopeSpans, Span, Status, any_value::Value, span,
};
use tv_redact::{PseudonymKey, Rules, redact};

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(v.into())),
    })
}
fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

fn batch(service: &str, span: Span) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(service)),
                    kv("host.owner", s("ops-oncall@example.com")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    attributes: vec![kv("lib.maintainer", s("dev@example.org"))],
                    ..Default::default()
                }),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const CARD: &str = "4111 1111 1111 1111";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

fn rich_span() -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /users/jane.doe@example.com".into(),
        attributes: vec![
            kv("http.request.method", s("GET")),
            kv("note", s(&format!("paid with {CARD}"))),
            kv(
                "db.statement",
                s("SELECT * FROM users WHERE email = 'jane@example.com' AND id IN (1, 2, 3)"),
            ),
            kv(
                "url.full",
                s(
                    "https://api.example.com/v1/users/12345?token=tok_live_abcdefgh&ref=jane%40example.com",
                ),
            ),
            kv(
                "http.request.header.authorization",
                s(&format!("Bearer {JWT}")),
            ),
            kv("app.db_password", s("hunter2")),
            kv("enduser.id", s("user-8812")),
            kv(
                "nested",
                Some(AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: vec![
                            kv("api_token", s("ZmFrZS10b2tlbi0xMjM0NTY3ODkw")),
                            kv(
                                "list",
                                Some(AnyValue {
                                    value: Some(Value::ArrayValue(ArrayValue {
                                        values: vec![
                                            s("ssn 123-45-6789").unwrap(),
                                            s("ok").unwrap(),
                                        ],
                                    })),
                                }),
                            ),
                        ],
                    })),
                }),
            ),
        ],
        events: vec![span::Event {
            name: "login failed for jane@example.com".into(),
            attributes: vec![kv("exception.message", s(&format!("bad token {JWT}")))],
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            attributes: vec![kv("peer.iban", s("GB82 WEST 1234 5698 7654 32"))],
            ..Default::default()
        }],
        status: Some(Status {
            message: "card 4111111111111111 declined".into(),
            code: 2,
        }),
        ..Default::default()
    }
}

fn text(req: &ExportTraceServiceRequest) -> String {
    serde_json::to_string(req).unwrap()
}

fn key(b: u8) -> PseudonymKey {
    PseudonymKey::new(&[b; 32])
}

#[test]
fn every_place_a_value_can_hide_is_redacted() {
    let out = redact(
        &Rules::builtin(),
        "acme",
        &key(1),
        batch("checkout", rich_span()),
    );
    let t = text(&out.request);
    for raw in [
        "jane.doe@example.com",
        "jane@example.com",
        "ops-oncall@example.com",
        "dev@example.org",
        CARD,
        "4111111111111111",
        JWT,
        "hunter2",
        "user-8812",
        "ZmFrZS10b2tlbi0xMjM0NTY3ODkw",
        "123-45-6789",
        "GB82 WEST 1234 5698 7654 32",
        "tok_live_abcdefgh",
        "jane%40example.com",
        "12345",
    ] {
        assert!(!t.contains(raw), "{raw} survived: {t}");
    }
    // Structure and harmless values stay.
    let sp = &out.request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(sp.trace_id, vec![1; 16]);
    assert!(t.contains("\"GET\""));
    assert!(t.contains("checkout"));
    assert!(sp.name.starts_with("GET /users/hmac:"), "{}", sp.name);
    let get = |k: &str| {
        sp.attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| tv_model::any_value_to_string(a.value.as_ref().unwrap()))
    };
    assert_eq!(get("note").unwrap(), "paid with ****1111");
    assert_eq!(
        get("db.statement").unwrap(),
        "SELECT * FROM users WHERE email = ? AND id IN (?)"
    );
    let url = get("url.full").unwrap();
    assert!(
        url.starts_with("https://api.example.com/v1/users/{id}?token=REDACTED&ref=hmac:"),
        "{url}"
    );
    // The built-in rules drop the authorization header outright.
    assert_eq!(get("http.request.header.authorization"), None);
    assert_eq!(get("app.db_password").unwrap(), "[REDACTED:secret]");
    assert!(get("enduser.id").unwrap().starts_with("hmac:"));
    assert_eq!(
        sp.status.as_ref().unwrap().message,
        "card ****1111 declined"
    );
    // The report says what fired where, and never a value.
    let report = out.report.to_json().to_string();
    assert!(report.contains("detector:credit_card"));
    assert!(report.contains("span.status.message"));
    assert!(report.contains("link.attributes[peer.iban]"));
    assert!(report.contains("builtin:key:http.request.header.authorization"));
    for raw in ["4111", "jane", "hunter2", "8812"] {
        assert!(!report.contains(raw), "report leaks {raw}: {report}");
    }
}

#[test]
fn allowlist_fails_closed_and_allowed_keys_still_lose_detected_values() {
    let rules = Rules::from_toml(
        r#"
        [[policies]]
        name = "strict"
        services = ["checkout"]
        mode = "allowlist"
        allow_keys = ["http.*", "note"]
        "#,
    )
    .unwrap();
    let out = redact(&rules, "acme", &key(1), batch("checkout", rich_span()));
    let rs = &out.request.resource_spans[0];
    let keys: Vec<&str> = rs.scope_spans[0].spans[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    // Allowed keys survive (the authorization header is still dropped by the stronger rule);
    // everything unknown is gone, service.name is always kept.
    assert_eq!(keys, vec!["http.request.method", "note", "enduser.id"]);
    let res_keys: Vec<&str> = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(res_keys, vec!["service.name"]);
    assert!(!text(&out.request).contains(CARD));
    // Another service of the same tenant gets the built-in policy.
    let other = redact(&rules, "acme", &key(1), batch("search", rich_span()));
    assert_eq!(
        other.report.policies.keys().collect::<Vec<_>>(),
        vec!["builtin"]
    );
    assert!(text(&other.request).contains("db.statement"));
}

#[test]
fn an_allow_never_overrides_a_block() {
    // `keep` for user.* listed first, `drop` for user.ssn after, and the reverse: same result.
    for order in [("keep", "drop"), ("drop", "keep")] {
        let (a, b) = order;
        let (ka, kb) = if a == "keep" {
            ("user.*", "user.ssn")
        } else {
            ("user.ssn", "user.*")
        };
        let rules = Rules::from_toml(&format!(
            "[[policies]]\n[[policies.rules]]\nkey = '{ka}'\naction = '{a}'\n[[policies.rules]]\nkey = '{kb}'\naction = '{b}'\n"
        ))
        .unwrap();
        let sp = Span {
            name: "x".into(),
            attributes: vec![
                kv("user.ssn", s("123-45-6789")),
                kv("user.plan", s("gold, card 4111111111111111")),
            ],
            ..Default::default()
        };
        let out = redact(&rules, "t", &key(1), batch("svc", sp));
        let attrs = &out.request.resource_spans[0].scope_spans[0].spans[0].attributes;
        assert_eq!(attrs.len(), 1, "{order:?}");
        // The allowed key is kept, but the card inside it is still masked.
        assert_eq!(
            tv_model::any_value_to_string(attrs[0].value.as_ref().unwrap()),
            "gold, card ****1111"
        );
    }
}

#[test]
fn secret_detectors_cannot_be_switched_off_but_pii_ones_can() {
    assert!(
        Rules::from_toml("[[policies]]\n[[policies.rules]]\ndetector='private_key'\naction='keep'")
            .is_err()
    );
    let rules =
        Rules::from_toml("[[policies]]\n[[policies.rules]]\ndetector='ip_address'\naction='keep'")
            .unwrap();
    let sp = Span {
        attributes: vec![kv("net.peer.ip", s("10.1.2.3"))],
        ..Default::default()
    };
    let out = redact(&rules, "t", &key(1), batch("svc", sp.clone()));
    assert!(text(&out.request).contains("10.1.2.3"));
    let out = redact(&Rules::builtin(), "t", &key(1), batch("svc", sp));
    assert!(!text(&out.request).contains("10.1.2.3"));
}

#[test]
fn actions_mask_hash_truncate_and_drop() {
    let rules = Rules::from_toml(
        r#"
        hash_bits = 64
        [[policies]]
        [[policies.rules]]
        key = "a.mask"
        action = "mask"
        keep_last = 2
        [[policies.rules]]
        key = "a.hash"
        action = "hash"
        [[policies.rules]]
        key = "a.trunc"
        action = "truncate"
        length = 5
        [[policies.rules]]
        key = "a.drop"
        action = "drop"
        "#,
    )
    .unwrap();
    let sp = Span {
        attributes: vec![
            kv("a.mask", s("abcdef")),
            kv("a.hash", s("alice")),
            kv("a.trunc", s("long value here")),
            kv("a.drop", s("x")),
        ],
        ..Default::default()
    };
    let out = redact(&rules, "t", &key(1), batch("svc", sp));
    let vals: Vec<String> = out.request.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .iter()
        .map(|a| tv_model::any_value_to_string(a.value.as_ref().unwrap()))
        .collect();
    assert_eq!(vals[0], "****ef");
    assert!(
        vals[1].starts_with("hmac:") && vals[1].len() == 5 + 16,
        "{}",
        vals[1]
    );
    assert_eq!(vals[2], "long ");
    assert_eq!(vals.len(), 3);
}

fn pseudonym(tenant_key: u8, v: &str) -> String {
    let sp = Span {
        attributes: vec![kv("enduser.id", s(v))],
        ..Default::default()
    };
    let out = redact(&Rules::builtin(), "t", &key(tenant_key), batch("svc", sp));
    tv_model::any_value_to_string(
        out.request.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .as_ref()
            .unwrap(),
    )
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("jane.doe@example.com".to_string()),
        Just(CARD.to_string()),
        Just("GB82WEST12345698765432".to_string()),
        Just("123-45-6789".to_string()),
        Just("192.168.10.20".to_string()),
        Just(JWT.to_string()),
        Just("AKIAIOSFODNN7EXAMPLE".to_string()),
        Just("ghp_0123456789abcdefghijklmnopqrstuvwxyz".to_string()),
        Just("password=Tr0ub4dor&3".to_string()),
        // Text that looks like earlier redaction output.
        Just("****".to_string()),
        Just("[REDACTED:email]".to_string()),
        Just("hmac:0123456789abcdef".to_string()),
        "[a-z ]{0,20}",
        "[ -~]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn redaction_is_idempotent_and_redacted_values_never_reappear(
        parts in proptest::collection::vec(arb_value(), 1..5),
        key_name in prop_oneof![Just("note"), Just("url.query"), Just("db.statement"), Just("http.target"), Just("x.token")],
    ) {
        let value = parts.join(" ");
        let sp = Span {
            name: value.clone(),
            attributes: vec![kv(key_name, s(&value)), kv("other", s(&parts[0]))],
            status: Some(Status { message: value.clone(), code: 2 }),
            ..Default::default()
        };
        let once = redact(&Rules::builtin(), "t", &key(3), batch("svc", sp));
        let twice = redact(&Rules::builtin(), "t", &key(3), once.request.clone());
        prop_assert_eq!(&once.request, &twice.request);
        prop_assert_eq!(twice.report.total(), 0);
        let out = text(&once.request);
        // Every secret or identifier that went in is gone from every field.
        for p in &parts {
            for f in tv_redact::scan(p) {
                let raw = &p[f.start..f.end];
                prop_assert!(!out.contains(raw), "{} survived in {}", raw, out);
            }
        }
    }

    #[test]
    fn pseudonyms_are_stable_within_a_tenant_and_differ_across(v in "[g-z._-][a-z0-9._-]{2,29}") {
        let a1 = pseudonym(1, &v);
        prop_assert_eq!(&a1, &pseudonym(1, &v));
        prop_assert_ne!(&a1, &pseudonym(2, &v));
        prop_assert!(a1.starts_with("hmac:"));
        prop_assert!(!a1.contains(&v));
    }
}

#[test]
fn values_that_only_look_redacted_are_still_scanned() {
    for v in [
        "****4111111111111111",
        "[REDACTED] card 4111111111111111",
        "**** jane.doe@example.com",
    ] {
        let sp = Span {
            attributes: vec![kv("note", s(v))],
            ..Default::default()
        };
        let out = redact(&Rules::builtin(), "t", &key(1), batch("svc", sp));
        let t = text(&out.request);
        assert!(!t.contains("4111111111111111"), "{v}: {t}");
        assert!(!t.contains("jane.doe@example.com"), "{v}: {t}");
    }
}

fn i(v: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::IntValue(v)),
    })
}

fn strings(vs: &[&str]) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: vs.iter().map(|v| s(v).unwrap()).collect(),
        })),
    })
}

fn one_span(attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "op".into(),
        attributes,
        ..Default::default()
    }
}

fn attr<'a>(req: &'a ExportTraceServiceRequest, k: &str) -> Option<&'a AnyValue> {
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .iter()
        .find(|a| a.key == k)
        .and_then(|a| a.value.as_ref())
}

/// Places that were never scanned: attribute keys, scope name and version, schema URLs, trace
/// state.
#[test]
fn keys_scopes_schema_urls_and_trace_state_are_scanned() {
    let mut sp = one_span(vec![
        kv("customer.4879421458563077", s("gold")),
        kv(
            "nested",
            Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![kv("jane.doe@example.com", s("x"))],
                })),
            }),
        ),
    ]);
    sp.trace_state = "vendor=jane.doe@example.com".into();
    sp.links.push(span::Link {
        trace_id: vec![3; 16],
        span_id: vec![4; 8],
        trace_state: "card=4879421458563077".into(),
        ..Default::default()
    });
    let mut req = batch("svc", sp);
    req.resource_spans[0].schema_url = "https://schemas.example/jane.doe@example.com".into();
    let sc = &mut req.resource_spans[0].scope_spans[0];
    sc.schema_url = "https://schemas.example/4879421458563077".into();
    let scope = sc.scope.as_mut().unwrap();
    scope.name = "lib-for-jane.doe@example.com".into();
    scope.version = "4879421458563077".into();
    let out = redact(&Rules::builtin(), "acme", &key(1), req.clone());
    let t = text(&out.request);
    for raw in ["4879421458563077", "jane.doe@example.com"] {
        assert!(!t.contains(raw), "{raw} survived: {t}");
    }
    // The key keeps its shape and stays one stable key: the same card, the same key.
    let keys: Vec<&str> = out.request.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert!(keys[0].starts_with("customer.hmac:"), "{keys:?}");
    let again = redact(&Rules::builtin(), "acme", &key(1), req);
    assert_eq!(
        again.request.resource_spans[0].scope_spans[0].spans[0].attributes[0].key,
        keys[0]
    );
    // The report names the new key, never the old one.
    let report = serde_json::to_string(&out.report.to_json()).unwrap();
    assert!(!report.contains("4879421458563077"), "{report}");
    assert!(report.contains("attribute keys"), "{report}");
}

/// Types that were never scanned: a card number as an integer; a phone or an SSN as a number,
/// or in compact notation, under a key that says what it is.
#[test]
fn numbers_are_scanned_as_their_decimal_text() {
    let sp = one_span(vec![
        kv("payment.pan", i(4879421458563077)),
        kv("order.id", i(4879421458563076)),
        kv("user.phone", i(14155550132)),
        kv("contact.mobile_number", s("+14155550132")),
        kv("caller.tel", s("tel:+1-415-555-0132")),
        kv("applicant.ssn", i(123456789)),
        kv("order.count", i(123456789)),
        kv("http.response.status_code", i(200)),
        kv(
            "amount",
            Some(AnyValue {
                value: Some(Value::DoubleValue(4879421458563077.0)),
            }),
        ),
    ]);
    let out = redact(&Rules::builtin(), "acme", &key(1), batch("svc", sp));
    let t = text(&out.request);
    for raw in ["4879421458563077", "14155550132", "415-555-0132"] {
        assert!(!t.contains(raw), "{raw} survived: {t}");
    }
    let as_text = |k: &str| tv_model::any_value_to_string(attr(&out.request, k).unwrap());
    assert_eq!(as_text("payment.pan"), "****3077");
    assert_eq!(as_text("applicant.ssn"), "[REDACTED:us_ssn]");
    // Ordinary numbers stay numbers.
    assert!(matches!(
        attr(&out.request, "order.id").unwrap().value,
        Some(Value::IntValue(4879421458563076))
    ));
    assert!(matches!(
        attr(&out.request, "order.count").unwrap().value,
        Some(Value::IntValue(123456789))
    ));
    assert!(matches!(
        attr(&out.request, "http.response.status_code")
            .unwrap()
            .value,
        Some(Value::IntValue(200))
    ));
}

/// OpenTelemetry's own shapes: header values are string arrays, header names come in any case
/// and with `_` for `-`, gRPC metadata is headers.
#[test]
fn header_arrays_any_case_and_grpc_metadata_are_headers() {
    let token = "k9Xv2LmQ7rT4wZ8pN3bH6yD1";
    let sp = one_span(vec![
        kv("http.request.header.x-api-key", strings(&[token])),
        kv(
            "http.request.header.x_auth_token",
            strings(&[token, "second"]),
        ),
        kv(
            "http.request.header.x-session-id",
            strings(&["3f9a7c21d4e84b0f"]),
        ),
        kv(
            "http.request.header.Cookie",
            strings(&["sid=abc123; theme=dark"]),
        ),
        kv(
            "HTTP.Request.Header.Authorization",
            strings(&["Basic dXNlcjpwYXNz"]),
        ),
        kv(
            "rpc.grpc.request.metadata.authorization",
            strings(&[&format!("Bearer {token}")]),
        ),
        kv("rpc.request.metadata.x-api-key", s(token)),
        kv("http.request.header.accept", strings(&["application/json"])),
    ]);
    let out = redact(&Rules::builtin(), "acme", &key(1), batch("svc", sp));
    let t = text(&out.request);
    for raw in [token, "3f9a7c21d4e84b0f", "sid=abc123", "dXNlcjpwYXNz"] {
        assert!(!t.contains(raw), "{raw} survived: {t}");
    }
    // Cookies and authorization are dropped in every spelling and place.
    for k in [
        "http.request.header.Cookie",
        "HTTP.Request.Header.Authorization",
        "rpc.grpc.request.metadata.authorization",
    ] {
        assert!(attr(&out.request, k).is_none(), "{k} kept: {t}");
    }
    assert!(t.contains("application/json"), "{t}");
}

/// Pseudonyms come from one normalization: one email in two cases, or full-width, is one
/// pseudonym.
#[test]
fn pseudonyms_of_one_value_written_differently_are_one() {
    let sp = one_span(vec![
        kv("a", s("contact Jane.Doe@Example.COM today")),
        kv("b", s("contact jane.doe@example.com today")),
        kv("user.email", s("JANE.DOE@EXAMPLE.COM")),
        kv("user.id", s("User-42")),
        kv("c", s("from 10.0.0.1")),
        kv("d", s("from ::ffff:10.0.0.1")),
    ]);
    let out = redact(&Rules::builtin(), "acme", &key(1), batch("svc", sp));
    let as_text = |k: &str| tv_model::any_value_to_string(attr(&out.request, k).unwrap());
    assert_eq!(as_text("a"), as_text("b"));
    assert_eq!(
        as_text("user.email"),
        as_text("b").split(' ').nth(1).unwrap()
    );
    assert_eq!(as_text("c"), as_text("d"));
    assert_ne!(as_text("user.id"), as_text("user.email"));
}

/// `pseudonym_of` is what redaction stores for a whole identity value (how `tracevault
/// pseudonym` and `query search --user` find a person), and the built-in identity keys are the
/// hashed ones.
#[test]
fn the_pseudonym_of_a_value_is_the_one_stored_for_it() {
    let rules = Rules::builtin();
    let sp = one_span(vec![
        kv("user.email", s("Jane.Doe@Example.com")),
        kv("enduser.id", s("User-42")),
    ]);
    let out = redact(&rules, "acme", &key(1), batch("svc", sp));
    let as_text = |k: &str| tv_model::any_value_to_string(attr(&out.request, k).unwrap());
    let pk = key(1);
    assert_eq!(
        tv_redact::pseudonym_of(&rules, &pk, "jane.doe@example.com"),
        as_text("user.email")
    );
    assert_eq!(
        tv_redact::pseudonym_of(&rules, &pk, "User-42"),
        as_text("enduser.id")
    );
    assert_ne!(
        tv_redact::pseudonym_of(&rules, &pk, "user-42"),
        as_text("enduser.id")
    );
    let keys = rules.identity_keys("acme");
    for k in ["enduser.id", "user.email", "user.id"] {
        assert!(keys.iter().any(|x| x == k), "{k}: {keys:?}");
    }
    assert!(
        !keys.iter().any(|x| x.contains("authorization")),
        "{keys:?}"
    );
}

/// Disguises (issue 17): percent-encoding, entities, invisible characters, full-width digits,
/// base64 and hex of a value are undone before the detectors look; the original characters go.
#[test]
fn disguised_values_are_redacted_in_place() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode("jane.doe@example.com");
    let sp = one_span(vec![
        kv("a", s("mail jane%2Edoe%40example.com now")),
        kv("b", s("mail jane&#46;doe&#64;example&#46;com now")),
        kv("c", s("card 4111\u{200B}1111\u{200B}1111\u{200B}1111")),
        kv("d", s("card ４１１１ １１１１ １１１１ １１１１")),
        kv("e", s(&format!("blob {b64}"))),
        kv("f", s(&format!("hex {}", hex_of("4111111111111111")))),
    ]);
    let out = redact(&Rules::builtin(), "acme", &key(1), batch("svc", sp));
    let as_text = |k: &str| tv_model::any_value_to_string(attr(&out.request, k).unwrap());
    // One pseudonym for the address however it was written.
    let plain = redact(
        &Rules::builtin(),
        "acme",
        &key(1),
        batch(
            "svc",
            one_span(vec![kv("a", s("mail jane.doe@example.com now"))]),
        ),
    );
    let want = tv_model::any_value_to_string(attr(&plain.request, "a").unwrap());
    assert_eq!(as_text("a"), want);
    assert_eq!(as_text("b"), want);
    assert_eq!(as_text("c"), "card ****1111");
    assert!(as_text("d").starts_with("card ****"), "{}", as_text("d"));
    assert!(as_text("e").starts_with("blob hmac:"), "{}", as_text("e"));
    assert_eq!(as_text("f"), "hex ****1111");
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The engine remembers values it left unchanged (a per-thread memo of keyed fingerprints): a
/// batch sent again, and the same value under another tenant's policy, are judged exactly as the
/// first time.
#[test]
fn repeated_values_are_judged_the_same_every_time() {
    let first = redact(&Rules::builtin(), "t", &key(1), batch("svc", rich_span()));
    for _ in 0..3 {
        let again = redact(&Rules::builtin(), "t", &key(1), batch("svc", rich_span()));
        assert_eq!(again.request, first.request);
        assert_eq!(again.report, first.report);
    }
    // One rules file, two tenants: `a` keeps addresses, everyone else has the built-in policy.
    let rules = Rules::from_toml(
        "[[policies]]\nname='a'\ntenants=['a']\n[[policies.rules]]\ndetector='ip_address'\naction='keep'",
    )
    .unwrap();
    let sp = || Span {
        name: "connect 10.1.2.3".into(),
        attributes: vec![
            kv("net.peer.ip", s("10.1.2.3")),
            kv("peer.list", strings(&["10.1.2.3"])),
        ],
        ..Default::default()
    };
    for _ in 0..2 {
        let kept = redact(&rules, "a", &key(1), batch("svc", sp()));
        assert!(text(&kept.request).contains("10.1.2.3"));
        let other = redact(&rules, "b", &key(1), batch("svc", sp()));
        assert!(!text(&other.request).contains("10.1.2.3"), "{other:?}");
        assert_eq!(
            other.report.by_rule().get("detector:ip_address"),
            Some(&3),
            "{:?}",
            other.report
        );
    }
}

/// Pseudonyms of repeated values come from a per-thread cache: each is still its own key's and
/// its own length's, the same as computed the first time and as a fresh key with the same
/// secret computes it.
#[test]
fn cached_pseudonyms_are_those_of_their_own_key() {
    let first: Vec<String> = (1..=3).map(|k| pseudonym(k, "user-42")).collect();
    assert!(first[0] != first[1] && first[1] != first[2] && first[0] != first[2]);
    for _ in 0..3 {
        let again: Vec<String> = (1..=3).map(|k| pseudonym(k, "user-42")).collect();
        assert_eq!(again, first);
    }
    // Another hash length under the same key is another pseudonym, not the cached one cut.
    let long = Rules::from_toml("hash_bits = 128").unwrap();
    let k = key(1);
    let p64 = tv_redact::pseudonym_of(&Rules::builtin(), &k, "user-42");
    let p128 = tv_redact::pseudonym_of(&long, &k, "user-42");
    assert_eq!(p64, first[0]);
    assert_eq!(p128.len(), 5 + 32);
    assert!(p128.starts_with(&p64), "{p128} {p64}");
    assert_eq!(tv_redact::pseudonym_of(&long, &key(1), "user-42"), p128);
}
