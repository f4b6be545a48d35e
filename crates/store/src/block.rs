//! Sealed blocks: immutable, zstd-compressed, AES-256-GCM encrypted span files with an encrypted
//! index, one per (tenant, WAL segment).
//!
//! ```text
//! "TVBLK\0" | version u16 LE | header len u32 LE | BlockHeader (plaintext: tenant, id, wrapped key)
//! chunk 0 .. chunk n-1      each AES-256-GCM(ChunkParts), counter = chunk number: the columnar
//!                           Chunk (see `columns.rs`), each field and attribute column its own
//!                           zstd frame (format 2: AES-256-GCM(zstd(Chunk)), still read)
//! index                     AES-256-GCM(zstd(BlockIndex)), counter = u64::MAX
//! footer                    index offset u64 LE | index len u32 LE | "TVBE"
//! ```
//!
//! Associated data binds tenant, block id and counter, so chunks cannot be swapped between blocks
//! or tenants. Spans inside a block are sorted by trace id; the index lists each chunk's trace id
//! range and every trace id prefix, so a trace lookup opens only the chunks that can hold it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use prost::Message;
use tv_crypto::{DataKey, Keyring, WrappedDataKey, fsio};
use tv_model::TenantId;
use tv_model::otlp::{AnyValue, ResourceSpans, ScopeSpans, Span};

use crate::columns::{self, Row};
use crate::format::{
    BlockHeader, BlockIndex, BlockRecord, Chunk, ChunkMeta, ChunkParts, TagValues,
};
use crate::objects::{ObjectError, Objects, PutMode, SharedObjects};
use crate::{StoreError, now_unix_nanos};

pub const MAGIC: &[u8; 6] = b"TVBLK\0";
/// 2: rows carry their committed record; the index lists the records (issue 3).
/// 3: each chunk is a [`ChunkParts`], its fields compressed apart (issue 22).
pub const VERSION: u16 = 3;
/// The oldest block format this build reads.
pub const OLDEST_VERSION: u16 = 2;
const FOOTER_LEN: usize = 16;
const FOOTER_MAGIC: &[u8; 4] = b"TVBE";
const INDEX_COUNTER: u64 = u64::MAX;
/// Most bytes a chunk may decompress to: a chunk whose frames claim more is refused.
const MAX_CHUNK_BYTES: usize = 1024 * 1024 * 1024;
/// Distinct values kept per tag key in a block index.
pub const MAX_TAG_VALUES: usize = 64;
/// Longest tag value kept in a block index.
pub const MAX_TAG_VALUE_LEN: usize = 128;

/// A block's object key: `blocks/<tenant>/<id>.tvb` (its path under a local data directory).
pub fn block_key(tenant: &TenantId, id: u64) -> String {
    format!("blocks/{}/{id:016x}.tvb", tenant.as_str())
}

/// The tenant and block id of a block's key; `None` for any other key.
pub fn parse_block_key(key: &str) -> Option<(TenantId, u64)> {
    let rest = key.strip_prefix("blocks/")?;
    let (tenant, name) = rest.split_once('/')?;
    let hex = name.strip_suffix(".tvb")?;
    if hex.len() != 16 {
        return None;
    }
    let id = u64::from_str_radix(hex, 16).ok()?;
    Some((TenantId::parse(tenant).ok()?, id))
}

/// The top bit of a block id marks a block written by compaction (its other bits: a number that
/// grows with each compaction, microseconds since the epoch when it was made); ids without it
/// are WAL segment numbers.
pub const COMPACTED_BIT: u64 = 1 << 63;

/// Whether a block id is a compacted block's.
pub fn is_compacted(id: u64) -> bool {
    id & COMPACTED_BIT != 0
}

/// Ranged reads of one block in flight at once in a scan over a bucket.
pub const FETCHERS: usize = 4;

/// Reads bytes `range` of a block object.
fn read_range(
    objects: &dyn Objects,
    key: &str,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, StoreError> {
    Ok(objects.get_range(key, range)?)
}

fn aad(tenant: &TenantId, block: u64, counter: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(5 + tenant.as_str().len() + 17);
    a.extend_from_slice(b"tvblk");
    a.extend_from_slice(tenant.as_str().as_bytes());
    a.push(0);
    a.extend_from_slice(&block.to_le_bytes());
    a.extend_from_slice(&counter.to_le_bytes());
    a
}

/// One span on its way into a block.
pub struct SpanEntry {
    pub trace_id: [u8; 16],
    pub start: u64,
    pub end: u64,
    pub resource: u32,
    pub scope: u32,
    pub record: u32,
    pub span: Vec<u8>,
}

/// What sealing wrote, for the block's log leaf.
#[derive(Debug, Clone)]
pub struct SealedBlock {
    pub size: u64,
    pub file_sha256: [u8; 32],
    pub key_commitment: [u8; 32],
    /// (record leaf index, span count) in block order.
    pub records: Vec<(u64, u32)>,
    pub spans: u64,
}

impl SealedBlock {
    /// The encoded log leaf of this block as block `block_id` (sealed from the WAL or merged).
    pub fn leaf(&self, block_id: u64) -> Vec<u8> {
        tv_tlog::leaf::Leaf::Block(tv_tlog::leaf::BlockLeaf {
            block_id,
            sealed_unix_nanos: now_unix_nanos(),
            file_sha256: self.file_sha256,
            key_commitment: self.key_commitment,
            records_sha256: tv_tlog::leaf::records_digest(&self.records),
            record_count: self.records.len() as u32,
            span_count: self.spans,
            first_record: self.records.iter().map(|r| r.0).min().unwrap_or(0),
        })
        .encode()
    }
}

/// Hashes everything written through it.
struct HashingWriter<W: Write> {
    inner: W,
    ctx: aws_lc_rs::digest::Context,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The encoded form of a resource (with its schema url, without its spans): how resources are
/// stored once per chunk and compared. Byte-identical to encoding a `ResourceSpans` with no scope
/// spans (prost writes fields in tag order and skips empty ones), without cloning the resource.
pub(crate) fn resource_key(rs: &ResourceSpans) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = &rs.resource {
        prost::encoding::message::encode(1, r, &mut out);
    }
    if !rs.schema_url.is_empty() {
        prost::encoding::string::encode(3, &rs.schema_url, &mut out);
    }
    out
}

/// The encoded form of an instrumentation scope (with its schema url, without its spans).
pub(crate) fn scope_key(ss: &ScopeSpans) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(s) = &ss.scope {
        prost::encoding::message::encode(1, s, &mut out);
    }
    if !ss.schema_url.is_empty() {
        prost::encoding::string::encode(3, &ss.schema_url, &mut out);
    }
    out
}

