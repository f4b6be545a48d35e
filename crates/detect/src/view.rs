//! A borrowed view of one decoded OTLP span (with its resource) as a Sigma event.
//!
//! Field names resolve in this order:
//! 1. Sigma web fields (`cs-uri-query`, `c-useragent`, `sc-status`, ...) map to OpenTelemetry
//!    semantic conventions, newest name first, then older names (`http.url`, `http.method`, ...);
//!    see [`SIGMA_FIELDS`] and docs/adr/0012.
//! 2. Span fields: `span.name`, `span.kind` (`server`, `client`, ...), `span.status` (`ok`,
//!    `error`, `unset`), `service.name`.
//! 3. Derived fields computed on first use: `tv.input` (every user-controlled input, decoded:
//!    query parameter names and values, path, request body, user agent, referer, cookies and other
//!    captured request headers), `tv.input.payload` (those that are not prose written for people:
//!    a documentation body, a comment), `tv.input.raw`, `tv.input.cmdline` (inputs normalised the way a
//!    shell reads them), `tv.sqli` (the libinjection fingerprints of inputs that tokenize as SQL injection) and
//!    `tv.xss` (present when an input parses as XSS), `url.extension`.
//! 4. Any other name is a span attribute, then a resource attribute.
//!
//! Keyword rules (no field) search the request's raw text: full URL, path, query, user agent,
//! referer and request body. `db.statement` is deliberately not in the keyword haystack: keyword
//! lists like `UNION SELECT` describe URLs, and application SQL uses them legitimately.
//!
//! Values are matched raw: nothing is percent-decoded except in `tv.input`, because Sigma rules
//! mix raw and encoded forms (`UNION%20SELECT`, `..%252f`).
use std::borrow::Cow;
use std::cell::OnceCell;

use rsigma_eval::event::{Event, EventValue};
use serde_json::Value;
use tv_model::otlp::{AnyValue, KeyValue, Resource, Span, any_value};

use crate::inputs;

/// Sigma web field -> where it lives in a span (first present wins). `derived:` entries are
/// computed from other attributes.
pub const SIGMA_FIELDS: &[(&str, &[&str])] = &[
    ("db.statement", &["db.statement", "db.query.text"]),
    ("c-uri", &["url.full", "http.url", "derived:path+query"]),
    ("cs-uri", &["url.full", "http.url", "derived:path+query"]),
    ("cs-uri-query", &["url.query", "derived:query"]),
    ("c-uri-query", &["url.query", "derived:query"]),
    ("cs-uri-stem", &["url.path", "derived:path"]),
    ("c-uri-stem", &["url.path", "derived:path"]),
    ("c-uri-extension", &["derived:extension"]),
    ("cs-method", &["http.request.method", "http.method"]),
    (
        "sc-status",
        &["http.response.status_code", "http.status_code"],
    ),
    (
        "c-useragent",
        &[
            "user_agent.original",
            "http.user_agent",
            "http.request.header.user-agent",
        ],
    ),
    (
        "cs-user-agent",
        &[
            "user_agent.original",
            "http.user_agent",
            "http.request.header.user-agent",
        ],
    ),
    (
        "cs-host",
        &[
            "server.address",
            "url.domain",
            "http.host",
            "net.host.name",
            "net.peer.name",
            "http.request.header.host",
        ],
    ),
    ("cs-referer", &["http.request.header.referer"]),
    ("cs-referrer", &["http.request.header.referer"]),
    ("cs-cookie", &["http.request.header.cookie"]),
    (
        "dst_ip",
        &[
            "network.peer.address",
            "net.peer.ip",
            "net.sock.peer.addr",
            "derived:server-ip",
        ],
    ),
    (
        "c-ip",
        &["client.address", "http.client_ip", "net.sock.peer.addr"],
    ),
    (
        "src_ip",
        &["client.address", "http.client_ip", "net.sock.peer.addr"],
    ),
];

