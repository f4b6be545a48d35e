//! Store behaviour: durability, recovery of torn tails, refusal of corruption, encryption at rest,
//! and the group-commit ordering (no acknowledgement before the covering fsync returns).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tv_crypto::Keyring;
use tv_model::{TenantId, TraceId};
use tv_store::{SearchQuery, Store, SyncHook};

mod common;
use common::*;

#[tokio::test]
async fn appended_spans_are_readable_from_head_blocks_and_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    store
        .append(batch("a", request("svc", [1; 16], 3, "m1")))
        .await
        .unwrap();
    assert_eq!(count(&store, "a", [1; 16]), 3, "head");
    assert_eq!(count(&store, "b", [1; 16]), 0, "other tenant sees nothing");
    store.flush().await.unwrap();
    assert_eq!(store.stats().head_records, 0);
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(count(&store, "a", [1; 16]), 3, "block");
    // The same trace continues in a later block and in the head: it comes back whole.
    let mut more = request("svc2", [1; 16], 2, "m2");
    for (i, sp) in more.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        sp.span_id = (100 + i as u64).to_be_bytes().to_vec();
        sp.parent_span_id = 1u64.to_be_bytes().to_vec();
    }
    store.append(batch("a", more.clone())).await.unwrap();
    store.flush().await.unwrap();
    for sp in more.resource_spans[0].scope_spans[0].spans.iter_mut() {
        sp.span_id[0] = 9;
    }
    store.append(batch("a", more)).await.unwrap();
    assert_eq!(count(&store, "a", [1; 16]), 7);
    drop(store);
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    assert_eq!(count(&store, "a", [1; 16]), 7, "after reopen");
    let hits = store
        .search(
            &TenantId::parse("a").unwrap(),
            &SearchQuery {
                tags: vec![("service.name".into(), "svc2".into())],
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].root_service_name, "svc");
    assert_eq!(hits[0].root_trace_name, "op-m1-0");
}

/// A block keeps its trace ids in memory as a filter once it holds many traces (issue 22):
/// every trace it holds is still found, before and after a restart, and ids it does not hold
/// find nothing.
#[tokio::test]
async fn every_trace_of_a_large_block_is_found_and_no_other() {
    let d = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let traces: Vec<[u8; 16]> = (0..3000).map(|_| rng.random()).collect();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    for group in traces.chunks(1000) {
        let mut req = request("svc", group[0], 1, "big");
        for t in &group[1..] {
            req.resource_spans
                .extend(request("svc", *t, 1, "big").resource_spans);
        }
        store.append(batch("a", req)).await.unwrap();
    }
    store.flush().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.stats().head_records, 0);
    let mut store = Some(store);
    for round in ["sealed", "after reopen"] {
        let st = match store.take() {
            Some(st) => st,
            None => Store::open(cfg(d.path()), keyring(d.path())).unwrap(),
        };
        for t in &traces {
            assert_eq!(count(&st, "a", *t), 1, "{round}: trace {}", hex::encode(t));
        }
        for _ in 0..3000 {
            let absent: [u8; 16] = rng.random();
            assert_eq!(count(&st, "a", absent), 0, "{round}");
        }
    }
}

/// Operations (service, span name, kind) answer the same from the head, from a sealed block
/// (where they are kept interned in memory) and after a restart.
#[tokio::test]
async fn operations_are_the_same_from_the_head_a_block_and_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let mut req = request("checkout", [3; 16], 3, "pay");
    req.resource_spans
        .extend(request("cart", [4; 16], 2, "add").resource_spans);
    req.resource_spans
        .extend(request("checkout", [5; 16], 2, "add").resource_spans);
    let mut want = std::collections::BTreeSet::new();
    for (i, rs) in req.resource_spans.iter_mut().enumerate() {
        let svc = tv_model::service_name(rs.resource.as_ref())
            .unwrap()
            .to_owned();
        for sp in rs.scope_spans.iter_mut().flat_map(|s| s.spans.iter_mut()) {
            sp.kind = (i as i32 % 3) + 1;
            want.insert((svc.clone(), sp.name.clone(), sp.kind));
        }
    }
    let tenant = TenantId::parse("a").unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    store.append(batch("a", req)).await.unwrap();
    assert_eq!(store.operations(&tenant, None, None).unwrap(), want, "head");
    store.flush().await.unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(
        store.operations(&tenant, None, None).unwrap(),
        want,
        "block"
    );
    drop(store);
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    assert_eq!(
        store.operations(&tenant, None, None).unwrap(),
        want,
        "reopened"
    );
}

#[tokio::test]
async fn identical_resends_are_deduplicated() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    let req = request("svc", [2; 16], 4, "dup");
    store.append(batch("a", req.clone())).await.unwrap();
    store.flush().await.unwrap();
    store.append(batch("a", req)).await.unwrap();
    assert_eq!(count(&store, "a", [2; 16]), 4);
}

