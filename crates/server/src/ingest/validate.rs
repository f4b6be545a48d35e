//! Validation: the per-span checks (ids, times, sizes, counts). Spans that fail are dropped and
//! counted by reason; the client hears of them through OTLP partial success.

use tv_model::otlp::{ExportTracePartialSuccess, ExportTraceServiceRequest};
use tv_model::validate::{Validated, validate};

use super::Refusal;
use crate::AppState;
use crate::metrics::{Metrics, ReasonLabels};

pub(crate) struct Validation<'a> {
    limits: &'a tv_model::Limits,
    metrics: &'a Metrics,
}

impl<'a> Validation<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Validation {
            limits: &state.limits,
            metrics: &state.metrics,
        }
    }

    /// The valid part of `req`, received at `received` (Unix ns), and what to tell the client
    /// of the rest.
    pub(crate) fn batch(
        &self,
        req: ExportTraceServiceRequest,
        received: u64,
    ) -> Result<(Validated, Option<ExportTracePartialSuccess>), Refusal> {
        let validated = validate(req, self.limits, received).map_err(Refusal::Invalid)?;
        for (reason, n) in validated.rejected_by_reason() {
            self.metrics
                .spans_rejected
                .get_or_create(&ReasonLabels {
                    reason: reason.label(),
                })
                .inc_by(*n as u64);
        }
        let partial = validated.message().map(|m| ExportTracePartialSuccess {
            rejected_spans: validated.rejected_spans() as i64,
            error_message: m.to_owned(),
        });
        Ok((validated, partial))
    }
}
