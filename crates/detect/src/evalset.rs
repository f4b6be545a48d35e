//! Labeled evaluation sets (the formats in `../shared/evaldata/`) turned into OTLP spans the way
//! the payloads would appear in traces, and a quality report over them.
//!
//! Wrapping (issue 7): a payload becomes a trace of an HTTP server span carrying it in `url.query`
//! (percent-encoded the way a client sends it; `%` itself is left alone because these lists already
//! hold encoded forms) and, for SQL injection, a database client span whose `db.statement` is
//! `SELECT id, name FROM users WHERE name = '<payload>'`. A CRS regression test becomes the HTTP
//! server span of its request: method, path, query, user agent, the other headers as
//! `http.request.header.*`, and the body as `http.request.body`. Benign SQL is a database span;
//! benign URL inputs are a server span's query. A case counts as detected when any signature rule
//! fires on any of its spans; the report also counts which span fired and which class.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tv_model::otlp::{
    AnyValue, ArrayValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans,
    Span, any_value,
};

use crate::{Sender, Signatures};

/// Characters a client percent-encodes in a query value (`%` excluded: see the module docs).
const QUERY_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']')
    .add(b'=');

pub const BENIGN: &str = "benign";

/// `../shared/evaldata` seen from a crate directory (`env!("CARGO_MANIFEST_DIR")` of a crate in
/// `crates/`), or `None` with a SKIPPED note when it is absent; under `CI=true` its absence
/// panics (the quality tests must not pass by skipping).
pub fn dev_data(manifest_dir: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(manifest_dir).join("../../../shared/evaldata");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "../shared/evaldata is missing (required under CI=true)"
    );
    eprintln!("SKIPPED: ../shared/evaldata not found at {}", p.display());
    None
}

/// One labeled case: a small trace and its label.
#[derive(Debug)]
pub struct Case {
    /// `crs`, `patt`, `libinjection`, `sqlglot`.
    pub set: &'static str,
    /// Report row: a CRS test file, a PayloadsAllTheThings category, a benign file.
    pub group: String,
    /// Expected class (`sqli`, `xss`, ...) or [`BENIGN`].
    pub class: String,
    pub req: ExportTraceServiceRequest,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn kv_strs(key: &str, vs: &[String]) -> KeyValue {
    kv(
        key,
        any_value::Value::ArrayValue(ArrayValue {
            values: vs
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.clone())),
                })
                .collect(),
        }),
    )
}

/// Deterministic non-zero ids from a counter (the eval does not need randomness).
fn ids(n: u64, k: u8) -> (Vec<u8>, Vec<u8>) {
    let mut t = vec![0x7e; 16];
    t[8..].copy_from_slice(&(n + 1).to_be_bytes());
    let mut s = (n + 1).to_be_bytes().to_vec();
    s[0] = k + 1;
    (t, s)
}

pub fn server_span(n: u64, attrs: Vec<KeyValue>, name: &str) -> Span {
    let (trace_id, span_id) = ids(n, 0);
    Span {
        trace_id,
        span_id,
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: attrs,
        ..Default::default()
    }
}

pub fn db_span(n: u64, statement: &str) -> Span {
    let (trace_id, span_id) = ids(n, 1);
    Span {
        trace_id,
        span_id,
        name: "SELECT users".into(),
        kind: 3,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: vec![
            kv_str("db.system", "postgresql"),
            kv_str("db.statement", statement),
        ],
        ..Default::default()
    }
}

/// The spans of one service, as a resource.
pub fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(service, spans)],
    }
}

/// A payload typed into a search form: `GET /search?q=<payload>`.
pub fn query_span(n: u64, payload: &str, raw: bool) -> Span {
    let value = if raw {
        payload.to_owned()
    } else {
        utf8_percent_encode(payload, QUERY_ENCODE).to_string()
    };
    server_span(
        n,
        vec![
            kv_str("http.request.method", "GET"),
            kv_str("url.path", "/search"),
            kv_str("url.query", &format!("q={value}")),
            kv_str("url.scheme", "https"),
            kv_str("http.route", "/search"),
            kv_str(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            ),
        ],
        "GET /search",
    )
}

pub fn sql_of(payload: &str) -> String {
    format!("SELECT id, name FROM users WHERE name = '{payload}'")
}

fn non_comment_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
}

/// PayloadsAllTheThings Intruder lists: category = directory. `LDAP_attributes.txt` is skipped
/// (a list of LDAP attribute names such as `cn`, used to build payloads, not payloads).
pub fn patt(root: &Path) -> std::io::Result<(Vec<Case>, Vec<String>)> {
    let (payloads, skipped) = patt_payloads(root)?;
    let mut cases = Vec::new();
    for (n, (category, class, line)) in payloads.into_iter().enumerate() {
        let n = n as u64 + 1;
        let mut spans = vec![query_span(n, &line, false)];
        if class == "sqli" {
            spans.push(db_span(n, &sql_of(&line)));
        }
        cases.push(Case {
            set: "patt",
            group: category,
            class,
            req: request("web", spans),
        });
    }
    Ok((cases, skipped))
}

