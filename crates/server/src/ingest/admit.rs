//! Admission: whether the pipeline takes a batch now, before any work is spent on it. One place
//! for every "not now" or "not from you": the credential's request rate, the automated responses
//! against it (quarantine, throttle), an erased tenant, and the tenant's span and byte rates.
//! It also takes the automated responses to new findings, which decide the next admissions.

use prost::Message;
use tv_detect::finding::Finding;
use tv_model::TenantId;
use tv_model::otlp::ExportTraceServiceRequest;
use tv_store::Store;

use super::Refusal;
use crate::AppState;
use crate::auth::Caller;
use crate::metrics::Metrics;
use crate::ratelimit::{Kind, Limiter};
use crate::responses::{Responses, Verdict};

pub(crate) struct Admission<'a> {
    responses: Option<&'a Responses>,
    limiter: &'a Limiter,
    metrics: &'a Metrics,
    store: &'a Store,
}

impl<'a> Admission<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Admission {
            responses: state.detection.responses.as_deref(),
            limiter: &state.limiter,
            metrics: &state.metrics,
            store: &state.store,
        }
    }

    /// One more request from `caller` (before its body is read).
    pub(crate) fn request(&self, caller: &Caller) -> Result<(), Refusal> {
        self.limiter
            .charge(Kind::Requests, &caller.principal.id(), 1.0, self.metrics)
            .map_err(Refusal::OverRate)
    }

    /// `spans` spans from `principal`, against the automated responses to it.
    pub(crate) fn credential(&self, principal: &str, spans: usize) -> Result<(), Refusal> {
        match self.responses.map(|r| r.check_ingest(principal, spans)) {
            None | Some(Verdict::Allow) => Ok(()),
            Some(Verdict::Quarantined(m)) => Err(Refusal::Quarantined(m)),
            Some(Verdict::Throttled(m)) => Err(Refusal::Throttled(m)),
        }
    }

    /// A batch for `tenant` (once the credential may write there): the tenant takes data and
    /// is under its span and byte rates.
    pub(crate) fn tenant(
        &self,
        tenant: &TenantId,
        spans: usize,
        req: &ExportTraceServiceRequest,
    ) -> Result<(), Refusal> {
        // An erased tenant holds no data and takes none.
        self.store.accepts(tenant).map_err(Refusal::Store)?;
        let rates = self.limiter.rates();
        let key = tenant.as_str();
        if rates.spans_per_sec > 0.0 {
            self.limiter
                .charge(Kind::Spans, key, spans as f64, self.metrics)
                .map_err(Refusal::OverRate)?;
        }
        if rates.bytes_per_sec > 0.0 {
            self.limiter
                .charge(Kind::Bytes, key, req.encoded_len() as f64, self.metrics)
                .map_err(Refusal::OverRate)?;
        }
        Ok(())
    }

    /// Takes the automated responses to new findings: tags onto the findings (before they are
    /// stored), quarantines and throttles onto their senders.
    pub(crate) fn respond(&self, findings: &mut [Finding]) {
        if let Some(r) = self.responses {
            r.apply(findings);
        }
    }
}
