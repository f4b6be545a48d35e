//! `tracevault bench log`: what the transparency log costs, in process (issue 3 figures): span
//! commitments per span, checkpoint signing per algorithm, leaves appended per second with tiles
//! and checkpoints written, and proof and receipt sizes at a given log size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Parser};
use prost::Message;
use tv_model::otlp::ExportTraceServiceRequest;
use tv_tlog::checkpoint::Checkpoint;
use tv_tlog::cosig::MlDsaCosigSigner;
use tv_tlog::note::{Ed25519Signer, NoteSigner};

use super::IngestArgs;

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Leaves to append
    #[arg(long, default_value_t = 1_000_000)]
    pub leaves: u64,
    /// Leaves per flush (each flush writes tiles and signs a checkpoint)
    #[arg(long, default_value_t = 10_000)]
    pub flush_every: u64,
    /// Directory for the log [default: a temporary directory]
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    ingest: IngestArgs,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(a: LogArgs) -> anyhow::Result<()> {
    // Progress goes to stderr whatever it is (a terminal, a pipe, a CI log), results to stdout.
    eprintln!("bench log [1/4]: span commitments on a 512-span batch");
    // 1. Span commitments on the default bench batch (512 spans, 10 attributes).
    let d = Defaults::parse_from(["bench"]);
    let mut rng = rand::rng();
    let t = super::template::build_template(&mut rng, &d.ingest, super::template::now_nanos());
    let req = ExportTraceServiceRequest::decode(t.bytes.as_slice())?;
    let secret = [7u8; 32];
    let rounds = 40;
    let started = Instant::now();
    let mut root = [0u8; 32];
    for _ in 0..rounds {
        root =
            tv_store::commit::span_root(&secret, &tv_store::commit::CanonRecord::of_request(&req))
                .0;
    }
    let per_span = started.elapsed() / (rounds * t.spans as u32);
    let canon = tv_store::commit::CanonRecord::of_request(&req);
    let started = Instant::now();
    for _ in 0..rounds {
        let _ = tv_store::commit::commitments(&secret, &canon);
    }
    let fields_per_span = started.elapsed() / (rounds * t.spans as u32);
    let cs = tv_store::commit::commitments(&secret, &canon);
    let started = Instant::now();
    for _ in 0..rounds {
        let _ = tv_tlog::commit::SpanTree::new(&cs).root();
    }
    let tree_per_span = started.elapsed() / (rounds * t.spans as u32);
    let started = Instant::now();
    for _ in 0..rounds {
        let raw = req.encode_to_vec();
        let _ = zstd::bulk::compress(&raw, 1)?;
    }
    let encode_per_span = started.elapsed() / (rounds * t.spans as u32);
    println!(
        "span commitments: {:.2} us/span ({:.0} spans/s on one core; root {}..): fields and span hashes {:.2}, record tree {:.2}, canonical order and the rest {:.2}; for comparison protobuf encode + zstd of the batch {:.2} us/span",
        per_span.as_secs_f64() * 1e6,
        1.0 / per_span.as_secs_f64(),
        hex::encode(&root[..4]),
        fields_per_span.as_secs_f64() * 1e6,
        tree_per_span.as_secs_f64() * 1e6,
        (per_span.saturating_sub(fields_per_span + tree_per_span)).as_secs_f64() * 1e6,
        encode_per_span.as_secs_f64() * 1e6
    );

    eprintln!("bench log [2/4]: checkpoint signing, 200 of each");
    // 2. Checkpoint signing, each algorithm alone.
    let ed = Ed25519Signer::generate("bench.example/log")?;
    let pq = MlDsaCosigSigner::generate("bench.example/log")?;
    let text = Checkpoint {
        origin: "bench.example/log".into(),
        size: 1_000_000,
        root: tv_tlog::Hash([3; 32]),
        extensions: vec![],
    }
    .to_text();
    let mut ed_t = Vec::new();
    let mut pq_t = Vec::new();
    for _ in 0..200 {
        let s = Instant::now();
        ed.sign(text.as_bytes())?;
        ed_t.push(s.elapsed());
        let s = Instant::now();
        pq.sign(text.as_bytes())?;
        pq_t.push(s.elapsed());
    }
    println!(
        "checkpoint signing (median of 200): Ed25519 {:.0} us, ML-DSA-44 {:.0} us",
        median(ed_t).as_secs_f64() * 1e6,
        median(pq_t).as_secs_f64() * 1e6
    );

    eprintln!(
        "bench log [3/4]: appending {} leaves with tiles and checkpoints",
        a.leaves
    );
    // 3. Leaves appended, with tiles and checkpoints written as the server does.
    let tmp = std::env::temp_dir().join(format!("tv-bench-log-{}", std::process::id()));
    let dir = a.dir.clone().unwrap_or_else(|| tmp.join("log"));
    let log = tv_store::TxLog::open(
        &dir,
        tv_store::LogConfig {
            origin: "bench.example/log".into(),
            signers: vec![
                Arc::new(Ed25519Signer::from_seed("bench.example/log", *ed.seed())?),
                Arc::new(MlDsaCosigSigner::from_seed(
                    "bench.example/log",
                    *pq.seed(),
                )?),
            ],
            checkpoint_interval: Duration::from_secs(1),
        },
    )?;
    let start_size = log.len();
    let mut push_time = Duration::ZERO;
    let mut flush_time = Duration::ZERO;
    let mut flushes = 0u64;
    let started = Instant::now();
    let mut leaf = vec![0u8; tv_tlog::leaf::RECORD_LEAF_LEN];
    for i in 0..a.leaves {
        leaf[..8].copy_from_slice(&i.to_be_bytes());
        let s = Instant::now();
        log.push(leaf.clone());
        push_time += s.elapsed();
        if (i + 1).is_multiple_of((a.leaves / 10).max(1)) {
            eprintln!(
                "bench log [3/4]: {} of {} leaves, {:.0} s",
                i + 1,
                a.leaves,
                started.elapsed().as_secs_f64()
            );
        }
        if (i + 1) % a.flush_every == 0 || i + 1 == a.leaves {
            let s = Instant::now();
            log.flush()?;
            flush_time += s.elapsed();
            flushes += 1;
        }
    }
    let total = started.elapsed();
    let n = log.len();
    println!(
        "leaves: {} appended in {:.2} s = {:.0} leaves/s ({:.2} us/leaf to queue at commit; {} flushes of {} leaves, {:.1} ms each with tiles, fsyncs and a signed checkpoint)",
        n - start_size,
        total.as_secs_f64(),
        (n - start_size) as f64 / total.as_secs_f64(),
        push_time.as_secs_f64() * 1e6 / (n - start_size) as f64,
        flushes,
        a.flush_every,
        flush_time.as_secs_f64() * 1e3 / flushes as f64
    );

    eprintln!("bench log [4/4]: proof sizes");
    // 4. Proof sizes at this size.
    let note = log.checkpoint().unwrap_or_default();
    let (incl, cons) = log.with_tree(|t| {
        Ok::<_, anyhow::Error>((t.prove_inclusion(n, n / 2)?, t.prove_consistency(n, n / 2)?))
    })?;
    let proof = tv_tlog::receipt::format_proof(n / 2, &incl, &note);
    println!(
        "at {n} leaves: inclusion proof {} hashes ({} bytes), consistency proof {}->{} {} hashes ({} bytes); checkpoint note {} bytes (both signatures); tlog-proof {} bytes",
        incl.len(),
        incl.len() * 32,
        n / 2,
        n,
        cons.len(),
        cons.len() * 32,
        note.len(),
        proof.len()
    );
    // A receipt for one span of the bench batch at this log size.
    let commitments = tv_store::commit::commitments(&secret, &canon);
    let tree = tv_tlog::commit::SpanTree::new(&commitments);
    let fields = tv_store::commit::open_span(&secret, &canon, 7, &|_, _| false);
    let receipt = tv_tlog::receipt::Receipt {
        format: tv_tlog::receipt::FORMAT.into(),
        trace_id: hex::encode(&canon.spans[7].span.trace_id),
        span_id: hex::encode(&canon.spans[7].span.span_id),
        leaf: B64.encode(&leaf),
        span_index: 7,
        span_count: commitments.len() as u64,
        span_path: tree.path(7)?.iter().map(|h| B64.encode(h.0)).collect(),
        fields: fields
            .iter()
            .map(tv_tlog::receipt::ReceiptField::from_opening)
            .collect(),
        proof,
    };
    let json = serde_json::to_vec(&receipt)?;
    println!(
        "receipt for one span ({} fields, {} spans in its record) at {n} leaves: {} bytes JSON, of which the checkpoint note {} and the span's fields {}",
        receipt.fields.len(),
        commitments.len(),
        json.len(),
        note.len(),
        serde_json::to_vec(&receipt.fields)?.len()
    );
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}