/// The PayloadsAllTheThings payloads as written: (category, class, payload), and the files
/// skipped with the reason.
#[allow(clippy::type_complexity)]
pub fn patt_payloads(root: &Path) -> std::io::Result<(Vec<(String, String, String)>, Vec<String>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        let category = d.file_name().to_string_lossy().into_owned();
        let class = patt_class(&category).to_owned();
        for f in crate::files_under(&d.path())? {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name == "LDAP_attributes.txt" {
                skipped.push(format!(
                    "{category}/{name}: attribute names (cn, mail, ...), not payloads"
                ));
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&f)?).into_owned();
            for line in non_comment_lines(&text) {
                out.push((category.clone(), class.clone(), line.to_owned()));
            }
        }
    }
    Ok((out, skipped))
}

fn patt_class(category: &str) -> &'static str {
    match category {
        "SQL Injection" => "sqli",
        "XSS Injection" => "xss",
        "Command Injection" => "rce",
        "Directory Traversal" | "File Inclusion" => "lfi",
        "LDAP Injection" => "ldapi",
        "NoSQL Injection" => "nosqli",
        "Server Side Template Injection" => "ssti",
        "XXE Injection" => "xxe",
        _ => "other",
    }
}

/// CRS class of a rule file (`942100.yaml` -> `sqli`).
pub fn crs_class(rule: &str) -> &'static str {
    match rule.get(..3).unwrap_or("") {
        "913" => "scanner",
        "920" | "921" => "protocol",
        "930" | "931" => "lfi",
        "932" => "rce",
        "933" => "php",
        "934" => "generic",
        "941" => "xss",
        "942" => "sqli",
        "943" => "session",
        "944" => "java",
        _ => "other",
    }
}

/// An HTTP request from a CRS regression test.
#[derive(Debug, Default, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl HttpRequest {
    /// The request as the HTTP server span an instrumented service would record.
    pub fn to_span(&self, n: u64) -> Span {
        let (path, query) = match self.uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.uri.as_str(), None),
        };
        let mut attrs = vec![
            kv_str("http.request.method", &self.method),
            kv_str("url.path", path),
            kv_str("url.scheme", "https"),
        ];
        if let Some(q) = query {
            attrs.push(kv_str("url.query", q));
        }
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.headers {
            let k = k.to_ascii_lowercase();
            if k == "user-agent" {
                attrs.push(kv_str("user_agent.original", v));
            }
            headers.entry(k).or_default().push(v.clone());
        }
        for (k, vs) in &headers {
            attrs.push(kv_strs(&format!("http.request.header.{k}"), vs));
        }
        if let Some(b) = &self.body {
            attrs.push(kv_str(crate::inputs::BODY_ATTRIBUTE, b));
        }
        server_span(n, attrs, &format!("{} {}", self.method, path))
    }
}

fn yaml_str(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        yaml_serde::Value::Sequence(s) => Some(
            s.iter()
                .filter_map(yaml_str)
                .collect::<Vec<_>>()
                .join("\r\n"),
        ),
        _ => None,
    }
}

fn get<'a>(v: &'a yaml_serde::Value, key: &str) -> Option<&'a yaml_serde::Value> {
    v.as_mapping()?.get(yaml_serde::Value::String(key.into()))
}

/// Parse a raw HTTP/1.x request (go-ftw `encoded_request`).
fn parse_raw_request(raw: &[u8]) -> Option<HttpRequest> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = match text.split_once("\r\n\r\n") {
        Some((h, b)) => (h.to_owned(), b.to_owned()),
        None => match text.split_once("\n\n") {
            Some((h, b)) => (h.to_owned(), b.to_owned()),
            None => (text.into_owned(), String::new()),
        },
    };
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let uri = first.next().unwrap_or("/").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(HttpRequest {
        method,
        uri,
        headers,
        body: (!body.is_empty()).then_some(body),
    })
}

