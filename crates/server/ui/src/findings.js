// Findings: detection findings (OCSF Detection Findings) with severity, rule, service and
// counts over time; filters; a finding's OCSF record and its traces; and, for admins, the
// credentials that automated responses quarantined or throttled, with release.
import { useEffect, useMemo, useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson, postJson, qs } from "./api.js";
import { TimeChart, bucketize } from "./chart.js";
import { Refused } from "./refusal.js";
import { localTime, utcTime } from "./time.js";

const SEVERITIES = ["informational", "low", "medium", "high", "critical"];
const RANGES = [
  ["1h", "Last hour", 3600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 604800],
  ["30d", "Last 30 days", 2592000],
];

function When({ ms }) {
  return html`<time datetime=${new Date(ms).toISOString()} title=${utcTime(ms)}>${localTime(ms)}</time>`;
}

function Responses({ me }) {
  const [list, setList] = useState(null);
  const [error, setError] = useState(null);
  const [msg, setMsg] = useState(null);
  const load = () =>
    getJson("/api/admin/responses")
      .then((r) => setList(r.responses || []))
      .catch((e) => setError(e));
  useEffect(() => {
    if (me.role === "admin") load();
  }, []);
  if (me.role !== "admin") return null;
  const release = async (id) => {
    try {
      await postJson("/api/admin/responses/release", { id });
      setMsg(`Released ${id}.`);
      load();
    } catch (e) {
      setMsg(e.message);
    }
  };
  return html`<section aria-labelledby="responses-title">
    <h2 id="responses-title">Quarantined and throttled credentials</h2>
    ${error && html`<${Refused} error=${error} who="admins" />`}
    ${list && list.length === 0 && html`<p class="muted">None: no automated response has been taken.</p>`}
    ${list &&
    list.length > 0 &&
    html`<table class="list">
      <thead><tr><th scope="col">Action</th><th scope="col">Credential</th><th scope="col">Tenant</th><th scope="col">Because of</th><th scope="col">Since</th><th scope="col"><span class="visually-hidden">Release</span></th></tr></thead>
      <tbody>
        ${list.map(
          (r) => html`<tr>
            <td>${r.action}</td>
            <td class="mono">${r.principal}</td>
            <td>${r.tenant}</td>
            <td class="mono">${r.rule}</td>
            <td><${When} ms=${r.created_unix_ms} /></td>
            <td>
              ${r.released_unix_ms
                ? html`<span class="muted">released <${When} ms=${r.released_unix_ms} /> by ${r.released_by}</span>`
                : r.action !== "tag" && html`<button type="button" onClick=${() => release(r.id)}>Release ${r.principal}</button>`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    ${msg && html`<p role="status">${msg}</p>`}
  </section>`;
}

export function FindingsPage({ me }) {
  const u = new URLSearchParams(location.search);
  const [range, setRange] = useState(RANGES.some((r) => r[0] === u.get("range")) ? u.get("range") : "24h");
  const [minSeverity, setMin] = useState(SEVERITIES.includes(u.get("min_severity")) ? u.get("min_severity") : "informational");
  const [rule, setRule] = useState(u.get("rule") || "");
  const [service, setService] = useState(u.get("service") || "");
  const trace = (u.get("trace") || "").toLowerCase();
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null);

  useEffect(() => {
    const secs = RANGES.find((r) => r[0] === range)[2];
    const end = Math.ceil(Date.now() / 1000);
    setData(null);
    setError(null);
    getJson(`/api/findings${qs({ start: end - secs, end, limit: 1000, min_severity: minSeverity, rule })}`)
      .then((r) => setData({ ...r, start: end - secs, end }))
      .catch((e) => setError(e));
    const q = qs({ range, min_severity: minSeverity === "informational" ? "" : minSeverity, rule, service, trace });
    history.replaceState(null, "", `/findings${q}`);
  }, [range, minSeverity, rule]);

  const findings = useMemo(() => {
    if (!data) return [];
    return (data.findings || []).filter(
      (f) =>
        (!service || (f.resources || []).some((r) => r.name === service)) &&
        (!trace || ((f.unmapped || {}).trace_id || "") === trace),
    );
  }, [data, service, trace]);
  const rules = data ? [...new Set((data.groups || []).map((g) => g.rule))].sort() : [];
  const services = data ? [...new Set((data.groups || []).map((g) => g.service).filter(Boolean))].sort() : [];
  const chart = useMemo(
    () => (data ? bucketize(findings, (f) => f.time / 1000, (f) => f.severity.toLowerCase(), data.start, data.end) : null),
    [findings],
  );

  return html`<section aria-labelledby="findings-title">
    <h1 id="findings-title">Findings</h1>
    <form class="pickers" onSubmit=${(e) => e.preventDefault()}>
      <div>
        <label for="f-range">Time range</label>
        <select id="f-range" value=${range} onChange=${(e) => setRange(e.currentTarget.value)}>
          ${RANGES.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        </select>
      </div>
      <div>
        <label for="f-sev">Lowest severity</label>
        <select id="f-sev" value=${minSeverity} onChange=${(e) => setMin(e.currentTarget.value)}>
          ${SEVERITIES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </div>
      <div>
        <label for="f-rule">Rule</label>
        <select id="f-rule" value=${rule} onChange=${(e) => setRule(e.currentTarget.value)}>
          <option value="">Any rule</option>
          ${rules.map((r) => html`<option value=${r}>${r}</option>`)}
        </select>
      </div>
      <div>
        <label for="f-service">Service</label>
        <select id="f-service" value=${service} onChange=${(e) => setService(e.currentTarget.value)}>
          <option value="">Any service</option>
          ${services.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </div>
    </form>
    ${trace && html`<p>Findings on trace <a class="mono" href=${`/trace/${trace}`}>${trace}</a> · <a href="/findings">all findings</a></p>`}
    ${error && html`<${Refused} error=${error} who="investigators and admins" />`}
    ${!data && !error && html`<p class="muted" role="status">Loading…</p>`}
    ${data &&
    html`<div>
      <p class="muted" data-testid="finding-count">${findings.length} findings</p>
      ${findings.length > 0 && html`<${TimeChart} times=${chart.times} series=${chart.series} label="Findings over time, by severity" bars=${true} />`}
      <table class="list">
        <caption class="visually-hidden">Findings</caption>
        <thead><tr><th scope="col">Severity</th><th scope="col">Finding</th><th scope="col">Rule</th><th scope="col">Service</th><th scope="col">When</th><th scope="col">Trace</th></tr></thead>
        <tbody>
          ${findings.map((f) => {
            const uid = f.finding_info.uid;
            const tid = (f.unmapped || {}).trace_id;
            const sid = (f.unmapped || {}).span_id;
            const svc = (f.resources || [])[0];
            return html`<tr>
              <td class=${`sev-${f.severity.toLowerCase()}`}>${f.severity}</td>
              <td>
                <button type="button" class="linkish" aria-expanded=${open === uid ? "true" : "false"} onClick=${() => setOpen(open === uid ? null : uid)}>
                  ${f.finding_info.title}
                </button>
                ${f.count > 1 && html` <span class="muted">×${f.count}</span>`}
                ${open === uid &&
                html`<div class="ocsf">
                  <p>${f.message}</p>
                  <h3>OCSF record</h3>
                  <pre tabindex="0" aria-label="OCSF record">${JSON.stringify(f, null, 2)}</pre>
                </div>`}
              </td>
              <td class="mono small">${f.finding_info.analytic.uid}</td>
              <td>${svc ? svc.name : ""}</td>
              <td><${When} ms=${f.time} /></td>
              <td>${tid && html`<a class="mono" href=${`/trace/${tid}${sid ? `?span=${sid}` : ""}`}>${tid.slice(0, 12)}…</a>`}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>`}
    <${Responses} me=${me} />
  </section>`;
}
