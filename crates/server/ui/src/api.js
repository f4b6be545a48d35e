// Calls to this server's API with the session cookie (same origin only). State changes carry
// the session's CSRF token, which the server checks with the Origin header.

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

/** An API refusal: the status and the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(resp) {
  let msg = resp.statusText;
  try {
    const body = await resp.json();
    msg = body.message || body.error || msg;
  } catch {
    /* not JSON */
  }
  return new ApiError(resp.status, `${resp.status}: ${msg}`);
}

/** GET a JSON document. */
export async function getJson(path, { signal } = {}) {
  const resp = await fetch(path, {
    credentials: "same-origin",
    headers: { accept: "application/json" },
    signal,
  });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

/** POST a JSON body (with the CSRF token); the JSON answer, or null for 204. */
export async function postJson(path, body) {
  const headers = { "content-type": "application/json" };
  if (csrf) headers["x-csrf-token"] = csrf;
  const resp = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw await failure(resp);
  return resp.status === 204 ? null : resp.json();
}

/** Query string of the defined entries of `params`. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}