#[tokio::test]
async fn nothing_is_plaintext_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    let marker = "zq-unique-marker-7731";
    store
        .append(batch("a", request(marker, [3; 16], 5, marker)))
        .await
        .unwrap();
    // Check the WAL before sealing, then the blocks after.
    assert_no_marker(d.path(), marker);
    store.flush().await.unwrap();
    assert_no_marker(d.path(), marker);
    assert_eq!(count(&store, "a", [3; 16]), 5);
}

fn assert_no_marker(dir: &Path, marker: &str) {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else {
                files += 1;
                let bytes = std::fs::read(&e).unwrap();
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "plaintext marker found in {}",
                    e.display()
                );
            }
        }
    }
    assert!(files > 2);
}

fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("data/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Writes `n` acknowledged batches, then "crashes" (leaks the store so nothing is sealed).
async fn crashed_store_with(d: &Path, n: usize) -> Vec<[u8; 16]> {
    let store = Store::open(cfg(d), keyring(d)).unwrap();
    let mut traces = Vec::new();
    for i in 0..n {
        let t = [i as u8 + 10; 16];
        store
            .append(batch("a", request("svc", t, 2, "c")))
            .await
            .unwrap();
        traces.push(t);
    }
    // Simulate kill -9: no shutdown, no seal. Copy the WAL aside before the store drops.
    let wal = wal_files(d);
    let copies: Vec<(std::path::PathBuf, Vec<u8>)> = wal
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    drop(store);
    for p in wal_files(d) {
        std::fs::remove_file(p).unwrap();
    }
    for b in std::fs::read_dir(d.join("data/blocks/a"))
        .into_iter()
        .flatten()
    {
        std::fs::remove_file(b.unwrap().path()).unwrap();
    }
    for (p, bytes) in copies {
        std::fs::write(p, bytes).unwrap();
    }
    traces
}

#[tokio::test]
async fn torn_tails_at_random_offsets_lose_nothing_acknowledged() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..8 {
        let d = tempfile::tempdir().unwrap();
        let traces = crashed_store_with(d.path(), 5).await;
        let seg = wal_files(d.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let acked_len = bytes.len();
        // A torn write: part of a record that was never acknowledged, cut at a random length.
        let extra: Vec<u8> = if round % 2 == 0 {
            let mut rec = Vec::new();
            tv_store::wal::encode_record(&mut rec, tv_store::wal::TYPE_DATA, &vec![7u8; 300]);
            rec.truncate(rng.random_range(1..rec.len()));
            rec
        } else {
            (0..rng.random_range(1..200))
                .map(|_| rng.random())
                .collect()
        };
        bytes.extend_from_slice(&extra);
        std::fs::write(&seg, &bytes).unwrap();
        let store = Store::open(cfg(d.path()), keyring(d.path()))
            .unwrap_or_else(|e| panic!("round {round}: torn tail after {acked_len} refused: {e}"));
        for t in &traces {
            assert_eq!(count(&store, "a", *t), 2, "round {round}");
        }
    }
}

#[tokio::test]
async fn damage_inside_an_acknowledged_record_is_reported_not_dropped() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..8 {
        let d = tempfile::tempdir().unwrap();
        crashed_store_with(d.path(), 6).await;
        let seg = wal_files(d.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        // Any byte of the records before the last one (the last could be a torn write).
        let off = rng.random_range(tv_store::wal::HEADER_LEN..bytes.len() * 2 / 3);
        bytes[off] ^= 0x5a;
        std::fs::write(&seg, &bytes).unwrap();
        let err = Store::open(cfg(d.path()), keyring(d.path()))
            .err()
            .unwrap_or_else(|| panic!("round {round}: corruption at {off} was accepted"));
        let msg = err.to_string();
        assert!(
            msg.contains("corruption") || msg.contains("authentication"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn a_truncated_segment_keeps_every_complete_record() {
    let d = tempfile::tempdir().unwrap();
    let traces = crashed_store_with(d.path(), 4).await;
    let seg = wal_files(d.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    // Cut inside the last record: earlier records survive; the cut one is a torn tail.
    std::fs::write(&seg, &bytes[..bytes.len() - 10]).unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    for t in &traces[..3] {
        assert_eq!(count(&store, "a", *t), 2);
    }
    assert_eq!(count(&store, "a", traces[3]), 0);
}

struct BlockingSync {
    release: AtomicBool,
    syncing: AtomicBool,
    synced: AtomicUsize,
    log: Mutex<Vec<&'static str>>,
}

impl SyncHook for BlockingSync {
    fn before_sync(&self) {
        self.syncing.store(true, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn after_sync(&self) {
        self.log.lock().unwrap().push("fsync returned");
        self.synced.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_acknowledgement_before_the_covering_fsync_returns() {
    let d = tempfile::tempdir().unwrap();
    let hook = Arc::new(BlockingSync {
        release: AtomicBool::new(false),
        syncing: AtomicBool::new(false),
        synced: AtomicUsize::new(0),
        log: Mutex::new(Vec::new()),
    });
    let mut c = cfg(d.path());
    c.sync_hook = Some(hook.clone());
    let store = Arc::new(Store::open(c, keyring(d.path())).unwrap());
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let st = store.clone();
        let h = hook.clone();
        tasks.push(tokio::spawn(async move {
            st.append(batch("a", request("svc", [i + 1; 16], 1, "f")))
                .await
                .unwrap();
            h.log.lock().unwrap().push("ack");
        }));
    }
    while !hook.syncing.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hook.log.lock().unwrap().is_empty(),
        "an acknowledgement left while its fsync was still running"
    );
    hook.release.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let log = hook.log.lock().unwrap().clone();
    assert_eq!(log.first(), Some(&"fsync returned"), "{log:?}");
    assert_eq!(log.iter().filter(|l| **l == "ack").count(), 8);
    // Group commit: 8 concurrent requests shared fewer fsyncs than requests.
    assert!(hook.synced.load(Ordering::SeqCst) < 8, "{log:?}");
}

#[tokio::test]
async fn unknown_format_versions_are_refused_clearly() {
    // A WAL segment from a future version.
    let d = tempfile::tempdir().unwrap();
    crashed_store_with(d.path(), 1).await;
    let seg = wal_files(d.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[6] = 9;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Store::open(cfg(d.path()), keyring(d.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unsupported format version 9"), "{err}");

    // A block from a future version.
    let d = tempfile::tempdir().unwrap();
    let block = one_sealed_block(d.path(), [5; 16], 2).await;
    let mut bytes = std::fs::read(&block).unwrap();
    bytes[6] = 7;
    std::fs::write(&block, &bytes).unwrap();
    let err = Store::open(cfg(d.path()), keyring(d.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unsupported format version 7"), "{err}");
}

#[tokio::test]
async fn a_tampered_block_is_reported_not_served() {
    let d = tempfile::tempdir().unwrap();
    let block = one_sealed_block(d.path(), [6; 16], 50).await;
    let mut bytes = std::fs::read(&block).unwrap();
    // A byte in the first chunk (after the header), not the index.
    let hlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    bytes[12 + hlen + 5] ^= 1;
    std::fs::write(&block, &bytes).unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    let err = store
        .find_trace(&TenantId::parse("a").unwrap(), TraceId([6; 16]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fails authentication"), "{err}");
}

/// Stores one trace of `spans` spans for tenant `a`, seals it, closes the store; returns the block.
/// Blocks an earlier release wrote (format 2: each chunk one zstd frame) read as they did, span
/// for span, next to the same spans written in today's format (3: each field its own frame); a
/// mixed data directory (blocks from before and after an upgrade) therefore answers as one.
#[test]
fn blocks_in_the_previous_format_still_read() {
    use tv_store::block::{BlockBuilder, BlockMeta, VERSION};
    use tv_store::objects::{LocalDir, SharedObjects};
    let t = tempfile::tempdir().unwrap();
    let kr = keyring(t.path());
    let objects: SharedObjects = Arc::new(LocalDir::new(t.path().join("data")));
    let tenant = TenantId::parse("acme").unwrap();
    let mut req = request("svc", [4; 16], 300, "old");
    // Every kind of value a column holds: strings, ints, other values, absent values.
    for (i, span) in req.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        span.attributes.push(tv_model::otlp::KeyValue {
            key: "n".into(),
            value: Some(tv_model::otlp::AnyValue {
                value: Some(match i % 3 {
                    0 => tv_model::otlp::any_value::Value::IntValue(i as i64),
                    1 => tv_model::otlp::any_value::Value::BoolValue(true),
                    _ => tv_model::otlp::any_value::Value::StringValue(format!("hmac:{i:032x}")),
                }),
            }),
            ..Default::default()
        });
        if i % 7 == 0 {
            span.attributes.push(tv_model::otlp::KeyValue {
                key: "absent".into(),
                ..Default::default()
            });
        }
    }
    let write = |id: u64, format: u16| {
        let mut b = BlockBuilder::default();
        b.add_record(1, [9; 32], req.clone());
        b.write_format(format)
            .write(
                &t.path().join("staging"),
                &*objects,
                &tenant,
                id,
                &kr,
                4096, // several chunks
                3,
            )
            .unwrap();
        let meta = BlockMeta::load(
            &objects,
            &format!("blocks/acme/{id:016x}.tvb"),
            &tenant,
            &kr,
        )
        .unwrap();
        let file = meta.open_file().unwrap();
        let mut rows = Vec::new();
        for i in 0..meta.index.chunks.len() {
            let chunk = meta.read_chunk(&file, i).unwrap();
            rows.extend(tv_store::columns::decode(&chunk, |_| true).unwrap());
        }
        let bytes =
            std::fs::read(t.path().join(format!("data/blocks/acme/{id:016x}.tvb"))).unwrap();
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), format);
        (meta.index.chunks.len(), rows)
    };
    let (old_chunks, old) = write(1, 2);
    let (new_chunks, new) = write(2, VERSION);
    assert_eq!(VERSION, 3);
    assert!(old_chunks > 1, "{old_chunks} chunks");
    assert_eq!(old_chunks, new_chunks);
    assert_eq!(old.len(), 300);
    assert_eq!(old, new);
    let mut sent: Vec<_> = req.resource_spans[0].scope_spans[0].spans.clone();
    let mut read: Vec<_> = new.into_iter().map(|r| r.span).collect();
    // Stored spans lose the ids the columns hold apart; compare what a query returns.
    for s in sent.iter_mut() {
        s.trace_id.clear();
    }
    for s in read.iter_mut() {
        s.trace_id.clear();
    }
    sent.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    read.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    assert_eq!(read, sent);
}

/// A key with more values than a block index keeps (`MAX_TAG_VALUES`, 64) has a sample of them
/// in the index for the tags API: read from the block file when asked, not held in memory for
/// as long as the block is kept. A key with few values stays in memory, where it prunes
/// searches. Both tags APIs answer as they did.
#[tokio::test]
async fn a_sample_of_many_tag_values_is_read_from_the_block_not_kept_in_memory() {
    use tv_store::TagScope;
    use tv_store::block::{BlockBuilder, BlockMeta, MAX_TAG_VALUES};
    use tv_store::objects::{LocalDir, SharedObjects};
    let with_ids = |trace: [u8; 16]| {
        let mut req = request("svc", trace, 100, "tags");
        for (i, span) in req.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .enumerate()
        {
            span.attributes.push(tv_model::otlp::KeyValue {
                key: "request.id".into(),
                value: s(&format!("r{i:03}")),
                ..Default::default()
            });
        }
        req
    };
    let d = tempfile::tempdir().unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let store = Store::open(cfg(d.path()), keyring(d.path())).unwrap();
    store
        .append(batch("acme", with_ids([6; 16])))
        .await
        .unwrap();
    // Not sealed yet: the head lists every value.
    assert_eq!(store.tag_values(&acme, "request.id").unwrap().len(), 100);
    store.flush().await.unwrap();
    let sealed = store.tag_values(&acme, "request.id").unwrap();
    assert_eq!(sealed.len(), MAX_TAG_VALUES);
    assert!(sealed.iter().all(|v| v.len() == 4 && v.starts_with('r')));
    let scoped = store
        .scoped_tag_values(&acme, &[TagScope::Span], "request.id", None, None, 1000)
        .unwrap();
    assert_eq!(scoped.len(), MAX_TAG_VALUES);
    assert!(scoped.iter().all(|(_, kind)| *kind == "string"));
    assert_eq!(store.tag_values(&acme, "note").unwrap(), ["tags"]);
    // A search for a value the block does not hold is pruned by the in-memory list.
    let q = |v: &str| SearchQuery {
        tags: vec![("note".into(), v.into())],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.search(&acme, &q("tags")).unwrap().len(), 1);
    assert!(store.search(&acme, &q("other")).unwrap().is_empty());
    drop(store);

    // What the loaded block holds in memory.
    let kr = keyring(d.path());
    let objects: SharedObjects = Arc::new(LocalDir::new(d.path().join("data")));
    let mut b = BlockBuilder::default();
    b.add_record(1, [9; 32], with_ids([7; 16]));
    b.write(
        &d.path().join("staging"),
        &*objects,
        &acme,
        99,
        &kr,
        4096,
        3,
    )
    .unwrap();
    let meta = BlockMeta::load(&objects, "blocks/acme/0000000000000063.tvb", &acme, &kr).unwrap();
    let entry = |k: &str| meta.index.tags.iter().find(|t| t.key == k).unwrap();
    assert!(entry("request.id").truncated);
    assert!(entry("request.id").values.is_empty());
    assert_eq!(
        meta.tag_values_of(entry("request.id")).unwrap().len(),
        MAX_TAG_VALUES
    );
    assert!(!entry("note").truncated);
    assert_eq!(entry("note").values, ["tags"]);
    assert_eq!(meta.tag_values_of(entry("note")).unwrap(), ["tags"]);
}

async fn one_sealed_block(dir: &Path, trace: [u8; 16], spans: usize) -> std::path::PathBuf {
    let store = Store::open(cfg(dir), keyring(dir)).unwrap();
    store
        .append(batch("a", request("svc", trace, spans, "b")))
        .await
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    std::fs::read_dir(dir.join("data/blocks/a"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn log_keys() -> tv_tlog::policy::LogKeys {
    let ed = tv_tlog::note::Ed25519Signer::from_seed("test.example/log", [1; 32]).unwrap();
    let pq = tv_tlog::cosig::MlDsaCosigSigner::from_seed("test.example/log", [2; 32]).unwrap();
    tv_tlog::policy::LogKeys::from_vkeys(&[ed.vkey(), pq.vkey()]).unwrap()
}

/// Checks a span proof against the store's log and its latest checkpoint, the way a receipt
/// verifier does.
fn check_proof(store: &Store, p: &tv_store::prove::SpanProof) {
    use tv_tlog::leaf::Leaf;
    let log = store.log().unwrap();
    log.flush_through(p.leaf_index).unwrap();
    let note = log.checkpoint().unwrap();
    let cp = tv_tlog::policy::verify_checkpoint(&note, &log_keys(), tv_tlog::policy::Policy::Both)
        .unwrap();
    let size = cp.checkpoint().size;
    let (entry, incl) = log.with_tree(|t| {
        (
            t.entry(p.leaf_index).unwrap(),
            t.prove_inclusion(size, p.leaf_index).unwrap(),
        )
    });
    tv_tlog::merkle::verify_inclusion(
        &incl,
        size,
        cp.checkpoint().root,
        p.leaf_index,
        tv_tlog::merkle::leaf_hash(&entry),
    )
    .unwrap();
    let Leaf::Record(r) = Leaf::parse(&entry).unwrap() else {
        panic!("span proof points at a block leaf")
    };
    assert_eq!(r.span_count as u64, p.span_count);
    let c = tv_tlog::commit::commitment_of(&p.fields);
    tv_tlog::commit::verify_span_path(&p.path, p.span_count, &r.span_root, p.span_index, &c)
        .unwrap();
}

#[tokio::test]
async fn every_span_is_provable_from_the_head_from_blocks_and_after_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let kr = keyring(d.path());
    let t = TenantId::parse("acme").unwrap();
    let trace = [7u8; 16];
    let store = Store::open(cfg(d.path()), kr.clone()).unwrap();
    for i in 0..5 {
        store
            .append(batch(
                "acme",
                request("svc", trace, 3 + i, &format!("m{i}")),
            ))
            .await
            .unwrap();
        store
            .append(batch("globex", request("svc", trace, 2, "other")))
            .await
            .unwrap();
    }
    let id = TraceId::from_bytes(&trace).unwrap();
    let none = |_: &str, _: &[u8]| false;
    let head = store.span_proofs(&t, id, &none).unwrap();
    assert_eq!(head.len(), 3 + 4 + 5 + 6 + 7);
    for p in &head {
        check_proof(&store, p);
    }
    store.flush().await.unwrap();
    assert_eq!(store.stats().head_records, 0);
    let sealed = store.span_proofs(&t, id, &none).unwrap();
    assert_eq!(sealed.len(), head.len());
    for p in &sealed {
        check_proof(&store, p);
    }
    // The same spans, the same commitments: sealing re-derives exactly what was committed.
    let key = |p: &tv_store::prove::SpanProof| (p.leaf_index, p.span_index);
    let mut a: Vec<_> = head
        .iter()
        .map(|p| (key(p), p.path.iter().map(|h| h.0).collect::<Vec<_>>()))
        .collect();
    let mut b: Vec<_> = sealed
        .iter()
        .map(|p| (key(p), p.path.iter().map(|h| h.0).collect::<Vec<_>>()))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Withholding keeps the proof valid and hides the value.
    let hidden = store
        .span_proofs(&t, id, &|n: &str, _: &[u8]| n == "attributes/note")
        .unwrap();
    for p in &hidden {
        check_proof(&store, p);
        assert!(
            p.fields
                .iter()
                .any(|f| matches!(f, tv_tlog::commit::FieldOpening::Withheld { .. }))
        );
    }
    let size = store.log().unwrap().len();
    // 10 record leaves and 2 block leaves (one per tenant).
    assert_eq!(size, 12);
    store.shutdown();
    drop(store);
    let store = Store::open(cfg(d.path()), kr).unwrap();
    assert_eq!(store.log().unwrap().len(), size);
    for p in store.span_proofs(&t, id, &none).unwrap() {
        check_proof(&store, &p);
    }
}

#[tokio::test]
async fn a_crash_before_the_log_flush_re_derives_the_same_leaves() {
    let d = tempfile::tempdir().unwrap();
    let kr = keyring(d.path());
    let t = TenantId::parse("acme").unwrap();
    let mut c = cfg(d.path());
    // No timed flushes: the leaves exist only in memory when the "crash" happens.
    c.log.as_mut().unwrap().checkpoint_interval = Duration::from_secs(3600);
    let store = Store::open(c.clone(), kr.clone()).unwrap();
    for i in 0..4 {
        store
            .append(batch("acme", request("svc", [9; 16], 2, &format!("c{i}"))))
            .await
            .unwrap();
    }
    let before = store.log().unwrap().len();
    assert_eq!(before, 4);
    assert_eq!(store.log().unwrap().durable_size(), 0);
    // Simulate the crash: copy the directory as it is on disk now.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&d.path().join("data"), &copy.path().join("data"));
    copy_dir(&d.path().join("keys"), &copy.path().join("keys"));
    store.shutdown();
    let durable_after_clean_stop = store.log().unwrap().durable_size();
    drop(store);
    let kr2 = keyring(copy.path());
    let recovered = Store::open(cfg(copy.path()), kr2).unwrap();
    // Four record leaves re-derived, one block leaf from sealing at recovery.
    assert_eq!(recovered.log().unwrap().len(), 5);
    assert_eq!(durable_after_clean_stop, 5);
    let id = TraceId::from_bytes(&[9; 16]).unwrap();
    let proofs = recovered
        .span_proofs(&t, id, &|_: &str, _: &[u8]| false)
        .unwrap();
    assert_eq!(proofs.len(), 8);
    for p in &proofs {
        check_proof(&recovered, p);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
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

#[tokio::test]
async fn sealed_segments_leave_the_wal_once_their_block_leaves_are_durable() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    c.segment_max_bytes = 1; // every group closes its segment
    let store = Store::open(c, keyring(d.path())).unwrap();
    for i in 0..5 {
        store
            .append(batch("acme", request("svc", [3; 16], 2, &format!("s{i}"))))
            .await
            .unwrap();
    }
    // The sealer deletes each segment after the log's next flush (every 100 ms here).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal_files(d.path()).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            wal_files(d.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = store.log().unwrap();
    assert_eq!(log.durable_size(), log.len());
    assert_eq!(count(&store, "acme", [3; 16]), 10);
}

/// Two processes writing one log (the same node id twice, or a copy of a data directory on
/// shared storage): the second one's checkpoint is refused, the first goes on, and the history
/// stays one chain; a history in the old single-file format is moved to one object per
/// checkpoint with the chain intact.
#[test]
fn a_second_writer_of_a_log_is_fenced_and_the_history_is_a_chain() {
    use tv_store::logdir::{history_entries, parse_history_key};
    use tv_store::objects::{LocalDir, SharedObjects};
    let t = tempfile::tempdir().unwrap();
    let objects: SharedObjects = Arc::new(LocalDir::new(t.path()));
    let a = tv_store::TxLog::open_in(objects.clone(), "log/", log_config()).unwrap();
    a.push(b"a0".to_vec());
    a.flush().unwrap();
    let b = tv_store::TxLog::open_in(objects.clone(), "log/", log_config()).unwrap();
    a.push(b"a1".to_vec());
    a.flush().unwrap();
    b.push(b"b1".to_vec());
    let e = b.flush().unwrap_err();
    assert!(matches!(e, tv_store::StoreError::Fenced(_)), "{e}");
    assert!(e.to_string().contains("another process"), "{e}");
    a.push(b"a2".to_vec());
    assert_eq!(a.flush().unwrap(), 3);
    drop((a, b));

    let chain = |objects: &SharedObjects| -> Vec<(u64, Option<u64>)> {
        history_entries(&**objects, "log/")
            .unwrap()
            .iter()
            .map(|(k, _)| parse_history_key(k).unwrap())
            .collect()
    };
    assert_eq!(chain(&objects), [(1, None), (2, Some(1)), (3, Some(2))]);

    // The old format: length-prefixed notes in one `checkpoints` file.
    let mut legacy = Vec::new();
    for (k, note) in history_entries(&*objects, "log/").unwrap() {
        legacy.extend_from_slice(&(note.len() as u32).to_be_bytes());
        legacy.extend_from_slice(&note);
        objects.delete(&k).unwrap();
    }
    std::fs::write(t.path().join("log/checkpoints"), &legacy).unwrap();
    let a = tv_store::TxLog::open_in(objects.clone(), "log/", log_config()).unwrap();
    assert!(!t.path().join("log/checkpoints").exists());
    assert_eq!(chain(&objects).len(), 3);
    a.push(b"a3".to_vec());
    assert_eq!(a.flush().unwrap(), 4);
    assert_eq!(chain(&objects).last(), Some(&(4, Some(3))));
}

/// A scan over blocks in a bucket reads several chunks at once (`BlockMeta::for_chunks`): it
/// still sees every span in the order a scan of the same data in a local directory sees them,
/// and stops where it is told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_over_a_bucket_sees_every_chunk_in_order_and_stops_when_told() {
    let Some(sw) = tv_testkit::Seaweed::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let mut rc = tv_store::objects::RemoteConfig::new(sw.url("scan"));
    rc.from_env = false;
    rc.options = sw.options();
    let bucket: tv_store::objects::SharedObjects =
        Arc::new(tv_store::objects::Remote::open(&rc).unwrap());
    let open = |sub: &str, objects: Option<tv_store::objects::SharedObjects>| {
        let mut c = cfg(&t.path().join(sub));
        // Small chunks: the block holds many more than are fetched at once.
        c.chunk_target_bytes = 2048;
        c.objects = objects;
        Store::open(c, keyring(t.path())).unwrap()
    };
    let (local, remote) = (open("local", None), open("remote", Some(bucket.clone())));
    for i in 0..8u8 {
        let req = request("svc", [i + 1; 16], 50, "scan");
        for st in [&local, &remote] {
            st.append(batch("a", req.clone())).await.unwrap();
        }
    }
    local.flush().await.unwrap();
    remote.flush().await.unwrap();
    let tenant = TenantId::parse("a").unwrap();
    let spans = |st: &Store, stop: usize| {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut chunks = 0;
        st.visit(
            &tenant,
            None,
            None,
            &tv_store::BlockHints::default(),
            &mut |v| match v {
                tv_store::Visit::Span(_, _, s) => {
                    seen.push(s.span_id.clone());
                    seen.len() < stop
                }
                tv_store::Visit::NextChunk => {
                    chunks += 1;
                    true
                }
                _ => true,
            },
        )
        .unwrap();
        (seen, chunks)
    };
    let (all, chunks) = spans(&local, usize::MAX);
    assert_eq!(all.len(), 400);
    assert!(chunks > 2 * tv_store::block::FETCHERS, "{chunks} chunks");
    let (from_bucket, bucket_chunks) = spans(&remote, usize::MAX);
    assert_eq!(bucket_chunks, chunks);
    assert_eq!(from_bucket, all, "the same spans in the same order");
    let (first, _) = spans(&remote, 7);
    assert_eq!(first, all[..7]);
}

/// Verifies a store's data directory with the root key (re-deriving every span commitment).
fn verify_with_keys(dir: &Path, kr: &Arc<Keyring>) -> tv_store::verify::Report {
    tv_store::verify::verify_dir(
        &dir.join("data"),
        &tv_store::verify::Options {
            keys: &log_keys(),
            policy: tv_tlog::policy::Policy::Both,
            pinned: vec![],
            keyring: Some(kr.clone()),
            progress: &|_, _| {},
            audit: None,
        },
    )
}

fn block_files(dir: &Path, tenant: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("data/blocks").join(tenant))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A trace as a reader sees it: (service, span name, note attribute) of every span, sorted.
fn spans_of(store: &Store, tenant: &str, trace: [u8; 16]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rs in store
        .find_trace(&TenantId::parse(tenant).unwrap(), TraceId(trace))
        .unwrap()
        .unwrap_or_default()
    {
        let svc = tv_model::service_name(rs.resource.as_ref())
            .unwrap_or("")
            .to_owned();
        for sp in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            let note = sp
                .attributes
                .iter()
                .find(|kv| kv.key == "note")
                .map(|kv| format!("{:?}", kv.value))
                .unwrap_or_default();
            out.push((svc.clone(), sp.name.clone(), note));
        }
    }
    out.sort();
    out
}

/// Compaction settings for tests: merge any 3 or more blocks now, delete what they replace at once.
fn compact_now() -> tv_store::CompactionConfig {
    tv_store::CompactionConfig {
        min_blocks: 3,
        grace: Duration::ZERO,
        ..Default::default()
    }
}

/// Six small blocks of tenant acme (two traces, one of them in every block) and one of globex.
async fn small_blocks(dir: &Path, kr: &Arc<Keyring>) -> Store {
    let mut c = cfg(dir);
    c.segment_max_bytes = 1; // every append closes its segment: one block each
    c.compaction = None;
    let store = Store::open(c, kr.clone()).unwrap();
    for i in 0..6 {
        store
            .append(batch(
                "acme",
                request(&format!("svc{}", i % 2), [1; 16], 2 + i, &format!("a{i}")),
            ))
            .await
            .unwrap();
        if i % 2 == 0 {
            store
                .append(batch(
                    "acme",
                    request("other", [2; 16], 3, &format!("b{i}")),
                ))
                .await
                .unwrap();
        }
    }
    store
        .append(batch("globex", request("svc", [1; 16], 4, "g")))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
}

#[tokio::test]
async fn compaction_merges_small_blocks_and_every_span_stays_readable_provable_and_verified() {
    let d = tempfile::tempdir().unwrap();
    let kr = keyring(d.path());
    let store = small_blocks(d.path(), &kr).await;
    let acme = TenantId::parse("acme").unwrap();
    assert_eq!(block_files(d.path(), "acme").len(), 9);
    let before = (
        spans_of(&store, "acme", [1; 16]),
        spans_of(&store, "acme", [2; 16]),
    );
    assert_eq!(before.0.len(), 2 + 3 + 4 + 5 + 6 + 7);
    assert_eq!(before.1.len(), 9);
    let search = |store: &Store| {
        let q = SearchQuery {
            tags: vec![("service.name".into(), "other".into())],
            limit: 10,
            ..Default::default()
        };
        store.search(&acme, &q).unwrap().len()
    };
    assert_eq!(search(&store), 1);

    let report = store.compact(Some(&compact_now())).unwrap();
    assert_eq!((report.merges, report.replaced), (1, 9), "{report:?}");
    assert_eq!(report.spans, 27 + 9);
    // One block now; globex's single block is left alone.
    assert_eq!(block_files(d.path(), "acme").len(), 1);
    assert_eq!(block_files(d.path(), "globex").len(), 1);
    assert_eq!(
        (
            spans_of(&store, "acme", [1; 16]),
            spans_of(&store, "acme", [2; 16])
        ),
        before
    );
    assert_eq!(search(&store), 1);
    assert_eq!(store.tag_values(&acme, "service.name").unwrap().len(), 3);
    // Receipts still open every span from the merged block against the same record leaves.
    let none = |_: &str, _: &[u8]| false;
    let proofs = store.span_proofs(&acme, TraceId([1; 16]), &none).unwrap();
    assert_eq!(proofs.len(), 27);
    for p in &proofs {
        check_proof(&store, p);
    }

    // New data after the merge, then a second merge that takes the merged block with it.
    for i in 0..3 {
        store
            .append(batch("acme", request("late", [3; 16], 2, &format!("l{i}"))))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    assert_eq!(block_files(d.path(), "acme").len(), 4);
    let report = store.compact(Some(&compact_now())).unwrap();
    assert_eq!((report.merges, report.replaced), (1, 4), "{report:?}");
    assert_eq!(block_files(d.path(), "acme").len(), 1);
    assert_eq!(spans_of(&store, "acme", [3; 16]).len(), 6);
    store.shutdown();
    drop(store);

    // After a restart: the same spans, and the log accounts for every one of them.
    let store = Store::open(cfg(d.path()), kr.clone()).unwrap();
    assert_eq!(spans_of(&store, "acme", [1; 16]), before.0);
    assert_eq!(spans_of(&store, "acme", [2; 16]), before.1);
    store.shutdown();
    drop(store);
    let r = verify_with_keys(d.path(), &kr);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.spans, 27 + 9 + 6 + 4, "every span once");
    assert_eq!(r.blocks, 2);
    // 9 + 3 blocks sealed from the WAL and the first merged block: all merged.
    assert_eq!(r.compacted.len(), 13, "{:?}", r.compacted);

    // Deleting the merged block is tampering: its entry and its records are missing.
    std::fs::remove_file(&block_files(d.path(), "acme")[0]).unwrap();
    let r = verify_with_keys(d.path(), &kr);
    let text: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter().any(|p| p.contains("[missing block]")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|p| p.contains("[missing records]")),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_stop_in_the_middle_of_a_merge_is_finished_or_undone_at_the_next_start() {
    let d = tempfile::tempdir().unwrap();
    let kr = keyring(d.path());
    let store = small_blocks(d.path(), &kr).await;
    let before = spans_of(&store, "acme", [1; 16]);
    // Stop 1, before the merge: a copy of the directory as it is.
    let unmerged = tempfile::tempdir().unwrap();
    copy_dir(&d.path().join("data"), &unmerged.path().join("data"));
    copy_dir(&d.path().join("keys"), &unmerged.path().join("keys"));
    let mut slow = compact_now();
    slow.grace = Duration::from_secs(3600);
    let report = store.compact(Some(&slow)).unwrap();
    assert_eq!(report.merges, 1);
    let merged: Vec<_> = block_files(d.path(), "acme")
        .into_iter()
        .filter(|p| {
            !block_files(unmerged.path(), "acme")
                .iter()
                .any(|u| u.file_name() == p.file_name())
        })
        .collect();
    assert_eq!(merged.len(), 1);
    // Stop 2, after the merge was logged, before the replaced blocks were deleted (they wait
    // for their grace period): a copy now.
    let logged = tempfile::tempdir().unwrap();
    copy_dir(&d.path().join("data"), &logged.path().join("data"));
    copy_dir(&d.path().join("keys"), &logged.path().join("keys"));
    assert_eq!(block_files(logged.path(), "acme").len(), 10);
    // Stop 1': the merged block written, its leaves not logged: the copy before, plus the block.
    std::fs::copy(
        &merged[0],
        unmerged
            .path()
            .join("data/blocks/acme")
            .join(merged[0].file_name().unwrap()),
    )
    .unwrap();
    store.shutdown();
    drop(store);
    // A clean stop deletes what the merge replaced.
    assert_eq!(block_files(d.path(), "acme").len(), 1);

    for (what, dir, blocks) in [("unlogged", &unmerged, 9), ("logged", &logged, 1)] {
        let kr = keyring(dir.path());
        let r = verify_with_keys(dir.path(), &kr);
        if what == "unlogged" {
            // The merged block's bytes are in no log entry: found, not trusted.
            assert!(
                r.problems.iter().any(|p| p.check == "block digest"),
                "{what}: {:?}",
                r.problems
            );
        } else {
            assert!(r.ok(), "{what}: {:?}", r.problems);
            assert!(
                r.warnings
                    .iter()
                    .any(|w| w.contains("replaced by compaction")),
                "{what}: {:?}",
                r.warnings
            );
        }
        let store = Store::open(cfg(dir.path()), kr.clone()).unwrap();
        assert_eq!(block_files(dir.path(), "acme").len(), blocks, "{what}");
        assert_eq!(
            spans_of(&store, "acme", [1; 16]),
            before,
            "{what}: every span once"
        );
        store.shutdown();
        drop(store);
        let r = verify_with_keys(dir.path(), &kr);
        assert!(r.ok(), "{what}: {:?}", r.problems);
        assert!(r.warnings.is_empty(), "{what}: {:?}", r.warnings);
        assert_eq!(r.spans, 27 + 9 + 4, "{what}");
    }
}
