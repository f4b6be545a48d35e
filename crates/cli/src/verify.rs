//! `tracevault verify` and `tracevault verify-receipt` (issue 3).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tv_server::logkeys::node_vkey;
use tv_tlog::policy::{LogKeys, Policy};

#[derive(Args)]
pub struct VerifyArgs {
    /// The data directory to check (the server may be stopped)
    #[arg(long, default_value = "./tracevault-data")]
    data_dir: PathBuf,
    /// Key material directory, for decrypting and re-deriving span commitments [default: DIR/keys]
    #[arg(long)]
    keys_dir: Option<PathBuf>,
    /// A pinned log verifier key (one per line of `tracevault log keys`); give both. Without it
    /// the keys found in the data directory are used, which proves nothing against whoever can
    /// write that directory.
    #[arg(long = "vkey")]
    vkeys: Vec<String>,
    /// A checkpoint saved earlier (or cosigned by witnesses); the log must be consistent with it
    #[arg(long = "checkpoint")]
    checkpoints: Vec<PathBuf>,
    /// A pinned audit log verifier key (`tracevault log keys --audit`); give both. Without it
    /// the keys found in the keys directory are used.
    #[arg(long = "audit-vkey")]
    audit_vkeys: Vec<String>,
    /// An audit log checkpoint saved earlier; the audit log must be consistent with it
    #[arg(long = "audit-checkpoint")]
    audit_checkpoints: Vec<PathBuf>,
    /// Check ciphertexts only, even when the root key is available
    #[arg(long)]
    no_decrypt: bool,
    /// The server's config file, to reach a root key kept in a KMS (`[keys] root = "transit"`)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Accept checkpoints with only the Ed25519 signature (no ML-DSA-44). Weakens the check.
    #[arg(long)]
    classical_only: bool,
    /// List every file outside the log's scope, every pruned or redundant piece, not only
    /// their counts
    #[arg(short, long)]
    verbose: bool,
    /// Check a cluster's bucket instead of a data directory (s3://BUCKET/PREFIX; credentials
    /// from the standard AWS_* environment): every node's log and every object under it; needs
    /// --keys-dir (or --config naming a KMS root) and no data directory
    #[arg(long, value_name = "URL")]
    object_store: Option<String>,
}

fn policy(classical_only: bool) -> Policy {
    if classical_only {
        eprintln!(
            "WARNING: --classical-only: checkpoints without the ML-DSA-44 signature are accepted; an attacker may strip the post-quantum signature"
        );
        Policy::ClassicalOnly
    } else {
        Policy::Both
    }
}

/// The sealed state files of `data_dir` (see `tv_server::stateseal`): how many are sealed, and
/// what does not match.
fn check_sealed_state(
    data_dir: &std::path::Path,
    keys_dir: &std::path::Path,
    root: &dyn tv_crypto::RootKeySource,
) -> anyhow::Result<(usize, Vec<String>)> {
    use tv_server::stateseal;
    if !keys_dir.join(stateseal::KEY_FILE).exists() {
        // A data directory from before sealing: nothing to check against.
        return Ok((0, Vec::new()));
    }
    let key = stateseal::load_key(keys_dir, root, false)?;
    let seal = stateseal::StateSeal::with_key(data_dir, key)?;
    if !seal.existed {
        anyhow::bail!(
            "missing: the seal key exists, so the server wrote this list of trusted files, and it is gone"
        );
    }
    let problems = seal
        .check()
        .into_iter()
        .map(|m| format!("{}: {}", m.path, m.what))
        .collect();
    Ok((seal.sealed(), problems))
}

