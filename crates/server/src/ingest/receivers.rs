//! The OTLP receivers (OTLP 1.x): gRPC `TraceService/Export` and HTTP `POST /v1/traces`
//! (`application/x-protobuf` and `application/json`). Each authenticates the caller before any
//! body is read, counts the body into the decode budget as it arrives, decodes it within the
//! limits and hands the batch to the pipeline ([`super::ingest`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tv_model::decode::{self, DecodeError, Encoding};
use tv_model::otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use super::ingest;
use crate::AppState;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::metrics::{RequestLabels, TransportLabels};
use crate::mtls::PeerInfo;

pub(super) fn listener(transport: &str) -> &'static str {
    if transport == "grpc" {
        "otlp-grpc"
    } else {
        "otlp-http"
    }
}

/// Authenticates an ingest request and counts it against the caller's request rate, auditing
/// a refusal (unauthenticated ones sampled, an authenticated principal's counted).
fn admit(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
    transport: &str,
) -> Result<Caller, ApiError> {
    let caller = authenticate(state, headers, peer).map_err(|r| {
        r.audit(
            &state.audit,
            peer,
            listener(transport),
            "ingest",
            String::new(),
        );
        r.error
    })?;
    let admitted = super::admit::Admission::of(state)
        .request(&caller)
        .map_err(ApiError::from);
    admitted.inspect_err(|e| {
        state.audit.denied(
            &caller.principal,
            caller.requested_tenant(),
            peer,
            listener(transport),
            "ingest",
            String::new(),
            e.status().as_u16(),
            e.to_string(),
        )
    })?;
    Ok(caller)
}

fn record(state: &AppState, transport: &'static str, started: Instant, outcome: &'static str) {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { transport, outcome })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&TransportLabels { transport })
        .observe(started.elapsed().as_secs_f64());
}

fn decode_error(e: DecodeError) -> ApiError {
    if e.is_limit() {
        ApiError::TooLarge(e.to_string())
    } else {
        ApiError::BadRequest(e.to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    Protobuf,
    Json,
}

/// `POST /v1/traces`.
pub async fn http_export(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let format = content_type(&parts.headers);
    // Errors are answered in the request's format when it has a valid one.
    let reply_format = *format.as_ref().unwrap_or(&Format::Protobuf);
    let peer = parts.extensions.get::<PeerInfo>();
    let res = http_export_inner(&state, &parts.headers, peer, body, format).await;
    finish(&state, started, res, reply_format)
}

fn finish(
    state: &AppState,
    started: Instant,
    res: Result<ExportTraceServiceResponse, ApiError>,
    format: Format,
) -> Response {
    match res {
        Ok(resp) => {
            record(state, "http", started, "ok");
            match format {
                Format::Protobuf => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    resp.encode_to_vec(),
                )
                    .into_response(),
                Format::Json => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::to_vec(&resp).unwrap_or_default(),
                )
                    .into_response(),
            }
        }
        Err(e) => {
            record(state, "http", started, e.outcome());
            if format == Format::Protobuf && e.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
                let body = crate::error::RpcStatus {
                    code: e.grpc_code() as i32,
                    message: e.to_string(),
                    details: Vec::new(),
                }
                .encode_to_vec();
                let mut r = e.into_response();
                *r.body_mut() = Body::from(body);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                r
            } else {
                e.into_response()
            }
        }
    }
}

/// The request's content type as sent, and its media type (lowercase, without parameters).
fn media_type(h: &HeaderMap) -> (&str, String) {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (ct, mime)
}

fn content_type(h: &HeaderMap) -> Result<Format, ApiError> {
    let (ct, mime) = media_type(h);
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content type {:?}: use application/x-protobuf or application/json",
            ct.chars().take(64).collect::<String>()
        ))),
    }
}

