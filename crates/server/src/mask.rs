//! Field-level access: attributes carry a sensitivity class (by key glob from `[access]
//! field_classes`), and every pseudonym redaction wrote (`hmac:<hex>`, wherever it stands: a
//! whole value, inside a longer one, in a span or event name, a status message, a scope) is of
//! class `pseudonym`. A caller the policies do not let read a class sees `[restricted:<class>]`
//! instead (for a pseudonym, in its place within the text), the same way in trace, search,
//! tag-value and findings responses; a search that names a restricted attribute finds nothing (hit
//! counts would leak what it hides); receipts withhold such fields.

use std::collections::{BTreeMap, HashMap};

use tv_model::otlp::{AnyValue, KeyValue, ResourceSpans, any_value::Value};

use crate::AppState;
use crate::auth::Authorized;

/// The class every redaction pseudonym belongs to.
pub const PSEUDONYM: &str = "pseudonym";

/// Classes by key glob, in configuration order.
#[derive(Debug, Clone, Default)]
pub struct FieldClasses {
    rules: Vec<(String, String)>,
}

impl FieldClasses {
    /// From `class -> [key globs]`; class names are `[a-z0-9_-]{1,32}`, `pseudonym` is built in.
    pub fn new(cfg: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (class, globs) in cfg {
            if class.is_empty()
                || class.len() > 32
                || !class
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
            {
                return Err(format!(
                    "field class {class:?}: names are 1 to 32 of a-z, 0-9, _ and -"
                ));
            }
            if class == PSEUDONYM {
                return Err("field class \"pseudonym\" is built in (every hmac: value)".into());
            }
            for g in globs {
                if g.is_empty() {
                    return Err(format!("field class {class:?}: empty key glob"));
                }
                rules.push((class.clone(), g.clone()));
            }
        }
        Ok(FieldClasses { rules })
    }

    /// The class of an attribute: its key's, else `pseudonym` for a value holding a pseudonym.
    pub fn class_of(&self, key: &str, value: Option<&str>) -> Option<&str> {
        self.key_class(key)
            .or_else(|| value.filter(|v| has_pseudonym(v)).map(|_| PSEUDONYM))
    }

    /// The class an attribute key's glob gives it.
    fn key_class(&self, key: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|(_, g)| tv_redact::policy::glob_match(g, key))
            .map(|(c, _)| c.as_str())
    }
}

/// Fewest hex digits of a pseudonym (`hash_bits` is at least 64).
const PSEUDONYM_MIN_HEX: usize = 16;

/// The byte ranges of the pseudonyms in `s`: `hmac:` and a run of at least 16 lowercase hex
/// digits, the form redaction writes.
fn pseudonyms(s: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    s.match_indices("hmac:").filter_map(|(i, _)| {
        let start = i + 5;
        let hex = s.as_bytes()[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        (hex >= PSEUDONYM_MIN_HEX).then_some((i, start + hex))
    })
}

/// Whether `s` holds a pseudonym anywhere.
pub fn has_pseudonym(s: &str) -> bool {
    pseudonyms(s).next().is_some()
}

/// `s` with every pseudonym replaced by the restricted marker (None: it holds none).
pub fn mask_pseudonyms(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut last = 0;
    for (a, b) in pseudonyms(s) {
        out.push_str(&s[last..a]);
        out.push_str("[restricted:pseudonym]");
        last = b;
    }
    if last == 0 {
        return None;
    }
    out.push_str(&s[last..]);
    Some(out)
}

/// One caller's view: which classes it may read (asked once per class per request).
pub struct Masker<'a> {
    state: &'a AppState,
    auth: &'a Authorized,
    classes: std::sync::Arc<FieldClasses>,
    allowed: HashMap<String, bool>,
}

impl<'a> Masker<'a> {
    pub fn new(state: &'a AppState, auth: &'a Authorized) -> Self {
        Masker {
            state,
            auth,
            classes: state.field_classes(),
            allowed: HashMap::new(),
        }
    }

    /// Whether this caller must not see `class`.
    pub fn restricted(&mut self, class: &str) -> bool {
        if let Some(&a) = self.allowed.get(class) {
            return !a;
        }
        let a =
            self.state
                .policy()
                .may_read_class(self.auth.principal(), self.auth.tenant(), class);
        self.allowed.insert(class.to_string(), a);
        !a
    }

