//! Crash safety: kill -9 the real server repeatedly while clients are writing, restart it, and prove
//! that every span it acknowledged is still readable. Sealing runs every 300 ms so kills also land
//! in the middle of sealing.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use prost::Message;

const ROUNDS: usize = 10;
const WRITERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_span_survives_repeated_kill_9() {
    let mut srv = Server::start(&["--seal-interval-secs", "0.3"]);
    let acked: Arc<Mutex<HashMap<[u8; 16], usize>>> = Arc::default();
    let mut rng_state = rand_u64();
    for round in 0..ROUNDS {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let client = srv.http_client();
            let url = format!("{}/v1/traces", srv.http);
            let token = srv.token();
            let acked = acked.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let spans = 1 + (n + w) % 20;
                    let (req, tid) = request(&format!("crash-{w}"), spans);
                    let res = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/x-protobuf")
                        .body(req.encode_to_vec())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(tid, spans);
                        }
                        _ => {
                            // The server died under us: only acknowledged requests count.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    n += 1;
                }
            }));
        }
        // Let them write for a random while, then kill -9 mid-flight.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let ms = 150 + rng_state % 700;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        srv.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        srv.spawn();
        let have = acked.lock().unwrap().len();
        assert!(have > round, "round {round}: no progress (acked {have})");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} traces were acknowledged",
        acked.len()
    );
    let client = srv.http_client();
    let token = srv.token();
    let api = srv.api.clone();
    use futures::StreamExt;
    let missing: Vec<String> = futures::stream::iter(acked.clone())
        .map(|(tid, spans)| {
            let (client, token, api) = (client.clone(), token.clone(), api.clone());
            async move {
                let r = client
                    .get(format!("{api}/api/traces/{}", hex::encode(tid)))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                if r.status() != 200 {
                    return Some(format!("{} ({})", hex::encode(tid), r.status()));
                }
                let v: serde_json::Value = r.json().await.unwrap();
                let got = count_json_spans(&v);
                (got != spans).then(|| format!("{}: {got} of {spans} spans", hex::encode(tid)))
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged traces lost or partial: {:?}\n{}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)],
        srv.log_text()
    );
    eprintln!(
        "{} acknowledged traces all readable after {ROUNDS} kill -9 rounds",
        acked.len()
    );
    // Every acknowledged span is provable: a receipt for a few of them verifies, and the data
    // directory verifies against the log after the crashes.
    let keys = vkeys(&srv.dir);
    let lk = tv_tlog::policy::LogKeys::from_vkeys(&keys).unwrap();
    for (tid, spans) in acked.iter().take(5) {
        let r = client
            .get(format!("{api}/api/traces/{}/receipt", hex::encode(tid)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        let receipts = v["receipts"].as_array().unwrap();
        assert_eq!(receipts.len(), *spans);
        for rc in receipts {
            let rc: tv_tlog::receipt::Receipt = serde_json::from_value(rc.clone()).unwrap();
            tv_tlog::receipt::verify(&rc, &lk, tv_tlog::policy::Policy::Both).unwrap();
        }
    }
    assert_eq!(srv.terminate(), Some(0));
    let (code, text) = run_verify(&srv.dir, &keys, &[]);
    assert_eq!(code, 0, "{text}");
}