/// The positive (`expect_ids`) stages of the CRS regression tests of the given categories
/// (rule-id prefixes such as `942`); the group is the test file (`942100.yaml`).
pub fn crs(root: &Path, prefixes: &[&str]) -> std::io::Result<Vec<Case>> {
    let mut files = crate::files_under(root)?;
    files.retain(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    let mut cases = Vec::new();
    let mut n = 1_000_000u64;
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let class = crs_class(&name).to_owned();
        let text = std::fs::read_to_string(&f)?;
        let Ok(doc) = yaml_serde::from_str::<yaml_serde::Value>(&text) else {
            continue;
        };
        let Some(tests) = get(&doc, "tests").and_then(|t| t.as_sequence()) else {
            continue;
        };
        for t in tests {
            let Some(stages) = get(t, "stages").and_then(|s| s.as_sequence()) else {
                continue;
            };
            for st in stages {
                let st = get(st, "stage").unwrap_or(st);
                let expect = get(st, "output")
                    .and_then(|o| get(o, "log"))
                    .and_then(|l| get(l, "expect_ids"))
                    .and_then(|e| e.as_sequence())
                    .is_some_and(|s| !s.is_empty());
                if !expect {
                    continue;
                }
                let Some(input) = get(st, "input") else {
                    continue;
                };
                let req = if let Some(enc) = get(input, "encoded_request").and_then(yaml_str) {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(enc.trim())
                        .ok()
                        .and_then(|raw| parse_raw_request(&raw))
                } else {
                    let headers = get(input, "headers")
                        .and_then(|h| h.as_mapping())
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((yaml_str(k)?, yaml_str(v)?)))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(HttpRequest {
                        method: get(input, "method")
                            .and_then(yaml_str)
                            .unwrap_or_else(|| "GET".into()),
                        uri: get(input, "uri")
                            .and_then(yaml_str)
                            .unwrap_or_else(|| "/".into()),
                        headers,
                        body: get(input, "data").and_then(yaml_str),
                    })
                };
                let Some(req) = req else { continue };
                n += 1;
                cases.push(Case {
                    set: "crs",
                    group: name.clone(),
                    class: class.clone(),
                    req: request("web", vec![req.to_span(n)]),
                });
            }
        }
    }
    Ok(cases)
}

/// libinjection's `false_positives.txt`: benign, URL-encoded inputs, placed raw in `url.query`.
pub fn libinjection_benign(root: &Path) -> std::io::Result<Vec<Case>> {
    let text = String::from_utf8_lossy(&std::fs::read(root.join("data/false_positives.txt"))?)
        .into_owned();
    Ok(non_comment_lines(&text)
        .filter(|l| !l.starts_with('#'))
        .enumerate()
        .map(|(i, l)| Case {
            set: "libinjection",
            group: "false_positives.txt (url.query)".into(),
            class: BENIGN.into(),
            req: request("web", vec![query_span(2_000_000 + i as u64, l, true)]),
        })
        .collect())
}

/// sqlglot's benign SQL as `db.statement`s: identity.sql one statement per line, the other files
/// split at `;` line ends, comment lines dropped.
pub fn sqlglot_benign(root: &Path) -> std::io::Result<Vec<Case>> {
    let base = root.join("tests/fixtures");
    let mut statements: Vec<(String, String)> = Vec::new();
    let identity = std::fs::read_to_string(base.join("identity.sql"))?;
    for l in non_comment_lines(&identity) {
        statements.push(("identity.sql".into(), l.to_owned()));
    }
    for f in [
        "pretty.sql",
        "optimizer/tpc-h/tpc-h.sql",
        "optimizer/tpc-ds/tpc-ds.sql",
    ] {
        let text = std::fs::read_to_string(base.join(f))?;
        let mut cur = String::new();
        for l in text.lines() {
            let t = l.trim();
            if t.starts_with("--") || t.starts_with('#') || t.is_empty() {
                continue;
            }
            cur.push_str(l);
            cur.push('\n');
            if t.ends_with(';') {
                statements.push((f.to_owned(), std::mem::take(&mut cur)));
            }
        }
    }
    Ok(statements
        .into_iter()
        .enumerate()
        .map(|(i, (file, s))| Case {
            set: "sqlglot",
            group: format!("{file} (db.statement)"),
            class: BENIGN.into(),
            req: request("db", vec![db_span(3_000_000 + i as u64, &s)]),
        })
        .collect())
}

/// presidio-research's synthetic sentences (names, addresses, questions, punctuation): free
/// text typed into a search form, `q=<sentence>` percent-encoded in `url.query`. Not a set the
/// issue names; it keeps the SQL-fragment rules honest on ordinary prose.
pub fn presidio_benign(root: &Path) -> std::io::Result<Vec<Case>> {
    let text = std::fs::read_to_string(root.join("data/synth_dataset_v2.json"))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("full_text")?.as_str())
        .enumerate()
        .map(|(i, s)| Case {
            set: "presidio",
            group: "synth_dataset_v2.json sentences (url.query)".into(),
            class: BENIGN.into(),
            req: request("web", vec![query_span(4_000_000 + i as u64, s, false)]),
        })
        .collect())
}

