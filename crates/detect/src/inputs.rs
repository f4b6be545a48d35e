//! The user-controlled inputs of a span: what an attacker can put into a request and what
//! signature rules must see decoded (`tv.input`) as well as raw (`tv.input.raw`).
//!
//! Sources: query string (each parameter name and value, and the whole query), path, request
//! body ([`BODY_ATTRIBUTE`]; form bodies split into parameters, JSON bodies into their string
//! values), user agent, and every captured request header except transport plumbing (cookies split
//! into names and values). Decoding is percent-decoding repeated until stable (at most three
//! rounds, so double-encoded `%252e%252e` is seen as `..`), with `+` as space in query and form
//! data, like a web framework and ModSecurity's `urlDecodeUni` would.
use std::borrow::Cow;

use crate::view::SpanView;
use tv_model::otlp::any_value;

/// The span attribute carrying a captured request body. OpenTelemetry has no stable convention
/// for bodies; instrumentations that capture them (opt-in) use this name.
pub const BODY_ATTRIBUTE: &str = "http.request.body";

/// Header values that carry no user payload worth scanning (and are large and repetitive).
const PLUMBING_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "cache-control",
    "pragma",
    "upgrade-insecure-requests",
    "traceparent",
    "tracestate",
    "authorization",
];

/// Cap on the inputs considered per span (a hostile request with 10,000 parameters is still
/// scanned in bounded time; the rest is not inspected, which the cap makes explicit).
pub const MAX_INPUTS: usize = 256;
/// Cap on the bytes of one input that are inspected.
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Inputs {
    /// Decoded inputs, deduplicated.
    pub decoded: Vec<String>,
    /// Raw inputs (query string, path, body, header values) as sent.
    pub raw: Vec<String>,
    /// Decoded inputs normalised like a shell reads them (see [`cmdline`]), where that changes
    /// them or they hold a shell metacharacter.
    pub cmdline: Vec<String>,
    /// For each decoded input, whether it is prose written for people (see [`prose`]): the
    /// signature rules read those, libinjection's tokenizers (made for parameter values) and
    /// the patterns sentences share ([`Inputs::payload`]) do not.
    pub prose: Vec<bool>,
}

impl Inputs {
    fn push_raw(&mut self, s: &str) {
        if !s.is_empty() && self.raw.len() < MAX_INPUTS {
            self.raw.push(truncate(s).to_owned());
        }
    }
    fn push_decoded(&mut self, s: Cow<'_, str>) {
        self.push_decoded_at(s, 0);
    }

    /// `depth`: how many decodings of [`unescaped`] made `s` (an HTML-escaped JavaScript escape
    /// of base64 is three; two is where it stops).
    fn push_decoded_at(&mut self, s: Cow<'_, str>, depth: u8) {
        if s.trim().is_empty() || self.decoded.len() >= MAX_INPUTS {
            return;
        }
        // Documentation: the code it quotes is shown, not sent.
        let s = match without_quoted_code(&s) {
            Some(d) => Cow::Owned(d),
            None => s,
        };
        let s = match without_jsx_handlers(&s) {
            Some(d) => Cow::Owned(d),
            None => s,
        };
        let s = match without_tag_mentions(&s) {
            Some(d) => Cow::Owned(d),
            None => s,
        };
        if s.trim().is_empty() {
            return;
        }
        let s = truncate(&s);
        if !self.decoded.iter().any(|d| d == s) {
            self.decoded.push(s.to_owned());
            self.prose.push(prose(s));
        }
        // SQL and JavaScript read `/*...*/` as whitespace (`UNION/**/SELECT`); MySQL also joins
        // what a comment splits (`DR/**/OP`).
        if s.contains("/*") {
            for joiner in [" ", ""] {
                let stripped = strip_block_comments(s, joiner);
                if stripped != s
                    && self.decoded.len() < MAX_INPUTS
                    && !self.decoded.contains(&stripped)
                {
                    self.prose.push(prose(&stripped));
                    self.decoded.push(stripped);
                }
            }
        }
        if depth < 2 {
            for u in unescaped(s) {
                self.push_decoded_at(Cow::Owned(u), depth + 1);
            }
        }
    }
    /// The decoded inputs that are not prose.
    pub fn payload(&self) -> impl Iterator<Item = &String> {
        self.decoded
            .iter()
            .zip(&self.prose)
            .filter(|(_, p)| !**p)
            .map(|(s, _)| s)
    }

