//! The engine: applies a tenant's [`Rules`] to an OTLP batch. Pure: the batch and the tenant's
//! pseudonym key in, the [`Redacted`] batch and a [`Report`] out.
//!
//! Covered: resource attributes, scope attributes, span attributes, span names, status messages,
//! event names and attributes, link attributes, and nested values (arrays, kvlists) to any depth
//! validation allowed. Span and trace ids, timestamps and kinds are structure, not content.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use aws_lc_rs::hmac;
use regex::Regex;
use serde::Serialize;
use tv_model::otlp::{AnyValue, ExportTraceServiceRequest, KeyValue, any_value::Value};

use crate::detect::{Kind, scan};
use crate::policy::{Action, ActionKind, Mode, Policy, Rules};
use crate::url::{UrlField, UrlScrubber};

/// A tenant's pseudonymization key (HMAC-SHA256). The server derives it from the tenant's key
/// material; it never leaves the process.
pub struct PseudonymKey(hmac::Key);

impl PseudonymKey {
    pub fn new(secret: &[u8; 32]) -> Self {
        PseudonymKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

/// Where in a span something fired (attribute keys are schema, never values).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Hit {
    /// `detector:<name>`, `key:<policy>:<glob>`, `secret_key`, `allowlist`, `sql`, `url_id`.
    pub rule: String,
    pub action: &'static str,
    /// `span.attributes[http.url]`, `span.name`, `event.attributes[exception.message]`, ...
    pub field: String,
}

/// What fired where, with counts. Never holds a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub hits: BTreeMap<Hit, u64>,
    /// The policies applied (by name), one per resource.
    pub policies: BTreeMap<String, u64>,
    pub spans: u64,
}

impl Report {
    /// Total number of replacements and removals.
    pub fn total(&self) -> u64 {
        self.hits.values().sum()
    }

    /// Counts per rule (for metrics).
    pub fn by_rule(&self) -> BTreeMap<&str, u64> {
        let mut m = BTreeMap::new();
        for (h, n) in &self.hits {
            *m.entry(h.rule.as_str()).or_default() += n;
        }
        m
    }

    /// The report as JSON (for `tracevault redact` and per-batch summaries).
    pub fn to_json(&self) -> serde_json::Value {
        let hits: Vec<serde_json::Value> = self
            .hits
            .iter()
            .map(|(h, n)| {
                serde_json::json!({"rule": h.rule, "action": h.action, "field": h.field, "count": n})
            })
            .collect();
        serde_json::json!({
            "spans": self.spans,
            "replacements": self.total(),
            "policies": self.policies,
            "hits": hits,
        })
    }
}

/// A redacted batch: the only thing that may be stored.
#[derive(Debug)]
pub struct Redacted {
    pub request: ExportTraceServiceRequest,
    pub report: Report,
}

/// Redacts `req` for `tenant` under `rules`.
pub fn redact(
    rules: &Rules,
    tenant: &str,
    key: &PseudonymKey,
    mut req: ExportTraceServiceRequest,
) -> Redacted {
    let mut report = Report::default();
    for rs in &mut req.resource_spans {
        let service = tv_model::service_name(rs.resource.as_ref()).map(str::to_owned);
        let policy = rules.policy_for(tenant, service.as_deref());
        *report.policies.entry(policy.name.clone()).or_default() += 1;
        let mut cx = Cx {
            policy,
            key,
            hex_len: rules.hash_bits as usize / 4,
            report: &mut report,
            keys: HashMap::new(),
            key_info: Vec::new(),
            prefixes: Vec::new(),
            hits: HashMap::new(),
        };
        if let Some(r) = rs.resource.as_mut() {
            cx.attrs(&mut r.attributes, "resource.attributes");
        }
        for ss in &mut rs.scope_spans {
            if let Some(sc) = ss.scope.as_mut() {
                cx.attrs(&mut sc.attributes, "scope.attributes");
            }
            for span in &mut ss.spans {
                cx.report.spans += 1;
                cx.text_field(&mut span.name, "span.name");
                cx.attrs(&mut span.attributes, "span.attributes");
                if let Some(st) = span.status.as_mut() {
                    cx.text_field(&mut st.message, "span.status.message");
                }
                for ev in &mut span.events {
                    cx.text_field(&mut ev.name, "event.name");
                    cx.attrs(&mut ev.attributes, "event.attributes");
                }
                for l in &mut span.links {
                    cx.attrs(&mut l.attributes, "link.attributes");
                }
            }
        }
        cx.finish();
    }
    Redacted {
        request: req,
        report,
    }
}

