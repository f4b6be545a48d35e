//! Redaction rules: what the operator writes (TOML, [`RulesConfig`]) and what the engine runs
//! ([`Policy`], compiled and validated; a bad rule refuses to load with its position and reason).
//!
//! ```toml
//! hash_bits = 128                  # pseudonym length, 64..=256
//!
//! [[policies]]                     # first policy whose tenants and services match is used
//! name = "payments"
//! tenants = ["acme*"]              # globs with `*`; default ["*"]
//! services = ["checkout", "billing"]
//! mode = "allowlist"               # or "denylist" (the default)
//! allow_keys = ["http.*", "db.*", "rpc.*"]
//! defaults = true                  # start from the built-in safe rules (the default)
//!
//! [[policies.rules]]
//! key = "user.email"               # attribute key glob
//! action = "hash"
//!
//! [[policies.rules]]
//! detector = "credit_card"
//! action = "mask"
//! keep_last = 4
//! ```
//!
//! Precedence, for each attribute (documented in docs/redaction.md and tested in the engine):
//! 1. the strongest matching key rule wins: `drop` > `mask` > `hash` > `truncate` > `keep`, so an
//!    allow never overrides a block, whatever the order in the file;
//! 2. in allowlist mode a key no rule and no `allow_keys` glob names is dropped (fails closed);
//!    `service.name` is always allowed (tenancy and ownership depend on it);
//! 3. a key that looks like a secret (`*password*`, `*secret*`, `*token*`, `authorization`,
//!    `cookie`, `set-cookie`, ...) has its whole value masked unless a rule drops it;
//! 4. `db.statement`/`db.query.text` are SQL-scrubbed and `url.full`/`url.query`/`http.target`/
//!    `http.url` URL-scrubbed;
//! 5. every detector runs over what is left, `keep` key rules included: an allowed key still
//!    loses the card number inside its value. Secret detectors cannot be set to `keep`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::detect::Kind;

/// What happens to a value (or to a finding inside one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Leave it (key rules: allow the key in allowlist mode; detectors: switch one off).
    Keep,
    /// Keep the first `length` characters.
    Truncate,
    /// Replace with a keyed pseudonym `hmac:<hex>`.
    Hash,
    /// Replace with `[REDACTED:<what>]`, or keep the last `keep_last` characters after `****`.
    Mask,
    /// Remove the attribute (a finding in a span name or message is masked instead).
    Drop,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Keep => "keep",
            ActionKind::Truncate => "truncate",
            ActionKind::Hash => "hash",
            ActionKind::Mask => "mask",
            ActionKind::Drop => "drop",
        }
    }
}

/// An action with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub keep_last: usize,
    pub length: usize,
}

impl Action {
    pub const fn of(kind: ActionKind) -> Self {
        Action {
            kind,
            keep_last: 0,
            length: 0,
        }
    }
}

