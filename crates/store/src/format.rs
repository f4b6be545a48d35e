//! Internal on-disk message types, encoded with prost (no protoc: the schemas are these derives).
//!
//! Each top-level file format also carries its own magic and version number (see `wal.rs` and
//! `block.rs`); an unknown version is refused with a clear message.

/// One chunk of a block, stored by column: spans sorted by trace id, each field of all spans kept
/// together (ids with ids, start times as deltas, names and attribute keys as dictionary indexes,
/// each attribute key's values in their own column) so zstd sees like next to like. See
/// `columns.rs` for the encoding rules.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// Encoded `ResourceSpans` without scope spans (resource + schema url).
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub resources: Vec<Vec<u8>>,
    /// Encoded `ScopeSpans` without spans (scope + schema url).
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub scopes: Vec<Vec<u8>>,
    /// 16 bytes per run of spans sharing a trace id.
    #[prost(bytes = "vec", tag = "3")]
    pub trace_ids: Vec<u8>,
    /// Spans in each trace id run.
    #[prost(uint32, repeated, tag = "4")]
    pub trace_runs: Vec<u32>,
    #[prost(uint32, repeated, tag = "5")]
    pub resource: Vec<u32>,
    #[prost(uint32, repeated, tag = "6")]
    pub scope: Vec<u32>,
    /// 8 bytes per span.
    #[prost(bytes = "vec", tag = "7")]
    pub span_ids: Vec<u8>,
    /// 0: no parent; 1: parent id in `parent_raw`; k >= 2: the span in row k - 2 of this chunk.
    #[prost(uint32, repeated, tag = "8")]
    pub parent: Vec<u32>,
    #[prost(bytes = "vec", tag = "9")]
    pub parent_raw: Vec<u8>,
    /// Start time minus the previous row's start time (the first row: minus zero).
    #[prost(sint64, repeated, tag = "10")]
    pub start_delta: Vec<i64>,
    /// End time minus start time, as two's complement (ends before starts are refused at ingest).
    #[prost(uint64, repeated, tag = "11")]
    pub duration: Vec<u64>,
    #[prost(string, repeated, tag = "12")]
    pub names: Vec<String>,
    #[prost(uint32, repeated, tag = "13")]
    pub name: Vec<u32>,
    #[prost(int32, repeated, tag = "14")]
    pub kind: Vec<i32>,
    #[prost(uint32, repeated, tag = "15")]
    pub attr_count: Vec<u32>,
    #[prost(string, repeated, tag = "16")]
    pub keys: Vec<String>,
    /// Key dictionary index of each attribute, span after span.
    #[prost(uint32, repeated, tag = "17")]
    pub attr_key: Vec<u32>,
    /// One column per key dictionary entry (same order as `keys`).
    #[prost(message, repeated, tag = "18")]
    pub columns: Vec<ValueColumn>,
    /// Each span with the fields above cleared: status, events, links, trace state, flags and
    /// dropped counts, usually a few bytes.
    #[prost(bytes = "vec", repeated, tag = "19")]
    pub rest: Vec<Vec<u8>>,
    /// Per span: the committed record it came from (index into `BlockIndex::records`). Within a
    /// record, rows keep the record's canonical order, so its span commitments can be re-derived.
    #[prost(uint32, repeated, tag = "20")]
    pub record: Vec<u32>,
}

/// A chunk as stored from block format 3 on: the [`Chunk`] split into parts, each part a `Chunk`
/// with some of its fields set, compressed on its own (one zstd frame per field and per attribute
/// column). Reading merges the parts in order (protobuf merging appends repeated fields, so the
/// columns come back in key order). Each part gets entropy tables of its own: one frame for the
/// whole chunk mixes hex pseudonyms, random ids and varints in one table (see `block::pack_chunk`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkParts {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub parts: Vec<Vec<u8>>,
}

/// The values of one attribute key, in row order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueColumn {
    /// Per value: 0 string, 1 int, 2 anything else (encoded `AnyValue`), 3 absent value.
    #[prost(uint32, repeated, tag = "1")]
    pub kind: Vec<u32>,
    /// Byte length of each string value...
    #[prost(uint32, repeated, tag = "2")]
    pub str_lens: Vec<u32>,
    /// ...and the string values, concatenated (UTF-8 checked on decode).
    #[prost(bytes = "vec", tag = "5")]
    pub str_data: Vec<u8>,
    #[prost(sint64, repeated, tag = "3")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub others: Vec<Vec<u8>>,
}

/// The encrypted index at the end of a block.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockIndex {
    #[prost(uint64, tag = "1")]
    pub min_start: u64,
    #[prost(uint64, tag = "2")]
    pub max_end: u64,
    #[prost(uint64, tag = "3")]
    pub span_count: u64,
    #[prost(string, repeated, tag = "4")]
    pub services: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub span_names: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    pub chunks: Vec<ChunkMeta>,
    /// Sorted, deduplicated 8-byte big-endian trace id prefixes, concatenated.
    #[prost(bytes = "vec", tag = "7")]
    pub trace_prefixes: Vec<u8>,
    #[prost(message, repeated, tag = "8")]
    pub tags: Vec<TagValues>,
    /// The committed records whose spans the block holds, in the order of the block leaf.
    #[prost(message, repeated, tag = "9")]
    pub records: Vec<BlockRecord>,
    /// Each (service, span name, span kind) the block holds (bounded; empty in blocks written
    /// before it was kept).
    #[prost(message, repeated, tag = "10")]
    pub operations: Vec<Operation>,
    /// The blocks this one replaced (compaction), in the order their records follow one
    /// another in `records`; empty for a block sealed from the WAL.
    #[prost(uint64, repeated, tag = "11")]
    pub replaces: Vec<u64>,
}

/// A service's operation: a span name with its kind (OTLP `SpanKind` number).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Operation {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(int32, tag = "3")]
    pub kind: i32,
}

/// A committed record inside a block: its log leaf and the secret its salts derive from.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockRecord {
    #[prost(uint64, tag = "1")]
    pub leaf_index: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub secret: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub span_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkMeta {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(uint32, tag = "2")]
    pub len: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub first_trace: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub last_trace: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub min_start: u64,
    #[prost(uint64, tag = "6")]
    pub max_end: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TagValues {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, repeated, tag = "2")]
    pub values: Vec<String>,
    /// More distinct values existed than were kept.
    #[prost(bool, tag = "3")]
    pub truncated: bool,
    /// Where the attribute stands ([`crate::query::TagScope`]); 0 in blocks written before
    /// scopes were kept (resource or span).
    #[prost(uint32, tag = "4")]
    pub scope: u32,
}

/// The plaintext header of a block (no span data: tenant, id, wrapped data key).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockHeader {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(uint64, tag = "2")]
    pub block_id: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub wrapped_key: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub created_unix_nanos: u64,
    #[prost(uint32, tag = "5")]
    pub chunk_count: u32,
}
