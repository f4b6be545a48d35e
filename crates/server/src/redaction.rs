//! Redaction at ingest: the tenant's rules run after authentication and validation and before
//! anything is written, so the WAL, the blocks and the log only ever see the redacted batch; the
//! log's record leaf carries the digest of the rules that ran. Rules reload on SIGHUP (a bad file
//! keeps the running rules and says why).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tv_crypto::Keyring;
use tv_model::TenantId;
use tv_model::validate::Validated;
use tv_redact::{PseudonymKey, Report, Rules};

use crate::metrics::{Metrics, RedactionLabels};

/// The rules in force (or none, with `--no-redaction`).
#[derive(Debug)]
pub struct Active {
    pub rules: Option<Rules>,
}

impl Active {
    /// The digest the log records for batches redacted under these rules.
    pub fn digest(&self) -> [u8; 32] {
        match &self.rules {
            Some(r) => r.digest(),
            None => tv_store::commit::policy_digest(),
        }
    }
    pub fn version(&self) -> String {
        match &self.rules {
            Some(r) => r.version(),
            None => "none".into(),
        }
    }
}

/// Redaction state shared by every listener.
pub struct Redaction {
    active: RwLock<Arc<Active>>,
    keys: Mutex<HashMap<TenantId, Arc<PseudonymKey>>>,
    keyring: Arc<Keyring>,
}

impl std::fmt::Debug for Redaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redaction")
    }
}

impl Redaction {
    pub fn new(rules: Option<Rules>, keyring: Arc<Keyring>) -> Self {
        Redaction {
            active: RwLock::new(Arc::new(Active { rules })),
            keys: Mutex::new(HashMap::new()),
            keyring,
        }
    }

    pub fn active(&self) -> Arc<Active> {
        self.active.read().expect("redaction lock").clone()
    }

    /// Swaps in new rules (SIGHUP). Batches in flight finish under the rules they started with.
    pub fn replace(&self, rules: Option<Rules>) {
        *self.active.write().expect("redaction lock") = Arc::new(Active { rules });
    }

    /// The tenant's pseudonym key (its own key in the key ring: stable across key rotation,
    /// destroyed when the tenant is erased).
    pub fn pseudonym_key(&self, tenant: &TenantId) -> anyhow::Result<Arc<PseudonymKey>> {
        if let Some(k) = self.keys.lock().expect("keys lock").get(tenant) {
            return Ok(k.clone());
        }
        let secret = self.keyring.pseudonym_secret(tenant)?;
        let key = Arc::new(PseudonymKey::new(secret.expose()));
        self.keys
            .lock()
            .expect("keys lock")
            .insert(tenant.clone(), key.clone());
        Ok(key)
    }

    /// The pseudonyms redaction writes for `value` in `tenant`'s data (none when redaction is
    /// off): what a search by a known value compares with, for callers who may read them.
    pub fn pseudonyms_of(&self, tenant: &TenantId, value: &str) -> anyhow::Result<Vec<String>> {
        let active = self.active();
        let Some(rules) = active.rules.as_ref() else {
            return Ok(Vec::new());
        };
        let key = self.pseudonym_key(tenant)?;
        Ok(tv_redact::pseudonyms_of(rules, &key, value))
    }

    /// Drops the tenant's cached pseudonym key (its keys were destroyed).
    pub fn forget(&self, tenant: &TenantId) {
        self.keys.lock().expect("keys lock").remove(tenant);
    }

    /// Redacts a validated batch for `tenant`; returns it with the policy digest to record.
    pub fn apply(
        &self,
        tenant: &TenantId,
        batch: Validated,
        metrics: &Metrics,
    ) -> anyhow::Result<(Validated, [u8; 32])> {
        let active = self.active();
        let Some(rules) = active.rules.as_ref() else {
            return Ok((batch, active.digest()));
        };
        let key = self.pseudonym_key(tenant)?;
        let mut report = Report::default();
        let batch = batch.redact_with(|req| {
            let out = tv_redact::redact(rules, tenant.as_str(), &key, req);
            report = out.report;
            out.request
        });
        for (hit, n) in &report.hits {
            metrics
                .redactions
                .get_or_create(&RedactionLabels {
                    rule: hit.rule.clone(),
                    action: hit.action,
                })
                .inc_by(*n);
        }
        if report.total() > 0 {
            // Rule names, fields and counts only: the report never holds a value.
            tracing::debug!(tenant = %tenant, policy = %active.version(), summary = %report.to_json(), "redacted batch");
        }
        Ok((batch, active.digest()))
    }
}
