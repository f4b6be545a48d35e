// The sign-in page: paste an API token (or an OIDC token), or open a login link from
// `tracevault login-url`.
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { getJson, postJson } from "./api.js";

/** Why an OIDC sign-in came back refused (the server puts it in `signin_error`), taken out of the URL. */
function takeSigninError() {
  const u = new URL(location.href);
  const e = u.searchParams.get("signin_error");
  if (!e) return null;
  u.searchParams.delete("signin_error");
  history.replaceState(null, "", u.pathname + u.search);
  return `Sign-in through your identity provider failed: ${e}`;
}

export const exchangeLoginCode = {
  /** The login code in the URL fragment, removed from the address bar and history. */
  take() {
    const frag = new URLSearchParams(location.hash.slice(1));
    const code = frag.get("login");
    if (!code) return null;
    history.replaceState(null, "", location.pathname + location.search);
    return code;
  },
};

/** A login link's confirmation: whose it is, before it is used (and spent). */
export function ConfirmLink({ pending, onDone }) {
  const { code, who, current } = pending;
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      onDone(await postJson("/ui/session", { login_code: code }), null);
    } catch (e) {
      onDone(null, `This login link did not sign you in: ${e.message}`);
    }
  };
  return html`<section class="signin" aria-labelledby="confirm-title">
    <h1 id="confirm-title">Sign in with this link?</h1>
    <p>
      It signs this browser in as <strong>${who.name}</strong> (role ${who.role}). Use it only if you
      asked for it: a link someone else sent you would put what you do here under their name.
    </p>
    ${current && html`<p>You are signed in as <strong>${current.name}</strong>; continuing replaces that session.</p>`}
    <p>
      <button type="button" class="primary" disabled=${busy} onClick=${go}>Sign in as ${who.name}</button>
      ${" "}
      <button type="button" onClick=${() => onDone(null, "The login link was not used.", current)}>Cancel</button>
    </p>
  </section>`;
}

export function SignIn({ error, onSignedIn }) {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState(error || takeSigninError());
  const [oidc, setOidc] = useState(false);
  useEffect(() => {
    getJson("/ui/signin-options").then((o) => setOidc(!!o.oidc), () => setOidc(false));
  }, []);
  const here = location.pathname === "/" ? "/search" : location.pathname + location.search;

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setMsg(null);
    try {
      const s = await postJson("/ui/session", { token: token.trim() });
      setToken("");
      onSignedIn(s);
    } catch (err) {
      setMsg(err.message);
    } finally {
      setBusy(false);
    }
  };

  return html`<section class="signin" aria-labelledby="signin-title">
    <h1 id="signin-title">Sign in</h1>
    <form onSubmit=${submit}>
      <label for="token">API token or OIDC token</label>
      <input
        id="token"
        type="password"
        autocomplete="off"
        spellcheck="false"
        value=${token}
        onInput=${(e) => setToken(e.currentTarget.value)}
        placeholder="tvk_…"
        required
      />
      <button type="submit" disabled=${busy}>Sign in</button>
    </form>
    ${oidc &&
    html`<p>
      <a class="button" href=${`/ui/oidc/start?next=${encodeURIComponent(here)}`}>Sign in with your identity provider</a>
    </p>`}
    ${msg && html`<p class="error" role="alert">${msg}</p>`}
    <p class="muted">
      Or run <code>tracevault login-url</code> and open the link it prints: it signs you in once,
      within 5 minutes, as the token that made it. The token is kept by this server's session
      only (a cookie this page's scripts cannot read).
    </p>
  </section>`;
}
