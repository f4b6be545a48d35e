//! Internal on-disk message types, encoded with prost (no protoc: the schemas are these derives).
//!
//! Each top-level file format also carries its own magic and version number (see `wal.rs` and
//! `block.rs`); an unknown version is refused with a clear message.

/// One chunk of a block: spans sorted by trace id, with resources and scopes stored once.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// Encoded `ResourceSpans` without scope spans (resource + schema url).
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub resources: Vec<Vec<u8>>,
    /// Encoded `ScopeSpans` without spans (scope + schema url).
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub scopes: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub spans: Vec<SpanRow>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanRow {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub resource: u32,
    #[prost(uint32, tag = "3")]
    pub scope: u32,
    /// The encoded OTLP `Span`.
    #[prost(bytes = "vec", tag = "4")]
    pub span: Vec<u8>,
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
