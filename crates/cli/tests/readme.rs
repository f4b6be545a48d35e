//! README.md runs as written. The five-minute tour: `tracevault serve` in a new directory outside
//! the repository (on the default ports), then every ```sh block between `<!-- tour -->` and
//! `<!-- /tour -->` as one `bash -euo pipefail` script in that directory, with nothing but the
//! built binary on PATH as `tracevault`. And the `tracevault redact` example, which reads the
//! sample files in examples/ from the repository root.
//!
//! The tour installs the OpenTelemetry Python SDK from PyPI into a venv of its own (`pip install`),
//! so it needs the network, as a reader of the README does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn readme() -> String {
    let path = format!("{REPO}/README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The bodies of the ```sh blocks of `text`, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    let mut inside = false;
    for line in text.lines() {
        let fence = line.trim();
        if !inside && fence == "```sh" {
            inside = true;
            current.clear();
        } else if inside && fence == "```" {
            inside = false;
            blocks.push(std::mem::take(&mut current));
        } else if inside {
            current.push_str(line);
            current.push('\n');
        }
    }
    assert!(!inside, "README.md: a ```sh block is not closed");
    blocks
}

/// The text after `marker` (which must occur exactly once).
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    assert_eq!(
        text.matches(marker).count(),
        1,
        "README.md must hold {marker} exactly once"
    );
    text.split_once(marker).unwrap().1
}

/// A directory `bin/` under `dir` holding `tracevault` (a symbolic link to the built binary), and
/// the PATH that puts it first.
fn path_with_binary(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("tracevault")).unwrap();
    let mut path = bin.display().to_string();
    // The suite's venv (scripts/test) first when there is one, so that `python3` is a Python
    // that can make venvs; the tour only needs some python3 with the venv module.
    if let Some(py) = std::env::var_os("TRACEVAULT_PYTHON").map(PathBuf::from)
        && let Some(venv_bin) = py.parent()
    {
        path = format!("{path}:{}", venv_bin.display());
    }
    format!("{path}:{}", std::env::var("PATH").unwrap_or_default())
}

/// `program` in `dir` with PATH `path`, and without settings that would point the CLI elsewhere:
/// the README relies on ./tracevault-data alone, as a reader's shell with no settings would.
fn clean_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path, path: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir).env("PATH", path);
    for var in [
        "TRACEVAULT_LOG",
        "TRACEVAULT_SERVER",
        "TRACEVAULT_CA",
        "TRACEVAULT_TOKEN_FILE",
        "TRACEVAULT_DATA_DIR",
        "TRACEVAULT_TENANT",
    ] {
        c.env_remove(var);
    }
    // A client.toml in the developer's home would win over ./tracevault-data: name one that does
    // not exist instead.
    c.env("TRACEVAULT_CLIENT_CONFIG", dir.join("no-client.toml"));
    // OTEL_* settings of the machine (OTEL_SDK_DISABLED, exporter headers) are not the README's.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            c.env_remove(k);
        }
    }
    // Loopback never goes through a proxy the machine may set for PyPI.
    let no_proxy = match std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")) {
        Ok(v) if !v.is_empty() => format!("{v},127.0.0.1,localhost"),
        _ => "127.0.0.1,localhost".to_owned(),
    };
    c.env("NO_PROXY", &no_proxy).env("no_proxy", no_proxy);
    c
}

/// The server the tour starts; stopped (SIGKILL) if the test ends before it stops it.
struct TourServer {
    child: Option<Child>,
    log: PathBuf,
}

impl TourServer {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Ctrl-C in the tour's terminal would stop it, then wait (SIGKILL after 60 s).
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("the server did not stop on SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TourServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Fails with a clear message when a default port is taken: the tour uses the defaults, as a
/// reader does, so another server (a `tracevault serve` or `demo` left running) would answer it.
fn assert_default_ports_free() {
    for port in [3200, 4317, 4318] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            panic!(
                "127.0.0.1:{port} is already in use ({e}): the README tour runs `tracevault serve` \
                 on the default ports 4317, 4318 and 3200; stop whatever listens there (another \
                 tracevault serve or demo?) and run the test again"
            );
        }
    }
}

/// Runs `script` with `bash -euo pipefail` in `dir`; (exit code, stdout, stderr). Killed, with
/// everything it started, after `limit`.
fn run_script(
    script: &str,
    dir: &Path,
    path: &str,
    limit: Duration,
) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    let out_file = dir.join("tour.stdout");
    let err_file = dir.join("tour.stderr");
    let mut child = clean_command("bash", dir, path)
        .args(["-euo", "pipefail", "-c", script])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        // A group of its own, so that a timeout also ends pip or python under bash.
        .process_group(0)
        .spawn()
        .expect("starting bash");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status,
        std::fs::read_to_string(&out_file).unwrap_or_default(),
        std::fs::read_to_string(&err_file).unwrap_or_default(),
    )
}

fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn the_readme_tour_runs_as_written() {
    let text = readme();
    let serve_blocks = sh_blocks(after(&text, "<!-- tour:serve -->"));
    let serve = serve_blocks
        .first()
        .expect("a ```sh block after <!-- tour:serve -->");
    assert_eq!(
        serve.trim(),
        "tracevault serve",
        "the tour's server command"
    );
    let tour = after(&text, "<!-- tour -->");
    let (tour, _) = tour
        .split_once("<!-- /tour -->")
        .expect("<!-- /tour --> after <!-- tour -->");
    let script = sh_blocks(tour).concat();
    assert!(!script.trim().is_empty(), "no ```sh block in the tour");

    assert_default_ports_free();
    // A new directory outside the repository, as the tour says; removed at the end.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = path_with_binary(dir);
    let log = dir.join("server.log");
    let child = clean_command(dir.join("bin/tracevault"), dir, &path)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting tracevault serve");
    let mut server = TourServer {
        child: Some(child),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("tracevault-data/listen.json").exists() {
        if let Some(st) = server.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("tracevault serve exited ({st}): {}", server.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "tracevault serve did not start in 60 s: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (code, out, err) = run_script(&script, dir, &path, Duration::from_secs(300));
    let context = format!(
        "--- script\n{script}\n--- stdout\n{out}\n--- stderr\n{err}\n--- server log\n{}",
        server.log_text()
    );
    assert_eq!(
        code,
        Some(0),
        "the tour failed (None: timed out after 300 s)\n{context}"
    );

    // `echo "trace $TRACE"`: the id the Python program printed.
    let trace = out
        .lines()
        .filter_map(|l| l.strip_prefix("trace "))
        .find(|rest| is_trace_id(rest))
        .unwrap_or_else(|| panic!("no `trace <32 hex digits>` line\n{context}"))
        .to_owned();
    // Nothing the program sent in the clear comes back: not in the trace (`query trace -v`), the
    // searches, the findings or the receipt's revealed fields.
    for raw in [
        "alice@example.com",
        "4111 1111 1111 1111",
        "eyJhbGciOi",
        "203.0.113.7",
    ] {
        assert!(
            !out.contains(raw),
            "{raw:?} in the tour's output\n{context}"
        );
    }
    assert!(
        out.contains("user.email = \"hmac:"),
        "query trace -v shows the pseudonym of user.email\n{context}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("⚠ finding") && l.contains("tv-sqli-")),
        "query trace -v marks the flagged span with its finding\n{context}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("tv-sqli-") && l.contains(&trace)),
        "a finding of an SQL injection rule (tv-sqli-*) for trace {trace}\n{context}"
    );
    // `tracevault pseudonym` prints the pseudonym alone; `query search --user` follows it, a
    // table ending in "N traces".
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.strip_prefix("hmac:")
                .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .unwrap_or_else(|| panic!("no pseudonym line (hmac:<hex>)\n{context}"));
    let user_search: Vec<&str> = lines[at + 1..]
        .iter()
        .copied()
        .take_while(|l| !l.ends_with(" traces"))
        .collect();
    assert!(
        user_search.iter().any(|l| l.starts_with(&trace)),
        "query search --user finds trace {trace}: {user_search:?}\n{context}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("VALID span ") && l.contains(&format!("of trace {trace}"))),
        "verify-receipt says VALID for the trace's spans\n{context}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("INVALID")),
        "verify-receipt found an invalid receipt\n{context}"
    );
    assert!(
        out.contains(&format!("/trace/{trace}")),
        "login-url prints a link to the trace\n{context}"
    );

    server.stop();
    drop(server);
    tmp.close().unwrap();
}

/// The file a command line writes its stdout to (`... > FILE`), if it says.
fn redirect_target(command: &str) -> Option<&str> {
    let (_, rest) = command.split_once(" > ")?;
    rest.split_whitespace().next()
}

#[test]
fn the_readme_redact_example_runs_from_the_repository_root() {
    let blocks: Vec<String> = sh_blocks(&readme())
        .into_iter()
        .filter(|b| b.trim_start().starts_with("tracevault redact"))
        .collect();
    assert!(
        !blocks.is_empty(),
        "README.md has no ```sh block starting with tracevault redact"
    );
    let repo = std::fs::canonicalize(REPO).unwrap();
    for block in &blocks {
        // The example is run from the repository root. So that its `> redacted.json` does not land
        // in the working tree, the root is mirrored in a temporary directory (a symbolic link per
        // top-level entry) and the block runs there: its relative paths resolve as at the root.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir(&root).unwrap();
        for e in std::fs::read_dir(&repo).unwrap() {
            let e = e.unwrap();
            std::os::unix::fs::symlink(e.path(), root.join(e.file_name())).unwrap();
        }
        let path = path_with_binary(tmp.path());
        let out = clean_command("bash", &root, &path)
            .args(["-euo", "pipefail", "-c", block.as_str()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let context = format!("--- block\n{block}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
        assert!(out.status.success(), "the redact example failed\n{context}");
        let redacted = match redirect_target(block) {
            Some(file) => std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}\n{context}")),
            None => stdout.clone(),
        };
        let v: serde_json::Value = serde_json::from_str(&redacted)
            .unwrap_or_else(|e| panic!("the redacted output is not JSON: {e}\n{context}"));
        let spans: usize = v["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
            .map(|ss| ss["spans"].as_array().map_or(0, Vec::len))
            .sum();
        assert!(spans > 0, "no spans in the redacted OTLP JSON\n{context}");
        for raw in [
            "alice@example.com",
            "4111 1111 1111 1111",
            "eyJhbGciOi",
            "sk_live_",
        ] {
            assert!(
                !redacted.contains(raw),
                "{raw:?} survived redaction\n{context}"
            );
        }
        // The report (stderr) shows that examples/redaction.toml loaded as rules: its payments
        // policy, not only the built-in one, redacted the payments span of examples/spans.json.
        let report: serde_json::Value = serde_json::from_str(&stderr)
            .unwrap_or_else(|e| panic!("the report on stderr is not JSON: {e}\n{context}"));
        assert!(
            report["hits"].as_array().is_some_and(|h| !h.is_empty()),
            "the report names no rule that fired\n{context}"
        );
        if block.contains("examples/redaction.toml") {
            assert!(
                report["policies"].get("payments").is_some(),
                "the payments policy of examples/redaction.toml did not apply\n{context}"
            );
        }
        tmp.close().unwrap();
    }
}
