//! Span commitments of one committed record (see `tv_tlog::commit` for the hashing): which fields a
//! span has, how each is encoded, and the canonical order, shared by ingest (computing the leaf),
//! sealing and `verify` (re-deriving it from a block) and receipts (opening one span).
//!
//! Canonical order of a record's spans: stably sorted by (trace id, start time); blocks keep the
//! same order for the rows of each record, so a record's spans can be re-derived from its block.
//! Keystream layout: one salt per distinct resource, then one per distinct scope (in order of first
//! appearance in canonical order), then every span's own fields in canonical order.
//!
//! Fields of a span, in order (integers big-endian; messages as their protobuf encoding):
//! `resource` (the resource with its schema url), `scope` (the scope with its schema url),
//! `span` (trace id [16] | span id [8] | parent length u8 | parent id | flags u32 | kind u32 |
//! start u64 | end u64 | dropped attributes, events, links: 3 x u32), `trace_state`, `name`,
//! `status` (Status), `attributes/<key>` (AnyValue) per attribute in order, `events/<i>` (Event),
//! `links/<i>` (Link).

use std::collections::HashMap;

use prost::Message;
use tv_model::otlp::{ExportTraceServiceRequest, Span};
use tv_tlog::commit::{self, Digest, FieldOpening, Salt};

use crate::block::{resource_key, scope_key};

/// The digest recorded for data committed without redaction (records written before redaction
/// existed, and servers started with `--no-redaction`): the digest of the empty policy's name.
pub fn policy_digest() -> Digest {
    commit::sha256(b"tracevault/redaction-policy/none/v1")
}

/// One span of a record in canonical order, with its resource and scope (indexes into tables).
#[derive(Debug, Clone)]
pub struct CanonSpan<'a> {
    pub resource: u32,
    pub scope: u32,
    pub span: &'a Span,
}

/// A record's spans in canonical order with their resource and scope tables.
#[derive(Debug, Default)]
pub struct CanonRecord<'a> {
    pub resources: Vec<Vec<u8>>,
    pub scopes: Vec<Vec<u8>>,
    pub spans: Vec<CanonSpan<'a>>,
}

