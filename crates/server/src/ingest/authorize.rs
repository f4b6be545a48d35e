//! Authorization: which tenant the batch is for and whether the credential may write every
//! service it carries. One service per resource, decided from the raw batch: a resource naming
//! two (or not as a string) is ambiguous; the server's own namespace is not for clients; a
//! credential bound to services writes only those (one spoofed resource refuses the batch).

use std::sync::Arc;

use tv_access::{Action, BuiltIn, PolicyEngine};
use tv_model::otlp::ExportTraceServiceRequest;

use super::{RESERVED_SERVICE_PREFIX, Refusal};
use crate::AppState;
use crate::auth::{Authorized, Caller};
use crate::metrics::{Metrics, ReasonLabels};

pub(crate) struct Authorization<'a> {
    policy: Arc<PolicyEngine>,
    metrics: &'a Metrics,
}

impl<'a> Authorization<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Authorization {
            policy: state.policy(),
            metrics: &state.metrics,
        }
    }

    /// One decision for the whole batch of `spans` spans: the tenant, and every service in it.
    pub(crate) fn batch(
        &self,
        caller: &Caller,
        req: &ExportTraceServiceRequest,
        spans: usize,
    ) -> Result<Authorized, Refusal> {
        let mut services: Vec<&str> = tv_model::canonical_services(req)
            .map_err(|e| Refusal::AmbiguousService(e.to_string()))?
            .into_iter()
            .map(|s| s.unwrap_or(""))
            .collect();
        if let Some(s) = services.iter().find(|s| is_reserved_service(s)) {
            return Err(Refusal::ReservedService((*s).to_owned()));
        }
        services.sort_unstable();
        services.dedup();
        crate::auth::authorize_ingest(&self.policy, caller, &services).map_err(|verdict| {
            if verdict.decided_by(BuiltIn::OwnedServices) {
                self.metrics
                    .spans_rejected
                    .get_or_create(&ReasonLabels {
                        reason: "service_not_owned",
                    })
                    .inc_by(spans as u64);
                return Refusal::ServiceNotOwned {
                    owned: caller.principal.services.clone(),
                };
            }
            Refusal::NotPermitted(crate::auth::refusal(
                &caller.principal,
                caller.requested_tenant(),
                Action::Ingest,
                &verdict.reasons,
            ))
        })
    }
}

/// Whether clients may not write service name `s`: the server's own records (findings) live
/// there.
fn is_reserved_service(s: &str) -> bool {
    s.get(..RESERVED_SERVICE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_SERVICE_PREFIX))
}
