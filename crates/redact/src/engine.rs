//! The engine: applies a tenant's [`Rules`] to an OTLP batch. Pure: the batch and the tenant's
//! pseudonym key in, the [`Redacted`] batch and a [`Report`] out.
//!
//! Covered: resource attributes, scope attributes and scope name and version, schema URLs, span
//! attributes, span names, trace state, status messages, event names and attributes, link
//! attributes and trace state, and nested values (arrays, kvlists) to any depth validation
//! allowed. Attribute *keys* are scanned too: a key holding something a detector finds (a card
//! number, an email) keeps its shape with that part replaced by a pseudonym, so it stays one
//! stable, usable key. Integers and doubles are judged by their decimal text. Header-like keys are
//! matched case-insensitively, with gRPC metadata as headers (see [`canonical_key`]). Span and
//! trace ids, timestamps and kinds are structure, not content.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};

use aws_lc_rs::hmac;
use serde::Serialize;
use tv_model::otlp::{AnyValue, ExportTraceServiceRequest, KeyValue, any_value::Value};

use crate::detect::{Kind, scan};
use crate::policy::{Action, ActionKind, Mode, Policy, Rules};
use crate::url::{UrlField, UrlScrubber};

/// A tenant's pseudonymization key (HMAC-SHA256). The server derives it from the tenant's key
/// material; it never leaves the process.
pub struct PseudonymKey {
    key: hmac::Key,
    /// Distinct for every key made in this process (a counter, nothing derived from the secret):
    /// what the per-thread pseudonym cache tells keys apart by.
    id: u64,
}

