// Search: service and operation pickers, tag filters, a duration and a time range, and a
// TraceQL box (the query that runs; the pickers write it); results as a duration-over-time
// scatter plot and a list. The query is in the URL, so a search can be shared.
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { html } from "./html.js";
import { getJson, qs } from "./api.js";
import { Combobox } from "./combobox.js";
import { composeQuery, suggestTags, suggestTraceQL } from "./suggest.js";
import { duration, localTime, nanosToMs, utcTime } from "./time.js";
import { navigate } from "./nav.js";

const RANGES = [
  ["15m", "Last 15 minutes", 900],
  ["1h", "Last hour", 3600],
  ["6h", "Last 6 hours", 21600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 604800],
  ["30d", "Last 30 days", 2592000],
];

function params() {
  const u = new URLSearchParams(location.search);
  return {
    q: u.get("q") || "{}",
    range: RANGES.some((r) => r[0] === u.get("range")) ? u.get("range") : "1h",
    limit: Math.min(Math.max(Number(u.get("limit")) || 20, 1), 500),
  };
}

function useServices() {
  const [services, setServices] = useState([]);
  useEffect(() => {
    getJson("/jaeger/api/services")
      .then((r) => setServices((r.data || []).slice().sort()))
      .catch(() => setServices([]));
  }, []);
  return services;
}

