//! The deployment files keep the hardening a reviewer looks for: the systemd unit
//! (`deploy/tracevault.service`), the container build (`deploy/Dockerfile`) and the Grafana
//! provisioning example. Read as text: nothing here runs systemd, Docker or Grafana.

use std::collections::HashMap;
use std::net::SocketAddr;

fn repo_file(rel: &str) -> String {
    let path = format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `Section/Key` -> every value assigned, in order: systemd adds later lines to a list, and an
/// empty one resets it, so the last value of a single-valued key is the one in force.
fn unit_entries(text: &str) -> HashMap<String, Vec<String>> {
    let mut entries: HashMap<String, Vec<String>> = HashMap::new();
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .expect("a unit line is [Section] or Key=Value");
        let values = entries.entry(format!("{section}/{}", key.trim()));
        values.or_default().push(value.trim().to_owned());
    }
    entries
}

/// The value of `--flag VALUE` or `--flag=VALUE`.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    let at = args.iter().position(|&a| a == name || a.starts_with(&eq))?;
    args[at].strip_prefix(&eq).or(args.get(at + 1).copied())
}

#[test]
fn the_systemd_unit_runs_the_server_sandboxed() {
    let unit = unit_entries(&repo_file("deploy/tracevault.service"));
    let all = |key: &str| unit.get(key).map(Vec::as_slice).unwrap_or_default();
    let last = |key: &str| all(key).last().map(String::as_str);
    let user = last("Service/User").is_none_or(|u| u == "root" || u == "0");
    let root = last("Service/DynamicUser") != Some("yes") && user;
    assert!(!root, "neither DynamicUser=yes nor a User= other than root");
    let wanted: [(&str, &[&str]); 7] = [
        ("NoNewPrivileges", &["yes"]),
        ("ProtectSystem", &["strict"]),
        ("ProtectHome", &["yes", "read-only", "tmpfs"]),
        ("PrivateTmp", &["yes"]),
        ("UMask", &["0077"]),
        ("CapabilityBoundingSet", &[""]),
        ("AmbientCapabilities", &[""]),
    ];
    for (key, allowed) in wanted {
        let got = last(&format!("Service/{key}"));
        let ok = got.is_some_and(|v| allowed.contains(&v));
        assert!(ok, "{key}= is {got:?}, not one of {allowed:?}");
    }
    let families = all("Service/RestrictAddressFamilies").join(" ");
    let open = families.is_empty() || families.starts_with('~');
    assert!(!open, "RestrictAddressFamilies= is not an allow list");
    for family in ["AF_PACKET", "AF_NETLINK"] {
        assert!(!families.contains(family), "the unit allows {family}");
    }
    let filters = all("Service/SystemCallFilter");
    let filtered = filters.iter().any(|f| f.contains("@system-service"));
    assert!(filtered, "no SystemCallFilter=@system-service: {filters:?}");

    let exec = all("Service/ExecStart");
    assert_eq!(exec.len(), 1, "expected one ExecStart=");
    // `+` and `!` run the command outside the sandbox or the user.
    assert!(!exec[0].starts_with(['+', '!']), "privileged ExecStart=");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    let serve = args[0].ends_with("/tracevault") && args.get(1) == Some(&"serve");
    assert!(serve, "ExecStart= is not `tracevault serve`: {args:?}");
    for insecure in ["--insecure-plaintext", "--no-redaction"] {
        assert!(!args.contains(&insecure), "ExecStart= passes {insecure}");
    }
    for listener in ["--otlp-grpc", "--otlp-http", "--api"] {
        let addr = flag(&args, listener).map(str::parse::<SocketAddr>);
        let exposed = addr.is_some_and(|a| a.is_ok_and(|a| !a.ip().is_loopback()));
        assert!(!exposed, "{listener} leaves loopback: {args:?}");
    }
    let data_dir = flag(&args, "--data-dir").expect("ExecStart= passes no --data-dir");
    // Writable under ProtectSystem=strict: the StateDirectory= or one of the ReadWritePaths=.
    let state_dir = format!(
        "/var/lib/{}",
        last("Service/StateDirectory").unwrap_or_default()
    );
    let writable = all("Service/ReadWritePaths").join(" ");
    let covered = data_dir == state_dir || writable.split(' ').any(|p| p == data_dir);
    assert!(covered, "{data_dir} is read-only to the unit");
    assert_eq!(last("Install/WantedBy"), Some("multi-user.target"));
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_unprivileged() {
    let text = repo_file("deploy/Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    fn is(line: &str, word: &str) -> bool {
        line.split_whitespace().next() == Some(word)
    }
    let froms: Vec<usize> = (0..lines.len()).filter(|&i| is(lines[i], "FROM")).collect();
    assert!(froms.len() >= 2, "the Dockerfile is not multi-stage");
    let runtime = &lines[froms[froms.len() - 1]..];
    let user = runtime.iter().rev().find(|l| is(l, "USER"));
    let user = user.expect("the runtime stage has no USER: it runs as root");
    let name = user["USER".len()..].trim().split(':').next();
    let root = name.is_none_or(|n| ["root", "0", ""].contains(&n));
    assert!(!root, "the runtime stage runs as root: {user}");
    for insecure in ["--insecure-plaintext", "--no-redaction"] {
        let passed = lines
            .iter()
            .any(|l| !l.starts_with('#') && l.contains(insecure));
        assert!(!passed, "the Dockerfile passes {insecure}");
    }
}

#[test]
fn the_grafana_example_names_both_apis_the_tenant_and_the_ca() {
    let text = repo_file("examples/grafana/datasources.yaml");
    let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    let body = lines.collect::<Vec<_>>().join("\n");
    for needed in [
        "type: tempo",
        "type: jaeger",
        "url: https://127.0.0.1:3200/jaeger",
        "X-Scope-OrgID",
        "tlsAuthWithCACert: true",
        "tlsCACert:",
    ] {
        assert!(body.contains(needed), "the example lacks {needed:?}");
    }
    let unchecked = body.contains("tlsSkipVerify: true");
    assert!(!unchecked, "the example turns off certificate checks");
}
