//! Redaction end to end (issue 4): the real server redacts after authentication and before the
//! WAL, so nothing raw reaches any file; reads return the redacted form; the log's record leaf
//! carries the digest of the rules that ran; counters appear in /metrics; SIGHUP reloads the
//! rules (a broken file keeps the running ones); `tracevault redact` does the same offline.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use tv_model::otlp::*;

const CARD: &str = "4111 1111 1111 1111";

fn rules_v1() -> String {
    r#"
[redaction]
hash_bits = 96

[[redaction.policies]]
name = "shop"
services = ["checkout"]

[[redaction.policies.rules]]
key = "app.customer"
action = "hash"
"#
    .to_string()
}

/// v1 and a rule that drops `app.note`.
fn rules_v2() -> String {
    rules_v1() + "\n[[redaction.policies.rules]]\nkey = \"app.note\"\naction = \"drop\"\n"
}

fn sensitive(marker: &str) -> (ExportTraceServiceRequest, [u8; 16]) {
    let (mut req, tid) = request("checkout", 2);
    for s in req.resource_spans[0].scope_spans[0].spans.iter_mut() {
        s.name = format!("charge {marker}@example.com");
        s.attributes.extend([
            kv(
                "app.note",
                sv(&format!("paid with {CARD} by {marker}@example.com")),
            ),
            kv("app.customer", sv(&format!("cust-{marker}"))),
            kv("db.password", sv(&format!("pw-{marker}"))),
            kv(
                "db.statement",
                sv(&format!("SELECT * FROM t WHERE owner = '{marker}'")),
            ),
        ]);
    }
    (req, tid)
}

fn attr<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    // {"batches":[{"scopeSpans":[{"spans":[{"attributes":[...]}]}]}]}
    let spans = v["batches"][0]["scopeSpans"][0]["spans"].as_array()?;
    spans[0]["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"]["stringValue"])
}