#[cfg(test)]
mod prefix_tests {
    use super::TracePrefixes;

    fn spread(n: u64, salt: u64) -> Vec<u64> {
        // Distinct, well-spread values (splitmix64 of a counter).
        let mut v: Vec<u64> = (0..n)
            .map(|i| {
                let mut z = (i ^ salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn every_prefix_is_found_and_few_others_are() {
        for n in [0, 1, 255, 256, 5_000, 40_000] {
            let held = spread(n, 1);
            let p = TracePrefixes::new(held.clone());
            assert_eq!(p.len(), held.len());
            assert!(held.iter().all(|&x| p.may_contain(x)), "n = {n}");
            let others = spread(100_000, 2);
            let false_hits = others
                .iter()
                .filter(|x| held.binary_search(x).is_err() && p.may_contain(**x))
                .count();
            // 16-bit fingerprints: about 1.5 in 100,000.
            assert!(
                false_hits <= 10,
                "n = {n}: {false_hits} false hits in 100,000"
            );
        }
    }

    #[test]
    fn many_prefixes_take_far_less_than_eight_bytes_each() {
        let held = spread(40_000, 3);
        match TracePrefixes::new(held) {
            TracePrefixes::Filter { filter, count } => {
                let bytes = filter.fingerprints.len() * 2;
                assert_eq!(count, 40_000);
                assert!(bytes < 40_000 * 3, "{bytes} bytes for 40,000 prefixes");
            }
            TracePrefixes::Exact(_) => panic!("40,000 prefixes are kept as a filter"),
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;
    use tv_model::otlp::{InstrumentationScope, KeyValue, Resource};

    #[test]
    fn keys_are_the_encoding_of_the_message_without_its_children() {
        for (res, url) in [
            (None, ""),
            (Some(Resource::default()), ""),
            (
                Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        ..Default::default()
                    }],
                    dropped_attributes_count: 3,
                    ..Default::default()
                }),
                "https://opentelemetry.io/schemas/1.25.0",
            ),
        ] {
            let rs = ResourceSpans {
                resource: res.clone(),
                scope_spans: vec![ScopeSpans::default()],
                schema_url: url.into(),
            };
            let want = ResourceSpans {
                scope_spans: vec![],
                ..rs.clone()
            }
            .encode_to_vec();
            assert_eq!(resource_key(&rs), want);
            let ss = ScopeSpans {
                scope: res.map(|_| InstrumentationScope {
                    name: "lib".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                spans: vec![Span::default()],
                schema_url: url.into(),
            };
            let want = ScopeSpans {
                spans: vec![],
                ..ss.clone()
            }
            .encode_to_vec();
            assert_eq!(scope_key(&ss), want);
        }
    }
}

/// Distinct byte strings, numbered in order of first appearance.
#[derive(Default)]
struct Interner {
    items: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, u32>,
}

impl Interner {
    /// The number of `key`, and whether it is new.
    fn intern(&mut self, key: Vec<u8>) -> (u32, bool) {
        if let Some(i) = self.ids.get(key.as_slice()) {
            return (*i, false);
        }
        let i = self.items.len() as u32;
        self.items.push(key.clone());
        self.ids.insert(key, i);
        (i, true)
    }
}

/// Most (service, operation, kind) triples one block index keeps.
const MAX_OPERATIONS: usize = 10_000;

/// Collects spans of one tenant, interning resources and scopes.
#[derive(Default)]
pub struct BlockBuilder {
    resources: Interner,
    /// The service name of each interned resource.
    resource_services: Vec<String>,
    scopes: Interner,
    entries: Vec<SpanEntry>,
    records: Vec<BlockRecord>,
    services: BTreeSet<String>,
    names: BTreeSet<String>,
    operations: BTreeSet<(String, String, i32)>,
    /// Values by (scope, key); see [`crate::query::TagScope`].
    tags: BTreeMap<(u32, String), (BTreeSet<String>, bool)>,
    /// Blocks whose spans were added whole (compaction).
    replaces: Vec<u64>,
    /// The format to write (None: [`VERSION`]); see [`BlockBuilder::write_format`].
    format: Option<u16>,
}

fn add_tag(
    tags: &mut BTreeMap<(u32, String), (BTreeSet<String>, bool)>,
    scope: crate::query::TagScope,
    key: &str,
    value: &AnyValue,
) {
    if key.len() > MAX_TAG_VALUE_LEN {
        return;
    }
    let k = (scope as u32, key.to_owned());
    let e = tags.entry(k).or_default();
    // Once a key has its fill of values, skip rendering further ones.
    if e.1 && e.0.len() >= MAX_TAG_VALUES {
        return;
    }
    let value = tv_model::any_value_to_string(value);
    if value.len() > MAX_TAG_VALUE_LEN || (e.0.len() >= MAX_TAG_VALUES && !e.0.contains(&value)) {
        e.1 = true;
    } else if !e.0.contains(&value) {
        e.0.insert(value);
    }
}

impl BlockBuilder {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the block in an older format ([`OLDEST_VERSION`] up to [`VERSION`]), as an earlier
    /// release did: for tests that this build still reads what those wrote.
    #[doc(hidden)]
    pub fn write_format(mut self, version: u16) -> Self {
        assert!((OLDEST_VERSION..=VERSION).contains(&version));
        self.format = Some(version);
        self
    }

    pub fn span_count(&self) -> usize {
        self.entries.len()
    }

    /// Adds every span of a committed record (its log leaf, its secret and its decoded request).
    pub fn add_record(
        &mut self,
        leaf_index: u64,
        secret: [u8; 32],
        req: tv_model::otlp::ExportTraceServiceRequest,
    ) {
        let record = self.records.len() as u32;
        let before = self.entries.len();
        for rs in req.resource_spans {
            let (ridx, new) = self.resources.intern(resource_key(&rs));
            if new {
                self.note_resource(rs.resource.as_ref());
            }
            for ss in rs.scope_spans {
                let (sidx, new) = self.scopes.intern(scope_key(&ss));
                if new {
                    self.note_scope(ss.scope.as_ref());
                }
                for span in ss.spans {
                    self.add_span(ridx, sidx, record, span);
                }
            }
        }
        self.records.push(BlockRecord {
            leaf_index,
            secret: secret.to_vec(),
            span_count: (self.entries.len() - before) as u32,
        });
    }

    /// Adds every span of a sealed block with its records, in the block's order (compaction):
    /// each record's spans keep their canonical order, so the merged block re-derives every
    /// record leaf as the block it replaces did.
    pub fn add_block(&mut self, meta: &BlockMeta) -> Result<(), StoreError> {
        let base = self.records.len() as u32;
        self.records.extend(meta.index.records.iter().cloned());
        self.replaces.push(meta.id);
        let file = meta.open_file()?;
        let all: Vec<usize> = (0..meta.index.chunks.len()).collect();
        let bad = |e: prost::DecodeError| StoreError::Decode(format!("{}: {e}", meta.key));
        meta.for_chunks(&file, &all, &mut |_, chunk| {
            let mut rmap = Vec::with_capacity(chunk.resources.len());
            for r in &chunk.resources {
                let (i, new) = self.resources.intern(r.clone());
                if new {
                    let rs = ResourceSpans::decode(r.as_slice()).map_err(bad)?;
                    self.note_resource(rs.resource.as_ref());
                }
                rmap.push(i);
            }
            let mut smap = Vec::with_capacity(chunk.scopes.len());
            for sc in &chunk.scopes {
                let (i, new) = self.scopes.intern(sc.clone());
                if new {
                    let ss = ScopeSpans::decode(sc.as_slice()).map_err(bad)?;
                    self.note_scope(ss.scope.as_ref());
                }
                smap.push(i);
            }
            for row in columns::decode(&chunk, |_| true)? {
                let (Some(&r), Some(&sc)) = (
                    rmap.get(row.resource as usize),
                    smap.get(row.scope as usize),
                ) else {
                    return Err(StoreError::Decode(format!(
                        "{}: a row names a resource or scope its chunk does not have",
                        meta.key
                    )));
                };
                self.add_span(r, sc, base + row.record, row.span);
            }
            Ok(true)
        })
    }

    /// Indexes a resource seen for the first time (its service and attributes).
    fn note_resource(&mut self, resource: Option<&tv_model::otlp::Resource>) {
        let service = tv_model::service_name(resource).unwrap_or("").to_owned();
        if !service.is_empty() {
            self.services.insert(service.clone());
        }
        self.resource_services.push(service);
        for kv in resource.iter().flat_map(|r| &r.attributes) {
            if let Some(v) = &kv.value {
                add_tag(&mut self.tags, crate::query::TagScope::Resource, &kv.key, v);
            }
        }
    }

    /// Indexes an instrumentation scope seen for the first time (its attributes).
    fn note_scope(&mut self, scope: Option<&tv_model::otlp::InstrumentationScope>) {
        for kv in scope.iter().flat_map(|s| &s.attributes) {
            if let Some(v) = &kv.value {
                add_tag(
                    &mut self.tags,
                    crate::query::TagScope::Instrumentation,
                    &kv.key,
                    v,
                );
            }
        }
    }

    fn add_span(&mut self, resource: u32, scope: u32, record: u32, span: Span) {
        let Ok(trace_id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) else {
            return; // validation guarantees 16 bytes; never store an unaddressable span
        };
        if self.operations.len() < MAX_OPERATIONS {
            let service = self.resource_services[resource as usize].clone();
            self.operations
                .insert((service, span.name.clone(), span.kind));
        }
        if self.names.len() < 10_000 {
            self.names.insert(span.name.clone());
        }
        use crate::query::TagScope;
        for kv in &span.attributes {
            if let Some(v) = &kv.value {
                add_tag(&mut self.tags, TagScope::Span, &kv.key, v);
            }
        }
        for (scope, attrs) in span
            .events
            .iter()
            .map(|e| (TagScope::Event, &e.attributes))
            .chain(span.links.iter().map(|l| (TagScope::Link, &l.attributes)))
        {
            for kv in attrs {
                if let Some(v) = &kv.value {
                    add_tag(&mut self.tags, scope, &kv.key, v);
                }
            }
        }
        self.entries.push(SpanEntry {
            trace_id,
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
            resource,
            scope,
            record,
            span: span.encode_to_vec(),
        });
    }

    /// Sorts, chunks, compresses, encrypts and durably writes the block into a file under
    /// `staging`, then creates its object (create-only: an existing object with that key is an
    /// [`ObjectError::AlreadyExists`] error). The staged file is removed either way.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        self,
        staging: &Path,
        objects: &dyn Objects,
        tenant: &TenantId,
        block_id: u64,
        keyring: &Keyring,
        chunk_target: usize,
        zstd_level: i32,
    ) -> Result<SealedBlock, StoreError> {
        fsio::create_private_dir(staging).map_err(|e| StoreError::io(staging, e))?;
        let tmp = staging.join(format!("{}-{block_id:016x}.tvb.tmp", tenant.as_str()));
        let res = self
            .write_inner(&tmp, tenant, block_id, keyring, chunk_target, zstd_level)
            .and_then(|sealed| {
                objects.put_file(&block_key(tenant, block_id), &tmp, PutMode::Create)?;
                Ok(sealed)
            });
        let _ = std::fs::remove_file(&tmp);
        res
    }

    fn write_inner(
        mut self,
        tmp: &Path,
        tenant: &TenantId,
        block_id: u64,
        keyring: &Keyring,
        chunk_target: usize,
        zstd_level: i32,
    ) -> Result<SealedBlock, StoreError> {
        // Stable: entries arrive record after record, each in request order, so every record's
        // rows end up in its canonical order (see `commit.rs`).
        self.entries.sort_by_key(|e| (e.trace_id, e.start));
        let records: Vec<(u64, u32)> = self
            .records
            .iter()
            .map(|r| (r.leaf_index, r.span_count))
            .collect();
        let (key, wrapped) = keyring.new_data_key(tenant).map_err(StoreError::Crypto)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)
            .map_err(|e| StoreError::io(tmp, e))?;
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        };
        let io = |e| StoreError::io(tmp, e);
        let format = self.format.unwrap_or(VERSION);
        // One compression context for every frame of the block.
        let mut z = zstd::bulk::Compressor::new(zstd_level).map_err(io)?;

        let mut chunks_meta: Vec<ChunkMeta> = Vec::new();
        let mut prefixes: Vec<u64> = Vec::new();
        let mut min_start = u64::MAX;
        let mut max_end = 0u64;
        let count = self.entries.len() as u64;

        // Chunk boundaries: roughly chunk_target bytes of span data each.
        let mut bounds = Vec::new();
        let mut acc = 0usize;
        let mut begin = 0usize;
        for (i, e) in self.entries.iter().enumerate() {
            acc += e.span.len() + 24;
            if acc >= chunk_target {
                bounds.push(begin..i + 1);
                begin = i + 1;
                acc = 0;
            }
        }
        if begin < self.entries.len() {
            bounds.push(begin..self.entries.len());
        }
        let header = BlockHeader {
            tenant: tenant.to_string(),
            block_id,
            wrapped_key: wrapped.to_bytes().to_vec(),
            created_unix_nanos: now_unix_nanos(),
            chunk_count: bounds.len() as u32,
        }
        .encode_to_vec();
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&format.to_le_bytes()).map_err(io)?;
        w.write_all(&(header.len() as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        let mut offset = (MAGIC.len() + 2 + 4 + header.len()) as u64;

        let mut entries = std::mem::take(&mut self.entries).into_iter();
        for (ci, range) in bounds.iter().enumerate() {
            let mut resources: Vec<Vec<u8>> = Vec::new();
            let mut scopes: Vec<Vec<u8>> = Vec::new();
            let mut rows = Vec::with_capacity(range.len());
            let mut rmap: HashMap<u32, u32> = HashMap::new();
            let mut smap: HashMap<u32, u32> = HashMap::new();
            let mut cmin = u64::MAX;
            let mut cmax = 0u64;
            let mut first = Vec::new();
            let mut last = Vec::new();
            for _ in range.clone() {
                let e = entries.next().expect("bounds cover entries");
                let r = *rmap.entry(e.resource).or_insert_with(|| {
                    resources.push(self.resources.items[e.resource as usize].clone());
                    resources.len() as u32 - 1
                });
                let s = *smap.entry(e.scope).or_insert_with(|| {
                    scopes.push(self.scopes.items[e.scope as usize].clone());
                    scopes.len() as u32 - 1
                });
                cmin = cmin.min(e.start);
                cmax = cmax.max(e.end);
                let p = u64::from_be_bytes(e.trace_id[..8].try_into().expect("8 bytes"));
                if prefixes.last() != Some(&p) {
                    prefixes.push(p);
                }
                if first.is_empty() {
                    first = e.trace_id.to_vec();
                }
                last = e.trace_id.to_vec();
                // Spans were encoded by us a moment ago; they decode.
                let span = Span::decode(e.span.as_slice())
                    .map_err(|err| StoreError::Decode(format!("re-reading a span: {err}")))?;
                rows.push(Row {
                    trace_id: e.trace_id,
                    resource: r,
                    scope: s,
                    record: e.record,
                    span,
                });
            }
            let chunk = columns::encode(rows, resources, scopes);
            let mut data = if format >= 3 {
                pack_chunk(chunk, &mut z)
            } else {
                z.compress(&chunk.encode_to_vec())
            }
            .map_err(|e| StoreError::io(tmp, e))?;
            key.seal(ci as u64, &aad(tenant, block_id, ci as u64), &mut data)
                .map_err(StoreError::Crypto)?;
            w.write_all(&data).map_err(io)?;
            chunks_meta.push(ChunkMeta {
                offset,
                len: data.len() as u32,
                first_trace: first,
                last_trace: last,
                min_start: cmin,
                max_end: cmax,
            });
            offset += data.len() as u64;
            min_start = min_start.min(cmin);
            max_end = max_end.max(cmax);
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        let index = BlockIndex {
            min_start,
            max_end,
            span_count: count,
            services: self.services.into_iter().collect(),
            span_names: self.names.into_iter().collect(),
            operations: self
                .operations
                .into_iter()
                .map(|(service, name, kind)| crate::format::Operation {
                    service,
                    name,
                    kind,
                })
                .collect(),
            chunks: chunks_meta,
            trace_prefixes: prefixes.iter().flat_map(|p| p.to_be_bytes()).collect(),
            tags: self
                .tags
                .into_iter()
                .map(|((scope, key), (values, truncated))| TagValues {
                    key,
                    values: values.into_iter().collect(),
                    truncated,
                    scope,
                })
                .collect(),
            records: std::mem::take(&mut self.records),
            replaces: std::mem::take(&mut self.replaces),
        };
        let mut idx = z
            .compress(&index.encode_to_vec())
            .map_err(|e| StoreError::io(tmp, e))?;
        key.seal(
            INDEX_COUNTER,
            &aad(tenant, block_id, INDEX_COUNTER),
            &mut idx,
        )
        .map_err(StoreError::Crypto)?;
        w.write_all(&idx).map_err(io)?;
        w.write_all(&offset.to_le_bytes()).map_err(io)?;
        w.write_all(&(idx.len() as u32).to_le_bytes()).map_err(io)?;
        w.write_all(FOOTER_MAGIC).map_err(io)?;
        let HashingWriter { inner, ctx } = w;
        let file = inner
            .into_inner()
            .map_err(|e| StoreError::io(tmp, e.into_error()))?;
        file.sync_all().map_err(io)?;
        let size = offset + idx.len() as u64 + FOOTER_LEN as u64;
        drop(file);
        Ok(SealedBlock {
            size,
            file_sha256: ctx.finish().as_ref().try_into().expect("32 bytes"),
            key_commitment: wrapped.commitment,
            records,
            spans: count,
        })
    }
}

/// A chunk as format 3 stores it: the [`chunk_parts`] of the [`Chunk`], each compressed alone, in
/// order (a [`ChunkParts`]). Like values share a frame and its entropy tables: on `bench ingest`
/// data, where pseudonyms and request ids are hex, span ids random bytes and times varints, the
/// fields compressed apart take ~9% less than the chunk as one frame (ADR 0022).
pub(crate) fn pack_chunk(c: Chunk, z: &mut zstd::bulk::Compressor<'_>) -> std::io::Result<Vec<u8>> {
    let mut parts = Vec::new();
    for (_, one) in chunk_parts(c) {
        let raw = one.encode_to_vec();
        if !raw.is_empty() {
            parts.push(z.compress(&raw)?);
        }
    }
    Ok(ChunkParts { parts }.encode_to_vec())
}

/// The parts format 3 compresses apart, named: each field of `c` (a `Chunk` holding that field
/// only), then each attribute column (`attr <key>`), then whatever the list misses (`other`), so
/// a field added to `Chunk` later is stored, just not apart. Public for measuring (the
/// `chunk_sizes` example).
#[doc(hidden)]
pub fn chunk_parts(mut c: Chunk) -> Vec<(String, Chunk)> {
    let mut parts = Vec::new();
    macro_rules! apart {
        ($($field:ident),*) => {$(
            parts.push((
                stringify!($field).to_owned(),
                Chunk {
                    $field: std::mem::take(&mut c.$field),
                    ..Default::default()
                },
            ));
        )*};
    }
    let names: Vec<String> = c.keys.iter().map(|k| format!("attr {k}")).collect();
    apart!(
        resources,
        scopes,
        trace_ids,
        trace_runs,
        resource,
        scope,
        span_ids,
        parent,
        parent_raw,
        start_delta,
        duration,
        names,
        name,
        kind,
        attr_count,
        keys,
        attr_key,
        rest,
        record
    );
    for (i, col) in std::mem::take(&mut c.columns).into_iter().enumerate() {
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("column {i}"));
        parts.push((
            name,
            Chunk {
                columns: vec![col],
                ..Default::default()
            },
        ));
    }
    parts.push(("other".to_owned(), c));
    parts
}

/// The [`Chunk`] of a format 3 chunk: its parts decompressed and merged in order.
pub(crate) fn unpack_chunk(plain: &[u8]) -> Result<Chunk, &'static str> {
    let parts = ChunkParts::decode(plain).map_err(|_| "chunk parts do not decode")?;
    let mut d = zstd::bulk::Decompressor::new().map_err(|_| "no decompression context")?;
    let mut chunk = Chunk::default();
    let mut left = MAX_CHUNK_BYTES;
    for p in &parts.parts {
        let raw = d
            .decompress(p, left)
            .map_err(|_| "chunk part does not decompress")?;
        left -= raw.len();
        chunk
            .merge(raw.as_slice())
            .map_err(|_| "chunk part does not decode")?;
    }
    Ok(chunk)
}

/// A sealed block, its index decrypted and kept in memory.
pub struct BlockMeta {
    pub tenant: TenantId,
    pub id: u64,
    /// Where the block is: its store and key.
    pub objects: SharedObjects,
    pub key: String,
    pub size: u64,
    data_key: DataKey,
    pub key_commitment: [u8; 32],
    pub index: BlockIndex,
    /// When the block was written (its header).
    pub created_unix_nanos: u64,
    /// The cluster node whose block (and log) it is, when it is another node's (None: this
    /// node's, or a data directory's).
    pub node: Option<String>,
    prefixes: TracePrefixes,
    /// `index.operations`, interned (that list is emptied at load).
    operations: Operations,
    /// The block's format version: how its chunks are stored.
    format: u16,
}

/// A block's operations in memory (issue 22): each (service, span name, kind) as two indexes into
/// one table of distinct strings. The index lists up to 10,000 of them, each with its own copy
/// of the service and span name (about 100 bytes); a block of ordinary traffic held ~830, the
/// largest part of its index in memory.
#[derive(Default)]
pub struct Operations {
    strings: Vec<Box<str>>,
    ops: Vec<(u32, u32, i32)>,
}

impl Operations {
    fn new(list: Vec<crate::format::Operation>) -> Self {
        let mut at: HashMap<String, u32> = HashMap::new();
        let mut strings: Vec<Box<str>> = Vec::new();
        let mut intern = |s: String| -> u32 {
            if let Some(&i) = at.get(&s) {
                return i;
            }
            let i = strings.len() as u32;
            strings.push(s.as_str().into());
            at.insert(s, i);
            i
        };
        let ops = list
            .into_iter()
            .map(|o| (intern(o.service), intern(o.name), o.kind))
            .collect();
        Operations { strings, ops }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Each (service, span name, kind).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, i32)> {
        self.ops
            .iter()
            .map(|&(s, n, k)| (&*self.strings[s as usize], &*self.strings[n as usize], k))
    }
}

/// The trace id prefixes a block holds, kept in memory for every block so that a trace lookup
/// opens only the blocks that may hold it. Every block stays listed for as long as it is kept, so
/// this grows with the data (issue 22): a binary fuse filter of 16-bit fingerprints takes about
/// 2.3 bytes per trace where the sorted prefixes took 8. A false positive (about 1 lookup in
/// 65,536 per block) costs opening a chunk that turns out not to hold the trace; a trace the block
/// holds is always found.
enum TracePrefixes {
    Filter {
        filter: xorf::BinaryFuse16,
        count: usize,
    },
    /// Few prefixes (a filter would be larger), or a filter that could not be built.
    Exact(Vec<u64>),
}

impl TracePrefixes {
    /// Below this many prefixes the sorted list is smaller than a filter's fixed segments.
    const FILTER_FROM: usize = 256;

