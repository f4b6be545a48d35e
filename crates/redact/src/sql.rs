//! SQL scrubbing for `db.statement` / `db.query.text` (issue 4): every literal (strings of any
//! quoting, numbers, byte and hex strings) becomes `?`, comments lose their text, and `IN (?, ?, ?)`
//! collapses to `IN (?)`, keeping keywords, identifiers, operators and layout so the statement stays
//! readable, as APM agents do. Tokenizing is `sqlparser`'s (generic dialect). A statement it cannot
//! tokenize is scrubbed conservatively: every quoted run and every digit run becomes `?`; the raw
//! text is never passed through.

use std::borrow::Cow;

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// A scrubbed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    pub text: String,
    /// Literals (and comments) replaced.
    pub replaced: usize,
    /// False when the statement did not tokenize and the conservative fallback was used.
    pub tokenized: bool,
}

fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

/// Scrubs one statement (or several separated by `;`). Everything but literals and comments keeps
/// its original text (operators, keyword case, quoting), so scrubbing twice changes nothing.
pub fn scrub(sql: &str) -> Scrubbed {
    if !may_hold_literal(sql) {
        return Scrubbed {
            text: sql.to_string(),
            replaced: 0,
            tokenized: true,
        };
    }
    // No unescaping: literal values are thrown away, only their extent matters.
    let tokens = match Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()
    {
        Ok(t) => t,
        Err(_) => return conservative(sql),
    };
    // Byte offset of each token's start: the tokenizer reports 1-based line and character
    // columns; a cursor walks the text once.
    let mut starts = Vec::with_capacity(tokens.len() + 1);
    let (mut line, mut col, mut chars) = (1u64, 1u64, sql.char_indices().peekable());
    for t in &tokens {
        let want = (t.span.start.line, t.span.start.column);
        while (line, col) < want {
            match chars.next() {
                Some((_, '\n')) => {
                    line += 1;
                    col = 1;
                }
                Some(_) => col += 1,
                None => break,
            }
        }
        starts.push(chars.peek().map(|(i, _)| *i).unwrap_or(sql.len()));
    }
    starts.push(sql.len());
    let mut out: Vec<(Token, Cow<'_, str>)> = Vec::with_capacity(tokens.len());
    let mut replaced = 0;
    for (i, t) in tokens.into_iter().enumerate() {
        let original = sql.get(starts[i]..starts[i + 1].max(starts[i]));
        let piece = match t.token {
            t if is_literal(&t) => {
                replaced += 1;
                (Token::Placeholder("?".into()), Cow::Borrowed("?"))
            }
            Token::Whitespace(Whitespace::SingleLineComment { prefix, comment }) => {
                replaced += 1;
                let nl = if comment.ends_with('\n') { "\n" } else { "" };
                let text = format!("{prefix} ?{nl}");
                (Token::Whitespace(Whitespace::Space), Cow::Owned(text))
            }
            Token::Whitespace(Whitespace::MultiLineComment(_)) => {
                replaced += 1;
                (
                    Token::Whitespace(Whitespace::Space),
                    Cow::Borrowed("/* ? */"),
                )
            }
            t => {
                let text = match original {
                    Some(o) => Cow::Borrowed(o),
                    None => Cow::Owned(token_text(&t)),
                };
                (t, text)
            }
        };
        out.push(piece);
    }
    collapse_in_lists(&mut out);
    let text: String = out.iter().map(|(_, s)| s.as_ref()).collect();
    Scrubbed {
        text,
        replaced,
        tokenized: true,
    }
}

/// Whether `sql` can hold a literal or a comment at all: a quote of any kind, a comment opener, or
/// a digit that does not continue a name or a placeholder (`t1`, `$1`, `:p1`, `@v2`). Parameterized
/// statements, the common case, have none and are returned as they are.
fn may_hold_literal(sql: &str) -> bool {
    let b = sql.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\'' | b'"' | b'`' | b'#' | b'[' => return true,
            b'-' if b.get(i + 1) == Some(&b'-') => return true,
            // `$$...$$` and `$tag$...$tag$` quote; only `$1` is a placeholder.
            b'$' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => return true,
            b'/' if b.get(i + 1) == Some(&b'*') => return true,
            b'0'..=b'9' => {
                let prev = if i == 0 { b' ' } else { b[i - 1] };
                if !(prev.is_ascii_alphanumeric() || matches!(prev, b'_' | b'$' | b':' | b'@')) {
                    return true;
                }
            }
            c if !c.is_ascii() => return true,
            _ => {}
        }
    }
    false
}

/// A token as SQL text, for a token whose original text cannot be located. Quoted identifiers
/// get their closing quote doubled inside (sqlparser's `Display` prints the unescaped value, which
/// would change `"a""b"` into another name).
fn token_text(t: &Token) -> String {
    match t {
        Token::Word(w) => match w.quote_style {
            Some(open) => {
                let close = match open {
                    '[' => ']',
                    c => c,
                };
                let doubled: String = [close, close].iter().collect();
                format!("{open}{}{close}", w.value.replace(close, &doubled))
            }
            None => w.value.clone(),
        },
        t => t.to_string(),
    }
}

