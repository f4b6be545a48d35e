//! The record format: what a batch touches, a batch encoded for the WAL, and the record
//! plaintext (payload) the WAL and blocks hold.

use super::*;

/// What a batch touches, for the head index.
#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    /// Sorted, deduplicated trace id prefixes.
    pub prefixes: Vec<u64>,
    pub min_start: u64,
    pub max_end: u64,
    pub spans: u64,
}

impl BatchSummary {
    pub fn of(req: &ExportTraceServiceRequest) -> Self {
        let mut s = BatchSummary {
            min_start: u64::MAX,
            ..Default::default()
        };
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    if span.trace_id.len() == 16 {
                        s.prefixes.push(u64::from_be_bytes(
                            span.trace_id[..8].try_into().expect("8 bytes"),
                        ));
                    }
                    s.min_start = s.min_start.min(span.start_time_unix_nano);
                    s.max_end = s.max_end.max(span.end_time_unix_nano);
                    s.spans += 1;
                }
            }
        }
        s.prefixes.sort_unstable();
        s.prefixes.dedup();
        s
    }
}

/// Bytes before the compressed request in a WAL record's plaintext: format 0x01, the record
/// secret (salts of its span commitments), the receive time (u64 LE).
/// Record plaintext, format 2: `0x02 | record secret (32) | receive time (u64 LE) | redaction
/// policy digest (32) | zstd(protobuf request)`. Format 1 (no policy digest; written before
/// redaction existed) is still read, with the empty policy's digest.
pub(crate) const PAYLOAD_HEADER: usize = 1 + 32 + 8 + 32;
const PAYLOAD_FORMAT: u8 = 2;
const PAYLOAD_HEADER_V1: usize = 1 + 32 + 8;

/// A validated batch, encoded and compressed, with its span commitments: ready for the WAL.
pub struct EncodedBatch {
    pub(super) tenant: TenantId,
    /// `PAYLOAD_HEADER` bytes, then zstd(protobuf request).
    pub(super) payload: Vec<u8>,
    pub(super) summary: BatchSummary,
    pub(super) span_root: [u8; 32],
    pub(super) span_count: u32,
    pub(super) policy: [u8; 32],
}

impl EncodedBatch {
    /// Encodes a validated (and redacted) batch for `tenant` (protobuf, then zstd at `level`) and
    /// computes its span commitments under a fresh record secret. `policy` is the digest of the
    /// redaction policy the batch went through; the log records it.
    pub fn encode(
        tenant: TenantId,
        batch: &Validated,
        level: i32,
        policy: [u8; 32],
    ) -> Result<Self, StoreError> {
        let req = batch.request();
        let raw = req.encode_to_vec();
        let secret = tv_crypto::random_bytes::<32>();
        let (span_root, span_count) =
            commit::span_root(&secret, &commit::CanonRecord::of_request(req));
        let mut payload = Vec::with_capacity(PAYLOAD_HEADER + raw.len() / 3);
        payload.push(PAYLOAD_FORMAT);
        payload.extend_from_slice(&secret);
        payload.extend_from_slice(&crate::now_unix_nanos().to_le_bytes());
        payload.extend_from_slice(&policy);
        let z = zstd::bulk::compress(&raw, level)
            .map_err(|e| StoreError::Decode(format!("compressing batch: {e}")))?;
        payload.extend_from_slice(&z);
        Ok(Self {
            tenant,
            payload,
            summary: BatchSummary::of(req),
            span_root,
            span_count,
            policy,
        })
    }

    pub fn spans(&self) -> u64 {
        self.summary.spans
    }
}

/// An acknowledged batch not yet sealed into a block.
pub(crate) struct HeadRecord {
    pub segment: u64,
    pub tenant: TenantId,
    /// The record's plaintext payload (memory only; see `PAYLOAD_HEADER`).
    pub payload: Vec<u8>,
    pub summary: BatchSummary,
    /// Its log leaf (None when the store runs without a log).
    pub leaf_index: Option<u64>,
}

/// The parts of a record plaintext.
pub(crate) struct Payload<'a> {
    pub secret: [u8; 32],
    pub received: u64,
    pub policy: [u8; 32],
    pub body: &'a [u8],
}

/// Splits a record plaintext (format 2, or format 1 with the empty policy).
pub(crate) fn split_payload(p: &[u8]) -> Result<Payload<'_>, StoreError> {
    let (policy, header) = match p.first() {
        Some(&PAYLOAD_FORMAT) if p.len() >= PAYLOAD_HEADER => {
            (p[41..73].try_into().expect("32 bytes"), PAYLOAD_HEADER)
        }
        Some(1) if p.len() >= PAYLOAD_HEADER_V1 => (commit::policy_digest(), PAYLOAD_HEADER_V1),
        _ => {
            return Err(StoreError::Decode(
                "record payload has an unknown format".to_owned(),
            ));
        }
    };
    Ok(Payload {
        secret: p[1..33].try_into().expect("32 bytes"),
        received: u64::from_le_bytes(p[33..41].try_into().expect("8 bytes")),
        policy,
        body: &p[header..],
    })
}

impl HeadRecord {
    pub fn secret(&self) -> [u8; 32] {
        split_payload(&self.payload)
            .map(|p| p.secret)
            .unwrap_or([0; 32])
    }

    pub fn decode(&self) -> Result<ExportTraceServiceRequest, StoreError> {
        decode_payload(&self.payload)
    }
}

/// The request inside a record plaintext.
pub(crate) fn decode_payload(p: &[u8]) -> Result<ExportTraceServiceRequest, StoreError> {
    let z = split_payload(p)?.body;
    let raw = zstd::bulk::decompress(z, 1024 * 1024 * 1024)
        .map_err(|e| StoreError::Decode(format!("head record: {e}")))?;
    ExportTraceServiceRequest::decode(raw.as_slice())
        .map_err(|e| StoreError::Decode(format!("head record: {e}")))
}
