// Security at a glance: values redacted by detector, spans rejected by reason, rate-limited and
// unauthenticated requests, findings by severity, TLS key-exchange groups, per minute over the
// last day (from the server's counters, sampled every minute), with totals.
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson } from "./api.js";
import { TimeChart } from "./chart.js";
import { Refused } from "./refusal.js";

const PANELS = [
  ["redacted", "Values redacted at ingest, by rule"],
  ["rejected", "Spans rejected, by reason"],
  ["rate_limited", "Rate-limited requests, by kind"],
  ["unauthenticated", "Unauthenticated requests"],
  ["findings", "Findings, by severity"],
  ["tls_groups", "TLS handshakes, by key-exchange group"],
];

/** Per-sample increases of each series of one family. */
function deltas(samples, family) {
  const keys = [...new Set(samples.flatMap((s) => Object.keys(s.counters[family] || {})))].sort();
  const times = samples.slice(1).map((s) => s.time_unix);
  const series = keys.map((k) => ({
    label: k,
    values: samples.slice(1).map((s, i) => Math.max(0, ((s.counters[family] || {})[k] || 0) - ((samples[i].counters[family] || {})[k] || 0))),
    total: (samples[samples.length - 1].counters[family] || {})[k] || 0,
  }));
  return { times, series };
}

export function SecurityPage() {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    const load = () => getJson("/api/security/overview").then(setData, setError);
    load();
    const t = setInterval(load, 60000);
    return () => clearInterval(t);
  }, []);
  return html`<section aria-labelledby="security-title">
    <h1 id="security-title">Security at a glance</h1>
    <p class="muted">Since this server started (kept for a day), a point a minute; totals are since the start.</p>
    ${error && html`<${Refused} error=${error} who="admins bound to every tenant" />`}
    ${data &&
    html`<div class="panels">
      ${PANELS.map(([family, title]) => {
        const d = deltas(data.samples, family);
        return html`<section class="panel" aria-labelledby=${`p-${family}`} data-family=${family}>
          <h2 id=${`p-${family}`}>${title}</h2>
          ${d.series.length === 0
            ? html`<p class="muted">None.</p>`
            : html`<table class="totals">
                  <caption class="visually-hidden">${title}: totals</caption>
                  <tbody>
                    ${d.series.map((s) => html`<tr><th scope="row" class="mono small">${s.label}</th><td>${s.total}</td></tr>`)}
                  </tbody>
                </table>
                ${d.times.length > 0 && html`<${TimeChart} times=${d.times} series=${d.series} label=${`${title}, per minute`} height=${150} />`}`}
        </section>`;
      })}
    </div>`}
  </section>`;
}