    /// From sorted, deduplicated prefixes.
    fn new(sorted: Vec<u64>) -> Self {
        if sorted.len() >= Self::FILTER_FROM
            && let Ok(filter) = xorf::BinaryFuse16::try_from(sorted.as_slice())
        {
            return TracePrefixes::Filter {
                filter,
                count: sorted.len(),
            };
        }
        TracePrefixes::Exact(sorted)
    }

    fn may_contain(&self, prefix: u64) -> bool {
        use xorf::Filter as _;
        match self {
            TracePrefixes::Filter { filter, .. } => filter.contains(&prefix),
            TracePrefixes::Exact(v) => v.binary_search(&prefix).is_ok(),
        }
    }

    fn len(&self) -> usize {
        match self {
            TracePrefixes::Filter { count, .. } => *count,
            TracePrefixes::Exact(v) => v.len(),
        }
    }
}

impl std::fmt::Debug for BlockMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockMeta({}, {:016x})", self.tenant, self.id)
    }
}

/// A block's header and format version, checked.
fn read_header(
    objects: &dyn Objects,
    key: &str,
    size: u64,
) -> Result<(BlockHeader, u16), StoreError> {
    let corrupt = |offset: u64, reason: &str| StoreError::Corruption {
        path: key.to_owned(),
        offset,
        reason: reason.to_owned(),
    };
    if size < (MAGIC.len() + 6 + FOOTER_LEN) as u64 {
        return Err(corrupt(0, "file too short for a block"));
    }
    // One read for the header in the common case (it holds a wrapped key: well under 4 KiB).
    let mut head = read_range(objects, key, 0..size.min(4096))?;
    if &head[..6] != MAGIC {
        return Err(corrupt(0, "not a tracevault block (bad magic)"));
    }
    let version = u16::from_le_bytes([head[6], head[7]]);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(StoreError::Version {
            what: format!("block {key}"),
            version: version as u32,
            supported: format!("versions {OLDEST_VERSION} to {VERSION}"),
        });
    }
    let hlen = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as u64;
    if hlen > 1 << 20 || 12 + hlen + FOOTER_LEN as u64 > size {
        return Err(corrupt(8, "header length past end of file"));
    }
    if (head.len() as u64) < 12 + hlen {
        head = read_range(objects, key, 0..12 + hlen)?;
    }
    let header = BlockHeader::decode(&head[12..12 + hlen as usize])
        .map_err(|_| corrupt(12, "bad header"))?;
    Ok((header, version))
}

