// The trace page: a waterfall (service colours, collapsible tree, critical path), the span's
// detail (attributes with what redaction and access control did to them, resource, events,
// links, status, findings) and verification of the span's receipt in this browser.
// Deep link to a span: /trace/<id>?span=<span id>. Rows are windowed, so a 10,000-span trace
// renders only what is on screen.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson } from "./api.js";
import { buildTrace, serviceHue, valueText } from "./model.js";
import { Marks, marks } from "./values.js";
import { duration, localTime, utcTime } from "./time.js";
import { VerifyPanel } from "./verifypanel.js";

const ROW = 28;
const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];
const STATUS = ["unset", "ok", "error"];

function spanParam() {
  return new URLSearchParams(location.search).get("span") || "";
}

function Time({ ms }) {
  return html`<time datetime=${new Date(ms).toISOString()} title=${utcTime(ms)}>${localTime(ms)}</time>`;
}

function AttrTable({ attrs, caption }) {
  if (!attrs || attrs.length === 0) return html`<p class="muted">None.</p>`;
  return html`<table class="attrs">
    <caption class="visually-hidden">${caption}</caption>
    <tbody>
      ${attrs.map((a) => {
        const text = valueText(a.value);
        return html`<tr>
          <th scope="row" class="mono">${a.key}</th>
          <td><span class="mono value">${text}</span> <${Marks} list=${marks(a.key, text)} /></td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

function Finding({ f }) {
  const d = f.detail || {};
  return html`<li class=${`finding sev-${f.severity}`}>
    <strong>${f.title}</strong> <span class="sev">${f.severity}</span>
    <span class="muted"> rule ${f.rule || "?"}</span>
    ${d.message && html`<div>${d.message}</div>`}
  </li>`;
}

function SpanDetail({ span, trace, traceId }) {
  const status = span.status ? STATUS[span.status.code || 0] || "unset" : "unset";
  const link = `/trace/${traceId}?span=${span.id}`;
  return html`<aside class="detail" aria-labelledby="span-title">
    <h2 id="span-title">${span.name}</h2>
    <p>
      <span class="svc" style=${`--hue:${serviceHue(span.service)}`}>${span.service}</span>
      · ${duration(span.end - span.start)} · <${Time} ms=${span.start} /> ·
      ${KINDS[span.kind || 0] || "unspecified"}
      ${span.critical && html` · <span class="crit-label">on the critical path</span>`}
    </p>
    <p class="mono small">span ${span.id}${span.parent ? ` · parent ${span.parent}` : " · root"}</p>
    <p><a href=${link}>Link to this span</a></p>
    <h3>Status</h3>
    <p class=${status === "error" ? "error" : ""}>${status}${span.status && span.status.message ? `: ${span.status.message}` : ""}</p>
    ${span.findings.length > 0 &&
    html`<h3>Findings</h3>
      <ul class="findings">${span.findings.map((f) => html`<${Finding} f=${f} />`)}</ul>
      <p><a href=${`/findings?trace=${traceId}`}>All findings on this trace</a></p>`}
    <h3>Attributes</h3>
    <${AttrTable} attrs=${span.attributes} caption="Span attributes" />
    <h3>Resource</h3>
    <${AttrTable} attrs=${span.resource} caption="Resource attributes" />
    ${span.scope && span.scope.name && html`<p class="muted small">Instrumentation scope: ${span.scope.name} ${span.scope.version || ""}</p>`}
    <h3>Events</h3>
    ${span.events.length === 0
      ? html`<p class="muted">None.</p>`
      : html`<ul class="events">
          ${span.events.map(
            (e) => html`<li>
              <strong>${e.name}</strong> at +${duration(Number(e.timeUnixNano) / 1e6 - trace.start)}
              <${AttrTable} attrs=${e.attributes} caption=${`Attributes of event ${e.name}`} />
            </li>`,
          )}
        </ul>`}
    <h3>Links</h3>
    ${span.links.length === 0
      ? html`<p class="muted">None.</p>`
      : html`<ul>
          ${span.links.map(
            (l) => html`<li>
              <a href=${`/trace/${l.traceId}?span=${l.spanId}`} class="mono">${l.traceId.slice(0, 16)}… / ${l.spanId}</a>
              <${AttrTable} attrs=${l.attributes} caption="Link attributes" />
            </li>`,
          )}
        </ul>`}
    <${VerifyPanel} traceId=${traceId} spanId=${span.id} key=${span.id} />
  </aside>`;
}

function Waterfall({ trace, selected, onSelect, collapsed, onToggle }) {
  const box = useRef(null);
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(600);
  const rows = useMemo(() => {
    const out = [];
    let skipDepth = Infinity;
    for (const s of trace.spans) {
      if (s.depth > skipDepth) continue;
      skipDepth = collapsed.has(s.id) ? s.depth : Infinity;
      out.push(s);
    }
    return out;
  }, [trace, collapsed]);
  const active = Math.max(0, rows.findIndex((s) => s.id === selected));
  const total = Math.max(trace.end - trace.start, 1e-6);

  useLayoutEffect(() => {
    if (box.current) setHeight(box.current.clientHeight || 600);
  }, []);
  // Keep the selected row on screen.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const top = active * ROW;
    if (top < el.scrollTop) el.scrollTop = top;
    else if (top + ROW > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW - el.clientHeight;
  }, [active, rows]);

  const first = Math.max(0, Math.floor(scroll / ROW) - 10);
  const last = Math.min(rows.length, Math.ceil((scroll + height) / ROW) + 10);

  const onKeyDown = (e) => {
    const s = rows[active];
    let to = null;
    if (e.key === "ArrowDown") to = Math.min(active + 1, rows.length - 1);
    else if (e.key === "ArrowUp") to = Math.max(active - 1, 0);
    else if (e.key === "Home") to = 0;
    else if (e.key === "End") to = rows.length - 1;
    else if (e.key === "PageDown") to = Math.min(active + Math.floor(height / ROW), rows.length - 1);
    else if (e.key === "PageUp") to = Math.max(active - Math.floor(height / ROW), 0);
    else if (e.key === "ArrowRight" && s && s.children.length && collapsed.has(s.id)) onToggle(s.id);
    else if (e.key === "ArrowLeft" && s) {
      if (s.children.length && !collapsed.has(s.id)) onToggle(s.id);
      else if (s.parent && trace.byId.has(s.parent)) onSelect(s.parent);
    } else return;
    e.preventDefault();
    if (to !== null && rows[to]) onSelect(rows[to].id);
  };

  return html`<div class="waterfall">
    <div class="wf-head" aria-hidden="true">
      <span>Service and operation</span>
      <span class="ticks">
        ${[0, 0.25, 0.5, 0.75, 1].map((f) => html`<span style=${`left:${f * 100}%`}>${duration(total * f)}</span>`)}
      </span>
    </div>
    <div
      class="wf-rows"
      ref=${box}
      role="tree"
      aria-label=${`Spans of the trace (${trace.spans.length}); arrows move, left and right fold`}
      tabindex="0"
      aria-activedescendant=${rows[active] ? `row-${rows[active].id}` : undefined}
      onKeyDown=${onKeyDown}
      onScroll=${(e) => setScroll(e.currentTarget.scrollTop)}
    >
      <div style=${`height:${rows.length * ROW}px;position:relative`}>
        ${rows.slice(first, last).map((s, i) => {
          const idx = first + i;
          const left = ((s.start - trace.start) / total) * 100;
          const width = Math.max(((s.end - s.start) / total) * 100, 0.15);
          const isErr = s.status && s.status.code === 2;
          const hasKids = s.children.length > 0;
          const open = hasKids && !collapsed.has(s.id);
          return html`<div
            id=${`row-${s.id}`}
            role="treeitem"
            aria-level=${s.depth + 1}
            aria-expanded=${hasKids ? (open ? "true" : "false") : undefined}
            aria-selected=${s.id === selected ? "true" : "false"}
            class=${`wf-row${s.id === selected ? " selected" : ""}${s.critical ? " critical" : ""}`}
            style=${`top:${idx * ROW}px;--hue:${serviceHue(s.service)}`}
            onClick=${() => onSelect(s.id)}
            data-span=${s.id}
          >
            <span class="wf-label" style=${`padding-left:${Math.min(s.depth, 40) * 12}px`}>
              ${hasKids
                ? html`<button
                    type="button"
                    class="fold"
                    tabindex="-1"
                    aria-label=${open ? "Collapse" : "Expand"}
                    onClick=${(e) => {
                      e.stopPropagation();
                      onToggle(s.id);
                    }}
                  >${open ? "▾" : "▸"}</button>`
                : html`<span class="fold"></span>`}
              <span class="svc-dot"></span>
              <span class="svc-name">${s.service}</span>
              <span class="op">${s.name}</span>
              ${isErr && html`<span class="badge err" title="status error">error</span>`}
              ${s.findings.length > 0 &&
              html`<span class=${`badge sev-${s.findings[0].severity}`} title=${s.findings.map((f) => f.title).join("; ")}
                >⚑ ${s.findings.length}</span
              >`}
            </span>
            <span class="wf-track">
              <span class="wf-bar" style=${`left:${left}%;width:${width}%`}></span>
              <span class="wf-dur" style=${`left:${Math.min(left + width, 92)}%`}>${duration(s.end - s.start)}</span>
            </span>
          </div>`;
        })}
      </div>
    </div>
  </div>`;
}

