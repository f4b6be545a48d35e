//! Authorization with Cedar (`cedar-policy`): one schema, default policies shipped in the binary,
//! operator policy files validated against the schema, and a decision cache.
//!
//! Every request's question is *may this principal do this action on this tenant* (and, for
//! ingest, *for these services*). The principal is an entity `Tracevault::Principal` in its
//! `Tracevault::Role`, with the tenants and services its credential is bound to; the resource is
//! the `Tracevault::Tenant` the request acts for. Principals are named by credential
//! (`Tracevault::Principal::"token:<id>"`), with the token's name as the `name` attribute. Cedar's semantics apply: anything not
//! permitted is denied, and a `forbid` beats every `permit`, so operator files can only add
//! permissions or take them away explicitly.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};

use crate::{Principal, Role, TenantScope};
use tv_model::TenantId;

/// The schema policies are written against.
pub const SCHEMA: &str = r#"
namespace Tracevault {
  entity Role;
  entity Tenant;
  entity FieldClass;
  entity Principal in [Role] = {
    "name": String,
    "all_tenants": Bool,
    "tenants": Set<Tenant>,
    "services": Set<String>,
  };
  action ingest appliesTo {
    principal: [Principal],
    resource: [Tenant],
    context: { "services": Set<String> }
  };
  action read_field_class, reveal appliesTo {
    principal: [Principal],
    resource: [FieldClass],
    context: { "tenant": Tenant }
  };
  action read_trace, search, read_receipt, read_log, read_metrics, flush, admin_tokens,
         admin_certs, admin_keys, read_audit, read_findings, ui_login, lookup_person, doctor appliesTo {
    principal: [Principal],
    resource: [Tenant],
    context: {}
  };
}
"#;

/// The policies every deployment starts with (roles out of the box).
pub const DEFAULT_POLICIES: &str = r#"
// Tenant isolation: nothing for a tenant the credential is not bound to, whatever permits it
// (operator files included).
@id("tenant-scope")
forbid (principal, action, resource is Tracevault::Tenant)
unless { principal.all_tenants || principal.tenants.contains(resource) };

@id("tenant-scope-fields")
forbid (
  principal,
  action in [Tracevault::Action::"read_field_class", Tracevault::Action::"reveal"],
  resource
)
unless { principal.all_tenants || principal.tenants.contains(context.tenant) };

// /metrics is server-wide (every tenant's volume, the operator's redaction rule names): only a
// credential of every tenant reads it, so a tenant's scraper token cannot see the others'.
@id("metrics-server-wide")
forbid (principal, action == Tracevault::Action::"read_metrics", resource)
unless { principal.all_tenants };

// A credential bound to services writes only those services' spans, whatever else allows it.
@id("owned-services")
forbid (principal, action == Tracevault::Action::"ingest", resource)
unless { principal.services.isEmpty() || principal.services.containsAll(context.services) };

// An admin may do anything.
@id("admin")
permit (principal in Tracevault::Role::"admin", action, resource is Tracevault::Tenant);

// Ingest credentials write spans, nothing else.
@id("ingest")
permit (
  principal in Tracevault::Role::"ingest",
  action == Tracevault::Action::"ingest",
  resource is Tracevault::Tenant
);

// Readers and investigators read traces, search, and take receipts.
@id("readers")
permit (
  principal,
  action in [
    Tracevault::Action::"read_trace",
    Tracevault::Action::"search",
    Tracevault::Action::"read_receipt"
  ],
  resource is Tracevault::Tenant
)
when { principal in Tracevault::Role::"reader" || principal in Tracevault::Role::"investigator" };

// Admins and investigators see restricted field classes (pii, pseudonym, ...); everyone else
// sees `[restricted:<class>]`.
@id("field-classes")
permit (principal, action == Tracevault::Action::"read_field_class", resource is Tracevault::FieldClass)
when { principal in Tracevault::Role::"admin" || principal in Tracevault::Role::"investigator" };

