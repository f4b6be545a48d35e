//! Re-deriving span commitments from stored data (issue 3): span proofs for receipts, and the
//! per-record span roots of a block for `verify`.

use std::collections::HashMap;

use tv_model::otlp::ExportTraceServiceRequest;
use tv_model::{TenantId, TraceId};
use tv_tlog::Hash;
use tv_tlog::commit::{FieldOpening, SpanTree};

use crate::block::BlockMeta;
use crate::columns::{self, Row};
use crate::commit::{CanonRecord, CanonSpan};
use crate::{Store, StoreError};

/// What proves one span inside its record's leaf (the log proof is added by the caller).
#[derive(Debug, Clone)]
pub struct SpanProof {
    /// The cluster node whose log holds the record leaf (None: this node's log).
    pub node: Option<String>,
    pub leaf_index: u64,
    pub span_index: u64,
    pub span_count: u64,
    /// Audit path from the span's commitment to the record's span root.
    pub path: Vec<Hash>,
    pub fields: Vec<FieldOpening>,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
}

/// One committed record re-assembled from a block: its rows in canonical order.
pub struct BlockRecordRows {
    pub leaf_index: u64,
    pub secret: [u8; 32],
    pub claimed_spans: u32,
    resources: Vec<Vec<u8>>,
    scopes: Vec<Vec<u8>>,
    rows: Vec<Row>,
}

impl BlockRecordRows {
    pub fn canon(&self) -> CanonRecord<'_> {
        CanonRecord {
            resources: self.resources.clone(),
            scopes: self.scopes.clone(),
            spans: self
                .rows
                .iter()
                .map(|r| CanonSpan {
                    resource: r.resource,
                    scope: r.scope,
                    span: &r.span,
                })
                .collect(),
        }
    }

    /// The span root and count re-derived from the block's rows.
    pub fn span_root(&self) -> ([u8; 32], u32) {
        crate::commit::span_root(&self.secret, &self.canon())
    }
}

/// Every record of a block with its rows (decrypts and decodes every chunk). `only` limits the
/// result to some record positions.
pub fn block_records(
    b: &BlockMeta,
    only: Option<&[u32]>,
) -> Result<Vec<BlockRecordRows>, StoreError> {
    let bad = |reason: String| StoreError::Corruption {
        path: b.key.clone(),
        offset: 0,
        reason,
    };
    let mut out: Vec<BlockRecordRows> = Vec::with_capacity(b.index.records.len());
    for r in &b.index.records {
        let secret: [u8; 32] = r
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| bad("a record secret is not 32 bytes".into()))?;
        out.push(BlockRecordRows {
            leaf_index: r.leaf_index,
            secret,
            claimed_spans: r.span_count,
            resources: Vec::new(),
            scopes: Vec::new(),
            rows: Vec::new(),
        });
    }
    let mut rmaps: Vec<HashMap<Vec<u8>, u32>> = vec![HashMap::new(); out.len()];
    let mut smaps: Vec<HashMap<Vec<u8>, u32>> = vec![HashMap::new(); out.len()];
    let file = b.open_file()?;
    for ci in 0..b.index.chunks.len() {
        let chunk = b.read_chunk(&file, ci)?;
        for mut row in columns::decode(&chunk, |_| true)? {
            let k = row.record as usize;
            if only.is_some_and(|o| !o.contains(&row.record)) {
                continue;
            }
            let rec = out
                .get_mut(k)
                .ok_or_else(|| bad(format!("a row names record {k}, which the index lacks")))?;
            let res = chunk
                .resources
                .get(row.resource as usize)
                .ok_or_else(|| bad("a row names a missing resource".into()))?
                .clone();
            let scope = chunk
                .scopes
                .get(row.scope as usize)
                .ok_or_else(|| bad("a row names a missing scope".into()))?
                .clone();
            row.resource = crate::commit::intern(&mut rec.resources, &mut rmaps[k], res);
            row.scope = crate::commit::intern(&mut rec.scopes, &mut smaps[k], scope);
            rec.rows.push(row);
        }
    }
    Ok(out)
}

fn prove_in(
    node: Option<&str>,
    secret: &[u8; 32],
    leaf_index: u64,
    rec: &CanonRecord<'_>,
    id: TraceId,
    withhold: &dyn Fn(&str, &[u8]) -> bool,
    out: &mut Vec<SpanProof>,
) {
    let wanted: Vec<usize> = rec
        .spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.span.trace_id == id.0)
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return;
    }
    let commitments = crate::commit::commitments(secret, rec);
    let tree = SpanTree::new(&commitments);
    for i in wanted {
        let span = rec.spans[i].span;
        out.push(SpanProof {
            node: node.map(str::to_owned),
            leaf_index,
            span_index: i as u64,
            span_count: commitments.len() as u64,
            path: tree.path(i as u64).expect("index is in the tree"),
            fields: crate::commit::open_span(secret, rec, i, withhold),
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
        });
    }
}

impl Store {
    /// Span proofs for every stored span of trace `id` of `tenant`; fields `withhold` names are
    /// given as commitments only.
    pub fn span_proofs(
        &self,
        tenant: &TenantId,
        id: TraceId,
        withhold: &dyn Fn(&str, &[u8]) -> bool,
    ) -> Result<Vec<SpanProof>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let mut out = Vec::new();
        let prefix = id.prefix();
        for b in &blocks {
            if !b.may_contain(prefix) {
                continue;
            }
            // Which records hold the trace: from the chunks that can hold it.
            let file = b.open_file()?;
            let mut recs: Vec<u32> = Vec::new();
            for (ci, cm) in b.index.chunks.iter().enumerate() {
                if cm.first_trace.as_slice() > &id.0[..] || cm.last_trace.as_slice() < &id.0[..] {
                    continue;
                }
                let chunk = b.read_chunk(&file, ci)?;
                for row in columns::decode(&chunk, |t| t == &id.0)? {
                    if !recs.contains(&row.record) {
                        recs.push(row.record);
                    }
                }
            }
            if recs.is_empty() {
                continue;
            }
            for r in block_records(b, Some(&recs))? {
                if r.rows.is_empty() {
                    continue;
                }
                prove_in(
                    b.node.as_deref(),
                    &r.secret,
                    r.leaf_index,
                    &r.canon(),
                    id,
                    withhold,
                    &mut out,
                );
            }
        }
        for r in head {
            if r.summary.prefixes.binary_search(&prefix).is_err() {
                continue;
            }
            let Some(leaf) = r.leaf_index else { continue };
            let req: ExportTraceServiceRequest = r.decode()?;
            prove_in(
                None,
                &r.secret(),
                leaf,
                &CanonRecord::of_request(&req),
                id,
                withhold,
                &mut out,
            );
        }
        Ok(out)
    }
}
