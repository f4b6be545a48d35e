//! The redaction engine: detectors that find personal data and secrets in text and validate what
//! they find (checksums, ranges, parsing, context), SQL and URL scrubbers, per-tenant and
//! per-service rules, and the engine that applies them to OTLP batches. Pure: no I/O, no server
//! dependencies, so the edge agent runs the same code.
//!
//! ```
//! use tv_redact::{PseudonymKey, Rules, redact};
//! use tv_model::otlp::*;
//! let span = Span {
//!     name: "charge".into(),
//!     attributes: vec![KeyValue {
//!         key: "note".into(),
//!         value: Some(AnyValue { value: Some(any_value::Value::StringValue(
//!             "card 4111 1111 1111 1111".into())) }),
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let req = ExportTraceServiceRequest { resource_spans: vec![ResourceSpans {
//!     scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
//!     ..Default::default()
//! }] };
//! let out = redact(&Rules::builtin(), "acme", &PseudonymKey::new(&[7; 32]), req);
//! let v = &out.request.resource_spans[0].scope_spans[0].spans[0].attributes[0];
//! assert_eq!(tv_model::any_value_to_string(v.value.as_ref().unwrap()), "card ****1111");
//! assert_eq!(out.report.total(), 1);
//! ```
#![forbid(unsafe_code)]

pub mod detect;
pub mod disguise;
pub mod engine;
pub mod names;
pub mod normalize;
pub mod policy;
pub mod secrets;
pub mod sql;
pub mod url;

pub use detect::{Finding, Kind, scan};
pub use engine::{Hit, PseudonymKey, Redacted, Report, pseudonym_of, pseudonyms_of, redact};
pub use policy::{ActionKind, Mode, Rules, RulesConfig, RulesError};

/// Version of the engine's built-in behaviour (detectors and default rules); part of every
/// policy digest, so a changed engine shows up as a changed policy version in the log.
pub const ENGINE_VERSION: &str = "tv-redact/3";
