// A trace as the waterfall shows it: spans with their service, times in milliseconds, a tree
// (children by start time), depth-first order, the critical path, and the detection findings
// stored on the trace (spans of the reserved `tracevault.findings` service) moved onto the
// spans they are about.
import { nanosToMs } from "./time.js";

export const FINDINGS_SERVICE = "tracevault.findings";

/** An OTLP/JSON AnyValue as text. */
export function valueText(v) {
  if (v === null || v === undefined) return "";
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return String(v.intValue);
  if ("doubleValue" in v) return String(v.doubleValue);
  if ("boolValue" in v) return String(v.boolValue);
  if ("bytesValue" in v) return `base64:${v.bytesValue}`;
  if ("arrayValue" in v) return `[${(v.arrayValue.values || []).map(valueText).map(JSON.stringify).join(", ")}]`;
  if ("kvlistValue" in v)
    return `{${(v.kvlistValue.values || []).map((kv) => `${kv.key}: ${JSON.stringify(valueText(kv.value))}`).join(", ")}}`;
  return "";
}

function attr(attrs, key) {
  const a = (attrs || []).find((x) => x.key === key);
  return a ? valueText(a.value) : undefined;
}

/** Builds the trace model from `GET /api/traces/<id>` (Tempo v1 `batches`, or OTLP `resourceSpans`). */
export function buildTrace(doc) {
  const batches = doc.batches || doc.resourceSpans || (doc.trace && doc.trace.resourceSpans) || [];
  const spans = [];
  const findings = [];
  for (const b of batches) {
    const resource = (b.resource && b.resource.attributes) || [];
    const service = attr(resource, "service.name") || "(unknown service)";
    for (const ss of b.scopeSpans || []) {
      for (const s of ss.spans || []) {
        if (service === FINDINGS_SERVICE) {
          let detail = null;
          try {
            detail = JSON.parse(attr(s.attributes, "tracevault.finding") || "null");
          } catch {
            detail = null;
          }
          findings.push({
            parent: s.parentSpanId,
            id: s.spanId,
            title: s.name.replace(/^finding: /, ""),
            rule: attr(s.attributes, "tracevault.finding.rule"),
            severity: attr(s.attributes, "tracevault.finding.severity") || "unknown",
            detail,
          });
          continue;
        }
        spans.push({
          id: s.spanId,
          parent: s.parentSpanId || "",
          name: s.name,
          kind: s.kind,
          service,
          resource,
          scope: ss.scope || {},
          attributes: s.attributes || [],
          events: s.events || [],
          links: s.links || [],
          status: s.status || null,
          start: nanosToMs(s.startTimeUnixNano),
          end: nanosToMs(s.endTimeUnixNano),
          startNanos: s.startTimeUnixNano,
          children: [],
          findings: [],
          depth: 0,
          critical: false,
        });
      }
    }
  }
  const byId = new Map(spans.map((s) => [s.id, s]));
  const roots = [];
  for (const s of spans) {
    const p = s.parent && byId.get(s.parent);
    if (p && p !== s) p.children.push(s);
    else roots.push(s);
  }
  for (const f of findings) {
    const s = byId.get(f.parent);
    if (s) s.findings.push(f);
  }
  const byStart = (a, b) => a.start - b.start || (a.id < b.id ? -1 : 1);
  roots.sort(byStart);
  for (const s of spans) s.children.sort(byStart);

  // Depth-first order, iteratively (deep traces must not overflow the stack).
  const order = [];
  const stack = roots.slice().reverse().map((s) => [s, 0]);
  const seen = new Set();
  while (stack.length) {
    const [s, d] = stack.pop();
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    s.depth = d;
    order.push(s);
    for (let i = s.children.length - 1; i >= 0; i--) stack.push([s.children[i], d + 1]);
  }
  for (const r of roots) markCritical(r);

  const start = Math.min(...spans.map((s) => s.start));
  const end = Math.max(...spans.map((s) => s.end));
  const services = [...new Set(spans.map((s) => s.service))].sort();
  return { spans: order, byId, roots, findings, start, end, services, orphanFindings: findings.filter((f) => !byId.has(f.parent)) };
}

/**
 * The critical path under `root`: walking back from the span's end, the child that finished
 * last before the cursor was what the span waited for; its own critical path is on the path,
 * and the cursor moves to its start.
 */
function markCritical(root) {
  const work = [root];
  while (work.length) {
    const span = work.pop();
    span.critical = true;
    let cursor = span.end;
    const kids = span.children.slice().sort((a, b) => b.end - a.end);
    for (const c of kids) {
      if (c.end <= cursor + 1e-6 && c.end > span.start) {
        work.push(c);
        cursor = c.start;
      }
    }
  }
}

/** A colour per service, stable across loads. */
export function serviceHue(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h % 360;
}