/// The root-key-holding keyring for decrypting blocks (None: ciphertexts only).
fn open_keyring(
    a: &VerifyArgs,
    keys_dir: &std::path::Path,
) -> anyhow::Result<Option<Arc<tv_crypto::Keyring>>> {
    let root_path = keys_dir.join("root.key");
    let kms_root = match (&a.config, a.no_decrypt) {
        (Some(cfg), false) => {
            match tv_server::RawConfig::resolve(&tv_server::RawConfig::default(), Some(cfg))?.root {
                tv_server::config::RootSource::Transit(t) => Some(
                    tv_server::kms::TransitRootKey::connect(*t)
                        .context("connecting to the KMS ([keys.transit])")?,
                ),
                tv_server::config::RootSource::File => None,
            }
        }
        _ => None,
    };
    Ok(if let Some(r) = kms_root {
        Some(Arc::new(tv_crypto::Keyring::open(keys_dir, Arc::new(r))?))
    } else if a.no_decrypt || !root_path.exists() {
        if !a.no_decrypt {
            eprintln!(
                "note: no root key at {} (and no --config naming a KMS root): checking ciphertexts only (span commitments are not re-derived)",
                root_path.display()
            );
        }
        None
    } else {
        let (root, _) = tv_crypto::FileRootKey::load_or_create(&root_path)?;
        Some(Arc::new(tv_crypto::Keyring::open(
            keys_dir,
            Arc::new(root),
        )?))
    })
}

/// The pinned `--vkey`s, or (warned) the ones in the keys directory.
fn log_vkeys(a: &VerifyArgs, keys_dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    if !a.vkeys.is_empty() {
        return Ok(a.vkeys.clone());
    }
    eprintln!(
        "WARNING: no --vkey given: using the verifier keys found in {}. Whoever can write that directory can re-sign a rewritten log; pin the keys from `tracevault log keys` outside it.",
        keys_dir.display()
    );
    tv_server::logkeys::verifier_keys(keys_dir)
}

/// The cluster node whose log a receipt's checkpoint names (its origin is `<name>/<node>` for the
/// name of one of `vkeys`), if any.
fn node_of_receipt(vkeys: &[String], proof: &str) -> Option<String> {
    let names: Vec<String> = vkeys
        .iter()
        .filter_map(|k| {
            tv_tlog::note::split_vkey(k)
                .ok()
                .map(|(n, _, _)| n.to_string())
        })
        .collect();
    proof.lines().find_map(|line| {
        names.iter().find_map(|n| {
            line.strip_prefix(n.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|node| tv_store::cluster::check_node_id(node).is_ok())
                .map(str::to_owned)
        })
    })
}