fn is_q(t: &Token) -> bool {
    matches!(t, Token::Placeholder(p) if p == "?")
}

/// `IN ( ?, ?, ? )` -> `IN (?)` (whitespace inside the list dropped).
fn collapse_in_lists(tokens: &mut Vec<(Token, Cow<'_, str>)>) {
    let mut i = 0;
    while i < tokens.len() {
        let is_in = matches!(&tokens[i].0, Token::Word(w) if w.keyword == Keyword::IN);
        if !is_in {
            i += 1;
            continue;
        }
        // Skip whitespace to the opening parenthesis.
        let mut j = i + 1;
        while matches!(tokens.get(j), Some((Token::Whitespace(_), _))) {
            j += 1;
        }
        if !matches!(tokens.get(j), Some((Token::LParen, _))) {
            i += 1;
            continue;
        }
        // Only placeholders, commas and whitespace up to the closing parenthesis.
        let mut k = j + 1;
        let mut count = 0;
        let mut ok = true;
        loop {
            match tokens.get(k).map(|(t, _)| t) {
                Some(Token::RParen) => break,
                Some(t) if is_q(t) => count += 1,
                Some(Token::Comma) | Some(Token::Whitespace(_)) => {}
                _ => {
                    ok = false;
                    break;
                }
            }
            k += 1;
        }
        if ok && count > 0 {
            tokens.splice(
                j + 1..k,
                [(Token::Placeholder("?".into()), Cow::Borrowed("?"))],
            );
        }
        i = j + 1;
    }
}

/// Fallback for text that does not tokenize: quoted runs (', ", `) and digit runs become `?`.
fn conservative(sql: &str) -> Scrubbed {
    let mut out = String::with_capacity(sql.len());
    let mut replaced = 0;
    let mut chars = sql.chars().peekable();
    let mut prev_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                // Up to the matching quote (a doubled quote continues the literal), or the end.
                loop {
                    match chars.next() {
                        None => break,
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                            } else {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                }
                out.push('?');
                replaced += 1;
                prev_word = false;
            }
            d if d.is_ascii_digit() && !prev_word => {
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.' || *n == '_')
                {
                    chars.next();
                }
                out.push('?');
                replaced += 1;
                prev_word = false;
            }
            c => {
                prev_word = c.is_alphanumeric() || c == '_';
                out.push(c);
            }
        }
    }
    Scrubbed {
        text: out,
        replaced,
        tokenized: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders_and_shape_stays() {
        let s = scrub(
            "SELECT name FROM users WHERE email = 'jane@example.com' AND id = 42 AND x IN (1, 2, 3) -- by alice",
        );
        assert_eq!(
            s.text,
            "SELECT name FROM users WHERE email = ? AND id = ? AND x IN (?) -- ?"
        );
        assert!(s.tokenized);
        assert_eq!(s.replaced, 6);
        let s =
            scrub("insert into t (a, b) values (E'x\\'y', 1.5e3), (X'DEADBEEF', -7) /* secret */");
        assert_eq!(
            s.text,
            "insert into t (a, b) values (?, ?), (?, -?) /* ? */"
        );
    }

    #[test]
    fn what_does_not_tokenize_is_scrubbed_conservatively() {
        let s = scrub("SELECT * FROM t WHERE a = 'unterminated 4111111111111111");
        assert!(!s.tokenized);
        assert!(!s.text.contains("4111"), "{}", s.text);
        assert!(s.text.starts_with("SELECT * FROM t WHERE a = ?"));
    }

    proptest::proptest! {
        #[test]
        fn no_literal_value_survives(secret in "[A-Za-z0-9@.+_-]{6,40}", n in 100_000u64..u64::MAX, quote in 0..3usize) {
            let lit = match quote {
                0 => format!("'{secret}'"),
                1 => format!("E'{secret}'"),
                _ => format!("N'{secret}'"),
            };
            let q = format!("SELECT a FROM t WHERE c = {lit} AND n = {n} AND m IN ({n}, {lit})");
            let s = scrub(&q);
            proptest::prop_assert!(!s.text.contains(&secret), "{}", s.text);
            proptest::prop_assert!(!s.text.contains(&n.to_string()), "{}", s.text);
        }
    }

    #[test]
    fn scrubbing_is_idempotent() {
        for q in [
            "SELECT 1",
            "SELECT * FROM t WHERE a IN ('x', 'y') AND b = $1",
            "UPDATE t SET a = 'it''s' WHERE id = 7",
            "SELECT \"a\"\"b\" FROM \"t\"",
            "SELECT 'broken",
        ] {
            let once = scrub(q).text;
            assert_eq!(scrub(&once).text, once, "{q}");
        }
    }
}
