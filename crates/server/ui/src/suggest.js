// Autocompletion of TraceQL (scopes, intrinsics, attribute names, values) and of tag filters
// (`key=value`), from the server's tag and tag-value APIs (what the signed-in credential may
// read; nothing is cached across sign-ins).
import { getJson } from "./api.js";

const SCOPES = ["resource.", "span.", "event.", "link.", "instrumentation.", "."];
const INTRINSICS = [
  "name",
  "status",
  "statusMessage",
  "kind",
  "duration",
  "rootName",
  "rootServiceName",
  "traceDuration",
  "trace:id",
  "span:id",
  "event:name",
];
const MAX = 12;

let tagsPromise = null;

/** The attribute names by scope (`resource`, `span`, ...), fetched once per page load. */
export function tagNames() {
  if (!tagsPromise) {
    tagsPromise = getJson("/api/v2/search/tags")
      .then((r) => {
        const byScope = {};
        for (const s of r.scopes || []) byScope[s.name] = s.tags || [];
        return byScope;
      })
      .catch(() => {
        tagsPromise = null;
        return {};
      });
  }
  return tagsPromise;
}

/** Values of one attribute (`span.http.request.method`, `resource.service.name`, `name`). */
export async function tagValues(tag) {
  const r = await getJson(`/api/v2/search/tag/${encodeURIComponent(tag)}/values`);
  return (r.tagValues || []).map((v) => ({ type: v.type, value: String(v.value) }));
}

function quote(v) {
  return `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A TraceQL literal for a value of the given type. */
function literal(v) {
  if (v.type === "int" || v.type === "float" || v.type === "duration") return v.value;
  if (v.type === "keyword" || v.type === "bool") return v.value;
  return quote(v.value);
}

const prefixed = (items, prefix) =>
  items.filter((x) => x.toLowerCase().startsWith(prefix.toLowerCase()) && x !== prefix).slice(0, MAX);

/** Suggestions for a TraceQL query at `caret`. */
export async function suggestTraceQL(text, caret) {
  const before = text.slice(0, caret);
  // A value after a comparison: `<attr> = "par|`
  const val = /((?:resource|span|event|link|instrumentation)?\.[\w.\-/:]+|\b[a-zA-Z:]+)\s*(=|!=|=~|!~)\s*("?[^"\s}&|)]*)$/.exec(
    before,
  );
  if (val) {
    const [, attr, , partial] = val;
    const from = caret - partial.length;
    const values = await tagValues(attr);
    const p = partial.replace(/^"/, "").toLowerCase();
    const items = values
      .filter((v) => v.value.toLowerCase().startsWith(p))
      .slice(0, MAX)
      .map((v) => ({ label: v.value, insert: literal(v) }));
    return { from, to: caret, items };
  }
  const word = /[\w.:\-/]*$/.exec(before)[0];
  if (!word) return null;
  const from = caret - word.length;
  const dot = word.indexOf(".");
  if (dot >= 0) {
    const scope = word.slice(0, dot);
    const rest = word.slice(dot + 1);
    const names = await tagNames();
    const pool =
      scope === ""
        ? [...new Set([...(names.span || []), ...(names.resource || [])])]
        : names[scope] || [];
    const items = prefixed(pool, rest).map((t) => ({ label: `${scope}.${t}`, insert: `${scope}.${t}` }));
    return { from, to: caret, items };
  }
  const items = prefixed([...SCOPES, ...INTRINSICS], word).map((t) => ({ label: t, insert: t }));
  return { from, to: caret, items };
}

/** Suggestions for tag filters `key=value key2=value2` at `caret`. */
export async function suggestTags(text, caret) {
  const before = text.slice(0, caret);
  const word = /\S*$/.exec(before)[0];
  const from = caret - word.length;
  const eq = word.indexOf("=");
  if (eq >= 0) {
    const key = word.slice(0, eq);
    const p = word.slice(eq + 1).replace(/^"/, "").toLowerCase();
    const names = await tagNames();
    const scope = (names.resource || []).includes(key) && !(names.span || []).includes(key) ? "resource" : "span";
    const values = await tagValues(`${scope}.${key}`);
    const items = values
      .filter((v) => v.value.toLowerCase().startsWith(p) && !/\s/.test(v.value))
      .slice(0, MAX)
      .map((v) => ({ label: v.value, insert: `${key}=${v.value}` }));
    return { from, to: caret, items };
  }
  if (!word) return null;
  const names = await tagNames();
  const pool = [...new Set([...(names.span || []), ...(names.resource || [])])];
  const items = prefixed(pool, word).map((t) => ({ label: t, insert: `${t}=` }));
  return { from, to: caret, items };
}

/** TraceQL for the pickers: service, operation, `key=value` tags, a duration range. */
export function composeQuery({ service, operation, tags, minDuration, maxDuration }) {
  const c = [];
  if (service) c.push(`resource.service.name = ${quote(service)}`);
  if (operation) c.push(`name = ${quote(operation)}`);
  for (const t of (tags || "").split(/\s+/).filter(Boolean)) {
    const eq = t.indexOf("=");
    if (eq <= 0) continue;
    const k = t.slice(0, eq);
    const v = t.slice(eq + 1);
    const lit = /^-?\d+(\.\d+)?$/.test(v) || v === "true" || v === "false" ? v : quote(v);
    c.push(`.${k} = ${lit}`);
  }
  if (minDuration) c.push(`duration >= ${minDuration}`);
  if (maxDuration) c.push(`duration <= ${maxDuration}`);
  return c.length ? `{ ${c.join(" && ")} }` : "{}";
}
