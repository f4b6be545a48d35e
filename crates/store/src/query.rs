//! Reads: trace by id, search, tag names and values, over sealed blocks and the WAL head.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use prost::Message;
use tv_model::otlp::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span, status};
use tv_model::{TenantId, TraceId, any_value_to_string};

use crate::block::{BlockMeta, resource_key, scope_key};
use crate::columns;
use crate::store::HeadRecord;
use crate::{Store, StoreError};

/// A search, with Tempo's `/api/search` parameters.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Every pair must match one span (span attributes, then resource attributes; `name` and
    /// `status.code` match the span name and status).
    pub tags: Vec<(String, String)>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    /// Traces overlapping `[start, end]` (unix nanoseconds).
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub limit: usize,
}

/// One search hit, Tempo's trace summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub root_service_name: String,
    pub root_trace_name: String,
    pub start_unix_nanos: u64,
    pub duration_ms: u64,
}

/// What [`Store::visit`] shows its callback.
pub enum Visit<'a> {
    Span(&'a ResourceSpans, &'a ScopeSpans, &'a Span),
    /// The next block is about to be read.
    NextBlock,
    /// The next chunk of a block is about to be read.
    NextChunk,
}

/// What every span a search wants must have, for skipping blocks whose index says none has
/// it: a span name, or an attribute with a string value (in one of the scopes).
#[derive(Debug, Clone, Default)]
pub struct BlockHints {
    /// The service every match is in (`resource.service.name`).
    pub service: Option<String>,
    pub names: Vec<String>,
    pub attributes: Vec<(Vec<TagScope>, String, String)>,
    /// The span attributes the caller's matcher reads (`None`: any); the others are left in
    /// their columns when spans are visited, never materialized.
    pub span_attributes: Option<Vec<String>>,
}

impl BlockHints {
    /// Whether block `b` may hold a wanted span (its index is complete for what it lists).
    fn admits(&self, b: &crate::format::BlockIndex) -> bool {
        if let Some(s) = &self.service
            && !b.services.iter().any(|x| x == s)
        {
            return false;
        }
        // Span names are kept up to a bound: a full list may be missing some.
        let names_complete = b.span_names.len() < 10_000;
        if names_complete
            && self
                .names
                .iter()
                .any(|n| b.span_names.binary_search(n).is_err())
        {
            return false;
        }
        for (scopes, key, value) in &self.attributes {
            let entries: Vec<&crate::format::TagValues> = b
                .tags
                .iter()
                .filter(|t| {
                    t.key == *key
                        && scopes
                            .iter()
                            .any(|s| TagScope::from_u32(t.scope).may_be(*s))
                })
                .collect();
            // Keys too long for the index are not listed: no conclusion for them.
            if key.len() > crate::block::MAX_TAG_VALUE_LEN {
                continue;
            }
            if entries.is_empty()
                || entries
                    .iter()
                    .all(|t| !t.truncated && !t.values.iter().any(|v| v == value))
            {
                return false;
            }
        }
        true
    }
}

/// Where an attribute stands, as TraceQL names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum TagScope {
    /// Blocks written before scopes were kept: a resource or span attribute.
    Unknown = 0,
    Resource = 1,
    Span = 2,
    Event = 3,
    Link = 4,
    Instrumentation = 5,
}

impl TagScope {
    pub fn from_u32(v: u32) -> TagScope {
        match v {
            1 => TagScope::Resource,
            2 => TagScope::Span,
            3 => TagScope::Event,
            4 => TagScope::Link,
            5 => TagScope::Instrumentation,
            _ => TagScope::Unknown,
        }
    }

    /// Whether a tag indexed under `self` may be one of scope `wanted` (an unknown scope may
    /// be a resource or a span attribute).
    fn may_be(self, wanted: TagScope) -> bool {
        self == wanted
            || (self == TagScope::Unknown && matches!(wanted, TagScope::Resource | TagScope::Span))
    }
}