static NEXT_KEY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bumped whenever a key is dropped (a tenant's keys destroyed, its cached key forgotten): every
/// thread's pseudonym cache starts over at its next use, so no pseudonym under a gone key stays.
static KEYS_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for PseudonymKey {
    fn drop(&mut self) {
        KEYS_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PseudonymKey {
    pub fn new(secret: &[u8; 32]) -> Self {
        PseudonymKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            id: NEXT_KEY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// The pseudonyms redaction writes for `value` as a whole value under `rules` (one per way the
/// detectors normalize a value before keying it: as found, as an email, as an address, ...),
/// deduplicated. What a caller allowed to read pseudonyms may search by.
pub fn pseudonyms_of(rules: &Rules, key: &PseudonymKey, value: &str) -> Vec<String> {
    let hex_len = rules.hash_bits as usize / 4;
    let mut inputs: Vec<String> = std::iter::once(None)
        .chain(crate::detect::Kind::ALL.iter().copied().map(Some))
        .map(|k| crate::normalize::pseudonym_input(k, value).into_owned())
        .collect();
    inputs.sort();
    inputs.dedup();
    inputs
        .iter()
        .map(|input| keyed(key, hex_len, input))
        .collect()
}

/// The pseudonym redaction writes for `value` found as a whole attribute value under a `hash`
/// key rule (`user.email`, `enduser.id`): keyed after the normalization of the kind a detector
/// recognizes the whole value as (an email lowercased, an address canonical), else as found.
pub fn pseudonym_of(rules: &Rules, key: &PseudonymKey, value: &str) -> String {
    let kind = match scan(value).as_slice() {
        [f] if f.start == 0 && f.end == value.len() => Some(f.kind),
        _ => None,
    };
    keyed(
        key,
        rules.hash_bits as usize / 4,
        &crate::normalize::pseudonym_input(kind, value),
    )
}

/// `hmac:` and the first `hex_len` hex digits of the keyed hash of `input`. Repeated inputs
/// (the same user id or client address in batch after batch) come from this thread's
/// [`PSEUDONYMS`] cache.
fn keyed(key: &PseudonymKey, hex_len: usize, input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let fp = Memo::fingerprint(
        key.id,
        &[
            b"pseudonym",
            &(hex_len as u64).to_le_bytes(),
            input.as_bytes(),
        ],
    );
    let dropped = KEYS_DROPPED.load(std::sync::atomic::Ordering::Relaxed);
    let cached = PSEUDONYMS.with_borrow_mut(|(seen, c)| {
        if *seen != dropped {
            c.clear();
            *seen = dropped;
        }
        c.get(&fp).cloned()
    });
    if let Some(p) = cached {
        return p;
    }
    let tag = hmac::sign(&key.key, input.as_bytes());
    let mut s = String::with_capacity(5 + 64);
    s.push_str("hmac:");
    for b in tag.as_ref() {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s.truncate(5 + hex_len);
    PSEUDONYMS.with_borrow_mut(|(_, c)| {
        if c.len() >= PSEUDONYM_CACHE {
            c.clear();
        }
        c.insert(fp, s.clone());
    });
    s
}

/// Most pseudonyms one thread's cache holds before it starts over (about 1.5 MB).
const PSEUDONYM_CACHE: usize = 1 << 14;

thread_local! {
    /// Pseudonyms this thread computed, by the [`Memo`] fingerprint of (key id, length, input):
    /// no input is kept, only its keyed fingerprint and the pseudonym the batch gets anyway;
    /// with the [`KEYS_DROPPED`] count it was filled under.
    static PSEUDONYMS: RefCell<(u64, HashMap<u128, String, BuildU128>)> =
        const { RefCell::new((0, HashMap::with_hasher(BuildU128))) };
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
        let (policy_index, policy) = rules.policy_index_for(tenant, service.as_deref());
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
            fired: 0,
            scope: Memo::scope(&rules.digest(), policy_index, tenant),
        };
        if let Some(r) = rs.resource.as_mut() {
            cx.attrs(&mut r.attributes, "resource.attributes");
        }
        cx.text_field(&mut rs.schema_url, "resource.schema_url");
        for ss in &mut rs.scope_spans {
            if let Some(sc) = ss.scope.as_mut() {
                cx.attrs(&mut sc.attributes, "scope.attributes");
                cx.text_field(&mut sc.name, "scope.name");
                cx.text_field(&mut sc.version, "scope.version");
            }
            cx.text_field(&mut ss.schema_url, "scope.schema_url");
            for span in &mut ss.spans {
                cx.report.spans += 1;
                cx.text_field(&mut span.name, "span.name");
                cx.text_field(&mut span.trace_state, "span.trace_state");
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
                    cx.text_field(&mut l.trace_state, "link.trace_state");
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
    /// Hits so far (a value whose processing added none, and which came out as it went in, is
    /// one the [`Memo`] may remember).
    fired: u64,
    /// What a [`Memo`] fingerprint starts with: the rules, the policy and the tenant.
    scope: u64,
}

/// Values this thread's engine recently left exactly as they were, as 128-bit keyed
/// fingerprints of (rules digest, policy, tenant, where the value sits, the attribute key, the
/// value): most attribute values in real traffic (methods, routes, status codes, service names,
/// user agents, span names) repeat across batches and hold nothing to redact, and the detectors
/// need not read them again. Only values that came out unchanged with no hit are remembered, so a
/// hit is never skipped; no value is kept, only its fingerprint, under keys random per thread
/// and process. Bounded: at [`Memo::CAPACITY`] the set starts over.
struct Memo {
    /// Keys of the 128-bit SipHash-1-3 fingerprints.
    keys: (u64, u64),
    seen: HashSet<u128, BuildU128>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo {
        keys: Memo::random_keys(),
        seen: HashSet::with_capacity_and_hasher(1024, BuildU128),
    });
}

impl Memo {
    const CAPACITY: usize = 1 << 16;

    /// Two keys random per thread and process, drawn through std's `RandomState` (seeded from
    /// the OS).
    fn random_keys() -> (u64, u64) {
        let s = std::hash::RandomState::new();
        (s.hash_one(0u8), s.hash_one(1u8))
    }

    fn scope(digest: &[u8; 32], policy: usize, tenant: &str) -> u64 {
        MEMO.with_borrow(|m| {
            let mut h = siphasher::sip128::SipHasher13::new_with_keys(m.keys.0, m.keys.1);
            digest.hash(&mut h);
            policy.hash(&mut h);
            tenant.hash(&mut h);
            h.finish()
        })
    }

    /// The fingerprint of `parts` (each written with its length, so the parts cannot run into
    /// each other) under `scope`: one keyed SipHash-1-3 pass with a 128-bit output.
    fn fingerprint(scope: u64, parts: &[&[u8]]) -> u128 {
        use siphasher::sip128::Hasher128 as _;
        MEMO.with_borrow(|m| {
            let mut h = siphasher::sip128::SipHasher13::new_with_keys(m.keys.0, m.keys.1);
            h.write_u64(scope);
            for p in parts {
                h.write_usize(p.len());
                h.write(p);
            }
            h.finish128().as_u128()
        })
    }

    fn contains(fp: u128) -> bool {
        MEMO.with_borrow(|m| m.seen.contains(&fp))
    }

    fn insert(fp: u128) {
        MEMO.with_borrow_mut(|m| {
            if m.seen.len() >= Self::CAPACITY {
                m.seen.clear();
            }
            m.seen.insert(fp);
        })
    }
}

/// The memo's set holds keyed fingerprints already: their low bits are the hash.
#[derive(Clone, Copy, Default)]
struct BuildU128;

impl BuildHasher for BuildU128 {
    type Hasher = U128Hasher;
    fn build_hasher(&self) -> U128Hasher {
        U128Hasher(0)
    }
}

#[derive(Default)]
struct U128Hasher(u64);

impl Hasher for U128Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// Where a value sits, for its [`Memo`] fingerprint: text fields, top-level attributes and
/// nested ones are judged differently (allowlist mode drops unknown top-level keys only).
const MEMO_TEXT: &[u8] = b"t";
const MEMO_TOP: &[u8] = b"a";
const MEMO_NESTED: &[u8] = b"n";

/// A scalar value's memo form: its type, and its bytes (text) or its 8 bytes (numbers). Arrays,
/// lists and bytes are not remembered.
enum MemoValue<'a> {
    Text(&'a [u8]),
    Number(u8, [u8; 8]),
}

impl MemoValue<'_> {
    fn of(v: Option<&AnyValue>) -> Option<MemoValue<'_>> {
        Some(match v?.value.as_ref()? {
            Value::StringValue(s) => MemoValue::Text(s.as_bytes()),
            Value::IntValue(i) => MemoValue::Number(b'i', i.to_le_bytes()),
            Value::BoolValue(b) => MemoValue::Number(b'b', u64::from(*b).to_le_bytes()),
            Value::DoubleValue(d) => MemoValue::Number(b'd', d.to_bits().to_le_bytes()),
            _ => return None,
        })
    }

    fn parts(&self) -> ([u8; 1], &[u8]) {
        match self {
            MemoValue::Text(t) => ([b's'], t),
            MemoValue::Number(ty, n) => ([*ty], n),
        }
    }
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
    /// The key as stored and reported: the key itself, or with what a detector found in it
    /// replaced by pseudonyms.
    name: String,
    /// Set when `name` differs from the key as sent.
    renamed: bool,
    /// What a number (or a number-shaped string) under this key is, by the key's words.
    numeric: Option<Kind>,
    /// The key names a version or build (`service.version`): a dotted quad there is a version.
    versionish: bool,
    /// The key names a product, order or document code (`app.product.sku`, `order.id`) and not a
    /// phone: digit groups there are the code.
    codeish: bool,
    rule: Option<u32>,
    secret: Option<SecretKey>,
    allowed: bool,
    url: Option<UrlField>,
    sql: bool,
}

const NO_KEY: u32 = u32::MAX;

/// The form of a key that rules and name checks see: header names are case-insensitive and
/// instrumentations write them with `-` or `_`, so `http.request.header.X_Api_Key` is
/// `http.request.header.x-api-key`; gRPC metadata is request/response headers
/// (`rpc.grpc.request.metadata.<key>`, and the newer `rpc.request.metadata.<key>`).
pub fn canonical_key(key: &str) -> std::borrow::Cow<'_, str> {
    const HEADERS: [(&str, &str); 6] = [
        ("http.request.header.", "http.request.header."),
        ("http.response.header.", "http.response.header."),
        ("rpc.grpc.request.metadata.", "http.request.header."),
        ("rpc.grpc.response.metadata.", "http.response.header."),
        ("rpc.request.metadata.", "http.request.header."),
        ("rpc.response.metadata.", "http.response.header."),
    ];
    for (from, to) in HEADERS {
        if key.len() > from.len() && key[..from.len()].eq_ignore_ascii_case(from) {
            let name: String = key[from.len()..]
                .chars()
                .map(|c| match c {
                    '_' => '-',
                    c => c.to_ascii_lowercase(),
                })
                .collect();
            return std::borrow::Cow::Owned(format!("{to}{name}"));
        }
    }
    std::borrow::Cow::Borrowed(key)
}

/// What a number under `key` is, when the key's last word says so (`user.phone`,
/// `customer.mobile_number`, `applicant.ssn`).
fn numeric_context(key: &str) -> Option<Kind> {
    let k = key.to_ascii_lowercase();
    let words: Vec<&str> = k
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |ws: &[&str]| words.iter().any(|w| ws.contains(w));
    if has(&[
        "phone",
        "telephone",
        "tel",
        "mobile",
        "msisdn",
        "fax",
        "cellphone",
        "phonenumber",
    ]) {
        return Some(Kind::Phone);
    }
    if has(&["ssn", "socialsecuritynumber"]) || k.contains("social_security") {
        return Some(Kind::UsSsn);
    }
    // A card's verification code or a PIN: a few digits that are the secret themselves.
    if has(&[
        "cvv", "cvc", "cvv2", "cvc2", "csc", "cid", "pin", "pincode", "passcode",
    ]) {
        return Some(Kind::SecretAssignment);
    }
    None
}

/// How a key's name says its value is a secret (`names::secret_name`, plus the headers whose
/// every value is a credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKey {
    /// Any non-empty value is a secret (`*password*`, `*credential*`, `authorization`, `cookie`).
    Always,
    /// A value random by its shape (`*token*`, `*_api_key`, `*secret*`).
    Random,
    /// A random value that is not a structured identifier (`<qualifier>_key`).
    RandomUnstructured,
    /// A value random by its shape alone (`key`, `login`, `license`: names that hold ordinary
    /// values as often as secrets, such as `Apache-2.0` or a user name).
    RandomShape,
}

fn secret_key(key: &str) -> Option<SecretKey> {
    let words = crate::names::words(key);
    if words
        .iter()
        .any(|w| matches!(w.as_str(), "authorization" | "cookie" | "setcookie"))
    {
        return Some(SecretKey::Always);
    }
    Some(match crate::names::secret_words(&words)? {
        // A password's or a credential's own words: whatever the value is. A bare `pass` or `pw`
        // may be a test's result (`check.pass = true`): judged by the value like a token.
        crate::names::Strength::Password | crate::names::Strength::Token
            if words.iter().any(|w| {
                w.contains("passw")
                    || w.contains("passphrase")
                    || w.starts_with("credential")
                    || matches!(w.as_str(), "pwd" | "creds")
            }) =>
        {
            SecretKey::Always
        }
        crate::names::Strength::Password
        | crate::names::Strength::Secret
        | crate::names::Strength::Token => SecretKey::Random,
        crate::names::Strength::Key => SecretKey::RandomUnstructured,
        crate::names::Strength::BareKey => SecretKey::RandomShape,
    })
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
        self.fired += 1;
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
        let canon = canonical_key(key);
        // The rule of the key as sent or of its canonical header form, the stronger one.
        let rule = [
            self.policy.key_rule_index(key),
            self.policy.key_rule_index(&canon),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|i| self.policy.key_rules[*i].action.kind)
        .map(|i| i as u32);
        let (name, renamed) = match self.redact_key(key) {
            Some(n) => (n, true),
            None => (key.to_string(), false),
        };
        let info = KeyInfo {
            name,
            renamed,
            numeric: numeric_context(&canon),
            versionish: {
                let k = canon.to_ascii_lowercase();
                ["version", "build", "release", "revision"]
                    .iter()
                    .any(|w| k.contains(w))
            },
            codeish: {
                let words = crate::names::words(&canon);
                numeric_context(&canon) != Some(Kind::Phone)
                    && words
                        .iter()
                        .any(|w| crate::detect::CODE_WORDS.contains(&w.as_str()))
                    && !words
                        .iter()
                        .any(|w| w == "phone" || w == "tel" || w == "fax")
            },
            rule,
            secret: secret_key(&canon),
            allowed: self.policy.allowed(key),
            url: UrlField::of_key(key),
            sql: matches!(key, "db.statement" | "db.query.text"),
        };
        let i = self.key_info.len() as u32;
        if info.renamed {
            // What fired in the key is reported under its new name.
            for f in scan(key) {
                let field = Field {
                    prefix: self.prefix("attribute keys"),
                    key: i,
                };
                self.hit(RuleRef::Detector(f.kind), ActionKind::Hash, field);
            }
        }
        self.key_info.push(info);
        self.keys.insert(key.to_string(), i);
        i
    }

    /// `key` with what the detectors find in it replaced by pseudonyms (whatever the detector's
    /// action for values: a key must stay one distinct, stable key), or `None`.
    fn redact_key(&self, key: &str) -> Option<String> {
        if key.len() < 3 {
            return None;
        }
        let findings = scan(key);
        if findings.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(key.len() + 40);
        let mut at = 0;
        for f in findings {
            out.push_str(&key[at..f.start]);
            out.push_str(&self.pseudonym(Some(f.kind), &key[f.start..f.end]));
            at = f.end;
        }
        out.push_str(&key[at..]);
        Some(out)
    }

    /// The pseudonym of `v` (of kind `kind`, when a detector found it), keyed from its one
    /// normalization ([`crate::normalize::pseudonym_input`]).
    fn pseudonym(&self, kind: Option<Kind>, v: &str) -> String {
        keyed(
            self.key,
            self.hex_len,
            &crate::normalize::pseudonym_input(kind, v),
        )
    }

    /// The replacement for a whole value or a finding.
    fn apply(&self, action: Action, kind: Option<Kind>, v: &str) -> String {
        let label = kind.map_or("value", Kind::name);
        match action.kind {
            ActionKind::Keep => v.to_string(),
            ActionKind::Truncate => v.chars().take(action.length).collect(),
            ActionKind::Hash => self.pseudonym(kind, v),
            ActionKind::Mask | ActionKind::Drop => {
                if action.keep_last > 0 {
                    // A disguised value keeps what its plain form would (the last digits of a
                    // card written in full-width digits are those digits).
                    let plain = crate::normalize::plain(v);
                    let tail: String = {
                        let c: Vec<char> = plain.chars().collect();
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
        let mut findings = scan(s);
        if field.key != NO_KEY && self.key_info[field.key as usize].versionish {
            findings.retain(|f| f.kind != Kind::IpAddress || s[f.start..f.end].contains(':'));
        }
        // Under a key that names a product, order or document code, digit groups are that code.
        if field.key != NO_KEY && self.key_info[field.key as usize].codeish {
            findings.retain(|f| f.kind != Kind::Phone);
        }
        let mut out: Option<String> = None;
        let mut at = 0;
        for f in findings {
            let action = self.policy.detector(f.kind);
            if action.kind == ActionKind::Keep {
                continue;
            }
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[at..f.start]);
            o.push_str(&self.apply(action, Some(f.kind), &s[f.start..f.end]));
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
        if s.len() < 3 {
            return;
        }
        let fp = Memo::fingerprint(self.scope, &[MEMO_TEXT, s.as_bytes()]);
        if Memo::contains(fp) {
            return;
        }
        let mut dropped = false;
        let field = Field {
            prefix: self.prefix(field),
            key: NO_KEY,
        };
        match self.detect(s, field, &mut dropped) {
            Some(rep) => *s = rep,
            None => Memo::insert(fp),
        }
    }

    fn attrs(&mut self, attrs: &mut Vec<KeyValue>, prefix: &str) {
        if attrs.is_empty() {
            return;
        }
        let prefix = self.prefix(prefix);
        attrs.retain_mut(|kv| matches!(self.attr(kv, prefix, true), Outcome::Keep));
    }

    /// One attribute: from the [`Memo`] when this thread saw the same key and scalar value
    /// under the same policy come out unchanged.
    fn attr(&mut self, kv: &mut KeyValue, prefix: u32, top: bool) -> Outcome {
        let place = if top { MEMO_TOP } else { MEMO_NESTED };
        let fingerprint = |scope: u64, kv: &KeyValue| {
            MemoValue::of(kv.value.as_ref()).map(|v| {
                let (ty, bytes) = v.parts();
                Memo::fingerprint(scope, &[place, kv.key.as_bytes(), &ty, bytes])
            })
        };
        let before = fingerprint(self.scope, kv);
        if before.is_some_and(Memo::contains) {
            return Outcome::Keep;
        }
        let fired = self.fired;
        let outcome = self.attr_uncached(kv, prefix, top);
        if let Some(fp) = before
            && matches!(outcome, Outcome::Keep)
            && self.fired == fired
            && fingerprint(self.scope, kv) == Some(fp)
        {
            Memo::insert(fp);
        }
        outcome
    }

    fn attr_uncached(&mut self, kv: &mut KeyValue, prefix: u32, top: bool) -> Outcome {
        let ki = self.key_info(&kv.key);
        let field = Field { prefix, key: ki };
        let info = &self.key_info[ki as usize];
        if info.renamed {
            kv.key = info.name.clone();
        }
        let numeric = info.numeric;
        let (rule_i, secret, allowed, url, sql) =
            (info.rule, info.secret, info.allowed, info.url, info.sql);
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
                    // A whole value a detector recognizes (an email under `user.email`) is
                    // normalized as that kind before it is keyed.
                    let kind = match scan(&s).as_slice() {
                        [f] if f.start == 0 && f.end == s.len() => Some(f.kind),
                        _ => None,
                    };
                    let rep = self.apply(action, kind, &s);
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
        if let Some(secret) = secret {
            let hides = |s: &str| {
                let rest = residual(s);
                let rest = rest.trim();
                !rest.is_empty()
                    && !already_redacted(s)
                    && match secret {
                        SecretKey::Always => true,
                        SecretKey::Random => high_entropy(rest),
                        SecretKey::RandomUnstructured => {
                            high_entropy(rest) && !crate::secrets::structured(rest)
                        }
                        SecretKey::RandomShape => crate::secrets::random_token(rest),
                    }
            };
            let hidden = match v.value.as_mut() {
                Some(Value::StringValue(s)) => hides(s),
                Some(Value::BytesValue(b)) => !b.is_empty(),
                // Header values are string arrays in the semantic conventions: each element is
                // judged like a string.
                Some(Value::ArrayValue(a)) => {
                    let mut any = false;
                    for e in &mut a.values {
                        if let Some(Value::StringValue(s)) = e.value.as_ref()
                            && hides(s)
                        {
                            e.value = Some(Value::StringValue("[REDACTED:secret]".into()));
                            any = true;
                        }
                    }
                    if any {
                        self.hit(RuleRef::SecretKey, ActionKind::Mask, field);
                        return Outcome::Keep;
                    }
                    false
                }
                _ => false,
            };
            if hidden {
                self.hit(RuleRef::SecretKey, ActionKind::Mask, field);
                v.value = Some(Value::StringValue("[REDACTED:secret]".into()));
                return Outcome::Keep;
            }
        }
        // 3b. numbers (and number-shaped strings) whose key says what they are
        if let Some(kind) = numeric
            && let Some(rep) = self.by_context(v, kind, field)
        {
            v.value = Some(Value::StringValue(rep));
            return Outcome::Keep;
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
            // A card number sent as an integer is still one: numbers are judged by their
            // decimal text (card numbers only: a bare number is an id or a count far more
            // often than a phone or an SSN; those need their key, see `by_context`).
            Some(Value::IntValue(i)) => {
                if let Some(rep) = self.number(&i.to_string(), field, &mut dropped) {
                    v.value = Some(Value::StringValue(rep));
                }
            }
            Some(Value::DoubleValue(d)) if d.is_finite() && d.fract() == 0.0 && d.abs() >= 1e11 => {
                if let Some(rep) = self.number(&format!("{d}"), field, &mut dropped) {
                    v.value = Some(Value::StringValue(rep));
                }
            }
            _ => {}
        }
        dropped
    }

    /// The detectors that apply to a bare number (cards) over its decimal text.
    fn number(&mut self, digits: &str, field: Field, dropped: &mut bool) -> Option<String> {
        if digits.len() < 12 {
            return None;
        }
        let cards: Vec<_> = scan(digits)
            .into_iter()
            .filter(|f| f.kind == Kind::CreditCard)
            .collect();
        if cards.is_empty() {
            return None;
        }
        self.detect(digits, field, dropped)
    }

    /// A number, or a string that is only a number in its usual notation, under a key that says
    /// it is a phone number or an SSN: redacted as that kind whatever the shape detectors say.
    fn by_context(&mut self, v: &AnyValue, kind: Kind, field: Field) -> Option<String> {
        let text = match v.value.as_ref()? {
            Value::IntValue(i) => i.to_string(),
            Value::DoubleValue(d) if d.is_finite() && d.fract() == 0.0 => format!("{d}"),
            Value::StringValue(s) => s.clone(),
            _ => return None,
        };
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        let shaped = text.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' ' | b'.' | b'(' | b')' | b'/')
        }) || text.to_ascii_lowercase().starts_with("tel:");
        let fits = match kind {
            Kind::Phone => (7..=15).contains(&digits),
            Kind::UsSsn => digits == 9,
            Kind::SecretAssignment => {
                (3..=8).contains(&digits) && text.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        };
        if !shaped || !fits || already_redacted(&text) {
            return None;
        }
        let action = self.policy.detector(kind);
        if action.kind == ActionKind::Keep {
            return None;
        }
        self.hit(RuleRef::Detector(kind), action.kind, field);
        Some(self.apply(action, Some(kind), &text))
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
            ActionKind::Hash => self.cx.pseudonym(Some(Kind::UrlCredential), s),
            _ => "REDACTED".into(),
        }
    }
    fn templated(&mut self) {
        self.cx.hit(RuleRef::UrlId, ActionKind::Mask, self.field);
    }
}
