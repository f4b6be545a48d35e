//! OTLP request bodies as they arrive: encoding flag, bounded inflate, protobuf or JSON, validate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tv_model::decode::{Encoding, decode_json, decode_protobuf, decompress_limited};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let enc = match sel % 3 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        _ => Encoding::Zstd,
    };
    let Ok(plain) = decompress_limited(enc, body, 1 << 20) else { return };
    let decoded = if sel & 0x80 == 0 { decode_protobuf(&plain) } else { decode_json(&plain) };
    if let Ok(req) = decoded {
        let _ = tv_model::validate::validate(req, &tv_model::Limits::default(), 1_750_000_000_000_000_000);
    }
});
