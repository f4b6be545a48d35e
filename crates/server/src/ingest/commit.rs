//! Commit: the one way a batch reaches the store, for client batches and for the findings the
//! behavioural stage writes alike. The batch's findings are sealed into it (a resource of the
//! server's own service), the whole is encoded as one WAL record (one log leaf), appended with
//! the group commit (durable when [`Commit::write`] returns) and its findings indexed.

use tv_detect::finding::Finding;
use tv_model::TenantId;
use tv_model::validate::Validated;
use tv_store::{EncodedBatch, Store};

use super::Refusal;
use crate::AppState;
use crate::detection::FindingSeal;
use crate::findings_index::FindingsIndex;

pub(crate) struct Commit<'a> {
    store: &'a Store,
    seal: &'a FindingSeal,
    index: &'a FindingsIndex,
}

impl<'a> Commit<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Self::new(&state.store, &state.findings_seal, &state.findings_index)
    }

    pub(crate) fn new(store: &'a Store, seal: &'a FindingSeal, index: &'a FindingsIndex) -> Self {
        Commit { store, seal, index }
    }

    /// `batch` with `findings` sealed into it (stamped `sealed_at`, Unix ns, or with the times
    /// of the spans they are about), and its WAL record: zstd `level`, redaction rules digest
    /// `policy`.
    pub(crate) fn prepare(
        &self,
        tenant: &TenantId,
        batch: Validated,
        findings: &[Finding],
        sealed_at: Option<u64>,
        level: i32,
        policy: [u8; 32],
    ) -> Result<(Validated, EncodedBatch), Refusal> {
        let sealed = self
            .seal
            .seal(tenant, findings, sealed_at)
            .map_err(|e| Refusal::Internal(format!("sealing findings: {e:#}")))?;
        let batch = match sealed {
            None => batch,
            Some(rs) => batch.redact_with(|mut req| {
                req.resource_spans.push(rs);
                req
            }),
        };
        let record = EncodedBatch::encode(tenant.clone(), &batch, level, policy)
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        Ok((batch, record))
    }

    /// Appends `record` (durable and in the log's next leaf when this returns) and indexes its
    /// `findings` for `/api/findings`.
    pub(crate) async fn write(
        &self,
        tenant: &TenantId,
        record: EncodedBatch,
        findings: &[Finding],
    ) -> Result<(), Refusal> {
        self.store.append(record).await.map_err(Refusal::Store)?;
        if !findings.is_empty() {
            self.index.add(tenant, findings.iter().cloned());
        }
        Ok(())
    }
}
