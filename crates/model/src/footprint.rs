//! What decoding a request would cost, counted before it is decoded.
//!
//! A protobuf message costs its in-memory struct however few bytes it takes on the wire: an
//! empty span is 2 bytes in OTLP protobuf (and `{}` 3 bytes in OTLP/JSON) but a ~260-byte
//! [`Span`](crate::otlp::Span) once decoded, so a 16 MiB body can become gigabytes. The scan here
//! walks the body with the wire format's own primitives (`prost::encoding` for protobuf,
//! `serde_json`'s parser for JSON), allocating nothing, and counts spans, attributes, value
//! nesting and an upper bound of the decoded memory; it stops at the first limit crossed, so an
//! abusive request is refused after reading at most its own bytes.
//!
//! The bound is deliberately pessimistic: every repeated element counts three times its struct
//! size (a vector grown by doubling has at most twice its length in capacity, and while it moves
//! to a larger allocation the old one is still held), every non-empty string or byte field its
//! length plus an allocation's overhead, every occurrence of a field even when protobuf would
//! merge or replace it. Unknown fields cost nothing (the decoder skips them).

use std::mem::size_of;

use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::decode::DecodeError;
use crate::limits::Limits;
use crate::otlp;

/// Deepest nesting of attribute values that is decoded at all. Values nested deeper than
/// [`Limits::max_value_depth`] (8) are refused per span; past this depth the request is refused
/// whole, before the decoder's own recursion limit is reached.
pub const MAX_DECODE_DEPTH: usize = 32;

/// What one element of a repeated field may cost, in multiples of its size: capacity up to
/// twice the length, plus the old allocation while the vector grows.
const REPEATED: usize = 3;

/// Allocator overhead assumed for each heap allocation (string, bytes).
const ALLOC_OVERHEAD: usize = 16;

/// What a request holds and would cost once decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub spans: usize,
    /// Attributes of every resource, scope, span, event and link, nested key-value pairs
    /// included.
    pub attributes: usize,
    /// Deepest nesting of attribute values (a scalar is 1, an array of scalars 2).
    pub max_depth: usize,
    /// Upper bound of the decoded request's memory, in bytes.
    pub memory: usize,
}

/// The messages of an `ExportTraceServiceRequest` whose decoding allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// What a field holds.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A message; `repeated` fields allocate one element each.
    Message { kind: Kind, repeated: bool },
    /// A string or bytes field (`repeated`: one `String` each in a vector).
    Bytes { repeated: bool },
}

const fn msg(kind: Kind) -> Option<Field> {
    Some(Field::Message {
        kind,
        repeated: false,
    })
}
const fn list(kind: Kind) -> Option<Field> {
    Some(Field::Message {
        kind,
        repeated: true,
    })
}
const BYTES: Option<Field> = Some(Field::Bytes { repeated: false });
const STRINGS: Option<Field> = Some(Field::Bytes { repeated: true });

impl Kind {
    /// The struct size one element of a repeated field of this kind takes.
    fn size(self) -> usize {
        use otlp::*;
        match self {
            Kind::Request => size_of::<ExportTraceServiceRequest>(),
            Kind::ResourceSpans => size_of::<ResourceSpans>(),
            Kind::Resource => size_of::<Resource>(),
            Kind::EntityRef => size_of::<opentelemetry_proto::tonic::common::v1::EntityRef>(),
            Kind::ScopeSpans => size_of::<ScopeSpans>(),
            Kind::Scope => size_of::<InstrumentationScope>(),
            Kind::Span => size_of::<Span>(),
            Kind::Event => size_of::<span::Event>(),
            Kind::Link => size_of::<span::Link>(),
            Kind::Status => size_of::<Status>(),
            Kind::KeyValue => size_of::<KeyValue>(),
            Kind::AnyValue => size_of::<AnyValue>(),
            Kind::ArrayValue => size_of::<ArrayValue>(),
            Kind::KeyValueList => size_of::<KeyValueList>(),
        }
    }

