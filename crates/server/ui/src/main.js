// The web UI's entry point (issue 19, ADR 0019). Served from this server only, under a strict
// Content-Security-Policy: no inline script, no eval, no third-party origin.
import { useEffect, useState } from "preact/hooks";
import { html, render } from "./html.js";
import { getJson, postJson, setCsrf, ApiError } from "./api.js";
import { ConfirmLink, SignIn, exchangeLoginCode } from "./signin.js";
import { SearchPage } from "./search.js";
import { TracePage } from "./trace.js";
import { KeysPage } from "./keys.js";
import { FindingsPage } from "./findings.js";
import { MapPage } from "./map.js";
import { AuditPage } from "./audit.js";
import { SecurityPage } from "./security.js";
import { navigate } from "./nav.js";

function useLocation() {
  const [loc, setLoc] = useState(location.pathname + location.search);
  useEffect(() => {
    const on = () => setLoc(location.pathname + location.search);
    window.addEventListener("popstate", on);
    window.addEventListener("tv:navigate", on);
    return () => {
      window.removeEventListener("popstate", on);
      window.removeEventListener("tv:navigate", on);
    };
  }, []);
  return loc;
}

/** Links inside the app navigate without reloading (modifier clicks open new tabs). */
function onLinkClick(e) {
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || a.target || a.origin !== location.origin || e.defaultPrevented) return;
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.pathname.startsWith("/api/") || a.pathname.startsWith("/ui/") || a.pathname === "/verify.html") return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}

// The pages, and the roles whose credentials may read what each shows (the API decides; the
// menu only leaves out what would be refused).
const NAV = [
  ["/search", "Search", ["reader", "investigator", "admin"]],
  ["/findings", "Findings", ["investigator", "admin"]],
  ["/map", "Service map", ["reader", "investigator", "admin"]],
  ["/audit", "Audit", ["auditor", "admin"]],
  ["/security", "Security", ["admin"]],
  ["/keys", "Verifier keys", null],
];

function theme() {
  return localStorage.getItem("tv.theme") || "auto";
}

const systemDark = matchMedia("(prefers-color-scheme: dark)");

/** Applies a theme choice; "auto" follows the system's preference, also when it changes. */
function applyTheme(t) {
  document.documentElement.dataset.theme = t === "auto" ? (systemDark.matches ? "dark" : "light") : t;
}
systemDark.addEventListener("change", () => applyTheme(theme()));

function Header({ me, onSignOut, path }) {
  const [t, setT] = useState(theme());
  const cycle = () => {
    const next = t === "auto" ? "dark" : t === "dark" ? "light" : "auto";
    localStorage.setItem("tv.theme", next);
    applyTheme(next);
    setT(next);
  };
  return html`<header class="bar">
    <a class="brand" href="/search">tracevault</a>
    ${me &&
    html`<nav aria-label="Main">
      <ul>
        ${NAV.filter(([, , roles]) => !roles || roles.includes(me.role)).map(
          ([href, label]) =>
            html`<li>
              <a href=${href} aria-current=${path.startsWith(href) ? "page" : undefined}>${label}</a>
            </li>`,
        )}
      </ul>
    </nav>`}
    <span class="spacer"></span>
    <button type="button" class="quiet" onClick=${cycle} title="Colour theme: automatic, dark or light">
      Theme: ${t}
    </button>
    ${me &&
    html`<span class="who" title=${`tenants: ${me.tenants === "*" ? "every tenant" : me.tenants.join(", ")}`}
        >${me.name} <span class="role">${me.role}</span></span
      >
      <button type="button" onClick=${onSignOut}>Sign out</button>`}
  </header>`;
}

function Page({ path, me }) {
  const p = path.split("?")[0];
  const m = /^\/trace\/([0-9a-fA-F]{32})$/.exec(p);
  if (m) return html`<${TracePage} traceId=${m[1].toLowerCase()} me=${me} />`;
  if (p === "/" && me.role === "auditor") return html`<${AuditPage} />`;
  if (p === "/" || p === "/search") return html`<${SearchPage} />`;
  if (p === "/keys") return html`<${KeysPage} />`;
  if (p === "/findings") return html`<${FindingsPage} me=${me} />`;
  if (p === "/map") return html`<${MapPage} />`;
  if (p === "/audit") return html`<${AuditPage} />`;
  if (p === "/security") return html`<${SecurityPage} />`;
  return html`<section><h1>No such page</h1><p><a href="/search">Search traces</a></p></section>`;
}

function App() {
  const path = useLocation();
  const [me, setMe] = useState(undefined); // undefined: asking; null: signed out
  const [error, setError] = useState(null);
  const [pending, setPending] = useState(null); // a login link waiting for confirmation

  useEffect(() => {
    (async () => {
      try {
        // A login link: its code is in the fragment, which no server saw; take it out of the
        // address bar and history at once, then exchange it.
        // It is not used until the person confirms who it signs them in as: a link someone
        // else minted would otherwise sign this browser in as them, unnoticed.
        const code = exchangeLoginCode.take();
        let current = null;
        try {
          current = await getJson("/ui/session");
        } catch {
          current = null;
        }
        if (code) {
          try {
            const who = await postJson("/ui/session/preview", { login_code: code });
            setPending({ code, who, current });
          } catch (e) {
            setError(`This login link did not sign you in: ${e.message}`);
          }
          setMe(null);
          return;
        }
        if (!current) throw new ApiError(401, "not signed in");
        const s = current;
        setCsrf(s.csrf);
        setMe(s);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 401) setError(e.message);
        setMe(null);
      }
    })();
  }, []);

  const signOut = async () => {
    try {
      await postJson("/ui/logout");
    } catch {
      /* the session has ended anyway */
    }
    setCsrf(null);
    setMe(null);
  };

  return html`<div onClick=${onLinkClick}>
    <a class="skip" href="#main">Skip to content</a>
    <${Header} me=${me} onSignOut=${signOut} path=${path} />
    <main id="main" tabindex="-1">
      ${me === undefined
        ? html`<p class="muted" role="status">Loading…</p>`
        : pending
          ? html`<${ConfirmLink}
              pending=${pending}
              onDone=${(s, err, kept) => {
                setPending(null);
                if (s) {
                  setCsrf(s.csrf);
                  setMe(s);
                  navigate(s.next || "/search");
                } else if (kept) {
                  setCsrf(kept.csrf);
                  setMe(kept);
                } else {
                  setError(err);
                }
              }}
            />`
          : me === null
          ? html`<${SignIn}
              error=${error}
              onSignedIn=${(s) => {
                setCsrf(s.csrf);
                setError(null);
                setMe(s);
                if (path === "/") navigate("/search");
              }}
            />`
          : html`<${Page} path=${path} me=${me} />`}
    </main>
  </div>`;
}

applyTheme(theme());
document.documentElement.dataset.js = "on";
const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
