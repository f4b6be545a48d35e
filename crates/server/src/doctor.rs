//! `tracevault doctor` and `GET /api/doctor`: grades a deployment — the configuration `serve`
//! would run with and the data directory it would use — against what secure operation needs.
//!
//! Each check that fires says how severe it is, why it matters and how to fix it, with a page
//! under `docs/doctor/`. Advice only production needs (running as root, no KMS, no witnesses,
//! retention unset) is `info`: reported, never failed. The grade fails (exit 1) when anything
//! is `high` or `critical`.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::config::{RootSource, ServeConfig};

/// How much a finding of the doctor matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Whether a deployment with this finding fails the grade.
    pub fn fails(self) -> bool {
        self >= Severity::High
    }
}

/// One check that fired.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The check's id; its page is `docs/doctor/<id>.md`.
    pub id: &'static str,
    pub severity: Severity,
    /// What was found, with the values that make it true (never a secret).
    pub title: String,
    pub why: &'static str,
    pub fix: String,
    pub doc: String,
}

/// The grade of a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub data_dir: String,
    /// The checks that fired, the most severe first.
    pub findings: Vec<Finding>,
    /// The ids of the checks that ran and found nothing.
    pub passed: Vec<&'static str>,
    /// Whether anything is high or critical.
    pub fails: bool,
}

/// What the grade needs besides the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// The effective user id the server runs (or would run) as.
    pub euid: Option<u32>,
    /// Now, unix seconds.
    pub now: u64,
}

impl Facts {
    /// This process's user and clock.
    pub fn here() -> Self {
        Facts {
            // /proc/self belongs to the process's effective user.
            euid: std::fs::metadata("/proc/self").ok().map(|m| m.uid()),
            now: tv_access::now_unix(),
        }
    }
}

/// Every check, in the order they are reported when they pass.
pub const CHECKS: &[&str] = &[
    "plaintext-listener",
    "exposed-listener",
    "tls12-allowed",
    "post-quantum-off",
    "unauthenticated-endpoint",
    "admin-token-file",
    "key-file-permissions",
    "key-age",
    "no-kms",
    "redaction-off",
    "redaction-denylist-without-detectors",
    "detection-off",
    "no-witnesses",
    "single-cosignature",
    "no-detection-sinks",
    "retention-unset",
    "data-dir-permissions",
    "running-as-root",
    "clock-skew",
];

/// Default key age when `[keys] rotate_after_days` is unset.
const DEFAULT_ROTATION_DAYS: u64 = 90;
/// How far ahead of the clock the data directory's newest write may be.
const CLOCK_SLACK_SECS: u64 = 60;
/// Detectors of personal data (not secrets, which a policy cannot keep).
pub const PERSONAL: &[&str] = &[
    "email",
    "credit_card",
    "iban",
    "us_ssn",
    "ip_address",
    "phone",
];

struct Grader {
    findings: Vec<Finding>,
}

impl Grader {
    fn fire(
        &mut self,
        id: &'static str,
        severity: Severity,
        title: String,
        why: &'static str,
        fix: String,
    ) {
        debug_assert!(CHECKS.contains(&id), "{id} is not in CHECKS");
        self.findings.push(Finding {
            id,
            severity,
            title,
            why,
            fix,
            doc: format!("docs/doctor/{id}.md"),
        });
    }
}

