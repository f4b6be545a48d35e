//! Per-span validation with OTLP partial success (OTLP 1.x, "Partial Success").
//!
//! A span that breaks a per-span limit is removed from the batch and counted in
//! `rejected_spans`; the rest is kept. Whole-request limits (span count) fail the whole request.

use crate::ids::{SpanId, TraceId};
use crate::limits::Limits;
use crate::otlp::{AnyValue, ExportTraceServiceRequest, KeyValue, any_value::Value};

/// Why a single span was rejected. The variant names are the metric `reason` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidId,
    TooManyAttributes,
    ValueTooLong,
    TooDeep,
    TimestampOutOfWindow,
    InvalidTimeRange,
    /// A span attribute `service.name` naming another service than its resource.
    ServiceConflict,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        Self::InvalidId,
        Self::TooManyAttributes,
        Self::ValueTooLong,
        Self::TooDeep,
        Self::TimestampOutOfWindow,
        Self::InvalidTimeRange,
        Self::ServiceConflict,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidId => "invalid_id",
            Self::TooManyAttributes => "too_many_attributes",
            Self::ValueTooLong => "value_too_long",
            Self::TooDeep => "too_deep",
            Self::TimestampOutOfWindow => "timestamp_out_of_window",
            Self::InvalidTimeRange => "invalid_time_range",
            Self::ServiceConflict => "service_name_conflict",
        }
    }
}

/// A whole-request refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("request carries {got} spans, more than the limit of {limit} spans per request")]
    TooManySpans { got: usize, limit: usize },
}

/// A batch that passed validation. Only [`validate`] constructs one.
#[derive(Debug, Clone)]
pub struct Validated {
    request: ExportTraceServiceRequest,
    accepted: usize,
    rejected: Vec<(RejectReason, usize)>,
    message: Option<String>,
}

impl Validated {
    pub fn request(&self) -> &ExportTraceServiceRequest {
        &self.request
    }
    pub fn into_request(self) -> ExportTraceServiceRequest {
        self.request
    }
    pub fn accepted_spans(&self) -> usize {
        self.accepted
    }
    pub fn rejected_spans(&self) -> usize {
        self.rejected.iter().map(|(_, n)| n).sum()
    }
    /// Rejection counts by reason (for metrics).
    pub fn rejected_by_reason(&self) -> &[(RejectReason, usize)] {
        &self.rejected
    }
    /// The partial-success message, when spans were rejected.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Replaces the request by its redacted form. Redaction only removes attributes and replaces
    /// values (masks, `hmac:` pseudonyms of at most 69 bytes), never spans, ids or times, so the
    /// span counts and partial-success figures of validation still hold.
    pub fn redact_with(
        self,
        f: impl FnOnce(ExportTraceServiceRequest) -> ExportTraceServiceRequest,
    ) -> Validated {
        Validated {
            request: f(self.request),
            ..self
        }
    }
}

struct Rejection {
    reason: RejectReason,
    detail: String,
}

const MAX_MESSAGES: usize = 5;