/// Ordinary query strings, as a browser form or an API client sends them: common parameter
/// names (the ones that are also SQL and shell words included: `id`, `cat`, `order`, `select`,
/// `time`, `exec`, hyphenated `cat-id`) with typed values (prose, emoticons, quoted phrases,
/// pagination labels, template and filter expressions of ordinary APIs) form-encoded, between
/// other parameters; plus whole query strings with valueless flags and arrays. The whole query
/// is an input too, so `&` and `;` between parameters must not read as command separators.
/// Generated, not collected: it guards known weak spots, it is no sample of real traffic.
pub fn common_params_benign() -> Vec<Case> {
    const NAMES: &[&str] = &[
        "id",
        "cat",
        "ls",
        "sh",
        "nc",
        "ps",
        "w",
        "ip",
        "host",
        "page",
        "sort",
        "order",
        "select",
        "from",
        "to",
        "where",
        "limit",
        "offset",
        "time",
        "date",
        "exec",
        "cmd",
        "run",
        "set",
        "type",
        "format",
        "lang",
        "view",
        "action",
        "user",
        "name",
        "ref",
        "file",
        "path",
        "dir",
        "url",
        "next",
        "redirect",
        "callback",
        "q",
        "query",
        "search",
        "filter",
        "fields",
        "group",
        "union",
        "and",
        "or",
        "not",
        "table",
        "sleep",
        "wait",
        "echo",
        "env",
        "kill",
        "tail",
        "head",
        "find",
        "grep",
        "sed",
        "awk",
        "who",
        "more",
        "less",
        "rm",
        "cp",
        "mv",
        "mode",
        "count",
        "sum",
        "min",
        "max",
        "if",
        "in",
        "between",
        "like",
        "case",
        "utm_source",
        "utm_medium",
        "session",
        "token_type",
        "size",
        "color",
        "per_page",
        "include",
        "cat-id",
        "node-id",
        "head-count",
        "net-amount",
        "table_name",
        "column_name",
        "schema_name",
    ];
    const VALUES: &[&str] = &[
        "1",
        "42",
        "asc",
        "desc",
        "en-US",
        "2024-01-31",
        "2024-01-31T10:00:00Z",
        "red shoes",
        "a,b,c",
        "1,2,3",
        "/home",
        "/account/settings",
        "https://example.com/a?b=c",
        "true",
        "false",
        "null",
        "all",
        "none",
        "name,email",
        "created_at",
        "-created_at",
        "json",
        "csv",
        "10",
        "0",
        "newsletter",
        "cpc",
        "shoes & socks",
        "rock & roll",
        "50%",
        "O'Brien",
        "it's",
        "c++",
        "C#",
        "node.js",
        "v1.2.3",
        "user@example.com",
        "+1 555 0100",
        ">>",
        "<<",
        "<",
        ">",
        "Next >",
        "< Prev",
        "bad day :(",
        "no time :(",
        "thanks to this user (@alice)",
        "\"Union Square\" hotels",
        "\"Drop It Like It's Hot\"",
        "\"Alter Bridge\" tour",
        "exec assistant",
        "execute query",
        "Payment failed; update card details",
        "please set @alice as reviewer",
        "is it \"gluten free\"? 2024",
        "123 Main St\nApt 4B",
        "(cat food)",
        "zip:94107",
        "file:report.pdf",
        "ftp:anonymous",
        "Northwind",
        // Filter, query and template languages of ordinary APIs and dashboards.
        "Id in (1,2,3)",
        "Name in ('Milk','Cheese')",
        "Price gt 5 and Price lt 10",
        "contains(Name,'red')",
        "startswith(CompanyName,'Alfr')",
        "status:open AND priority:high",
        "created_at:[2024-01-01 TO 2024-02-01]",
        "eq(status,active)",
        "time() - process_start_time_seconds",
        "sum(rate(http_requests_total[5m]))",
        "hour() > 8",
        "status == 'open' ? 'Open' : 'Closed'",
        "nlohmann::json",
        // Everyday wording and values that once looked like attacks to some rule.
        "Looking for something similar to this",
        "I get a message like 'payment failed'",
        "Can I order by phone?",
        "When will it end?",
        "Please call 555 0100",
        "Select all",
        "drop by",
        "2147483647",
        "<@U024BE7LH> hi",
        "xp_points",
        "Ballon d'Or",
        "Спасибо))))",
        "Netherlands (NL)",
        "Philippine Peso (PHP)",
        "Hello,\r\nPlease delete my account.",
        "Steps:\nUser clicks login",
        "knife set",
        "chef knife",
        "Phone Case & Screen Protector",
        "Dog & Cat Toys",
        "What a nice cat!",
        "net user growth",
        "PowerShell scripting jobs",
        "Balance: $(25.00)",
        "javascript developer",
        "Close the window. Open the door",
        "increase in value of",
        "https://cdn.example.com/u/42.png",
        "https://shop.example/index.php",
        "/me/drive/root/children",
        "/dev/portfolio",
        "~90 min",
        "$$",
        "id,friends{name,picture}",
    ];
    const QUERIES: &[&str] = &[
        "page=2&debug&id&x=1",
        "ids[]=1&ids[]=2&ids[]=3",
        "filter[status]=open&filter[cat-id]=5",
        "a=1;b=2;cat=3",
        "utm_source=news&utm_medium=email&utm_campaign=spring-sale",
        "q=&page=1&sort=-date",
    ];
    const FORM: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    let mut queries: Vec<String> = QUERIES.iter().map(|q| (*q).to_owned()).collect();
    for n in NAMES {
        for v in VALUES {
            let v = utf8_percent_encode(v, FORM).to_string().replace("%20", "+");
            queries.push(format!("page=2&{n}={v}&sort=asc"));
        }
    }
    queries
        .iter()
        .enumerate()
        .map(|(k, query)| Case {
            set: "params",
            group: "common parameters (url.query)".into(),
            class: BENIGN.into(),
            req: request(
                "web",
                vec![server_span(
                    5_000_000 + k as u64,
                    vec![
                        kv_str("http.request.method", "GET"),
                        kv_str("url.path", "/products"),
                        kv_str("url.query", query),
                    ],
                    "GET /products",
                )],
            ),
        })
        .collect()
}

