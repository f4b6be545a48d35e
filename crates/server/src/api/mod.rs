//! The HTTP API: one folder per API family, and one route table ([`routes`]) that names each
//! route's handler, the Cedar action that authorizes it and whether its allowed requests are
//! audited. Handlers never name an action: they authorize through the [`Permit`] the table gave
//! their request.
//!
//! Families: [`tempo`] (Grafana Tempo's HTTP API: trace by id v1/v2, search, tags, tag values,
//! echo), [`traceql`] (search with `q=`, v2 tags and tag values), [`metrics`] (TraceQL
//! metrics), [`jaeger`] (the Jaeger query API under `/jaeger`), [`findings`], [`audit`] (the audit log), [`log`] (the transparency log's proofs,
//! receipts and tiles), [`admin`] (tokens, workload certificates, keys, responses, flush) and
//! [`ops`] (`/ready`, `/metrics`).
//!
//! The OpenAPI 3.1 document of every route (`openapi.json` beside this file, served at
//! `/api/openapi.json`) names each route's methods and Cedar action; a test keeps it and the
//! table in step.
//!
//! Ids in JSON are lowercase hex as OTLP/JSON specifies (Tempo's own JSON uses base64 for span
//! ids; see docs/operators-guide.md).

pub mod admin;
pub mod audit;
pub mod findings;
pub mod jaeger;
pub mod log;
pub mod metrics;
pub mod ops;
pub mod person;
pub mod tempo;
pub mod traceql;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Router};
use http::request::Parts;
use tv_access::Action;

use crate::AppState;
use crate::audit::AuditNote;
use crate::auth::{Authorized, Caller, authenticate_api};
use crate::error::ApiError;
use crate::metrics::EndpointLabels;

/// How a route's caller is established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// A token or client certificate, checked (with the rate limit and the query slots) before
    /// the handler runs; the request gets a [`Permit`] and its record in the audit log.
    Credential,
    /// The handler authenticates itself (the log's tiles, public when the operator makes the
    /// log public); it finds the route's action in a [`RouteAction`] extension.
    Handler,
    /// Anyone (readiness).
    Open,
}

/// A route's handlers and the methods they answer.
pub struct Handlers {
    pub router: MethodRouter<Arc<AppState>>,
    pub methods: Vec<http::Method>,
}

fn get<H: Handler<T, Arc<AppState>>, T: 'static>(h: H) -> Handlers {
    Handlers {
        router: axum::routing::get(h),
        methods: vec![http::Method::GET],
    }
}

fn post<H: Handler<T, Arc<AppState>>, T: 'static>(h: H) -> Handlers {
    Handlers {
        router: axum::routing::post(h),
        methods: vec![http::Method::POST],
    }
}

fn delete<H: Handler<T, Arc<AppState>>, T: 'static>(h: H) -> Handlers {
    Handlers {
        router: axum::routing::delete(h),
        methods: vec![http::Method::DELETE],
    }
}

impl Handlers {
    fn post<H: Handler<T, Arc<AppState>>, T: 'static>(mut self, h: H) -> Self {
        self.router = self.router.post(h);
        self.methods.push(http::Method::POST);
        self
    }
}

/// The OpenAPI document of the routes below (and of the OTLP/HTTP receiver).
pub const OPENAPI: &str = include_str!("openapi.json");

/// One row of the route table.
pub struct Route {
    pub path: &'static str,
    pub handler: Handlers,
    /// The Cedar action the handler authorizes with, also the audit record's action; `None`:
    /// any authenticated caller (`/api/echo`).
    pub action: Option<Action>,
    /// Whether allowed requests are audited (scrapes of `/metrics` and reads of the log's
    /// public proofs are not; their refusals are).
    pub audited: bool,
    pub guard: Guard,
}

fn route(path: &'static str, handler: Handlers, action: Option<Action>, audited: bool) -> Route {
    Route {
        path,
        handler,
        action,
        audited,
        guard: Guard::Credential,
    }
}