/// Derived fields this view computes (besides the Sigma aliases).
pub const DERIVED_FIELDS: &[&str] = &[
    "tv.input",
    "tv.input.payload",
    "tv.input.raw",
    "tv.input.cmdline",
    "tv.sqli",
    "tv.xss",
    "url.extension",
    "span.name",
    "span.kind",
    "span.status",
    "service.name",
];

/// Attributes whose raw text keyword rules search.
const KEYWORD_HAYSTACK: &[&str] = &[
    "url.full",
    "http.url",
    "url.path",
    "url.query",
    "http.target",
    "user_agent.original",
    "http.user_agent",
    "http.request.header.referer",
    inputs::BODY_ATTRIBUTE,
];

/// Is `name` a field this view can answer (a Sigma alias, a derived field, or an attribute-like
/// dotted name)? Used to report rules that reference fields traces never carry.
pub fn known_field(name: &str) -> bool {
    SIGMA_FIELDS
        .iter()
        .any(|(f, _)| f.eq_ignore_ascii_case(name))
        || DERIVED_FIELDS.contains(&name)
        || (name.contains('.') && !name.contains(' '))
}

/// The derived fields the rule set's rewritten regex items read: `tv.re.<field>` holds the ids
/// (`#3`) of the patterns registered for `<field>` that match any of its values.
pub const REGEX_FIELD_PREFIX: &str = "tv.re.";

/// One span as a Sigma event.
pub struct SpanView<'a> {
    pub resource: Option<&'a Resource>,
    pub span: &'a Span,
    regexes: Option<&'a crate::regex_index::Indexes>,
    /// `tv.re.<field>` answers computed so far: (field, matching pattern ids).
    regex_hits: std::cell::RefCell<Vec<(String, Vec<usize>)>>,
    inputs: OnceCell<inputs::Inputs>,
    sqli: OnceCell<Vec<String>>,
    xss: OnceCell<bool>,
}

impl<'a> SpanView<'a> {
    pub fn new(resource: Option<&'a Resource>, span: &'a Span) -> Self {
        SpanView {
            resource,
            span,
            regexes: None,
            regex_hits: Default::default(),
            inputs: OnceCell::new(),
            sqli: OnceCell::new(),
            xss: OnceCell::new(),
        }
    }

    /// A view whose `tv.re.<field>` fields answer from `regexes`.
    pub fn with_regexes(
        resource: Option<&'a Resource>,
        span: &'a Span,
        regexes: &'a crate::regex_index::Indexes,
    ) -> Self {
        SpanView {
            regexes: Some(regexes),
            ..Self::new(resource, span)
        }
    }

    /// Whether the view answers the rule set's `tv.re.` fields.
    pub fn answers_regexes(&self) -> bool {
        self.regexes.is_some()
    }

