//! Signature rules: Sigma detection rules evaluated with `rsigma-eval` over [`SpanView`]s.
//!
//! Loading is forgiving per rule and strict per reason: every rule that cannot run on traces is
//! reported with its file and why (parse error, unknown field, non-trace log source, correlation
//! rule, compile error), and the rest load. See docs/adr/0012.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rsigma_eval::Engine;
use rsigma_eval::result::MatchDetailLevel;
use rsigma_parser::{
    Detection, DetectionItem, Level, Modifier, SigmaRule, SigmaValue, parse_sigma_yaml,
};

use crate::finding::{Evidence, Severity};
use crate::view::{SpanView, known_field};

/// The built-in rule pack (ours, Apache-2.0), one file per attack class.
pub const BUILTIN: &[(&str, &str)] = &[
    ("builtin/sqli.yml", include_str!("../rules/sqli.yml")),
    ("builtin/xss.yml", include_str!("../rules/xss.yml")),
    ("builtin/lfi.yml", include_str!("../rules/lfi.yml")),
    ("builtin/rce.yml", include_str!("../rules/rce.yml")),
    ("builtin/ssrf.yml", include_str!("../rules/ssrf.yml")),
    (
        "builtin/log4shell.yml",
        include_str!("../rules/log4shell.yml"),
    ),
    ("builtin/ssti.yml", include_str!("../rules/ssti.yml")),
    ("builtin/scanner.yml", include_str!("../rules/scanner.yml")),
    ("builtin/db.yml", include_str!("../rules/db.yml")),
    (
        "builtin/injection.yml",
        include_str!("../rules/injection.yml"),
    ),
];

/// A loaded rule.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// Attack classes from `tv.class.*` tags.
    pub classes: Vec<String>,
    /// Other tags (ATT&CK `attack.*`).
    pub tags: Vec<String>,
    /// The file it came from.
    pub source: String,
}

/// A rule (or document) that did not load, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub source: String,
    pub title: Option<String>,
    pub reason: String,
}

/// One rule that fired on one span.
#[derive(Clone, Debug)]
pub struct Hit<'r> {
    pub rule: &'r RuleInfo,
    pub evidence: Vec<Evidence>,
}

pub struct RuleSet {
    /// The rules with their regex items rewritten to read [`RuleSet::regexes`]' answers
    /// (decides which rules fire).
    engine: Engine,
    /// Each rule as written, in its own engine: run on the rules that fired, for their evidence.
    precise: Vec<Engine>,
    /// The regex patterns of every rewritten item, by field (see [`rewrite_regexes`]).
    patterns: BTreeMap<String, Vec<String>>,
    regexes: std::sync::OnceLock<crate::regex_index::Indexes>,
    rules: Vec<RuleInfo>,
    by_id: HashMap<String, usize>,
    pub unsupported: Vec<Unsupported>,
    /// Rule ids the operator switched off, and whether a loaded file had each.
    disabled: HashMap<String, bool>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("unsupported", &self.unsupported.len())
            .finish()
    }
}

/// Fields whose matched values are not user data and may appear in evidence.
const SAFE_VALUE_FIELDS: &[&str] = &[
    "tv.sqli",
    "tv.xss",
    "sc-status",
    "http.response.status_code",
    "http.status_code",
    "cs-method",
    "http.request.method",
    "http.method",
    "span.kind",
    "span.status",
];

impl RuleSet {
    pub fn empty() -> RuleSet {
        let mut engine = Engine::new();
        engine.set_match_detail(MatchDetailLevel::Full);
        RuleSet {
            engine,
            precise: Vec::new(),
            patterns: BTreeMap::new(),
            regexes: std::sync::OnceLock::new(),
            rules: Vec::new(),
            by_id: HashMap::new(),
            unsupported: Vec::new(),
            disabled: HashMap::new(),
        }
    }

    /// The built-in pack. A built-in rule that does not load is a bug, caught by tests.
    pub fn builtin() -> RuleSet {
        let mut set = RuleSet::empty();
        set.add_builtin();
        set
    }

    pub fn add_builtin(&mut self) {
        for (name, text) in BUILTIN {
            self.add_yaml(name, text);
        }
    }

    /// Rules with these ids are skipped by every later `add_*` (an operator's
    /// `detection.disabled_rules`).
    pub fn disable<I: IntoIterator<Item = String>>(&mut self, ids: I) {
        self.disabled.extend(ids.into_iter().map(|id| (id, false)));
    }