/// Every route of the HTTP API (the OTLP receivers are in [`crate::ingest`]).
pub fn routes() -> Vec<Route> {
    use Action::*;
    let a = Some;
    vec![
        // Tempo
        route("/api/echo", get(|| async { "echo" }), None, true),
        route("/api/traces/{id}", get(tempo::trace_v1), a(ReadTrace), true),
        route(
            "/api/v2/traces/{id}",
            get(tempo::trace_v2),
            a(ReadTrace),
            true,
        ),
        route("/api/search", get(tempo::search), a(Search), true),
        route("/api/search/tags", get(tempo::tags), a(Search), true),
        route(
            "/api/search/tag/{name}/values",
            get(tempo::tag_values),
            a(Search),
            true,
        ),
        route(
            "/api/v2/search/tags",
            get(traceql::tags_v2),
            a(Search),
            true,
        ),
        route(
            "/api/v2/search/tag/{tag}/values",
            get(traceql::tag_values_v2),
            a(Search),
            true,
        ),
        route(
            "/api/metrics/query_range",
            get(metrics::query_range),
            a(Search),
            true,
        ),
        route(
            "/api/metrics/query",
            get(metrics::query_instant),
            a(Search),
            true,
        ),
        // Jaeger (its UI's base path, or Grafana's Jaeger data source URL with the prefix)
        route(
            "/jaeger/api/services",
            get(jaeger::services),
            a(Search),
            true,
        ),
        route(
            "/jaeger/api/services/{service}/operations",
            get(jaeger::service_operations),
            a(Search),
            true,
        ),
        route(
            "/jaeger/api/operations",
            get(jaeger::operations),
            a(Search),
            true,
        ),
        route("/jaeger/api/traces", get(jaeger::traces), a(Search), true),
        route(
            "/jaeger/api/traces/{id}",
            get(jaeger::trace),
            a(ReadTrace),
            true,
        ),
        route(
            "/jaeger/api/dependencies",
            get(jaeger::dependencies),
            a(Search),
            true,
        ),
        // Findings and audit
        route(
            "/api/findings",
            get(findings::findings),
            a(ReadFindings),
            true,
        ),
        route("/api/audit", get(audit::query), a(ReadAudit), true),
        // A person's traces by a known identity value (rate-limited, audited)
        route(
            "/api/pseudonym",
            post(person::pseudonym),
            a(LookupPerson),
            true,
        ),
        route(
            "/api/search/user",
            post(person::search_user),
            a(LookupPerson),
            true,
        ),
        // The web UI's single-use login links
        route(
            "/api/ui/login-codes",
            post(crate::ui::signin::mint),
            a(UiLogin),
            true,
        ),
        // Transparency log
        route(
            "/api/traces/{id}/receipt",
            get(log::receipts),
            a(ReadReceipt),
            true,
        ),
        route(
            "/api/log/checkpoint",
            get(log::checkpoint),
            a(ReadLog),
            false,
        ),
        route(
            "/api/log/proof/inclusion",
            get(log::inclusion),
            a(ReadLog),
            false,
        ),
        route(
            "/api/log/proof/consistency",
            get(log::consistency),
            a(ReadLog),
            false,
        ),
        Route {
            path: "/log/{*path}",
            handler: get(log::tiles),
            action: a(ReadLog),
            audited: false,
            guard: Guard::Handler,
        },
        // Administration
        route(
            "/api/admin/tokens",
            get(admin::tokens::list).post(admin::tokens::create),
            a(AdminTokens),
            true,
        ),
        route(
            "/api/admin/tokens/{id}",
            delete(admin::tokens::revoke),
            a(AdminTokens),
            true,
        ),
        route(
            "/api/admin/responses",
            get(admin::responses_list),
            a(AdminTokens),
            true,
        ),
        route(
            "/api/admin/responses/release",
            post(admin::responses_release),
            a(AdminTokens),
            true,
        ),
        route(
            "/api/admin/certs",
            get(admin::certs::list).post(admin::certs::register),
            a(AdminCerts),
            true,
        ),
        route(
            "/api/admin/certs/revoke",
            post(admin::certs::revoke),
            a(AdminCerts),
            true,
        ),
        route(
            "/api/admin/keys",
            get(admin::keys::list),
            a(AdminKeys),
            true,
        ),
        route(
            "/api/admin/keys/rotate",
            post(admin::keys::rotate),
            a(AdminKeys),
            true,
        ),
        route(
            "/api/admin/keys/rewrap",
            post(admin::keys::rewrap),
            a(AdminKeys),
            true,
        ),
        route(
            "/api/admin/keys/rewrap-root",
            post(admin::keys::rewrap_root),
            a(AdminKeys),
            true,
        ),
        route(
            "/api/admin/keys/backup",
            post(admin::keys::backup),
            a(AdminKeys),
            true,
        ),
        route(
            "/api/admin/tenants/erase",
            post(admin::keys::erase),
            a(AdminKeys),
            true,
        ),
        route("/api/admin/flush", post(admin::flush), a(Flush), true),
        route("/api/doctor", get(ops::doctor), a(Doctor), true),
        // Operations
        route("/metrics", get(ops::metrics), a(ReadMetrics), false),
        route(
            "/api/security/overview",
            get(ops::security_overview),
            a(ReadMetrics),
            false,
        ),
        Route {
            path: "/ready",
            handler: get(ops::ready),
            action: None,
            audited: false,
            guard: Guard::Open,
        },
        Route {
            path: "/api/openapi.json",
            handler: get(ops::openapi),
            action: None,
            audited: false,
            guard: Guard::Open,
        },
    ]
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    for route in routes() {
        let handler = route.handler.router;
        let handler = match route.guard {
            Guard::Credential => handler.route_layer(axum::middleware::from_fn_with_state(
                Guarded {
                    state: state.clone(),
                    action: route.action,
                    audited: route.audited,
                },
                require_auth,
            )),
            Guard::Handler => match route.action {
                Some(a) => handler.layer(Extension(RouteAction(a))),
                None => handler,
            },
            Guard::Open => handler,
        };
        r = r.route(route.path, handler);
    }
    // The web UI's shell and assets (not API operations: not in the OpenAPI document).
    r.merge(crate::ui::router()).with_state(state)
}