/// `verify --object-store`: every node's log and objects in a cluster's bucket.
fn verify_bucket(a: &VerifyArgs, url: &str) -> anyhow::Result<ExitCode> {
    use tv_store::objects::{Remote, RemoteConfig};
    let keys_dir = a.keys_dir.clone().context(
        "--object-store needs --keys-dir: the cluster's keys directory (its verifier keys, and the root key to decrypt)",
    )?;
    let bucket: tv_store::objects::SharedObjects = Arc::new(Remote::open(&RemoteConfig::new(url))?);
    let base = log_vkeys(a, &keys_dir)?;
    let keyring = open_keyring(a, &keys_dir)?;
    let pinned = read_pinned(&a.checkpoints, "--checkpoint")?;
    let nodes = bucket
        .list_dirs("nodes/")
        .with_context(|| format!("listing the nodes in {url}"))?;
    if nodes.is_empty() {
        bail!(
            "{url} holds no nodes (nodes/<node>/): is it a tracevault cluster's bucket and prefix?"
        );
    }
    // Each node's audit log is in its prefix too, signed with the cluster's audit keys under
    // `<origin>/audit/<node>`.
    let audit_base = if a.audit_vkeys.is_empty() {
        eprintln!(
            "WARNING: no --audit-vkey given: using the audit log's verifier keys found in {}; pin them from `tracevault log keys --audit`.",
            keys_dir.display()
        );
        tv_server::logkeys::audit_verifier_keys(&keys_dir)?
    } else {
        a.audit_vkeys.clone()
    };
    let audit_pinned = read_pinned(&a.audit_checkpoints, "--audit-checkpoint")?;
    let audit_root = keyring.as_ref().map(|k| k.root().clone());
    let audit_rewrapped = tv_server::audit::load_rewrapped(&keys_dir)?;
    let mut problems = 0usize;
    let started = std::time::Instant::now();
    let (mut spans, mut bytes) = (0u64, 0u64);
    // The newest version of each cluster state document the nodes' logs anchor:
    // name digest -> (generation, object digest, node).
    let mut anchored: std::collections::HashMap<[u8; 32], (u64, [u8; 32], String)> =
        std::collections::HashMap::new();
    for node in &nodes {
        let vkeys: Vec<String> = base
            .iter()
            .map(|v| node_vkey(v, node))
            .collect::<anyhow::Result<_>>()?;
        let keys = LogKeys::from_vkeys(&vkeys).context("--vkey")?;
        // A pinned checkpoint belongs to the node whose origin it names.
        let origin_suffix = format!("/{node}");
        let node_pinned: Vec<(String, Vec<u8>)> = pinned
            .iter()
            .filter(|(_, n)| {
                tv_store::txlog::note_checkpoint(n)
                    .is_ok_and(|c| c.origin.ends_with(&origin_suffix))
            })
            .cloned()
            .collect();
        let objects = tv_store::cluster::node_objects(&bucket, node)?;
        let audit_keys = LogKeys::from_vkeys(
            &audit_base
                .iter()
                .map(|v| node_vkey(v, node))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
        .context("--audit-vkey")?;
        let audit_origin = objects
            .get("audit/checkpoint")
            .ok()
            .and_then(|(n, _)| tv_store::txlog::note_checkpoint(&n).ok())
            .map(|c| c.origin)
            .unwrap_or_default();
        let check_audit = audit_checker(audit_root.as_deref(), &audit_origin, &audit_rewrapped);
        let audit_suffix = format!("/audit/{node}");
        let report = tv_store::verify::verify_objects(
            &*objects,
            &tv_store::verify::Options {
                keys: &keys,
                policy: policy(a.classical_only),
                pinned: node_pinned,
                keyring: keyring.clone(),
                progress: &|_, _| {},
                audit: Some(tv_store::verify::AuditCheck {
                    keys: &audit_keys,
                    pinned: audit_pinned
                        .iter()
                        .filter(|(_, n)| {
                            tv_store::txlog::note_checkpoint(n)
                                .is_ok_and(|c| c.origin.ends_with(&audit_suffix))
                        })
                        .cloned()
                        .collect(),
                    entries: &check_audit,
                }),
            },
        )
        .with_context(|| format!("reading node {node}'s objects"))?;
        println!(
            "node {node}: log {} entries, {} checkpoints; {} blocks, {} spans{}",
            report.log_size,
            report.checkpoints,
            report.blocks,
            report.spans,
            if report.decrypted {
                " (span commitments re-derived)"
            } else {
                " (ciphertexts only)"
            }
        );
        if report.audit_size > 0 {
            println!(
                "node {node}: audit log {} entries, {} checkpoints; {} records",
                report.audit_size, report.audit_checkpoints, report.audit_records,
            );
        }
        for (_, st) in &report.state_anchors {
            let e = anchored
                .entry(st.name_digest)
                .or_insert((0, [0; 32], String::new()));
            if st.generation > e.0 {
                *e = (st.generation, st.object_sha256, node.clone());
            }
        }
        print_findings(&report, a.verbose, &format!("nodes/{node}/"));
        problems += report.problems.len();
        spans += report.spans;
        bytes += report.bytes;
    }
    // The cluster's shared state: each document authenticates under the cluster state key, and
    // is not older than (or, at the same generation, different from) what the logs anchor.
    let state_key = keyring
        .as_ref()
        .map(|k| tv_server::cluster::state_key(&keys_dir, k.root().as_ref()));
    for name in tv_server::cluster::STATE_DOCS {
        let key = format!("cluster/{name}");
        let stored = match bucket.get(&key) {
            Ok((b, _)) => Some(b),
            Err(tv_store::objects::ObjectError::NotFound(_)) => None,
            Err(e) => bail!("reading {key}: {e}"),
        };
        let anchor = anchored.get(&tv_tlog::leaf::state_name_digest(name));
        let fail = |why: String| {
            println!("FAIL {key}: {why}");
        };
        match (&stored, anchor) {
            (None, None) => {
                println!("cluster state: no {key}");
                continue;
            }
            (None, Some((g, _, node))) => {
                fail(format!(
                    "missing, but node {node}'s log anchors its generation {g} (deleted)"
                ));
                problems += 1;
                continue;
            }
            (Some(b), anchor) => {
                let generation = tv_server::cluster::state_generation(b);
                match (generation, anchor) {
                    (None, _) => {
                        fail("not a cluster state document".into());
                        problems += 1;
                        continue;
                    }
                    (Some(g), Some((ag, _, node))) if g < *ag => {
                        fail(format!(
                            "generation {g}, but node {node}'s log anchors generation {ag} (rolled back)"
                        ));
                        problems += 1;
                        continue;
                    }
                    (Some(g), Some((ag, digest, node)))
                        if g == *ag && tv_tlog::commit::sha256(b) != *digest =>
                    {
                        fail(format!(
                            "generation {g} differs from the one node {node}'s log anchors (altered)"
                        ));
                        problems += 1;
                        continue;
                    }
                    _ => {}
                }
            }
        }
        if let Some(sk) = &state_key {
            match sk {
                Err(e) => println!("cluster state: {key} not authenticated ({e:#})"),
                Ok(sk) => {
                    let doc = tv_server::cluster::StateDoc::new(bucket.clone(), name, sk.clone());
                    match tv_access::SharedDoc::load(&doc) {
                        Ok(_) => println!(
                            "cluster state: {key} authenticates{}",
                            if anchor.is_some() {
                                " and matches the newest version the logs anchor"
                            } else {
                                ""
                            }
                        ),
                        Err(e) => {
                            fail(e);
                            problems += 1;
                        }
                    }
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "bucket: {} nodes, {spans} spans; {:.1} MB in {secs:.2} s",
        nodes.len(),
        bytes as f64 / 1e6
    );
    if problems == 0 {
        println!("OK: every node's objects are in its log and every log verifies");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: {problems} problems");
        Ok(ExitCode::from(2))
    }
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &a.object_store {
        return verify_bucket(&a, url);
    }
    let keys_dir = a
        .keys_dir
        .clone()
        .unwrap_or_else(|| a.data_dir.join("keys"));
    if !a.data_dir.join("log").is_dir() {
        bail!(
            "{} has no transparency log (log/); is it a tracevault data directory?",
            a.data_dir.display()
        );
    }
    let vkeys = log_vkeys(&a, &keys_dir)?;
    let keys = LogKeys::from_vkeys(&vkeys).context("--vkey")?;
    let pinned = read_pinned(&a.checkpoints, "--checkpoint")?;
    let audit_pinned = read_pinned(&a.audit_checkpoints, "--audit-checkpoint")?;
    let has_audit = a.data_dir.join("audit").is_dir();
    let audit_keys = if !has_audit {
        None
    } else if a.audit_vkeys.is_empty() {
        eprintln!(
            "WARNING: no --audit-vkey given: using the audit log's verifier keys found in {}; pin them from `tracevault log keys --audit`.",
            keys_dir.display()
        );
        Some(
            LogKeys::from_vkeys(&tv_server::logkeys::audit_verifier_keys(&keys_dir)?)
                .context("audit verifier keys")?,
        )
    } else {
        Some(LogKeys::from_vkeys(&a.audit_vkeys).context("--audit-vkey")?)
    };
    let keyring = open_keyring(&a, &keys_dir)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let audit_root = keyring.as_ref().map(|k| k.root().clone());
    let audit_origin = std::fs::read(a.data_dir.join("audit/checkpoint"))
        .ok()
        .and_then(|n| tv_store::txlog::note_checkpoint(&n).ok())
        .map(|c| c.origin)
        .unwrap_or_default();
    let audit_rewrapped = tv_server::audit::load_rewrapped(&keys_dir)?;
    let check_audit = audit_checker(audit_root.as_deref(), &audit_origin, &audit_rewrapped);
    let started = std::time::Instant::now();
    let report = tv_store::verify::verify_dir(
        &a.data_dir,
        &tv_store::verify::Options {
            keys: &keys,
            policy: policy(a.classical_only),
            pinned,
            keyring,
            progress: &progress,
            audit: audit_keys.as_ref().map(|k| tv_store::verify::AuditCheck {
                keys: k,
                pinned: audit_pinned.clone(),
                entries: &check_audit,
            }),
        },
    );
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let v = a.verbose;
    if v {
        for (f, why) in &report.not_covered {
            println!("not covered: {f} ({why})");
        }
    } else if !report.not_covered.is_empty() {
        println!(
            "not covered: {} files the log does not commit to (keys, certificates, tokens, temporary files; -v lists them)",
            report.not_covered.len()
        );
    }
    if v && !report.redundant_partials.is_empty() {
        println!(
            "redundant: {} partial tiles and bundles made redundant by full ones (checked like the others; e.g. {})",
            report.redundant_partials.len(),
            report.redundant_partials[0]
        );
    }
    if v && report.log_pruned_below > 0 {
        println!(
            "log pruned: entries below {} (older than anything still stored; their hash tiles were checked)",
            report.log_pruned_below
        );
    }
    print_findings(&report, v, "");
    println!(
        "log: {} entries, {} checkpoints; {} WAL records, {} blocks, {} spans{}; {:.1} MB in {:.2} s ({:.0} spans/s, {:.1} MB/s)",
        report.log_size,
        report.checkpoints,
        report.records,
        report.blocks,
        report.spans,
        if report.decrypted {
            " (span commitments re-derived)"
        } else {
            " (ciphertexts only)"
        },
        report.bytes as f64 / 1e6,
        secs,
        report.spans as f64 / secs,
        report.bytes as f64 / 1e6 / secs,
    );
    if has_audit {
        println!(
            "audit log: {} entries, {} checkpoints; {} records{}",
            report.audit_size,
            report.audit_checkpoints,
            report.audit_records,
            if report.decrypted {
                " (decrypted and parsed)"
            } else {
                " (framing only)"
            }
        );
    }
    // The trusted files the log does not cover, against their seals (needs the root key).
    let mut state_problems = 0;
    match &audit_root {
        None => println!("sealed state: not checked (no root key to open the seal key)"),
        Some(root) => match check_sealed_state(&a.data_dir, &keys_dir, root.as_ref()) {
            Ok((n, problems)) => {
                for p in &problems {
                    println!("FAIL {p}");
                }
                state_problems = problems.len();
                if state_problems == 0 {
                    println!("sealed state: {n} trusted files match their seals");
                }
            }
            Err(e) => {
                println!("FAIL state-seal.json: {e:#}");
                state_problems = 1;
            }
        },
    }
    if report.ok() && state_problems == 0 {
        println!("OK: everything stored is in the log and the log verifies");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "FAILED: {} problems",
            report.problems.len() + state_problems
        );
        Ok(ExitCode::from(2))
    }
}

/// Erasures, pruned pieces, warnings and problems of a report; problems' files under `prefix`.
fn print_findings(report: &tv_store::verify::Report, verbose: bool, prefix: &str) {
    for e in &report.erased {
        println!("erased: {e}");
    }
    if verbose {
        for p in &report.pruned {
            println!("pruned: {prefix}{p}");
        }
    } else if !report.pruned.is_empty() {
        println!(
            "pruned: {} pieces removed by retention, as the log recorded (-v lists them)",
            report.pruned.len()
        );
    }
    if verbose {
        for c in &report.compacted {
            println!("compacted: {prefix}{c}");
        }
    } else if !report.compacted.is_empty() {
        println!(
            "compacted: {} blocks merged into larger ones, as the log recorded (-v lists them)",
            report.compacted.len()
        );
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for p in &report.problems {
        println!("FAIL {prefix}{p}");
    }
}

/// Reads checkpoint files given with `flag`: (name for messages, note).
fn read_pinned(paths: &[PathBuf], flag: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map(|b| (p.display().to_string(), b))
                .with_context(|| format!("reading {flag} {}", p.display()))
        })
        .collect()
}

/// What [`audit_entries`] answers: records read, and (index, problem) for each bad entry.
type AuditVerdict = (u64, Vec<(u64, String)>);

/// Checks the entries of the audit log whose origin is `origin` (see [`audit_entries`]).
fn audit_checker<'a>(
    root: Option<&'a dyn tv_crypto::RootKeySource>,
    origin: &'a str,
    rewrapped: &'a tv_server::audit::Rewrapped,
) -> impl Fn(&[Vec<u8>]) -> AuditVerdict + 'a {
    move |entries| audit_entries(entries, root, origin, rewrapped)
}