    /// Disabled ids that no loaded file had (typos, rules renamed in a new release).
    pub fn disabled_unknown(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .disabled
            .iter()
            .filter(|(_, seen)| !**seen)
            .map(|(id, _)| id.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every `*.yml` / `*.yaml` file under `dir` (recursively, sorted), added to this set.
    pub fn add_dir(&mut self, dir: &Path) -> std::io::Result<usize> {
        let mut files = crate::files_under(dir)?;
        files.retain(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")));
        let before = self.rules.len();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            self.add_yaml(&f.display().to_string(), &text);
        }
        Ok(self.rules.len() - before)
    }

    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// Add the rules of one YAML file (one or more documents); what cannot load is recorded in
    /// `unsupported` with the reason.
    pub fn add_yaml(&mut self, source: &str, text: &str) {
        let collection = match parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => {
                self.unsupported.push(Unsupported {
                    source: source.to_owned(),
                    title: None,
                    reason: format!("not a Sigma rule file: {e}"),
                });
                return;
            }
        };
        for e in &collection.errors {
            self.unsupported.push(Unsupported {
                source: source.to_owned(),
                title: None,
                reason: format!("parse error: {e}"),
            });
        }
        for c in &collection.correlations {
            self.unsupported.push(Unsupported {
                source: source.to_owned(),
                title: Some(c.title.clone()),
                reason: "correlation rules are not supported (behavioural detectors cover windows and baselines)".into(),
            });
        }
        if !collection.filters.is_empty() {
            self.unsupported.push(Unsupported {
                source: source.to_owned(),
                title: None,
                reason: "filter documents are not supported".into(),
            });
        }
        for mut rule in collection.rules {
            let id = rule.id.clone().unwrap_or_else(|| {
                format!(
                    "{}#{}",
                    source,
                    rule.title.to_ascii_lowercase().replace(' ', "-")
                )
            });
            // Switched off: neither loaded nor reported (even when it could not have loaded).
            if let Some(seen) = self.disabled.get_mut(&id) {
                *seen = true;
                continue;
            }
            if let Err(reason) = check(&rule) {
                self.unsupported.push(Unsupported {
                    source: source.to_owned(),
                    title: Some(rule.title.clone()),
                    reason,
                });
                continue;
            }
            if self.by_id.contains_key(&id) {
                self.unsupported.push(Unsupported {
                    source: source.to_owned(),
                    title: Some(rule.title.clone()),
                    reason: format!("duplicate rule id {id} (the first one loaded is kept)"),
                });
                continue;
            }
            rule.id = Some(id.clone());
            let mut precise = Engine::new();
            precise.set_match_detail(MatchDetailLevel::Full);
            let errors = precise.add_rules(std::iter::once(&rule));
            if let Some((_, e)) = errors.into_iter().next() {
                self.unsupported.push(Unsupported {
                    source: source.to_owned(),
                    title: Some(rule.title.clone()),
                    reason: format!("does not compile: {e}"),
                });
                continue;
            }
            let mut fast = rule.clone();
            let mut patterns = self.patterns.clone();
            for d in fast.detection.named.values_mut() {
                rewrite_regexes(d, &mut patterns);
            }
            if !self.engine.add_rules(std::iter::once(&fast)).is_empty() {
                // The rewritten form does not compile: the rule runs as written.
                let _ = self.engine.add_rules(std::iter::once(&rule));
            } else {
                self.patterns = patterns;
            }
            self.precise.push(precise);
            let (classes, tags) = rule
                .tags
                .iter()
                .cloned()
                .partition::<Vec<_>, _>(|t| t.starts_with("tv.class."));
            self.by_id.insert(id.clone(), self.rules.len());
            self.rules.push(RuleInfo {
                id,
                title: rule.title.clone(),
                severity: match rule.level {
                    Some(Level::Informational) => Severity::Informational,
                    Some(Level::Low) => Severity::Low,
                    Some(Level::High) => Severity::High,
                    Some(Level::Critical) => Severity::Critical,
                    Some(Level::Medium) | None => Severity::Medium,
                },
                classes: classes
                    .into_iter()
                    .map(|c| c.trim_start_matches("tv.class.").to_owned())
                    .collect(),
                tags,
                source: source.to_owned(),
            });
        }
    }

    /// The patterns those indexes hold, by field: every `|re` value of a rewritten item, with
    /// its flags written inline.
    pub fn regex_patterns(&self) -> &BTreeMap<String, Vec<String>> {
        &self.patterns
    }

    /// The per-field regex indexes the rewritten rules read (built on first use).
    pub fn regexes(&self) -> &crate::regex_index::Indexes {
        self.regexes
            .get_or_init(|| crate::regex_index::Indexes::new(&self.patterns))
    }

    /// The rules that fire on one span, with redacted evidence. `view` must have been made with
    /// [`RuleSet::regexes`] (see [`SpanView::with_regexes`]).
    pub fn evaluate<'r>(&'r self, view: &SpanView<'_>) -> Vec<Hit<'r>> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        // Which rules may fire: from the rewritten rules when the view answers their regex
        // fields, else every rule.
        let candidates: Vec<usize> = if view.answers_regexes() {
            self.engine
                .evaluate(view)
                .into_iter()
                .filter_map(|r| self.by_id.get(r.header.rule_id.as_deref()?).copied())
                .collect()
        } else {
            (0..self.rules.len()).collect()
        };
        candidates
            .into_iter()
            .filter_map(|idx| {
                // The rule as written decides and gives the evidence.
                let r = self.precise[idx].evaluate(view).into_iter().next()?;
                let evidence = r
                    .as_detection()
                    .map(|d| {
                        d.matched_fields
                            .iter()
                            .map(|m| evidence_of(&m.field, m))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Hit {
                    rule: &self.rules[idx],
                    evidence,
                })
            })
            .collect()
    }
}

fn evidence_of(field: &str, m: &rsigma_eval::result::FieldMatch) -> Evidence {
    let safe = SAFE_VALUE_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(field));
    let (value, value_len) = match &m.value {
        serde_json::Value::Null => (None, None),
        serde_json::Value::String(s) if safe => (Some(s.clone()), None),
        serde_json::Value::Number(n) if safe => (Some(n.to_string()), None),
        serde_json::Value::String(s) => (None, Some(s.len())),
        other => (None, Some(other.to_string().len())),
    };
    Evidence {
        field: field.to_owned(),
        selection: m.selection.clone(),
        matcher: m
            .matcher
            .as_ref()
            .and_then(|k| serde_json::to_value(k).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        pattern: m.pattern.clone(),
        value,
        value_len,
    }
}

/// Log sources that are trace data (or web request logs whose fields map onto spans).
const TRACE_CATEGORIES: &[&str] = &[
    "proxy",
    "webserver",
    "application",
    "span",
    "trace",
    "database",
];

/// Why a parsed rule cannot run on spans, if it cannot.
fn check(rule: &SigmaRule) -> Result<(), String> {
    let ls = &rule.logsource;
    if let Some(service) = &ls.service {
        return Err(format!(
            "logsource service '{service}' is a server's own log (error log lines such as segfaults); spans carry no such lines"
        ));
    }
    if let Some(product) = &ls.product
        && !matches!(product.as_str(), "opentelemetry" | "tracevault")
    {
        return Err(format!(
            "logsource product '{product}' is not trace data (supported: opentelemetry, or none)"
        ));
    }
    if let Some(cat) = &ls.category
        && !TRACE_CATEGORIES.contains(&cat.as_str())
    {
        return Err(format!(
            "logsource category '{cat}' is not trace data (supported: {})",
            TRACE_CATEGORIES.join(", ")
        ));
    }
    if rule.custom_attributes.contains_key("rsigma.include_event") {
        return Err("rsigma.include_event would put the raw span into the finding; findings carry redacted evidence only".into());
    }
    let mut unknown = Vec::new();
    let mut costly = Vec::new();
    for d in rule.detection.named.values() {
        items(d, &mut |field, item| {
            if let Some(name) = field
                && !known_field(name)
            {
                unknown.push(name.to_owned());
            }
            if let Some(item) = item {
                costly.extend(oversized_regexes(item));
            }
        });
    }
    unknown.sort();
    unknown.dedup();
    if !unknown.is_empty() {
        return Err(format!(
            "field(s) {} have no OpenTelemetry mapping (see docs/adr/0012 for the mapped Sigma web fields)",
            unknown.join(", ")
        ));
    }
    if let Some(p) = costly.first() {
        return Err(format!(
            "regular expression {p:?} compiles to more than {} KiB and would slow every span down: Unicode classes (\\w, \\d, \\s, [^...]) under a counted repetition such as {{1,80}} are copied once per repetition; use ASCII classes ([a-z0-9_]) or (?-u:\\w)",
            REGEX_SIZE_LIMIT / 1024
        ));
    }
    Ok(())
}

/// Compiled size above which a rule's regular expression is refused. The built-in pack's largest
/// is about 350 KiB; `\w{1,80}` is 4 MiB and made the signature stage 30 times slower.
pub const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// A `|re` value as the regex it means: the flags of the item's `i`, `m` and `s` modifiers
/// written inline in front of it.
fn with_flags(modifiers: &[Modifier], pattern: &str) -> String {
    let flags: String = [
        (Modifier::IgnoreCase, 'i'),
        (Modifier::Multiline, 'm'),
        (Modifier::DotAll, 's'),
    ]
    .iter()
    .filter(|(f, _)| modifiers.contains(f))
    .map(|(_, c)| *c)
    .collect();
    if flags.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{flags}){pattern}")
    }
}

