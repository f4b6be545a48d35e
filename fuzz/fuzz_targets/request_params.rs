//! Query parameters and credentials from the network: logfmt tags, Go durations, bearer tokens,
//! tenant ids.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = tv_server::params::parse_logfmt(s);
    let _ = tv_server::params::parse_go_duration(s);
    let _ = tv_access::TokenSecret::from_header(Some(s));
    let _ = tv_model::TenantId::parse(s);
});
