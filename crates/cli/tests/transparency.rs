//! The transparency log end to end (issue 3): span receipts verified by `tracevault verify-receipt`
//! in a separate process without the data directory, the tlog-tiles API and its proofs, and
//! `tracevault verify` on a stopped server's directory, including a tamper campaign.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use prost::Message;
use rand::{Rng, SeedableRng};
use tv_tlog::merkle;
use tv_tlog::policy::{LogKeys, Policy};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tracevault")
}

/// Runs `verify-receipt FILE --vkey ...` from `cwd`; returns (exit code, stdout).
fn verify_receipt(cwd: &Path, file: &Path, keys: &[String]) -> (i32, String) {
    let mut c = Command::new(bin());
    c.current_dir(cwd).arg("verify-receipt").arg(file);
    for k in keys {
        c.arg("--vkey").arg(k);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn send(s: &Server, service: &str, spans: usize) -> [u8; 16] {
    let (req, tid) = request(service, spans);
    let r = s
        .post_otlp("application/x-protobuf", req.encode_to_vec())
        .await;
    assert_eq!(r.status(), 200);
    tid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_verifies_offline_and_any_change_to_it_fails() {
    let s = Server::start(&[]);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(send(&s, if i % 2 == 0 { "checkout" } else { "cart" }, 5).await);
    }
    let keys = vkeys(&s.dir);
    // One trace still in the WAL head, one sealed into a block.
    let head = s
        .get_json(&format!("/api/traces/{}/receipt", hex::encode(ids[5])))
        .await;
    s.flush().await;
    let sealed = s
        .get_json(&format!("/api/traces/{}/receipt", hex::encode(ids[1])))
        .await;
    assert_eq!(head["receipts"].as_array().unwrap().len(), 5);
    assert_eq!(sealed["receipts"].as_array().unwrap().len(), 5);

    // The verifier has nothing but the receipt and the keys: another directory, another process.
    let elsewhere = tempfile::tempdir().unwrap();
    for (name, body) in [("head.json", &head), ("sealed.json", &sealed)] {
        let f = elsewhere.path().join(name);
        std::fs::write(&f, serde_json::to_vec(body).unwrap()).unwrap();
        let (code, out) = verify_receipt(elsewhere.path(), &f, &keys);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out.matches("VALID span").count(), 5, "{out}");
        assert!(out.contains("attributes/note = n"), "{out}");
    }

    // One span's receipt: every single-character change makes it fail.
    let one = serde_json::to_string(&sealed["receipts"][2]).unwrap();
    let f = elsewhere.path().join("one.json");
    std::fs::write(&f, &one).unwrap();
    assert_eq!(verify_receipt(elsewhere.path(), &f, &keys).0, 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alnum: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let positions: Vec<usize> = one
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .collect();
    for _ in 0..40 {
        let at = positions[rng.random_range(0..positions.len())];
        let old = one.as_bytes()[at] as char;
        let new = loop {
            let c = alnum[rng.random_range(0..alnum.len())];
            if c != old {
                break c;
            }
        };
        let mut bad = one.clone();
        bad.replace_range(at..at + 1, &new.to_string());
        std::fs::write(&f, &bad).unwrap();
        let (code, out) = verify_receipt(elsewhere.path(), &f, &keys);
        assert_ne!(
            code,
            0,
            "changing {old:?} to {new:?} at {at} ({}) still verified: {out}",
            &one[at.saturating_sub(20)..(at + 20).min(one.len())]
        );
    }
    // The span itself: a revealed value changed in place (valid base64, other bytes).
    let mut r: serde_json::Value = serde_json::from_str(&one).unwrap();
    let fields = r["fields"].as_array_mut().unwrap();
    let name_field = fields.iter_mut().find(|f| f["name"] == "name").unwrap();
    name_field["value"] = B64.encode(b"op-999").into();
    std::fs::write(&f, serde_json::to_vec(&r).unwrap()).unwrap();
    let (code, out) = verify_receipt(elsewhere.path(), &f, &keys);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("do not hash"), "{out}");
    // Stripping the post-quantum signature fails (both are required).
    let mut r: serde_json::Value = serde_json::from_str(&one).unwrap();
    let proof = r["proof"].as_str().unwrap().to_owned();
    let mut lines: Vec<&str> = proof.lines().collect();
    lines.pop();
    r["proof"] = format!("{}\n", lines.join("\n")).into();
    std::fs::write(&f, serde_json::to_vec(&r).unwrap()).unwrap();
    let (code, out) = verify_receipt(elsewhere.path(), &f, &keys);
    assert_ne!(code, 0);
    assert!(out.contains("ML-DSA-44"), "{out}");
    // Another log's keys do not verify it.
    let other = Server::start(&[]);
    std::fs::write(&f, &one).unwrap();
    assert_ne!(
        verify_receipt(elsewhere.path(), &f, &vkeys(&other.dir)).0,
        0
    );

    // Withheld fields: still valid, and the value is not in the receipt.
    let w = s
        .get_json(&format!(
            "/api/traces/{}/receipt?withhold=attributes/note,name",
            hex::encode(ids[1])
        ))
        .await;
    for rc in w["receipts"].as_array().unwrap() {
        let names: Vec<&str> = rc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert!(!names.contains(&"attributes/note") && !names.contains(&"name"));
        assert_eq!(
            rc["fields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f.get("withheld").is_some())
                .count(),
            2
        );
    }
    std::fs::write(&f, serde_json::to_vec(&w).unwrap()).unwrap();
    let (code, out) = verify_receipt(elsewhere.path(), &f, &keys);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("attributes/note") && out.contains("2 withheld"),
        "{out}"
    );
    // The ids cannot be withheld; unknown traces and missing tokens are refused.
    let r = s
        .get(&format!(
            "/api/traces/{}/receipt?withhold=span",
            hex::encode(ids[1])
        ))
        .await;
    assert_eq!(r.status(), 400);
    let r = s
        .get(&format!("/api/traces/{}/receipt", hex::encode([9u8; 16])))
        .await;
    assert_eq!(r.status(), 404);
    let r = s
        .http_client()
        .get(format!(
            "{}/api/traces/{}/receipt",
            s.api,
            hex::encode(ids[1])
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_served_as_tlog_tiles_with_proofs_and_needs_a_token_unless_public() {
    let s = Server::start(&[]);
    for _ in 0..3 {
        send(&s, "api", 3).await;
    }
    s.flush().await;
    let keys = LogKeys::from_vkeys(&vkeys(&s.dir)).unwrap();
    // Without a token: refused.
    let anon = s
        .http_client()
        .get(format!("{}/log/checkpoint", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let note = s
        .get("/log/checkpoint")
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let cp = tv_tlog::policy::verify_checkpoint(&note, &keys, Policy::Both).unwrap();
    let size = cp.checkpoint().size;
    // 3 record leaves and 1 block leaf.
    assert_eq!(size, 4);
    let api_note = s.get("/api/log/checkpoint").await.bytes().await.unwrap();
    assert_eq!(api_note.to_vec(), note);
    // The tiles: the level-0 partial tile holds the leaf hashes of the entries in the bundle.
    let tile = s
        .get(&format!("/log/tile/0/000.p/{size}"))
        .await
        .bytes()
        .await
        .unwrap();
    let bundle = s
        .get(&format!("/log/tile/entries/000.p/{size}"))
        .await
        .bytes()
        .await
        .unwrap();
    let entries = tv_tlog::tiles::split_bundle(&bundle).unwrap();
    assert_eq!(entries.len() as u64, size);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(&tile[i * 32..i * 32 + 32], &merkle::leaf_hash(e).0);
    }
    assert_eq!(s.get("/log/tile/0/000.p/999").await.status(), 404);
    assert_eq!(s.get("/log/tile/../../keys/root.key").await.status(), 404);
    // Inclusion and consistency proofs verify against the signed checkpoint.
    for index in 0..size {
        let p = s
            .get_json(&format!("/api/log/proof/inclusion?index={index}"))
            .await;
        let hashes: Vec<tv_tlog::Hash> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| tv_tlog::Hash(B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap()))
            .collect();
        let leaf = B64.decode(p["leaf"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(
            &hashes,
            size,
            cp.checkpoint().root,
            index,
            merkle::leaf_hash(&leaf),
        )
        .unwrap();
    }
    let c = s
        .get_json(&format!("/api/log/proof/consistency?old=2&new={size}"))
        .await;
    assert_eq!(
        c["hashes"].as_array().unwrap().len(),
        merkle::consistency_proof_len(2, size)
    );
    let bad = s.get("/api/log/proof/inclusion?index=99").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("index < size"));
    assert_eq!(
        s.get("/api/log/proof/consistency?old=0").await.status(),
        400
    );

    // Public on request.
    let p = Server::start(&["--log-public"]);
    let anon = p
        .http_client()
        .get(format!("{}/log/checkpoint", p.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 200);
    assert!(p.log_text().contains("is public"));
}

/// Copies `from` to `to`, recursively, with the permissions (the server refuses key material
/// open to others).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file under `dir` (none when it does not exist: an emptied directory is removed).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_an_intact_directory_and_reports_every_tampering() {
    let mut s = Server::start(&["--seal-interval-secs", "3600"]);
    for round in 0..3 {
        for i in 0..8 {
            send(&s, ["checkout", "cart", "search"][i % 3], 4 + round + i).await;
        }
        s.flush().await;
    }
    let pinned_note = s
        .get("/log/checkpoint")
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    for i in 0..5 {
        send(&s, "late", 3 + i).await;
    }
    assert_eq!(s.terminate(), Some(0));
    let keys = vkeys(&s.dir);
    let pinned = s.dir.parent().unwrap().join("pinned.checkpoint");
    std::fs::write(&pinned, &pinned_note).unwrap();

    let (code, out) = run_verify(&s.dir, &keys, &["--checkpoint", pinned.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK:") && out.contains("span commitments re-derived"),
        "{out}"
    );
    // The verdict and a summary; the files outside the log are counted, listed with -v.
    assert!(
        out.contains("files the log does not commit to") && !out.contains("admin.token"),
        "{out}"
    );
    assert!(out.lines().count() <= 8, "a short summary: {out}");
    let (code, out) = run_verify(
        &s.dir,
        &keys,
        &["-v", "--checkpoint", pinned.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not covered: admin.token"), "{out}");
    assert!(out.contains("not covered: tls/server.pem"), "{out}");
    // Leftovers of writes a crash interrupted are listed, not taken for tampering.
    let leftovers = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, leftovers.path());
    let mut blocks = Vec::new();
    files_under(&leftovers.path().join("blocks"), &mut blocks);
    std::fs::write(blocks[0].with_extension("tvb.tmp"), b"partial").unwrap();
    std::fs::write(
        leftovers.path().join("log/tile/0/000.tmp-0a1b2c"),
        b"partial",
    )
    .unwrap();
    let (code, out) = run_verify(leftovers.path(), &keys, &["-v"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("not covered: log/tile/0/000.tmp-0a1b2c (temporary file"),
        "{out}"
    );
    // Without --vkey it still works, loudly.
    let (code, out) = run_verify(&s.dir, &[], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("WARNING: no --vkey"), "{out}");

    // A rolled-back log (history cut back to an older checkpoint) against the pinned checkpoint.
    let rolled = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, rolled.path());
    let mut hist = Vec::new();
    files_under(&rolled.path().join("log/history"), &mut hist);
    hist.sort();
    assert!(hist.len() > 2, "{hist:?}");
    for h in &hist[2..] {
        std::fs::remove_file(h).unwrap();
    }
    std::fs::copy(&hist[1], rolled.path().join("log/checkpoint")).unwrap();
    let (code, out) = run_verify(
        rolled.path(),
        &keys,
        &["--checkpoint", pinned.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("rolled back"), "{out}");

    // The tamper campaign: one change at a time, on a fresh copy.
    let cases: usize = std::env::var("TRACEVAULT_TAMPER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let report = campaign(&s.dir, &keys, cases, 42);
    println!("{report}");
    assert!(
        report.starts_with(&format!("tamper campaign: {cases}/{cases} detected")),
        "{report}"
    );

    // And the binary names file, offset and check for one of them.
    let t = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, t.path());
    let mut blocks = Vec::new();
    files_under(&t.path().join("blocks"), &mut blocks);
    let b = &blocks[0];
    let mut bytes = std::fs::read(b).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(b, &bytes).unwrap();
    let (code, out) = run_verify(t.path(), &keys, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("FAIL blocks/") && out.contains("[block digest]"),
        "{out}"
    );
}

/// Applies `cases` random single changes to copies of `data` and checks that verify reports each.
fn campaign(data: &Path, keys: &[String], cases: usize, seed: u64) -> String {
    let lk = LogKeys::from_vkeys(keys).unwrap();
    let kr = {
        let (root, _) =
            tv_crypto::FileRootKey::load_or_create(&data.join("keys/root.key")).unwrap();
        std::sync::Arc::new(
            tv_crypto::Keyring::open(&data.join("keys"), std::sync::Arc::new(root)).unwrap(),
        )
    };
    let mut targets = Vec::new();
    for sub in ["log", "blocks", "wal"] {
        if data.join(sub).is_dir() {
            files_under(&data.join(sub), &mut targets);
        }
    }
    let rel = |p: &Path| p.strip_prefix(data).unwrap().to_path_buf();
    let targets: Vec<PathBuf> = targets.iter().map(|p| rel(p)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut missed = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..cases {
        let t = tempfile::tempdir().unwrap();
        for sub in ["log", "blocks", "wal"] {
            if data.join(sub).is_dir() {
                copy_dir(&data.join(sub), &t.path().join(sub));
            }
        }
        let f = &targets[rng.random_range(0..targets.len())];
        let path = t.path().join(f);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        let kind = match rng.random_range(0..4) {
            0 if len > 0 => {
                let mut b = std::fs::read(&path).unwrap();
                let at = rng.random_range(0..len);
                b[at] ^= rng.random_range(1..=255u8);
                std::fs::write(&path, &b).unwrap();
                format!("flip {} @{at}", f.display())
            }
            1 if len > 0 => {
                let to = rng.random_range(0..len);
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(to as u64).unwrap();
                format!("truncate {} to {to}", f.display())
            }
            2 => {
                std::fs::remove_file(&path).unwrap();
                format!("delete {}", f.display())
            }
            _ => {
                // Reorder: swap two files' contents (of the same directory kind when possible).
                let g = &targets[rng.random_range(0..targets.len())];
                if g == f {
                    std::fs::remove_file(&path).unwrap();
                    format!("delete {}", f.display())
                } else {
                    let other = t.path().join(g);
                    let a = std::fs::read(&path).unwrap();
                    let b = std::fs::read(&other).unwrap();
                    std::fs::write(&path, &b).unwrap();
                    std::fs::write(&other, &a).unwrap();
                    format!("swap {} and {}", f.display(), g.display())
                }
            }
        };
        *kinds
            .entry(kind.split(' ').next().unwrap().to_owned())
            .or_default() += 1;
        // Decrypting every case would dominate the run time; every tenth case also re-derives
        // span commitments.
        let keyring = (case % 10 == 0).then(|| kr.clone());
        let r = tv_store::verify::verify_dir(
            t.path(),
            &tv_store::verify::Options {
                keys: &lk,
                policy: Policy::Both,
                pinned: vec![],
                keyring,
                progress: &|_, _| {},
                // The copies hold log/, blocks/ and wal/ only.
                audit: None,
            },
        );
        if r.ok() {
            missed.push(kind);
        }
    }
    format!(
        "tamper campaign: {}/{cases} detected ({kinds:?}); missed: {missed:?}",
        cases - missed.len()
    )
}

struct WitnessProc(std::process::Child);

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tracevault witness` for the log keys `keys`; returns it and its `URL,VKEY,CA` flag.
fn start_witness(dir: &Path, keys: &[String]) -> (WitnessProc, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["witness", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir);
    for k in keys {
        cmd.args(["--log-vkey", k]);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let w = WitnessProc(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let addr = loop {
        if let Ok(t) = std::fs::read_to_string(dir.join("listen.json")) {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            break v["addr"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "witness did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let vkey = std::fs::read_to_string(dir.join("witness.vkey")).unwrap();
    let flag = format!(
        "https://{addr},{},{}",
        vkey.trim(),
        dir.join("tls/ca.pem").display()
    );
    (w, flag)
}

/// Waits until the server's checkpoint carries a cosignature by the witness for at least `size`.
async fn wait_cosigned(s: &Server, witness_vkey: &str, min_size: u64) -> Vec<u8> {
    let v = tv_tlog::cosig::Ed25519CosigVerifier::from_vkey(witness_vkey).unwrap();
    let name = tv_tlog::note::NoteVerifier::name(&v).to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let note = s
            .get("/api/log/checkpoint")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let opened = tv_tlog::note::open(
            &note,
            &tv_tlog::note::Verifiers::new(vec![Box::new(
                tv_tlog::cosig::Ed25519CosigVerifier::from_vkey(witness_vkey).unwrap(),
            )]),
        );
        if let Ok(n) = opened
            && n.sigs.iter().any(|s| s.name == name)
            && tv_store::txlog::note_checkpoint(&note).unwrap().size >= min_size
        {
            return note;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cosignature by {name}: {}",
            String::from_utf8_lossy(&note)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gets_its_growing_log_cosigned_and_a_fork_is_refused() {
    let s = Server::start(&[]);
    let keys = vkeys(&s.dir);
    let wdir = tempfile::tempdir().unwrap();
    let (_w, flag) = start_witness(wdir.path(), &keys);
    let wvkey = flag.split(',').nth(1).unwrap().to_owned();
    // The same server, now configured with the witness.
    let mut s = s;
    s.terminate();
    s.args = vec!["--witness".into(), flag.clone()];
    s.spawn();
    send(&s, "a", 3).await;
    let first = wait_cosigned(&s, &wvkey, 1).await;
    let lk = LogKeys::from_vkeys(&keys).unwrap();
    // Still the log's own two signatures, plus the witness's.
    tv_tlog::policy::verify_checkpoint(&first, &lk, Policy::Both).unwrap();
    let size1 = tv_store::txlog::note_checkpoint(&first).unwrap().size;
    for _ in 0..3 {
        send(&s, "a", 2).await;
    }
    let second = wait_cosigned(&s, &wvkey, size1 + 3).await;
    tv_tlog::policy::verify_checkpoint(&second, &lk, Policy::Both).unwrap();
    assert!(s.dir.join("log-cosigned.checkpoint").is_file());

    // A fork: another server with the same log keys but a different history.
    let fork_tmp = tempfile::tempdir().unwrap();
    let fork_dir = fork_tmp.path().join("data");
    copy_dir(&s.dir.join("keys"), &fork_dir.join("keys"));
    let fork = Server::start_at(fork_dir, None, &["--witness", &flag]);
    assert_eq!(vkeys(&fork.dir), keys);
    send(&fork, "forked", 4).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fork.log_text().contains("witness refused") {
        assert!(std::time::Instant::now() < deadline, "{}", fork.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let m = fork.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("witness_failures_total"), "{m}");
    // The witness's view did not move to the fork.
    let note = fork.get("/api/log/checkpoint").await.bytes().await.unwrap();
    assert!(
        !String::from_utf8_lossy(&note).contains(tv_tlog::note::NoteVerifier::name(
            &tv_tlog::cosig::Ed25519CosigVerifier::from_vkey(&wvkey).unwrap()
        ))
    );
    drop(fork_tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_retention_deletes_old_blocks_and_verify_tells_pruned_from_tampered() {
    // Two seconds for every tenant but globex, which keeps everything.
    let (mut s, _) = start_with_config(
        tempfile::tempdir().unwrap(),
        "[storage]\nretention_secs = 2\n[storage.tenant_retention_secs]\nglobex = 0\n",
        &[],
    );
    let c = s.http_client();
    let (st, _, old) = send_spans(&c, &s, "acme", 4).await;
    assert_eq!(st, 200);
    let (st, _, kept) = send_spans(&c, &s, "globex", 4).await;
    assert_eq!(st, 200);
    s.flush().await;
    let acme_block = |s: &Server| {
        let mut b = Vec::new();
        files_under(&s.dir.join("blocks/acme"), &mut b);
        b
    };
    assert_eq!(acme_block(&s).len(), 1);
    // The spans end "now"; two seconds later acme's block is past retention.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !acme_block(&s).is_empty() {
        assert!(std::time::Instant::now() < deadline, "{}", s.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = |tenant: &'static str, tid: [u8; 16]| {
        let s = &s;
        async move {
            let path = format!("/api/traces/{}", hex::encode(tid));
            call(s, "GET", &path, &s.token(), tenant).await.0
        }
    };
    assert_eq!(status("acme", old).await, 404);
    assert_eq!(status("globex", kept).await, 200);
    let (st, _, _young) = send_spans(&c, &s, "acme", 3).await;
    assert_eq!(st, 200);
    assert_eq!(s.terminate(), Some(0));
    let keys = vkeys(&s.dir);
    let (code, out) = run_verify(&s.dir, &keys, &["-v"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("deleted by retention (2 s)").count(),
        1,
        "acme's block only: {out}"
    );
    // A block deleted without the log's record of it is reported as missing.
    let t = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, t.path());
    let mut left = Vec::new();
    files_under(&t.path().join("blocks/globex"), &mut left);
    assert_eq!(left.len(), 1, "globex's block");
    std::fs::remove_file(&left[0]).unwrap();
    let (code, out) = run_verify(t.path(), &keys, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("[missing block]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_pruned_below_what_any_tenant_retains_and_still_verifies() {
    // acme keeps two seconds, globex everything.
    let (mut s, _) = start_with_config(
        tempfile::tempdir().unwrap(),
        "[storage]\nretention_secs = 2\n[storage.tenant_retention_secs]\nglobex = 0\n",
        &[],
    );
    let c = s.http_client();
    // 300 log entries of acme, then globex's trace: the oldest entry still needed.
    for _ in 0..300 {
        let (st, body, _) = send_spans(&c, &s, "acme", 1).await;
        assert_eq!(st, 200, "{body}");
    }
    let (st, _, kept) = send_spans(&c, &s, "globex", 3).await;
    assert_eq!(st, 200);
    s.flush().await;
    let min_file = s.dir.join("log/minimum-index");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !min_file.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", s.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read_to_string(&min_file).unwrap().trim(), "256");
    assert!(!s.dir.join("log/tile/entries/000").exists());
    assert!(s.dir.join("log/tile/0/000").exists(), "hash tiles stay");
    // Retained data still proves its place in the log; pruned entries are refused clearly.
    let path = format!("/api/traces/{}/receipt", hex::encode(kept));
    let (st, body) = call(&s, "GET", &path, &s.token(), "globex").await;
    assert_eq!(st, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["receipts"].as_array().unwrap().len(), 3, "{r}");
    let (st, body) = call(
        &s,
        "GET",
        "/api/log/proof/inclusion?index=5",
        &s.token(),
        "globex",
    )
    .await;
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("entry 5 was pruned"), "{body}");
    // A restart reads the pruned log.
    s.restart();
    let (st, _, _) = send_spans(&c, &s, "globex", 1).await;
    assert_eq!(st, 200);
    assert_eq!(s.terminate(), Some(0));
    let keys = vkeys(&s.dir);
    let (code, out) = run_verify(&s.dir, &keys, &["-v"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("log pruned: entries below 256"), "{out}");

    // A changed hash tile in the pruned range, or a bundle missing above it, is found.
    for tamper in ["tile", "bundle"] {
        let t = tempfile::tempdir().unwrap();
        copy_dir(&s.dir, t.path());
        if tamper == "tile" {
            let p = t.path().join("log/tile/0/000");
            let mut b = std::fs::read(&p).unwrap();
            b[40] ^= 1;
            std::fs::write(&p, b).unwrap();
        } else {
            // Every bundle left (those of the last, partial bundle above the minimum).
            std::fs::remove_dir_all(t.path().join("log/tile/entries")).unwrap();
        }
        let (code, out) = run_verify(t.path(), &keys, &[]);
        assert_eq!(code, 2, "{tamper}: {out}");
        let expect = if tamper == "tile" {
            "[checkpoint root]"
        } else {
            "the log records pruning only below"
        };
        assert!(out.contains(expect), "{tamper}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_blocks_and_verify_accounts_for_every_span() {
    let (mut s, _) = start_with_config(
        tempfile::tempdir().unwrap(),
        "[storage]\ncompaction_interval_secs = 0.3\ncompaction_grace_secs = 0\n",
        &[],
    );
    let c = s.http_client();
    // One small block per trace (each flushed on its own).
    let mut traces = Vec::new();
    for n in 1..=8 {
        let (st, body, tid) = send_spans(&c, &s, "acme", n).await;
        assert_eq!(st, 200, "{body}");
        s.flush().await;
        traces.push((tid, n));
    }
    let blocks = |s: &Server| {
        let mut b = Vec::new();
        files_under(&s.dir.join("blocks/acme"), &mut b);
        b
    };
    // Merged in the background: fewer than 4 small blocks are left to merge.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while blocks(&s).len() > 4 {
        assert!(std::time::Instant::now() < deadline, "{}", s.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let merged: Vec<PathBuf> = blocks(&s)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('8'))
        .collect();
    assert!(!merged.is_empty(), "{:?}", blocks(&s));
    // Every trace whole, from whichever block holds it now.
    for (tid, n) in &traces {
        let path = format!("/api/traces/{}", hex::encode(tid));
        let (st, body) = call(&s, "GET", &path, &s.token(), "acme").await;
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(count_json_spans(&v), *n, "{body}");
    }
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tracevault_blocks_compacted_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert_eq!(s.terminate(), Some(0));
    let keys = vkeys(&s.dir);
    let (code, out) = run_verify(&s.dir, &keys, &["-v"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.matches("compacted: ").count() >= 4, "{out}");
    assert!(
        out.contains("merged into a larger block by compaction"),
        "{out}"
    );
    // The merged block deleted behind the log's back: reported, with the spans it held.
    let t = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, t.path());
    let gone = t
        .path()
        .join("blocks/acme")
        .join(merged[0].file_name().unwrap());
    std::fs::remove_file(gone).unwrap();
    let (code, out) = run_verify(t.path(), &keys, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("[missing block]"), "{out}");
    assert!(out.contains("[missing records]"), "{out}");
}