// Receipts are signed and leave the system: revealing a restricted class in one is its own
// decision (operators can forbid it while still letting investigators look).
@id("reveal")
permit (principal, action == Tracevault::Action::"reveal", resource is Tracevault::FieldClass)
when { principal in Tracevault::Role::"admin" || principal in Tracevault::Role::"investigator" };

// Investigators read threat-detection findings (admins may anyway).
@id("findings")
permit (principal, action == Tracevault::Action::"read_findings", resource is Tracevault::Tenant)
when { principal in Tracevault::Role::"investigator" };

// Investigators find a person's traces by a known identity value (an email, a user id): the
// lookup turns a guessed value into its pseudonym, an oracle, so readers do not get it (admins
// may anyway); every use is rate-limited and audited.
@id("person-lookup")
permit (principal, action == Tracevault::Action::"lookup_person", resource is Tracevault::Tenant)
when { principal in Tracevault::Role::"investigator" };

// The log's checkpoints and proofs commit to every tenant and name none.
@id("log")
permit (principal, action == Tracevault::Action::"read_log", resource is Tracevault::Tenant);

// People sign in to the web UI (and mint single-use login links for themselves); ingest and
// metrics credentials belong to programs and do not.
@id("ui")
permit (principal, action == Tracevault::Action::"ui_login", resource is Tracevault::Tenant)
when {
  principal in Tracevault::Role::"reader" ||
  principal in Tracevault::Role::"investigator" ||
  principal in Tracevault::Role::"auditor"
};

// Prometheus scrapers.
@id("metrics")
permit (
  principal in Tracevault::Role::"metrics",
  action == Tracevault::Action::"read_metrics",
  resource is Tracevault::Tenant
);

// Auditors read the audit log only.
@id("auditor")
permit (
  principal in Tracevault::Role::"auditor",
  action == Tracevault::Action::"read_audit",
  resource is Tracevault::Tenant
);
"#;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Ingest,
    ReadTrace,
    Search,
    ReadReceipt,
    ReadLog,
    ReadMetrics,
    Flush,
    AdminTokens,
    /// Issue, register and revoke workload (mTLS) identities.
    AdminCerts,
    AdminKeys,
    ReadAudit,
    ReadFindings,
    /// Resource: a field class (see [`PolicyEngine::may_read_class`]).
    ReadFieldClass,
    /// Reveal a restricted field class in a receipt. Resource: a field class.
    Reveal,
    /// Sign in to the web UI, or mint a single-use login link.
    UiLogin,
    /// Turn a known identity value into its pseudonym, or search a person's traces by it.
    LookupPerson,
    /// Grade the deployment (`GET /api/doctor`); only the built-in admin policy permits it.
    Doctor,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Ingest => "ingest",
            Action::ReadTrace => "read_trace",
            Action::Search => "search",
            Action::ReadReceipt => "read_receipt",
            Action::ReadLog => "read_log",
            Action::ReadMetrics => "read_metrics",
            Action::Flush => "flush",
            Action::AdminTokens => "admin_tokens",
            Action::AdminCerts => "admin_certs",
            Action::AdminKeys => "admin_keys",
            Action::ReadAudit => "read_audit",
            Action::ReadFindings => "read_findings",
            Action::ReadFieldClass => "read_field_class",
            Action::Reveal => "reveal",
            Action::UiLogin => "ui_login",
            Action::LookupPerson => "lookup_person",
            Action::Doctor => "doctor",
        }
    }
}

/// A policy file that did not load: which file, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {reason}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// An authorization decision with the policies that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Ids of the determining policies (`owned-services`, `readers`, or an operator's).
    pub reasons: Vec<String>,
}

/// Built-in policies whose refusal a caller answers in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltIn {
    /// `owned-services`: a credential bound to services writes only those services' spans.
    OwnedServices,
}

