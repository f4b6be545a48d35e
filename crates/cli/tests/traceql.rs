//! TraceQL search through the real server (`GET /api/search?q=`), as Grafana's Tempo data
//! source calls it: results in Tempo's shape, the same answers from the WAL head, sealed
//! blocks and after a restart; bad queries answered 400 with what and where; fields a caller
//! may not read behave as absent; the audit keeps the query's shape, not its values.
mod common;

use common::*;
use prost::Message;
use tv_model::otlp::*;

/// Two traces across two services:
/// - "checkout": frontend `GET /checkout` (server) > frontend `call checkout` (client) >
///   checkout `POST /pay` (server, error, user.tier=gold, http.status_code=500) > checkout
///   `SELECT` (client, db.system=postgres);
/// - "home": frontend `GET /home` (server, ok).
fn data() -> (ExportTraceServiceRequest, String, String) {
    let now = now_nanos();
    let checkout = random_id::<16>();
    let home = random_id::<16>();
    let ids: Vec<[u8; 8]> = (0..5).map(|_| random_id::<8>()).collect();
    let span = |tid: &[u8; 16],
                id: usize,
                parent: Option<usize>,
                name: &str,
                kind: i32,
                code: i32,
                attrs: Vec<KeyValue>| Span {
        trace_id: tid.to_vec(),
        span_id: ids[id].to_vec(),
        parent_span_id: parent.map(|p| ids[p].to_vec()).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: now - 100_000_000 + id as u64 * 1_000_000,
        end_time_unix_nano: now - 10_000_000 - id as u64 * 1_000_000,
        attributes: attrs,
        status: Some(Status {
            code,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", sv(service))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            resource(
                "frontend",
                vec![
                    span(&checkout, 0, None, "GET /checkout", 2, 1, vec![]),
                    span(&checkout, 1, Some(0), "call checkout", 3, 0, vec![]),
                    span(&home, 4, None, "GET /home", 2, 1, vec![]),
                ],
            ),
            resource(
                "checkout",
                vec![
                    span(
                        &checkout,
                        2,
                        Some(1),
                        "POST /pay",
                        2,
                        2,
                        vec![kv("user.tier", sv("gold")), kv("http.status_code", iv(500))],
                    ),
                    span(
                        &checkout,
                        3,
                        Some(2),
                        "SELECT",
                        3,
                        0,
                        vec![kv("db.system", sv("postgres"))],
                    ),
                ],
            ),
        ],
    };
    (req, hex::encode(checkout), hex::encode(home))
}