/// The `|re` values of one detection item that do not compile within [`REGEX_SIZE_LIMIT`], with
/// the flags their modifiers add.
fn oversized_regexes(item: &DetectionItem) -> Vec<String> {
    let m = &item.field.modifiers;
    if !m.contains(&Modifier::Re) {
        return Vec::new();
    }
    item.values
        .iter()
        .filter_map(|v| match v {
            SigmaValue::String(s) => Some(s.original.as_str()),
            _ => None,
        })
        .filter(|p| {
            matches!(
                regex::RegexBuilder::new(&with_flags(m, p))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build(),
                Err(regex::Error::CompiledTooBig(_))
            )
        })
        .map(str::to_owned)
        .collect()
}

/// Calls `f` with every field name in a detection (and the item it belongs to, when there is one).
fn items(d: &Detection, f: &mut dyn FnMut(Option<&str>, Option<&DetectionItem>)) {
    match d {
        Detection::AllOf(list) => {
            for i in list {
                f(i.field.name.as_deref(), Some(i));
            }
        }
        Detection::AnyOf(ds) | Detection::And(ds) => ds.iter().for_each(|d| items(d, f)),
        Detection::Keywords(_) => {}
        Detection::ArrayMatch { field, body, .. } => {
            f(Some(field), None);
            items(body, f)
        }
        Detection::Conditional { named, .. } => named.values().for_each(|d| items(d, f)),
    }
}

