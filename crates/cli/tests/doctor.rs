//! `tracevault doctor` and `GET /api/doctor`: the default data directory grades clean (running
//! as root included, which is only advice), and every check fires on a deployment made to trip
//! it, with the exit codes operators script against.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// `tracevault doctor --json ARGS`: (exit code, the report, stderr).
fn doctor(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .arg("doctor")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn fired(r: &serde_json::Value) -> BTreeSet<String> {
    r["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {r}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// What a fresh `serve` data directory may report: production advice, nothing that fails.
const ADVICE: &[&str] = &[
    "no-kms",
    "no-witnesses",
    "retention-unset",
    "running-as-root",
    "no-detection-sinks",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_default_grades_clean_and_every_check_fires_when_tripped() {
    let mut srv = Server::start(&[]);
    let data = srv.dir.to_str().unwrap().to_owned();

    // 1. The default data directory grades 0, offline and over the API.
    let (code, r, err) = doctor(&["--data-dir", &data]);
    assert_eq!(code, 0, "{r:#} {err}");
    let advice: BTreeSet<String> = ADVICE.iter().map(|s| s.to_string()).collect();
    assert!(fired(&r).is_subset(&advice), "{r:#}");
    assert_eq!(r["fails"], false);
    assert_eq!(fired(&r).contains("running-as-root"), is_root());
    for f in r["findings"].as_array().unwrap() {
        let doc = f["doc"].as_str().unwrap();
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(doc)
                .exists(),
            "{doc} exists"
        );
        assert!(!f["why"].as_str().unwrap().is_empty() && !f["fix"].as_str().unwrap().is_empty());
    }
    // Through a symlink, as systemd's DynamicUser lays out /var/lib/tracevault: the link's own
    // mode (0777) is not the directory's.
    let link = srv.dir.parent().unwrap().join("state-link");
    std::os::unix::fs::symlink(&srv.dir, &link).unwrap();
    let (code, r, err) = doctor(&["--data-dir", link.to_str().unwrap()]);
    assert_eq!(code, 0, "{r:#} {err}");
    assert!(fired(&r).is_subset(&advice), "{r:#}");
    let api = srv.get_json("/api/doctor").await;
    assert_eq!(api["fails"], false, "{api:#}");
    assert!(fired(&api).is_subset(&advice), "{api:#}");
    let reader = create_token(
        &srv,
        &["--role", "reader", "--tenant", "default", "--name", "r"],
    );
    let (status, body) = call(&srv, "GET", "/api/doctor", &reader, "default").await;
    assert_eq!(status, 403, "{body}");

    // 2. A second admin while the first start's token file is still there (and spans, so the
    //    tenant has a key).
    let (req, _) = request("checkout", 2);
    srv.export(&req).await;
    create_token(&srv, &["--role", "admin", "--name", "alice"]);
    assert_eq!(srv.terminate(), Some(0));
    let mut all = BTreeSet::new();
    let (code, r, _) = doctor(&["--data-dir", &data]);
    assert_eq!(code, 0, "medium: reported, not failed: {r:#}");
    assert!(fired(&r).contains("admin-token-file"), "{r:#}");
    all.extend(fired(&r));

    // 3. Loose permissions, an old tenant key, a clock behind the data.
    let dir = srv.dir.clone();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("keys/root.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let kek = dir.join("keys/tenants/default/kek-v1.json");
    let mut k: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kek).expect("the default tenant's key")).unwrap();
    k["created_unix"] = (tv_access::now_unix() - 200 * 86_400).into();
    std::fs::write(&kek, serde_json::to_vec(&k).unwrap()).unwrap();
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(dir.join("listen.json"))
        .unwrap()
        .set_modified(future)
        .unwrap();
    let (code, r, _) = doctor(&["--data-dir", &data]);
    assert_eq!(code, 1, "{r:#}");
    let f = fired(&r);
    for id in [
        "data-dir-permissions",
        "key-file-permissions",
        "key-age",
        "clock-skew",
    ] {
        assert!(f.contains(id), "{id}: {r:#}");
    }
    let sev = |id: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()["severity"]
            .clone()
    };
    assert_eq!(sev("key-file-permissions"), "critical");
    assert_eq!(sev("data-dir-permissions"), "high");
    all.extend(f);

    // 4. TLS off and redaction off, reachable from the network.
    let (code, r, _) = doctor(&[
        "--data-dir",
        &data,
        "--insecure-plaintext",
        "--no-redaction",
        "--api",
        "0.0.0.0:3200",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        r["findings"][0]["severity"], "critical",
        "the most severe first: {r:#}"
    );
    all.extend(fired(&r));

    // 5. A config that weakens TLS, opens the log, trusts one witness, keeps what the detectors
    //    find and turns detection off.
    let witness = tv_tlog::cosig::Ed25519CosigSigner::generate("w.example/w1")
        .unwrap()
        .vkey();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("weak.toml");
    let mut detectors = String::new();
    for d in tv_server::doctor::PERSONAL {
        detectors.push_str(&format!(
            "[[redaction.policies.rules]]\ndetector = \"{d}\"\naction = \"keep\"\n"
        ));
    }
    std::fs::write(
        &cfg,
        format!(
            r#"[listen]
api = "10.1.2.3:3200"
[tls]
min_version = "1.2"
post_quantum = false
[log]
public = true
witnesses = [{{ url = "https://w.example:7380", vkey = "{witness}" }}]
[detection]
enabled = false
[[redaction.policies]]
name = "keep-everything"
mode = "denylist"
{detectors}"#
        ),
    )
    .unwrap();
    let (code, r, err) = doctor(&["--data-dir", &data, "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err} {r:#}");
    let f = fired(&r);
    for id in [
        "exposed-listener",
        "tls12-allowed",
        "post-quantum-off",
        "unauthenticated-endpoint",
        "single-cosignature",
        "redaction-denylist-without-detectors",
        "detection-off",
    ] {
        assert!(f.contains(id), "{id}: {r:#}");
    }
    all.extend(f);

    // Every check fired somewhere (running as root only where the tests run as root).
    let checks: BTreeSet<String> = tv_server::doctor::CHECKS
        .iter()
        .map(|s| s.to_string())
        .filter(|s| s != "running-as-root" || is_root())
        .collect();
    let missing: Vec<_> = checks.difference(&all).collect();
    assert!(missing.is_empty(), "checks that never fired: {missing:?}");

    // Usage errors: exit 2, saying what is wrong.
    let (code, _, err) = doctor(&["--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    std::fs::write(&cfg, "[tls]\nmin_version = \"1.1\"\n").unwrap();
    let (code, _, err) = doctor(&["--data-dir", &data, "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("min_version") && err.contains("1.3"), "{err}");
}