async fn http_export_inner(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<&PeerInfo>,
    body: Body,
    format: Result<Format, ApiError>,
) -> Result<ExportTraceServiceResponse, ApiError> {
    // Who is asking, before anything else is said about the request or its body is read.
    let caller = admit(state, headers, peer, "http")?;
    let format = format?;
    let enc_header = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let encoding = Encoding::from_header(enc_header).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "unsupported content encoding {:?}: use gzip, zstd or none",
            enc_header
                .unwrap_or("")
                .chars()
                .take(32)
                .collect::<String>()
        ))
    })?;
    let limit = state.limits.max_request_bytes;
    // The body is counted into the decode budget frame by frame as it arrives.
    let ticket = state.decode_budget.ticket();
    let body = Body::new(crate::budget::Metered::new(body, ticket.clone()));
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| match ticket.refused() {
            Some(r) => ApiError::from(r),
            None => ApiError::TooLarge(format!("request body exceeds the limit of {limit} bytes")),
        })?;
    let req = decode_body(state, &ticket, format, encoding, &raw).await?;
    drop(raw);
    // The ticket (now the decoded request's footprint) is held until the batch is committed.
    let res = ingest(state, &caller, peer, req, "http").await;
    drop(ticket);
    res
}

/// Decompresses, counts and decodes a request body within the limits, growing `ticket` by what
/// each step is about to hold (waiting for room in the decode budget). Afterwards the ticket
/// holds the decoded request's footprint only.
async fn decode_body(
    state: &AppState,
    ticket: &crate::budget::Ticket,
    format: Format,
    encoding: Encoding,
    raw: &[u8],
) -> Result<ExportTraceServiceRequest, ApiError> {
    let limit = state.limits.max_request_bytes;
    if encoding != Encoding::Identity {
        // Room for the largest output first; what it did not use goes back at once.
        ticket.grow(limit).await?;
    }
    let plain = decode::decompress_limited(encoding, raw, limit).map_err(decode_error)?;
    if encoding != Encoding::Identity {
        ticket.release(limit - plain.len());
    }
    let footprint = match format {
        Format::Protobuf => tv_model::footprint::scan_protobuf(&plain, &state.limits),
        Format::Json => tv_model::footprint::scan_json(&plain, &state.limits),
    }
    .map_err(decode_error)?;
    ticket.grow(footprint.memory).await?;
    let req = match format {
        Format::Protobuf => decode::decode_protobuf(&plain),
        Format::Json => decode::decode_json(&plain),
    }
    .map_err(decode_error)?;
    ticket.release(ticket.bytes().saturating_sub(footprint.memory));
    Ok(req)
}

/// The gRPC method OTLP exporters call (OTLP 1.x, `TraceService/Export`).
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC codec that hands the handler the message's bytes undecoded (tonic still does the
/// framing, decompression and size limit), so the request is counted against the limits and the
/// decode budget before any of it is decoded.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = bytes::Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(tonic::codec::BufferSettings::default())
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The gRPC `TraceService/Export` handler.
#[derive(Clone)]
struct GrpcExport {
    state: Arc<AppState>,
}

impl tonic::server::UnaryService<bytes::Bytes> for GrpcExport {
    type Response = ExportTraceServiceResponse;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status>,
                > + Send,
        >,
    >;

    fn call(&mut self, request: tonic::Request<bytes::Bytes>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let started = Instant::now();
            // The guard put the caller and its decode ticket here before tonic read the body.
            let ext = request.extensions();
            let (Some(caller), Some(ticket)) = (
                ext.get::<Caller>().cloned(),
                ext.get::<crate::budget::Ticket>().cloned(),
            ) else {
                return Err(tonic::Status::unauthenticated("missing credentials"));
            };
            let peer = ext.get::<PeerInfo>().cloned();
            let body = request.into_inner();
            let res = async {
                // tonic inflated the message; its compressed size is what the ticket counted.
                ticket.grow(body.len()).await?;
                let req = decode_body(&state, &ticket, Format::Protobuf, Encoding::Identity, &body)
                    .await?;
                drop(body);
                ingest(&state, &caller, peer.as_ref(), req, "grpc").await
            }
            .await;
            drop(ticket);
            match res {
                Ok(r) => {
                    record(&state, "grpc", started, "ok");
                    Ok(tonic::Response::new(r))
                }
                Err(e) => {
                    record(&state, "grpc", started, e.outcome());
                    Err(e.to_status())
                }
            }
        })
    }
}

