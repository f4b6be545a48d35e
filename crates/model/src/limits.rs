//! Configurable limits applied to every ingest request.

/// Limits on what one OTLP request may carry. Defaults follow ../DESIGN.md's rejection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum request body size after decompression, in bytes.
    pub max_request_bytes: usize,
    /// Upper bound of the memory one request may take once decoded (counted before decoding,
    /// see [`crate::footprint`]); the whole request is refused above it.
    pub max_decoded_bytes: usize,
    /// Maximum number of spans in one request (whole request refused above it).
    pub max_spans_per_request: usize,
    /// Maximum attributes on one span, event or link (span refused above it).
    pub max_attributes_per_span: usize,
    /// Maximum length in bytes of one string or bytes attribute value, and of a span name.
    pub max_attribute_value_bytes: usize,
    /// Maximum nesting depth of AnyValue arrays and key-value lists.
    pub max_value_depth: usize,
    /// Spans whose start is older than this many seconds are refused.
    pub max_span_age_secs: u64,
    /// Spans whose start is further than this many seconds in the future are refused.
    pub max_span_future_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: 256 * 1024 * 1024,
            max_spans_per_request: 50_000,
            max_attributes_per_span: 256,
            max_attribute_value_bytes: 64 * 1024,
            max_value_depth: 8,
            max_span_age_secs: 30 * 24 * 3600,
            max_span_future_secs: 3600,
        }
    }
}
