//! Tokens of TraceQL, each with the position where it starts.
//!
//! Attribute names are read the way Tempo's documentation writes them: after a scope
//! (`span.`, `resource.`, `event.`, `link.`, `instrumentation.`, `parent.`) or a bare `.`, a name
//! runs until whitespace or one of `{ } ( ) = ~ ! < > & | ^ ,`, so `.http.status_code`,
//! `span.foo-bar` and `resource.k8s.pod/name` are single names; a name in double quotes
//! (`span."a b"`) may hold anything, with `\"` and `\\` escaped.

use crate::error::{Error, Pos};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    // Comparison
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Re,
    Nre,
    // Arithmetic
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    // Logic
    And,
    Or,
    Not,
    // Structural
    Desc,
    Ance,
    Tilde,
    NotChild,
    NotDesc,
    NotParent,
    NotAnce,
    UnionChild,
    UnionDesc,
    UnionParent,
    UnionAnce,
    UnionSibling,
    /// A bare word: keyword, intrinsic, function name, status, kind.
    Ident(String),
    /// `scope:name` (`span:duration`, `trace:rootService`).
    ScopedIntrinsic(String, String),
    /// An attribute: scope (`""` for the unscoped `.name`), whether `parent.` preceded it, name.
    Attr {
        scope: String,
        parent: bool,
        name: String,
    },
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Eof,
}

impl Tok {
    /// How the token is named in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::ScopedIntrinsic(s, n) => format!("'{s}:{n}'"),
            Tok::Attr {
                scope,
                parent,
                name,
            } => format!(
                "attribute '{}{}.{}'",
                if *parent { "parent." } else { "" },
                scope,
                name
            ),
            Tok::Str(_) => "a string".into(),
            Tok::Int(_) | Tok::Float(_) => "a number".into(),
            Tok::Duration(_) => "a duration".into(),
            Tok::Eof => "the end of the query".into(),
            other => format!("'{}'", other.symbol()),
        }
    }

    pub fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Pipe => "|",
            Tok::Eq => "=",
            Tok::Neq => "!=",
            Tok::Gt => ">",
            Tok::Gte => ">=",
            Tok::Lt => "<",
            Tok::Lte => "<=",
            Tok::Re => "=~",
            Tok::Nre => "!~",
            Tok::Add => "+",
            Tok::Sub => "-",
            Tok::Mul => "*",
            Tok::Div => "/",
            Tok::Mod => "%",
            Tok::Pow => "^",
            Tok::And => "&&",
            Tok::Or => "||",
            Tok::Not => "!",
            Tok::Desc => ">>",
            Tok::Ance => "<<",
            Tok::Tilde => "~",
            Tok::NotChild => "!>",
            Tok::NotDesc => "!>>",
            Tok::NotParent => "!<",
            Tok::NotAnce => "!<<",
            Tok::UnionChild => "&>",
            Tok::UnionDesc => "&>>",
            Tok::UnionParent => "&<",
            Tok::UnionAnce => "&<<",
            Tok::UnionSibling => "&~",
            _ => "",
        }
    }
}

/// Scopes an attribute may name (`span.x`); `parent.` may precede any of them.
pub const SCOPES: &[&str] = &["span", "resource", "event", "link", "instrumentation"];

/// Scopes of intrinsics (`span:duration`).
pub const INTRINSIC_SCOPES: &[&str] = &["span", "trace", "event", "link", "instrumentation"];

fn ends_attribute(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ','
        )
}