/// Ordinary requests beyond query strings: headers browsers, SDKs and bots send, JSON bodies of
/// ordinary APIs (templates, Markdown, data URLs, GraphQL), platform paths, and the SQL that ORMs
/// and migrations put into `db.statement` (sqlcommenter comments, Rails' empty IN, UUID
/// idioms). Generated, not collected, like [`common_params_benign`].
pub fn ordinary_requests_benign() -> Vec<Case> {
    const HEADERS: &[(&str, &str)] = &[
        ("x-requested-with", "XMLHttpRequest"),
        (
            "referer",
            "https://www.google.com/search?q=red+shoes&oq=red+shoes&sourceid=chrome",
        ),
        (
            "referer",
            "https://shop.example/index.php?route=product/category&path=20_27",
        ),
        (
            "cookie",
            "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; __cf_bm=abc.def-1700000000-0-AbCdEf==",
        ),
        (
            "cookie",
            "session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl; csrftoken=Zx9y8W7v6U5t4S3r",
        ),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
        ("content-type", "application/json; charset=utf-8"),
        (
            "sec-ch-ua",
            "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
        ),
    ];
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows; U; Windows NT 5.1; nl; rv:1.9.2.13) Gecko/20101203 Firefox/3.6.13",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "PostmanRuntime/7.36.0",
        "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UD1A.230803.041)",
    ];
    const BODIES: &[&str] = &[
        r#"{"subject":"Your order {{ order.id }} shipped","body":"You have {{count}} messages"}"#,
        r#"{"greeting":"Hello ${user.firstName}","ruby":"Hello #{name}"}"#,
        r#"{"avatar":"data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgH"}"#,
        r#"{"comment":"bug where `user.name` was `null`, see ```js\nfunction hello() {\n}\n```"}"#,
        r#"{"query":"query Get($id: ID!) { user(id: $id) { name friends(first: 10) { edges { node { name } } } } }","variables":{"id":"42"}}"#,
        r#"{"html":"<!DOCTYPE html><html><body><p>Hi</p></body></html>"}"#,
        r#"{"html":"<html><body><p>Hi</p></body></html>"}"#,
        r#"{"content":"<!-- wp:paragraph -->\n<p>See <a href=\"/onboarding-guide\">the guide</a> <img alt=\"Onion rings\" src=\"/r.png\"></p>\n<!-- /wp:paragraph -->"}"#,
        r#"{"css":"html { scroll-behavior: smooth; }","price":"$9.99","file":"report (1).pdf"}"#,
        r#"{"skills":"Java;Python;SQL","stack":"HTML|CSS|PHP|MySQL","langs":"Go | Rust | Python","pair":"Ruby & Perl"}"#,
        r#"{"title":"Patch cable | Cat 6","terms":"Invoice | Net 30","confirm":"confirm (yes/no)"}"#,
        r#"{"tags":"cs.{a,b}","include":"**/*.{js,ts}","pattern":"[a-z]{2,}"}"#,
        "title=Hello+world&body=Line+one%0D%0ALine+two&tags=a%2Cb",
    ];
    const QUERIES: &[&str] = &[
        "filters[title][$eq]=x&filters[id][$in][0]=3&populate=*",
        "select=id,name&tags=cs.{a,b}&order=created_at.desc",
    ];
    const PATHS: &[&str] = &[
        "/.auth/me",
        "/.auth/login/aad/callback",
        "/.netlify/functions/checkout",
        "/.within.website/x/cmd/anubis/api/pass-challenge",
        "/stores/cvs/coupons",
        "/.well-known/openid-configuration",
    ];
    const STATEMENTS: &[&str] = &[
        "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"email\" = 'a@b.com' LIMIT 1",
        "SELECT id FROM items WHERE kind IN ('a','b') LIMIT 50",
        "SELECT channel, count(*) FROM visits WHERE source = 'web' GROUP BY 1",
        "SELECT * FROM orders WHERE status = 'X' /*action='show',controller='orders',traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01'*/",
        "ALTER TABLE users ADD COLUMN role text DEFAULT 'member'; CREATE INDEX idx_users_role ON users (role)",
        "SELECT \"posts\".* FROM \"posts\" WHERE \"posts\".\"author_id\" = $1 AND 1=0",
        "INSERT INTO sessions (id, user_id) VALUES (lower(hex(randomblob(16))), 7)",
        "SELECT * FROM events WHERE payload->>'type' = 'click' AND name ILIKE '%shoe%'",
        "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT count(*) FROM recent",
    ];
    let mut reqs: Vec<(&'static str, Vec<Span>)> = Vec::new();
    let http = |n: u64, extra: Vec<KeyValue>| {
        let mut attrs = vec![
            kv_str("http.request.method", "POST"),
            kv_str("url.path", "/api/items"),
        ];
        attrs.extend(extra);
        server_span(n, attrs, "POST /api/items")
    };
    let mut n = 6_000_000u64;
    let mut next = || {
        n += 1;
        n
    };
    for (h, v) in HEADERS {
        reqs.push((
            "headers",
            vec![http(
                next(),
                vec![kv_str(&format!("http.request.header.{h}"), v)],
            )],
        ));
    }
    for ua in AGENTS {
        reqs.push((
            "user agents",
            vec![http(next(), vec![kv_str("user_agent.original", ua)])],
        ));
    }
    for b in BODIES {
        reqs.push((
            "bodies",
            vec![http(next(), vec![kv_str(crate::inputs::BODY_ATTRIBUTE, b)])],
        ));
    }
    for q in QUERIES {
        reqs.push(("queries", vec![http(next(), vec![kv_str("url.query", q)])]));
    }
    for p in PATHS {
        let span = server_span(
            next(),
            vec![kv_str("http.request.method", "GET"), kv_str("url.path", p)],
            "GET",
        );
        reqs.push(("paths", vec![span]));
    }
    for st in STATEMENTS {
        reqs.push(("db.statement", vec![db_span(next(), st)]));
    }
    reqs.into_iter()
        .map(|(group, spans)| Case {
            set: "ordinary",
            group: format!("{group} (generated)"),
            class: BENIGN.into(),
            req: request("web", spans),
        })
        .collect()
}

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub total: usize,
    /// Cases with at least one finding.
    pub flagged: usize,
    /// Cases with a finding of the expected class.
    pub class_correct: usize,
    /// Findings per span kind (`server`, `client`) that fired.
    pub by_span: BTreeMap<&'static str, usize>,
}

