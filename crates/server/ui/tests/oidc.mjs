// Sign-in to the web UI through a real OpenID provider (tests/idp.mjs), in Debian's Chromium:
// authorization code + PKCE, the provider's login and consent pages, back signed in as the
// provider's account with its role; a forged callback is refused in words.
//   TV_URL, TV_SERVER_CERT, TV_ARTIFACTS as for browser.mjs
import { chromium } from "playwright-core";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const URL_ = env("TV_URL");
const spki = createHash("sha256")
  .update(new X509Certificate(readFileSync(env("TV_SERVER_CERT"))).publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");
let checks = 0;
function ok(cond, what) {
  checks++;
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok ${checks} - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.TV_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
let failed = false;
try {
  const page = await (await browser.newContext()).newPage();
  // A callback this browser did not start is refused.
  await page.goto(`${URL_}/ui/oidc/callback?code=forged&state=forged`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByText(/not started in this browser/).waitFor();
  ok(!new URL(page.url()).search.includes("signin_error"), "a forged callback is refused in words, and the reason leaves the URL");

  await page.goto(`${URL_}/trace/0af7651916cd43dd8448eb211c80319c`);
  await page.getByRole("link", { name: "Sign in with your identity provider" }).click();
  // The provider's own pages (oidc-provider's development login and consent).
  await page.waitForURL((u) => u.origin !== new URL(URL_).origin);
  const at = new URL(page.url());
  ok(at.origin !== new URL(URL_).origin, `the browser is at the provider (${at.origin})`);
  await page.locator('input[name="login"]').fill("alice");
  await page.locator('input[name="password"]').fill("anything");
  await page.locator('button[type="submit"]').click();
  await page.locator('button[type="submit"]', { hasText: /continue/i }).click();
  await page.waitForURL((u) => u.origin === new URL(URL_).origin && !u.pathname.startsWith("/ui/"));
  await page.locator(".who .role").waitFor();
  ok((await page.locator(".who .role").innerText()) === "investigator", "signed in with the provider's role claim");
  ok((await page.locator(".who").innerText()).includes("alice"), "as the provider's account");
  ok(new URL(page.url()).pathname === "/trace/0af7651916cd43dd8448eb211c80319c", "back on the page the sign-in started from");
  const cookies = await page.context().cookies();
  ok(!cookies.some((c) => c.name === "__Host-tv_oidc"), "the sign-in's state cookie is gone");
  const s = await page.evaluate(async () => (await fetch("/api/findings")).status);
  ok(s === 200, `the session reads what an investigator may (findings: ${s})`);
  const admin = await page.evaluate(async () => (await fetch("/api/admin/tokens")).status);
  ok(admin === 403, `and not what an admin may (${admin})`);
  await page.screenshot({ path: `${env("TV_ARTIFACTS")}/oidc-signed-in.png` });
} catch (e) {
  failed = true;
  console.error(e.stack || String(e));
} finally {
  await browser.close();
}
console.log(`${checks} checks${failed ? ", then a failure" : ", all passed"}`);
process.exit(failed ? 1 : 0);
