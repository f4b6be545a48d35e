//! Decoding untrusted request bodies: bounded decompression, OTLP protobuf and OTLP/JSON.
//!
//! Decompression stops as soon as the output would pass the limit, so a gzip bomb is cut off while
//! inflating and never fully inflated (OTLP 1.x, "OTLP/HTTP Request": gzip content encoding).

use std::borrow::Cow;
use std::io::Read;

use prost::Message;

use crate::otlp::ExportTraceServiceRequest;

/// A request body's content encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("request body exceeds the limit of {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("invalid {encoding} compressed body: {reason}")]
    Compression {
        encoding: &'static str,
        reason: String,
    },
    #[error("request carries more than the limit of {limit} spans per request")]
    TooManySpans { limit: usize },
    #[error(
        "request would take more than the limit of {limit} bytes of memory decoded ({spans} spans and {attributes} attributes counted before the limit was reached)"
    )]
    DecodedTooLarge {
        limit: usize,
        spans: usize,
        attributes: usize,
    },
    #[error("attribute values are nested more than {limit} levels deep")]
    TooDeep { limit: usize },
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(String),
    #[error("invalid OTLP JSON: {0}")]
    Json(String),
}

impl DecodeError {
    /// Whether the request broke a limit (413 / INVALID_ARGUMENT) rather than being malformed
    /// (400 / INVALID_ARGUMENT).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. }
                | Self::TooManySpans { .. }
                | Self::DecodedTooLarge { .. }
                | Self::TooDeep { .. }
        )
    }
}

impl Encoding {
    /// Parses a `Content-Encoding` / `grpc-encoding` header value.
    pub fn from_header(v: Option<&str>) -> Option<Self> {
        match v.map(|s| s.trim().to_ascii_lowercase()) {
            None => Some(Self::Identity),
            Some(s) if s.is_empty() || s == "identity" => Some(Self::Identity),
            Some(s) if s == "gzip" => Some(Self::Gzip),
            Some(s) if s == "zstd" => Some(Self::Zstd),
            Some(_) => None,
        }
    }
}

/// Decompresses `body` with `encoding`, refusing to produce more than `limit` bytes. An
/// uncompressed body is returned as it is, not copied.
pub fn decompress_limited(
    encoding: Encoding,
    body: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(Cow::Borrowed(body))
        }
        Encoding::Gzip => {
            read_limited(flate2::read::MultiGzDecoder::new(body), limit, "gzip").map(Cow::Owned)
        }
        Encoding::Zstd => {
            let dec =
                zstd::stream::read::Decoder::new(body).map_err(|e| DecodeError::Compression {
                    encoding: "zstd",
                    reason: e.to_string(),
                })?;
            read_limited(dec, limit, "zstd").map(Cow::Owned)
        }
    }
}

fn read_limited<R: Read>(
    reader: R,
    limit: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    // Read one byte past the limit: if it arrives, the body is too large.
    let mut taken = reader.take(limit as u64 + 1);
    taken
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Compression {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// Decodes an OTLP protobuf `ExportTraceServiceRequest`.
pub fn decode_protobuf(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    ExportTraceServiceRequest::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` (hex ids, camelCase, int64 as strings).
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_within_limit_roundtrips() {
        let data = b"hello otlp".repeat(100);
        let z = gzip(&data);
        let out = decompress_limited(Encoding::Gzip, &z, data.len()).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn gzip_bomb_is_cut_off_at_the_limit() {
        let data = vec![0u8; 4 * 1024 * 1024];
        let err = decompress_limited(Encoding::Gzip, &gzip(&data), 1024 * 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "request body exceeds the limit of 1048576 bytes after decompression"
        );
    }

    #[test]
    fn zstd_bomb_is_cut_off() {
        let data = vec![0u8; 4 * 1024 * 1024];
        let z = zstd::encode_all(&data[..], 1).unwrap();
        assert!(matches!(
            decompress_limited(Encoding::Zstd, &z, 1000),
            Err(DecodeError::TooLarge { limit: 1000 })
        ));
    }

    #[test]
    fn garbage_gzip_is_a_compression_error() {
        assert!(matches!(
            decompress_limited(Encoding::Gzip, b"not gzip at all", 100),
            Err(DecodeError::Compression { .. })
        ));
    }

    #[test]
    fn json_uses_hex_ids_and_string_int64() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
          "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
          "name":"GET /","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000",
          "attributes":[{"key":"http.status_code","value":{"intValue":"200"}}]}]}]}]}"#;
        let req = decode_json(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.kind, 2);
    }

    #[test]
    fn unknown_encoding_is_refused() {
        assert_eq!(Encoding::from_header(Some("br")), None);
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
    }
}
