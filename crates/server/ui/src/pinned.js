// The verifier keys the user pinned (pasted once, kept in this browser's storage): what a
// receipt is checked against. Obtain them out of band (`tracevault log keys` on the server's
// host, or the operator's published list), not from this server's pages.
import { parseVerifierKeys } from "./verify.js";

const KEY = "tv.verifierKeys";

export function pinnedText() {
  return localStorage.getItem(KEY) || "";
}

/** The pinned keys, parsed (an empty list when none are pinned). */
export function pinnedKeys() {
  const t = pinnedText();
  return t.trim() ? parseVerifierKeys(t) : [];
}

/** Pins `text` after checking it parses; throws with the parser's message otherwise. */
export function pin(text) {
  const keys = text.trim() ? parseVerifierKeys(text) : [];
  if (keys.length === 0) localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, text.trim() + "\n");
  return keys;
}
