//! The CLI as people use it: a person's traces by a known identity value (`pseudonym`,
//! `query search --user`), times written as people write them, tables in local time, a client
//! that finds its server from the environment or a config file, and a closed pipe.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs the CLI with `env` (and no data-dir flags); (exit code, stdout, stderr).
fn tv(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).stdin(Stdio::null());
    for v in [
        "TRACEVAULT_SERVER",
        "TRACEVAULT_CA",
        "TRACEVAULT_TOKEN_FILE",
        "TRACEVAULT_TENANT",
        "TRACEVAULT_DATA_DIR",
    ] {
        c.env_remove(v);
    }
    // No person's own client config may leak into the test.
    c.env("TRACEVAULT_CLIENT_CONFIG", dir.join("no-such-client.toml"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn investigators_find_a_persons_traces_by_pseudonym_and_readers_cannot() {
    let srv = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let ca = srv.ca();
    let write = |name: &str, token: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, token).unwrap();
        p
    };
    let inv = write(
        "inv.token",
        &create_token(
            &srv,
            &[
                "--role",
                "investigator",
                "--tenant",
                "default",
                "--name",
                "dsar",
            ],
        ),
    );
    let reader = write(
        "reader.token",
        &create_token(
            &srv,
            &[
                "--role", "reader", "--tenant", "default", "--name", "grafana",
            ],
        ),
    );

    // Alice's spans carry her address as semantic conventions send it: user.email on the span,
    // enduser.id as written by another service (other case), and an unrelated user's trace.
    let (mut req, alice_trace) = request("accounts", 2);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[0]
        .attributes
        .push(kv("user.email", sv("Alice.Liddell@Example.com")));
    spans[1]
        .attributes
        .push(kv("enduser.id", sv("alice.liddell@example.com")));
    let (mut other, other_trace) = request("accounts", 1);
    other.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("user.email", sv("bob@example.com")));
    for r in [req, other] {
        srv.export(&r).await;
    }
    srv.flush().await;

    let env = [
        ("TRACEVAULT_SERVER", srv.api.as_str()),
        ("TRACEVAULT_CA", ca.to_str().unwrap()),
    ];
    fn with<'a>(env: &[(&'a str, &'a str)], token: &'a std::path::Path) -> Vec<(&'a str, &'a str)> {
        let mut e = env.to_vec();
        e.push(("TRACEVAULT_TOKEN_FILE", token.to_str().unwrap()));
        e
    }

    // The pseudonym is the one redaction stored for her.
    let (code, out, err) = tv(
        &["pseudonym", "alice.liddell@example.com"],
        &with(&env, &inv),
        tmp.path(),
    );
    assert_eq!(code, 0, "{err}");
    let pseudonym = out.trim().to_owned();
    assert!(pseudonym.starts_with("hmac:"), "{out}");
    let stored = srv
        .get_json(&format!("/api/traces/{}", hex::encode(alice_trace)))
        .await
        .to_string();
    assert!(
        stored.contains(&pseudonym),
        "the stored user.email is the printed pseudonym: {stored}"
    );
    assert!(!stored.to_lowercase().contains("liddell"), "{stored}");

    // --user finds her trace (both spellings), not Bob's.
    let (code, out, err) = tv(
        &[
            "query",
            "search",
            "--user",
            "ALICE.LIDDELL@example.com",
            "--since",
            "1h",
        ],
        &with(&env, &inv),
        tmp.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&hex::encode(alice_trace)), "{out}");
    assert!(!out.contains(&hex::encode(other_trace)), "{out}");
    assert!(out.contains("1 traces"), "{out}");

    // TraceQL by the raw value (`{ .user.email = "..." }`) is the same lookup for an
    // investigator: it finds her trace and counts against the same limit, audited.
    let inv_token = std::fs::read_to_string(&inv).unwrap();
    let q = "{ .user.email = \"alice.liddell@example.com\" && .user.email != \"x@example.com\" }";
    let (status, body) = call(
        &srv,
        "GET",
        &format!("/api/search?q={}&limit=5", urlencode(q)),
        inv_token.trim(),
        "default",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&hex::encode(alice_trace)), "{body}");

    // A reader may not turn guesses into pseudonyms.
    for args in [
        &["pseudonym", "alice.liddell@example.com"][..],
        &["query", "search", "--user", "alice.liddell@example.com"][..],
    ] {
        let (code, _, err) = tv(args, &with(&env, &reader), tmp.path());
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("403") && err.contains("investigator or admin"),
            "{args:?}: {err}"
        );
    }

    // Every use is audited with the principal's count; the value is in no record.
    let audit = srv.get_json("/api/audit?limit=1000").await.to_string();
    assert!(audit.contains("lookup_person"), "{audit}");
    assert!(audit.contains("lookup 1 of this principal"), "{audit}");
    assert!(audit.contains("lookup 2 of this principal"), "{audit}");
    // The TraceQL search's two values were lookups 3 and 4.
    assert!(
        audit.contains("TraceQL values searched by pseudonym: 2 (lookup 4 of this principal)"),
        "{audit}"
    );
    assert!(!audit.to_lowercase().contains("liddell"), "{audit}");
    let log = srv.log_text().to_lowercase();
    assert!(!log.contains("liddell"), "the value is not logged");

    // The lookups are limited per principal: 429 with the limit named, and the server goes on.
    let mut limited = None;
    for _ in 0..30 {
        let (code, _, err) = tv(
            &["pseudonym", "guess@example.com"],
            &with(&env, &inv),
            tmp.path(),
        );
        if code != 0 {
            limited = Some(err);
            break;
        }
    }
    let err = limited.expect("the lookups were never limited");
    assert!(
        err.contains("429") && err.contains("30 person lookups"),
        "{err}"
    );
    assert_eq!(srv.ready_status().await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_finds_its_server_reads_human_times_and_ends_quietly_on_a_closed_pipe() {
    let srv = Server::start(&[]);
    let (req, tid) = request("checkout", 3);
    srv.export(&req).await;
    srv.flush().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let token_file = srv.dir.join("admin.token");

    // From another directory with nothing configured, the error says what to configure.
    let (code, _, err) = tv(&["query", "search"], &[], elsewhere.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("--ca") && err.contains("TRACEVAULT_CA") && err.contains("client.toml"),
        "{err}"
    );

    // A client config file names the server, the CA and the token (paths relative to it).
    let cfg_dir = elsewhere.path().join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::copy(srv.ca(), cfg_dir.join("ca.pem")).unwrap();
    std::fs::copy(&token_file, cfg_dir.join("token")).unwrap();
    let cfg = cfg_dir.join("client.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{}\"\nca = \"ca.pem\"\ntoken_file = \"token\"\ntenant = \"default\"\n",
            srv.api
        ),
    )
    .unwrap();
    let cfg_env = [("TRACEVAULT_CLIENT_CONFIG", cfg.to_str().unwrap())];
    let (code, out, err) = tv(
        &["query", "search", "--since", "1h", "--end", "now"],
        &cfg_env,
        elsewhere.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&hex::encode(tid)), "{out}");
    // Start times are local, with the zone.
    let zone = jiff::Zoned::now().strftime("%Z").to_string();
    assert!(out.contains("START") && out.contains(&zone), "{out}");

    // RFC 3339 and relative times; nonsense is refused naming the forms accepted.
    let start = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(2))
        .unwrap()
        .to_string();
    let (code, out, err) = tv(
        &["query", "search", "--start", &start, "--end", "5m ago"],
        &cfg_env,
        elsewhere.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(&hex::encode(tid)),
        "a window that ended 5 minutes ago does not hold a trace sent now: {out}"
    );
    let (code, _, err) = tv(
        &["query", "search", "--start", "yesterday"],
        &cfg_env,
        elsewhere.path(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("--start") && err.contains("RFC 3339") && err.contains("1h"),
        "{err}"
    );

    // A config that names a server but no token never sends ./tracevault-data's admin token.
    let local = elsewhere.path().join("tracevault-data");
    std::fs::create_dir_all(local.join("tls")).unwrap();
    std::fs::copy(&token_file, local.join("admin.token")).unwrap();
    std::fs::copy(srv.ca(), local.join("tls/ca.pem")).unwrap();
    let bare = cfg_dir.join("bare.toml");
    std::fs::write(
        &bare,
        format!("server = \"{}\"\nca = \"ca.pem\"\n", srv.api),
    )
    .unwrap();
    let (code, _, err) = tv(
        &["query", "search"],
        &[("TRACEVAULT_CLIENT_CONFIG", bare.to_str().unwrap())],
        elsewhere.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("no API token file"), "{err}");
    std::fs::remove_dir_all(&local).unwrap();

    // The environment wins over the config file.
    let (code, _, err) = tv(
        &["query", "search"],
        &[
            ("TRACEVAULT_CLIENT_CONFIG", cfg.to_str().unwrap()),
            ("TRACEVAULT_SERVER", "https://127.0.0.1:1"),
        ],
        elsewhere.path(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach https://127.0.0.1:1"),
        "the variable's server was used: {err}"
    );

    // `query trace -v` shows attributes; `query tags` lists the names.
    let (code, out, err) = tv(
        &["query", "trace", &hex::encode(tid), "-v"],
        &cfg_env,
        elsewhere.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("note = \"n1\""), "{out}");
    assert!(out.contains("http.response.status_code = 201"), "{out}");
    let (code, out, err) = tv(&["query", "tags"], &cfg_env, elsewhere.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("note"), "{out}");

    // `| head`: standard output closed before the table is written ends quietly, exit 0.
    let mut child = Command::new(BIN)
        .args(["query", "search", "--since", "1h"])
        .env("TRACEVAULT_CLIENT_CONFIG", &cfg)
        .current_dir(elsewhere.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
