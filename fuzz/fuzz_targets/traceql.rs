//! TraceQL queries from the network (`q=` of the search and metrics APIs): parse, check, and
//! for what parses, print and parse again to the same tree.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(q) = tv_traceql::parse_only(s) {
        let printed = q.to_string();
        let again = tv_traceql::parse_only(&printed).expect("a printed query parses");
        assert_eq!(again, q, "{printed}");
        let _ = tv_traceql::check::check(&q);
    }
});
