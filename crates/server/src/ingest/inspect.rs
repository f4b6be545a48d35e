//! Inspection: the signature rules over the decoded batch, before redaction (a scrubbed query
//! string can no longer show an injection). Findings carry redacted evidence only.

use tv_detect::finding::Finding;
use tv_model::validate::Validated;

use crate::AppState;
use crate::detection::Detection;

pub(crate) struct Inspection<'a> {
    detection: &'a Detection,
}

impl<'a> Inspection<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Inspection {
            detection: &state.detection,
        }
    }

    /// What the rules find in `batch`, sent by `principal` for `tenant`, at `now` (Unix ns).
    pub(crate) fn batch(
        &self,
        tenant: &str,
        principal: &str,
        batch: &Validated,
        now: u64,
    ) -> Vec<Finding> {
        self.detection.scan(tenant, principal, batch.request(), now)
    }
}