    /// What this caller sees of `key = value` when something in it is restricted: the class
    /// marker for a restricted key class, else the value with its pseudonyms marked.
    pub fn marker(&mut self, key: &str, value: Option<&str>) -> Option<String> {
        let classes = self.classes.clone();
        if let Some(class) = classes.key_class(key) {
            return self
                .restricted(class)
                .then(|| format!("[restricted:{class}]"));
        }
        self.text(value?)
    }

    /// `s` (a name, a message) with its pseudonyms marked, when this caller may not read them.
    pub fn text(&mut self, s: &str) -> Option<String> {
        if !has_pseudonym(s) || !self.restricted(PSEUDONYM) {
            return None;
        }
        mask_pseudonyms(s)
    }

    fn text_in_place(&mut self, s: &mut String) {
        if let Some(m) = self.text(s) {
            *s = m;
        }
    }

    /// Masks every attribute of `data` (resource, scope, span, event, link; nested values) and
    /// the pseudonyms in every name and message.
    pub fn traces(&mut self, data: &mut [ResourceSpans]) {
        for rs in data {
            if let Some(r) = rs.resource.as_mut() {
                self.attrs(&mut r.attributes);
            }
            self.text_in_place(&mut rs.schema_url);
            for ss in &mut rs.scope_spans {
                if let Some(s) = ss.scope.as_mut() {
                    self.attrs(&mut s.attributes);
                    self.text_in_place(&mut s.name);
                    self.text_in_place(&mut s.version);
                }
                self.text_in_place(&mut ss.schema_url);
                for sp in &mut ss.spans {
                    self.attrs(&mut sp.attributes);
                    self.text_in_place(&mut sp.name);
                    self.text_in_place(&mut sp.trace_state);
                    if let Some(st) = sp.status.as_mut() {
                        self.text_in_place(&mut st.message);
                    }
                    for e in &mut sp.events {
                        self.attrs(&mut e.attributes);
                        self.text_in_place(&mut e.name);
                    }
                    for l in &mut sp.links {
                        self.attrs(&mut l.attributes);
                        self.text_in_place(&mut l.trace_state);
                    }
                }
            }
        }
    }

    fn attrs(&mut self, attrs: &mut [KeyValue]) {
        for kv in attrs {
            if let Some(v) = kv.value.as_mut() {
                self.value(&kv.key, v);
            }
            // A key redaction rewrote holds a pseudonym too.
            self.text_in_place(&mut kv.key);
        }
    }