/// Checks the audit log's entries: each a key entry or a record entry naming an earlier key entry;
/// with the root key, every record decrypts and parses. Returns (records, problems by index).
fn audit_entries(
    entries: &[Vec<u8>],
    root: Option<&dyn tv_crypto::RootKeySource>,
    origin: &str,
    rewrapped: &tv_server::audit::Rewrapped,
) -> AuditVerdict {
    use tv_server::audit::{Entry, open_key, open_record, parse_entry};
    let mut keys: std::collections::HashMap<u64, Option<tv_crypto::DataKey>> =
        std::collections::HashMap::new();
    let mut records = 0;
    let mut problems = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let i = i as u64;
        match parse_entry(e) {
            Err(why) => problems.push((i, why)),
            Ok(Entry::Key { wrapped }) => {
                let k = match root {
                    None => None,
                    Some(r) => match open_key(r, origin, wrapped, rewrapped) {
                        Ok(k) => Some(k),
                        Err(why) => {
                            problems.push((i, why));
                            None
                        }
                    },
                };
                keys.insert(i, k);
            }
            Ok(Entry::Record {
                key_index,
                counter,
                sealed,
                header,
            }) => {
                records += 1;
                match keys.get(&key_index) {
                    None => problems.push((
                        i,
                        format!("names key entry {key_index}, which is not an earlier key entry"),
                    )),
                    Some(None) => {}
                    Some(Some(k)) => {
                        if let Err(why) = open_record(k, counter, header, sealed) {
                            problems.push((i, why));
                        }
                    }
                }
            }
        }
    }
    (records, problems)
}