    /// The ids of the patterns registered for `field` that match any of its values (each
    /// value by its text, an array member by member), computed once.
    fn regex_hits(&self, field: &str) -> Vec<usize> {
        if let Some((_, ids)) = self.regex_hits.borrow().iter().find(|(f, _)| f == field) {
            return ids.clone();
        }
        let mut ids = Vec::new();
        if let Some(index) = self.regexes.and_then(|r| r.get(field))
            && let Some(value) = self.get_field(field)
        {
            // The values rsigma's regex matcher reads: scalars by their text, arrays member by
            // member at any depth, maps not at all.
            fn texts<'v>(v: &'v EventValue<'_>, out: &mut Vec<Cow<'v, str>>) {
                match v {
                    EventValue::Array(members) => members.iter().for_each(|m| texts(m, out)),
                    EventValue::Map(_) | EventValue::Null => {}
                    v => out.extend(v.as_str()),
                }
            }
            let mut all = Vec::new();
            texts(&value, &mut all);
            let texts = all;
            for t in &texts {
                index.matches(t, &mut ids);
            }
            ids.sort_unstable();
            ids.dedup();
        }
        self.regex_hits
            .borrow_mut()
            .push((field.to_owned(), ids.clone()));
        ids
    }

    /// A span attribute, then a resource attribute.
    pub fn attr(&self, key: &str) -> Option<&'a AnyValue> {
        find(&self.span.attributes, key)
            .or_else(|| self.resource.and_then(|r| find(&r.attributes, key)))
    }

    /// A string attribute (arrays give their first member).
    pub fn attr_str(&self, key: &str) -> Option<&'a str> {
        match self.attr(key)?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            any_value::Value::ArrayValue(a) => match a.values.first()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn service(&self) -> &'a str {
        tv_model::service_name(self.resource).unwrap_or("")
    }

    /// The user-controlled inputs of this span, decoded (computed once).
    pub fn inputs(&self) -> &inputs::Inputs {
        self.inputs.get_or_init(|| inputs::extract(self))
    }

    /// The libinjection SQLi fingerprints of the inputs that tokenize as SQL injection (distinct,
    /// in input order).
    pub fn sqli(&self) -> &[String] {
        self.sqli.get_or_init(|| {
            let mut out: Vec<String> = Vec::new();
            for s in self.inputs().payload().filter(|s| sql_candidate(s)) {
                let r = libinjectionrs::detect_sqli(s.as_bytes());
                if r.is_injection() {
                    let f = r
                        .fingerprint
                        .map(|f| f.as_str().to_owned())
                        .unwrap_or_default();
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
            }
            out
        })
    }

    /// Does any input parse as HTML/JavaScript injection (libinjection's XSS detector)?
    pub fn xss(&self) -> bool {
        *self.xss.get_or_init(|| {
            self.inputs()
                .payload()
                .filter(|s| html_candidate(s))
                .any(|s| {
                    libinjectionrs::detect_xss(without_html5_doctype(s).as_bytes()).is_injection()
                })
        })
    }

    fn derived(&self, what: &str) -> Option<EventValue<'_>> {
        let target = || {
            self.attr_str("http.target")
                .or_else(|| self.attr_str("url.full").or(self.attr_str("http.url")))
        };
        match what {
            "path+query" => {
                if let Some(p) = self.attr_str("url.path") {
                    return Some(match self.attr_str("url.query") {
                        Some(q) if !q.is_empty() => str_owned(format!("{p}?{q}")),
                        _ => str_borrowed(p),
                    });
                }
                self.attr_str("http.target").map(str_borrowed)
            }
            "query" => target()
                .and_then(|t| t.split_once('?'))
                .map(|(_, q)| str_borrowed(q.split('#').next().unwrap_or(q))),
            "path" => target().map(|t| str_borrowed(inputs::path_of(t))),
            "extension" => {
                let path = self
                    .attr_str("url.path")
                    .or_else(|| target().map(inputs::path_of))?;
                let last = path.rsplit('/').next()?;
                let (_, ext) = last.rsplit_once('.')?;
                (!ext.is_empty()).then(|| str_borrowed(ext))
            }
            "server-ip" => self
                .attr_str("server.address")
                .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
                .map(str_borrowed),
            _ => None,
        }
    }
}

/// Words whose presence makes an input worth tokenizing as SQL even without SQL punctuation
/// (`1 union select 1`), sorted for binary search. Not `like`: every Chrome user agent says
/// "like Gecko".
const SQL_WORDS: &[&[u8]] = &[
    b"and",
    b"ascii",
    b"benchmark",
    b"case",
    b"cast",
    b"char",
    b"chr",
    b"concat",
    b"convert",
    b"database",
    b"declare",
    b"delete",
    b"div",
    b"drop",
    b"elt",
    b"exec",
    b"execute",
    b"extractvalue",
    b"from",
    b"group",
    b"having",
    b"hex",
    b"if",
    b"in",
    b"insert",
    b"into",
    b"is",
    b"limit",
    b"load_file",
    b"mid",
    b"mod",
    b"not",
    b"null",
    b"or",
    b"order",
    b"pg_sleep",
    b"procedure",
    b"select",
    b"sleep",
    b"substr",
    b"substring",
    b"unhex",
    b"union",
    b"update",
    b"updatexml",
    b"version",
    b"waitfor",
    b"when",
    b"where",
    b"xor",
];