impl BuiltIn {
    /// The policy's id in a [`Verdict`]'s reasons (`built-in:` and its `@id` in
    /// [`DEFAULT_POLICIES`]).
    pub fn policy_id(self) -> &'static str {
        match self {
            BuiltIn::OwnedServices => "built-in:owned-services",
        }
    }
}

impl Verdict {
    /// Whether built-in policy `p` is among the policies that decided.
    pub fn decided_by(&self, p: BuiltIn) -> bool {
        self.reasons.iter().any(|r| r == p.policy_id())
    }
}

type CacheKey = (
    String,
    Role,
    Vec<String>,
    Vec<String>,
    Action,
    String,
    Vec<String>,
);

/// Compiled policies, the schema, and the decision cache.
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    authorizer: Authorizer,
    cache: Mutex<HashMap<CacheKey, Verdict>>,
    /// How many policies came from operator files.
    pub operator_policies: usize,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PolicyEngine({} operator policies)",
            self.operator_policies
        )
    }
}

const CACHE_MAX: usize = 65_536;

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The first labeled location of a diagnostic, as (line, column) in `text`.
fn located(text: &str, d: &dyn miette::Diagnostic) -> (usize, usize) {
    d.labels()
        .and_then(|mut l| l.next())
        .map(|l| line_col(text, l.offset()))
        .or_else(|| {
            d.related()
                .and_then(|mut r| r.next())
                .and_then(|r| r.labels().and_then(|mut l| l.next()))
                .map(|l| line_col(text, l.offset()))
        })
        .unwrap_or((1, 1))
}

