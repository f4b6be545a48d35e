//! One error type for every refusal, mapped to HTTP statuses and gRPC codes following the
//! rejection table in DESIGN.md (OTLP 1.x, "Failures": permanent errors must not be retried).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use prost::Message;
use tv_access::AuthError;

/// Largest request body the query and admin API reads (its bodies are small JSON documents;
/// OTLP listeners have their own limits).
pub const API_BODY_LIMIT: usize = 1024 * 1024;

/// Seconds a client should wait before retrying a transient refusal.
pub const RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{0}")]
    Forbidden(String),
    /// Refused by the policies for this tenant (the audit record is filed under it).
    #[error("{1}")]
    ForbiddenOn(tv_model::TenantId, String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit: the message and the seconds to wait.
    #[error("{0}")]
    RateLimited(String, u64),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ForbiddenOn(..) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::Forbidden(_) | Self::ForbiddenOn(..) => tonic::Code::PermissionDenied,
            Self::BadRequest(_) | Self::TooLarge(_) | Self::UnsupportedMediaType(_) => {
                tonic::Code::InvalidArgument
            }
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::Unavailable(_) => tonic::Code::Unavailable,
            Self::RateLimited(..) => tonic::Code::ResourceExhausted,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    /// A short metric label for the outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) | Self::ForbiddenOn(..) => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotFound(_) => "not_found",
            Self::Unavailable(_) => "unavailable",
            Self::RateLimited(..) => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }

    /// Seconds a client should wait before retrying, for retryable refusals.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable(_) => Some(RETRY_AFTER_SECS),
            Self::RateLimited(_, s) => Some(*s),
            _ => None,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        if let Some(wait) = self.retry_after() {
            // The retry hint gRPC clients read: google.rpc.RetryInfo in the status details
            // (OTLP 1.x, "Failures": throttling and retryable errors).
            let details = RpcStatus {
                code: self.grpc_code() as i32,
                message: self.to_string(),
                details: vec![ProtoAny {
                    type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                    value: RetryInfo {
                        retry_delay: Some(ProtoDuration {
                            seconds: wait as i64,
                            nanos: 0,
                        }),
                    }
                    .encode_to_vec(),
                }],
            };
            return tonic::Status::with_details(
                self.grpc_code(),
                self.to_string(),
                details.encode_to_vec().into(),
            );
        }
        tonic::Status::new(self.grpc_code(), self.to_string())
    }

    /// A JSON request body that did not parse: 413 over the API's body limit, else 400.
    pub fn json_body(what: &str, e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge(format!(
                "{what}: the body is over the limit of {API_BODY_LIMIT} bytes"
            ))
        } else {
            Self::BadRequest(format!("{what}: {e}"))
        }
    }

    /// Maps a storage error to a response. Details (paths, offsets) go to the server log only.
    pub fn from_store(e: tv_store::StoreError) -> Self {
        use tv_store::StoreError as E;
        match &e {
            E::Overloaded(m) => {
                Self::Unavailable(format!("storage is overloaded ({m}); retry later"))
            }
            E::ShuttingDown => Self::Unavailable("the server is shutting down; retry later".into()),
            E::Erased(t) => Self::Forbidden(format!(
                "tenant {t} was erased: it accepts no data and holds none"
            )),
            E::Crypto(tv_crypto::CryptoError::Kms(_)) => {
                tracing::warn!(error = %e, "a key the KMS must unwrap is not available");
                Self::Unavailable(
                    "the KMS holding the root key does not answer and the tenant key is not cached (or no longer trusted); retry later".into(),
                )
            }
            E::Io { source, .. } => {
                tracing::warn!(error = %e, "storage refused a write");
                Self::Unavailable(format!("storage unavailable ({source}); retry later"))
            }
            E::Object(o) if o.is_transient() => {
                tracing::warn!(error = %e, "the object store did not serve a request");
                Self::Unavailable("the object store is unavailable; retry later".into())
            }
            _ => {
                tracing::error!(error = %e, "storage error");
                Self::Internal("storage error (details are in the server log)".into())
            }
        }
    }
}

/// The `google.rpc.Status` message OTLP/HTTP error bodies carry (OTLP 1.x, "Failures"), and
/// gRPC status details.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The message of a refusal (401, 403, 429), kept as a response extension for the audit record.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

/// The tenant a request acted on or was refused for, when it is not the one it requested (a
/// response extension for the audit record).
#[derive(Debug, Clone)]
pub struct ActedOn(pub tv_model::TenantId);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let refusal = matches!(
            self,
            Self::Unauthenticated(_)
                | Self::Forbidden(_)
                | Self::ForbiddenOn(..)
                | Self::RateLimited(..)
        )
        .then(|| Refusal(self.to_string()));
        let acted_on = match &self {
            Self::ForbiddenOn(t, _) => Some(ActedOn(t.clone())),
            _ => None,
        };
        let body = serde_json::json!({
            "code": self.grpc_code() as i32,
            "message": self.to_string(),
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after() {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tracevault\""),
            );
        }
        if let Some(r) = refusal {
            resp.extensions_mut().insert(r);
        }
        if let Some(t) = acted_on {
            resp.extensions_mut().insert(t);
        }
        resp
    }
}

impl From<crate::ratelimit::OverRate> for ApiError {
    fn from(e: crate::ratelimit::OverRate) -> Self {
        let wait = e.retry_after;
        ApiError::RateLimited(e.to_string(), wait)
    }
}
