//! OTLP request bodies as they arrive: encoding flag, bounded inflate, the footprint count
//! before decoding, protobuf or JSON, validate. The count never panics, and a protobuf body it
//! admits decodes to as many spans as it counted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tv_model::decode::{Encoding, decode_json, decode_protobuf, decompress_limited};
use tv_model::footprint::{scan_json, scan_protobuf};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let enc = match sel % 3 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        _ => Encoding::Zstd,
    };
    let Ok(plain) = decompress_limited(enc, body, 1 << 20) else { return };
    let limits = tv_model::Limits::default();
    let json = sel & 0x80 != 0;
    let counted = if json { scan_json(&plain, &limits) } else { scan_protobuf(&plain, &limits) };
    let Ok(footprint) = counted else { return };
    let decoded = if json { decode_json(&plain) } else { decode_protobuf(&plain) };
    if let Ok(req) = decoded {
        if !json {
            let spans: usize = req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            assert_eq!(spans, footprint.spans);
        }
        let _ = tv_model::validate::validate(req, &limits, 1_750_000_000_000_000_000);
    }
});