    /// `a=1&b=2` (or `;`-separated cookies): each name and value, decoded.
    fn push_pairs(&mut self, s: &str, sep: char, plus_is_space: bool) {
        for pair in s.split(sep) {
            let pair = pair.trim_start();
            match pair.split_once('=') {
                Some((k, v)) => {
                    self.push_decoded(decode(k, plus_is_space));
                    self.push_decoded(decode(v, plus_is_space));
                }
                None => self.push_decoded(decode(pair, plus_is_space)),
            }
        }
    }
}

/// Words that carry the grammar of English sentences and that no query language, shell or
/// template syntax uses as a keyword (`and`, `or`, `from`, `if`, `in` are left out on purpose).
const FUNCTION_WORDS: &[&str] = &[
    "the", "a", "an", "to", "of", "for", "with", "is", "are", "was", "were", "be", "you", "your",
    "we", "our", "this", "that", "it", "its", "on", "use", "run", "then", "see", "how", "which",
    "will", "can", "after", "before", "has", "have", "please", "thanks", "there", "their", "when",
    "what", "check", "add", "also", "should", "need", "want", "my", "i",
];

/// Runs of letters (an apostrophe inside allowed) among the whitespace-separated tokens of `s`,
/// and how many distinct function words they hold.
fn words(s: &str) -> (usize, usize, usize) {
    let mut tokens = 0;
    let mut words = 0;
    let mut function: Vec<&str> = Vec::new();
    for t in s.split_whitespace() {
        tokens += 1;
        let w =
            t.trim_matches(|c: char| matches!(c, '.' | ',' | ':' | ';' | '!' | '?' | '(' | ')'));
        if !w.is_empty()
            && w.chars().all(|c| c.is_ascii_alphabetic() || c == '\'')
            && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        {
            words += 1;
            if w.len() <= 6
                && let Some(f) = FUNCTION_WORDS.iter().find(|f| f.eq_ignore_ascii_case(w))
                && !function.contains(f)
            {
                function.push(f);
            }
        }
    }
    (tokens, words, function.len())
}

/// Prose written for people (a documentation page, a comment, a description): five or more
/// words that make most of its tokens, two of them different function words; or a labelled
/// quotation (see [`labelled`]); or a sentence (see [`sentence`]). Attack payloads are syntax
/// with at most a keyword or two between the operators.
pub fn prose(s: &str) -> bool {
    let s = one_parameter(s).1;
    // Five words need four spaces; most inputs (ids, paths, parameters) have fewer.
    if s.bytes().filter(u8::is_ascii_whitespace).count() < 4 {
        return labelled(s) || sentence(s);
    }
    let (tokens, words, function) = words(s);
    (words >= 5 && function >= 2 && words * 2 > tokens) || labelled(s) || sentence(s)
}

/// A whole query or form body (`q=how to use <br> tag`): its first parameter's name with the
/// `=`, and the rest; anything else: nothing, and `s`.
fn one_parameter(s: &str) -> (&str, &str) {
    let name_len = s
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']'))
        .count();
    if (1..=40).contains(&name_len) && s[name_len..].starts_with('=') {
        s.split_at(name_len + 1)
    } else {
        ("", s)
    }
}

/// A sentence that names or quotes what it talks about (`LDAP filters look like (&(cn=*)).`,
/// `Edit /etc/hosts to point dev.local at 127.0.0.1.`): it opens with a capitalised word, ends
/// with a full stop, a question or an exclamation mark, and either opens with four words or is
/// mostly words (four or more). An injection has to break out of its context first (`*)`, `'`,
/// `">`), so it does not open with a word.
fn sentence(s: &str) -> bool {
    let t = s.trim();
    if !t.ends_with(['.', '?', '!'])
        || !t.starts_with(|c: char| c.is_ascii_uppercase())
        || t.split_whitespace().next().is_some_and(|w| !is_word(w))
    {
        return false;
    }
    let tokens = t.split_whitespace().count();
    let opens = tokens >= 5 && t.split_whitespace().take(4).all(is_word);
    let words = t.split_whitespace().filter(|w| is_word(w)).count();
    opens || (words >= 4 && words * 2 > tokens)
}

/// A word of a sentence: letters (an apostrophe inside), maybe followed by `,` `:` `.` `?` `!`.
fn is_word(w: &str) -> bool {
    let w = w.trim_end_matches([',', ':', '.', '?', '!']);
    w.len() >= 2 && w.chars().all(|c| c.is_ascii_alphabetic() || c == '\'')
}

