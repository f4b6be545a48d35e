import { html } from "./html.js";

/** A page the signed-in role may not read: say so, and who may. */
export function Refused({ error, who }) {
  if (error && error.status === 403) {
    return html`<p class="error" role="alert">Your role may not read this (${who} may): ${error.message}</p>`;
  }
  return html`<p class="error" role="alert">${error ? error.message : ""}</p>`;
}