/// For each length, a bit per first letter of the [`SQL_WORDS`] of that length.
const SQL_WORD_STARTS: [u32; 17] = {
    let mut t = [0u32; 17];
    let mut i = 0;
    while i < SQL_WORDS.len() {
        let w = SQL_WORDS[i];
        t[w.len()] |= 1 << (w[0] - b'a');
        i += 1;
    }
    t
};

/// Could libinjection's SQLi tokenizer flag this input? Its fingerprints need a quote, an
/// operator, a comment, a parenthesis or a SQL word; ordinary paths, ids and user agents without
/// those are skipped (the tokenizer is the stage's largest cost).
pub fn sql_candidate(s: &str) -> bool {
    if s.bytes().any(|b| {
        matches!(
            b,
            b'\''
                | b'"'
                | b'`'
                | b'='
                | b'<'
                | b'>'
                | b'#'
                | b'@'
                | b'|'
                | b'&'
                | b'*'
                | b'!'
                | b'^'
                | b'%'
                | b'+'
                | b'~'
        )
    }) || s.contains("--")
        || s.contains("/*")
    {
        return true;
    }
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| {
            if !(2..=16).contains(&w.len()) {
                return false;
            }
            // Most words of ordinary inputs fail the (length, first letter) table.
            let first = w.as_bytes()[0].to_ascii_lowercase();
            if !first.is_ascii_lowercase() || SQL_WORD_STARTS[w.len()] & (1 << (first - b'a')) == 0
            {
                return false;
            }
            let mut buf = [0u8; 16];
            for (d, b) in buf.iter_mut().zip(w.bytes()) {
                *d = b.to_ascii_lowercase();
            }
            SQL_WORDS.binary_search(&&buf[..w.len()]).is_ok()
        })
}

/// Could libinjection's XSS detector flag this input? It needs markup, an attribute assignment,
/// a quote, an entity or a script URL.
pub fn html_candidate(s: &str) -> bool {
    s.bytes()
        .any(|b| matches!(b, b'<' | b'>' | b'"' | b'\'' | b'`' | b'=' | b'&'))
        || {
            let l = s.to_ascii_lowercase();
            l.contains("script") || l.contains("data:")
        }
}

/// The input without HTML5 document type declarations (`<!DOCTYPE html>`), which libinjection
/// reports as XSS although they carry nothing a browser runs; HTML documents posted to a CMS or
/// a mailer start with one. A DOCTYPE with an identifier or an internal subset stays (XXE).
fn without_html5_doctype(s: &str) -> Cow<'_, str> {
    const DOCTYPE: &[u8] = b"<!doctype html>";
    let b = s.as_bytes();
    if !b
        .windows(DOCTYPE.len())
        .any(|w| w.eq_ignore_ascii_case(DOCTYPE))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if b.len() - i >= DOCTYPE.len() && b[i..i + DOCTYPE.len()].eq_ignore_ascii_case(DOCTYPE) {
            i += DOCTYPE.len();
        } else {
            let c = s[i..].chars().next().expect("char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    Cow::Owned(out)
}

fn str_borrowed(s: &str) -> EventValue<'_> {
    EventValue::Str(Cow::Borrowed(s))
}