/// The tenant and the wrapped data key a block's header names, read without any key.
pub fn wrapped_key_of(
    objects: &dyn Objects,
    key: &str,
) -> Result<(String, WrappedDataKey), StoreError> {
    let size = objects
        .head(key)?
        .ok_or_else(|| ObjectError::NotFound(key.to_owned()))?
        .size;
    let (header, _) = read_header(objects, key, size)?;
    let wrapped =
        WrappedDataKey::from_bytes(&header.wrapped_key).ok_or_else(|| StoreError::Corruption {
            path: key.to_owned(),
            offset: 12,
            reason: "bad wrapped key".into(),
        })?;
    Ok((header.tenant, wrapped))
}

/// An open block for reading chunks: the local file when there is one (`pread`), else ranged
/// reads from its object.
pub struct BlockFile(Option<File>);

/// A block's index, read from its end, decrypted and decoded.
fn read_index(
    objects: &dyn Objects,
    key: &str,
    size: u64,
    tenant: &TenantId,
    block_id: u64,
    data_key: &DataKey,
) -> Result<BlockIndex, StoreError> {
    let corrupt = |offset: u64, reason: &str| StoreError::Corruption {
        path: key.to_owned(),
        offset,
        reason: reason.to_owned(),
    };
    // The footer and, usually, the whole index in one read from the end.
    let tail_start = size.saturating_sub(64 * 1024);
    let tail = read_range(objects, key, tail_start..size)?;
    let foot = &tail[tail.len() - FOOTER_LEN..];
    if &foot[12..] != FOOTER_MAGIC {
        return Err(corrupt(size - 4, "bad footer (block incomplete?)"));
    }
    let ioff = u64::from_le_bytes(foot[..8].try_into().expect("8 bytes"));
    let ilen = u32::from_le_bytes(foot[8..12].try_into().expect("4 bytes")) as u64;
    if ioff + ilen + FOOTER_LEN as u64 != size {
        return Err(corrupt(
            size - FOOTER_LEN as u64,
            "index bounds do not match",
        ));
    }
    let mut ibuf = if ioff >= tail_start {
        tail[(ioff - tail_start) as usize..(ioff - tail_start + ilen) as usize].to_vec()
    } else {
        read_range(objects, key, ioff..ioff + ilen)?
    };
    let plain = data_key
        .open(
            INDEX_COUNTER,
            &aad(tenant, block_id, INDEX_COUNTER),
            &mut ibuf,
        )
        .map_err(|_| corrupt(ioff, "index fails authentication"))?;
    let raw = zstd::bulk::decompress(plain, 256 * 1024 * 1024)
        .map_err(|_| corrupt(ioff, "index does not decompress"))?;
    BlockIndex::decode(raw.as_slice()).map_err(|_| corrupt(ioff, "index does not decode"))
}