/// Validates `req` against `limits` at server time `now_unix_nanos`.
pub fn validate(
    mut req: ExportTraceServiceRequest,
    limits: &Limits,
    now_unix_nanos: u64,
) -> Result<Validated, RequestError> {
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum();
    if total > limits.max_spans_per_request {
        return Err(RequestError::TooManySpans {
            got: total,
            limit: limits.max_spans_per_request,
        });
    }
    let min_start = now_unix_nanos.saturating_sub(limits.max_span_age_secs * 1_000_000_000);
    let max_start = now_unix_nanos.saturating_add(limits.max_span_future_secs * 1_000_000_000);

    let mut accepted = 0usize;
    let mut counts: Vec<(RejectReason, usize)> = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    let mut record = |r: Rejection, n: usize, messages: &mut Vec<String>| {
        match counts.iter_mut().find(|(k, _)| *k == r.reason) {
            Some((_, c)) => *c += n,
            None => counts.push((r.reason, n)),
        }
        if messages.len() < MAX_MESSAGES {
            messages.push(r.detail);
        }
    };

    for rs in req.resource_spans.iter_mut() {
        let service = crate::service_name(rs.resource.as_ref()).map(str::to_owned);
        let resource_problem = rs.resource.as_ref().and_then(|r| {
            check_attributes(&r.attributes, limits, "resource")
                .err()
                .map(|mut rej| {
                    rej.detail = format!("resource: {}", rej.detail);
                    rej
                })
        });
        for ss in rs.scope_spans.iter_mut() {
            let scope_problem = ss.scope.as_ref().and_then(|s| {
                check_attributes(&s.attributes, limits, "scope")
                    .err()
                    .or_else(|| {
                        check_str(&s.name, limits, "scope name")
                            .and(check_str(&s.version, limits, "scope version"))
                            .err()
                    })
            });
            if let Some(p) = resource_problem.as_ref().or(scope_problem.as_ref()) {
                let n = ss.spans.len();
                if n > 0 {
                    record(
                        Rejection {
                            reason: p.reason,
                            detail: format!("{n} spans: {}", p.detail),
                        },
                        n,
                        &mut messages,
                    );
                }
                ss.spans.clear();
                continue;
            }
            ss.spans.retain(|span| {
                match check_span(span, service.as_deref(), limits, min_start, max_start) {
                    Ok(()) => {
                        accepted += 1;
                        true
                    }
                    Err(rej) => {
                        let id = if span.span_id.len() == 8 {
                            format!("span {}", hex::encode(&span.span_id))
                        } else {
                            "span".to_owned()
                        };
                        record(
                            Rejection {
                                reason: rej.reason,
                                detail: format!("{id}: {}", rej.detail),
                            },
                            1,
                            &mut messages,
                        );
                        false
                    }
                }
            });
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    req.resource_spans.retain(|rs| !rs.scope_spans.is_empty());

    let rejected: usize = counts.iter().map(|(_, n)| n).sum();
    let message = (rejected > 0).then(|| {
        let mut m = format!(
            "rejected {rejected} of {total} spans: {}",
            messages.join("; ")
        );
        if rejected > messages.len() && messages.len() == MAX_MESSAGES {
            m.push_str("; ...");
        }
        m
    });
    Ok(Validated {
        request: req,
        accepted,
        rejected: counts,
        message,
    })
}

fn check_span(
    span: &crate::otlp::Span,
    service: Option<&str>,
    limits: &Limits,
    min_start: u64,
    max_start: u64,
) -> Result<(), Rejection> {
    // A span belongs to its resource's service; one claiming another is refused, not indexed
    // under either.
    for kv in span.attributes.iter().filter(|kv| kv.key == "service.name") {
        let same = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.as_str()) == service,
            _ => false,
        };
        if !same {
            return Err(Rejection {
                reason: RejectReason::ServiceConflict,
                detail: "span attribute service.name differs from its resource's service.name"
                    .to_owned(),
            });
        }
    }
    let id_err = |e: crate::ids::IdError| Rejection {
        reason: RejectReason::InvalidId,
        detail: e.to_string(),
    };
    TraceId::from_bytes(&span.trace_id).map_err(id_err)?;
    SpanId::from_bytes(&span.span_id).map_err(id_err)?;
    if !span.parent_span_id.is_empty() {
        SpanId::from_bytes(&span.parent_span_id).map_err(|e| Rejection {
            reason: RejectReason::InvalidId,
            detail: format!("parent {e}"),
        })?;
    }
    if span.start_time_unix_nano < min_start || span.start_time_unix_nano > max_start {
        return Err(Rejection {
            reason: RejectReason::TimestampOutOfWindow,
            detail: format!(
                "start time {} ns is outside the accepted window ({} s in the past to {} s in the future)",
                span.start_time_unix_nano, limits.max_span_age_secs, limits.max_span_future_secs
            ),
        });
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(Rejection {
            reason: RejectReason::InvalidTimeRange,
            detail: "end time is before start time".to_owned(),
        });
    }
    check_str(&span.name, limits, "span name")?;
    check_str(&span.trace_state, limits, "trace state")?;
    check_attributes(&span.attributes, limits, "span")?;
    for ev in &span.events {
        check_str(&ev.name, limits, "event name")?;
        check_attributes(&ev.attributes, limits, "event")?;
    }
    for link in &span.links {
        TraceId::from_bytes(&link.trace_id).map_err(|e| Rejection {
            reason: RejectReason::InvalidId,
            detail: format!("link {e}"),
        })?;
        SpanId::from_bytes(&link.span_id).map_err(|e| Rejection {
            reason: RejectReason::InvalidId,
            detail: format!("link {e}"),
        })?;
        check_attributes(&link.attributes, limits, "link")?;
    }
    if let Some(st) = &span.status {
        check_str(&st.message, limits, "status message")?;
    }
    Ok(())
}