fn str_owned<'a>(s: String) -> EventValue<'a> {
    EventValue::Str(Cow::Owned(s))
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// An OTLP value as a Sigma value (bytes are not matchable and count as absent).
pub fn event_value(v: &AnyValue) -> Option<EventValue<'_>> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => str_borrowed(s),
        any_value::Value::IntValue(i) => EventValue::Int(*i),
        any_value::Value::DoubleValue(d) => EventValue::Float(*d),
        any_value::Value::BoolValue(b) => EventValue::Bool(*b),
        any_value::Value::ArrayValue(a) => {
            EventValue::Array(a.values.iter().filter_map(event_value).collect())
        }
        any_value::Value::KvlistValue(kv) => EventValue::Map(
            kv.values
                .iter()
                .filter_map(|kv| {
                    Some((
                        Cow::Borrowed(kv.key.as_str()),
                        event_value(kv.value.as_ref()?)?,
                    ))
                })
                .collect(),
        ),
        any_value::Value::BytesValue(_) | any_value::Value::StringValueStrindex(_) => return None,
    })
}

pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

impl Event for SpanView<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if let Some((_, sources)) = SIGMA_FIELDS
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(path))
        {
            return sources
                .iter()
                .find_map(|s| match s.strip_prefix("derived:") {
                    Some(d) => self.derived(d),
                    None => self.attr(s).and_then(event_value),
                });
        }
        if let Some(field) = path.strip_prefix(REGEX_FIELD_PREFIX) {
            let ids = self.regex_hits(field);
            return (!ids.is_empty()).then(|| {
                EventValue::Array(ids.iter().map(|i| str_owned(format!("#{i}"))).collect())
            });
        }
        match path {
            "span.name" => return Some(str_borrowed(&self.span.name)),
            "span.kind" => return Some(str_borrowed(kind_name(self.span.kind))),
            "span.status" => {
                let code = self.span.status.as_ref().map(|s| s.code).unwrap_or(0);
                return Some(str_borrowed(match code {
                    1 => "ok",
                    2 => "error",
                    _ => "unset",
                }));
            }
            "service.name" => return self.attr("service.name").and_then(event_value),
            "tv.input" => {
                let i = self.inputs();
                return (!i.decoded.is_empty()).then(|| {
                    EventValue::Array(i.decoded.iter().map(|s| str_borrowed(s)).collect())
                });
            }
            // The decoded inputs that are not prose written for people: patterns that ordinary
            // sentences about SQL, LDAP, MongoDB or the DOM also contain are matched here only.
            "tv.input.payload" => {
                let v: Vec<EventValue<'_>> =
                    self.inputs().payload().map(|s| str_borrowed(s)).collect();
                return (!v.is_empty()).then_some(EventValue::Array(v));
            }
            "tv.input.raw" => {
                let i = self.inputs();
                return (!i.raw.is_empty())
                    .then(|| EventValue::Array(i.raw.iter().map(|s| str_borrowed(s)).collect()));
            }
            "tv.input.cmdline" => {
                let i = self.inputs();
                return (!i.cmdline.is_empty()).then(|| {
                    EventValue::Array(i.cmdline.iter().map(|s| str_borrowed(s)).collect())
                });
            }
            "tv.sqli" => {
                let f = self.sqli();
                return (!f.is_empty())
                    .then(|| EventValue::Array(f.iter().map(|s| str_borrowed(s)).collect()));
            }
            "tv.xss" => return self.xss().then(|| str_borrowed("xss")),
            "url.extension" => return self.derived("extension"),
            _ => {}
        }
        self.attr(path).and_then(event_value)
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut hit = false;
        self.visit_string_values(&mut |s| hit = hit || pred(s));
        hit
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.visit_string_values(&mut |s| out.push(Cow::Owned(s.to_owned())));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        for key in KEYWORD_HAYSTACK {
            if let Some(v) = self.attr(key) {
                match v.value.as_ref() {
                    Some(any_value::Value::StringValue(s)) => visit(s),
                    Some(any_value::Value::ArrayValue(a)) => {
                        for m in &a.values {
                            if let Some(any_value::Value::StringValue(s)) = m.value.as_ref() {
                                visit(s)
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Never the raw event: findings carry redacted evidence only (the engine asks for this
    /// only for rules that set `rsigma.include_event`, which the loader refuses).
    fn to_json(&self) -> Value {
        Value::Object(Default::default())
    }
}