impl BlockMeta {
    /// Opens a block: checks format, unwraps its key, decrypts its index.
    pub fn load(
        objects: &SharedObjects,
        key: &str,
        tenant: &TenantId,
        keyring: &Keyring,
    ) -> Result<Self, StoreError> {
        let size = objects
            .head(key)?
            .ok_or_else(|| ObjectError::NotFound(key.to_owned()))?
            .size;
        let corrupt = |offset: u64, reason: &str| StoreError::Corruption {
            path: key.to_owned(),
            offset,
            reason: reason.to_owned(),
        };
        let (header, format) = read_header(&**objects, key, size)?;
        if header.tenant != tenant.as_str() {
            return Err(corrupt(12, "block belongs to another tenant"));
        }
        let wrapped = WrappedDataKey::from_bytes(&header.wrapped_key)
            .ok_or_else(|| corrupt(12, "bad wrapped key"))?;
        let data_key = keyring
            .open_data_key(tenant, &wrapped)
            .map_err(StoreError::Crypto)?;
        let mut index = read_index(&**objects, key, size, tenant, header.block_id, &data_key)?;
        // The values of a key with more than `MAX_TAG_VALUES` of them are a sample: they prune
        // nothing (a sample cannot rule a value out), and only the tags API lists them. Kept in
        // memory they were about a third of every block's index (issue 22); the tags API reads
        // them from the block when asked (`truncated_tag_values`).
        for t in index.tags.iter_mut().filter(|t| t.truncated) {
            t.values = Vec::new();
        }
        let mut prefixes: Vec<u64> = index
            .trace_prefixes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        index.trace_prefixes = Vec::new();
        // Written sorted and deduplicated; a filter needs distinct keys whatever the file says.
        prefixes.sort_unstable();
        prefixes.dedup();
        let prefixes = TracePrefixes::new(prefixes);
        let operations = Operations::new(std::mem::take(&mut index.operations));
        Ok(Self {
            tenant: tenant.clone(),
            id: header.block_id,
            objects: objects.clone(),
            key: key.to_owned(),
            size,
            data_key,
            key_commitment: wrapped.commitment,
            index,
            created_unix_nanos: header.created_unix_nanos,
            node: None,
            prefixes,
            operations,
            format,
        })
    }