impl PolicyEngine {
    /// The defaults plus operator files `(name, text)`, each parsed and validated against the
    /// schema (strict mode).
    pub fn new(files: &[(String, String)]) -> Result<Self, PolicyError> {
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA).expect("built-in schema parses");
        let validator = Validator::new(schema.clone());
        let mut all = PolicySet::new();
        let mut operator = 0;
        let sources = std::iter::once(("built-in".to_string(), DEFAULT_POLICIES.to_string()))
            .chain(files.iter().cloned());
        for (name, text) in sources {
            let set = PolicySet::from_str(&text).map_err(|e| {
                let (line, column) = located(&text, &e);
                PolicyError {
                    file: name.clone(),
                    line,
                    column,
                    reason: e.to_string(),
                }
            })?;
            let result = validator.validate(&set, ValidationMode::Strict);
            if let Some(e) = result.validation_errors().next() {
                let (line, column) = located(&text, e);
                return Err(PolicyError {
                    file: name.clone(),
                    line,
                    column,
                    reason: e.to_string(),
                });
            }
            for (i, p) in set.policies().enumerate() {
                let id = match p.annotation("id") {
                    Some(id) => format!("{name}:{id}"),
                    None => format!("{name}:{i}"),
                };
                all.add(p.new_id(PolicyId::new(&id)))
                    .map_err(|e| PolicyError {
                        file: name.clone(),
                        line: 1,
                        column: 1,
                        reason: e.to_string(),
                    })?;
                if name != "built-in" {
                    operator += 1;
                }
            }
        }
        Ok(PolicyEngine {
            schema,
            policies: all,
            authorizer: Authorizer::new(),
            cache: Mutex::new(HashMap::new()),
            operator_policies: operator,
        })
    }

    /// Decides, using the cache; `services` are the batch's service names (ingest only).
    pub fn authorize(
        &self,
        p: &Principal,
        action: Action,
        tenant: &TenantId,
        services: &[&str],
    ) -> Verdict {
        let mut svc: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        svc.sort();
        svc.dedup();
        let tenants = match &p.tenants {
            TenantScope::All => vec!["*".to_string()],
            TenantScope::Only(l) => l.iter().map(|t| t.to_string()).collect(),
        };
        let key: CacheKey = (
            p.id(),
            p.role,
            tenants,
            p.services.clone(),
            action,
            tenant.to_string(),
            svc.clone(),
        );
        if let Some(v) = self.cache.lock().expect("cache lock").get(&key) {
            return v.clone();
        }
        let v = self.decide(p, action, tenant, &svc);
        let mut c = self.cache.lock().expect("cache lock");
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(key, v.clone());
        v
    }

    /// Whether `p` may see values of field class `class` in `tenant`'s data.
    pub fn may_read_class(&self, p: &Principal, tenant: &TenantId, class: &str) -> bool {
        self.authorize(p, Action::ReadFieldClass, tenant, &[class])
            .allowed
    }

    /// Whether `p` may reveal values of field class `class` in a receipt (and see them).
    pub fn may_reveal_class(&self, p: &Principal, tenant: &TenantId, class: &str) -> bool {
        self.may_read_class(p, tenant, class)
            && self.authorize(p, Action::Reveal, tenant, &[class]).allowed
    }

    /// Decides without the cache (for measurements and for callers that must not cache).
    pub fn decide(
        &self,
        p: &Principal,
        action: Action,
        tenant: &TenantId,
        services: &[String],
    ) -> Verdict {
        let deny = |why: String| Verdict {
            allowed: false,
            reasons: vec![why],
        };
        let uid = |ty: &str, id: &str| {
            EntityUid::from_type_name_and_id(
                EntityTypeName::from_str(ty).expect("entity type"),
                EntityId::new(id),
            )
        };
        let role_uid = uid("Tracevault::Role", p.role.name());
        let tenant_uid = uid("Tracevault::Tenant", tenant.as_str());
        let principal_uid = uid("Tracevault::Principal", &p.id());
        let (all, tenant_list) = match &p.tenants {
            TenantScope::All => (true, Vec::new()),
            TenantScope::Only(l) => (false, l.clone()),
        };
        let mut attrs = HashMap::new();
        attrs.insert(
            "name".to_string(),
            RestrictedExpression::new_string(p.name.clone()),
        );
        attrs.insert(
            "all_tenants".to_string(),
            RestrictedExpression::new_bool(all),
        );
        attrs.insert(
            "tenants".to_string(),
            RestrictedExpression::new_set(tenant_list.iter().map(|t| {
                RestrictedExpression::new_entity_uid(uid("Tracevault::Tenant", t.as_str()))
            })),
        );
        attrs.insert(
            "services".to_string(),
            RestrictedExpression::new_set(
                p.services
                    .iter()
                    .map(|s| RestrictedExpression::new_string(s.clone())),
            ),
        );
        let principal = match Entity::new(
            principal_uid.clone(),
            attrs,
            HashSet::from([role_uid.clone()]),
        ) {
            Ok(e) => e,
            Err(e) => return deny(format!("principal: {e}")),
        };
        let mut entities = vec![
            principal,
            Entity::new_no_attrs(role_uid, HashSet::new()),
            Entity::new_no_attrs(tenant_uid.clone(), HashSet::new()),
        ];
        for t in &tenant_list {
            if t != tenant {
                entities.push(Entity::new_no_attrs(
                    uid("Tracevault::Tenant", t.as_str()),
                    HashSet::new(),
                ));
            }
        }
        let on_class = matches!(action, Action::ReadFieldClass | Action::Reveal);
        let class_uid = services
            .first()
            .filter(|_| on_class)
            .map(|c| uid("Tracevault::FieldClass", c));
        if let Some(c) = &class_uid {
            entities.push(Entity::new_no_attrs(c.clone(), HashSet::new()));
        }
        let context = if on_class {
            Context::from_pairs([(
                "tenant".to_string(),
                RestrictedExpression::new_entity_uid(tenant_uid.clone()),
            )])
        } else if action == Action::Ingest {
            Context::from_pairs([(
                "services".to_string(),
                RestrictedExpression::new_set(
                    services
                        .iter()
                        .map(|s| RestrictedExpression::new_string(s.clone())),
                ),
            )])
        } else {
            Ok(Context::empty())
        };
        let context = match context {
            Ok(c) => c,
            Err(e) => return deny(format!("context: {e}")),
        };
        let entities = match Entities::from_entities(entities, Some(&self.schema)) {
            Ok(e) => e,
            Err(e) => return deny(format!("entities: {e}")),
        };
        let resource = class_uid.unwrap_or(tenant_uid);
        let request = match Request::new(
            principal_uid,
            uid("Tracevault::Action", action.name()),
            resource,
            context,
            Some(&self.schema),
        ) {
            Ok(r) => r,
            Err(e) => return deny(format!("request: {e}")),
        };
        let resp = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        let reasons: Vec<String> = resp
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        Verdict {
            allowed: resp.decision() == Decision::Allow,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Credential;

    fn principal(role: Role, tenants: &[&str], services: &[&str]) -> Principal {
        Principal {
            name: format!("{}-1", role.name()),
            credential: Credential::ApiToken { id: "x".into() },
            role,
            tenants: if tenants.is_empty() {
                TenantScope::All
            } else {
                TenantScope::Only(
                    tenants
                        .iter()
                        .map(|t| TenantId::parse(t).unwrap())
                        .collect(),
                )
            },
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn defaults_give_each_role_its_actions_within_its_tenants() {
        let e = PolicyEngine::new(&[]).unwrap();
        let all = [
            Action::Ingest,
            Action::ReadTrace,
            Action::Search,
            Action::ReadReceipt,
            Action::ReadLog,
            Action::ReadMetrics,
            Action::Flush,
            Action::AdminTokens,
            Action::ReadAudit,
            Action::UiLogin,
        ];
        let admin_of_tenant: Vec<Action> = all
            .iter()
            .copied()
            .filter(|a| *a != Action::ReadMetrics)
            .collect();
        let allowed: &[(Role, &[Action])] = &[
            (Role::Admin, &admin_of_tenant),
            (Role::Ingest, &[Action::Ingest, Action::ReadLog]),
            (
                Role::Reader,
                &[
                    Action::ReadTrace,
                    Action::Search,
                    Action::ReadReceipt,
                    Action::ReadLog,
                    Action::UiLogin,
                ],
            ),
            (
                Role::Investigator,
                &[
                    Action::ReadTrace,
                    Action::Search,
                    Action::ReadReceipt,
                    Action::ReadLog,
                    Action::UiLogin,
                ],
            ),
            (
                Role::Auditor,
                &[Action::ReadAudit, Action::ReadLog, Action::UiLogin],
            ),
            // /metrics is server-wide: not for credentials bound to tenants.
            (Role::Metrics, &[Action::ReadLog]),
        ];
        for (role, ok) in allowed {
            let p = principal(*role, &["acme"], &[]);
            for a in all {
                let v = e.authorize(&p, a, &t("acme"), &["checkout"]);
                assert_eq!(
                    v.allowed,
                    ok.contains(&a),
                    "{role:?} {a:?} own tenant: {v:?}"
                );
                let v = e.authorize(&p, a, &t("globex"), &["checkout"]);
                assert!(!v.allowed, "{role:?} {a:?} other tenant");
            }
        }
        // The bootstrap admin (every tenant) may act anywhere.
        let boot = principal(Role::Admin, &[], &[]);
        assert!(
            e.authorize(&boot, Action::Search, &t("anything"), &[])
                .allowed
        );
        // A scraper of every tenant reads /metrics, and nothing else.
        let scraper = principal(Role::Metrics, &[], &[]);
        let v = e.authorize(&scraper, Action::ReadMetrics, &t("default"), &[]);
        assert!(v.allowed, "{v:?}");
        assert!(
            !e.authorize(&scraper, Action::Search, &t("default"), &[])
                .allowed
        );
        let v = e.authorize(
            &principal(Role::Metrics, &["acme"], &[]),
            Action::ReadMetrics,
            &t("acme"),
            &[],
        );
        assert_eq!(v.reasons, vec!["built-in:metrics-server-wide".to_string()]);
    }

    #[test]
    fn restricted_field_classes_are_for_admins_and_investigators_of_the_tenant() {
        let e = PolicyEngine::new(&[]).unwrap();
        for (role, ok) in [
            (Role::Admin, true),
            (Role::Investigator, true),
            (Role::Reader, false),
            (Role::Ingest, false),
        ] {
            let p = principal(role, &["acme"], &[]);
            assert_eq!(e.may_read_class(&p, &t("acme"), "pii"), ok, "{role:?}");
            assert!(
                !e.may_read_class(&p, &t("globex"), "pii"),
                "{role:?} other tenant"
            );
        }
    }

    #[test]
    fn service_bound_credentials_write_only_their_services() {
        let e = PolicyEngine::new(&[]).unwrap();
        let p = principal(Role::Ingest, &["acme"], &["checkout", "cart"]);
        assert!(
            e.authorize(&p, Action::Ingest, &t("acme"), &["checkout"])
                .allowed
        );
        assert!(
            e.authorize(&p, Action::Ingest, &t("acme"), &["cart", "checkout"])
                .allowed
        );
        let v = e.authorize(&p, Action::Ingest, &t("acme"), &["checkout", "payments"]);
        assert!(!v.allowed);
        assert_eq!(v.reasons, vec!["built-in:owned-services".to_string()]);
        assert!(v.decided_by(BuiltIn::OwnedServices));
        // Even an admin bound to services.
        let a = principal(Role::Admin, &["acme"], &["checkout"]);
        assert!(
            !e.authorize(&a, Action::Ingest, &t("acme"), &["payments"])
                .allowed
        );
    }

    #[test]
    fn operator_policies_add_and_remove_permissions() {
        let files = vec![(
            "ops.cedar".to_string(),
            r#"
            // Nobody searches the legal-hold tenant.
            @id("legal-hold")
            forbid (principal, action == Tracevault::Action::"search", resource == Tracevault::Tenant::"legal");
            // Auditors may also read receipts.
            permit (principal in Tracevault::Role::"auditor", action == Tracevault::Action::"read_receipt", resource is Tracevault::Tenant)
            when { principal.tenants.contains(resource) };
            "#
            .to_string(),
        )];
        let e = PolicyEngine::new(&files).unwrap();
        assert_eq!(e.operator_policies, 2);
        let admin = principal(Role::Admin, &[], &[]);
        let v = e.authorize(&admin, Action::Search, &t("legal"), &[]);
        assert!(!v.allowed);
        assert_eq!(v.reasons, vec!["ops.cedar:legal-hold".to_string()]);
        let aud = principal(Role::Auditor, &["acme"], &[]);
        assert!(
            e.authorize(&aud, Action::ReadReceipt, &t("acme"), &[])
                .allowed
        );
    }

    #[test]
    fn bad_policy_files_are_refused_with_file_line_and_reason() {
        let cases = [
            // Syntax error on line 3.
            (
                "a.cedar",
                "// ok\npermit (principal, action, resource);\npermit (principal action, resource);\n",
                3,
                "unexpected token",
            ),
            // Unknown attribute: fails schema validation, located on line 2.
            (
                "b.cedar",
                "\npermit (principal, action == Tracevault::Action::\"search\", resource) when { principal.department == \"x\" };\n",
                2,
                "department",
            ),
            // Unknown action.
            (
                "c.cedar",
                "permit (principal, action == Tracevault::Action::\"delete_all\", resource);\n",
                1,
                "delete_all",
            ),
        ];
        for (file, text, line, reason) in cases {
            let e = PolicyEngine::new(&[(file.to_string(), text.to_string())]).unwrap_err();
            assert_eq!(e.file, file);
            assert_eq!(e.line, line, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
    }
}