fn check_str(s: &str, limits: &Limits, what: &str) -> Result<(), Rejection> {
    if s.len() > limits.max_attribute_value_bytes {
        return Err(Rejection {
            reason: RejectReason::ValueTooLong,
            detail: format!(
                "{what} is {} bytes, over the limit of {} bytes",
                s.len(),
                limits.max_attribute_value_bytes
            ),
        });
    }
    Ok(())
}

fn check_attributes(attrs: &[KeyValue], limits: &Limits, what: &str) -> Result<(), Rejection> {
    if attrs.len() > limits.max_attributes_per_span {
        return Err(Rejection {
            reason: RejectReason::TooManyAttributes,
            detail: format!(
                "{what} has {} attributes, over the limit of {}",
                attrs.len(),
                limits.max_attributes_per_span
            ),
        });
    }
    for kv in attrs {
        check_key_value(kv, limits, 1)?;
    }
    Ok(())
}

fn printable_key(k: &str) -> String {
    let mut s: String = k.chars().take(64).collect();
    if s.len() < k.len() {
        s.push_str("...");
    }
    s
}

fn check_key_value(kv: &KeyValue, limits: &Limits, depth: usize) -> Result<(), Rejection> {
    if kv.key.len() > limits.max_attribute_value_bytes {
        return Err(Rejection {
            reason: RejectReason::ValueTooLong,
            detail: format!(
                "attribute key is {} bytes, over the limit of {} bytes",
                kv.key.len(),
                limits.max_attribute_value_bytes
            ),
        });
    }
    if let Some(v) = &kv.value {
        check_value(v, limits, depth).map_err(|mut r| {
            r.detail = format!("attribute {:?}: {}", printable_key(&kv.key), r.detail);
            r
        })?;
    }
    Ok(())
}

