//! Where a data directory's block bytes go: each chunk field and each attribute key's column,
//! compressed alone at the blocks' zstd level, per span (issue 22, bytes/span at rest).
//!
//! `cargo run --release -p tv-store --example chunk_sizes -- DATA_DIR [ZSTD_LEVEL]`
//!
//! DATA_DIR is a stopped server's data directory (the root key in `DATA_DIR/keys/root.key`).
//! The sizes alone add up to more than the chunk compressed whole; the gap is what zstd finds
//! across fields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use tv_model::TenantId;
use tv_store::block::BlockMeta;
use tv_store::format::Chunk;
use tv_store::objects::{LocalDir, SharedObjects};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "tvb") {
            out.push(p);
        }
    }
}

fn z(b: &[u8], level: i32) -> usize {
    zstd::bulk::compress(b, level).expect("compress").len()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: chunk_sizes DATA_DIR [ZSTD_LEVEL]"),
    );
    let level: i32 = args.next().map_or(3, |l| l.parse().expect("a zstd level"));
    let keys = dir.join("keys");
    let (root, _) = tv_crypto::FileRootKey::load_or_create(&keys.join("root.key")).expect("root");
    let keyring = tv_crypto::Keyring::open(&keys, Arc::new(root)).expect("keyring");
    let objects: SharedObjects = Arc::new(LocalDir::new(&dir));
    let mut blocks = Vec::new();
    files(&dir.join("blocks"), &mut blocks);
    let (mut spans, mut file_bytes, mut whole, mut index_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut fields: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut add = |name: &str, raw: &[u8]| {
        let e = fields.entry(name.to_owned()).or_default();
        e.0 += raw.len() as u64;
        e.1 += z(raw, level) as u64;
    };
    for p in &blocks {
        let tenant = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| TenantId::parse(&n.to_string_lossy()).ok())
            .expect("a block under its tenant's directory");
        let key = p.strip_prefix(&dir).expect("under dir").to_string_lossy();
        let meta = BlockMeta::load(&objects, &key, &tenant, &keyring).expect("block loads");
        file_bytes += std::fs::metadata(p).expect("stat").len();
        let f = meta.open_file().expect("open");
        let chunk_total: u64 = meta.index.chunks.iter().map(|c| c.len as u64).sum();
        index_bytes += std::fs::metadata(p).expect("stat").len() - chunk_total;
        for i in 0..meta.index.chunks.len() {
            let c: Chunk = meta.read_chunk(&f, i).expect("chunk");
            spans += c.record.len() as u64;
            whole += z(&c.encode_to_vec(), level) as u64;
            for (name, part) in tv_store::block::chunk_parts(c) {
                add(&name, &part.encode_to_vec());
            }
        }
    }
    let per = |b: u64| b as f64 / spans.max(1) as f64;
    println!(
        "{} blocks, {spans} spans, zstd {level}: files {:.1} bytes/span, chunks compressed whole {:.1}, index+header {:.1}",
        blocks.len(),
        per(file_bytes),
        per(whole),
        per(index_bytes)
    );
    let mut rows: Vec<_> = fields.into_iter().collect();
    rows.sort_by_key(|(_, (_, c))| std::cmp::Reverse(*c));
    let alone: u64 = rows.iter().map(|(_, (_, c))| c).sum();
    println!("{:<40} {:>10} {:>10}", "field", "raw B/span", "zstd alone");
    for (name, (raw, c)) in rows {
        println!("{name:<40} {:>10.1} {:>10.1}", per(raw), per(c));
    }
    println!(
        "{:<40} {:>10} {:>10.1}",
        "sum of fields alone",
        "",
        per(alone)
    );
}