/// The route table's action for a route whose handler authenticates itself.
#[derive(Clone, Copy, Debug)]
pub struct RouteAction(pub Action);

/// What [`require_auth`] knows about the route it guards.
#[derive(Clone)]
struct Guarded {
    state: Arc<AppState>,
    action: Option<Action>,
    audited: bool,
}

/// The authenticated caller of a request and the action the route table gives its route: a
/// handler authorizes through it, on the caller's tenant or on one the request names.
#[derive(Clone)]
pub struct Permit {
    pub caller: Caller,
    pub action: Action,
}

impl Permit {
    /// May the caller do the route's action on its own tenant?
    pub fn authorize(&self, state: &AppState) -> Result<Authorized, ApiError> {
        state.authorize(&self.caller, self.action)
    }

    /// May the caller do the route's action on `tenant` (named in the body or by a stored
    /// object's owner)?
    pub fn authorize_on(
        &self,
        state: &AppState,
        tenant: tv_model::TenantId,
    ) -> Result<Authorized, ApiError> {
        state.authorize_on(&self.caller, self.action, tenant)
    }

    /// May the caller do the route's action on every tenant (`what` says why it must)?
    pub fn authorize_every(&self, state: &AppState, what: &str) -> Result<Authorized, ApiError> {
        state.authorize_every(&self.caller, self.action, what)
    }

    /// Whether the caller may do the route's action on `tenant`, without a refusal (lists).
    pub fn may(&self, state: &AppState, tenant: &str) -> bool {
        state.may(&self.caller, self.action, tenant)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Permit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Permit>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route has no action in the route table".into()))
    }
}