async fn wait_for_log(srv: &Server, needle: &str, from: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.log_text()[from.min(srv.log_text().len())..].contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log: {}",
            srv.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hup(srv: &Server) {
    let st = std::process::Command::new("kill")
        .args(["-HUP", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_raw_is_stored_the_log_records_the_policy_and_sighup_reloads() {
    let (mut srv, cfg) = start_with_config(tempfile::tempdir().unwrap(), &rules_v1(), &[]);
    let marker = format!("tvm{:012x}", rand_u64());
    let (req, tid) = sensitive(&marker);
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    let text = v.to_string();
    assert_eq!(count_json_spans(&v), 2);
    // Reads return the redacted form.
    assert!(!text.contains(&marker), "raw value served: {text}");
    assert!(!text.contains(CARD));
    assert!(text.contains("****1111"), "{text}");
    assert!(
        attr(&v, "app.customer")
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("hmac:")
    );
    assert_eq!(
        attr(&v, "app.customer").unwrap().as_str().unwrap().len(),
        5 + 96 / 4
    );
    assert_eq!(attr(&v, "db.password").unwrap(), "[REDACTED:secret]");
    assert_eq!(
        attr(&v, "db.statement").unwrap(),
        "SELECT * FROM t WHERE owner = ?"
    );
    // Nothing raw in any file, before and after sealing.
    let (_, hits) = files_containing(&srv.dir, marker.as_bytes());
    assert!(hits.is_empty(), "{hits:?}");
    srv.flush().await;
    let (_, hits) = files_containing(&srv.dir, marker.as_bytes());
    assert!(hits.is_empty(), "{hits:?}");

    // The log entry of the record names the rules that ran.
    let want = {
        let t: toml::Table = toml::from_str(&rules_v1()).unwrap();
        let rc: tv_redact::RulesConfig = t["redaction"].clone().try_into().unwrap();
        tv_redact::Rules::compile(&rc).unwrap().digest()
    };
    let rc = srv
        .get_json(&format!("/api/traces/{}/receipt", hex::encode(tid)))
        .await;
    let leaf_b64 = rc["receipts"][0]["leaf"].as_str().unwrap();
    let leaf =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, leaf_b64).unwrap();
    match tv_tlog::leaf::Leaf::parse(&leaf).unwrap() {
        tv_tlog::leaf::Leaf::Record(r) => assert_eq!(r.policy_digest, want),
        other => panic!("not a record leaf: {other:?}"),
    }

    // Counters per rule and detector.
    let metrics = srv.get("/metrics").await.text().await.unwrap();
    for line in [
        "tracevault_redactions_total{rule=\"detector:credit_card\",action=\"mask\"} 2",
        "tracevault_redactions_total{rule=\"shop:key:app.customer\",action=\"hash\"} 2",
        "tracevault_redactions_total{rule=\"secret_key\",action=\"mask\"} 2",
        "tracevault_redactions_total{rule=\"sql\",action=\"mask\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    assert!(!metrics.contains(&marker));

    // SIGHUP: new rules apply to the next batch.
    std::fs::write(&cfg, rules_v2()).unwrap();
    let from = srv.log_text().len();
    hup(&srv);
    wait_for_log(&srv, "redaction rules and access policies reloaded", from).await;
    let (req, tid2) = sensitive(&marker);
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    let v2 = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid2)))
        .await;
    assert!(attr(&v2, "app.note").is_none(), "{v2}");
    // The same customer gets the same pseudonym across batches (and reloads).
    assert_eq!(attr(&v2, "app.customer"), attr(&v, "app.customer"));

    // A broken file is refused with its reason; the running rules stay.
    std::fs::write(
        &cfg,
        "[redaction]\n[[redaction.policies]]\n[[redaction.policies.rules]]\ndetector = \"jwt\"\naction = \"keep\"\n",
    )
    .unwrap();
    let from = srv.log_text().len();
    hup(&srv);
    wait_for_log(&srv, "configuration not reloaded", from).await;
    assert!(srv.log_text()[from..].contains("finds secrets and cannot be set to"));
    let (req, tid3) = sensitive(&marker);
    assert_eq!(
        srv.post_otlp("application/x-protobuf", req.encode_to_vec())
            .await
            .status(),
        200
    );
    let v3 = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid3)))
        .await;
    assert!(attr(&v3, "app.note").is_none());
    assert!(
        !srv.log_text().contains(&marker),
        "a value reached the server log"
    );

    // The directory verifies: every record's payload names the policy its leaf commits to.
    assert_eq!(srv.terminate(), Some(0));
    let (code, out) = run_verify(&srv.dir, &vkeys(&srv.dir), &[]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redaction_needs_the_flag_and_warns() {
    let srv = Server::start(&["--no-redaction"]);
    assert!(srv.log_text().contains("INSECURE: --no-redaction"));
    let marker = format!("tvm{:012x}", rand_u64());
    let (req, tid) = sensitive(&marker);
    srv.post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    let v = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    assert!(v.to_string().contains(CARD));
    // A config file cannot switch it off.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "no_redaction = true\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_redaction"));
}

fn redact_cli(dir: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    let inp = dir.join("in.json");
    std::fs::write(&inp, input).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("redact")
        .arg(&inp)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_redact_command_shows_what_rules_do_before_deploying_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (req, _) = sensitive("alice");
    let json = serde_json::to_string(&req).unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, rules_v2()).unwrap();
    let key = tmp.path().join("pk.hex");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let (code, out, report) = redact_cli(
        tmp.path(),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--pseudonym-key-file",
            key.to_str().unwrap(),
        ],
        &json,
    );
    assert_eq!(code, 0, "{report}");
    let red: ExportTraceServiceRequest = tv_model::decode::decode_json(out.as_bytes()).unwrap();
    let t = serde_json::to_string(&red).unwrap();
    for raw in [
        CARD,
        "alice@example.com",
        "cust-alice",
        "pw-alice",
        "'alice'",
    ] {
        assert!(!t.contains(raw), "{raw} in {t}");
    }
    // app.note dropped by rules v2; the pseudonym is stable for a given key.
    assert!(!t.contains("app.note"));
    let (_, out2, _) = redact_cli(
        tmp.path(),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--pseudonym-key-file",
            key.to_str().unwrap(),
        ],
        &json,
    );
    assert_eq!(out, out2);
    // The report names rules and fields, never values.
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    let hits = r["hits"].as_array().unwrap();
    assert!(hits.iter().any(|h| h["rule"] == "shop:key:app.note"
        && h["action"] == "drop"
        && h["field"] == "span.attributes[app.note]"
        && h["count"] == 2));
    assert!(
        hits.iter()
            .any(|h| h["rule"] == "detector:email" && h["field"] == "span.name")
    );
    assert!(!report.contains("alice"));
    assert_eq!(r["spans"], 2);

    // A bad rules file: a clear error naming the rule, exit non-zero.
    std::fs::write(
        &rules,
        "[[policies]]\nname = \"p\"\n[[policies.rules]]\ndetector = \"email\"\naction = \"mask\"\nkeep_last = 99\n",
    )
    .unwrap();
    let (code, _, err) = redact_cli(tmp.path(), &["--rules", rules.to_str().unwrap()], &json);
    assert_ne!(code, 0);
    assert!(
        err.contains("policy \"p\", rule 1: keep_last = 99 (at most 8)"),
        "{err}"
    );
    // Not OTLP JSON: said so.
    let (code, _, err) = redact_cli(tmp.path(), &[], "{\"resourceSpans\": 7}");
    assert_ne!(code, 0);
    assert!(err.contains("not OTLP JSON"), "{err}");
}