impl Counts {
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.flagged as f64 / self.total as f64
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    /// (set, class, group) -> counts.
    pub rows: BTreeMap<(String, String, String), Counts>,
    /// (expected class, predicted class or `none`) -> cases. Predicted = the class of the
    /// case's highest-severity finding.
    pub confusion: BTreeMap<(String, String), usize>,
    /// Rule id -> cases it fired on, per expected class.
    pub rule_hits: BTreeMap<(String, String), usize>,
}

/// Run the signature stage over every case.
pub fn run(sig: &Signatures, cases: &[Case]) -> Report {
    let mut report = Report::default();
    for c in cases {
        let findings = sig.scan(
            Sender {
                tenant: "eval",
                principal: None,
            },
            &c.req,
            0,
        );
        let row = report
            .rows
            .entry((c.set.to_owned(), c.class.clone(), c.group.clone()))
            .or_default();
        row.total += 1;
        let mut rules: Vec<&str> = findings.iter().map(|f| f.analytic_uid.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        for r in rules {
            *report
                .rule_hits
                .entry((r.to_owned(), c.class.clone()))
                .or_default() += 1;
        }
        if !findings.is_empty() {
            row.flagged += 1;
            if findings.iter().any(|f| f.classes.contains(&c.class)) {
                row.class_correct += 1;
            }
            let mut kinds: Vec<&'static str> = findings
                .iter()
                .map(|f| {
                    c.req.resource_spans[0].scope_spans[0]
                        .spans
                        .iter()
                        .find(|s| hex::encode(&s.span_id) == f.span_id)
                        .map(|s| crate::view::kind_name(s.kind))
                        .unwrap_or("?")
                })
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            for k in kinds {
                *row.by_span.entry(k).or_default() += 1;
            }
        }
        let predicted = findings
            .iter()
            .max_by_key(|f| f.severity)
            .and_then(|f| f.classes.first().cloned())
            .unwrap_or_else(|| {
                if findings.is_empty() {
                    "none".into()
                } else {
                    "other".into()
                }
            });
        *report
            .confusion
            .entry((c.class.clone(), predicted))
            .or_default() += 1;
    }
    report
}

impl Report {
    /// (set, class) -> counts summed over groups.
    pub fn by_class(&self) -> BTreeMap<(String, String), Counts> {
        let mut out: BTreeMap<(String, String), Counts> = BTreeMap::new();
        for ((set, class, _), c) in &self.rows {
            let o = out.entry((set.clone(), class.clone())).or_default();
            o.total += c.total;
            o.flagged += c.flagged;
            o.class_correct += c.class_correct;
        }
        out
    }

    /// The tables: per group, per class (recall for attacks, false-positive rate for benign),
    /// and the confusion table.
    pub fn render(&self, per_group: bool) -> String {
        let mut s = String::new();
        if per_group {
            let _ = writeln!(
                s,
                "{:<14} {:<10} {:<44} {:>7} {:>8} {:>8} {:>8}  spans fired",
                "set", "class", "group", "cases", "flagged", "rate", "class ok"
            );
            for ((set, class, group), c) in &self.rows {
                let spans: Vec<String> =
                    c.by_span.iter().map(|(k, n)| format!("{k}:{n}")).collect();
                let _ = writeln!(
                    s,
                    "{:<14} {:<10} {:<44} {:>7} {:>8} {:>7.1}% {:>8}  {}",
                    set,
                    class,
                    truncate(group, 44),
                    c.total,
                    c.flagged,
                    100.0 * c.rate(),
                    c.class_correct,
                    spans.join(" ")
                );
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "{:<14} {:<10} {:>7} {:>8} {:>22} {:>16}",
            "set", "class", "cases", "flagged", "recall / FP rate", "class-correct"
        );
        for ((set, class), c) in self.by_class() {
            let what = if class == BENIGN { "FP rate" } else { "recall" };
            let _ = writeln!(
                s,
                "{:<14} {:<10} {:>7} {:>8} {:>13} {:>7.2}% {:>15.1}%",
                set,
                class,
                c.total,
                c.flagged,
                what,
                100.0 * c.rate(),
                if c.total == 0 {
                    0.0
                } else {
                    100.0 * c.class_correct as f64 / c.total as f64
                }
            );
        }
        // Confusion table: rows expected, columns predicted.
        let mut cols: Vec<&str> = self.confusion.keys().map(|(_, p)| p.as_str()).collect();
        cols.sort_unstable();
        cols.dedup();
        let mut rows: Vec<&str> = self.confusion.keys().map(|(e, _)| e.as_str()).collect();
        rows.sort_unstable();
        rows.dedup();
        let _ = write!(
            s,
            "\nconfusion (rows: labeled class, columns: class of the highest-severity finding)\n{:<10}",
            ""
        );
        for c in &cols {
            let _ = write!(s, " {:>8}", truncate(c, 8));
        }
        s.push('\n');
        for r in rows {
            let _ = write!(s, "{r:<10}");
            for c in &cols {
                let n = self
                    .confusion
                    .get(&(r.to_owned(), (*c).to_owned()))
                    .copied()
                    .unwrap_or(0);
                let _ = write!(s, " {n:>8}");
            }
            s.push('\n');
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Spans (sorted by end time) cut into one-second event-time batches, as a live exporter would
/// send them: (the second, its spans).
pub fn second_batches<'s, 'a>(
    spans: &'s [crate::behaviour::SpanFacts<'a>],
) -> impl Iterator<Item = (u64, &'s [crate::behaviour::SpanFacts<'a>])> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let sec = spans.get(i)?.end / 1_000_000_000;
        let j = spans[i..]
            .iter()
            .position(|s| s.end / 1_000_000_000 != sec)
            .map_or(spans.len(), |p| i + p);
        let batch = &spans[i..j];
        i = j;
        Some((sec, batch))
    })
}

