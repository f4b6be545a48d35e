// Preact with htm's tagged templates: no JSX build step, no eval (CSP-safe).
import { h, render } from "preact";
import htm from "htm";

export const html = htm.bind(h);
export { render };