/// Issue 17, places and types: keys, scope, schema URL, trace state, numbers, header arrays in
/// any case and gRPC metadata, through the real ingest path, read back and grepped on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_place_and_shape_is_redacted_through_ingest() {
    let srv = Server::start(&[]);
    let reader = create_token(&srv, &["--role", "reader", "--tenant", "default"]);
    let card = 4879421458563077i64;
    let token = "k9Xv2LmQ7rT4wZ8pN3bH6yD1";
    let (mut req, tid) = request("shop", 1);
    let rs = &mut req.resource_spans[0];
    rs.schema_url = "https://schemas.example/jane.marker@example.com".into();
    let ss = &mut rs.scope_spans[0];
    ss.scope.as_mut().unwrap().version = format!("{card}");
    let sp = &mut ss.spans[0];
    sp.trace_state = "vendor=jane.marker@example.com".into();
    sp.attributes.extend([
        kv(&format!("customer.{card}"), sv("gold")),
        kv("payment.pan", iv(card)),
        kv("user.phone", iv(14155550132)),
        kv(
            "http.request.header.x-api-key",
            Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![sv(token).unwrap()],
                })),
            }),
        ),
        kv(
            "http.request.header.Cookie",
            Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![sv("sid=s3cr3tcookie").unwrap()],
                })),
            }),
        ),
        kv(
            "rpc.grpc.request.metadata.authorization",
            sv(&format!("Bearer {token}")),
        ),
    ]);
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    let raws = [
        card.to_string(),
        "14155550132".to_string(),
        token.to_string(),
        "s3cr3tcookie".to_string(),
        "jane.marker".to_string(),
    ];
    let path = format!("/api/traces/{}", hex::encode(tid));
    let admin_view = srv.get_json(&path).await.to_string();
    for raw in &raws {
        assert!(
            !admin_view.contains(raw.as_str()),
            "{raw} read back: {admin_view}"
        );
    }
    assert!(admin_view.contains("customer.hmac:"), "{admin_view}");
    // Tag listings never show what redaction removed; a reader sees the key's pseudonym marked.
    let tags = srv.get_json("/api/search/tags").await.to_string();
    assert!(
        !tags.contains(&card.to_string()) && tags.contains("customer.hmac:"),
        "{tags}"
    );
    let r = srv
        .http_client()
        .get(format!("{}/api/search/tags", srv.api))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let reader_tags = r.text().await.unwrap();
    assert!(
        reader_tags.contains("customer.[restricted:pseudonym]") && !reader_tags.contains("hmac:"),
        "{reader_tags}"
    );
    srv.flush().await;
    for raw in &raws {
        let (n, hits) = files_containing(&srv.dir, raw.as_bytes());
        assert!(hits.is_empty(), "{raw} in {hits:?} (of {n} files)");
    }
}

/// One corpus case (tests/corpus/redaction-v1.json).
#[derive(serde::Deserialize)]
struct Case {
    category: String,
    place: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    values: Vec<String>,
    int: Option<i64>,
    double: Option<f64>,
    secret: Option<String>,
    plain: Option<String>,
}

/// The case's value in its place, as the one resource of a batch; its trace id.
fn corpus_resource(c: &Case) -> (ResourceSpans, [u8; 16]) {
    let (mut req, tid) = request("corpus", 1);
    let mut rs = req.resource_spans.remove(0);
    let value = || -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(if let Some(i) = c.int {
                any_value::Value::IntValue(i)
            } else if let Some(d) = c.double {
                any_value::Value::DoubleValue(d)
            } else if !c.values.is_empty() {
                any_value::Value::ArrayValue(ArrayValue {
                    values: c.values.iter().map(|v| sv(v).unwrap()).collect(),
                })
            } else {
                any_value::Value::StringValue(c.value.clone())
            }),
        })
    };
    let sp = &mut rs.scope_spans[0].spans[0];
    match c.place.as_str() {
        "value" | "int" | "double" | "array" => sp.attributes.push(kv(&c.key, value())),
        "key" => sp.attributes.push(kv(&c.key, sv(&c.value))),
        "kvlist" => sp.attributes.push(kv(
            "nested",
            Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv(&c.key, sv(&c.value))],
                })),
            }),
        )),
        "name" => sp.name = c.value.clone(),
        "event" => sp.events.push(span::Event {
            time_unix_nano: sp.start_time_unix_nano,
            name: c.value.clone(),
            ..Default::default()
        }),
        "status" => {
            sp.status = Some(Status {
                message: c.value.clone(),
                code: 2,
            })
        }
        "trace_state" => sp.trace_state = c.value.clone(),
        "link_trace_state" => sp.links.push(span::Link {
            trace_id: tid.to_vec(),
            span_id: random_id::<8>().to_vec(),
            trace_state: c.value.clone(),
            ..Default::default()
        }),
        "scope_name" => rs.scope_spans[0].scope.as_mut().unwrap().name = c.value.clone(),
        "scope_version" => rs.scope_spans[0].scope.as_mut().unwrap().version = c.value.clone(),
        "schema_url" => rs.schema_url = c.value.clone(),
        "resource" => rs
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv(&c.key, sv(&c.value))),
        other => panic!("unknown place {other}"),
    }
    (rs, tid)
}

