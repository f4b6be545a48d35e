// The service map: calls between services (the dependency graph the server keeps at ingest),
// edges coloured by error rate, and edges that detection flagged as new (a call never seen while
// behaviour was learned) drawn apart. The same edges are listed in a table (for screen readers,
// and to sort).
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson, qs } from "./api.js";
import { Refused } from "./refusal.js";
import { serviceHue } from "./model.js";

const RANGES = [
  ["1h", "Last hour", 3600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 604800],
];
const NODE_W = 150;
const NODE_H = 34;
const COL = 230;
const ROW = 70;

/** Columns by longest distance from a service nobody calls (cycles broken where first met). */
function layout(edges) {
  const nodes = [...new Set(edges.flatMap((e) => [e.parent, e.child]))].sort();
  const out = new Map(nodes.map((n) => [n, []]));
  const indeg = new Map(nodes.map((n) => [n, 0]));
  for (const e of edges) {
    if (e.parent === e.child) continue;
    out.get(e.parent).push(e.child);
    indeg.set(e.child, indeg.get(e.child) + 1);
  }
  const layer = new Map();
  const queue = nodes.filter((n) => indeg.get(n) === 0);
  if (queue.length === 0 && nodes.length) queue.push(nodes[0]);
  for (const n of queue) layer.set(n, 0);
  for (let i = 0; i < queue.length; i++) {
    const n = queue[i];
    for (const c of out.get(n)) {
      if (!layer.has(c)) {
        layer.set(c, layer.get(n) + 1);
        queue.push(c);
      }
    }
    if (i === queue.length - 1) {
      const left = nodes.find((x) => !layer.has(x));
      if (left) {
        layer.set(left, 0);
        queue.push(left);
      }
    }
  }
  const cols = [];
  for (const n of nodes) {
    const l = layer.get(n) || 0;
    (cols[l] = cols[l] || []).push(n);
  }
  const pos = new Map();
  cols.forEach((col, x) => col.forEach((n, y) => pos.set(n, { x: 20 + x * COL, y: 20 + y * ROW })));
  const width = 40 + Math.max(1, cols.length) * COL;
  const height = 40 + Math.max(1, ...cols.map((c) => c.length)) * ROW;
  return { pos, width, height, nodes };
}

function edgeColour(e) {
  if (e.flagged) return "var(--warn)";
  const rate = e.callCount ? e.errorCount / e.callCount : 0;
  if (rate === 0) return "var(--muted)";
  return rate >= 0.05 ? "var(--bad)" : "#e08080";
}

