// Audit (auditors and admins): who read what and when, filterable; and the logs' status: the
// audit log's size, the transparency log's latest checkpoint and who signed it (the log's keys
// and any witnesses).
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson, qs } from "./api.js";
import { Refused } from "./refusal.js";
import { localTime, utcTime } from "./time.js";

const SINCE = [
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["168h", "Last 7 days"],
];

/** The checkpoint note: origin, size, root, and its signers. */
function parseCheckpoint(text) {
  const [body, sigs = ""] = text.split("\n\n");
  const [origin, size, root] = body.split("\n");
  const signers = sigs
    .split("\n")
    .filter((l) => l.startsWith("\u2014 "))
    .map((l) => l.slice(2).split(" ")[0]);
  return { origin, size, root, signers };
}

async function checkpoint() {
  const resp = await fetch("/api/log/checkpoint", { credentials: "same-origin" });
  if (!resp.ok) throw new Error(`${resp.status}`);
  return parseCheckpoint(await resp.text());
}

export function AuditPage() {
  const [principal, setPrincipal] = useState("");
  const [action, setAction] = useState("");
  const [decision, setDecision] = useState("");
  const [since, setSince] = useState("24h");
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [cp, setCp] = useState(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    setError(null);
    getJson(`/api/audit${qs({ principal, action, decision, since, limit: 200 })}`)
      .then(setData)
      .catch((e) => {
        setData(null);
        setError(e);
      });
  }, [tick, since, decision]);
  useEffect(() => {
    checkpoint().then(setCp, () => setCp(null));
  }, []);

  const records = (data && data.records) || [];
  return html`<section aria-labelledby="audit-title">
    <h1 id="audit-title">Audit</h1>
    <section aria-labelledby="logs-title" class="cards">
      <h2 id="logs-title" class="visually-hidden">Log status</h2>
      <div class="card">
        <h3>Audit log</h3>
        <p>${data ? html`<strong data-testid="audit-size">${data.logSize}</strong> records` : "—"}</p>
        <p class="mono small">${data ? data.origin : ""}</p>
      </div>
      <div class="card">
        <h3>Transparency log</h3>
        ${cp
          ? html`<p><strong>${cp.size}</strong> entries in the latest checkpoint</p>
              <p class="mono small" title="Merkle root">${cp.root}</p>
              <p class="small">Signed by: ${cp.signers.filter((s) => s === cp.origin).length} log keys (Ed25519, ML-DSA-44)</p>
              <p class="small">
                Witnesses: ${cp.signers.filter((s) => s !== cp.origin).join(", ") || html`<span class="muted">none configured</span>`}
              </p>`
          : html`<p class="muted">—</p>`}
      </div>
    </section>
    <form
      class="pickers"
      onSubmit=${(e) => {
        e.preventDefault();
        setTick(tick + 1);
      }}
    >
      <div>
        <label for="a-principal">Principal (id or name)</label>
        <input id="a-principal" value=${principal} onInput=${(e) => setPrincipal(e.currentTarget.value)} />
      </div>
      <div>
        <label for="a-action">Action</label>
        <input id="a-action" value=${action} placeholder="read_trace" onInput=${(e) => setAction(e.currentTarget.value)} />
      </div>
      <div>
        <label for="a-decision">Decision</label>
        <select id="a-decision" value=${decision} onChange=${(e) => setDecision(e.currentTarget.value)}>
          <option value="">Any</option>
          <option value="allow">Allowed</option>
          <option value="deny">Denied</option>
        </select>
      </div>
      <div>
        <label for="a-since">Since</label>
        <select id="a-since" value=${since} onChange=${(e) => setSince(e.currentTarget.value)}>
          ${SINCE.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        </select>
      </div>
      <button type="submit" class="primary">Filter</button>
    </form>
    ${error && html`<${Refused} error=${error} who="auditors and admins" />`}
    ${data &&
    html`<table class="list">
      <caption class="visually-hidden">Audit records, newest first</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Tenant</th><th scope="col">Action</th><th scope="col">What</th><th scope="col">Decision</th><th scope="col">Results</th><th scope="col">From</th></tr></thead>
      <tbody>
        ${records.map(
          (r) => html`<tr>
            <td><time datetime=${r.time} title=${utcTime(r.time_unix_ms)}>${localTime(r.time_unix_ms)}</time></td>
            <td>${r.name || r.principal} <span class="muted small">${r.role || ""}</span></td>
            <td>${r.tenant}</td>
            <td class="mono small">${r.action}</td>
            <td class="mono small">${r.resource}</td>
            <td class=${r.decision === "allow" ? "" : "error"}>${r.decision} ${r.status}</td>
            <td>${r.results ?? ""}</td>
            <td class="mono small">${r.from || ""}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </section>`;
}