/// A value that starts with a label of two to four words and a colon (`Example query: ...`,
/// `Mongo query: ...`, `SQL tip: ...`): text that introduces what it quotes.
fn labelled(s: &str) -> bool {
    let Some((label, rest)) = s.split_once(": ") else {
        return false;
    };
    let n = label.split(' ').count();
    (2..=4).contains(&n)
        && !rest.trim().is_empty()
        && label
            .split(' ')
            .all(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_alphabetic()))
        && label.starts_with(|c: char| c.is_ascii_uppercase())
}

/// `s` without the code it quotes, when `s` is documentation: Markdown fenced blocks
/// (```` ```bash ... ``` ````), and code spans (`` `rm -rf node_modules` ``) with sentence words
/// around them (two or more words outside the code, a function word among them) or after a
/// label (`Docker: `, `In PowerShell: `), are replaced by a space. A backquoted command with
/// nothing around it (`` `id` ``, ``name`whoami` ``) is shell substitution and stays. `None`
/// when `s` is not such documentation.
pub fn without_quoted_code(s: &str) -> Option<String> {
    if !s.contains('`') {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut quoted = false;
    let mut fenced = false;
    let label = s.split('`').next().is_some_and(|before| {
        let t = before.trim_end();
        t.len() >= 3
            && t.len() <= 40
            && t.ends_with(':')
            && t[..t.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
            && t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    });
    while let Some(i) = rest.find('`') {
        let fence = rest[i..].starts_with("```");
        let (open, close) = if fence { (3, "```") } else { (1, "`") };
        let after = &rest[i + open..];
        let Some(j) = after.find(close) else {
            break;
        };
        // An inline span stays on one line.
        if !fence && after[..j].contains('\n') {
            break;
        }
        out.push_str(&rest[..i]);
        out.push(' ');
        quoted = true;
        fenced |= fence;
        rest = &after[j + close.len()..];
    }
    if !quoted {
        return None;
    }
    out.push_str(rest);
    let (_, words, function) = words(one_parameter(&out).1);
    (fenced || label || (words >= 2 && function >= 1)).then_some(out)
}

/// A JSX event handler that names a function without calling it (`onClick={handleClick}`): in
/// HTML the same text runs nothing, so it is set aside as `data-jsx=x` before the XSS rules and
/// libinjection read the input.
fn without_jsx_handlers(s: &str) -> Option<String> {
    static R: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    if !s.contains("={") {
        return None;
    }
    let r = R.get_or_init(|| {
        regex::Regex::new(r"\bon[A-Za-z]{3,40}\s*=\s*\{\s*[A-Za-z_$][\w$.]*\s*\}")
            .expect("pattern compiles")
    });
    r.is_match(s)
        .then(|| r.replace_all(s, "data-jsx=x").into_owned())
}

/// A tag named in words (`how to use <br> tag`, `<script> tag defer`): bare tags without
/// attributes, each set apart by spaces, among words and nothing else. A browser given it runs
/// nothing, so the tags' brackets are dropped before the XSS rules and libinjection read it.
/// `<script>` alone, `"><script>`, `<script>alert(1)</script>` are not mentions.
fn without_tag_mentions(s: &str) -> Option<String> {
    static TAG: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    if !s.contains('<') || s.len() > 200 {
        return None;
    }
    let tag = TAG.get_or_init(|| {
        regex::Regex::new(r"(^|\s)<(/?[A-Za-z][A-Za-z0-9]{0,15})>(\s|$)").expect("pattern compiles")
    });
    let (name, value) = one_parameter(s);
    let plain = tag.replace_all(value, "$1$2$3");
    let words = plain
        .split_whitespace()
        .filter(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .count();
    let mentioned = plain != value
        && words >= 2
        && plain.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ' ' | '/' | '-' | ',' | '.' | '?' | '!')
        });
    mentioned.then(|| format!("{name}{plain}"))
}

/// What `s` says once decoded the ways a browser, a JavaScript engine or an application may
/// decode it: HTML character references (`alert&#x28;1&#x29`, `&lt;script&gt;`), JavaScript
/// escapes (`\u003cscript\u003e`, `\x3c`), and base64 (the whole value, or the data of a
/// `data:` URI) when it decodes to text. Each differs from `s`; most values have none.
fn unescaped(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.contains('&') {
        // As in an attribute value: `&not=` in a query string stays text (a browser reads it
        // so there too); numeric references need no semicolon.
        let u = htmlize::unescape_in(s, htmlize::Context::Attribute);
        if u != s {
            out.push(u.into_owned());
        }
    }
    if s.contains("\\u") || s.contains("\\x") || s.contains("\\U") || s.contains("\\X") {
        let u = js_unescape(s);
        if u != s {
            out.push(u);
        }
    }
    if let Some(t) = base64_text(s) {
        out.push(t);
    }
    out
}