    /// The values the block's index keeps for a key with more than [`MAX_TAG_VALUES`] of them
    /// (`entry`, one of `index.tags` with `truncated` set, whose values are not kept in memory):
    /// read from the block. Other entries answer from memory.
    pub fn tag_values_of(&self, entry: &TagValues) -> Result<Vec<String>, StoreError> {
        if !entry.truncated {
            return Ok(entry.values.clone());
        }
        let index = read_index(
            &*self.objects,
            &self.key,
            self.size,
            &self.tenant,
            self.id,
            &self.data_key,
        )?;
        Ok(index
            .tags
            .into_iter()
            .find(|t| t.key == entry.key && t.scope == entry.scope)
            .map(|t| t.values)
            .unwrap_or_default())
    }

    /// Whether the block may hold spans of a trace whose id starts with `prefix`.
    pub fn may_contain(&self, prefix: u64) -> bool {
        self.prefixes.may_contain(prefix)
    }

    /// The block's operations (empty in blocks written before they were indexed).
    pub fn operations(&self) -> &Operations {
        &self.operations
    }

    pub fn trace_count(&self) -> usize {
        self.prefixes.len()
    }

    /// Decrypts and decodes chunk `i`.
    pub fn read_chunk(&self, file: &BlockFile, i: usize) -> Result<Chunk, StoreError> {
        let buf = self.fetch_chunk(file, i)?;
        self.open_chunk(i, buf)
    }