export function TracePage({ traceId }) {
  const [trace, setTrace] = useState(null);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(spanParam());
  const [collapsed, setCollapsed] = useState(new Set());

  useEffect(() => {
    setTrace(null);
    setError(null);
    getJson(`/api/traces/${traceId}`)
      .then((doc) => {
        const t = buildTrace(doc);
        if (t.spans.length === 0) throw new Error("The trace has no spans you may read.");
        setTrace(t);
        const want = spanParam();
        setSelected(t.byId.has(want) ? want : t.spans[0].id);
      })
      .catch((e) => setError(e.status === 404 ? "No such trace (or none you may read)." : e.message));
  }, [traceId]);

  useEffect(() => {
    if (trace) requestAnimationFrame(() => performance.mark("tv:trace-rendered"));
  }, [trace]);

  const select = (id) => {
    setSelected(id);
    history.replaceState(null, "", `/trace/${traceId}?span=${id}`);
  };
  const toggle = (id) => {
    const next = new Set(collapsed);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setCollapsed(next);
  };

  if (error) return html`<section><h1>Trace ${traceId}</h1><p class="error" role="alert">${error}</p></section>`;
  if (!trace) return html`<section><h1>Trace ${traceId}</h1><p class="muted" role="status">Loading…</p></section>`;
  const span = trace.byId.get(selected) || trace.spans[0];
  const root = trace.roots[0];
  const errors = trace.spans.filter((s) => s.status && s.status.code === 2).length;
  return html`<section class="trace-page" aria-labelledby="trace-title">
    <h1 id="trace-title">${root.service}: ${root.name}</h1>
    <p class="summary">
      <span class="mono">${traceId}</span> · <${Time} ms=${trace.start} /> · ${duration(trace.end - trace.start)} ·
      <span data-testid="span-count">${trace.spans.length} spans</span> · ${trace.services.length} services
      ${errors > 0 && html` · <span class="error">${errors} errors</span>`}
      ${trace.findings.length > 0 && html` · <span class="badge sev-high">${trace.findings.length} findings</span>`}
    </p>
    <p class="legend muted small">
      ${trace.services.map((s) => html`<span class="svc" style=${`--hue:${serviceHue(s)}`}>${s}</span> `)}
      <span class="crit-label">outlined: critical path</span>
    </p>
    <div class="trace-layout">
      <${Waterfall} trace=${trace} selected=${span.id} onSelect=${select} collapsed=${collapsed} onToggle=${toggle} />
      <${SpanDetail} span=${span} trace=${trace} traceId=${traceId} />
    </div>
  </section>`;
}
