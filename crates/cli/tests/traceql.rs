//! TraceQL search through the real server (`GET /api/search?q=`), as Grafana's Tempo data
//! source calls it: results in Tempo's shape, the same answers from the WAL head, sealed
//! blocks and after a restart; bad queries answered 400 with what and where; fields a caller
//! may not read behave as absent; the audit keeps the query's shape, not its values.
mod common;

use common::*;
use prost::Message;
use tv_model::otlp::*;

async fn search(srv: &Server, token: &str, q: &str) -> (u16, serde_json::Value, String) {
    let url = format!("/api/search?q={}&limit=20", url_escape(q));
    let (st, body) = call(srv, "GET", &url, token, "acme").await;
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (st, v, body)
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
    let (req, checkout, home) = two_service_traces();
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
    let (req, checkout, _home) = two_service_traces();
    send_acme(&srv, &req).await;
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

/// The calls Grafana's Tempo data source makes, in order: echo, scoped tags (v2), tag values
/// (v2, the tag encoded twice, narrowed by `q`), a TraceQL search, the trace as protobuf.
#[tokio::test]
async fn grafana_call_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
    let (mut req, checkout, _home) = two_service_traces();
    // An event and a link attribute, and instrumentation scope attributes.
    let sp = &mut req.resource_spans[1].scope_spans[0].spans[0];
    sp.events.push(span::Event {
        name: "exception".into(),
        attributes: vec![kv("exception.type", sv("Timeout"))],
        time_unix_nano: sp.start_time_unix_nano + 1,
        ..Default::default()
    });
    sp.links.push(span::Link {
        trace_id: random_id::<16>().to_vec(),
        span_id: random_id::<8>().to_vec(),
        attributes: vec![kv("link.kind", sv("retry"))],
        ..Default::default()
    });
    req.resource_spans[1].scope_spans[0].scope = Some(InstrumentationScope {
        name: "pay-lib".into(),
        attributes: vec![kv("lib.flavor", sv("async"))],
        ..Default::default()
    });
    send_acme(&srv, &req).await;
    let admin = srv.token();
    for flushed in [false, true] {
        if flushed {
            srv.flush().await;
        }
        let (st, body) = call(&srv, "GET", "/api/echo", &admin, "acme").await;
        assert_eq!((st, body.as_str()), (200, "echo"));
        // Scoped tags.
        let (st, body) = call(&srv, "GET", "/api/v2/search/tags", &admin, "acme").await;
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let scope = |name: &str| -> Vec<String> {
            v["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .map(|s| {
                    s["tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(
            scope("resource").contains(&"service.name".to_string()),
            "{body}"
        );
        assert!(scope("span").contains(&"db.system".to_string()), "{body}");
        assert!(
            !scope("span").contains(&"service.name".to_string()),
            "{body}"
        );
        assert!(
            scope("event").contains(&"exception.type".to_string()),
            "{body}"
        );
        assert!(scope("link").contains(&"link.kind".to_string()), "{body}");
        assert!(
            scope("instrumentation").contains(&"lib.flavor".to_string()),
            "{body}"
        );
        assert!(scope("intrinsic").contains(&"status".to_string()), "{body}");
        let (_, body) = call(
            &srv,
            "GET",
            "/api/v2/search/tags?scope=resource",
            &admin,
            "acme",
        )
        .await;
        let only: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(only["scopes"].as_array().unwrap().len(), 1, "{body}");
        let (st, body) = call(
            &srv,
            "GET",
            "/api/v2/search/tags?scope=nope",
            &admin,
            "acme",
        )
        .await;
        assert_eq!(st, 400, "{body}");

        // Tag values, the tag encoded twice as Grafana sends it.
        let (st, body) = call(
            &srv,
            "GET",
            "/api/v2/search/tag/resource%252Eservice%252Ename/values",
            &admin,
            "acme",
        )
        .await;
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut vals: Vec<&str> = v["tagValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t["type"], "string", "{body}");
                t["value"].as_str().unwrap()
            })
            .collect();
        vals.sort();
        assert_eq!(vals, ["checkout", "frontend"], "flushed={flushed}: {body}");
        // Narrowed by q: the services of spans with an error.
        let (_, body) = call(
            &srv,
            "GET",
            &format!(
                "/api/v2/search/tag/resource.service.name/values?q={}",
                url_escape("{ status = error }")
            ),
            &admin,
            "acme",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["tagValues"],
            serde_json::json!([{"type": "string", "value": "checkout"}]),
            "{body}"
        );
        // Typed values and fixed vocabularies.
        let (_, body) = call(
            &srv,
            "GET",
            "/api/v2/search/tag/span.http.status_code/values",
            &admin,
            "acme",
        )
        .await;
        assert!(body.contains(r#"{"type":"int","value":"500"}"#), "{body}");
        let (_, body) = call(
            &srv,
            "GET",
            "/api/v2/search/tag/status/values",
            &admin,
            "acme",
        )
        .await;
        assert!(
            body.contains(r#"{"type":"keyword","value":"error"}"#),
            "{body}"
        );
        // A reader: the restricted field narrows nothing and shows only its marker.
        let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
        let (_, body) = call(
            &srv,
            "GET",
            &format!(
                "/api/v2/search/tag/resource.service.name/values?q={}",
                url_escape(r#"{ span.user.tier = "gold" }"#)
            ),
            &reader,
            "acme",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["tagValues"], serde_json::json!([]), "{body}");
        let (_, body) = call(
            &srv,
            "GET",
            "/api/v2/search/tag/span.user.tier/values",
            &reader,
            "acme",
        )
        .await;
        assert!(
            !body.contains("gold") && body.contains("[restricted:pii]"),
            "{body}"
        );

        // Search, then the trace as Tempo's protobuf.
        let (_, v, _) = search(&srv, &admin, "{ status = error }").await;
        assert_eq!(trace_ids(&v), [checkout.as_str()]);
        let r = srv
            .http_client()
            .get(format!("{}/api/v2/traces/{checkout}", srv.api))
            .bearer_auth(&admin)
            .header("x-scope-orgid", "acme")
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let data = TracesData::decode(r.bytes().await.unwrap()).unwrap();
        let spans: usize = data
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(spans, 4);
    }
}

/// TraceQL metrics over the same data: counts, rates and quantiles per group, in Tempo's
/// series shape; restricted fields group as nil for a reader; bad requests get 400.
#[tokio::test]
async fn traceql_metrics_count_rate_and_group() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "[access.field_classes]\npii = [\"user.*\"]\n", &[]);
    let (req, _, _) = two_service_traces();
    send_acme(&srv, &req).await;
    let admin = srv.token();
    let now = now_nanos() / 1_000_000_000;
    let metrics = |token: String, path: &'static str, q: &'static str| {
        let srv = &srv;
        async move {
            let url = format!(
                "{path}?q={}&start={}&end={}&step=60s",
                url_escape(q),
                now - 3600,
                now + 60
            );
            let (st, body) = call(srv, "GET", &url, &token, "acme").await;
            (
                st,
                serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
                body,
            )
        }
    };
    // Per series: its labels as "k=v" and the sum of its samples.
    let totals = |v: &serde_json::Value| -> Vec<(Vec<String>, f64)> {
        let mut out: Vec<(Vec<String>, f64)> = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        format!(
                            "{}={}",
                            l["key"].as_str().unwrap(),
                            l["value"]["stringValue"].as_str().unwrap()
                        )
                    })
                    .collect();
                let total = s["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        assert!(p["timestampMs"].as_str().unwrap().parse::<u64>().is_ok());
                        p["value"].as_f64().unwrap()
                    })
                    .sum();
                (labels, total)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let (st, v, body) = metrics(
        admin.clone(),
        "/api/metrics/query_range",
        "{ } | count_over_time()",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(totals(&v), [(vec![], 5.0)], "{body}");
    let (_, v, body) = metrics(
        admin.clone(),
        "/api/metrics/query_range",
        "{ status = error } | count_over_time() by (resource.service.name)",
    )
    .await;
    assert_eq!(
        totals(&v),
        [(vec!["resource.service.name=checkout".to_string()], 1.0)],
        "{body}"
    );
    let (_, v, body) = metrics(
        admin.clone(),
        "/api/metrics/query_range",
        "{ } | rate() by (resource.service.name)",
    )
    .await;
    let t = totals(&v);
    assert_eq!(t.len(), 2, "{body}");
    assert_eq!(t[0].0, ["resource.service.name=checkout"]);
    assert!((t[0].1 - 2.0 / 60.0).abs() < 1e-9, "{body}");
    assert!((t[1].1 - 3.0 / 60.0).abs() < 1e-9, "{body}");
    let (_, v, body) = metrics(
        admin.clone(),
        "/api/metrics/query_range",
        "{ kind = server } | quantile_over_time(duration, .5, .99)",
    )
    .await;
    let t = totals(&v);
    assert_eq!(t.len(), 2, "one series per quantile: {body}");
    assert_eq!(t[0].0, ["p=0.5"], "{body}");
    // The instant form: one value per series over the whole range.
    let (st, v, body) = metrics(
        admin.clone(),
        "/api/metrics/query",
        "{ } | count_over_time()",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(v["series"][0]["value"], 5.0, "{body}");
    // Queries that need whole traces (structural, trace-level fields), and the same answers
    // once the spans are in sealed blocks rather than the WAL head.
    for round in ["head", "blocks"] {
        for q in [
            "{ resource.service.name = \"frontend\" } >> { resource.service.name = \"checkout\" } | count_over_time()",
            "{ rootServiceName = \"frontend\" && resource.service.name = \"checkout\" } | count_over_time()",
        ] {
            let (st, v, body) = metrics(admin.clone(), "/api/metrics/query_range", q).await;
            assert_eq!(st, 200, "{round} {q}: {body}");
            assert_eq!(totals(&v), [(vec![], 2.0)], "{round} {q}: {body}");
        }
        let (_, v, body) = metrics(
            admin.clone(),
            "/api/metrics/query_range",
            "{ } | count_over_time() by (resource.service.name)",
        )
        .await;
        assert_eq!(
            totals(&v),
            [
                (vec!["resource.service.name=checkout".to_string()], 2.0),
                (vec!["resource.service.name=frontend".to_string()], 3.0)
            ],
            "{round}: {body}"
        );
        srv.flush().await;
    }
    // A reader groups a restricted field as nil.
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    let (_, v, body) = metrics(
        reader,
        "/api/metrics/query_range",
        "{ } | count_over_time() by (span.user.tier)",
    )
    .await;
    assert!(!body.contains("gold"), "{body}");
    assert_eq!(
        totals(&v),
        [(vec!["span.user.tier=nil".to_string()], 5.0)],
        "{body}"
    );
    let (_, _, body) = metrics(
        admin.clone(),
        "/api/metrics/query_range",
        "{ } | count_over_time() by (span.user.tier)",
    )
    .await;
    assert!(body.contains("gold"), "{body}");
    // Bad requests.
    let (st, _, body) = metrics(
        admin.clone(),
        "/api/metrics/query_range",
        "{ status = error }",
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("metrics function"), "{body}");
    let url = format!(
        "/api/metrics/query_range?q={}&start={}&end={}&step=1ms",
        url_escape("{ } | rate()"),
        now - 3600,
        now
    );
    let (st, body) = call(&srv, "GET", &url, &admin, "acme").await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("more than 11000"), "{body}");
}

/// An investigator searches by a known value that redaction stored as a pseudonym; a reader,
/// who may not read pseudonyms, cannot (it would learn which pseudonym the value has).
#[tokio::test]
async fn a_known_value_finds_its_pseudonym_for_callers_who_may_read_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "version = 1\n", &[]);
    let (mut req, checkout, _home) = two_service_traces();
    req.resource_spans[1].scope_spans[0].spans[0]
        .attributes
        .push(kv("customer.email", sv("jane.doe@example.com")));
    send_acme(&srv, &req).await;
    let investigator = create_token(&srv, &["--role", "investigator", "--tenant", "acme"]);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "acme"]);
    // Stored as a pseudonym, not as sent.
    let (_, trace) = call(
        &srv,
        "GET",
        &format!("/api/traces/{checkout}"),
        &investigator,
        "acme",
    )
    .await;
    assert!(
        !trace.contains("jane.doe") && trace.contains("hmac:"),
        "{trace}"
    );
    for q in [
        r#"{ span.customer.email = "jane.doe@example.com" }"#,
        // The same address in another case: one normalization keys them both.
        r#"{ .customer.email = "Jane.Doe@Example.COM" && status = error }"#,
    ] {
        let (st, v, body) = search(&srv, &investigator, q).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            trace_ids(&v),
            [checkout.as_str()],
            "investigator: {q}: {body}"
        );
        let (_, v, body) = search(&srv, &reader, q).await;
        assert!(trace_ids(&v).is_empty(), "reader: {q}: {body}");
    }
    // != excludes the value's pseudonyms too.
    let (_, v, body) = search(
        &srv,
        &investigator,
        r#"{ span.customer.email != "jane.doe@example.com" && span.customer.email != nil }"#,
    )
    .await;
    assert!(trace_ids(&v).is_empty(), "{body}");
    let (_, v, _) = search(
        &srv,
        &investigator,
        r#"{ span.customer.email != "someone@else.org" }"#,
    )
    .await;
    assert_eq!(trace_ids(&v), [checkout.as_str()]);
    // Metrics, tag values narrowed by q and Jaeger's tag search take the same rewrite, for the
    // investigator only.
    let now = now_nanos() / 1_000_000_000;
    let known = r#"{ span.customer.email = "jane.doe@example.com" }"#;
    let count = format!(
        "/api/metrics/query?q={}&start={}&end={}",
        url_escape(&format!("{known} | count_over_time()")),
        now - 3600,
        now + 60
    );
    let values = format!("/api/v2/search/tag/name/values?q={}", url_escape(known));
    let jaeger = format!(
        "/jaeger/api/traces?service=checkout&tags={}&start={}&end={}",
        url_escape(r#"{"customer.email":"jane.doe@example.com"}"#),
        (now - 3600) * 1_000_000,
        (now + 60) * 1_000_000
    );
    for (who, token, found) in [
        ("investigator", &investigator, true),
        ("reader", &reader, false),
    ] {
        let (st, body) = call(&srv, "GET", &count, token, "acme").await;
        assert_eq!(st, 200, "{who}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let n = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .sum::<f64>();
        assert_eq!(n, if found { 1.0 } else { 0.0 }, "{who}: {body}");
        let (st, body) = call(&srv, "GET", &values, token, "acme").await;
        assert_eq!(st, 200, "{who}: {body}");
        assert_eq!(body.contains("POST /pay"), found, "{who}: {body}");
        let (st, body) = call(&srv, "GET", &jaeger, token, "acme").await;
        assert_eq!(st, 200, "{who}: {body}");
        assert_eq!(body.contains(&checkout), found, "{who}: {body}");
    }
}

/// `limit` caps the answer at the newest matches, and a smaller limit never hides matches that
/// a larger one finds (span-local queries stop at `limit` candidates, others scan further).
#[tokio::test]
async fn limit_returns_the_newest_matches_and_no_fewer() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = start_with_config(tmp, "version = 1\n", &[]);
    let mut checkouts = Vec::new();
    for _ in 0..4 {
        let (req, checkout, _) = two_service_traces();
        send_acme(&srv, &req).await;
        checkouts.push(checkout);
    }
    srv.flush().await;
    let admin = srv.token();
    for q in [
        "{ status = error }",
        "{ resource.service.name = \"frontend\" } >> { status = error }",
    ] {
        let mut all = checkouts.clone();
        all.sort();
        let url = |limit: usize| format!("/api/search?q={}&limit={limit}", url_escape(q));
        let (st, body) = call(&srv, "GET", &url(20), &admin, "acme").await;
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(trace_ids(&v), all, "{q}: {body}");
        for limit in [1, 3] {
            let (_, body) = call(&srv, "GET", &url(limit), &admin, "acme").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let got = trace_ids(&v);
            assert_eq!(got.len(), limit, "{q} limit {limit}: {body}");
            assert!(got.iter().all(|t| all.contains(t)), "{q}: {body}");
        }
    }
}
