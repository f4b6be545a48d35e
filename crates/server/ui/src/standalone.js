// The standalone receipt verifier: one HTML file (dist/verify.html) with this script inlined and
// pinned by its Content-Security-Policy hash. Save it once, check its SHA-256 against the one
// `tracevault verify-page` prints (and the operator's guide lists), and open it offline: it
// verifies receipts pasted into it against keys pasted into it, and cannot reach any network
// (connect-src 'none'). The same verifier code as the UI's (src/verify.js).
import { parseVerifierKeys, verifyReceipt } from "./verify.js";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function receiptsOf(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`The receipt is not JSON: ${e.message}`);
  }
  if (Array.isArray(doc.receipts)) return doc.receipts;
  if (doc && typeof doc === "object" && doc.format) return [doc];
  throw new Error('Paste one receipt, or the {"receipts": [...]} answer of GET /api/traces/<id>/receipt');
}

async function run(e) {
  e.preventDefault();
  const out = $("out");
  out.textContent = "";
  let keys;
  let receipts;
  try {
    keys = parseVerifierKeys($("keys").value);
    if (keys.length === 0) throw new Error("Paste the log's verifier keys (tracevault log keys) first");
    receipts = receiptsOf($("receipt").value);
  } catch (err) {
    out.append(el("p", "bad", err.message));
    return;
  }
  let good = 0;
  for (const r of receipts) {
    const res = await verifyReceipt(r, keys, { classicalOnly: $("classical").checked });
    if (res.ok) good++;
    const sec = el("section", "result");
    sec.append(
      el(
        "h2",
        res.ok ? "good" : "bad",
        `${res.ok ? "Verified" : "Not verified"}: span ${r.span_id || "?"} of trace ${r.trace_id || "?"}`,
      ),
    );
    if (!res.ok) sec.append(el("p", "bad", res.error));
    const ol = el("ol");
    for (const s of res.steps.filter((s) => s.ok || s.text !== res.error)) {
      ol.append(el("li", s.ok ? "ok" : "fail", `${s.ok ? "✓" : "✗"} ${s.text}`));
    }
    sec.append(ol);
    if (res.ok && res.facts.revealed) {
      const dl = el("dl");
      for (const f of res.facts.revealed) {
        dl.append(el("dt", "", f.name), el("dd", "mono", f.valueBase64 || "(empty)"));
      }
      sec.append(el("h3", "", `Revealed fields (${res.facts.revealed.length}; ${res.facts.withheld} withheld), as committed (base64)`), dl);
    }
    out.append(sec);
  }
  out.prepend(el("p", good === receipts.length ? "good" : "bad", `${good} of ${receipts.length} receipts verified.`));
}

$("form").addEventListener("submit", run);
$("status").textContent = "Ready. Nothing you paste leaves this page.";
