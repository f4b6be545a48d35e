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

/// The shape of a query for an audit record: its text with every string, number and duration
/// replaced by `?` (`{ span.user.email = "a@b.c" }` becomes `{ span.user.email = ? }`); a
/// query that does not lex is summarized by its length.
pub fn shape(src: &str) -> String {
    let Ok(toks) = lexer::Lexer::new(src).tokens() else {
        return format!("<{} bytes, not TraceQL>", src.len());
    };
    let mut out = String::new();
    for (t, _) in toks {
        let piece = match t {
            lexer::Tok::Eof => break,
            lexer::Tok::Str(_)
            | lexer::Tok::Int(_)
            | lexer::Tok::Float(_)
            | lexer::Tok::Duration(_) => "?".to_string(),
            lexer::Tok::Ident(w) => w,
            lexer::Tok::ScopedIntrinsic(s, n) => format!("{s}:{n}"),
            lexer::Tok::Attr {
                scope,
                parent,
                name,
            } => Attribute {
                scope: Scope::from_prefix(&scope).unwrap_or(Scope::None),
                parent,
                name,
            }
            .to_string(),
            other => other.symbol().to_string(),
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&piece);
        if out.len() > 1024 {
            out.push_str(" ...");
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shape_of_a_query_keeps_no_literal() {
        assert_eq!(
            super::shape(
                r#"{ span.user.email = "alice@example.com" && duration > 2s } | count() > 3"#
            ),
            "{ span.user.email = ? && duration > ? } | count ( ) > ?"
        );
        assert_eq!(
            super::shape(r#"{ .a = "unterminated"#),
            "<20 bytes, not TraceQL>"
        );
    }
}