/// Authenticates, rate-limits, runs the handler with a [`Permit`] for its route's action and
/// appends the request's audit record.
async fn require_auth(State(route): State<Guarded>, mut req: Request, next: Next) -> Response {
    let state = route.state;
    let peer = req.extensions().get::<crate::mtls::PeerInfo>().cloned();
    let action = route.action.map_or("other", Action::name);
    let audit_allowed = route.audited;
    let path = req.uri().path().chars().take(512).collect::<String>();
    let caller = match authenticate_api(
        &state,
        req.method(),
        req.uri(),
        req.headers(),
        peer.as_ref(),
    ) {
        Ok(c) => c,
        Err(r) => {
            r.audit(&state.audit, peer.as_ref(), "api", action, path);
            return r.error.into_response();
        }
    };
    if let Err(e) = state.admit(&caller) {
        state.audit.denied(
            &caller.principal,
            caller.requested_tenant(),
            peer.as_ref(),
            "api",
            action,
            path,
            e.status().as_u16(),
            e.to_string(),
        );
        return e.into_response();
    }
    if let Some(a) = route.action {
        req.extensions_mut().insert(Permit {
            caller: caller.clone(),
            action: a,
        });
    }
    // A bounded number of answers are built at once: each may decrypt a large trace and hold
    // it (and its JSON) until the response budget takes it.
    let slot =
        match tokio::time::timeout(state.budget_wait, state.query_slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(p)) => p,
            _ => {
                return ApiError::Unavailable(format!(
                "every query slot ([limits] query_concurrency) stayed busy for {} s; retry later",
                state.budget_wait.as_secs()
            ))
            .into_response();
            }
        };
    let resp = next.run(req).await;
    drop(slot);
    let status = resp.status().as_u16();
    let denied = matches!(status, 401 | 403 | 429);
    if audit_allowed || denied {
        let note = resp
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        let reason = resp
            .extensions()
            .get::<crate::error::Refusal>()
            .map(|r| r.0.clone());
        // Filed under the tenant the request acted on (or was refused for), which may be one
        // its body named rather than X-Scope-OrgID.
        let tenant = resp
            .extensions()
            .get::<crate::error::ActedOn>()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| caller.requested_tenant().clone());
        let resource = note.resource.unwrap_or(path);
        if denied {
            state.audit.denied(
                &caller.principal,
                &tenant,
                peer.as_ref(),
                "api",
                action,
                resource,
                status,
                reason.unwrap_or_default(),
            );
        } else {
            state.audit.request(
                &caller.principal,
                &tenant,
                peer.as_ref(),
                "api",
                action,
                resource,
                status,
                note.results,
                reason,
            );
        }
    }
    resp
}

/// Attaches what the audit record says about a response: its result count and, when the path
/// alone does not say it, the resource.
pub fn noted(
    mut resp: Response,
    auth: &crate::auth::Authorized,
    results: usize,
    resource: Option<String>,
) -> Response {
    resp.extensions_mut().insert(AuditNote {
        resource,
        results: Some(results as u64),
    });
    resp.extensions_mut()
        .insert(crate::error::ActedOn(auth.tenant().clone()));
    resp
}

/// Runs a blocking store read off the async workers and records its latency.
async fn timed<T: Send + 'static>(
    state: &Arc<AppState>,
    endpoint: &'static str,
    f: impl FnOnce(&AppState) -> Result<T, tv_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let st = state.clone();
    let res = tokio::task::spawn_blocking(move || f(&st))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from_store);
    state
        .metrics
        .query_duration
        .get_or_create(&EndpointLabels { endpoint })
        .observe(started.elapsed().as_secs_f64());
    res
}