/// `\uXXXX`, `\u{X...}` and `\xXX` escapes decoded; anything else kept as it is.
fn js_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (hex, len) = match after.as_bytes().first() {
            Some(b'u' | b'U') if after[1..].starts_with('{') => match after.find('}') {
                Some(end) if end > 2 && end <= 8 => (&after[2..end], end + 1),
                _ => ("", 0),
            },
            Some(b'u' | b'U') if after.len() >= 5 => (&after[1..5], 5),
            Some(b'x' | b'X') if after.len() >= 3 => (&after[1..3], 3),
            _ => ("", 0),
        };
        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
            Some(c) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push(c);
                rest = &after[len..];
            }
            _ => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text a base64 value stands for: the whole value (16 characters or more of the standard
/// or URL-safe alphabet), or the data of a `data:...;base64,` URI, decoded to UTF-8 text with
/// no control characters but line breaks and tabs. Random tokens and binary data decode to
/// neither.
fn base64_text(s: &str) -> Option<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let t = s.trim();
    let data = match t.find(";base64,") {
        Some(i) if t[..i].to_ascii_lowercase().contains("data:") => &t[i + 8..],
        _ => t,
    };
    let data = data
        .split(['"', '\'', ')', '>', ' '])
        .next()
        .unwrap_or(data);
    if data.len() < 16
        || !data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
        // Words, hex and numbers are what they look like.
        || data.bytes().all(|b| b.is_ascii_alphabetic())
        || data.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        return None;
    }
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(data).ok())?;
    let text = String::from_utf8(bytes).ok()?;
    let printable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    (printable && !text.trim().is_empty()).then_some(text)
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_INPUT_BYTES {
        return s;
    }
    let mut end = MAX_INPUT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Percent-decode until stable (max three rounds); `+` as space when asked. Each round also