impl<'a> CanonRecord<'a> {
    /// The canonical form of a request as it was committed.
    pub fn of_request(req: &'a ExportTraceServiceRequest) -> Self {
        let mut out = CanonRecord::default();
        let mut rmap: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut smap: HashMap<Vec<u8>, u32> = HashMap::new();
        for rs in &req.resource_spans {
            let r = out.intern_resource(&mut rmap, resource_key(rs));
            for ss in &rs.scope_spans {
                let s = out.intern_scope(&mut smap, scope_key(ss));
                for span in &ss.spans {
                    out.spans.push(CanonSpan {
                        resource: r,
                        scope: s,
                        span,
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// Equal resources (and scopes) are one entry: identity is by encoded bytes, as in blocks.
    pub fn intern_resource(&mut self, map: &mut HashMap<Vec<u8>, u32>, key: Vec<u8>) -> u32 {
        intern(&mut self.resources, map, key)
    }

    pub fn intern_scope(&mut self, map: &mut HashMap<Vec<u8>, u32>, key: Vec<u8>) -> u32 {
        intern(&mut self.scopes, map, key)
    }

    /// Sorts spans into canonical order (stable: ties keep their order).
    pub fn sort(&mut self) {
        self.spans.sort_by(|a, b| {
            (a.span.trace_id.as_slice(), a.span.start_time_unix_nano)
                .cmp(&(b.span.trace_id.as_slice(), b.span.start_time_unix_nano))
        });
    }
}

/// The number of `key` in `table` (appended when new); `map` indexes the table.
pub fn intern(table: &mut Vec<Vec<u8>>, map: &mut HashMap<Vec<u8>, u32>, key: Vec<u8>) -> u32 {
    if let Some(i) = map.get(key.as_slice()) {
        return *i;
    }
    let i = table.len() as u32;
    table.push(key.clone());
    map.insert(key, i);
    i
}

/// A field value, encoded on demand into the hasher's buffer.
enum Value<'a> {
    Bytes(&'a [u8]),
    Msg(&'a dyn Fn(&mut Vec<u8>)),
}

fn write_value(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::Msg(f) => f(out),
    }
}

/// The `span` field: the span's identity and shape, one field because none of it is worth
/// withholding on its own (the ids name the span a receipt proves).
pub fn span_core(span: &Span, out: &mut Vec<u8>) {
    out.extend_from_slice(&span.trace_id);
    out.extend_from_slice(&span.span_id);
    out.push(span.parent_span_id.len() as u8);
    out.extend_from_slice(&span.parent_span_id);
    out.extend_from_slice(&span.flags.to_be_bytes());
    out.extend_from_slice(&(span.kind as u32).to_be_bytes());
    out.extend_from_slice(&span.start_time_unix_nano.to_be_bytes());
    out.extend_from_slice(&span.end_time_unix_nano.to_be_bytes());
    out.extend_from_slice(&span.dropped_attributes_count.to_be_bytes());
    out.extend_from_slice(&span.dropped_events_count.to_be_bytes());
    out.extend_from_slice(&span.dropped_links_count.to_be_bytes());
}

/// Visits a span's own fields (not resource and scope) in canonical order.
fn span_fields(span: &Span, f: &mut dyn FnMut(&str, &str, Value<'_>)) {
    let core = |o: &mut Vec<u8>| span_core(span, o);
    f("span", "", Value::Msg(&core));
    f("trace_state", "", Value::Bytes(span.trace_state.as_bytes()));
    f("name", "", Value::Bytes(span.name.as_bytes()));
    let status = |o: &mut Vec<u8>| {
        if let Some(s) = &span.status {
            s.encode(o).expect("vec grows");
        }
    };
    f("status", "", Value::Msg(&status));
    for kv in &span.attributes {
        let v = |o: &mut Vec<u8>| {
            if let Some(v) = &kv.value {
                v.encode(o).expect("vec grows");
            }
        };
        f("attributes/", &kv.key, Value::Msg(&v));
    }
    let mut num = itoa_buf();
    for (i, e) in span.events.iter().enumerate() {
        let v = |o: &mut Vec<u8>| e.encode(o).expect("vec grows");
        f("events/", itoa(&mut num, i), Value::Msg(&v));
    }
    for (i, l) in span.links.iter().enumerate() {
        let v = |o: &mut Vec<u8>| l.encode(o).expect("vec grows");
        f("links/", itoa(&mut num, i), Value::Msg(&v));
    }
}

fn itoa_buf() -> String {
    String::with_capacity(20)
}

fn itoa(buf: &mut String, i: usize) -> &str {
    use std::fmt::Write as _;
    buf.clear();
    let _ = write!(buf, "{i}");
    buf.as_str()
}

fn field_count(span: &Span) -> usize {
    4 + span.attributes.len() + span.events.len() + span.links.len()
}

/// Hashes a field (`prefix` and `name` as `tv_tlog::commit::write_field_header` takes them).
fn hash_field(buf: &mut Vec<u8>, salt: &Salt, prefix: &str, name: &str, v: &Value<'_>) -> Digest {
    buf.clear();
    commit::write_field_header(buf, salt, prefix, name);
    write_value(v, buf);
    commit::sha256(buf)
}

/// Salt slots: where each resource's, scope's and span's salts start in the keystream.
struct Layout {
    resource_slot: HashMap<u32, usize>,
    scope_slot: HashMap<u32, usize>,
    span_start: Vec<usize>,
    total: usize,
}

fn layout(rec: &CanonRecord<'_>) -> Layout {
    let mut resource_slot = HashMap::new();
    let mut scope_slot = HashMap::new();
    let mut next = 0usize;
    for s in &rec.spans {
        resource_slot.entry(s.resource).or_insert_with(|| {
            next += 1;
            next - 1
        });
    }
    for s in &rec.spans {
        scope_slot.entry(s.scope).or_insert_with(|| {
            next += 1;
            next - 1
        });
    }
    let mut span_start = Vec::with_capacity(rec.spans.len());
    for s in &rec.spans {
        span_start.push(next);
        next += field_count(s.span);
    }
    Layout {
        resource_slot,
        scope_slot,
        span_start,
        total: next,
    }
}

/// The span commitments of a record, in canonical order.
pub fn commitments(secret: &[u8; 32], rec: &CanonRecord<'_>) -> Vec<Digest> {
    let lay = layout(rec);
    let salts = commit::salts(secret, lay.total);
    let mut buf = Vec::with_capacity(512);
    let res_hash: HashMap<u32, Digest> = lay
        .resource_slot
        .iter()
        .map(|(&r, &slot)| {
            let v = Value::Bytes(&rec.resources[r as usize]);
            (r, hash_field(&mut buf, &salts[slot], "resource", "", &v))
        })
        .collect();
    let scope_hash: HashMap<u32, Digest> = lay
        .scope_slot
        .iter()
        .map(|(&s, &slot)| {
            let v = Value::Bytes(&rec.scopes[s as usize]);
            (s, hash_field(&mut buf, &salts[slot], "scope", "", &v))
        })
        .collect();
    let mut hashes: Vec<Digest> = Vec::with_capacity(32);
    let mut out = Vec::with_capacity(rec.spans.len());
    for (i, s) in rec.spans.iter().enumerate() {
        hashes.clear();
        hashes.push(res_hash[&s.resource]);
        hashes.push(scope_hash[&s.scope]);
        let mut slot = lay.span_start[i];
        span_fields(s.span, &mut |prefix, name, v| {
            hashes.push(hash_field(&mut buf, &salts[slot], prefix, name, &v));
            slot += 1;
        });
        out.push(commit::span_commitment_with(&mut buf, &hashes));
    }
    out
}

/// The span root and span count of a record.
pub fn span_root(secret: &[u8; 32], rec: &CanonRecord<'_>) -> (Digest, u32) {
    let c = commitments(secret, rec);
    (commit::SpanTree::new(&c).root(), c.len() as u32)
}

/// Opens span `index` of a record: every field revealed except those `withhold` names (by field
/// name, e.g. `attributes/user.id`), which are given as their field hash only.
pub fn open_span(
    secret: &[u8; 32],
    rec: &CanonRecord<'_>,
    index: usize,
    withhold: &dyn Fn(&str, &[u8]) -> bool,
) -> Vec<FieldOpening> {
    let lay = layout(rec);
    let salts = commit::salts(secret, lay.total);
    let s = &rec.spans[index];
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut push = |name: String, salt: &Salt, v: &Value<'_>| {
        let mut value = Vec::new();
        write_value(v, &mut value);
        if withhold(&name, &value) {
            out.push(FieldOpening::Withheld {
                hash: commit::field_hash_with(&mut buf, salt, &name, &value),
            });
        } else {
            out.push(FieldOpening::Revealed {
                name,
                value,
                salt: *salt,
            });
        }
    };
    push(
        "resource".into(),
        &salts[lay.resource_slot[&s.resource]],
        &Value::Bytes(&rec.resources[s.resource as usize]),
    );
    push(
        "scope".into(),
        &salts[lay.scope_slot[&s.scope]],
        &Value::Bytes(&rec.scopes[s.scope as usize]),
    );
    let mut slot = lay.span_start[index];
    span_fields(s.span, &mut |prefix, name, v| {
        push(format!("{prefix}{name}"), &salts[slot], &v);
        slot += 1;
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tv_model::otlp::{AnyValue, KeyValue, Resource, ResourceSpans, ScopeSpans, any_value};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn req() -> ExportTraceServiceRequest {
        let span = |t: u8, s: u8, start: u64| Span {
            trace_id: vec![t; 16],
            span_id: vec![s; 8],
            name: format!("op{s}"),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 5,
            attributes: vec![kv("user.id", "alice"), kv("http.method", "GET")],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", "a")],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(2, 1, 10), span(1, 2, 30)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", "b")],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(1, 3, 20)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn canonical_order_is_by_trace_then_start() {
        let r = req();
        let c = CanonRecord::of_request(&r);
        let ids: Vec<u8> = c.spans.iter().map(|s| s.span.span_id[0]).collect();
        assert_eq!(ids, vec![3, 2, 1]);
    }

    #[test]
    fn openings_recompute_the_commitments_and_withhold_values() {
        let r = req();
        let c = CanonRecord::of_request(&r);
        let secret = [5u8; 32];
        let cs = commitments(&secret, &c);
        assert_eq!(cs.len(), 3);
        for (i, want) in cs.iter().enumerate() {
            let open = open_span(&secret, &c, i, &|n, _| n == "attributes/user.id");
            assert_eq!(&commit::commitment_of(&open), want);
            assert_eq!(
                open.iter()
                    .filter(|f| matches!(f, FieldOpening::Withheld { .. }))
                    .count(),
                1
            );
            for f in &open {
                if let FieldOpening::Revealed { value, .. } = f {
                    assert!(!value.windows(5).any(|w| w == b"alice"));
                }
            }
        }
        // A different secret, or a changed value, changes the commitments.
        assert_ne!(commitments(&[6u8; 32], &c), cs);
        let mut r2 = req();
        r2.resource_spans[0].scope_spans[0].spans[1].attributes[1] = kv("http.method", "PUT");
        assert_ne!(commitments(&secret, &CanonRecord::of_request(&r2)), cs);
    }
}