/// Encoded spans by encoded scope.
type ScopeGroups = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

/// Spans gathered for one trace, grouped by encoded resource and scope, deduplicated.
#[derive(Default)]
struct Collector {
    groups: BTreeMap<Vec<u8>, ScopeGroups>,
    seen: HashSet<Vec<u8>>,
}

impl Collector {
    fn add(&mut self, resource: &[u8], scope: &[u8], span: Vec<u8>) {
        // Identical re-sends (client retries) collapse to one span.
        if !self.seen.insert(span.clone()) {
            return;
        }
        self.groups
            .entry(resource.to_vec())
            .or_default()
            .entry(scope.to_vec())
            .or_default()
            .push(span);
    }

    fn finish(self) -> Result<Vec<ResourceSpans>, StoreError> {
        let bad = |e: prost::DecodeError| StoreError::Decode(e.to_string());
        let mut out = Vec::new();
        for (r, scopes) in self.groups {
            let mut rs = ResourceSpans::decode(r.as_slice()).map_err(bad)?;
            for (s, spans) in scopes {
                let mut ss = ScopeSpans::decode(s.as_slice()).map_err(bad)?;
                for sp in spans {
                    ss.spans.push(Span::decode(sp.as_slice()).map_err(bad)?);
                }
                ss.spans
                    .sort_by_key(|s| (s.start_time_unix_nano, s.span_id.clone()));
                rs.scope_spans.push(ss);
            }
            out.push(rs);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
struct Agg {
    start: u64,
    end: u64,
    root: Option<(String, String)>,
    earliest: (u64, String, String),
}

impl Agg {
    fn new() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            root: None,
            earliest: (u64::MAX, String::new(), String::new()),
        }
    }
    fn add(&mut self, span: &Span, service: &str) {
        self.start = self.start.min(span.start_time_unix_nano);
        self.end = self.end.max(span.end_time_unix_nano);
        if span.parent_span_id.is_empty() {
            self.root = Some((service.to_owned(), span.name.clone()));
        }
        if span.start_time_unix_nano < self.earliest.0 {
            self.earliest = (
                span.start_time_unix_nano,
                service.to_owned(),
                span.name.clone(),
            );
        }
    }
    fn summary(&self, trace_id: TraceId) -> TraceSummary {
        let (svc, name) = self
            .root
            .clone()
            .unwrap_or_else(|| (self.earliest.1.clone(), self.earliest.2.clone()));
        TraceSummary {
            trace_id,
            root_service_name: svc,
            root_trace_name: name,
            start_unix_nanos: self.start,
            duration_ms: self.end.saturating_sub(self.start) / 1_000_000,
        }
    }
}

fn status_label(span: &Span) -> &'static str {
    match span
        .status
        .as_ref()
        .map(|s| s.code)
        .and_then(|c| status::StatusCode::try_from(c).ok())
    {
        Some(status::StatusCode::Ok) => "ok",
        Some(status::StatusCode::Error) => "error",
        _ => "unset",
    }
}

fn span_matches(span: &Span, resource: &ResourceSpans, tags: &[(String, String)]) -> bool {
    tags.iter().all(|(k, v)| match k.as_str() {
        "name" => &span.name == v,
        "status.code" => status_label(span) == v,
        // A span's service is its resource's, whatever attributes the span carries.
        "service.name" => tv_model::service_name(resource.resource.as_ref()) == Some(v.as_str()),
        _ => {
            let in_span = span
                .attributes
                .iter()
                .find(|kv| &kv.key == k)
                .and_then(|kv| kv.value.as_ref());
            let found = in_span.or_else(|| {
                resource
                    .resource
                    .as_ref()?
                    .attributes
                    .iter()
                    .find(|kv| &kv.key == k)?
                    .value
                    .as_ref()
            });
            found.is_some_and(|x| &any_value_to_string(x) == v)
        }
    })
}