fn check_value(v: &AnyValue, limits: &Limits, depth: usize) -> Result<(), Rejection> {
    if depth > limits.max_value_depth {
        return Err(Rejection {
            reason: RejectReason::TooDeep,
            detail: format!(
                "value nesting exceeds the limit of {} levels",
                limits.max_value_depth
            ),
        });
    }
    let too_long = |len: usize| Rejection {
        reason: RejectReason::ValueTooLong,
        detail: format!(
            "value is {len} bytes, over the limit of {} bytes",
            limits.max_attribute_value_bytes
        ),
    };
    match &v.value {
        Some(Value::StringValue(s)) if s.len() > limits.max_attribute_value_bytes => {
            Err(too_long(s.len()))
        }
        Some(Value::BytesValue(b)) if b.len() > limits.max_attribute_value_bytes => {
            Err(too_long(b.len()))
        }
        Some(Value::ArrayValue(a)) => {
            if a.values.len() > limits.max_attributes_per_span {
                return Err(Rejection {
                    reason: RejectReason::TooManyAttributes,
                    detail: format!(
                        "array has {} elements, over the limit of {}",
                        a.values.len(),
                        limits.max_attributes_per_span
                    ),
                });
            }
            a.values
                .iter()
                .try_for_each(|x| check_value(x, limits, depth + 1))
        }
        Some(Value::KvlistValue(kv)) => {
            if kv.values.len() > limits.max_attributes_per_span {
                return Err(Rejection {
                    reason: RejectReason::TooManyAttributes,
                    detail: format!(
                        "key-value list has {} entries, over the limit of {}",
                        kv.values.len(),
                        limits.max_attributes_per_span
                    ),
                });
            }
            kv.values
                .iter()
                .try_for_each(|x| check_key_value(x, limits, depth + 1))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::*;

    const NOW: u64 = 1_750_000_000_000_000_000;

    fn span(tid: u8, sid: u8) -> Span {
        Span {
            trace_id: vec![tid; 16],
            span_id: vec![sid; 8],
            name: "op".into(),
            start_time_unix_nano: NOW - 1_000,
            end_time_unix_nano: NOW,
            ..Default::default()
        }
    }

    fn req(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn valid_batch_passes_whole() {
        let v = validate(req(vec![span(1, 1), span(1, 2)]), &Limits::default(), NOW).unwrap();
        assert_eq!(v.accepted_spans(), 2);
        assert_eq!(v.rejected_spans(), 0);
        assert!(v.message().is_none());
    }

    #[test]
    fn bad_spans_are_rejected_individually() {
        let mut zero = span(0, 1);
        zero.trace_id = vec![0; 16];
        let mut short = span(1, 3);
        short.span_id = vec![1; 4];
        let mut old = span(1, 4);
        old.start_time_unix_nano = NOW - 31 * 24 * 3600 * 1_000_000_000;
        let mut future = span(1, 5);
        future.start_time_unix_nano = NOW + 2 * 3600 * 1_000_000_000;
        future.end_time_unix_nano = future.start_time_unix_nano;
        let mut many = span(1, 6);
        many.attributes = (0..300)
            .map(|i| kv(&format!("k{i}"), Value::IntValue(i)))
            .collect();
        let mut long = span(1, 7);
        long.attributes = vec![kv("big", Value::StringValue("x".repeat(70_000)))];
        let v = validate(
            req(vec![span(1, 1), zero, short, old, future, many, long]),
            &Limits::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(v.accepted_spans(), 1);
        assert_eq!(v.rejected_spans(), 6);
        let m = v.message().unwrap();
        assert!(m.starts_with("rejected 6 of 7 spans"), "{m}");
        assert!(m.contains("trace id must not be all zeros"), "{m}");
        assert!(m.contains("span id must be 8 bytes, got 4"), "{m}");
        assert!(m.contains("outside the accepted window"), "{m}");
        assert!(m.contains("300 attributes, over the limit of 256"), "{m}");
        assert_eq!(v.request().resource_spans[0].scope_spans[0].spans.len(), 1);
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut val = AnyValue {
            value: Some(Value::StringValue("leaf".into())),
        };
        for _ in 0..10 {
            val = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![val] })),
            };
        }
        let mut s = span(1, 1);
        s.attributes = vec![KeyValue {
            key: "deep".into(),
            value: Some(val),
            ..Default::default()
        }];
        let v = validate(req(vec![s]), &Limits::default(), NOW).unwrap();
        assert_eq!(v.rejected_by_reason(), &[(RejectReason::TooDeep, 1)]);
        assert!(v.message().unwrap().contains("limit of 8 levels"));
    }

    #[test]
    fn too_many_spans_fails_whole_request() {
        let limits = Limits {
            max_spans_per_request: 2,
            ..Limits::default()
        };
        let err =
            validate(req(vec![span(1, 1), span(1, 2), span(1, 3)]), &limits, NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "request carries 3 spans, more than the limit of 2 spans per request"
        );
    }

    #[test]
    fn error_messages_never_carry_values() {
        let mut s = span(1, 1);
        s.attributes = vec![kv("secret", Value::StringValue("hunter2".repeat(20_000)))];
        let v = validate(req(vec![s]), &Limits::default(), NOW).unwrap();
        assert!(!v.message().unwrap().contains("hunter2"));
    }
}
