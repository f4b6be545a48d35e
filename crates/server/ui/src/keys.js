// Pinning verifier keys: the log's Ed25519 and ML-DSA-44 keys and any witnesses' keys.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { pin, pinnedKeys, pinnedText } from "./pinned.js";

export function KeysPage() {
  const [text, setText] = useState(pinnedText());
  const [msg, setMsg] = useState(null);
  const [err, setErr] = useState(null);
  let current = [];
  try {
    current = pinnedKeys();
  } catch {
    current = [];
  }
  const save = (e) => {
    e.preventDefault();
    try {
      const keys = pin(text);
      setErr(null);
      setMsg(keys.length ? `Pinned ${keys.length} keys in this browser.` : "No keys pinned.");
    } catch (ex) {
      setMsg(null);
      setErr(ex.message);
    }
  };
  return html`<section aria-labelledby="keys-title">
    <h1 id="keys-title">Verifier keys</h1>
    <p>
      Receipts are checked in this page against the keys you pin here, kept in this browser only.
      Get them out of band, not from this server: run <code>tracevault log keys</code> on the
      server's host (or take the list your operator publishes) and paste its lines, one key per
      line, with any witnesses' keys.
    </p>
    <form onSubmit=${save}>
      <label for="vkeys">Verifier keys</label>
      <textarea id="vkeys" rows="8" spellcheck="false" value=${text} onInput=${(e) => setText(e.currentTarget.value)}></textarea>
      <button type="submit" class="primary">Pin these keys</button>
    </form>
    ${msg && html`<p role="status">${msg}</p>`}
    ${err && html`<p class="error" role="alert">${err}</p>`}
    <h2>Pinned now</h2>
    ${current.length === 0
      ? html`<p class="muted">None: verification will fail until you pin the log's keys.</p>`
      : html`<ul>${current.map((k) => html`<li><span class="mono small">${k.name}+${k.keyIdHex}</span> (${k.type}, ${k.role === "witness" ? "a witness" : "the log"})</li>`)}</ul>`}
  </section>`;
}