/// The gRPC router: `TraceService/Export` (gzip and zstd accepted) behind authentication, the
/// decode budget and the error mapping.
pub fn grpc_router(state: Arc<AppState>) -> axum::Router {
    let svc_state = state.clone();
    let export = tower::service_fn(move |req: Request| {
        let export = GrpcExport {
            state: svc_state.clone(),
        };
        async move {
            let limit = export.state.limits.max_request_bytes;
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit);
            Ok::<_, std::convert::Infallible>(grpc.unary(export, req).await)
        }
    });
    axum::Router::new()
        .route_service(EXPORT_PATH, export)
        .fallback(|req: Request| async move {
            grpc_error(
                tonic::Code::Unimplemented,
                &format!(
                    "this listener serves OTLP gRPC ({EXPORT_PATH}) only, not {}",
                    req.uri().path().chars().take(128).collect::<String>()
                ),
            )
        })
        .layer(axum::middleware::from_fn_with_state(state, grpc_guard))
}

use crate::hints::grpc_error;

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && s.is_char_boundary(i + 3)
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Authenticates gRPC calls before tonic reads (and inflates) the body, and turns tonic's size
/// errors (RESOURCE_EXHAUSTED / OUT_OF_RANGE, which OTLP clients may retry) into the permanent
/// INVALID_ARGUMENT the rejection table asks for, naming the limit.
async fn grpc_guard(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req.extensions().get::<PeerInfo>();
    let authed = admit(&state, req.headers(), peer, "grpc");
    let caller = match authed {
        Ok(caller) => caller,
        Err(e) => {
            record(&state, "grpc", started, e.outcome());
            if e.retry_after().is_some() {
                // With its RetryInfo detail, so exporters back off.
                return e.to_status().into_http::<Body>();
            }
            return grpc_error(e.grpc_code(), &e.to_string());
        }
    };
    // gRPC over HTTP/2, "Requests": a content type that is not application/grpc is answered
    // 415; OTLP/JSON belongs on the HTTP listener.
    let (ct, mime) = media_type(req.headers());
    if mime != "application/grpc" && mime != "application/grpc+proto" {
        record(&state, "grpc", started, "unsupported_media_type");
        let mut r = grpc_error(
            tonic::Code::InvalidArgument,
            &format!(
                "content type {:?} is not gRPC: this listener takes application/grpc (OTLP/HTTP goes to the HTTP listener)",
                ct.chars().take(64).collect::<String>()
            ),
        );
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    }
    req.extensions_mut().insert(caller);
    // The body is counted into the decode budget as it arrives (see budget.rs).
    let ticket = state.decode_budget.ticket();
    req.extensions_mut().insert(ticket.clone());
    let req = req.map(|b| Body::new(crate::budget::Metered::new(b, ticket.clone())));
    let resp = next.run(req).await;
    if let Some(r) = ticket.refused()
        && resp.headers().get("grpc-status").is_some_and(|s| {
            s != "0" && *s != (ApiError::from(r.clone()).grpc_code() as i32).to_string()
        })
    {
        // The budget refused the body while tonic read it: say why, with the right code.
        let e = ApiError::from(r);
        record(&state, "grpc", started, e.outcome());
        return e.to_status().into_http::<Body>();
    }
    let status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    // grpc-message is percent-encoded on the wire.
    let message = percent_decode(
        resp.headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    // tonic's own size errors carry no details; a rate-limit refusal carries RetryInfo.
    let size_error = matches!(
        status,
        Some(s) if s == tonic::Code::ResourceExhausted as i32 || s == tonic::Code::OutOfRange as i32
    ) && (message.contains("limit") || message.contains("too large"))
        && resp.headers().get("grpc-status-details-bin").is_none();
    // tonic reports undecodable or undecompressable bodies as INTERNAL; they are the client's
    // permanent error, not ours.
    if status == Some(tonic::Code::Internal as i32)
        && (message.starts_with("failed to decode Protobuf message")
            || message.starts_with("Error decompressing"))
    {
        record(&state, "grpc", started, "bad_request");
        return grpc_error(
            tonic::Code::InvalidArgument,
            &format!("invalid OTLP protobuf request: {message}"),
        );
    }
    if size_error {
        record(&state, "grpc", started, "too_large");
        let limit = state.limits.max_request_bytes;
        return grpc_error(
            tonic::Code::InvalidArgument,
            &format!("request exceeds the limit of {limit} bytes after decompression"),
        );
    }
    resp
}
