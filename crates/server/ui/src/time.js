// Times in the viewer's zone, with UTC on hover.

const nf = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** Milliseconds since the epoch from OTLP nanoseconds (a decimal string or number). */
export function nanosToMs(n) {
  if (n === undefined || n === null || n === "") return 0;
  const s = String(n);
  // Exact enough: the last six digits are below a millisecond.
  return s.length > 6 ? Number(s.slice(0, -6)) + Number(s.slice(-6)) / 1e6 : Number(s) / 1e6;
}

export function localTime(ms) {
  return nf.format(new Date(ms));
}

export function utcTime(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");
}

/** A duration in milliseconds, for people. */
export function duration(ms) {
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
