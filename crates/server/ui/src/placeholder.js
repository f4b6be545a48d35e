import { html } from "./html.js";

export function Placeholder({ title }) {
  return html`<section>
    <h1>${title}</h1>
    <p class="muted">This page is not built yet (issue 19). The API has what it will show.</p>
  </section>`;
}
