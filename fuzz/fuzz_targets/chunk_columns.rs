//! Columnar chunk decoding (after decryption) on arbitrary bytes: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = tv_store::format::Chunk::decode(data) {
        let _ = tv_store::columns::decode(&c, |t| t[0] & 1 == 0);
    }
});
