//! Notify: what follows a committed batch, none of which may refuse it any more: the service
//! graph, the behavioural stage (without waiting; a full queue drops the batch from that stage
//! only, counted), the accepted-span counters and the finding sinks.

use tv_detect::finding::Finding;
use tv_model::TenantId;
use tv_model::otlp::ExportTraceServiceRequest;

use crate::AppState;
use crate::detection::{Detection, Job};
use crate::graph::{ServiceGraph, SpanFact};
use crate::metrics::{Metrics, TransportLabels};

pub(crate) struct Notify<'a> {
    graph: &'a ServiceGraph,
    detection: &'a Detection,
    metrics: &'a Metrics,
}

/// What a committed batch tells the later stages, taken before the commit's wait.
pub(crate) struct Committed {
    pub tenant: TenantId,
    pub principal: String,
    pub received: u64,
    pub accepted: u64,
    pub graph: Vec<SpanFact>,
    /// The batch for the behavioural stage, when it runs.
    pub behaviour: Option<ExportTraceServiceRequest>,
    pub findings: Vec<Finding>,
}

impl<'a> Notify<'a> {
    pub(crate) fn of(state: &'a AppState) -> Self {
        Notify {
            graph: &state.graph,
            detection: &state.detection,
            metrics: &state.metrics,
        }
    }

    /// Whether the behavioural stage wants committed batches.
    pub(crate) fn wants_batches(&self) -> bool {
        self.detection.wants_stream()
    }

    pub(crate) fn committed(&self, c: Committed, transport: &'static str) {
        self.graph.add(&c.tenant, c.graph);
        if let Some(request) = c.behaviour {
            self.detection.submit(
                Job {
                    tenant: c.tenant,
                    principal: c.principal,
                    received_unix_nano: c.received,
                    request,
                },
                self.metrics,
            );
        }
        self.metrics
            .spans_accepted
            .get_or_create(&TransportLabels { transport })
            .inc_by(c.accepted);
        if !c.findings.is_empty() {
            self.metrics.record_findings(&c.findings);
            self.detection.emit(&c.findings);
        }
    }
}
