//! Shared by the hand-written generated sets (context secrets, ordinary values, disguises): a
//! seeded generator, so every run builds the same cases, and the one-span batch they are redacted
//! in. Each test uses part of it.
#![allow(dead_code)]

use tv_model::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    any_value::Value,
};
use tv_redact::{PseudonymKey, Rules, redact};

/// splitmix64 from a fixed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number from `lo` to `hi`, both included.
    pub fn n(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    /// `n` characters drawn from `alphabet`.
    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
    pub fn digits(&mut self, n: usize) -> String {
        self.chars(b"0123456789", n)
    }
    pub fn hex(&mut self, n: usize) -> String {
        self.chars(b"0123456789abcdef", n)
    }
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// `attributes` on one span of `service`, through the built-in rules of tenant `acme`; the
/// span's attributes after redaction, in order.
pub fn redact_attributes(service: &str, attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "generated".into(),
        attributes,
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut out = redact(&Rules::builtin(), "acme", &PseudonymKey::new(&[7; 32]), req);
    std::mem::take(&mut out.request.resource_spans[0].scope_spans[0].spans[0].attributes)
}
