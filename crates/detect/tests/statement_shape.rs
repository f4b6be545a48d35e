//! Issue 17: an injection that reached the database shows in `db.statement` as a shape the
//! service never issues (a UNION of selects, stacked statements), even when no quote was broken
//! (`WHERE id = 1 UNION SELECT ...`) and after redaction scrubbed the literals. A service whose
//! own statements use those shapes taught its baseline so and raises nothing.

use tv_detect::behaviour::{
    BatchInfo, Behaviour, BehaviourConfig, SHAPE_STACKED, SHAPE_UNION, SpanFacts, statement_shape,
};

#[test]
fn statement_shapes_ignore_literals_and_comments() {
    for (stmt, want) in [
        ("SELECT id, name FROM products WHERE id = ?", 0),
        ("SELECT name FROM t WHERE note = 'a; b UNION SELECT c'", 0),
        ("SELECT 1 /* ; union select */ FROM dual", 0),
        (
            "SELECT id FROM products WHERE id = ? UNION SELECT username, password FROM users",
            SHAPE_UNION,
        ),
        ("select a from t union all select b from u", SHAPE_UNION),
        (
            "SELECT * FROM t WHERE id = ?; DROP TABLE users",
            SHAPE_STACKED,
        ),
        ("SELECT * FROM t WHERE id = ?;", 0),
        (
            "SELECT * FROM t WHERE id = ? UNION SELECT ?; DELETE FROM audit -- x",
            SHAPE_UNION | SHAPE_STACKED,
        ),
    ] {
        assert_eq!(statement_shape(stmt), want, "{stmt}");
    }
}

fn db_span<'a>(n: u64, service: &'a str, stmt: &'a str, at: u64) -> SpanFacts<'a> {
    let mut trace_id = [0x5au8; 16];
    trace_id[..8].copy_from_slice(&n.to_be_bytes());
    SpanFacts {
        trace_id,
        span_id: (n | 0x1000).to_be_bytes(),
        parent: None,
        service,
        name: "SELECT shop.products",
        kind: 3,
        start: at,
        end: at + 1_000_000,
        error: false,
        http_status: None,
        client: None,
        user: None,
        resource: None,
        content: n,
        statement: Some(stmt),
    }
}

#[test]
fn a_union_or_stacked_statement_a_service_never_issued_is_flagged_once() {
    const S: u64 = 1_000_000_000;
    let cfg = BehaviourConfig {
        learning_secs: 60,
        ..Default::default()
    };
    let mut b = Behaviour::new(cfg);
    let info = |t: u64| BatchInfo {
        tenant: "acme",
        principal: Some("token:shop"),
        received_unix_nano: t,
    };
    let plain = "SELECT id, name FROM products WHERE id = ?";
    let report = "SELECT region FROM sales_eu UNION ALL SELECT region FROM sales_us";
    // Learning: the shop issues plain selects; the reports service issues UNIONs.
    let mut n = 0;
    for sec in 0..70u64 {
        n += 1;
        let a = db_span(n, "shop", plain, sec * S);
        n += 1;
        let r = db_span(n, "reports", report, sec * S);
        assert!(b.observe(info(sec * S + S), &[a, r]).is_empty());
    }
    // After learning.
    let injected =
        "SELECT id, name FROM products WHERE id = ? UNION SELECT username, password FROM users";
    let stacked = "SELECT id, name FROM products WHERE id = ?; DROP TABLE users";
    let at = 80 * S;
    let found = b.observe(
        info(at + S),
        &[
            db_span(1001, "shop", injected, at),
            db_span(1002, "shop", injected, at),
            db_span(1003, "reports", report, at),
            db_span(1004, "shop", stacked, at),
            db_span(1005, "shop", plain, at),
        ],
    );
    let shape: Vec<_> = found
        .iter()
        .filter(|f| f.analytic_uid == "tv-db-statement-shape")
        .collect();
    assert_eq!(shape.len(), 2, "{found:#?}");
    assert!(shape.iter().all(|f| f.service == "shop"));
    assert!(shape[0].message.contains("UNION"), "{}", shape[0].message);
    assert!(shape[1].message.contains("stacked"), "{}", shape[1].message);
    assert_eq!(shape[0].classes, vec!["sqli".to_string()]);
    assert_eq!(
        shape[0].evidence[0].value.as_deref(),
        Some(injected),
        "the evidence is the (redacted) statement"
    );
    // Learned state survives a restart (the shapes are part of what is saved).
    let saved = serde_json::to_string(&b.tenants["acme"].learned).unwrap();
    assert!(saved.contains("statement_shapes"), "{saved}");
}