/// decodes IIS `%uXXXX` escapes and folds what Unicode-aware servers fold onto ASCII: overlong
/// UTF-8 (`%c0%ae` = `.`, `%c0%af` / `%e0%80%af` = `/`, `%c1%9c` = `\`), fullwidth forms
/// (`%uff0e` = `.`) and the division/set-minus slashes (U+2215, U+2216).
pub fn decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    let mut cur: Cow<'_, str> = if plus_is_space && s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    for _ in 0..3 {
        if !cur.contains('%') {
            break;
        }
        let next = decode_round(&cur);
        if next == *cur {
            break;
        }
        cur = Cow::Owned(next);
    }
    // Look-alikes typed or sent raw (not percent-encoded) fold too.
    if cur.bytes().any(|b| b >= 0x80) {
        let folded: String = cur.chars().map(fold_char).collect();
        if folded != *cur {
            cur = Cow::Owned(folded);
        }
    }
    cur
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn decode_round(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 < b.len()
                && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            if i + 5 < b.len() && (b[i + 1] == b'u' || b[i + 1] == b'U') {
                let digits: Option<Vec<u8>> = b[i + 2..i + 6].iter().map(|&c| hex(c)).collect();
                if let Some(d) = digits {
                    let cp = d.iter().fold(0u32, |a, &x| a << 4 | x as u32);
                    let c = fold_char(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    fold_overlong(&out)
}

/// Fullwidth ASCII, slash and quote look-alikes to ASCII (MySQL and some frameworks fold
/// typographic quotes to ASCII ones).
fn fold_char(c: char) -> char {
    match c as u32 {
        0xff01..=0xff5e => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
        0x2215 => '/',
        0x2216 => '\\',
        0x2018 | 0x2019 | 0x201a | 0x201b | 0x02bc | 0x2032 | 0x00b4 => '\'',
        0x201c | 0x201d | 0x201e | 0x2033 => '"',
        _ => c,
    }
}

/// `/*...*/` replaced by `joiner` (an unclosed one runs to the end).
fn strip_block_comments(s: &str, joiner: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        out.push_str(joiner);
        match rest[i + 2..].find("*/") {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Overlong UTF-8 encodings of ASCII (invalid UTF-8 that some decoders accept) to ASCII; the
/// rest decoded as UTF-8 (lossy), fullwidth forms folded.
fn fold_overlong(b: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if (c == 0xc0 || c == 0xc1) && i + 1 < b.len() {
            out.push(((c & 0x1f) << 6 | (b[i + 1] & 0x3f)) & 0x7f);
            i += 2;
            continue;
        }
        if c == 0xe0 && i + 2 < b.len() && b[i + 1] & 0xe0 == 0x80 {
            out.push(((b[i + 1] & 0x3f) << 6 | (b[i + 2] & 0x3f)) & 0x7f);
            i += 3;
            continue;
        }
        if c == 0xf0 && i + 3 < b.len() && b[i + 1] == 0x80 && b[i + 2] & 0xc0 == 0x80 {
            out.push(((b[i + 2] & 0x3f) << 6 | (b[i + 3] & 0x3f)) & 0x7f);
            i += 4;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out)
        .chars()
        .map(fold_char)
        .collect()
}

/// The path of a request target or URL (`/a/b?x` -> `/a/b`, `https://h/a?x` -> `/a`).
pub fn path_of(target: &str) -> &str {
    let no_query = target.split(['?', '#']).next().unwrap_or(target);
    match no_query.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => no_query,
    }
}

pub fn extract(v: &SpanView<'_>) -> Inputs {
    let mut out = Inputs::default();
    let target = v
        .attr_str("http.target")
        .or_else(|| v.attr_str("url.full"))
        .or_else(|| v.attr_str("http.url"));
    // Query string.
    let query = v.attr_str("url.query").or_else(|| {
        target
            .and_then(|t| t.split_once('?'))
            .map(|(_, q)| q.split('#').next().unwrap_or(q))
    });
    // Whole query strings and form bodies, decoded: scanned as inputs, but not read as shell
    // command lines (`&` there separates parameters: `page=2&debug&id&x=1` runs nothing).
    let mut joined: Vec<String> = Vec::new();
    if let Some(q) = query {
        out.push_raw(q);
        let whole = decode(q, true);
        if q.contains(['&', '=']) {
            joined.push(whole.clone().into_owned());
        }
        out.push_decoded(whole);
        out.push_pairs(q, '&', true);
    }
    // Path.
    if let Some(p) = v.attr_str("url.path").or_else(|| target.map(path_of)) {
        out.push_raw(p);
        if p != "/" {
            out.push_decoded(decode(p, false));
            // Some servers and frameworks read `+` in a path as a space too.
            if p.contains('+') {
                out.push_decoded(decode(p, true));
            }
        }
    }
    // Body: the request's, or a message's payload (a queue consumer's request).
    let body = v
        .attr_str(BODY_ATTRIBUTE)
        .or_else(|| v.attr_str("http.request.body.content"))
        .or_else(|| v.attr_str("messaging.message.body"));
    if let Some(b) = body {
        out.push_raw(b);
        let t = b.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            match serde_json::from_str::<serde_json::Value>(t) {
                Ok(j) => json_strings(&j, &mut out, 0),
                Err(_) => out.push_decoded(Cow::Borrowed(b)),
            }
        } else if b.contains('=') && !t.starts_with('<') && !(b.contains(' ') && prose(b)) {
            // A form body (a browser encodes its spaces); text with spaces that reads as prose
            // is a message, not parameters.
            let whole = decode(b, true);
            joined.push(whole.clone().into_owned());
            out.push_decoded(whole);
            out.push_pairs(b, '&', true);
            // A browser encodes `%` in a form field as `%25`: the value the application reads
            // (decoded once) is what the raw-encoding rules must see, as they see a query.
            if b.contains("%25") {
                for pair in b.split('&') {
                    let v = pair.split_once('=').map_or(pair, |(_, v)| v);
                    if v.contains("%25") {
                        out.push_raw(&decode_round(&v.replace('+', " ")));
                    }
                }
            }
        } else {
            // A body that is not a form may still be sent percent-encoded (a single value).
            out.push_decoded(Cow::Borrowed(b));
            if b.contains('%') {
                out.push_decoded(decode(b, true));
            }
        }
    }
    // GraphQL: the string literals of the document are what the client typed; the document
    // itself is schema and syntax (braces, quotes and `...` are not an injection).
    if let Some(doc) = v.attr_str("graphql.document") {
        for lit in graphql_strings(doc) {
            out.push_raw(lit);
            // The value the resolver gets: the literal's escapes (`\"`, `\\`, `\u0027`) undone.
            let value = if lit.contains('\\') {
                serde_json::from_str::<String>(&format!("\"{lit}\""))
                    .map(Cow::Owned)
                    .unwrap_or(Cow::Borrowed(lit))
            } else {
                Cow::Borrowed(lit)
            };
            out.push_decoded(decode(&value, false));
        }
    }
    // The fragment (read by the browser: where DOM XSS travels).
    if let Some(f) = v
        .attr_str("url.fragment")
        .or_else(|| target.and_then(|t| t.split_once('#')).map(|(_, f)| f))
    {
        out.push_raw(f);
        out.push_decoded(decode(f, false));
    }
    // On a server span: its name when it is the raw request line or path the server saw (not
    // a route template), and an exception's message (an error quoting the input it choked on).
    // Client and internal spans name queries and calls the service made itself.
    let server = v.span.kind == 2;
    let name = v.span.name.as_str();
    let path_like = name.starts_with('/')
        || name.split_once(' ').is_some_and(|(m, rest)| {
            m.bytes().all(|c| c.is_ascii_uppercase()) && rest.starts_with('/')
        });
    if server && path_like && name.contains(['?', '%', '\'', '<', '"', ';']) {
        out.push_raw(name);
        out.push_decoded(decode(name, false));
    }
    for ev in v.span.events.iter().filter(|_| server) {
        for kv in &ev.attributes {
            if kv.key == "exception.message"
                && let Some(any_value::Value::StringValue(m)) =
                    kv.value.as_ref().and_then(|x| x.value.as_ref())
            {
                out.push_raw(m);
                out.push_decoded(decode(m, false));
                // What the message quotes after its own words (`invalid item name: <input>`).
                if let Some((_, quoted)) = m.split_once(": ") {
                    out.push_decoded(decode(quoted, false));
                }
            }
        }
    }
    // User agent and captured request headers.
    if let Some(ua) = v
        .attr_str("user_agent.original")
        .or_else(|| v.attr_str("http.user_agent"))
    {
        out.push_raw(ua);
        out.push_decoded(decode(ua, false));
    }
    for kv in &v.span.attributes {
        // gRPC metadata is the request's headers.
        let Some(name) = kv
            .key
            .strip_prefix("http.request.header.")
            .or_else(|| kv.key.strip_prefix("rpc.grpc.request.metadata."))
            .or_else(|| kv.key.strip_prefix("rpc.request.metadata."))
        else {
            continue;
        };
        let lower = name.to_ascii_lowercase().replace('_', "-");
        let name = lower.as_str();
        if PLUMBING_HEADERS.contains(&name) {
            continue;
        }
        let values: Vec<&str> = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => vec![s],
            Some(any_value::Value::ArrayValue(a)) => a
                .values
                .iter()
                .filter_map(|m| match m.value.as_ref() {
                    Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        for s in values {
            out.push_raw(s);
            if name == "cookie" {
                out.push_pairs(s, ';', false);
            } else {
                out.push_decoded(decode(s, false));
            }
        }
    }
    out.cmdline = out
        .decoded
        .iter()
        .filter(|d| !joined.iter().any(|j| j == *d))
        .map(|d| cmdline(d))
        .filter(|c| !c.trim().is_empty())
        .collect();
    out.cmdline.dedup();
    out
}

/// The string literals of a GraphQL document (`"..."` and `"""..."""` block strings, escapes
/// kept as written).
fn graphql_strings(doc: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = doc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        if doc[i..].starts_with("\"\"\"") {
            let start = i + 3;
            match doc[start..].find("\"\"\"") {
                Some(n) => {
                    out.push(&doc[start..start + n]);
                    i = start + n + 3;
                }
                None => break,
            }
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j] != b'"' {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        out.push(&doc[start..j.min(b.len())]);
        i = j + 1;
    }
    out
}

/// Normalise an input the way a shell (or cmd.exe) reads it, so evasions collapse onto the
/// command: quotes, backslashes and carets removed (`c'a't`, `c\at`, `w^h^o^a^m^i`), `${IFS}`,
/// `$IFS$9`, commas and tabs as spaces, whitespace collapsed, lower case.
pub fn cmdline(s: &str) -> String {
    // Most inputs (paths, ids, user agents) have nothing a shell would drop or fold.
    if !s.contains("  ")
        && s.bytes().all(|b| {
            b.is_ascii()
                && !b.is_ascii_uppercase()
                && !matches!(
                    b,
                    b'\'' | b'"' | b'\\' | b'^' | b'$' | b'[' | b',' | b'\t' | 0x0b | 0x0c
                )
        })
    {
        return s.to_owned();
    }
    cmdline_full(s)
}

/// [`cmdline`] without its shortcut.
fn cmdline_full(s: &str) -> String {
    let lower = s.to_lowercase();
    let lower = lower
        .replace("${ifs}", " ")
        .replace("$ifs$9", " ")
        .replace("$ifs", " ");
    // Empty expansions a shell drops (`c$!at`, `who$@ami`, `un$1ame`) and one-letter character
    // classes (`adduse[r]`, `/etc/[p]asswd` stays a glob elsewhere).
    let mut cleaned = String::with_capacity(lower.len());
    let mut it = lower.chars().peekable();
    while let Some(c) = it.next() {
        if c == '$'
            && let Some(&n) = it.peek()
            && (matches!(n, '!' | '?' | '-' | '#' | '$' | '@' | '*' | '_') || n.is_ascii_digit())
        {
            it.next();
            continue;
        }
        cleaned.push(c);
    }
    let lower = one_letter_classes(&cleaned);
    let mut out = String::with_capacity(lower.len());
    let mut space = false;
    for c in lower.chars() {
        match c {
            '\'' | '"' | '\\' | '^' => {}
            ',' | '\t' | ' ' | '\u{b}' | '\u{c}' => {
                if !space {
                    out.push(' ');
                }
                space = true;
                continue;
            }
            _ => out.push(c),
        }
        space = false;
    }
    out
}

/// `[r]` -> `r` (a one-character class matches just that character).
fn one_letter_classes(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == '[' && i + 2 < b.len() && b[i + 2] == ']' && b[i + 1].is_ascii_alphanumeric() {
            out.push(b[i + 1]);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn json_strings(v: &serde_json::Value, out: &mut Inputs, depth: usize) {
    if depth > 16 {
        return;
    }
    match v {
        serde_json::Value::String(s) => {
            out.push_decoded(Cow::Borrowed(s));
            // A JSON value still percent-encoded is decoded by whatever reads it next (a path,
            // a URL, a query builder), as a parameter would be.
            if s.contains('%') {
                out.push_decoded(decode(s, false));
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|m| json_strings(m, out, depth + 1)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, m)| {
            out.push_decoded(Cow::Borrowed(k));
            json_strings(m, out, depth + 1)
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_quotes_code_and_substitution_does_not() {
        for (doc, want) in [
            (
                "Clean the cache with `rm -rf node_modules && npm install`.",
                "Clean the cache with  .",
            ),
            ("Docker: `docker run --rm alpine sh -c 'ls'`", "Docker:  "),
            ("```bash\nkubectl get pods | grep api\n```", " "),
        ] {
            assert_eq!(without_quoted_code(doc).as_deref(), Some(want), "{doc}");
        }
        for payload in [
            "`id`",
            "name`whoami`",
            "x `cat /etc/passwd` y",
            "; `uname -a`",
        ] {
            assert_eq!(without_quoted_code(payload), None, "{payload}");
        }
    }

    #[test]
    fn prose_is_told_from_payloads() {
        for p in [
            "Use document.getElementById('app') to mount the component.",
            "SQL tip: WHERE name LIKE '%smith%' is slow without a trigram index.",
            "Example query: SELECT id FROM users WHERE active = 1",
        ] {
            assert!(prose(p), "{p}");
        }
        for p in [
            "1' AND 1=1 UNION SELECT username, password FROM users WHERE '1'='1",
            "<img src=x onerror=alert(document.cookie)>",
            "order by price",
            "admin'--",
        ] {
            assert!(!prose(p), "{p}");
        }
        assert_eq!(
            without_jsx_handlers(r#"<button onClick={handleClick} className="btn">"#).as_deref(),
            Some(r#"<button data-jsx=x className="btn">"#)
        );
        assert_eq!(without_jsx_handlers("<svg onload={alert(1)}>"), None);
    }

    #[test]
    fn sentences_and_tag_mentions_are_told_from_payloads() {
        for p in [
            "LDAP filters look like (&(objectClass=user)(cn=*)).",
            "Edit /etc/hosts to point dev.local at 127.0.0.1.",
            "q=Nginx logs are in /var/log/nginx/access.log on Debian.",
        ] {
            assert!(prose(p), "{p}");
        }
        for p in [
            "*)(uid=*))(|(uid=*",
            "Hello' OR 1=1 --.",
            "/etc/passwd.",
            "<script>alert(1)</script>.",
        ] {
            assert!(!prose(p), "{p}");
        }
        assert_eq!(
            without_tag_mentions("q=how to use <br> tag").as_deref(),
            Some("q=how to use br tag")
        );
        assert_eq!(
            without_tag_mentions("The <iframe> element embeds another page.").as_deref(),
            Some("The iframe element embeds another page.")
        );
        for attack in [
            "<script>",
            "\"><script>",
            "<script>alert(1)</script>",
            "<script> alert(1) </script>",
            "x <img src=x onerror=alert(1)> y",
        ] {
            assert_eq!(without_tag_mentions(attack), None, "{attack}");
        }
    }

    #[test]
    fn escapes_and_base64_are_decoded_into_further_inputs() {
        assert_eq!(unescaped("alert&#x28;1&#x29"), vec!["alert(1)".to_owned()]);
        // As a browser reads an attribute: `&not=` in a query string stays as it is.
        assert!(unescaped("page=2&not=x&sort=asc").is_empty());
        assert_eq!(
            unescaped("\\u003cscript\\u003ealert(1)\\x3c/script\\u{3e}"),
            vec!["<script>alert(1)</script>".to_owned()]
        );
        assert_eq!(js_unescape("C:\\users\\x"), "C:\\users\\x");
        assert_eq!(
            unescaped("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
            vec!["<script>alert(1)</script>".to_owned()]
        );
        assert_eq!(
            base64_text("data:text/html;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+").as_deref(),
            Some("<svg onload=alert(1)>")
        );
        // Random tokens, ids, words and short values decode to nothing.
        for v in [
            "550e8400-e29b-41d4-a716-446655440000",
            "internationalization",
            "Zm9vYmFy",
            "q8Jd9s0LkP2mZx7RtY4vW1nB",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ] {
            assert_eq!(base64_text(v), None, "{v}");
        }
    }

    #[test]
    fn decoding_repeats_until_stable_and_honours_plus() {
        assert_eq!(decode("..%252f..%252fetc", false), "../../etc");
        assert_eq!(decode("a+b%20c", true), "a b c");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("100%", false), "100%");
        assert_eq!(decode("..%c0%af..%c0%afetc", false), "../../etc");
        assert_eq!(decode("..%25c0%25ae%25c0%25ae/x", false), "..../x");
        assert_eq!(decode("%uff0e%uff0e%u2215x", false), "../x");
        assert_eq!(decode("..%e0%80%afx", false), "../x");
        assert_eq!(decode("1%E2%80%99 OR %E2%80%991", false), "1' OR '1");
        assert_eq!(
            strip_block_comments("DROP/*x*/TABLE/*y", " "),
            "DROP TABLE "
        );
        assert_eq!(strip_block_comments("DR/**/OP", ""), "DROP");
    }

    #[test]
    fn cmdline_collapses_shell_evasions() {
        assert_eq!(cmdline("c'a't /etc/passwd"), "cat /etc/passwd");
        assert_eq!(cmdline("w^h^o^a^m^i"), "whoami");
        assert_eq!(cmdline(";cat${IFS}/etc/passwd"), ";cat /etc/passwd");
        assert_eq!(cmdline("C\\AT\t\t/x"), "cat /x");
        assert_eq!(cmdline("c$!at /et$?c/pas$-swd"), "cat /etc/passwd");
        assert_eq!(cmdline("adduse[r] x"), "adduser x");
        assert_eq!(cmdline("a  b"), "a b");
        assert_eq!(
            cmdline("Chrome/118 (KHTML, like Gecko)"),
            "chrome/118 (khtml like gecko)"
        );
    }

    proptest::proptest! {
        /// The shortcut for inputs with nothing to fold gives what the long way gives.
        #[test]
        fn cmdline_shortcut_agrees_with_the_long_way(
            s in r#"[a-zA-Z0-9 /;|&$'"\\^,\[\]\t\x0b.=(){}!?#@*_é-]{0,24}"#
        ) {
            proptest::prop_assert_eq!(cmdline(&s), cmdline_full(&s));
        }
    }

    #[test]
    fn path_of_targets_and_urls() {
        assert_eq!(path_of("/a/b?x=1"), "/a/b");
        assert_eq!(path_of("https://h:8080/a?x"), "/a");
        assert_eq!(path_of("https://h"), "/");
    }
}