/// Grades `cfg` (with `redaction`, the rules in force: the running server's after a reload)
/// and the data directory it names.
pub fn grade(cfg: &ServeConfig, redaction: Option<&tv_redact::Rules>, facts: Facts) -> Report {
    let mut g = Grader {
        findings: Vec::new(),
    };
    listeners(&mut g, cfg);
    if cfg.log_public {
        g.fire(
            "unauthenticated-endpoint",
            Severity::Medium,
            "the transparency log (GET /log/...) is served without a token ([log] public = true)".into(),
            "anyone who reaches the API port learns ingest volume and timing per second",
            "remove `public = true` from [log] (or --log-public); give monitors and witnesses a token".into(),
        );
    }
    let dir = &cfg.data_dir;
    let exists = dir.is_dir();
    if exists {
        files(&mut g, cfg, facts);
    }
    if matches!(cfg.root, RootSource::File) {
        g.fire(
            "no-kms",
            Severity::Info,
            format!(
                "the root key is a file ({}) beside the data it protects",
                cfg.keys_dir.join("root.key").display()
            ),
            "whoever copies the disk (a backup, a snapshot) has the key to everything on it",
            "keep the root in OpenBao or Vault transit: [keys] root = \"transit\" (operator's guide, \"The root in a KMS\")".into(),
        );
    }
    redaction_checks(&mut g, redaction);
    let d = &cfg.detection;
    if !d.enabled {
        g.fire(
            "detection-off",
            Severity::Medium,
            "threat detection is off ([detection] enabled = false)".into(),
            "attacks carried in the traces (injection, scanners, credential abuse) go unseen",
            "remove `enabled = false` from [detection]; disable single noisy rules with disabled_rules".into(),
        );
    } else if d.sinks.is_empty() {
        g.fire(
            "no-detection-sinks",
            Severity::Low,
            "findings go nowhere outside tracevault (no [[detection.sinks]], no jsonl_file)".into(),
            "nobody is told: a finding waits until someone opens the UI or the API",
            "add a [[detection.sinks]] webhook or syslog sink to your SIEM, or jsonl_file (operator's guide, \"Finding sinks\")".into(),
        );
    }
    match cfg.witnesses.len() {
        0 => g.fire(
            "no-witnesses",
            Severity::Info,
            "no witness cosigns the log's checkpoints ([log] witnesses is empty)".into(),
            "a server that shows different readers different histories (a split view) is caught only by comparing checkpoints by hand",
            "run `tracevault witness` elsewhere (another host, another team) and add it to [log] witnesses".into(),
        ),
        1 => g.fire(
            "single-cosignature",
            Severity::Low,
            "one witness cosigns the checkpoints".into(),
            "a checkpoint's independence rests on one other party: if it is down or colludes, nothing else vouches",
            "add a second witness run by someone else to [log] witnesses".into(),
        ),
        _ => {}
    }
    if cfg.retention.is_none() {
        let limited = cfg
            .tenant_retention
            .values()
            .filter(|r| r.is_some())
            .count();
        g.fire(
            "retention-unset",
            Severity::Info,
            format!(
                "traces are kept forever ([storage] retention_secs is unset{})",
                if limited > 0 {
                    format!("; {limited} tenant(s) have their own, every other tenant keeps all")
                } else {
                    String::new()
                }
            ),
            "personal data kept without a limit breaks storage limitation (GDPR art. 5(1)(e)) and grows what a breach exposes",
            "set [storage] retention_secs (e.g. 2592000 for 30 days), per tenant in [storage.tenant_retention_secs]".into(),
        );
    }
    if facts.euid == Some(0) {
        g.fire(
            "running-as-root",
            Severity::Info,
            "running as root (uid 0): the server, or doctor grading as the user serve would run as"
                .into(),
            "a flaw in any parser would run with every right on the machine",
            "run it as a dedicated user: deploy/tracevault.service uses DynamicUser".into(),
        );
    }
    let mut findings = g.findings;
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    let fired: std::collections::HashSet<&str> = findings.iter().map(|f| f.id).collect();
    let skipped_without_dir = [
        "admin-token-file",
        "key-file-permissions",
        "key-age",
        "data-dir-permissions",
        "clock-skew",
    ];
    let passed = CHECKS
        .iter()
        .copied()
        .filter(|id| !fired.contains(id) && (exists || !skipped_without_dir.contains(id)))
        .collect();
    let fails = findings.iter().any(|f| f.severity.fails());
    Report {
        data_dir: dir.display().to_string(),
        findings,
        passed,
        fails,
    }
}

