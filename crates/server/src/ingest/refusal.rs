//! Why the pipeline refused a batch, as a type: each stage says what went wrong in its own
//! terms, and this is the one place that turns a refusal into what the client is told.

use tv_model::validate::RequestError;
use tv_store::StoreError;

use crate::error::ApiError;
use crate::ratelimit::OverRate;

#[derive(Debug)]
pub(crate) enum Refusal {
    /// An automated response quarantined the credential.
    Quarantined(String),
    /// An automated response throttles the credential.
    Throttled(String),
    /// A resource carries no single `service.name` string.
    AmbiguousService(String),
    /// A resource claims a service name in the server's own namespace.
    ReservedService(String),
    /// A credential bound to services sent a resource of another service (or of none).
    ServiceNotOwned { owned: Vec<String> },
    /// The policies do not let this credential ingest for this tenant (the message names them).
    NotPermitted(String),
    /// Over the credential's or the tenant's rate.
    OverRate(OverRate),
    /// The batch is malformed or over a limit.
    Invalid(RequestError),
    /// The store refused the tenant (erased) or the write (overloaded, unavailable).
    Store(StoreError),
    /// The server could not process the batch.
    Internal(String),
}

impl Refusal {
    /// Whether the refusal is a decision about the caller, recorded in the audit log.
    pub(crate) fn audited(&self) -> bool {
        match self {
            Refusal::Quarantined(_)
            | Refusal::Throttled(_)
            | Refusal::ReservedService(_)
            | Refusal::ServiceNotOwned { .. }
            | Refusal::NotPermitted(_)
            | Refusal::OverRate(_) => true,
            Refusal::Store(e) => matches!(e, StoreError::Erased(_)),
            Refusal::AmbiguousService(_) | Refusal::Invalid(_) | Refusal::Internal(_) => false,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Quarantined(m) => ApiError::Forbidden(m),
            // Throttled: an exporter retries after a second.
            Refusal::Throttled(m) => ApiError::RateLimited(m, 1),
            Refusal::AmbiguousService(m) => {
                ApiError::BadRequest(format!("{m} (the batch is refused whole)"))
            }
            Refusal::ReservedService(s) => ApiError::Forbidden(format!(
                "service.name {:?} is reserved for the server's own records (names starting with {:?}); the batch is refused whole",
                s.chars().take(64).collect::<String>(),
                super::RESERVED_SERVICE_PREFIX,
            )),
            // The message names the credential's services, not what the batch claimed.
            Refusal::ServiceNotOwned { owned } => ApiError::Forbidden(format!(
                "credential may write spans only for services [{}]; the batch has a resource of another service or without service.name (rejected whole)",
                owned.join(", "),
            )),
            Refusal::NotPermitted(m) => ApiError::Forbidden(m),
            Refusal::OverRate(e) => ApiError::from(e),
            Refusal::Invalid(e @ RequestError::TooManySpans { .. }) => {
                ApiError::TooLarge(e.to_string())
            }
            Refusal::Invalid(e) => ApiError::BadRequest(e.to_string()),
            Refusal::Store(e) => ApiError::from_store(e),
            Refusal::Internal(m) => ApiError::Internal(m),
        }
    }
}