/// One span row of a Nezha trace CSV.
#[derive(Clone, Debug)]
pub struct NezhaSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    /// The pod's service (`frontend-579b9bff58-t2dbm` -> `frontend`).
    pub service: String,
    pub pod: String,
    pub operation: String,
    pub start: u64,
    pub end: u64,
}

/// The service of a Kubernetes pod name (deployment pods end in `-<replicaset>-<id>`).
pub fn pod_service(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (Some(_id), Some(_rs), Some(svc)) = (parts.next(), parts.next(), parts.next()) else {
        return pod;
    };
    svc
}

/// A Nezha trace CSV (`TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,
/// EndTimeUnixNano,Duration`); malformed rows are skipped.
pub fn nezha_csv(path: &Path) -> std::io::Result<Vec<NezhaSpan>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 7 {
            continue;
        }
        let (Ok(t), Ok(s)) = (hex::decode(f[0]), hex::decode(f[1])) else {
            continue;
        };
        let (Ok(trace_id), Ok(span_id)) = (<[u8; 16]>::try_from(t), <[u8; 8]>::try_from(s)) else {
            continue;
        };
        let parent = hex::decode(f[2])
            .ok()
            .and_then(|p| <[u8; 8]>::try_from(p).ok());
        let (Ok(start), Ok(end)) = (f[5].parse::<u64>(), f[6].parse::<u64>()) else {
            continue;
        };
        out.push(NezhaSpan {
            trace_id,
            span_id,
            parent,
            service: pod_service(f[3]).to_owned(),
            pod: f[3].to_owned(),
            operation: f[4].to_owned(),
            start,
            end,
        });
    }
    out.sort_by_key(|s| s.start);
    Ok(out)
}