fn listeners(g: &mut Grader, cfg: &ServeConfig) {
    let all: [(&str, SocketAddr); 3] = [
        ("OTLP gRPC", cfg.otlp_grpc),
        ("OTLP HTTP", cfg.otlp_http),
        ("API", cfg.api),
    ];
    let open: Vec<String> = all
        .iter()
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(n, a)| format!("{n} {a}"))
        .collect();
    if cfg.insecure_plaintext {
        let (sev, reach) = if open.is_empty() {
            (Severity::High, "on loopback".to_owned())
        } else {
            (
                Severity::Critical,
                format!("reachable from the network: {}", open.join(", ")),
            )
        };
        g.fire(
            "plaintext-listener",
            sev,
            format!("TLS is off (--insecure-plaintext); listeners {reach}"),
            "tokens and spans cross the wire in clear: anyone on the path reads and replays them",
            "remove --insecure-plaintext / [tls] insecure_plaintext; use the generated certificate or [tls] cert and key".into(),
        );
    } else if !open.is_empty() {
        g.fire(
            "exposed-listener",
            Severity::Info,
            format!("listeners not on loopback: {}", open.join(", ")),
            "every host that can reach them can try credentials and load them",
            "limit who can connect (firewall, network policy); prefer mTLS for services (`tracevault cert issue`)".into(),
        );
    }
    if !cfg.insecure_plaintext {
        if cfg.tls_policy.tls12 {
            g.fire(
                "tls12-allowed",
                Severity::Medium,
                "TLS 1.2 is accepted ([tls] min_version = \"1.2\")".into(),
                "its handshake shows client certificates in clear and has no post-quantum key exchange",
                "set [tls] min_version = \"1.3\" (the default) once old clients are upgraded".into(),
            );
        }
        if !cfg.tls_policy.post_quantum {
            g.fire(
                "post-quantum-off",
                Severity::Medium,
                "post-quantum key exchange is off ([tls] post_quantum = false)".into(),
                "traffic recorded today can be decrypted once a large quantum computer exists (harvest now, decrypt later)",
                "remove post_quantum = false from [tls]; only middleboxes that drop large ClientHellos need it".into(),
            );
        }
    }
}

fn redaction_checks(g: &mut Grader, rules: Option<&tv_redact::Rules>) {
    let Some(rules) = rules else {
        g.fire(
            "redaction-off",
            Severity::Critical,
            "redaction is off (--no-redaction): spans are stored as sent".into(),
            "tokens, passwords, emails and card numbers in spans are kept, readable to every reader and in every backup",
            "remove --no-redaction; keep what you need with allowlist rules in [redaction]".into(),
        );
        return;
    };
    for p in rules.policies() {
        if p.mode != tv_redact::policy::Mode::Denylist {
            continue;
        }
        let kept: Vec<&str> = tv_redact::detect::Kind::ALL
            .iter()
            .filter(|k| p.detector(**k).kind == tv_redact::policy::ActionKind::Keep)
            .map(|k| k.name())
            .collect();
        if kept.is_empty() {
            continue;
        }
        let all_personal = PERSONAL.iter().all(|k| kept.contains(k));
        g.fire(
            "redaction-denylist-without-detectors",
            if all_personal {
                Severity::High
            } else {
                Severity::Medium
            },
            format!(
                "redaction policy {:?} is a denylist that keeps what the detectors find: {}",
                p.name,
                kept.join(", ")
            ),
            "a denylist redacts only the keys it names; without detectors, personal data under any other key is stored as sent",
            format!(
                "drop the `action = \"keep\"` detector rules from policy {:?}, or make it an allowlist (mode = \"allowlist\")",
                p.name
            ),
        );
    }
}