#[derive(Args)]
pub struct VerifyReceiptArgs {
    /// The receipt file (a single receipt, or the `{"receipts": [...]}` the API returns)
    file: PathBuf,
    /// The log's verifier keys (one per line of `tracevault log keys`); give both
    #[arg(long = "vkey", required = true)]
    vkeys: Vec<String>,
    /// Accept checkpoints with only the Ed25519 signature. Weakens the check.
    #[arg(long)]
    classical_only: bool,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ReceiptFile {
    Many {
        receipts: Vec<tv_tlog::receipt::Receipt>,
    },
    One(Box<tv_tlog::receipt::Receipt>),
}

/// Renders a committed value for people (the bytes are what was verified).
fn show(name: &str, v: &[u8]) -> String {
    use prost::Message;
    match name {
        "span" if v.len() >= 25 && v.len() == 25 + v[24] as usize + 36 => {
            let p = 25 + v[24] as usize;
            let u32at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().expect("4 bytes"));
            let u64at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
            format!(
                "trace_id={} span_id={} parent={} flags={} kind={} start={} end={} dropped(attributes,events,links)={},{},{}",
                hex::encode(&v[..16]),
                hex::encode(&v[16..24]),
                hex::encode(&v[25..p]),
                u32at(p),
                u32at(p + 4),
                u64at(p + 8),
                u64at(p + 16),
                u32at(p + 24),
                u32at(p + 28),
                u32at(p + 32)
            )
        }
        "name" | "trace_state" => String::from_utf8_lossy(v).into_owned(),
        n if n.starts_with("attributes/") => tv_model::otlp::AnyValue::decode(v)
            .map(|a| tv_model::any_value_to_string(&a))
            .unwrap_or_else(|_| hex::encode(v)),
        "resource" => tv_model::otlp::ResourceSpans::decode(v)
            .ok()
            .and_then(|r| r.resource)
            .map(|r| {
                r.attributes
                    .iter()
                    .map(|kv| {
                        format!(
                            "{}={}",
                            kv.key,
                            kv.value
                                .as_ref()
                                .map(tv_model::any_value_to_string)
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| hex::encode(v)),
        _ => hex::encode(v),
    }
}

pub fn verify_receipt(a: VerifyReceiptArgs) -> anyhow::Result<ExitCode> {
    let keys = LogKeys::from_vkeys(&a.vkeys).context("--vkey")?;
    let pol = policy(a.classical_only);
    let text = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let receipts = match serde_json::from_slice::<ReceiptFile>(&text) {
        Ok(ReceiptFile::Many { receipts }) => receipts,
        Ok(ReceiptFile::One(r)) => vec![*r],
        Err(e) => {
            println!("INVALID: {} is not a receipt: {e}", a.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    if receipts.is_empty() {
        println!("INVALID: the file holds no receipt");
        return Ok(ExitCode::from(2));
    }
    let mut bad = 0;
    for r in &receipts {
        // A cluster node's log is signed with the cluster's keys under the origin
        // `<name>/<node>`: the cluster's verifier keys verify it under that name.
        let node_keys = node_of_receipt(&a.vkeys, &r.proof)
            .map(|node| {
                let vk: anyhow::Result<Vec<String>> =
                    a.vkeys.iter().map(|k| node_vkey(k, &node)).collect();
                LogKeys::from_vkeys(&vk?).context("--vkey")
            })
            .transpose()?;
        match tv_tlog::receipt::verify(r, node_keys.as_ref().unwrap_or(&keys), pol) {
            Ok(v) => {
                let cp = v.checkpoint.checkpoint();
                println!(
                    "VALID span {} of trace {}: log {} entry {} (record span {} of {}), checkpoint size {}, received at {} ns; {} fields revealed, {} withheld",
                    r.span_id,
                    r.trace_id,
                    cp.origin,
                    v.index,
                    r.span_index,
                    r.span_count,
                    cp.size,
                    v.leaf.received_unix_nanos,
                    v.revealed.len(),
                    v.withheld
                );
                for (n, val) in &v.revealed {
                    println!("  {n} = {}", show(n, val));
                }
            }
            Err(e) => {
                bad += 1;
                println!("INVALID span {} of trace {}: {e}", r.span_id, r.trace_id);
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

#[derive(Args)]
pub struct VerifyPageArgs {
    /// Write the page here (open it in a browser; it needs no server and no network)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `tracevault verify-page [--out FILE]`: the SHA-256 of the standalone verifier page this
/// binary carries (the server serves the same bytes at /verify.html), and the page itself.
pub fn verify_page(a: VerifyPageArgs) -> anyhow::Result<ExitCode> {
    let page = tv_server::ui::VERIFY_PAGE;
    let digest = tv_server::ui::verify_page_sha256();
    match &a.out {
        Some(p) => {
            std::fs::write(p, page).with_context(|| format!("writing {}", p.display()))?;
            println!("sha256:{digest}  {}", p.display());
        }
        None => println!("sha256:{digest}  verify.html"),
    }
    Ok(ExitCode::SUCCESS)
}
