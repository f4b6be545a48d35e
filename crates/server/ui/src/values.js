// What redaction and access control did to a value, recognized by the replacements the server
// writes: `[restricted:<class>]` (a field class this role may not read), `hmac:<hex>` (a keyed
// pseudonym), `[REDACTED:<what>]` and `****` (masks), and SQL whose literals became `?`.
import { html } from "./html.js";

const SQL_KEYS = /^(db\.query\.text|db\.statement|db\.query\.summary)$/;

/** The marks on one attribute value: [{kind, label, title}]. */
export function marks(key, text) {
  const out = [];
  for (const m of text.matchAll(/\[restricted:([a-z0-9_.-]+)\]/gi)) {
    out.push({
      kind: "restricted",
      label: `restricted: ${m[1]}`,
      title: `Your role may not read the ${m[1]} field class: the value is withheld from you, not from the store`,
    });
  }
  if (/(^|[^\w])hmac:[0-9a-f]{16,}/.test(text)) {
    out.push({
      kind: "redacted",
      label: "pseudonym",
      title: "Replaced at ingest by a keyed pseudonym (HMAC): equal values give equal pseudonyms; the original was never stored",
    });
  }
  for (const m of text.matchAll(/\[REDACTED:([^\]]+)\]/g)) {
    out.push({
      kind: "redacted",
      label: `masked: ${m[1]}`,
      title: `A ${m[1]} was masked at ingest; the original was never stored`,
    });
  }
  if (/\*{4}/.test(text) && !out.some((m) => m.label.startsWith("masked"))) {
    out.push({ kind: "redacted", label: "masked", title: "Masked at ingest (only the last characters kept)" });
  }
  if (SQL_KEYS.test(key) && /\?/.test(text)) {
    out.push({
      kind: "redacted",
      label: "SQL scrubbed",
      title: "The statement's literals were replaced by ? at ingest (its shape is kept)",
    });
  }
  return out;
}

export function Marks({ list }) {
  return list.map(
    (m) => html`<span class=${`mark mark-${m.kind}`} title=${m.title} data-mark=${m.kind}>${m.label}</span>`,
  );
}