/// Issue 17's redaction corpus through the real ingest path: each category's share of cases
/// that hold (no form of a secret stored; a benign value back unchanged), printed as a table;
/// the categories the corpus marks as asserted must hold whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_corpus_through_ingest() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/redaction-v1.json");
    let corpus: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cases: Vec<Case> = serde_json::from_value(corpus["cases"].clone()).unwrap();
    let asserted: Vec<String> = serde_json::from_value(corpus["asserted"].clone()).unwrap();
    let srv = Server::start(&[]);
    let mut req = ExportTraceServiceRequest::default();
    let mut tids = Vec::new();
    for c in &cases {
        let (rs, tid) = corpus_resource(c);
        req.resource_spans.push(rs);
        tids.push(tid);
    }
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let resp = ExportTraceServiceResponse::decode(body.as_ref()).unwrap();
    assert!(resp.partial_success.is_none(), "{:?}", resp.partial_success);
    let mut table: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let mut failures = Vec::new();
    for (c, tid) in cases.iter().zip(&tids) {
        let trace = srv
            .get_json(&format!("/api/traces/{}", hex::encode(tid)))
            .await;
        // What was stored, without ids and timestamps: a short secret such as a 4-digit PIN
        // would otherwise be "found" in a random span id or a nanosecond time.
        let text = stored_content(&trace);
        let held = match &c.secret {
            Some(s) => {
                !text.contains(s.as_str())
                    && c.plain.as_ref().is_none_or(|p| !text.contains(p.as_str()))
            }
            None => {
                let attrs = trace["batches"][0]["scopeSpans"][0]["spans"][0]["attributes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                // The last one: `request` adds a `note` of its own first.
                let stored = attrs
                    .iter()
                    .rev()
                    .find(|a| a["key"] == c.key.as_str())
                    .map(|a| &a["value"]);
                match (stored, c.int) {
                    // OTLP/JSON writes int64 as a string.
                    (Some(v), Some(i)) => v["intValue"].as_str() == Some(i.to_string().as_str()),
                    (Some(v), None) => v["stringValue"] == c.value.as_str(),
                    (None, _) => false,
                }
            }
        };
        let e = table.entry(c.category.as_str()).or_default();
        e.0 += 1;
        if held {
            e.1 += 1;
        } else {
            failures.push(format!("{} / {} / {}", c.category, c.place, c.key));
        }
    }
    println!(
        "redaction corpus v{} ({} cases, real ingest path)",
        corpus["version"],
        cases.len()
    );
    println!(
        "{:<16} {:>6} {:>6} {:>8}  asserted",
        "category", "cases", "held", "rate"
    );
    for (cat, (n, ok)) in &table {
        println!(
            "{cat:<16} {n:>6} {ok:>6} {:>7.1}%  {}",
            100.0 * *ok as f64 / *n as f64,
            if asserted.iter().any(|a| a == cat) {
                "yes"
            } else {
                "reported"
            }
        );
    }
    for f in &failures {
        println!("not held: {f}");
    }
    for cat in &asserted {
        let (n, ok) = table.get(cat.as_str()).copied().unwrap_or((0, 0));
        assert_eq!(ok, n, "category {cat}: {ok} of {n} held; {failures:?}");
    }
}

/// The stored content of a trace as text: every key and value except ids and timestamps.
fn stored_content(v: &serde_json::Value) -> String {
    const NOT_CONTENT: &[&str] = &[
        "traceId",
        "spanId",
        "parentSpanId",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "timeUnixNano",
        "observedTimeUnixNano",
    ];
    let mut out = String::new();
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if NOT_CONTENT.contains(&k.as_str()) {
                        continue;
                    }
                    out.push_str(k);
                    out.push(' ');
                    walk(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            other => {
                out.push_str(&other.to_string());
                out.push(' ');
            }
        }
    }
    walk(v, &mut out);
    out
}
