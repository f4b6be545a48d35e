// A time chart (uPlot): one line per series over shared times (unix seconds).
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import { html } from "./html.js";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

export function TimeChart({ times, series, label, height = 200, bars = false }) {
  const el = useRef(null);
  useEffect(() => {
    if (!el.current || times.length === 0 || series.length === 0) return undefined;
    const fg = getComputedStyle(document.documentElement).getPropertyValue("--fg").trim() || "#222";
    const plot = new uPlot(
      {
        width: Math.max(el.current.clientWidth, 300),
        height,
        legend: { live: false },
        // One point (a server started a minute ago): a ten-minute window around it.
        scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 540, max + 60] : [min, max]) } },
        axes: [
          { stroke: fg, grid: { stroke: "rgba(128,128,128,.2)" } },
          { stroke: fg, grid: { stroke: "rgba(128,128,128,.2)" } },
        ],
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: PALETTE[i % PALETTE.length],
            fill: bars ? PALETTE[i % PALETTE.length] + "55" : undefined,
            width: 2,
            points: { show: times.length < 3 },
            paths: bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined,
          })),
        ],
      },
      [times, ...series.map((s) => s.values)],
      el.current,
    );
    return () => plot.destroy();
  }, [times, series]);
  const summary = series.map((s) => `${s.label}: ${s.values.reduce((a, b) => a + (b || 0), 0)}`).join(", ");
  return html`<figure class="chart">
    <div ref=${el} role="img" aria-label=${`${label}. Totals: ${summary || "none"}`}></div>
    <figcaption class="muted small">${label}</figcaption>
  </figure>`;
}

/** Counts of `items` per time bucket (unix seconds) for each key `keyOf(item)`. */
export function bucketize(items, timeOf, keyOf, start, end, buckets = 30) {
  const step = Math.max(1, Math.ceil((end - start) / buckets));
  const times = [];
  for (let t = start; t <= end; t += step) times.push(t);
  const keys = [...new Set(items.map(keyOf))].sort();
  const series = keys.map((k) => ({ label: k, values: times.map(() => 0) }));
  for (const it of items) {
    const i = Math.min(times.length - 1, Math.max(0, Math.floor((timeOf(it) - start) / step)));
    series[keys.indexOf(keyOf(it))].values[i] += 1;
  }
  return { times, series };
}