pub struct Lexer<'a> {
    src: &'a str,
    i: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer { src, i: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }

    fn pos_at(&self, i: usize) -> Pos {
        Pos::at(self.src, i)
    }

    /// All tokens, the last one [`Tok::Eof`].
    pub fn tokens(mut self) -> Result<Vec<(Tok, Pos)>, Error> {
        let mut out = Vec::new();
        loop {
            self.skip_space()?;
            let start = self.i;
            let t = self.next_token()?;
            let eof = t == Tok::Eof;
            out.push((t, self.pos_at(start)));
            if eof {
                return Ok(out);
            }
        }
    }

    /// Whitespace (space, tab, line feeds) and comments (`// ...` to the end of the line,
    /// `/* ... */`), which Tempo's lexer skips too.
    fn skip_space(&mut self) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r') => {
                    self.bump();
                }
                Some('/') if self.peek2() == Some('/') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                Some('/') if self.peek2() == Some('*') => {
                    let start = self.i;
                    match self.rest()[2..].find("*/") {
                        Some(end) => self.i += 2 + end + 2,
                        None => return Err(self.err(start, "comment not terminated")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn err(&self, at: usize, msg: impl Into<String>) -> Error {
        Error::parse(self.pos_at(at), msg)
    }

    fn next_token(&mut self) -> Result<Tok, Error> {
        let start = self.i;
        let Some(c) = self.peek() else {
            return Ok(Tok::Eof);
        };
        let two = |l: &Self, s: &str| l.rest().starts_with(s);
        // Longest operators first.
        const OPS: &[(&str, Tok)] = &[
            ("!>>", Tok::NotDesc),
            ("!<<", Tok::NotAnce),
            ("&>>", Tok::UnionDesc),
            ("&<<", Tok::UnionAnce),
            ("!=", Tok::Neq),
            ("!~", Tok::Nre),
            ("!>", Tok::NotChild),
            ("!<", Tok::NotParent),
            ("=~", Tok::Re),
            (">=", Tok::Gte),
            ("<=", Tok::Lte),
            (">>", Tok::Desc),
            ("<<", Tok::Ance),
            ("&&", Tok::And),
            ("||", Tok::Or),
            ("&>", Tok::UnionChild),
            ("&<", Tok::UnionParent),
            ("&~", Tok::UnionSibling),
            ("{", Tok::LBrace),
            ("}", Tok::RBrace),
            ("(", Tok::LParen),
            (")", Tok::RParen),
            (",", Tok::Comma),
            ("|", Tok::Pipe),
            ("=", Tok::Eq),
            (">", Tok::Gt),
            ("<", Tok::Lt),
            ("+", Tok::Add),
            ("-", Tok::Sub),
            ("*", Tok::Mul),
            ("/", Tok::Div),
            ("%", Tok::Mod),
            ("^", Tok::Pow),
            ("!", Tok::Not),
            ("~", Tok::Tilde),
        ];
        if c == '"' || c == '`' {
            return self.string();
        }
        if c.is_ascii_digit() || (c == '.' && self.peek2().is_some_and(|d| d.is_ascii_digit())) {
            return self.number();
        }
        if c == '.' {
            self.bump();
            let name = self.attribute_name(start)?;
            return Ok(Tok::Attr {
                scope: String::new(),
                parent: false,
                name,
            });
        }
        if c.is_alphabetic() || c == '_' {
            let word = self.word();
            // parent.<scope>.<name> or parent.<name>
            if word == "parent" && self.peek() == Some('.') {
                self.bump();
                let save = self.i;
                let scope = self.word();
                if SCOPES.contains(&scope.as_str()) && self.peek() == Some('.') {
                    self.bump();
                    let name = self.attribute_name(start)?;
                    return Ok(Tok::Attr {
                        scope,
                        parent: true,
                        name,
                    });
                }
                self.i = save;
                let name = self.attribute_name(start)?;
                return Ok(Tok::Attr {
                    scope: String::new(),
                    parent: true,
                    name,
                });
            }
            if SCOPES.contains(&word.as_str()) && self.peek() == Some('.') {
                self.bump();
                let name = self.attribute_name(start)?;
                return Ok(Tok::Attr {
                    scope: word,
                    parent: false,
                    name,
                });
            }
            if INTRINSIC_SCOPES.contains(&word.as_str()) && self.peek() == Some(':') {
                self.bump();
                while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
                    self.bump();
                }
                let n = self.word();
                if n.is_empty() {
                    return Err(self.err(
                        self.i,
                        format!("expected an intrinsic name after '{word}:'"),
                    ));
                }
                return Ok(Tok::ScopedIntrinsic(word, n));
            }
            return Ok(Tok::Ident(word));
        }
        for (s, t) in OPS {
            if two(self, s) {
                self.i += s.len();
                return Ok(t.clone());
            }
        }
        Err(self.err(start, format!("unexpected character '{c}'")))
    }

    fn word(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                self.bump();
            } else {
                break;
            }
        }
        self.src[start..self.i].to_owned()
    }

    /// The name after a scope's dot, up to a character that ends an attribute; parts in double
    /// quotes may hold any character (`\"` and `\\` escaped) and join the plain parts
    /// (`span.attribute."attr name"` is `attribute.attr name`).
    fn attribute_name(&mut self, start: usize) -> Result<String, Error> {
        let mut name = String::new();
        let mut quoted = false;
        loop {
            match self.peek() {
                Some('"') => {
                    let q = self.i;
                    self.bump();
                    quoted = true;
                    loop {
                        match self.bump() {
                            None => return Err(self.err(q, "unterminated quoted attribute name")),
                            Some('"') => break,
                            Some('\\') => match self.bump() {
                                Some(c @ ('"' | '\\')) => name.push(c),
                                _ => {
                                    return Err(self.err(
                                        q,
                                        "only \\\" and \\\\ may be escaped in a quoted attribute name",
                                    ));
                                }
                            },
                            Some(c) => name.push(c),
                        }
                    }
                }
                Some(c) if !ends_attribute(c) => {
                    name.push(c);
                    self.bump();
                }
                _ => break,
            }
        }
        if name.is_empty() {
            return Err(self.err(
                start,
                if quoted {
                    "an attribute name must not be empty"
                } else {
                    "expected an attribute name after '.'"
                },
            ));
        }
        Ok(name)
    }

    fn string(&mut self) -> Result<Tok, Error> {
        let start = self.i;
        let quote = self.bump().expect("at a quote");
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.err(start, "unterminated string"));
                }
                Some(c) if c == quote => return Ok(Tok::Str(out)),
                // A backtick string is raw; a double-quoted one has Go's escapes and no line
                // break.
                Some('\n') if quote == '"' => {
                    return Err(self.err(
                        start,
                        "a line break inside a string (use \\n, or a `raw string`)",
                    ));
                }
                Some('\\') if quote == '"' => {
                    let at = self.i - 1;
                    let c = self.escape(at)?;
                    out.push(c);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The character of an escape sequence after its backslash: `\a \b \f \n \r \t \v \\ \"`,
    /// octal `\101`, `\x41`, `\u0041`, `\U00000041`.
    fn escape(&mut self, at: usize) -> Result<char, Error> {
        let bad = |l: &Self, what: &str| l.err(at, format!("{what} in a string"));
        let Some(c) = self.bump() else {
            return Err(bad(self, "unterminated escape"));
        };
        let hex = |l: &mut Self, n: usize| -> Result<char, Error> {
            let digits: String = l.rest().chars().take(n).collect();
            if digits.len() != n || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(l, &format!("\\{c} needs {n} hex digits")));
            }
            l.i += n;
            u32::from_str_radix(&digits, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| bad(l, "an escape that is not a character"))
        };
        Ok(match c {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            '"' => '"',
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            '0'..='7' => {
                let digits: String = std::iter::once(c)
                    .chain(self.rest().chars().take(2))
                    .collect();
                if digits.len() != 3 || !digits.chars().all(|d| ('0'..='7').contains(&d)) {
                    return Err(bad(self, "an octal escape needs three digits"));
                }
                self.i += 2;
                let v = u32::from_str_radix(&digits, 8).unwrap_or(0);
                if v > 255 {
                    return Err(bad(self, "an octal escape above \\377"));
                }
                char::from_u32(v).unwrap_or('\0')
            }
            other => return Err(bad(self, &format!("unknown escape '\\{other}'"))),
        })
    }

    /// An integer, a float or a duration (`10`, `1.5`, `.5`, `1e3`, `100ms`, `1h30m`).
    fn number(&mut self) -> Result<Tok, Error> {
        let start = self.i;
        let mut total_ns: Option<f64> = None;
        loop {
            let from = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            let mut float = false;
            if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
                float = true;
                self.bump();
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
            } else if self.peek() == Some('.')
                && self.i > from
                && !self
                    .peek2()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            {
                // `1.` is a float.
                float = true;
                self.bump();
            }
            if total_ns.is_none()
                && matches!(self.peek(), Some('e' | 'E'))
                && self.rest()[1..]
                    .trim_start_matches(['+', '-'])
                    .starts_with(|c: char| c.is_ascii_digit())
            {
                float = true;
                self.bump();
                if matches!(self.peek(), Some('+' | '-')) {
                    self.bump();
                }
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
            }
            let text = &self.src[from..self.i];
            let unit = self.duration_unit();
            match unit {
                Some((u, _)) if float && matches!(u, "d" | "w" | "y") => {
                    return Err(self.err(
                        from,
                        format!("days, weeks and years take whole numbers, not {text}{u}"),
                    ));
                }
                Some((_, ns)) => {
                    let v: f64 = text
                        .parse()
                        .map_err(|_| self.err(from, format!("invalid number '{text}'")))?;
                    *total_ns.get_or_insert(0.0) += v * ns;
                    // `1h30m`: another amount follows directly.
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        continue;
                    }
                }
                None if total_ns.is_some() => {
                    return Err(self.err(start, "a duration part needs a unit"));
                }
                None => {
                    if self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        let junk: String = self
                            .rest()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        return Err(self.err(
                            self.i,
                            format!(
                                "unknown unit '{junk}' after a number (ns, us, µs, ms, s, m, h)"
                            ),
                        ));
                    }
                    if float {
                        let v: f64 = text
                            .parse()
                            .map_err(|_| self.err(from, format!("invalid number '{text}'")))?;
                        return Ok(Tok::Float(v));
                    }
                    return text
                        .parse::<i64>()
                        .map(Tok::Int)
                        .map_err(|_| self.err(from, format!("integer '{text}' is out of range")));
                }
            }
            let ns = total_ns.expect("set above");
            if !ns.is_finite() || ns > i64::MAX as f64 {
                return Err(self.err(start, "duration is out of range"));
            }
            return Ok(Tok::Duration(ns.round() as i64));
        }
    }

    /// A duration unit at the cursor (consumed), as nanoseconds; `m` is minutes unless `ms`.
    fn duration_unit(&mut self) -> Option<(&'static str, f64)> {
        const UNITS: &[(&str, f64)] = &[
            ("d", 86_400e9),
            ("w", 7.0 * 86_400e9),
            ("y", 365.0 * 86_400e9),
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ];
        for (u, ns) in UNITS {
            if let Some(after) = self.rest().strip_prefix(u) {
                // The unit must end the word (`5min` is not 5 minutes and `in`).
                if after.starts_with(|c: char| c.is_alphabetic() || c == '_') {
                    continue;
                }
                self.i += u.len();
                return Some((u, *ns));
            }
        }
        None
    }
}