/// The spans of the trace files within two minutes of `at` (a file `HH_MM` holds the minute
/// ending at HH:MM:10, so an injection gets the minute before and the minute after), sorted by
/// start; unreadable files are skipped.
pub fn nezha_around(traces: &[std::path::PathBuf], at: u64) -> Vec<NezhaSpan> {
    const TWO_MIN: u64 = 120_000_000_000;
    let mut spans: Vec<NezhaSpan> = traces
        .iter()
        .filter_map(|p| nezha_csv(p).ok())
        .filter(|s| {
            s.first().is_some_and(|x| x.start < at + TWO_MIN)
                && s.last().is_some_and(|x| x.start + TWO_MIN > at)
        })
        .flatten()
        .collect();
    spans.sort_by_key(|s| s.start);
    spans
}

/// An injected fault of a Nezha fault list.
#[derive(Clone, Debug)]
pub struct NezhaFault {
    /// From `inject_time` read as UTC (the README: `inject_timestamp` is unreliable).
    pub time_unix_nano: u64,
    pub pod: String,
    pub kind: String,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) as Unix nanoseconds.
pub fn utc_nanos(s: &str) -> Option<u64> {
    let (date, time) = s.trim().split_once(' ')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let secs = days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000)
}

/// A Nezha `*-fault_list.json`.
pub fn nezha_faults(path: &Path) -> std::io::Result<Vec<NezhaFault>> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut out = Vec::new();
    for list in v.as_object().into_iter().flat_map(|o| o.values()) {
        for f in list.as_array().into_iter().flatten() {
            let (Some(t), Some(pod), Some(kind)) = (
                f["inject_time"].as_str().and_then(utc_nanos),
                f["inject_pod"].as_str(),
                f["inject_type"].as_str(),
            ) else {
                continue;
            };
            out.push(NezhaFault {
                time_unix_nano: t,
                pod: pod.to_owned(),
                kind: kind.to_owned(),
            });
        }
    }
    Ok(out)
}

/// Nezha spans (shifted by `shift_ns`) as OTLP, one resource per service.
pub fn nezha_request(spans: &[NezhaSpan], shift_ns: i64) -> ExportTraceServiceRequest {
    let mut by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    for s in spans {
        let sh = |t: u64| (t as i64 + shift_ns).max(1) as u64;
        by_service.entry(&s.service).or_default().push(Span {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.operation.clone(),
            kind: if s.parent.is_none() { 2 } else { 1 },
            start_time_unix_nano: sh(s.start),
            end_time_unix_nano: sh(s.end),
            attributes: vec![kv_str("k8s.pod.name", &s.pod)],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(svc, spans)| resource_spans(svc, spans))
            .collect(),
    }
}

#[cfg(test)]
mod nezha_tests {
    use super::*;

    #[test]
    fn pod_names_and_utc_times() {
        assert_eq!(pod_service("frontend-579b9bff58-t2dbm"), "frontend");
        assert_eq!(
            pod_service("ts-basic-service-5dc8d4f9fd-46997"),
            "ts-basic-service"
        );
        assert_eq!(pod_service("redis"), "redis");
        // 2022-08-23 16:31:35 UTC
        assert_eq!(
            utc_nanos("2022-08-23 16:31:35"),
            Some(1_661_272_295 * 1_000_000_000)
        );
        assert_eq!(utc_nanos("1970-01-01 00:00:00"), Some(0));
    }
}