/// Rewrites every `field|re` item of `d` (flags `i`, `m`, `s` at most; not `all`) into an exact
/// match of its patterns' ids on the derived field `tv.re.<field>`, which the view answers from
/// one [`crate::regex_index::RegexIndex`] per field: the same truth value (an item holds when
/// any of its patterns matches any value of the field), in a few passes for all rules.
fn rewrite_regexes(d: &mut Detection, patterns: &mut BTreeMap<String, Vec<String>>) {
    match d {
        Detection::AllOf(list) => {
            for item in list {
                let m = &item.field.modifiers;
                let Some(name) = item.field.name.clone() else {
                    continue;
                };
                let only_flags = m.iter().all(|x| {
                    matches!(
                        x,
                        Modifier::Re
                            | Modifier::IgnoreCase
                            | Modifier::Multiline
                            | Modifier::DotAll
                    )
                });
                if !m.contains(&Modifier::Re) || !only_flags || item.values.is_empty() {
                    continue;
                }
                let Some(texts) = item
                    .values
                    .iter()
                    .map(|v| match v {
                        SigmaValue::String(s) => Some(with_flags(m, &s.original)),
                        _ => None,
                    })
                    .collect::<Option<Vec<String>>>()
                else {
                    continue;
                };
                if texts.iter().any(|t| regex::Regex::new(t).is_err()) {
                    continue;
                }
                let field = patterns.entry(name.clone()).or_default();
                let ids: Vec<SigmaValue> = texts
                    .into_iter()
                    .map(|t| {
                        let id = match field.iter().position(|p| *p == t) {
                            Some(i) => i,
                            None => {
                                field.push(t);
                                field.len() - 1
                            }
                        };
                        SigmaValue::String(rsigma_parser::SigmaString::from_raw(&format!("#{id}")))
                    })
                    .collect();
                item.field = rsigma_parser::FieldSpec::new(
                    Some(format!("{}{name}", crate::view::REGEX_FIELD_PREFIX)),
                    Vec::new(),
                );
                item.values = ids;
            }
        }
        Detection::AnyOf(ds) | Detection::And(ds) => {
            ds.iter_mut().for_each(|d| rewrite_regexes(d, patterns))
        }
        // Array bodies name fields relative to each element: left as written.
        Detection::Keywords(_) | Detection::ArrayMatch { .. } => {}
        Detection::Conditional { named, .. } => named
            .values_mut()
            .for_each(|d| rewrite_regexes(d, patterns)),
    }
}