    /// Chunk `i` as stored (encrypted): a local read, or one ranged request to the bucket.
    pub fn fetch_chunk(&self, file: &BlockFile, i: usize) -> Result<Vec<u8>, StoreError> {
        let meta = &self.index.chunks[i];
        Ok(match &file.0 {
            Some(f) => {
                let mut buf = vec![0u8; meta.len as usize];
                f.read_exact_at(&mut buf, meta.offset)
                    .map_err(|e| StoreError::io(Path::new(&self.key), e))?;
                buf
            }
            None => read_range(
                &*self.objects,
                &self.key,
                meta.offset..meta.offset + meta.len as u64,
            )?,
        })
    }

    /// Decrypts and decodes chunk `i` as [`Self::fetch_chunk`] read it.
    pub fn open_chunk(&self, i: usize, mut buf: Vec<u8>) -> Result<Chunk, StoreError> {
        let meta = &self.index.chunks[i];
        let corrupt = |reason: &str| StoreError::Corruption {
            path: self.key.clone(),
            offset: meta.offset,
            reason: reason.to_owned(),
        };
        let plain = self
            .data_key
            .open(i as u64, &aad(&self.tenant, self.id, i as u64), &mut buf)
            .map_err(|_| corrupt("chunk fails authentication"))?;
        if self.format >= 3 {
            return unpack_chunk(plain).map_err(corrupt);
        }
        let raw = zstd::bulk::decompress(plain, MAX_CHUNK_BYTES)
            .map_err(|_| corrupt("chunk does not decompress"))?;
        Chunk::decode(raw.as_slice()).map_err(|_| corrupt("chunk does not decode"))
    }