    fn value(&mut self, key: &str, v: &mut AnyValue) {
        match v.value.as_mut() {
            Some(Value::ArrayValue(a)) => {
                for e in &mut a.values {
                    self.value(key, e);
                }
            }
            Some(Value::KvlistValue(l)) => {
                for kv in &mut l.values {
                    let nested = format!("{key}.{}", kv.key);
                    if let Some(inner) = kv.value.as_mut() {
                        self.value(&nested, inner);
                    }
                    self.text_in_place(&mut kv.key);
                }
            }
            other => {
                let s = match other {
                    Some(Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                };
                if let Some(m) = self.marker(key, s) {
                    v.value = Some(Value::StringValue(m));
                }
            }
        }
    }

    /// What this caller may see, for evaluating TraceQL (owned: it runs off the async
    /// workers): attributes of a restricted class, and keys holding a pseudonym it may not
    /// read, are absent; texts read with their pseudonyms masked, as in trace reads.
    pub fn match_view(&mut self) -> MatchView {
        let classes = self.classes.clone();
        let restricted = classes
            .rules
            .iter()
            .map(|(c, _)| c.clone())
            .filter(|c| self.restricted(c))
            .collect();
        MatchView {
            classes,
            restricted,
            pseudonyms_hidden: self.restricted(PSEUDONYM),
        }
    }

    /// Whether a search on `key = value` must find nothing for this caller.
    pub fn hides_search(&mut self, key: &str, value: &str) -> bool {
        self.marker(key, Some(value)).is_some()
    }

    /// What receipts must withhold for this caller (owned, for the proving thread): every class
    /// it may not read, and every class it may not `reveal` in a portable, signed receipt.
    pub fn withholding(&mut self) -> Withholding {
        let classes = self.classes.clone();
        let mut restricted = std::collections::HashSet::new();
        let names: Vec<String> = classes
            .rules
            .iter()
            .map(|(c, _)| c.clone())
            .chain([PSEUDONYM.to_string()])
            .collect();
        let policy = self.state.policy();
        for c in names {
            if self.restricted(&c)
                || !policy.may_reveal_class(self.auth.principal(), self.auth.tenant(), &c)
            {
                restricted.insert(c);
            }
        }
        Withholding {
            classes,
            restricted,
        }
    }
}

/// The restricted classes of one caller, for deciding which receipt fields to withhold.
#[derive(Debug, Clone)]
pub struct Withholding {
    classes: std::sync::Arc<FieldClasses>,
    restricted: std::collections::HashSet<String>,
}

impl Withholding {
    /// Whether a committed field (its name, its encoded value) must be withheld. Attribute fields
    /// are named `attributes/<key>` (also under events and links); a value holding a pseudonym
    /// anywhere (resource and scope fields hold all their attributes) counts as `pseudonym`.
    pub fn withholds(&self, name: &str, encoded: &[u8]) -> bool {
        let key = name
            .strip_prefix("attributes/")
            .or_else(|| name.split_once("/attributes/").map(|(_, k)| k));
        if let Some(k) = key
            && let Some(c) = self.classes.class_of(k, None)
            && self.restricted.contains(c)
        {
            return true;
        }
        self.restricted.contains(PSEUDONYM)
            && std::str::from_utf8(encoded).map_or_else(
                // Not text: any `hmac:` counts.
                |_| encoded.windows(5).any(|w| w == b"hmac:"),
                has_pseudonym,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_marked_wherever_they_stand() {
        let p = "hmac:1900b0aa112233445566778899aabbcc";
        assert_eq!(
            mask_pseudonyms(&format!("mail {p} now, cc {p}")).unwrap(),
            "mail [restricted:pseudonym] now, cc [restricted:pseudonym]"
        );
        assert_eq!(mask_pseudonyms(p).unwrap(), "[restricted:pseudonym]");
        assert_eq!(mask_pseudonyms("GET /users/hmac:short"), None);
        assert_eq!(mask_pseudonyms("no pseudonym here"), None);
        assert_eq!(
            mask_pseudonyms(&format!("ü{p}ü")).unwrap(),
            "ü[restricted:pseudonym]ü"
        );
    }

    #[test]
    fn classes_come_from_key_globs_then_pseudonym_values() {
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "pii".to_string(),
            vec!["user.*".to_string(), "client.address".to_string()],
        );
        let c = FieldClasses::new(&cfg).unwrap();
        assert_eq!(c.class_of("user.email", Some("x")), Some("pii"));
        assert_eq!(c.class_of("client.address", None), Some("pii"));
        assert_eq!(
            c.class_of("note", Some("hmac:00112233445566778899aabbccddeeff")),
            Some(PSEUDONYM)
        );
        assert_eq!(
            c.class_of("note", Some("mail hmac:1900b0aa11223344556677 now")),
            Some(PSEUDONYM)
        );
        assert_eq!(c.class_of("note", Some("see hmac: rfc 2104")), None);
        assert_eq!(c.class_of("note", Some("plain")), None);
        let mut bad = BTreeMap::new();
        bad.insert("pseudonym".to_string(), vec!["x".to_string()]);
        assert!(FieldClasses::new(&bad).is_err());
        bad.clear();
        bad.insert("PII!".to_string(), vec!["x".to_string()]);
        assert!(FieldClasses::new(&bad).is_err());
    }
}

/// One caller's view for query evaluation (see [`Masker::match_view`]).
#[derive(Clone)]
pub struct MatchView {
    classes: std::sync::Arc<FieldClasses>,
    restricted: std::collections::HashSet<String>,
    pseudonyms_hidden: bool,
}

impl MatchView {
    /// Whether this caller may read pseudonyms (and so search by the value behind one).
    pub fn reads_pseudonyms(&self) -> bool {
        !self.pseudonyms_hidden
    }
}

impl tv_traceql::eval::View for MatchView {
    fn hides(&self, key: &str) -> bool {
        self.classes
            .key_class(key)
            .is_some_and(|c| self.restricted.contains(c))
            || (self.pseudonyms_hidden && has_pseudonym(key))
    }

    fn text(&self, s: &str) -> Option<String> {
        if self.pseudonyms_hidden && has_pseudonym(s) {
            mask_pseudonyms(s)
        } else {
            None
        }
    }
}
