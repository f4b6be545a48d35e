//! Redaction: the tenant's rules over the batch before anything is written (the WAL, the blocks
//! and the log only ever see the redacted batch; the log records the digest of the rules that
//! ran). Findings of the batch are then named by the redacted span names.

use tv_detect::finding::Finding;
use tv_model::TenantId;
use tv_model::validate::Validated;

use super::Refusal;
use crate::AppState;
use crate::metrics::Metrics;
use crate::redaction::Redaction;

pub(crate) struct Redact<'a> {
    redaction: &'a Redaction,
    metrics: &'a Metrics,
}

/// A redacted batch with the digest of the rules that ran and its findings.
pub(crate) struct Redacted {
    pub batch: Validated,
    pub policy: [u8; 32],
    pub findings: Vec<Finding>,
}

impl<'a> Redact<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Redact {
            redaction: &state.redaction,
            metrics: &state.metrics,
        }
    }

    pub(crate) fn batch(
        &self,
        tenant: &TenantId,
        batch: Validated,
        findings: Vec<Finding>,
    ) -> Result<Redacted, Refusal> {
        let (batch, policy) = self
            .redaction
            .apply(tenant, batch, self.metrics)
            .map_err(|e| Refusal::Internal(format!("redaction: {e}")))?;
        let findings = crate::detection::with_redacted_names(findings, batch.request());
        Ok(Redacted {
            batch,
            policy,
            findings,
        })
    }
}