fn overlaps(min: u64, max: u64, q: &SearchQuery) -> bool {
    q.start_ns.is_none_or(|s| max >= s) && q.end_ns.is_none_or(|e| min <= e)
}

impl Store {
    /// The tenant's sealed blocks and unsealed records, as of now.
    pub(crate) fn snapshot(
        &self,
        tenant: &TenantId,
    ) -> (Vec<Arc<BlockMeta>>, Vec<Arc<HeadRecord>>) {
        let st = self.inner().state.read().expect("state lock poisoned");
        let mut blocks = st.blocks.get(tenant).cloned().unwrap_or_default();
        if let Some(p) = st.peers.get(tenant) {
            blocks.extend(p.iter().cloned());
        }
        // Every node's blocks together, oldest first (searches walk them newest first); a merged
        // block takes the place of the blocks it replaced.
        blocks.sort_by_key(|b| (b.index.min_start, b.id));
        let head = st
            .head
            .iter()
            .filter(|r| &r.tenant == tenant)
            .cloned()
            .collect();
        (blocks, head)
    }

    /// Every stored span of trace `id` for `tenant`, or `None` when there is none.
    pub fn find_trace(
        &self,
        tenant: &TenantId,
        id: TraceId,
    ) -> Result<Option<Vec<ResourceSpans>>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let mut col = Collector::default();
        collect_from_blocks(&blocks, id, &mut col)?;
        let prefix = id.prefix();
        for r in head {
            if r.summary.prefixes.binary_search(&prefix).is_err() {
                continue;
            }
            collect_from_request(&r.decode()?, id, &mut col);
        }
        if col.seen.is_empty() {
            return Ok(None);
        }
        col.finish().map(Some)
    }

    /// The traces with a span in `[start, end]` (unix nanoseconds) for which `matches` holds,
    /// newest first (by their earliest such span), at most `budget` of them; blocks whose
    /// index says they hold no span `hints` wants are not opened. The WAL head is read whole; blocks from
    /// the newest, until the budget is reached.
    #[allow(clippy::type_complexity)]
    pub fn candidates(
        &self,
        tenant: &TenantId,
        start_ns: Option<u64>,
        end_ns: Option<u64>,
        hints: &BlockHints,
        budget: usize,
        matches: &mut dyn FnMut(&ResourceSpans, &ScopeSpans, &Span) -> bool,
    ) -> Result<Vec<(TraceId, u64)>, StoreError> {
        let mut hits: HashMap<TraceId, u64> = HashMap::new();
        self.visit(tenant, start_ns, end_ns, hints, &mut |v| {
            match v {
                Visit::Span(rs, ss, span) => {
                    if matches(rs, ss, span)
                        && let Ok(t) = TraceId::from_bytes(&span.trace_id)
                    {
                        let e = hits.entry(t).or_insert(span.start_time_unix_nano);
                        *e = (*e).min(span.start_time_unix_nano);
                    }
                }
                // Stop once there are enough candidates (the newest matches win).
                Visit::NextBlock => return hits.len() < budget,
                Visit::NextChunk => {}
            }
            true
        })?;
        let mut cands: Vec<(TraceId, u64)> = hits.into_iter().collect();
        cands.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        cands.truncate(budget);
        Ok(cands)
    }

    /// Every span of `tenant` overlapping `[start, end]`, in the columns of its chunks: the WAL
    /// head first, then the blocks from the newest, skipping blocks whose index says they hold
    /// no span `hints` wants and chunks outside the window. `f` sees each span (and its
    /// resource and scope) and says at each span and before each block and chunk whether to go
    /// on; the spans of one trace may come in several pieces.
    pub fn visit(
        &self,
        tenant: &TenantId,
        start_ns: Option<u64>,
        end_ns: Option<u64>,
        hints: &BlockHints,
        f: &mut dyn FnMut(Visit<'_>) -> bool,
    ) -> Result<(), StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let q = &SearchQuery {
            start_ns,
            end_ns,
            ..Default::default()
        };
        for r in &head {
            if !overlaps(r.summary.min_start, r.summary.max_end, q) {
                continue;
            }
            let req = r.decode()?;
            for rs in &req.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        if overlaps(span.start_time_unix_nano, span.end_time_unix_nano, q)
                            && !f(Visit::Span(rs, ss, span))
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
        for b in blocks.iter().rev() {
            if !f(Visit::NextBlock) {
                return Ok(());
            }
            if !overlaps(b.index.min_start, b.index.max_end, q) || !hints.admits(&b.index) {
                continue;
            }
            let file = b.open_file()?;
            let wanted: Vec<usize> = b
                .index
                .chunks
                .iter()
                .enumerate()
                .filter(|(_, cm)| overlaps(cm.min_start, cm.max_end, q))
                .map(|(ci, _)| ci)
                .collect();
            let mut stopped = false;
            b.for_chunks(&file, &wanted, &mut |_, chunk| {
                if !f(Visit::NextChunk) {
                    stopped = true;
                    return Ok(false);
                }
                let resources: Vec<ResourceSpans> = chunk
                    .resources
                    .iter()
                    .map(|r| ResourceSpans::decode(r.as_slice()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| StoreError::Decode(e.to_string()))?;
                let scopes: Vec<ScopeSpans> = chunk
                    .scopes
                    .iter()
                    .map(|r| ScopeSpans::decode(r.as_slice()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| StoreError::Decode(e.to_string()))?;
                let no_scope = ScopeSpans::default();
                let key = |k: &str| {
                    hints
                        .span_attributes
                        .as_ref()
                        .is_none_or(|ks| ks.iter().any(|x| x == k))
                };
                for row in columns::decode_with(&chunk, |_| true, &key)? {
                    let span = &row.span;
                    if let Some(rs) = resources.get(row.resource as usize)
                        && overlaps(span.start_time_unix_nano, span.end_time_unix_nano, q)
                    {
                        let ss = scopes.get(row.scope as usize).unwrap_or(&no_scope);
                        if !f(Visit::Span(rs, ss, span)) {
                            stopped = true;
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            })?;
            if stopped {
                return Ok(());
            }
        }
        Ok(())
    }

    pub fn search(
        &self,
        tenant: &TenantId,
        q: &SearchQuery,
    ) -> Result<Vec<TraceSummary>, StoreError> {
        let wanted_service = q
            .tags
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone());
        // Phase 1: traces with a matching span in the window.
        let limit = q.limit.max(1);
        let budget = (limit * 20).max(1000);
        let cands = self.candidates(
            tenant,
            q.start_ns,
            q.end_ns,
            &BlockHints {
                service: wanted_service,
                ..Default::default()
            },
            budget,
            &mut |rs, _, span| span_matches(span, rs, &q.tags),
        )?;
        // Phase 2: whole-trace summaries for the newest candidates, then the duration filter.
        let mut out = Vec::new();
        for (tid, _) in cands {
            let Some(trace) = self.find_trace(tenant, tid)? else {
                continue;
            };
            let mut agg = Agg::new();
            for rs in &trace {
                let svc = tv_model::service_name(rs.resource.as_ref()).unwrap_or("");
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        agg.add(s, svc);
                    }
                }
            }
            let dur = agg.end.saturating_sub(agg.start);
            if q.min_duration_ns.is_some_and(|m| dur < m)
                || q.max_duration_ns.is_some_and(|m| dur > m)
            {
                continue;
            }
            out.push(agg.summary(tid));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Attribute keys seen for `tenant` (resource and span attributes).
    pub fn tag_names(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let mut names: BTreeSet<String> = BTreeSet::new();
        for b in &blocks {
            names.extend(b.index.tags.iter().map(|t| t.key.clone()));
        }
        for r in head {
            for_each_attr(&r.decode()?, |k, _| {
                names.insert(k.to_owned());
            });
        }
        Ok(names.into_iter().collect())
    }

    /// Attribute keys by scope, of the blocks and WAL records overlapping `[start, end]`.
    pub fn scoped_tag_names(
        &self,
        tenant: &TenantId,
        start_ns: Option<u64>,
        end_ns: Option<u64>,
    ) -> Result<BTreeMap<TagScope, BTreeSet<String>>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let window = SearchQuery {
            start_ns,
            end_ns,
            ..Default::default()
        };
        let mut out: BTreeMap<TagScope, BTreeSet<String>> = BTreeMap::new();
        for b in &blocks {
            if !overlaps(b.index.min_start, b.index.max_end, &window) {
                continue;
            }
            for t in &b.index.tags {
                out.entry(TagScope::from_u32(t.scope))
                    .or_default()
                    .insert(t.key.clone());
            }
        }
        for r in head {
            if !overlaps(r.summary.min_start, r.summary.max_end, &window) {
                continue;
            }
            for_each_scoped_attr(&r.decode()?, |scope, k, _| {
                out.entry(scope).or_default().insert(k.to_owned());
            });
        }
        Ok(out)
    }

    /// Values of attribute `key` in `scope` (an unscoped `.key`: resource or span), with the
    /// type each value had (`string`, `int`, `float`, `bool`), at most `limit` of them.
    pub fn scoped_tag_values(
        &self,
        tenant: &TenantId,
        scopes: &[TagScope],
        key: &str,
        start_ns: Option<u64>,
        end_ns: Option<u64>,
        limit: usize,
    ) -> Result<BTreeSet<(String, &'static str)>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let window = SearchQuery {
            start_ns,
            end_ns,
            ..Default::default()
        };
        let mut values: BTreeSet<(String, &'static str)> = BTreeSet::new();
        for r in head {
            if values.len() >= limit {
                break;
            }
            if !overlaps(r.summary.min_start, r.summary.max_end, &window) {
                continue;
            }
            for_each_scoped_attr(&r.decode()?, |scope, k, v| {
                if k == key && scopes.contains(&scope) && values.len() < limit {
                    values.insert((any_value_to_string(v), value_type(v)));
                }
            });
        }
        for b in blocks.iter().rev() {
            if values.len() >= limit {
                break;
            }
            if !overlaps(b.index.min_start, b.index.max_end, &window) {
                continue;
            }
            for t in b.index.tags.iter().filter(|t| {
                t.key == key
                    && scopes
                        .iter()
                        .any(|s| TagScope::from_u32(t.scope).may_be(*s))
            }) {
                if values.len() >= limit {
                    break;
                }
                for v in b.tag_values_of(t)? {
                    if values.len() >= limit {
                        break;
                    }
                    let kind = guess_type(&v);
                    values.insert((v, kind));
                }
            }
        }
        Ok(values)
    }

    /// The services and their operations (span name and kind) in `[start, end]`: for a block
    /// written before operations were indexed, its span names under each of its services.
    pub fn operations(
        &self,
        tenant: &TenantId,
        start_ns: Option<u64>,
        end_ns: Option<u64>,
    ) -> Result<BTreeSet<(String, String, i32)>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let window = SearchQuery {
            start_ns,
            end_ns,
            ..Default::default()
        };
        let mut out: BTreeSet<(String, String, i32)> = BTreeSet::new();
        for b in &blocks {
            if !overlaps(b.index.min_start, b.index.max_end, &window) {
                continue;
            }
            if b.operations().is_empty() {
                for s in &b.index.services {
                    for n in &b.index.span_names {
                        out.insert((s.clone(), n.clone(), 0));
                    }
                }
            }
            for (service, name, kind) in b.operations().iter() {
                out.insert((service.to_owned(), name.to_owned(), kind));
            }
        }
        for r in head {
            if !overlaps(r.summary.min_start, r.summary.max_end, &window) {
                continue;
            }
            for rs in &r.decode()?.resource_spans {
                let svc = tv_model::service_name(rs.resource.as_ref()).unwrap_or("");
                for ss in &rs.scope_spans {
                    for sp in &ss.spans {
                        if out.len() < 100_000 {
                            out.insert((svc.to_owned(), sp.name.clone(), sp.kind));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Values seen for attribute `name` (bounded per block; see `block::MAX_TAG_VALUES`). A key
    /// with more values than a block keeps is read from the newest blocks' files until 1,000
    /// values are listed (its values are not held in memory).
    pub fn tag_values(&self, tenant: &TenantId, name: &str) -> Result<Vec<String>, StoreError> {
        let (blocks, head) = self.snapshot(tenant);
        let mut values: BTreeSet<String> = BTreeSet::new();
        for b in blocks.iter().rev() {
            for t in b.index.tags.iter().filter(|t| t.key == name) {
                if t.truncated && values.len() >= 1000 {
                    continue;
                }
                values.extend(b.tag_values_of(t)?);
            }
        }
        for r in head {
            for_each_attr(&r.decode()?, |k, v| {
                if k == name && values.len() < 1000 {
                    values.insert(v);
                }
            });
        }
        Ok(values.into_iter().collect())
    }
}

/// Every attribute of a request with where it stands.
fn for_each_scoped_attr(
    req: &ExportTraceServiceRequest,
    mut f: impl FnMut(TagScope, &str, &tv_model::otlp::AnyValue),
) {
    for rs in &req.resource_spans {
        for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
            if let Some(v) = &kv.value {
                f(TagScope::Resource, &kv.key, v);
            }
        }
        for ss in &rs.scope_spans {
            for kv in ss.scope.iter().flat_map(|s| &s.attributes) {
                if let Some(v) = &kv.value {
                    f(TagScope::Instrumentation, &kv.key, v);
                }
            }
            for s in &ss.spans {
                let groups = std::iter::once((TagScope::Span, &s.attributes))
                    .chain(s.events.iter().map(|e| (TagScope::Event, &e.attributes)))
                    .chain(s.links.iter().map(|l| (TagScope::Link, &l.attributes)));
                for (scope, attrs) in groups {
                    for kv in attrs {
                        if let Some(v) = &kv.value {
                            f(scope, &kv.key, v);
                        }
                    }
                }
            }
        }
    }
}

fn for_each_attr(req: &ExportTraceServiceRequest, mut f: impl FnMut(&str, String)) {
    for rs in &req.resource_spans {
        if let Some(r) = &rs.resource {
            for kv in &r.attributes {
                if let Some(v) = &kv.value {
                    f(&kv.key, any_value_to_string(v));
                }
            }
        }
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                for kv in &s.attributes {
                    if let Some(v) = &kv.value {
                        f(&kv.key, any_value_to_string(v));
                    }
                }
            }
        }
    }
}

fn collect_from_request(req: &ExportTraceServiceRequest, id: TraceId, col: &mut Collector) {
    for rs in &req.resource_spans {
        let mut rkey = None;
        for ss in &rs.scope_spans {
            let mut skey = None;
            for span in &ss.spans {
                if span.trace_id.as_slice() != id.0 {
                    continue;
                }
                let r = rkey.get_or_insert_with(|| resource_key(rs));
                let s = skey.get_or_insert_with(|| scope_key(ss));
                col.add(r, s, span.encode_to_vec());
            }
        }
    }
}

fn collect_from_blocks(
    blocks: &[Arc<BlockMeta>],
    id: TraceId,
    col: &mut Collector,
) -> Result<(), StoreError> {
    let prefix = id.prefix();
    for b in blocks {
        if !b.may_contain(prefix) {
            continue;
        }
        let file = b.open_file()?;
        for (ci, cm) in b.index.chunks.iter().enumerate() {
            if cm.first_trace.as_slice() > &id.0[..] || cm.last_trace.as_slice() < &id.0[..] {
                continue;
            }
            let chunk = b.read_chunk(&file, ci)?;
            for row in columns::decode(&chunk, |t| t == &id.0)? {
                let r = chunk.resources.get(row.resource as usize);
                let s = chunk.scopes.get(row.scope as usize);
                if let (Some(r), Some(s)) = (r, s) {
                    col.add(r, s, row.span.encode_to_vec());
                }
            }
        }
    }
    Ok(())
}

fn value_type(v: &tv_model::otlp::AnyValue) -> &'static str {
    use tv_model::otlp::any_value::Value;
    match v.value {
        Some(Value::IntValue(_)) => "int",
        Some(Value::DoubleValue(_)) => "float",
        Some(Value::BoolValue(_)) => "bool",
        _ => "string",
    }
}

/// The type of a value the block index keeps as text.
fn guess_type(v: &str) -> &'static str {
    if v.parse::<i64>().is_ok() {
        "int"
    } else if v.parse::<f64>().is_ok_and(f64::is_finite) && v.contains('.') {
        "float"
    } else if v == "true" || v == "false" {
        "bool"
    } else {
        "string"
    }
}

#[cfg(test)]
mod hint_tests {
    use super::*;
    use crate::format::{BlockIndex, TagValues};

    #[test]
    fn block_hints_skip_only_blocks_that_cannot_hold_a_match() {
        let index = BlockIndex {
            span_names: vec!["GET /a".into(), "POST /pay".into()],
            tags: vec![
                TagValues {
                    key: "db.system".into(),
                    values: vec!["postgres".into()],
                    truncated: false,
                    scope: TagScope::Span as u32,
                },
                TagValues {
                    key: "http.url".into(),
                    values: vec!["/x".into()],
                    truncated: true,
                    scope: TagScope::Span as u32,
                },
                // An older block: no scope kept.
                TagValues {
                    key: "service.name".into(),
                    values: vec!["shop".into()],
                    truncated: false,
                    scope: 0,
                },
            ],
            ..Default::default()
        };
        let span = || vec![TagScope::Span];
        let hint = |names: &[&str], attrs: &[(Vec<TagScope>, &str, &str)]| BlockHints {
            service: None,
            names: names.iter().map(|s| s.to_string()).collect(),
            attributes: attrs
                .iter()
                .map(|(s, k, v)| (s.clone(), k.to_string(), v.to_string()))
                .collect(),
            span_attributes: None,
        };
        assert!(hint(&[], &[]).admits(&index));
        assert!(hint(&["POST /pay"], &[]).admits(&index));
        assert!(!hint(&["GET /b"], &[]).admits(&index));
        assert!(hint(&[], &[(span(), "db.system", "postgres")]).admits(&index));
        assert!(!hint(&[], &[(span(), "db.system", "mysql")]).admits(&index));
        // Not in the index at all: no span has it.
        assert!(!hint(&[], &[(span(), "nope", "x")]).admits(&index));
        // A truncated value list proves nothing.
        assert!(hint(&[], &[(span(), "http.url", "/y")]).admits(&index));
        // Wrong scope: the event scope has no db.system.
        assert!(!hint(&[], &[(vec![TagScope::Event], "db.system", "postgres")]).admits(&index));
        // An unscoped tag of an older block may be a resource attribute.
        assert!(hint(&[], &[(vec![TagScope::Resource], "service.name", "shop")]).admits(&index));
        // A full name list may miss names.
        let full = BlockIndex {
            span_names: (0..10_000).map(|i| format!("n{i:05}")).collect(),
            ..Default::default()
        };
        assert!(hint(&["other"], &[]).admits(&full));
    }
}