struct Cx<'a> {
    policy: &'a Policy,
    key: &'a PseudonymKey,
    hex_len: usize,
    report: &'a mut Report,
    /// What the policy says about each attribute key seen in this resource (keys repeat across
    /// spans; the globs and name checks run once per key).
    keys: HashMap<String, u32>,
    key_info: Vec<KeyInfo>,
    /// Interned field prefixes (`span.attributes`, nested `span.attributes[a]`, ...).
    prefixes: Vec<String>,
    /// Hits by (rule, action, prefix, key), turned into the report's strings at the end.
    hits: HashMap<(RuleRef, ActionKind, u32, u32), u64>,
}

/// A rule that fired, without strings.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum RuleRef {
    Detector(Kind),
    KeyRule(u32),
    SecretKey,
    Allowlist,
    Sql,
    UrlId,
}

/// The policy's view of one attribute key.
struct KeyInfo {
    name: String,
    rule: Option<u32>,
    secret_name: bool,
    always_secret: bool,
    allowed: bool,
    url: Option<UrlField>,
    sql: bool,
}

const NO_KEY: u32 = u32::MAX;

/// Keys whose value is a secret whatever it looks like.
fn secret_key_name() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r"(?i)(?:passw|pwd|passphrase|secret|token|api[-_.]?key|apikey|authorization|cookie|credential|private[-_.]?key|session[-_.]?id|access[-_.]?key|signature)",
        )
        .expect("pattern compiles")
    })
}

/// Keys named like secrets that are not (`gen_ai.usage.input_tokens`, `gen_ai.token.type`).
fn not_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("tokens")
        || k.contains("token_count")
        || k.contains("token.type")
        || k.contains("tokens.")
        || k.ends_with(".count")
        || k.ends_with("_count")
        || k.ends_with(".name")
        || k.ends_with(".length")
}

/// Whether the key is always-sensitive (`password`, `authorization`, `cookie`): any value.
fn always_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "passw",
        "pwd",
        "passphrase",
        "authorization",
        "cookie",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// A value plausible as a token or key (for `*token*`/`*secret*`/`*key*` names).
fn high_entropy(v: &str) -> bool {
    let digit = v.bytes().any(|c| c.is_ascii_digit());
    let letter = v.bytes().any(|c| c.is_ascii_alphabetic());
    (v.len() >= 8 && digit && letter) || (v.len() >= 12 && crate::secrets::entropy(v) >= 3.5)
}

/// A whole value that is one piece of redaction output (idempotence of whole-value actions).
fn already_redacted(s: &str) -> bool {
    crate::detect::may_hold_redaction_output(s)
        && crate::detect::redaction_spans(s) == [(0, s.len())]
}

/// `s` without the output of an earlier redaction (pseudonyms, masks), so that what earlier
/// detectors left is judged alone (idempotence of the secret-key rule).
fn residual(s: &str) -> std::borrow::Cow<'_, str> {
    if !crate::detect::may_hold_redaction_output(s) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(crate::detect::without_redactions(s))
}

/// SQL scrubbing that leaves earlier redaction output alone (a pseudonym's hex digits are not a
/// literal): each output is swapped for a marker word, which the scrubber keeps, and back.
fn scrub_sql_keeping_redactions(s: &str) -> crate::sql::Scrubbed {
    if !crate::detect::may_hold_redaction_output(s) {
        return crate::sql::scrub(s);
    }
    let mut saved: Vec<String> = Vec::new();
    let marker = |i: usize| -> String {
        // Letters only: no digit run or quote for the scrubber to take.
        let mut m = String::from("TVREDACTEDMARK");
        let mut n = i;
        loop {
            m.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
            if n == 0 {
                break;
            }
        }
        m.push_str("END");
        m
    };
    let mut protected = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in crate::detect::redaction_spans(s) {
        protected.push_str(&s[at..start]);
        saved.push(s[start..end].to_string());
        protected.push_str(&marker(saved.len() - 1));
        at = end;
    }
    protected.push_str(&s[at..]);
    let mut sc = crate::sql::scrub(&protected);
    for (i, orig) in saved.iter().enumerate().rev() {
        sc.text = sc.text.replace(&marker(i), orig);
    }
    sc
}

enum Outcome {
    Keep,
    Drop,
}

/// Where a value sits: an interned prefix and, for attributes, the key (see [`KeyInfo`]).
#[derive(Clone, Copy)]
struct Field {
    prefix: u32,
    key: u32,
}

