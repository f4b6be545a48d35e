//! Development aid: each argument parsed, printed in canonical form, and as a tree.
//! `cargo run -p tv-traceql --example tq -- '{ status = error }'`
fn main() {
    for a in std::env::args().skip(1) {
        let r = if std::env::var_os("UNCHECKED").is_some() {
            tv_traceql::parse_only(&a)
        } else {
            tv_traceql::parse(&a)
        };
        match r {
            Ok(q) => println!("{a}\n  => {q}\n  {q:?}"),
            Err(e) => println!("{a}\n  => error: {e}"),
        }
    }
}
