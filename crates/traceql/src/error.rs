//! Errors with the position they refer to (`at 1:18`: line and column, both from 1, columns
//! counted in characters).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    /// The position of byte offset `i` of `src`.
    pub fn at(src: &str, i: usize) -> Pos {
        let mut i = i.min(src.len());
        while !src.is_char_boundary(i) {
            i -= 1;
        }
        let before = &src[..i];
        let line = before.matches('\n').count() as u32 + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// What is wrong with a query. Every kind is the caller's to fix (an HTTP API answers 400).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// The text is not TraceQL.
    #[error("{msg} at {pos}")]
    Parse { pos: Pos, msg: String },
    /// The query parses but means nothing (a type error, an aggregate over a constant); the
    /// message names the offending expression.
    #[error("{msg}")]
    Invalid { msg: String },
    /// The query is valid TraceQL that this server does not run yet.
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
}

impl Error {
    pub fn parse(pos: Pos, msg: impl Into<String>) -> Self {
        Error::Parse {
            pos,
            msg: msg.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid { msg: msg.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(Pos::at("{ a }", 2), Pos { line: 1, col: 3 });
        assert_eq!(Pos::at("{\n  µ = 1 }", 6), Pos { line: 2, col: 4 });
    }
}
