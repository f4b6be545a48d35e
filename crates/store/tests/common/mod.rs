//! Helpers shared by the store's test binaries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tv_crypto::{FileRootKey, Keyring};
use tv_model::otlp::*;
use tv_model::validate::validate;
use tv_model::{Limits, TenantId, TraceId};
use tv_store::{EncodedBatch, Store, StoreConfig};

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn keyring(dir: &Path) -> Arc<Keyring> {
    let (root, _) = FileRootKey::load_or_create(&dir.join("keys/root.key")).unwrap();
    Arc::new(Keyring::open(&dir.join("keys"), Arc::new(root)).unwrap())
}

pub fn log_config() -> tv_store::LogConfig {
    tv_store::LogConfig {
        origin: "test.example/log".into(),
        signers: vec![
            Arc::new(tv_tlog::note::Ed25519Signer::from_seed("test.example/log", [1; 32]).unwrap()),
            Arc::new(
                tv_tlog::cosig::MlDsaCosigSigner::from_seed("test.example/log", [2; 32]).unwrap(),
            ),
        ],
        checkpoint_interval: Duration::from_millis(100),
    }
}

pub fn cfg(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir.join("data"));
    c.segment_max_age = Duration::from_secs(3600);
    c.log = Some(log_config());
    c
}

pub fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

pub fn request(
    service: &str,
    trace: [u8; 16],
    spans: usize,
    marker: &str,
) -> ExportTraceServiceRequest {
    let t = now();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: s(service),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: trace.to_vec(),
                        span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
                        parent_span_id: if i == 0 {
                            vec![]
                        } else {
                            1u64.to_be_bytes().to_vec()
                        },
                        name: format!("op-{marker}-{i}"),
                        start_time_unix_nano: t - 1_000_000 + i as u64,
                        end_time_unix_nano: t + i as u64,
                        attributes: vec![KeyValue {
                            key: "note".into(),
                            value: s(marker),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn batch(tenant: &str, req: ExportTraceServiceRequest) -> EncodedBatch {
    let v = validate(req, &Limits::default(), now()).unwrap();
    assert_eq!(v.rejected_spans(), 0);
    EncodedBatch::encode(TenantId::parse(tenant).unwrap(), &v, 1, [7; 32]).unwrap()
}

pub fn count(store: &Store, tenant: &str, trace: [u8; 16]) -> usize {
    store
        .find_trace(&TenantId::parse(tenant).unwrap(), TraceId(trace))
        .unwrap()
        .map(|rs| {
            rs.iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum()
        })
        .unwrap_or(0)
}