export function MapPage() {
  const [range, setRange] = useState("24h");
  const [edges, setEdges] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    const secs = RANGES.find((r) => r[0] === range)[2];
    const endMs = Date.now();
    setEdges(null);
    setError(null);
    Promise.all([
      getJson(`/jaeger/api/dependencies${qs({ endTs: endMs, lookback: secs * 1000 })}`),
      // New edges flagged by detection (investigators and admins may read findings).
      getJson(`/api/findings${qs({ rule: "tv-behaviour-new-edge", start: Math.floor(endMs / 1000) - secs, limit: 1000 })}`).catch(
        () => ({ findings: [] }),
      ),
    ])
      .then(([deps, found]) => {
        const flagged = new Set();
        for (const f of found.findings || []) {
          const ev = Object.fromEntries((f.evidences || []).map((x) => [x.data.field, x.data.value]));
          if (ev.caller && ev.callee) flagged.add(`${ev.caller}\u0000${ev.callee}`);
        }
        setEdges((deps.data || []).map((e) => ({ ...e, flagged: flagged.has(`${e.parent}\u0000${e.child}`) })));
      })
      .catch((e) => setError(e));
  }, [range]);

  const g = edges ? layout(edges) : null;
  return html`<section aria-labelledby="map-title">
    <h1 id="map-title">Service map</h1>
    <div class="pickers">
      <div>
        <label for="m-range">Time range</label>
        <select id="m-range" value=${range} onChange=${(e) => setRange(e.currentTarget.value)}>
          ${RANGES.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        </select>
      </div>
    </div>
    <p class="legend small">
      <span class="edge-key flagged">new call flagged by detection</span>
      <span class="edge-key errors">calls with errors</span>
      <span class="edge-key plain">calls without errors</span>
    </p>
    ${error && html`<${Refused} error=${error} who="readers, investigators and admins" />`}
    ${edges && edges.length === 0 && html`<p class="muted">No calls between services in this range.</p>`}
    ${g &&
    edges.length > 0 &&
    html`<div class="map-box">
      <svg width=${g.width} height=${g.height} role="img" aria-label=${`Service map: ${g.nodes.length} services, ${edges.length} calls between them; listed in the table below`}>
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" fill="context-stroke" />
          </marker>
        </defs>
        ${edges.map((e) => {
          const a = g.pos.get(e.parent);
          const b = g.pos.get(e.child);
          if (!a || !b || e.parent === e.child) return null;
          const x1 = a.x + NODE_W;
          const y1 = a.y + NODE_H / 2;
          const back = b.x <= a.x;
          const x2 = back ? b.x + NODE_W / 2 : b.x;
          const y2 = back ? b.y + (b.y >= a.y ? 0 : NODE_H) : b.y + NODE_H / 2;
          const mx = (x1 + x2) / 2;
          return html`<path
            class=${`edge${e.flagged ? " flagged" : ""}`}
            data-edge=${`${e.parent}->${e.child}`}
            d=${`M${x1},${y1} C${mx + 40},${y1} ${mx - 40},${y2} ${x2},${y2}`}
            stroke=${edgeColour(e)}
            stroke-width=${e.flagged ? 4 : 1.5 + Math.min(3, Math.log10(e.callCount + 1))}
            stroke-dasharray=${e.flagged ? "8 5" : undefined}
            fill="none"
            marker-end="url(#arrow)"
          ><title>${e.parent} → ${e.child}: ${e.callCount} calls, ${e.errorCount} errors${e.flagged ? ", flagged as a new call" : ""}</title></path>`;
        })}
        ${g.nodes.map((n) => {
          const p = g.pos.get(n);
          return html`<g class="node" transform=${`translate(${p.x},${p.y})`}>
            <rect width=${NODE_W} height=${NODE_H} rx="6" fill="var(--bg2)" stroke=${`hsl(${serviceHue(n)} 70% 45%)`} stroke-width="3" />
            <text x=${NODE_W / 2} y=${NODE_H / 2 + 5} text-anchor="middle" fill="var(--fg)">${n.length > 18 ? n.slice(0, 17) + "…" : n}</text>
          </g>`;
        })}
      </svg>
    </div>`}
    ${edges &&
    edges.length > 0 &&
    html`<table class="list" data-testid="edges">
      <caption>Calls between services</caption>
      <thead><tr><th scope="col">Caller</th><th scope="col">Callee</th><th scope="col">Calls</th><th scope="col">Errors</th><th scope="col">Flagged</th></tr></thead>
      <tbody>
        ${edges
          .slice()
          .sort((a, b) => Number(b.flagged) - Number(a.flagged) || b.callCount - a.callCount)
          .map(
            (e) => html`<tr class=${e.flagged ? "flagged-row" : ""}>
              <td>${e.parent}</td><td>${e.child}</td><td>${e.callCount}</td>
              <td>${e.errorCount}${e.callCount ? ` (${((100 * e.errorCount) / e.callCount).toFixed(1)}%)` : ""}</td>
              <td>${e.flagged ? html`<a href=${`/findings?rule=tv-behaviour-new-edge&service=${encodeURIComponent(e.child)}`}>new call</a>` : ""}</td>
            </tr>`,
          )}
      </tbody>
    </table>`}
  </section>`;
}