fn files(g: &mut Grader, cfg: &ServeConfig, facts: Facts) {
    let dir = &cfg.data_dir;
    // Through symlinks (`/var/lib/tracevault` is one under systemd's `DynamicUser`; a link's own
    // bits are always 0777), as the server's own start-up check reads them.
    if let Ok(m) = tv_crypto::fsio::mode_of(dir)
        && m & 0o077 != 0
    {
        g.fire(
            "data-dir-permissions",
            Severity::High,
            format!(
                "the data directory {} is mode {m:04o}: others may enter or read it",
                dir.display()
            ),
            "it holds the admin token, the token registry, certificates and (by default) the keys",
            format!("chmod 700 {}", dir.display()),
        );
    }
    // Keys: the directory and everything in it for the owner alone (the server's start-up
    // check; links inside, as a secret volume's files are, are skipped).
    let keys = &cfg.keys_dir;
    let mut loose: Vec<String> = tv_crypto::fsio::open_to_others(keys)
        .unwrap_or_default()
        .iter()
        .map(|(p, m)| format!("{} ({m:04o})", p.strip_prefix(keys).unwrap_or(p).display()))
        .collect();
    if !loose.is_empty() {
        let n = loose.len();
        loose.truncate(5);
        g.fire(
            "key-file-permissions",
            Severity::Critical,
            format!(
                "{n} key files or directories under {} are open to group or others: {}",
                keys.display(),
                loose.join(", ")
            ),
            "any local user (or a service sharing the group) can copy the keys and decrypt everything",
            format!(
                "find {0} -type d -exec chmod 700 {{}} + ; find {0} -type f -exec chmod 600 {{}} +",
                keys.display()
            ),
        );
    }
    // Tenant keys older than the rotation period.
    let limit_days = cfg
        .rotate_after
        .map_or(DEFAULT_ROTATION_DAYS, |d| d.as_secs() / 86_400);
    if let Ok(versions) = tv_crypto::current_versions(keys) {
        let old: Vec<String> = versions
            .iter()
            .filter(|(_, _, created)| facts.now.saturating_sub(*created) > limit_days * 86_400)
            .map(|(t, v, created)| {
                format!(
                    "{t} v{v} ({} days)",
                    facts.now.saturating_sub(*created) / 86_400
                )
            })
            .collect();
        if !old.is_empty() {
            g.fire(
                "key-age",
                Severity::Medium,
                format!(
                    "tenant keys older than {limit_days} days: {}",
                    old.join(", ")
                ),
                "the longer a key is used, the more one leaked key exposes",
                "tracevault keys rotate --tenant T, or set [keys] rotate_after_days so the server rotates".into(),
            );
        }
    }
    admin_token(g, dir);
    // The newest write in the data directory should not be in the future.
    let mut newest = 0u64;
    for sub in [dir.to_path_buf(), dir.join("log"), dir.join("wal")] {
        if let Ok(rd) = std::fs::read_dir(&sub) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    newest = newest.max(m.mtime().max(0) as u64);
                }
            }
        }
    }
    if newest > facts.now + CLOCK_SLACK_SECS {
        g.fire(
            "clock-skew",
            Severity::High,
            format!(
                "the clock is {} s behind the newest write in {}",
                newest - facts.now,
                dir.display()
            ),
            "span age limits, token and session expiry, certificate validity and checkpoint times all trust the clock",
            "fix time synchronisation (chrony or systemd-timesyncd) before serving".into(),
        );
    }
}

/// The bootstrap admin token's file, still there though another admin token exists.
fn admin_token(g: &mut Grader, dir: &Path) {
    let file = dir.join("admin.token");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    let Ok(bootstrap) = tv_access::TokenSecret::parse(text.trim().to_owned()) else {
        return;
    };
    #[derive(serde::Deserialize)]
    struct Registry {
        tokens: Vec<tv_access::TokenRecord>,
    }
    let Ok(reg) = std::fs::read(dir.join("tokens.json"))
        .map_err(drop)
        .and_then(|b| serde_json::from_slice::<Registry>(&b).map_err(drop))
    else {
        return;
    };
    let now = tv_access::now_unix();
    let others = reg
        .tokens
        .iter()
        .filter(|t| {
            t.role == tv_access::Role::Admin
                && !t.revoked
                && t.id != bootstrap.id()
                && t.expires_unix.is_none_or(|e| e > now)
        })
        .count();
    let bootstrap_live = reg
        .tokens
        .iter()
        .any(|t| t.id == bootstrap.id() && !t.revoked);
    if others > 0 && bootstrap_live {
        g.fire(
            "admin-token-file",
            Severity::Medium,
            format!(
                "{} still holds the first start's admin token, and {others} other admin token(s) exist",
                file.display()
            ),
            "an all-tenant admin credential on disk beside the data: whoever reads the directory (a backup, a support bundle) is admin",
            format!(
                "tracevault token revoke {} (after checking another admin works), then delete {}",
                bootstrap.id(),
                file.display()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_its_page() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/doctor");
        let index = std::fs::read_to_string(docs.join("README.md")).expect("docs/doctor/README.md");
        for id in CHECKS {
            let page = std::fs::read_to_string(docs.join(format!("{id}.md")))
                .unwrap_or_else(|_| panic!("docs/doctor/{id}.md is missing"));
            assert!(page.starts_with(&format!("# {id}")), "{id}: title line");
            assert!(index.contains(id), "{id} is not in docs/doctor/README.md");
        }
    }

    #[test]
    fn high_and_critical_fail_the_grade() {
        assert!(Severity::Critical.fails() && Severity::High.fails());
        assert!(!Severity::Medium.fails() && !Severity::Info.fails());
    }
}
