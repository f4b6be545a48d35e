// The web UI in a real browser (Debian's Chromium driven by playwright-core), against a running
// `tracevault demo`. Run by crates/cli/tests/ui_browser.rs, which starts the demo and passes:
//   TV_URL            https://127.0.0.1:PORT (the API listener, which serves the UI)
//   TV_SERVER_CERT    the server's certificate (PEM): the browser trusts exactly its key
//   TV_READER_LOGIN   a login URL minted with a reader token
//   TV_ADMIN_TOKEN    the admin token (pasted into the sign-in form)
//   TV_VKEYS          the log's verifier keys, one per line
//   TV_BIG_TRACE      a trace id with 10,000 spans
//   TV_ARTIFACTS      where screenshots go
//   TV_VERIFY_PAGE    the standalone verifier as `tracevault verify-page --out` wrote it
//   TV_VERIFY_SHA256  the digest the CLI printed for it
// Prints "FIGURES {json}" (first-render times, bundle size) and exits 1 on the first failure.
import { chromium } from "playwright-core";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync, mkdirSync, statSync } from "node:fs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const URL_ = env("TV_URL");
const ART = env("TV_ARTIFACTS");
mkdirSync(ART, { recursive: true });
const vkeys = readFileSync(env("TV_VKEYS"), "utf8").trim().split("\n");
const spki = createHash("sha256")
  .update(new X509Certificate(readFileSync(env("TV_SERVER_CERT"))).publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");
const axeSource = readFileSync(new URL("../node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

const figures = {};
let checks = 0;
function ok(cond, what) {
  checks++;
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok ${checks} - ${what}`);
}

async function axe(page, what) {
  // axe-core runs in the page; CSP forbids inline script, so it is evaluated through the
  // DevTools protocol (Playwright's evaluate), not injected as a <script>.
  await page.evaluate(axeSource);
  const res = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const detail = bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join("; ")}`);
  ok(bad.length === 0, `axe: no serious or critical violations on ${what}${bad.length ? `: ${detail.join(" | ")}` : ""}`);
}

async function mark(page, name, timeout = 30000) {
  await page.waitForFunction((n) => performance.getEntriesByName(n).length > 0, name, { timeout });
  return page.evaluate((n) => performance.getEntriesByName(n)[0].startTime, name);
}

async function shot(page, name) {
  await page.screenshot({ path: `${ART}/${name}.png`, fullPage: false });
}

const browser = await chromium.launch({
  executablePath: process.env.TV_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
let failed = false;
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 }, colorScheme: "light" });
  const page = await ctx.newPage();
  const consoleErrors = [];
  // Script errors fail the test; refused requests the test makes on purpose (401, 403) are
  // logged by Chromium as resource errors and are not.
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });

  // 1. A reader signs in with a login link; the code leaves the address bar at once.
  await page.goto(env("TV_READER_LOGIN"));
  await page.getByRole("heading", { name: "Sign in with this link?" }).waitFor();
  ok(new URL(page.url()).hash === "", "the login code is gone from the address bar");
  ok(/role reader/.test(await page.locator("#main").innerText()), "the link says whom it signs in as before it is used");
  await axe(page, "login link confirmation");
  await page.getByRole("button", { name: /^Sign in as / }).click();
  await page.getByRole("heading", { name: "Search traces" }).waitFor();
  ok(new URL(page.url()).pathname === "/search", "the link landed on its page");
  await page.getByTestId("result-count").waitFor();
  ok(/\d+ traces?/.test(await page.getByTestId("result-count").innerText()), "search shows results");
  ok((await page.locator(".who .role").innerText()) === "reader", "signed in as the reader");
  const cookies = await ctx.cookies();
  const sess = cookies.find((c) => c.name === "__Host-tv_session");
  ok(sess && sess.httpOnly && sess.secure && sess.sameSite === "Strict", "the session cookie is HttpOnly, Secure, SameSite=Strict");
  // The link works once.
  const again = await ctx.newPage();
  await again.goto(env("TV_READER_LOGIN"));
  await again.getByRole("heading", { name: "Sign in" }).waitFor();
  ok(/already used/.test(await again.locator(".error").innerText()), "a used login link is refused in words");
  await again.close();

  // 2. Search first render on a fresh load (the figure), and accessibility.
  await page.goto(`${URL_}/search?q=%7B%7D&range=1h`);
  figures.search_first_render_ms = Math.round(await mark(page, "tv:search-rendered"));
  await page.locator(".scatter canvas").first().waitFor();
  await shot(page, "search");
  await axe(page, "search (light)");

  // 3. TraceQL with autocompletion: suggestions for a scope, then a value.
  const q = page.locator("#traceql");
  await q.fill("");
  await q.pressSequentially("resource.serv");
  const tqlOptions = page.getByRole("listbox", { name: "TraceQL suggestions" });
  await tqlOptions.getByRole("option", { name: "resource.service.name" }).waitFor();
  ok(true, "TraceQL suggests attribute names");
  await q.press("Enter");
  ok((await q.inputValue()) === "resource.service.name", "Enter accepts a suggestion");
  await q.fill('{ resource.service.name = "pay');
  await q.press("End");
  await q.press("ArrowDown");
  await tqlOptions.getByRole("option", { name: "payment" }).waitFor();
  ok(true, "TraceQL suggests values of the attribute");
  await q.fill('{ resource.service.name = "payment" && name = "Charge" }');
  await q.press("Escape");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL((u) => (u.searchParams.get("q") || "").includes("Charge"));
  ok(new URL(page.url()).searchParams.get("q") === '{ resource.service.name = "payment" && name = "Charge" }', "the query is in the URL (shareable)");
  await page.locator("table.list tbody tr").first().waitFor();
  const roots = await page.locator("table.list tbody tr td:nth-child(2)").allInnerTexts();
  ok(roots.length > 0 && roots.every((r) => r === "frontend" || r === "cart"), `results are traces through payment (${roots.length}: ${[...new Set(roots)].join(", ")})`);

  // 4. A trace: its waterfall, and what a reader sees of personal data.
  await page.locator("table.list tbody tr", { hasText: "frontend" }).first().locator("a").click();
  await page.locator('[role="tree"]').waitFor();
  const rows = await page.locator('[role="treeitem"]').count();
  ok(rows === 9, `the waterfall shows the order's nine spans (${rows})`);
  ok((await page.locator(".wf-row.critical").count()) >= 1, "the critical path is marked");
  await page.locator('[role="treeitem"]', { hasText: "Charge" }).last().click();
  await page.locator("#span-title", { hasText: "Charge" }).waitFor();
  await page.locator('[data-mark="restricted"]').first().waitFor();
  ok(true, "a restricted field is marked for the reader");
  ok((await page.locator(".detail").innerText()).includes("[restricted:"), "the reader sees the restricted placeholder, not the value");
  await shot(page, "trace-reader");
  await axe(page, "trace (light, reader)");
  // Keyboard: the waterfall moves with the arrows.
  await page.locator('[role="tree"]').focus();
  const before = await page.locator("#span-title").innerText();
  await page.keyboard.press("Home");
  await page.keyboard.press("ArrowDown");
  ok((await page.locator("#span-title").innerText()) !== before || rows < 2, "arrow keys move through the spans");

  // 5. A reader reaches no admin page: the menu leaves them out, the pages say no, the API
  //    refuses the session.
  const readerTrace = page.url();
  const nav = await page.getByRole("navigation", { name: "Main" }).innerText();
  ok(!/Audit|Security|Findings/.test(nav), `the reader's menu has no admin pages (${nav.replace(/\s+/g, " ")})`);
  for (const path of ["/audit", "/security", "/findings"]) {
    await page.goto(`${URL_}${path}`);
    await page.getByText("Your role may not read this").waitFor();
    ok(true, `a reader opening ${path} is told the role may not read it`);
  }
  ok((await page.locator("table.list").count()) === 0, "and sees no records");
  const adminStatus = await page.evaluate(async () => (await fetch("/api/admin/tokens")).status);
  ok(adminStatus === 403, `the reader's session gets 403 from the admin API (${adminStatus})`);
  await page.goto(readerTrace);
  await page.locator('[role="tree"]').waitFor();

  // 6. Sign out; sign in again by pasting the admin token.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const out = await page.evaluate(async () => (await fetch("/api/search?q=%7B%7D")).status);
  ok(out === 401, "after sign-out the session no longer works");
  await axe(page, "sign-in");
  await page.locator("#token").fill(env("TV_ADMIN_TOKEN"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(".who .role").waitFor();
  ok((await page.locator(".who .role").innerText()) === "admin", "signed in by pasting a token");
  await page.locator('[role="tree"]').waitFor();
  ok(true, "signing in again returns to the page that was open");

  // 7. Redaction marks for someone who may read pseudonyms.
  await page.goto(`${URL_}/search?q=${encodeURIComponent('{ resource.service.name = "db" && name = "INSERT payments" }')}`);
  await page.locator("table.list tbody tr a").first().click();
  await page.locator('[role="treeitem"]', { hasText: "INSERT payments" }).last().click();
  await page.locator(".mark", { hasText: "SQL scrubbed" }).waitFor();
  ok(true, "scrubbed SQL is marked");
  await page.locator('[role="treeitem"]', { hasText: "Charge" }).last().click();
  await page.locator(".mark", { hasText: "pseudonym" }).first().waitFor();
  ok(true, "a pseudonym is marked as such");
  await page.locator(".mark", { hasText: /masked/ }).first().waitFor();
  ok(true, "a masked card number is marked");

  // 8. Verify in the browser, against keys pinned in this browser.
  const traceUrl = page.url();
  await page.goto(`${URL_}/keys`);
  await page.locator("#vkeys").fill(vkeys.join("\n"));
  await page.getByRole("button", { name: "Pin these keys" }).click();
  await page.getByText("Pinned 2 keys").waitFor();
  await axe(page, "verifier keys");
  await page.goto(traceUrl);
  await page.getByRole("button", { name: "Verify in this browser" }).click();
  const verdict = page.locator(".verdict");
  await verdict.waitFor();
  const good = await verdict.innerText();
  ok(good.startsWith("Verified"), `the receipt verifies in the page: ${good}`);
  ok((await page.locator(".steps li.ok").count()) >= 3, "the page says what was proven");
  await shot(page, "verified");

  // One altered byte in the receipt the server sends: the page says it failed.
  // (The real receipts are fetched by the page itself, then served back with one byte changed.)
  const traceId = new URL(traceUrl).pathname.split("/")[2];
  const real = await page.evaluate(async (id) => (await fetch(`/api/traces/${id}/receipt`)).json(), traceId);
  for (const r of real.receipts) {
    const i = Math.floor(r.leaf.length / 2);
    r.leaf = r.leaf.slice(0, i) + (r.leaf[i] === "A" ? "B" : "A") + r.leaf.slice(i + 1);
  }
  await page.route("**/api/traces/*/receipt", (route) => route.fulfill({ json: real }));
  await page.getByRole("button", { name: "Verify in this browser" }).click();
  await page.locator(".verdict.bad").waitFor();
  ok((await verdict.innerText()).startsWith("Not verified"), `an altered receipt fails: ${await verdict.innerText()}`);
  await shot(page, "altered");
  await page.unroute("**/api/traces/*/receipt");

  // A key that is not pinned: only the Ed25519 key pinned, the ML-DSA-44 signature is unchecked.
  await page.goto(`${URL_}/keys`);
  await page.locator("#vkeys").fill(vkeys[0]);
  await page.getByRole("button", { name: "Pin these keys" }).click();
  await page.getByText("Pinned 1 keys").waitFor();
  await page.goto(traceUrl);
  await page.getByRole("button", { name: "Verify in this browser" }).click();
  await page.locator(".verdict.bad").waitFor();
  ok(true, `with a key unpinned it fails: ${await verdict.innerText()}`);
  await page.goto(`${URL_}/keys`);
  await page.locator("#vkeys").fill(vkeys.join("\n"));
  await page.getByRole("button", { name: "Pin these keys" }).click();
  await page.getByText("Pinned 2 keys").waitFor();

  // The standalone verifier: served with its own CSP, the same bytes the CLI wrote and digested,
  // and working offline from a file, with no network.
  const resp = await page.request.get(`${URL_}/verify.html`, { ignoreHTTPSErrors: true });
  const served = await resp.body();
  ok(createHash("sha256").update(served).digest("hex") === env("TV_VERIFY_SHA256"), "the served verifier page is the one the CLI digests");
  ok(served.equals(readFileSync(env("TV_VERIFY_PAGE"))), "and the file the CLI wrote");
  ok(/connect-src 'none'/.test(resp.headers()["content-security-policy"]), "the served page may reach no network");
  const receiptJson = JSON.stringify(
    await page.evaluate(async (id) => (await fetch(`/api/traces/${id}/receipt`)).json(), traceId),
  );
  const offline = await ctx.newPage();
  await offline.goto(`file://${env("TV_VERIFY_PAGE")}`);
  await offline.getByText("Nothing you paste leaves this page").waitFor();
  await offline.locator("#keys").fill(vkeys.join("\n"));
  await offline.locator("#receipt").fill(receiptJson);
  await offline.getByRole("button", { name: "Verify" }).click();
  await offline.locator("#out p").first().waitFor();
  const summary = await offline.locator("#out p").first().innerText();
  ok(/^(\d+) of \1 receipts verified/.test(summary), `the offline page verifies the trace's receipts (${summary})`);
  await shot(offline, "verify-offline");
  await axe(offline, "standalone verifier (offline)");
  const altered = JSON.parse(receiptJson);
  const r0 = altered.receipts[0];
  r0.proof = r0.proof.replace(/index (\d+)/, (m, n) => `index ${Number(n) + 1}`);
  await offline.locator("#receipt").fill(JSON.stringify(r0));
  await offline.getByRole("button", { name: "Verify" }).click();
  await offline.locator("#out h2.bad").waitFor();
  ok((await offline.locator("#out").innerText()).includes("0 of 1 receipts verified"), "the offline page refuses an altered receipt");
  const blocked = await offline.evaluate(() => fetch("https://127.0.0.1:1/").then(() => false, () => true));
  ok(blocked, "the offline page cannot fetch anything");
  await offline.close();

  // 9. A finding on its span.
  await page.goto(`${URL_}/search?q=${encodeURIComponent('{ name = "GET /search" }')}`);
  await page.locator("table.list tbody tr a").first().click();
  await page.locator('[role="treeitem"] .badge', { hasText: "⚑" }).first().waitFor();
  ok(true, "the flagged span carries its finding");
  ok((await page.locator(".detail .findings").innerText()).toLowerCase().includes("sql injection"), "the finding is named on the span");
  await shot(page, "finding");

  // 10. Findings: list, chart, OCSF record, its trace; quarantine released by the admin.
  const menu = page.getByRole("navigation", { name: "Main" });
  await menu.getByRole("link", { name: "Findings" }).click();
  await page.getByTestId("finding-count").waitFor();
  ok(Number((await page.getByTestId("finding-count").innerText()).split(" ")[0]) >= 8, "the demo's findings are listed");
  // The chart's canvas is made in an effect after the list renders (uPlot): wait for it.
  await page.locator(".chart canvas").first().waitFor({ timeout: 10000 }).catch(() => {});
  ok((await page.locator(".chart canvas").count()) >= 1, "findings are charted over time");
  await page.getByRole("button", { name: /SQL injection/ }).first().click();
  await page.getByLabel("OCSF record").waitFor();
  ok((await page.getByLabel("OCSF record").innerText()).includes('"class_uid": 2004'), "a finding shows its OCSF record");
  await axe(page, "findings");
  await shot(page, "findings");
  const quarantined = page.getByRole("button", { name: /^Release token:/ });
  await quarantined.first().waitFor();
  ok(true, "the quarantined credential is listed for the admin");
  await quarantined.first().click();
  await page.getByText(/^Released /).waitFor();
  await page.getByRole("button", { name: /^Release token:/ }).first().waitFor({ state: "detached", timeout: 5000 });
  ok(true, "the admin released it: the credential left the list");
  await page.locator("table.list tbody tr", { hasText: "SQL injection" }).first().locator("a").click();
  await page.locator('[role="tree"]').waitFor();
  ok(new URL(page.url()).pathname.startsWith("/trace/"), "a finding links to its trace");

  // 11. The service map shows the demo's calls, the new lateral one flagged.
  await menu.getByRole("link", { name: "Service map" }).click();
  await page.getByTestId("edges").waitFor();
  const edgeRows = await page.locator('[data-testid="edges"] tbody tr').allInnerTexts();
  for (const [a, b] of [["frontend", "cart"], ["frontend", "payment"], ["cart", "db"], ["payment", "db"]]) {
    ok(edgeRows.some((r) => r.startsWith(`${a}\t${b}\t`)), `the map has ${a} → ${b}`);
  }
  ok((await page.locator('path.edge.flagged[data-edge="cart->payment"]').count()) === 1, "the new cart → payment call stands out");
  await axe(page, "service map");
  await shot(page, "map");

  // 12. Audit and security at a glance.
  await menu.getByRole("link", { name: "Audit" }).click();
  await page.getByTestId("audit-size").waitFor();
  ok(Number(await page.getByTestId("audit-size").innerText()) > 10, "the audit log's size is shown");
  await page.locator("#a-action").fill("ui_login");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("table.list tbody tr", { hasText: "ui session (login link)" }).first().waitFor();
  ok(true, "the audit log names the sign-in by login link");
  await axe(page, "audit");
  await shot(page, "audit");
  await menu.getByRole("link", { name: "Security" }).click();
  await page.locator('[data-family="redacted"] table.totals').waitFor();
  const redacted = await page.locator('[data-family="redacted"] table.totals').innerText();
  ok(/detector:email/.test(redacted) && /detector:credit_card/.test(redacted), "redactions by detector are shown");
  ok(/high/.test(await page.locator('[data-family="findings"]').innerText()), "findings by severity are shown");
  const groups = await page.locator('[data-family="tls_groups"] table.totals').innerText();
  ok(/X25519MLKEM768/.test(groups), `the TLS key-exchange groups in use are shown (${groups.replace(/\s+/g, " ")})`);
  await axe(page, "security");
  await shot(page, "security");

  // 13. A 10,000-span trace: first render (the figure), windowed rows, dark theme, axe.
  await page.goto(`${URL_}/trace/${env("TV_BIG_TRACE")}`);
  figures.trace_10k_first_render_ms = Math.round(await mark(page, "tv:trace-rendered", 60000));
  ok((await page.getByTestId("span-count").innerText()).startsWith("10000"), "all 10,000 spans are in the trace");
  const rendered = await page.locator('[role="treeitem"]').count();
  ok(rendered < 200, `only the rows on screen are in the page (${rendered})`);
  await page.locator('[role="tree"]').focus();
  await page.keyboard.press("End");
  await page.waitForTimeout(100);
  ok((await page.locator('[role="treeitem"][aria-selected="true"]').count()) === 1, "End reaches the last span");
  await page.getByRole("button", { name: /Theme/ }).click(); // auto → dark
  ok((await page.evaluate(() => document.documentElement.dataset.theme)) === "dark", "the dark theme is applied");
  await shot(page, "trace-10k-dark");
  await axe(page, "trace (dark, 10,000 spans)");
  await page.goto(`${URL_}/search`);
  await page.getByTestId("result-count").waitFor();
  await axe(page, "search (dark)");

  ok(consoleErrors.length === 0, `no errors in the browser console${consoleErrors.length ? `: ${consoleErrors.join(" | ")}` : ""}`);
  const dist = new URL("../dist/", import.meta.url).pathname;
  figures.bundle_bytes = { "app.js": statSync(dist + "app.js").size, "app.css": statSync(dist + "app.css").size };
  figures.screenshots = ART;
} catch (e) {
  failed = true;
  console.error(e.stack || String(e));
} finally {
  await browser.close();
}
console.log(`FIGURES ${JSON.stringify(figures)}`);
console.log(`${checks} checks${failed ? ", then a failure" : ", all passed"}`);
process.exit(failed ? 1 : 0);