/// The mode of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Denylist,
    Allowlist,
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Attribute key glob (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Detector name (see [`Kind::name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
}

/// One policy as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default = "star")]
    pub tenants: Vec<String>,
    #[serde(default = "star")]
    pub services: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub allow_keys: Vec<String>,
    #[serde(default = "yes")]
    pub defaults: bool,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}
fn yes() -> bool {
    true
}
fn default_bits() -> u32 {
    128
}

/// The whole rules file (or the `[redaction]` table of the server config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default = "default_bits")]
    pub hash_bits: u32,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            hash_bits: default_bits(),
            policies: Vec::new(),
        }
    }
}

/// Why rules did not load. The message names the policy and rule (1-based) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError(pub String);

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RulesError {}

/// A compiled key rule.
#[derive(Debug, Clone)]
pub struct KeyRule {
    pub id: String,
    pub glob: String,
    pub action: Action,
}

/// A compiled policy: what the engine runs for one (tenant, service).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    pub allow_keys: Vec<String>,
    pub key_rules: Vec<KeyRule>,
    /// The action per detector (every detector has one).
    pub detectors: BTreeMap<Kind, Action>,
    tenants: Vec<String>,
    services: Vec<String>,
}

impl Policy {
    /// The strongest key rule matching `key`, if any.
    pub fn key_rule(&self, key: &str) -> Option<&KeyRule> {
        self.key_rule_index(key).map(|i| &self.key_rules[i])
    }

    /// The index in `key_rules` of the strongest rule matching `key`.
    pub fn key_rule_index(&self, key: &str) -> Option<usize> {
        self.key_rules
            .iter()
            .enumerate()
            .filter(|(_, r)| glob_match(&r.glob, key))
            .max_by_key(|(_, r)| r.action.kind)
            .map(|(i, _)| i)
    }

    /// Whether allowlist mode lets `key` through.
    pub fn allowed(&self, key: &str) -> bool {
        key == "service.name" || self.allow_keys.iter().any(|g| glob_match(g, key))
    }

    pub fn detector(&self, kind: Kind) -> Action {
        self.detectors
            .get(&kind)
            .copied()
            .unwrap_or(Action::of(ActionKind::Mask))
    }
}

/// The rules of a deployment, compiled: pick a [`Policy`] per (tenant, service).
#[derive(Debug, Clone)]
pub struct Rules {
    pub hash_bits: u32,
    policies: Vec<Policy>,
    fallback: Policy,
    digest: [u8; 32],
}

impl Rules {
    /// The built-in safe rules alone (what runs with no configuration).
    pub fn builtin() -> Self {
        Rules::compile(&RulesConfig::default()).expect("built-in rules compile")
    }

    /// Parses and compiles a TOML rules file.
    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let cfg: RulesConfig =
            toml::from_str(text).map_err(|e| RulesError(format!("rules: {e}")))?;
        Rules::compile(&cfg)
    }

    /// Compiles a parsed configuration, checking every rule.
    pub fn compile(cfg: &RulesConfig) -> Result<Self, RulesError> {
        if !(64..=256).contains(&cfg.hash_bits) || !cfg.hash_bits.is_multiple_of(8) {
            return Err(RulesError(format!(
                "hash_bits = {}: must be a multiple of 8 from 64 to 256 (shorter pseudonyms collide and can be brute-forced)",
                cfg.hash_bits
            )));
        }
        let mut policies = Vec::new();
        for (i, p) in cfg.policies.iter().enumerate() {
            policies.push(compile_policy(p, i + 1)?);
        }
        let fallback = compile_policy(
            &PolicyConfig {
                name: "builtin".into(),
                tenants: star(),
                services: star(),
                mode: Mode::Denylist,
                allow_keys: vec![],
                defaults: true,
                rules: vec![],
            },
            0,
        )?;
        // The digest commits to the compiled meaning (engine version + normalized rules), so the
        // log can say which rules a record was redacted under.
        let canon = serde_json::json!({
            "engine": crate::ENGINE_VERSION,
            "hash_bits": cfg.hash_bits,
            "policies": cfg.policies,
        });
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            serde_json::to_vec(&canon).expect("json").as_slice(),
        );
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.as_ref());
        Ok(Rules {
            hash_bits: cfg.hash_bits,
            policies,
            fallback,
            digest: d,
        })
    }

    /// Every policy a span may fall under: the configured ones, then the built-in fallback.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().chain(std::iter::once(&self.fallback))
    }

    /// The attribute keys whose whole values `tenant`'s policies turn into pseudonyms (`hash`
    /// key rules without wildcards: `enduser.id`, `user.email`, ...), sorted: where a person's
    /// identity is found again by its pseudonym.
    pub fn identity_keys(&self, tenant: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .policies()
            .filter(|p| {
                p.tenants.iter().any(|g| glob_match(g, tenant)) || std::ptr::eq(*p, &self.fallback)
            })
            .flat_map(|p| p.key_rules.iter())
            .filter(|r| r.action.kind == ActionKind::Hash && !r.glob.contains(['*', '?', '[']))
            .map(|r| r.glob.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The policy for a tenant's service: the first whose globs match, else the built-in one.
    pub fn policy_for(&self, tenant: &str, service: Option<&str>) -> &Policy {
        self.policy_index_for(tenant, service).1
    }

    /// [`Rules::policy_for`] with the policy's position (the fallback's is the number of
    /// policies): which of these rules' policies it is.
    pub fn policy_index_for(&self, tenant: &str, service: Option<&str>) -> (usize, &Policy) {
        let service = service.unwrap_or("");
        self.policies
            .iter()
            .enumerate()
            .find(|(_, p)| {
                p.tenants.iter().any(|g| glob_match(g, tenant))
                    && p.services.iter().any(|g| glob_match(g, service))
            })
            .unwrap_or((self.policies.len(), &self.fallback))
    }

    /// SHA-256 over the engine version and the normalized rules: the policy version recorded in
    /// the transparency log.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Short printable version (first 8 bytes of the digest, hex).
    pub fn version(&self) -> String {
        self.digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The built-in rules a policy starts from (`defaults = true`).
fn builtin_rules() -> (Vec<KeyRule>, BTreeMap<Kind, Action>) {
    let key = |glob: &str, kind| KeyRule {
        id: format!("builtin:key:{glob}"),
        glob: glob.into(),
        action: Action::of(kind),
    };
    let keys = vec![
        key("http.request.header.authorization", ActionKind::Drop),
        key("http.request.header.proxy-authorization", ActionKind::Drop),
        key("http.request.header.cookie", ActionKind::Drop),
        key("http.response.header.set-cookie", ActionKind::Drop),
        key("enduser.id", ActionKind::Hash),
        key("user.id", ActionKind::Hash),
        key("user.email", ActionKind::Hash),
        key("user.name", ActionKind::Hash),
        key("user.full_name", ActionKind::Hash),
    ];
    let mut det = BTreeMap::new();
    for k in Kind::ALL {
        let a = match k {
            Kind::Email | Kind::IpAddress => Action::of(ActionKind::Hash),
            Kind::CreditCard => Action {
                kind: ActionKind::Mask,
                keep_last: 4,
                length: 0,
            },
            _ => Action::of(ActionKind::Mask),
        };
        det.insert(k, a);
    }
    (keys, det)
}

fn compile_policy(p: &PolicyConfig, index: usize) -> Result<Policy, RulesError> {
    let name = if p.name.is_empty() {
        format!("policy {index}")
    } else {
        p.name.clone()
    };
    let (mut key_rules, mut detectors) = if p.defaults {
        builtin_rules()
    } else {
        // Without the defaults every detector still masks: a policy cannot forget one.
        let (_, d) = builtin_rules();
        (
            Vec::new(),
            d.into_keys()
                .map(|k| (k, Action::of(ActionKind::Mask)))
                .collect(),
        )
    };
    for (j, r) in p.rules.iter().enumerate() {
        let at = format!("policy {name:?}, rule {}", j + 1);
        if r.keep_last.is_some() && r.action != ActionKind::Mask {
            return Err(RulesError(format!(
                "{at}: keep_last only applies to action = \"mask\""
            )));
        }
        if r.action == ActionKind::Truncate && r.length.is_none_or(|l| l == 0) {
            return Err(RulesError(format!(
                "{at}: action = \"truncate\" needs length = N (N >= 1)"
            )));
        }
        if r.length.is_some() && r.action != ActionKind::Truncate {
            return Err(RulesError(format!(
                "{at}: length only applies to action = \"truncate\""
            )));
        }
        let action = Action {
            kind: r.action,
            keep_last: r.keep_last.unwrap_or(0),
            length: r.length.unwrap_or(0),
        };
        if action.keep_last > 8 {
            return Err(RulesError(format!(
                "{at}: keep_last = {} (at most 8)",
                action.keep_last
            )));
        }
        match (&r.key, &r.detector) {
            (Some(k), None) => {
                if k.is_empty() {
                    return Err(RulesError(format!("{at}: key is empty")));
                }
                key_rules.push(KeyRule {
                    id: format!("{name}:key:{k}"),
                    glob: k.clone(),
                    action,
                });
            }
            (None, Some(d)) => {
                let kind = Kind::from_name(d).ok_or_else(|| {
                    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    RulesError(format!(
                        "{at}: unknown detector {d:?} (known: {})",
                        names.join(", ")
                    ))
                })?;
                if kind.is_secret()
                    && matches!(action.kind, ActionKind::Keep | ActionKind::Truncate)
                {
                    return Err(RulesError(format!(
                        "{at}: detector {d:?} finds secrets and cannot be set to {:?}; secrets are always removed",
                        action.kind.name()
                    )));
                }
                if kind.is_secret() && action.keep_last > 0 {
                    return Err(RulesError(format!(
                        "{at}: detector {d:?} finds secrets; keep_last would leak part of one"
                    )));
                }
                detectors.insert(kind, action);
            }
            _ => {
                return Err(RulesError(format!(
                    "{at}: a rule names exactly one of key = \"...\" or detector = \"...\""
                )));
            }
        }
    }
    for g in p.tenants.iter().chain(&p.services).chain(&p.allow_keys) {
        if g.is_empty() {
            return Err(RulesError(format!(
                "policy {name:?}: empty glob in tenants/services/allow_keys"
            )));
        }
    }
    Ok(Policy {
        name,
        mode: p.mode,
        allow_keys: p.allow_keys.clone(),
        key_rules,
        detectors,
        tenants: p.tenants.clone(),
        services: p.services.clone(),
    })
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_match(glob: &str, s: &str) -> bool {
    let (g, t) = (glob.as_bytes(), s.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some(gi);
            mark = ti;
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if let Some(st) = star {
            gi = st + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == b'*' {
        gi += 1;
    }
    gi == g.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("http.*", "http.request.method"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*.id", "user.id"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("http.*", "https.x"));
        assert!(!glob_match("user.id", "user.ids"));
    }

    #[test]
    fn bad_rules_are_refused_with_position_and_reason() {
        for (toml, want) in [
            ("hash_bits = 32", "hash_bits = 32"),
            (
                "[[policies]]\nname='p'\n[[policies.rules]]\ndetector='jwt'\naction='keep'",
                "policy \"p\", rule 1: detector \"jwt\" finds secrets",
            ),
            (
                "[[policies]]\n[[policies.rules]]\ndetector='nope'\naction='mask'",
                "unknown detector \"nope\"",
            ),
            (
                "[[policies]]\n[[policies.rules]]\nkey='a'\ndetector='email'\naction='mask'",
                "exactly one of",
            ),
            (
                "[[policies]]\n[[policies.rules]]\nkey='a'\naction='truncate'",
                "needs length",
            ),
            ("[[policies]]\nmode='maybe'", "unknown variant"),
        ] {
            let e = Rules::from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }

    #[test]
    fn strongest_key_rule_wins_whatever_the_order() {
        let r = Rules::from_toml(
            "[[policies]]\n[[policies.rules]]\nkey='user.*'\naction='keep'\n[[policies.rules]]\nkey='user.ssn'\naction='drop'",
        )
        .unwrap();
        let p = r.policy_for("t", Some("s"));
        assert_eq!(
            p.key_rule("user.ssn").unwrap().action.kind,
            ActionKind::Drop
        );
        assert_eq!(
            p.key_rule("user.plan").unwrap().action.kind,
            ActionKind::Keep
        );
    }

    #[test]
    fn policies_are_chosen_by_tenant_and_service_and_change_the_digest() {
        let text =
            "[[policies]]\nname='pay'\ntenants=['acme']\nservices=['checkout']\nmode='allowlist'\n";
        let r = Rules::from_toml(text).unwrap();
        assert_eq!(r.policy_for("acme", Some("checkout")).name, "pay");
        assert_eq!(r.policy_for("acme", Some("search")).name, "builtin");
        assert_eq!(r.policy_for("other", Some("checkout")).name, "builtin");
        assert_ne!(r.digest(), Rules::builtin().digest());
        assert_eq!(r.digest(), Rules::from_toml(text).unwrap().digest());
    }
}