    /// The field with protobuf tag `tag` (OTLP 1.x `trace.proto`, `common.proto`,
    /// `resource.proto`); `None` for scalars and unknown fields.
    fn field(self, tag: u32) -> Option<Field> {
        use Kind::*;
        match (self, tag) {
            (Request, 1) => list(ResourceSpans),
            (ResourceSpans, 1) => msg(Resource),
            (ResourceSpans, 2) => list(ScopeSpans),
            (ResourceSpans, 3) => BYTES,
            (Resource, 1) => list(KeyValue),
            (Resource, 3) => list(EntityRef),
            (EntityRef, 1 | 2) => BYTES,
            (EntityRef, 3 | 4) => STRINGS,
            (ScopeSpans, 1) => msg(Scope),
            (ScopeSpans, 2) => list(Span),
            (ScopeSpans, 3) => BYTES,
            (Scope, 1 | 2) => BYTES,
            (Scope, 3) => list(KeyValue),
            (Span, 1..=5) => BYTES,
            (Span, 9) => list(KeyValue),
            (Span, 11) => list(Event),
            (Span, 13) => list(Link),
            (Span, 15) => msg(Status),
            (Event, 2) => BYTES,
            (Event, 3) => list(KeyValue),
            (Link, 1..=3) => BYTES,
            (Link, 4) => list(KeyValue),
            (Status, 2) => BYTES,
            (KeyValue, 1) => BYTES,
            (KeyValue, 2) => msg(AnyValue),
            (AnyValue, 1 | 7) => BYTES,
            (AnyValue, 5) => msg(ArrayValue),
            (AnyValue, 6) => msg(KeyValueList),
            (ArrayValue, 1) => list(AnyValue),
            (KeyValueList, 1) => list(KeyValue),
            _ => None,
        }
    }

    /// The field named `name` in OTLP/JSON (lowerCamelCase, OTLP 1.x "JSON Protobuf
    /// Encoding"); the proto names are accepted too, so the bound holds for either spelling.
    fn json_field(self, name: &str) -> Option<Field> {
        use Kind::*;
        let tag = match (self, name) {
            (Request, "resourceSpans" | "resource_spans") => 1,
            (ResourceSpans, "resource") => 1,
            (ResourceSpans, "scopeSpans" | "scope_spans") => 2,
            (ResourceSpans | ScopeSpans, "schemaUrl" | "schema_url") => 3,
            (Resource, "attributes") => 1,
            (Scope, "attributes") => 3,
            (Resource, "entityRefs" | "entity_refs") => 3,
            (EntityRef, "schemaUrl" | "schema_url") => 1,
            (EntityRef, "type") => 2,
            (EntityRef, "idKeys" | "id_keys") => 3,
            (EntityRef, "descriptionKeys" | "description_keys") => 4,
            (ScopeSpans, "scope") => 1,
            (ScopeSpans, "spans") => 2,
            (Scope, "name") => 1,
            (Scope, "version") => 2,
            (Span | Link, "traceId" | "trace_id") => 1,
            (Span | Link, "spanId" | "span_id") => 2,
            (Span | Link, "traceState" | "trace_state") => 3,
            (Span, "parentSpanId" | "parent_span_id") => 4,
            (Span, "name") => 5,
            (Span, "attributes") => 9,
            (Span, "events") => 11,
            (Span, "links") => 13,
            (Span, "status") => 15,
            (Event, "name") => 2,
            (Event, "attributes") => 3,
            (Link, "attributes") => 4,
            (Status, "message") => 2,
            (KeyValue, "key") => 1,
            (KeyValue, "value") => 2,
            (AnyValue, "stringValue" | "string_value") => 1,
            (AnyValue, "arrayValue" | "array_value") => 5,
            (AnyValue, "kvlistValue" | "kvlist_value") => 6,
            (AnyValue, "bytesValue" | "bytes_value") => 7,
            (ArrayValue | KeyValueList, "values") => 1,
            _ => return None,
        };
        self.field(tag)
    }

    /// Whether entering this kind nests an attribute value one level deeper.
    fn nests(self) -> bool {
        matches!(self, Kind::AnyValue)
    }
}

/// The running count, checked against the limits as it grows.
struct Counter<'a> {
    limits: &'a Limits,
    fp: Footprint,
}