function Scatter({ traces }) {
  const el = useRef(null);
  useEffect(() => {
    if (!el.current || traces.length === 0) return undefined;
    const pts = traces
      .map((t) => ({ x: nanosToMs(t.startTimeUnixNano) / 1000, y: t.durationMs || 0, id: t.traceID }))
      .sort((a, b) => a.x - b.x);
    const styles = getComputedStyle(document.documentElement);
    const fg = styles.getPropertyValue("--fg").trim() || "#222";
    const accent = styles.getPropertyValue("--accent").trim() || "#2563eb";
    const plot = new uPlot(
      {
        width: Math.max(el.current.clientWidth, 300),
        height: 180,
        legend: { show: false },
        cursor: { points: { size: 10 }, drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [
          { stroke: fg, grid: { stroke: "rgba(128,128,128,.2)" } },
          { stroke: fg, label: "duration (ms)", grid: { stroke: "rgba(128,128,128,.2)" } },
        ],
        series: [
          {},
          {
            label: "duration",
            stroke: accent,
            paths: () => null,
            points: { show: true, size: 8, fill: accent },
          },
        ],
      },
      [pts.map((p) => p.x), pts.map((p) => p.y)],
      el.current,
    );
    const click = () => {
      const i = plot.cursor.idx;
      if (i !== null && i !== undefined && pts[i]) navigate(`/trace/${pts[i].id}`);
    };
    plot.over.addEventListener("click", click);
    return () => plot.destroy();
  }, [traces]);
  return html`<figure class="scatter">
    <div ref=${el} role="img" aria-label=${`Duration over time of ${traces.length} traces`}></div>
    <figcaption class="muted">Trace duration over time; click a point to open its trace.</figcaption>
  </figure>`;
}

export function SearchPage() {
  const initial = params();
  const services = useServices();
  const [service, setService] = useState("");
  const [operations, setOperations] = useState([]);
  const [operation, setOperation] = useState("");
  const [tags, setTags] = useState("");
  const [minDuration, setMin] = useState("");
  const [maxDuration, setMax] = useState("");
  const [q, setQ] = useState(initial.q);
  const [range, setRange] = useState(initial.range);
  const [limit, setLimit] = useState(initial.limit);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [searchKey, setSearchKey] = useState(location.search);

  // The pickers write the query.
  const pick = (patch) => {
    const next = { service, operation, tags, minDuration, maxDuration, ...patch };
    setQ(composeQuery(next));
  };

  useEffect(() => {
    setOperations([]);
    if (!service) return;
    getJson(`/jaeger/api/services/${encodeURIComponent(service)}/operations`)
      .then((r) => setOperations((r.data || []).map((o) => o.name).sort()))
      .catch(() => setOperations([]));
  }, [service]);

  // Run the search in the URL (on load, and on every submitted search).
  useEffect(() => {
    const p = params();
    setQ(p.q);
    setRange(p.range);
    setLimit(p.limit);
    const secs = RANGES.find((r) => r[0] === p.range)[2];
    const end = Math.ceil(Date.now() / 1000);
    const ctrl = new AbortController();
    setBusy(true);
    setError(null);
    setResult(null);
    const started = performance.now();
    getJson(`/api/search${qs({ q: p.q, limit: p.limit, start: end - secs, end })}`, { signal: ctrl.signal })
      .then((r) => {
        setResult({ traces: r.traces || [], ms: performance.now() - started });
        performance.mark("tv:search-rendered");
      })
      .catch((e) => {
        if (e.name !== "AbortError") {
          setResult(null);
          setError(e.message);
        }
      })
      .finally(() => setBusy(false));
    return () => ctrl.abort();
  }, [searchKey]);

  useEffect(() => {
    const on = () => setSearchKey(location.search);
    window.addEventListener("tv:navigate", on);
    window.addEventListener("popstate", on);
    return () => {
      window.removeEventListener("tv:navigate", on);
      window.removeEventListener("popstate", on);
    };
  }, []);

  const submit = (e) => {
    e.preventDefault();
    const to = `/search${qs({ q, range, limit })}`;
    if (to === location.pathname + location.search) setSearchKey(`${location.search}#${Date.now()}`);
    else navigate(to);
  };

  const traces = result ? result.traces : [];
  return html`<section aria-labelledby="search-title">
    <h1 id="search-title">Search traces</h1>
    <form class="search" onSubmit=${submit}>
      <div class="pickers">
        <div>
          <label for="service">Service</label>
          <select
            id="service"
            value=${service}
            onChange=${(e) => {
              setService(e.currentTarget.value);
              setOperation("");
              pick({ service: e.currentTarget.value, operation: "" });
            }}
          >
            <option value="">Any service</option>
            ${services.map((s) => html`<option value=${s}>${s}</option>`)}
          </select>
        </div>
        <div>
          <label for="operation">Operation</label>
          <select
            id="operation"
            value=${operation}
            disabled=${!service}
            onChange=${(e) => {
              setOperation(e.currentTarget.value);
              pick({ operation: e.currentTarget.value });
            }}
          >
            <option value="">Any operation</option>
            ${operations.map((o) => html`<option value=${o}>${o}</option>`)}
          </select>
        </div>
        <${Combobox}
          id="tags"
          label="Tags"
          placeholder="http.response.status_code=500 user.id=42"
          value=${tags}
          onInput=${(v) => {
            setTags(v);
            pick({ tags: v });
          }}
          suggest=${suggestTags}
        />
        <div>
          <label for="min-duration">Min duration</label>
          <input
            id="min-duration"
            placeholder="e.g. 100ms"
            value=${minDuration}
            pattern="[0-9.]+(ns|us|µs|ms|s|m|h)"
            onInput=${(e) => {
              setMin(e.currentTarget.value);
              pick({ minDuration: e.currentTarget.value });
            }}
          />
        </div>
        <div>
          <label for="max-duration">Max duration</label>
          <input
            id="max-duration"
            placeholder="e.g. 2s"
            value=${maxDuration}
            pattern="[0-9.]+(ns|us|µs|ms|s|m|h)"
            onInput=${(e) => {
              setMax(e.currentTarget.value);
              pick({ maxDuration: e.currentTarget.value });
            }}
          />
        </div>
        <div>
          <label for="range">Time range</label>
          <select id="range" value=${range} onChange=${(e) => setRange(e.currentTarget.value)}>
            ${RANGES.map(([v, label]) => html`<option value=${v}>${label}</option>`)}
          </select>
        </div>
        <div>
          <label for="limit">Limit</label>
          <input
            id="limit"
            type="number"
            min="1"
            max="500"
            value=${limit}
            onInput=${(e) => setLimit(e.currentTarget.value)}
          />
        </div>
      </div>
      <div class="query">
        <${Combobox}
          id="traceql"
          label="TraceQL"
          value=${q}
          onInput=${setQ}
          suggest=${suggestTraceQL}
          describedBy="traceql-help"
        />
        <button type="submit" class="primary" disabled=${busy}>Search</button>
      </div>
      <p id="traceql-help" class="muted small">
        For example <code>{ resource.service.name = "cart" && duration > 100ms }</code>. Press ↓
        for suggestions of scopes, attribute names and values.
      </p>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result &&
    html`<div class="results" aria-live="polite">
      <p class="muted" data-testid="result-count">
        ${traces.length} ${traces.length === 1 ? "trace" : "traces"} (${Math.round(result.ms)} ms)
      </p>
      ${traces.length > 0 && html`<${Scatter} traces=${traces} />`}
      <table class="list">
        <caption class="visually-hidden">Traces found</caption>
        <thead>
          <tr><th scope="col">Trace</th><th scope="col">Root service</th><th scope="col">Root operation</th><th scope="col">Spans matched</th><th scope="col">Start</th><th scope="col">Duration</th></tr>
        </thead>
        <tbody>
          ${traces.map((t) => {
            const ms = nanosToMs(t.startTimeUnixNano);
            const matched = (t.spanSets || []).reduce((n, s) => n + (s.matched || 0), 0);
            return html`<tr>
              <td><a href=${`/trace/${t.traceID}`} class="mono">${t.traceID.slice(0, 16)}…</a></td>
              <td>${t.rootServiceName || html`<span class="muted">(not received)</span>`}</td>
              <td>${t.rootTraceName || ""}</td>
              <td>${matched}</td>
              <td><time datetime=${new Date(ms).toISOString()} title=${utcTime(ms)}>${localTime(ms)}</time></td>
              <td>${duration(t.durationMs || 0)}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>`}
  </section>`;
}