impl Cx<'_> {
    fn hit(&mut self, rule: RuleRef, action: ActionKind, field: Field) {
        *self
            .hits
            .entry((rule, action, field.prefix, field.key))
            .or_default() += 1;
    }

    fn prefix(&mut self, p: &str) -> u32 {
        match self.prefixes.iter().position(|x| x == p) {
            Some(i) => i as u32,
            None => {
                self.prefixes.push(p.to_string());
                (self.prefixes.len() - 1) as u32
            }
        }
    }

    fn render(&self, f: Field) -> String {
        let prefix = &self.prefixes[f.prefix as usize];
        if f.key == NO_KEY {
            prefix.clone()
        } else {
            format!("{prefix}[{}]", self.key_info[f.key as usize].name)
        }
    }

    /// Moves the hits into the report, with rule and field names.
    fn finish(&mut self) {
        let hits = std::mem::take(&mut self.hits);
        for ((rule, action, prefix, key), n) in hits {
            let rule = match rule {
                RuleRef::Detector(k) => format!("detector:{}", k.name()),
                RuleRef::KeyRule(i) => self.policy.key_rules[i as usize].id.clone(),
                RuleRef::SecretKey => "secret_key".into(),
                RuleRef::Allowlist => "allowlist".into(),
                RuleRef::Sql => "sql".into(),
                RuleRef::UrlId => "url_id".into(),
            };
            let h = Hit {
                rule,
                action: action.name(),
                field: self.render(Field { prefix, key }),
            };
            *self.report.hits.entry(h).or_default() += n;
        }
    }

    /// The policy's view of `key`, computed once per key.
    fn key_info(&mut self, key: &str) -> u32 {
        if let Some(&i) = self.keys.get(key) {
            return i;
        }
        let rule = self.policy.key_rule_index(key).map(|i| i as u32);
        let info = KeyInfo {
            name: key.to_string(),
            rule,
            secret_name: secret_key_name().is_match(key) && !not_secret_key(key),
            always_secret: always_secret(key),
            allowed: self.policy.allowed(key),
            url: UrlField::of_key(key),
            sql: matches!(key, "db.statement" | "db.query.text"),
        };
        self.key_info.push(info);
        let i = (self.key_info.len() - 1) as u32;
        self.keys.insert(key.to_string(), i);
        i
    }

    fn pseudonym(&self, v: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = hmac::sign(&self.key.0, v.as_bytes());
        let mut s = String::with_capacity(5 + 64);
        s.push_str("hmac:");
        for b in tag.as_ref() {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s.truncate(5 + self.hex_len);
        s
    }

    /// The replacement for a whole value or a finding.
    fn apply(&self, action: Action, label: &str, v: &str) -> String {
        match action.kind {
            ActionKind::Keep => v.to_string(),
            ActionKind::Truncate => v.chars().take(action.length).collect(),
            ActionKind::Hash => self.pseudonym(v),
            ActionKind::Mask | ActionKind::Drop => {
                if action.keep_last > 0 {
                    let tail: String = {
                        let c: Vec<char> = v.chars().collect();
                        c[c.len().saturating_sub(action.keep_last)..]
                            .iter()
                            .collect()
                    };
                    format!("****{tail}")
                } else {
                    format!("[REDACTED:{label}]")
                }
            }
        }
    }

    /// Runs the detectors over `s`; the replacement text when something fired (`drop` actions
    /// reported through `dropped`).
    fn detect(&mut self, s: &str, field: Field, dropped: &mut bool) -> Option<String> {
        // No shortcut for values that look redacted: `scan` blanks earlier output itself, and a
        // value that merely starts like a mask is still scanned.
        if s.len() < 3 {
            return None;
        }
        let findings = scan(s);
        let mut out: Option<String> = None;
        let mut at = 0;
        for f in findings {
            let action = self.policy.detector(f.kind);
            if action.kind == ActionKind::Keep {
                continue;
            }
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[at..f.start]);
            o.push_str(&self.apply(action, f.kind.name(), &s[f.start..f.end]));
            at = f.end;
            if action.kind == ActionKind::Drop {
                *dropped = true;
            }
            self.hit(RuleRef::Detector(f.kind), action.kind, field);
        }
        if let Some(o) = out.as_mut() {
            o.push_str(&s[at..]);
        }
        out
    }

    /// Span names, event names, status messages: detectors only (a `drop` masks instead).
    fn text_field(&mut self, s: &mut String, field: &str) {
        let mut dropped = false;
        let field = Field {
            prefix: self.prefix(field),
            key: NO_KEY,
        };
        if let Some(rep) = self.detect(s, field, &mut dropped) {
            *s = rep;
        }
    }

    fn attrs(&mut self, attrs: &mut Vec<KeyValue>, prefix: &str) {
        if attrs.is_empty() {
            return;
        }
        let prefix = self.prefix(prefix);
        attrs.retain_mut(|kv| matches!(self.attr(kv, prefix, true), Outcome::Keep));
    }

    fn attr(&mut self, kv: &mut KeyValue, prefix: u32, top: bool) -> Outcome {
        let ki = self.key_info(&kv.key);
        let field = Field { prefix, key: ki };
        let info = &self.key_info[ki as usize];
        let (rule_i, secret_name, always, allowed, url, sql) = (
            info.rule,
            info.secret_name,
            info.always_secret,
            info.allowed,
            info.url,
            info.sql,
        );
        let value = &mut kv.value;
        // 1. the strongest key rule
        if let Some(ri) = rule_i {
            let action = self.policy.key_rules[ri as usize].action;
            match action.kind {
                ActionKind::Drop => {
                    self.hit(RuleRef::KeyRule(ri), ActionKind::Drop, field);
                    return Outcome::Drop;
                }
                ActionKind::Mask | ActionKind::Hash | ActionKind::Truncate => {
                    let Some(v) = value.as_mut() else {
                        return Outcome::Keep;
                    };
                    let s = tv_model::any_value_to_string(v);
                    if s.is_empty() || already_redacted(&s) {
                        return Outcome::Keep;
                    }
                    let rep = self.apply(action, "value", &s);
                    if rep != s {
                        self.hit(RuleRef::KeyRule(ri), action.kind, field);
                        v.value = Some(Value::StringValue(rep));
                    }
                    if action.kind != ActionKind::Truncate {
                        return Outcome::Keep;
                    }
                }
                ActionKind::Keep => {}
            }
        }
        // 2. allowlist mode fails closed
        if top && self.policy.mode == Mode::Allowlist && rule_i.is_none() && !allowed {
            self.hit(RuleRef::Allowlist, ActionKind::Drop, field);
            return Outcome::Drop;
        }
        let Some(v) = value.as_mut() else {
            return Outcome::Keep;
        };
        // 3. secret-named keys
        if secret_name {
            let hidden = match v.value.as_ref() {
                Some(Value::StringValue(s)) => {
                    let rest = residual(s);
                    let rest = rest.trim();
                    !rest.is_empty() && !already_redacted(s) && (always || high_entropy(rest))
                }
                Some(Value::BytesValue(b)) => !b.is_empty(),
                _ => false,
            };
            if hidden {
                self.hit(RuleRef::SecretKey, ActionKind::Mask, field);
                v.value = Some(Value::StringValue("[REDACTED:secret]".into()));
                return Outcome::Keep;
            }
        }
        // 4. SQL and URL scrubbers
        if let Some(Value::StringValue(s)) = v.value.as_mut() {
            if sql {
                let sc = scrub_sql_keeping_redactions(s);
                if sc.text != *s {
                    self.hit(RuleRef::Sql, ActionKind::Mask, field);
                    *s = sc.text;
                }
            } else if let Some(uf) = url {
                let mut u = UrlCx {
                    cx: self,
                    field,
                    dropped: false,
                };
                if let Some(rep) = crate::url::scrub(s, uf, &mut u) {
                    *s = rep;
                }
                return Outcome::Keep;
            }
        }
        // 5. detectors over what is left
        if self.value(v, field) {
            Outcome::Drop
        } else {
            Outcome::Keep
        }
    }

    /// Detectors over a value, recursively; true when a `drop` fired.
    fn value(&mut self, v: &mut AnyValue, field: Field) -> bool {
        let mut dropped = false;
        match v.value.as_mut() {
            Some(Value::StringValue(s)) => {
                if let Some(rep) = self.detect(s, field, &mut dropped) {
                    *s = rep;
                }
            }
            Some(Value::ArrayValue(a)) => {
                for e in &mut a.values {
                    dropped |= self.value(e, field);
                }
            }
            Some(Value::KvlistValue(l)) => {
                let nested = self.render(field);
                let prefix = self.prefix(&nested);
                l.values
                    .retain_mut(|kv| matches!(self.attr(kv, prefix, false), Outcome::Keep));
            }
            Some(Value::BytesValue(b)) => {
                // Bytes that are text get the same treatment; other bytes are opaque.
                if let Ok(s) = std::str::from_utf8(b)
                    && let Some(rep) = self.detect(s, field, &mut dropped)
                {
                    *b = rep.into_bytes();
                }
            }
            _ => {}
        }
        dropped
    }
}

struct UrlCx<'a, 'b> {
    cx: &'a mut Cx<'b>,
    field: Field,
    dropped: bool,
}

impl UrlScrubber for UrlCx<'_, '_> {
    fn text(&mut self, s: &str) -> Option<String> {
        self.cx.detect(s, self.field, &mut self.dropped)
    }
    fn secret(&mut self, s: &str) -> String {
        if already_redacted(s) || s == "REDACTED" {
            return s.to_string();
        }
        let action = self.cx.policy.detector(Kind::UrlCredential);
        self.cx.hit(
            RuleRef::Detector(Kind::UrlCredential),
            action.kind,
            self.field,
        );
        match action.kind {
            ActionKind::Hash => self.cx.pseudonym(s),
            _ => "REDACTED".into(),
        }
    }
    fn templated(&mut self) {
        self.cx.hit(RuleRef::UrlId, ActionKind::Mask, self.field);
    }
}