    /// Reads chunks `wanted` (indexes, in order) and hands each to `f` in that order, until `f`
    /// answers false. From a bucket, up to [`FETCHERS`] ranged reads are in flight at once (a
    /// cold scan waits on the network, not on decoding); from a local file, one at a time.
    pub fn for_chunks(
        &self,
        file: &BlockFile,
        wanted: &[usize],
        f: &mut dyn FnMut(usize, Chunk) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if file.0.is_some() || wanted.len() < 2 {
            for &i in wanted {
                if !f(i, self.read_chunk(file, i)?)? {
                    break;
                }
            }
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|sc| {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<(usize, Result<Vec<u8>, StoreError>)>(FETCHERS);
            for _ in 0..FETCHERS.min(wanted.len()) {
                let (tx, next) = (tx.clone(), &next);
                sc.spawn(move || {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = wanted.get(k) else { break };
                        // The reader stopped (an answer complete, or an error): so do we.
                        if tx.send((k, self.fetch_chunk(file, i))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // In order: chunks that came early wait here (at most FETCHERS * 2 in memory).
            let mut early: std::collections::BTreeMap<usize, Result<Vec<u8>, StoreError>> =
                Default::default();
            for (k, &i) in wanted.iter().enumerate() {
                let buf = loop {
                    if let Some(b) = early.remove(&k) {
                        break b;
                    }
                    match rx.recv() {
                        Ok((j, b)) => {
                            early.insert(j, b);
                        }
                        Err(_) => {
                            return Err(StoreError::Decode(format!(
                                "{}: chunk {i} was not read",
                                self.key
                            )));
                        }
                    }
                };
                if !f(i, self.open_chunk(i, buf?)?)? {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Opens the block for [`BlockMeta::read_chunk`].
    pub fn open_file(&self) -> Result<BlockFile, StoreError> {
        match self.objects.local_path(&self.key) {
            Some(p) => Ok(BlockFile(Some(
                File::open(&p).map_err(|e| StoreError::io(&p, e))?,
            ))),
            None => Ok(BlockFile(None)),
        }
    }

    /// The SHA-256 of the whole block (what its log leaf records).
    pub fn digest(&self) -> Result<[u8; 32], StoreError> {
        Ok(tv_tlog::commit::sha256(&self.objects.get(&self.key)?.0))
    }
}