impl Counter<'_> {
    fn element(&mut self, kind: Kind, repeated: bool) -> Result<(), DecodeError> {
        match kind {
            Kind::Span => {
                self.fp.spans += 1;
                if self.fp.spans > self.limits.max_spans_per_request {
                    return Err(DecodeError::TooManySpans {
                        limit: self.limits.max_spans_per_request,
                    });
                }
            }
            Kind::KeyValue => self.fp.attributes += 1,
            _ => {}
        }
        if repeated {
            self.memory(REPEATED * kind.size())?;
        }
        Ok(())
    }

    fn bytes(&mut self, len: usize, repeated: bool) -> Result<(), DecodeError> {
        let mut cost = if len > 0 { len + ALLOC_OVERHEAD } else { 0 };
        if repeated {
            cost += REPEATED * size_of::<String>();
        }
        self.memory(cost)
    }

    fn memory(&mut self, n: usize) -> Result<(), DecodeError> {
        self.fp.memory = self.fp.memory.saturating_add(n);
        if self.fp.memory > self.limits.max_decoded_bytes {
            return Err(DecodeError::DecodedTooLarge {
                limit: self.limits.max_decoded_bytes,
                spans: self.fp.spans,
                attributes: self.fp.attributes,
            });
        }
        Ok(())
    }

    fn nest(&mut self, depth: usize) -> Result<(), DecodeError> {
        self.fp.max_depth = self.fp.max_depth.max(depth);
        if depth > MAX_DECODE_DEPTH {
            return Err(DecodeError::TooDeep {
                limit: MAX_DECODE_DEPTH,
            });
        }
        Ok(())
    }
}

/// Counts what decoding the OTLP protobuf `ExportTraceServiceRequest` in `body` would cost,
/// stopping at the first limit crossed. Malformed input is reported as the decoder would.
pub fn scan_protobuf(body: &[u8], limits: &Limits) -> Result<Footprint, DecodeError> {
    let mut c = Counter {
        limits,
        fp: Footprint::default(),
    };
    let mut buf = body;
    walk(&mut buf, Kind::Request, 0, &mut c)?;
    Ok(c.fp)
}

fn proto_err(e: prost::DecodeError) -> DecodeError {
    DecodeError::Protobuf(e.to_string())
}

/// Walks one message's fields in `buf`; `depth` is the attribute-value nesting so far.
fn walk(buf: &mut &[u8], kind: Kind, depth: usize, c: &mut Counter) -> Result<(), DecodeError> {
    while buf.has_remaining() {
        let (tag, wire) = decode_key(buf).map_err(proto_err)?;
        let field = kind
            .field(tag)
            .filter(|_| wire == WireType::LengthDelimited);
        let Some(field) = field else {
            skip_field(wire, tag, buf, DecodeContext::default()).map_err(proto_err)?;
            continue;
        };
        let len = decode_varint(buf).map_err(proto_err)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= buf.len())
            .ok_or_else(|| DecodeError::Protobuf("buffer underflow".into()))?;
        let (mut inner, rest) = buf.split_at(len);
        *buf = rest;
        match field {
            Field::Bytes { repeated } => c.bytes(len, repeated)?,
            Field::Message { kind: k, repeated } => {
                c.element(k, repeated)?;
                let d = if k.nests() { depth + 1 } else { depth };
                c.nest(d)?;
                walk(&mut inner, k, d, c)?;
            }
        }
    }
    Ok(())
}

/// Counts what decoding the OTLP/JSON `ExportTraceServiceRequest` in `body` would cost,
/// stopping at the first limit crossed.
pub fn scan_json(body: &[u8], limits: &Limits) -> Result<Footprint, DecodeError> {
    let mut c = Counter {
        limits,
        fp: Footprint::default(),
    };
    let mut exceeded = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let res = serde::de::DeserializeSeed::deserialize(
        json::Walk {
            kind: Kind::Request,
            depth: 0,
            c: &mut c,
            exceeded: &mut exceeded,
        },
        &mut de,
    )
    .and_then(|()| de.end());
    match (exceeded, res) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(DecodeError::Json(e.to_string())),
        (None, Ok(())) => Ok(c.fp),
    }
}

mod json {
    //! The JSON walk: serde visitors that count instead of building.
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{Counter, DecodeError, Field, Kind};

