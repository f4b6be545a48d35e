//! Pure data model for tracevault: validated identifiers, OTLP decode limits and span validation.
//!
//! This crate does no I/O. Untrusted bytes enter through [`decode`] (bounded decompression, protobuf
//! and OTLP/JSON decoding) and [`validate::validate`] (per-span limits, OTLP partial success); what
//! comes out is a [`validate::Validated`] batch that only validation can construct, so code downstream
//! (storage, redaction) cannot be handed an unchecked request.
//!
//! ```
//! use tv_model::TenantId;
//! assert!(TenantId::parse("acme-prod").is_ok());
//! assert!(TenantId::parse("../etc").is_err());
//! ```
#![forbid(unsafe_code)]

pub mod decode;
pub mod footprint;
pub mod ids;
pub mod limits;
pub mod tenant;
pub mod validate;

pub use ids::{SpanId, TraceId};
pub use limits::Limits;
pub use tenant::TenantId;

/// Re-export of the OTLP protobuf types this project speaks (OTLP 1.x, `opentelemetry-proto`).
pub mod otlp {
    pub use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    pub use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
    };
    pub use opentelemetry_proto::tonic::resource::v1::Resource;
    pub use opentelemetry_proto::tonic::trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status, TracesData, span, status,
    };
}

/// Why a resource has no single service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error("resource {resource} carries service.name {count} times: a resource names one service")]
    Duplicate { resource: usize, count: usize },
    #[error("resource {resource} has a service.name that is not a string")]
    NotString { resource: usize },
}

/// The one service of each resource of a batch (`None`: the resource names none), decided once
/// from the raw batch. A resource that names its service twice, or not as a string, is
/// ambiguous: the batch is refused rather than one of the names picked.
pub fn canonical_services(
    req: &otlp::ExportTraceServiceRequest,
) -> Result<Vec<Option<&str>>, ServiceError> {
    req.resource_spans
        .iter()
        .enumerate()
        .map(|(i, rs)| {
            let mut named = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter(|kv| kv.key == "service.name");
            let Some(first) = named.next() else {
                return Ok(None);
            };
            let more = named.count();
            if more > 0 {
                return Err(ServiceError::Duplicate {
                    resource: i,
                    count: more + 1,
                });
            }
            match first.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(otlp::any_value::Value::StringValue(s)) => Ok(Some(s.as_str())),
                _ => Err(ServiceError::NotString { resource: i }),
            }
        })
        .collect()
}

/// Returns the `service.name` of a resource, or `None` when it has none or it is not a string.
pub fn service_name(resource: Option<&otlp::Resource>) -> Option<&str> {
    let resource = resource?;
    resource.attributes.iter().find_map(|kv| {
        if kv.key != "service.name" {
            return None;
        }
        match kv.value.as_ref()?.value.as_ref()? {
            otlp::any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// The spans in `resource_spans`.
pub fn span_count(resource_spans: &[otlp::ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Renders an attribute value as a flat string for indexing and tag matching (not for display of
/// nested structure, which keeps its JSON form).
pub fn any_value_to_string(v: &otlp::AnyValue) -> String {
    use otlp::any_value::Value;
    match v.value.as_ref() {
        // `string_value_strindex` only has meaning inside a profiles dictionary.
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::ArrayValue(a)) => {
            let parts: Vec<String> = a.values.iter().map(any_value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Some(Value::KvlistValue(kv)) => {
            let parts: Vec<String> = kv
                .values
                .iter()
                .map(|p| {
                    let v = p
                        .value
                        .as_ref()
                        .map(any_value_to_string)
                        .unwrap_or_default();
                    format!("{}={}", p.key, v)
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}