async fn search(srv: &Server, token: &str, q: &str) -> (u16, serde_json::Value, String) {
    let url = format!("/api/search?q={}&limit=20", url_escape(q));
    let (st, body) = call(srv, "GET", &url, token, "acme").await;
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (st, v, body)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn trace_ids(v: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = v["traces"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn traceql_search_answers_from_head_blocks_and_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
    let (req, checkout, home) = data();
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    // Sent and read with the admin token's own tenant.
    the_answers(&srv, &checkout, &home, "WAL head").await;
    srv.flush().await;
    the_answers(&srv, &checkout, &home, "sealed blocks").await;
    srv.restart();
    the_answers(&srv, &checkout, &home, "after a restart").await;
}

/// What each operator family finds, and the shape of a result.
async fn the_answers(srv: &Server, checkout: &str, home: &str, when: &str) {
    let get = |q: &str| {
        let url = format!("/api/search?q={}", url_escape(q));
        async move {
            let v = srv.get_json(&url).await;
            trace_ids(&v)
        }
    };
    let both = {
        let mut b = vec![checkout.to_owned(), home.to_owned()];
        b.sort();
        b
    };
    assert_eq!(get("{ status = error }").await, [checkout], "{when}");
    assert_eq!(get("{ }").await, both, "{when}");
    assert_eq!(
        get(r#"{ resource.service.name = "frontend" } >> { status = error }"#).await,
        [checkout],
        "{when}"
    );
    assert_eq!(
        get(r#"{ resource.service.name = "checkout" } > { span.db.system = "postgres" }"#).await,
        [checkout],
        "{when}"
    );
    assert_eq!(
        get(r#"{ name = "GET /home" } || { span.http.status_code >= 500 }"#).await,
        both,
        "{when}"
    );
    assert_eq!(get("{ } | count() > 2").await, [checkout], "{when}");
    assert_eq!(
        get(r#"{ kind = server } | by(resource.service.name) | count() = 1"#).await,
        both,
        "{when}"
    );
    assert_eq!(get(r#"{ rootName = "GET /home" }"#).await, [home], "{when}");
    assert_eq!(
        get(r#"{ span.user.tier = "gold" }"#).await,
        [checkout],
        "{when}"
    );
    assert!(get(r#"{ span.nothing != nil }"#).await.is_empty(), "{when}");
    let v = srv
        .get_json(&format!(
            "/api/search?q={}",
            url_escape("{ span.http.status_code >= 500 }")
        ))
        .await;
    let t = &v["traces"][0];
    assert_eq!(t["rootServiceName"], "frontend", "{when}: {v}");
    assert_eq!(t["rootTraceName"], "GET /checkout", "{when}: {v}");
    let id = t["traceID"].as_str().unwrap();
    assert!(
        id.len() == 32
            && id
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
    let set = &t["spanSets"][0];
    assert_eq!(set["matched"], 1, "{when}: {v}");
    assert_eq!(set["spans"][0]["name"], "POST /pay", "{when}: {v}");
    assert_eq!(
        set["spans"][0]["attributes"][0]["key"], "http.status_code",
        "{when}: {v}"
    );
    assert_eq!(
        set["spans"][0]["attributes"][0]["value"]["intValue"], "500",
        "{when}: {v}"
    );
    assert_eq!(
        t["spanSet"], *set,
        "the deprecated spanSet repeats the first"
    );
}

#[tokio::test]
async fn bad_queries_get_400_with_what_and_where_and_restricted_fields_are_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
    let (req, checkout, _home) = data();
    let r = srv
        .http_client()
        .post(format!("{}/v1/traces", srv.http))
        .bearer_auth(srv.token())
        .header("x-scope-orgid", "acme")
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let admin = srv.token();
    // Never silently unfiltered, never a 5xx.
    for (q, says) in [
        ("garbage{{", "found 'garbage' at 1:1"),
        ("{ span.http.status 200 }", "at 1:20"),
        ("{ status = error", "expected '}'"),
        ("{ 1 }", "must be a condition"),
        ("{ name = 1 }", "cannot apply ="),
        ("{ parent.span.x = 1 }", "not supported yet"),
        ("{ } | rate()", "/api/metrics/query_range"),
        (r#"{ name =~ "[" }"#, "not a regular expression"),
    ] {
        let (st, _, body) = search(&srv, &admin, q).await;
        assert_eq!(st, 400, "{q}: {body}");
        assert!(
            body.contains("TraceQL") && body.contains(says),
            "{q}: {body}"
        );
    }
    let (st, v, _) = search(&srv, &admin, "{ status = error }").await;
    assert_eq!((st, trace_ids(&v)), (200, vec![checkout.clone()]));

    // A reader without the pii class: the field is absent to every operator.
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    let investigator = create_token(&srv, &["--role", "investigator", "--tenant", "acme"]);
    for q in [
        r#"{ span.user.tier = "gold" }"#,
        r#"{ span.user.tier =~ "g.*" }"#,
        r#"{ span.user.tier != nil }"#,
        r#"{ span.user.tier != "silver" }"#,
        r#"{ .user.tier > "a" }"#,
    ] {
        let (st, v, body) = search(&srv, &reader, q).await;
        assert_eq!(st, 200, "{body}");
        assert!(trace_ids(&v).is_empty(), "reader found {q}: {body}");
        let (_, v, body) = search(&srv, &investigator, q).await;
        assert_eq!(
            trace_ids(&v),
            [checkout.as_str()],
            "investigator: {q}: {body}"
        );
    }
    // Grouping by it groups nothing; absence is what the reader sees.
    let (_, v, body) = search(&srv, &reader, "{ } | by(span.user.tier)").await;
    assert!(trace_ids(&v).is_empty(), "{body}");
    let (_, v, _) = search(&srv, &reader, "{ span.user.tier = nil && status = error }").await;
    assert_eq!(trace_ids(&v), [checkout.as_str()]);
    // Selected restricted values are not returned to the reader.
    let (_, _, body) = search(&srv, &reader, "{ status = error } | select(span.user.tier)").await;
    assert!(!body.contains("gold"), "{body}");
    let (_, _, body) = search(
        &srv,
        &investigator,
        "{ status = error } | select(span.user.tier)",
    )
    .await;
    assert!(body.contains("gold"), "{body}");

    // Another tenant sees none of it.
    let other = create_token(&srv, &["--role", "reader", "--tenant", "globex"]);
    let (st, body) = call(
        &srv,
        "GET",
        &format!("/api/search?q={}", url_escape("{ }")),
        &other,
        "globex",
    )
    .await;
    assert_eq!(st, 200);
    assert!(!body.contains(&checkout), "{body}");

    // The audit keeps the query's shape, not its values.
    let (st, audit) = call(
        &srv,
        "GET",
        "/api/audit?action=search&limit=1000",
        &admin,
        "acme",
    )
    .await;
    assert_eq!(st, 200, "{audit}");
    assert!(audit.contains("search q={ span.user.tier = ? }"), "{audit}");
    assert!(
        !audit.contains("gold") && !audit.contains("silver"),
        "{audit}"
    );
}