/// A `start`/`end` parameter in unix seconds, as nanoseconds.
fn unix_secs(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map(|s| s.saturating_mul(1_000_000_000))
                .map_err(|_| ApiError::BadRequest(format!("{name} must be unix seconds")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_names_each_path_once_and_every_guarded_route_its_action() {
        let rs = routes();
        let mut paths: Vec<&str> = rs.iter().map(|r| r.path).collect();
        paths.sort_unstable();
        let n = paths.len();
        paths.dedup();
        assert_eq!(n, paths.len(), "a path appears twice in the route table");
        for r in &rs {
            match r.guard {
                Guard::Open => assert!(r.action.is_none() && !r.audited, "{}", r.path),
                // Only the echo answers any authenticated caller.
                _ if r.path == "/api/echo" => assert!(r.action.is_none(), "{}", r.path),
                _ => assert!(r.action.is_some(), "{} has no action", r.path),
            }
        }
    }

    /// The OpenAPI document's path as the route table spells it (`/log/{*path}`: `/log/{path}`).
    fn openapi_path(route: &str) -> String {
        route.replace("{*", "{")
    }

    fn resolve<'a>(doc: &'a serde_json::Value, r: &'a serde_json::Value) -> &'a serde_json::Value {
        match r.get("$ref").and_then(|x| x.as_str()) {
            Some(p) => {
                let target = doc
                    .pointer(p.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{p} does not resolve"));
                resolve(doc, target)
            }
            None => r,
        }
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_route_table() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let methods = ["get", "post", "put", "delete", "patch"];
        // Every (method, path) the document names...
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in methods {
                if item.get(m).is_some() {
                    documented.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        // ...is a route of the table (or the OTLP/HTTP receiver, on its own listener), and
        // every route's method is documented.
        assert!(documented.remove(&("POST".into(), "/v1/traces".into())));
        assert!(doc["paths"]["/v1/traces"]["servers"].is_array());
        let mut routed = std::collections::BTreeSet::new();
        for r in routes() {
            for m in &r.handler.methods {
                routed.insert((m.as_str().to_owned(), openapi_path(r.path)));
            }
        }
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "openapi.json names routes that do not exist: {unrouted:?}"
        );

        let mut ids = std::collections::BTreeSet::new();
        for r in routes() {
            let item = &doc["paths"][openapi_path(r.path)];
            for m in &r.handler.methods {
                let op = &item[m.as_str().to_lowercase()];
                let what = format!("{m} {}", r.path);
                assert!(
                    ids.insert(
                        op["operationId"]
                            .as_str()
                            .expect("an operationId")
                            .to_owned()
                    ),
                    "{what}: operationId used twice"
                );
                assert!(op["summary"].is_string(), "{what}: no summary");
                // The Cedar action the table gives the route.
                assert_eq!(
                    op.get("x-cedar-action").and_then(|a| a.as_str()),
                    r.action.map(Action::name),
                    "{what}: x-cedar-action"
                );
                // Who may call it: open routes need nothing, guarded ones a credential (and
                // answer 401), the log's tiles either.
                let security = op.get("security").and_then(|s| s.as_array());
                let responses = op["responses"].as_object().expect("responses");
                match r.guard {
                    Guard::Open => assert_eq!(security.map(Vec::len), Some(0), "{what}"),
                    Guard::Credential => {
                        assert!(security.is_none(), "{what}: the document's default applies");
                        for code in ["401", "403", "429", "503"] {
                            assert!(responses.contains_key(code), "{what}: no {code}");
                        }
                    }
                    Guard::Handler => assert!(
                        security.is_some_and(|s| s.iter().any(|x| x == &serde_json::json!({}))),
                        "{what}: may be public"
                    ),
                }
                // Every path parameter is declared, and every reference resolves.
                let params: Vec<&serde_json::Value> = op["parameters"]
                    .as_array()
                    .map(|p| p.iter().map(|x| resolve(&doc, x)).collect())
                    .unwrap_or_default();
                for name in openapi_path(r.path)
                    .split('/')
                    .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                {
                    assert!(
                        params
                            .iter()
                            .any(|p| p["in"] == "path" && p["name"] == name),
                        "{what}: path parameter {name} undeclared"
                    );
                }
                for (code, resp) in responses {
                    assert!(
                        resolve(&doc, resp)["description"].is_string(),
                        "{what} {code}"
                    );
                }
            }
        }
        let mut refs = Vec::new();
        fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m {
                        match (k.as_str(), x.as_str()) {
                            ("$ref", Some(r)) => out.push(r),
                            _ => walk(x, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&doc, &mut refs);
        for r in refs {
            assert!(
                doc.pointer(r.trim_start_matches('#')).is_some(),
                "{r} does not resolve"
            );
        }
    }
}
