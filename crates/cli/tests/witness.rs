//! A witness started as a separate process cosigns a growing log, and refuses a rolled-back
//! checkpoint, a forked log (split view) and badly signed or unknown logs, with the status codes of
//! c2sp.org/tlog-witness; its state survives a restart.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use tv_tlog::checkpoint::Checkpoint;
use tv_tlog::cosig::{Ed25519CosigVerifier, MlDsaCosigSigner};
use tv_tlog::note::{Ed25519Signer, Note, NoteSigner, Verifiers, open, sign};
use tv_tlog::tiled::{MemoryTiles, TiledLog};

struct Log {
    ed: Ed25519Signer,
    pq: MlDsaCosigSigner,
    tiles: TiledLog<MemoryTiles>,
    salt: &'static str,
}

impl Log {
    fn new(ed: Ed25519Signer, pq: MlDsaCosigSigner, salt: &'static str) -> Self {
        Self {
            ed,
            pq,
            tiles: TiledLog::open(MemoryTiles::default(), 0),
            salt,
        }
    }
    fn grow_to(&mut self, n: u64) {
        let es: Vec<Vec<u8>> = (self.tiles.size()..n)
            .map(|i| format!("{}{i}", self.salt).into_bytes())
            .collect();
        self.tiles.append(&es).unwrap();
    }
    fn checkpoint(&self, signers: &[&dyn NoteSigner]) -> String {
        let c = Checkpoint {
            origin: self.ed.name().to_owned(),
            size: self.tiles.size(),
            root: self.tiles.root(self.tiles.size()).unwrap(),
            extensions: vec![],
        };
        String::from_utf8(
            sign(
                &Note {
                    text: c.to_text(),
                    ..Default::default()
                },
                signers,
            )
            .unwrap(),
        )
        .unwrap()
    }
    fn signed(&self) -> String {
        self.checkpoint(&[&self.ed, &self.pq])
    }
    fn body(&self, old: u64, note: &str) -> String {
        let mut b = format!("old {old}\n");
        if old > 0 && old < self.tiles.size() {
            for h in self
                .tiles
                .prove_consistency(self.tiles.size(), old)
                .unwrap()
            {
                b.push_str(&B64.encode(h.0));
                b.push('\n');
            }
        }
        b.push('\n');
        b.push_str(note);
        b
    }
}

struct WitnessProc {
    child: Child,
    url: String,
    client: reqwest::Client,
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &std::path::Path, vkeys: &[String]) -> WitnessProc {
    let _ = std::fs::remove_file(dir.join("listen.json"));
    let mut cmd = Command::new(BIN);
    cmd.args([
        "witness",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    for k in vkeys {
        cmd.args(["--log-vkey", k]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(t) = std::fs::read_to_string(dir.join("listen.json")) {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            break v["addr"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "witness did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client(&dir.join("tls/ca.pem")))
        .build()
        .unwrap();
    WitnessProc {
        child,
        url: format!("https://{addr}/add-checkpoint"),
        client,
    }
}

async fn submit(w: &WitnessProc, body: String) -> (u16, String, String) {
    let r = w.client.post(&w.url).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn witness_cosigns_consistent_checkpoints_and_refuses_forks_and_rollbacks() {
    let tmp = tempfile::tempdir().unwrap();
    let ed = Ed25519Signer::generate("log.test/a").unwrap();
    let pq = MlDsaCosigSigner::generate("log.test/a").unwrap();
    let vkeys = vec![ed.vkey(), pq.vkey()];
    let mut log = Log::new(
        Ed25519Signer::from_seed("log.test/a", *ed.seed()).unwrap(),
        MlDsaCosigSigner::from_seed("log.test/a", *pq.seed()).unwrap(),
        "entry ",
    );
    let w = start_witness(tmp.path(), &vkeys);
    let wvkey = std::fs::read_to_string(tmp.path().join("witness.vkey")).unwrap();
    let wv = Verifiers::new(vec![Box::new(
        Ed25519CosigVerifier::from_vkey(wvkey.trim()).unwrap(),
    )]);

    // A growing log gets cosigned at each step; the cosignature verifies on the checkpoint.
    log.grow_to(5);
    let cp5 = log.signed();
    let (s, _, body) = submit(&w, log.body(0, &cp5)).await;
    assert_eq!(s, 200, "{body}");
    let cosigned = format!("{}{}", cp5, body);
    assert_eq!(open(cosigned.as_bytes(), &wv).unwrap().sigs.len(), 1);
    log.grow_to(300);
    let cp300 = log.signed();
    let (s, _, body) = submit(&w, log.body(5, &cp300)).await;
    assert_eq!(s, 200, "{body}");

    // A stale old size: 409 with the witness's size.
    let (s, ct, body) = submit(&w, log.body(5, &cp300)).await;
    assert_eq!(
        (s, ct.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "300\n")
    );
    // Rolled back: a smaller checkpoint than the old size: 400.
    let mut small = Log::new(
        Ed25519Signer::from_seed("log.test/a", *ed.seed()).unwrap(),
        MlDsaCosigSigner::from_seed("log.test/a", *pq.seed()).unwrap(),
        "entry ",
    );
    small.grow_to(200);
    let (s, _, _) = submit(&w, format!("old 300\n\n{}", small.signed())).await;
    assert_eq!(s, 400);

    // A fork: same keys, different history. Same size, other root: 409 (split view).
    let mut fork = Log::new(
        Ed25519Signer::from_seed("log.test/a", *ed.seed()).unwrap(),
        MlDsaCosigSigner::from_seed("log.test/a", *pq.seed()).unwrap(),
        "forked ",
    );
    fork.grow_to(300);
    let (s, _, body) = submit(&w, fork.body(300, &fork.signed())).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("split view"), "{body}");
    // The fork grows on: its consistency proof from 300 does not match what the witness saw: 422.
    fork.grow_to(400);
    let (s, _, body) = submit(&w, fork.body(300, &fork.signed())).await;
    assert_eq!(s, 422, "{body}");

    // Signatures: missing the ML-DSA-44 line, or from a stranger's key: 403. Unknown origin: 404.
    log.grow_to(310);
    let ed_only = log.checkpoint(&[&log.ed]);
    let (s, _, _) = submit(&w, log.body(300, &ed_only)).await;
    assert_eq!(s, 403);
    let stranger = Log::new(
        Ed25519Signer::generate("log.test/a").unwrap(),
        MlDsaCosigSigner::generate("log.test/a").unwrap(),
        "entry ",
    );
    let (s, _, _) = submit(&w, format!("old 0\n\n{}", stranger.signed())).await;
    assert_eq!(s, 403);
    let other = Log::new(
        Ed25519Signer::generate("log.test/other").unwrap(),
        MlDsaCosigSigner::generate("log.test/other").unwrap(),
        "x",
    );
    let (s, _, _) = submit(&w, format!("old 0\n\n{}", other.signed())).await;
    assert_eq!(s, 404);
    let (s, _, _) = submit(&w, "not a request".into()).await;
    assert_eq!(s, 400);

    // State survives a restart; the honest log continues.
    drop(w);
    let w = start_witness(tmp.path(), &vkeys);
    let (s, _, body) = submit(&w, log.body(0, &log.signed())).await;
    assert_eq!((s, body.as_str()), (409, "300\n"));
    let (s, _, body) = submit(&w, log.body(300, &log.signed())).await;
    assert_eq!(s, 200, "{body}");
}
