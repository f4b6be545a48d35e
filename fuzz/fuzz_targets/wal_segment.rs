//! WAL segment recovery on arbitrary (damaged, truncated, hostile) bytes: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tv_store::wal::parse_segment(data, std::path::Path::new("fuzz.wal"));
});
