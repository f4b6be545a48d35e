// "Verify in this browser": fetches the span's receipt and checks it here (Merkle inclusion,
// the checkpoint's Ed25519 and ML-DSA-44 signatures against the pinned keys, witness
// cosignatures, the span's field commitments), saying what was proven or what failed.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson } from "./api.js";
import { verifyReceipt } from "./verify.js";
import { pinnedKeys } from "./pinned.js";

export function VerifyPanel({ traceId, spanId }) {
  const [state, setState] = useState(null); // {busy} | {result} | {error}
  const run = async () => {
    setState({ busy: true });
    try {
      let keys;
      try {
        keys = pinnedKeys();
      } catch (e) {
        throw new Error(`The pinned verifier keys do not parse: ${e.message}`);
      }
      if (keys.length === 0) {
        throw new Error("No verifier keys are pinned in this browser: pin the log's keys under Verifier keys first.");
      }
      const r = await getJson(`/api/traces/${traceId}/receipt`);
      const receipt = (r.receipts || []).find((x) => x.span_id === spanId);
      if (!receipt) throw new Error("The server has no receipt for this span yet (it is committed within seconds; try again).");
      const result = await verifyReceipt(receipt, keys);
      setState({ result });
    } catch (e) {
      setState({ error: e.message });
    }
  };
  const res = state && state.result;
  return html`<section class="verify" aria-labelledby="verify-title">
    <h3 id="verify-title">Receipt</h3>
    <p class="muted small">Checked by this page's own code against the keys you pinned, not by asking the server.</p>
    <button type="button" onClick=${run} disabled=${state && state.busy}>Verify in this browser</button>
    <div aria-live="polite" data-testid="verify-result">
      ${state && state.busy && html`<p role="status">Verifying…</p>`}
      ${state && state.error && html`<p class="verdict bad">Not verified: ${state.error}</p>`}
      ${res &&
      html`<p class=${`verdict ${res.ok ? "good" : "bad"}`}>
          ${res.ok ? "Verified: this span is in the log as shown" : `Not verified: ${res.error}`}
        </p>
        <ol class="steps">
          ${res.steps.filter((s) => s.ok || s.text !== res.error).map((s) => html`<li class=${s.ok ? "ok" : "fail"}><span aria-hidden="true">${s.ok ? "✓" : "✗"}</span> ${s.text}</li>`)}
        </ol>`}
    </div>
  </section>`;
}