    /// Visitor methods that accept a scalar or `null` and count nothing.
    macro_rules! ignore_scalars {
        () => {
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
                Ok(())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
                Ok(())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
                Ok(())
            }
        };
    }

    pub(super) struct Walk<'a, 'b, 'c> {
        pub kind: Kind,
        pub depth: usize,
        pub c: &'a mut Counter<'b>,
        pub exceeded: &'c mut Option<DecodeError>,
    }

    fn stop<E: de::Error>(slot: &mut Option<DecodeError>, e: DecodeError) -> E {
        let msg = e.to_string();
        *slot = Some(e);
        E::custom(msg)
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an OTLP/JSON object")
        }
        // `null` and scalars where a message is expected are the decoder's to judge.
        ignore_scalars!();
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(field) = map.next_key_seed(FieldOf(self.kind))? {
                match field {
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    Some(Field::Bytes { repeated }) => {
                        map.next_value_seed(Strings {
                            repeated,
                            c: &mut *self.c,
                            exceeded: &mut *self.exceeded,
                        })?;
                    }
                    Some(Field::Message { kind, repeated }) => {
                        map.next_value_seed(Elements {
                            kind,
                            repeated,
                            depth: self.depth,
                            c: &mut *self.c,
                            exceeded: &mut *self.exceeded,
                        })?;
                    }
                }
            }
            Ok(())
        }
    }

    /// An object key, looked up as a field of `Kind` without being copied.
    struct FieldOf(Kind);

    impl<'de> DeserializeSeed<'de> for FieldOf {
        type Value = Option<Field>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Field>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for FieldOf {
        type Value = Option<Field>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a field name")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<Field>, E> {
            Ok(self.0.json_field(s))
        }
    }

    /// The length of a string (0 for anything else).
    struct Len(usize);

    impl<'de> de::Deserialize<'de> for Len {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Len;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    write!(f, "a string")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Len, E> {
                    Ok(Len(s.len()))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Len, E> {
                    Ok(Len(0))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// A message field's value: one element, or an array of them for a repeated field.
    struct Elements<'a, 'b, 'c> {
        kind: Kind,
        repeated: bool,
        depth: usize,
        c: &'a mut Counter<'b>,
        exceeded: &'c mut Option<DecodeError>,
    }

    impl Elements<'_, '_, '_> {
        fn one<'de, D: de::Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
            let depth = if self.kind.nests() {
                self.depth + 1
            } else {
                self.depth
            };
            if let Err(e) = self
                .c
                .element(self.kind, self.repeated)
                .and_then(|()| self.c.nest(depth))
            {
                return Err(stop(self.exceeded, e));
            }
            Walk {
                kind: self.kind,
                depth,
                c: &mut *self.c,
                exceeded: &mut *self.exceeded,
            }
            .deserialize(d)
        }
    }

    impl<'de> DeserializeSeed<'de> for Elements<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
            if self.repeated {
                d.deserialize_any(self)
            } else {
                self.one(d)
            }
        }
    }

    impl<'de> Visitor<'de> for Elements<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an array")
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(One(&mut self))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
            // Not an array where one is expected: the decoder refuses it; count it as one.
            self.one(de::value::MapAccessDeserializer::new(map))
        }
    }

    struct One<'x, 'a, 'b, 'c>(&'x mut Elements<'a, 'b, 'c>);

    impl<'de> DeserializeSeed<'de> for One<'_, '_, '_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            self.0.one(d)
        }
    }

    /// A string or bytes field (base64 or hex in JSON): its length is what it will allocate
    /// (at most; decoding base64 or hex shrinks it).
    struct Strings<'a, 'b, 'c> {
        repeated: bool,
        c: &'a mut Counter<'b>,
        exceeded: &'c mut Option<DecodeError>,
    }

    impl<'de> DeserializeSeed<'de> for Strings<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strings<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
            self.c
                .bytes(s.len(), self.repeated)
                .map_err(|e| stop(self.exceeded, e))
        }
        // A number or `null` where a string is expected is the decoder's to judge.
        ignore_scalars!();
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            // A repeated string field.
            while let Some(n) = seq.next_element::<Len>()? {
                self.c
                    .bytes(n.0, true)
                    .map_err(|e| stop(&mut *self.exceeded, e))?;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::*;
    use proptest::prelude::*;
    use prost::Message;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>, resource: Vec<KeyValue>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// `n` empty spans (2 bytes each on the wire) in one scope, encoded by hand the way an
    /// attacker would: `0a <len> 12 <len> (12 00){n}`.
    fn empty_spans_protobuf(n: usize) -> Vec<u8> {
        let mut scope = Vec::new();
        for _ in 0..n {
            scope.extend_from_slice(&[0x12, 0x00]);
        }
        let mut rs = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut rs);
        rs.extend_from_slice(&scope);
        let mut out = vec![0x0a];
        prost::encoding::encode_varint(rs.len() as u64, &mut out);
        out.extend_from_slice(&rs);
        out
    }

    #[test]
    fn empty_span_amplification_stops_at_the_span_limit() {
        let body = empty_spans_protobuf(200_000);
        let limits = Limits::default();
        let err = scan_protobuf(&body, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "request carries more than the limit of 50000 spans per request"
        );
        assert!(err.is_limit());
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            vec!["{}"; 200_000].join(",")
        );
        let err = scan_json(json.as_bytes(), &limits).unwrap_err();
        assert!(matches!(err, DecodeError::TooManySpans { limit: 50_000 }));
    }

    #[test]
    fn empty_attribute_amplification_stops_at_the_memory_limit() {
        // 2 bytes per empty attribute on the wire, a KeyValue (~60 bytes) each decoded.
        let span = Span {
            attributes: vec![KeyValue::default(); 3_000_000],
            ..Default::default()
        };
        let body = request(vec![span], vec![]).encode_to_vec();
        assert!(body.len() < 7 * 1024 * 1024);
        let err = scan_protobuf(&body, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, DecodeError::DecodedTooLarge { limit, .. } if limit == 256 << 20),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("limit of 268435456 bytes of memory"),
            "{err}"
        );
    }

    #[test]
    fn nesting_past_the_decode_depth_is_refused_whole() {
        let mut v = any_value::Value::StringValue("x".into());
        for _ in 0..MAX_DECODE_DEPTH {
            v = any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(v) }],
            });
        }
        let span = Span {
            attributes: vec![kv("deep", v)],
            ..Default::default()
        };
        let req = request(vec![span], vec![]);
        let err = scan_protobuf(&req.encode_to_vec(), &Limits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TooDeep { limit: 32 }), "{err}");
        let err = scan_json(&serde_json::to_vec(&req).unwrap(), &Limits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TooDeep { limit: 32 }), "{err}");
    }

    #[test]
    fn malformed_protobuf_is_reported_not_counted() {
        let err = scan_protobuf(b"\x0a\xff\xff\xff\x0f", &Limits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf(_)), "{err}");
        assert!(!err.is_limit());
        let err = scan_json(b"{\"resourceSpans\": [", &Limits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{err}");
    }

    fn arb_value() -> impl Strategy<Value = any_value::Value> {
        let leaf = prop_oneof![
            "[a-z]{0,12}".prop_map(any_value::Value::StringValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|vs| {
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vs
                            .into_iter()
                            .map(|v| AnyValue { value: Some(v) })
                            .collect(),
                    })
                }),
                proptest::collection::vec(("[a-z]{1,6}".prop_map(String::from), inner), 0..4)
                    .prop_map(|kvs| {
                        any_value::Value::KvlistValue(KeyValueList {
                            values: kvs.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                        })
                    }),
            ]
        })
    }

    fn arb_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let attrs = || {
            proptest::collection::vec(("[a-z.]{1,10}".prop_map(String::from), arb_value()), 0..5)
        };
        let span = (attrs(), "[ -~]{0,20}", 0..3usize).prop_map(|(a, name, events)| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name,
            attributes: a.into_iter().map(|(k, v)| kv(&k, v)).collect(),
            events: (0..events)
                .map(|i| span::Event {
                    name: format!("e{i}"),
                    attributes: vec![kv("n", any_value::Value::IntValue(i as i64))],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        (proptest::collection::vec(span, 0..6), attrs()).prop_map(|(spans, res)| {
            request(spans, res.into_iter().map(|(k, v)| kv(&k, v)).collect())
        })
    }

    fn count_kvs(kvs: &[KeyValue]) -> usize {
        kvs.iter()
            .map(|kv| 1 + kv.value.as_ref().map_or(0, count_value))
            .sum()
    }

    fn count_value(v: &AnyValue) -> usize {
        match &v.value {
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(count_value).sum(),
            Some(any_value::Value::KvlistValue(l)) => count_kvs(&l.values),
            _ => 0,
        }
    }

    proptest! {
        /// The scan counts what the decoder builds, in both encodings.
        #[test]
        fn scan_counts_what_decoding_builds(req in arb_request()) {
            let spans: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
            let attributes: usize = req.resource_spans.iter().map(|r| {
                count_kvs(&r.resource.as_ref().unwrap().attributes)
                    + r.scope_spans.iter().flat_map(|s| &s.spans).map(|s| {
                        count_kvs(&s.attributes) + s.events.iter().map(|e| count_kvs(&e.attributes)).sum::<usize>()
                    }).sum::<usize>()
            }).sum();
            let limits = Limits::default();
            let pb = scan_protobuf(&req.encode_to_vec(), &limits).unwrap();
            prop_assert_eq!(pb.spans, spans);
            prop_assert_eq!(pb.attributes, attributes);
            let js = scan_json(&serde_json::to_vec(&req).unwrap(), &limits).unwrap();
            prop_assert_eq!(js.spans, spans);
            prop_assert_eq!(js.attributes, attributes);
            prop_assert!(pb.memory >= spans * size_of::<Span>());
        }
    }
}
