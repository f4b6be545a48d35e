//! The ingest pipeline. The receivers ([`receivers`]: OTLP gRPC and HTTP) authenticate the
//! caller, count it against its request rate and decode the body within the limits; then every
//! batch goes through the same stages, in this order, each a type holding only what it reads:
//!
//! 1. [`admit::Admission`]: the automated responses against the credential (quarantine,
//!    throttle);
//! 2. [`authorize::Authorization`]: the tenant and every service the batch carries;
//!    then admission again for the tenant (not erased, under its span and byte rates);
//! 3. [`validate::Validation`]: per-span checks (OTLP partial success for the rest);
//! 4. [`inspect::Inspection`]: the signature rules, on the batch as sent;
//! 5. [`redact::Redact`]: the tenant's redaction rules, before anything is written;
//! 6. [`commit::Commit`]: findings sealed in, one WAL record, fsync'd group commit;
//! 7. [`notify::Notify`]: service graph, behavioural stage, counters, finding sinks.
//!
//! A stage refuses with a [`Refusal`]; a refusal of the caller is audited. The CPU time of each
//! stage is in `/metrics` (`tracevault_ingest_stage_cpu_seconds{stage}`).

mod admit;
mod authorize;
mod commit;
mod inspect;
mod notify;
mod receivers;
mod redact;
mod refusal;
mod validate;

pub(crate) use commit::Commit;
pub use receivers::{EXPORT_PATH, grpc_router, http_export};
pub(crate) use refusal::Refusal;

use tv_model::otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::metrics::StageClock;
use crate::mtls::PeerInfo;

/// Service names clients may not write: the server's own records (findings) live there.
pub const RESERVED_SERVICE_PREFIX: &str = "tracevault.";

fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs a decoded batch through the pipeline; a refusal of the (authenticated) caller is
/// audited.
pub(crate) async fn ingest(
    state: &AppState,
    caller: &Caller,
    peer: Option<&PeerInfo>,
    req: ExportTraceServiceRequest,
    transport: &'static str,
) -> Result<ExportTraceServiceResponse, ApiError> {
    let spans = tv_model::span_count(&req.resource_spans);
    run(state, caller, req, spans, transport)
        .await
        .map_err(|refusal| {
            let audited = refusal.audited();
            let e = ApiError::from(refusal);
            if audited {
                state.audit.denied(
                    &caller.principal,
                    caller.requested_tenant(),
                    peer,
                    receivers::listener(transport),
                    "ingest",
                    format!("spans:{spans}"),
                    e.status().as_u16(),
                    e.to_string(),
                );
            }
            e
        })
}

async fn run(
    state: &AppState,
    caller: &Caller,
    req: ExportTraceServiceRequest,
    spans: usize,
    transport: &'static str,
) -> Result<ExportTraceServiceResponse, Refusal> {
    let mut clock = StageClock::start(&state.metrics);
    let admission = admit::Admission::of(state);
    let principal = caller.principal.id();
    admission.credential(&principal, spans)?;
    clock.lap("admit");
    let authorized = authorize::Authorization::of(state).batch(caller, &req, spans)?;
    let tenant = authorized.tenant();
    clock.lap("authorize");
    admission.tenant(tenant, spans, &req)?;
    clock.lap("admit");
    let received = now_unix_nanos();
    let (batch, partial_success) = validate::Validation::of(state).batch(req, received)?;
    let accepted = batch.accepted_spans() as u64;
    clock.lap("validate");
    if accepted > 0 {
        let findings = inspect::Inspection::of(state).batch(
            tenant.as_str(),
            &principal,
            &batch,
            now_unix_nanos(),
        );
        clock.lap("inspect");
        let redact::Redacted {
            batch,
            policy,
            mut findings,
        } = redact::Redact::of(state).batch(tenant, batch, findings)?;
        clock.lap("redact");
        admission.respond(&mut findings);
        let commit = Commit::of(state);
        let (batch, record) =
            commit.prepare(tenant, batch, &findings, None, state.wal_zstd_level, policy)?;
        let notify = notify::Notify::of(state);
        // What the later stages need of the batch, taken now: the decoded batch is not held
        // while waiting for the fsync unless the behavioural stage takes it.
        let graph = crate::graph::facts(batch.request());
        let behaviour = notify.wants_batches().then(|| batch.into_request());
        clock.lap("commit");
        commit.write(tenant, record, &findings).await?;
        // The task may have resumed on another thread.
        clock.resume();
        notify.committed(
            notify::Committed {
                tenant: tenant.clone(),
                principal,
                received,
                accepted,
                graph,
                behaviour,
                findings,
            },
            transport,
        );
        clock.lap("notify");
    }
    Ok(ExportTraceServiceResponse { partial_success })
}
