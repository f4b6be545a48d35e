//! TraceQL, the query language of Grafana Tempo, written from its documentation
//! (grafana.com/docs/tempo/latest/traceql/): a lexer, a recursive-descent parser, type checks
//! and a canonical printer, and evaluation on one trace's spans ([`eval`]). Pure: no I/O (the
//! store finds the candidate traces and the server decides what a caller may see).
//!
//! ```
//! let q = tv_traceql::parse(r#"{ resource.service.name = "api" && status = error } | count() > 2"#).unwrap();
//! assert_eq!(q.to_string(), r#"{ ((resource.service.name = "api") && (span:status = error)) } | count() > 2"#);
//! let e = tv_traceql::parse("{ span.http.status 200 }").unwrap_err();
//! assert_eq!(e.to_string(), "expected '}' closing the spanset filter after attribute 'span.http.status', found a number at 1:20");
//! ```
//!
//! Main types: [`Query`] (a [`Pipeline`] of [`Stage`]s, an optional [`Metrics`] function and
//! hints), [`SpansetExpr`], [`Field`], [`Error`] (parse errors with a line:column, validation
//! errors naming the expression).

pub mod ast;
pub mod check;
pub mod error;
pub mod eval;
pub mod lexer;
pub mod parser;

pub use ast::*;
pub use error::{Error, Pos};

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Parses and checks a query.
pub fn parse(src: &str) -> Result<Query, Error> {
    let q = parse_only(src)?;
    check::check(&q)?;
    Ok(q)
}

/// Parses a query without the type checks.
pub fn parse_only(src: &str) -> Result<Query, Error> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(Error::parse(
            Pos { line: 1, col: 1 },
            format!("query is longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    parser::Parser::new(src)?.query()
}
