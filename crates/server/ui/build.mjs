// Builds the web UI into dist/ (committed: the server embeds dist/ in its binary, so running it
// needs no Node.js). scripts/test rebuilds and fails when dist/ differs from the sources.
//
//   dist/index.html             the shell, with Subresource Integrity on app.js and app.css
//   dist/app.js, dist/app.css   the application (Preact + htm, uPlot, noble)
//   dist/verify.html            the standalone receipt verifier: one file with its script
//                               inlined (a classic script whose hash its CSP pins; save it, open it
//                               offline; its SHA-256 is printed by `tracevault verify-page`)
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
mkdirSync(here + "dist", { recursive: true });

const common = {
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  legalComments: "eof",
  logLevel: "warning",
  write: false,
};

const app = await esbuild.build({
  ...common,
  entryPoints: [here + "src/main.js"],
  outfile: here + "dist/app.js",
});
for (const f of app.outputFiles) writeFileSync(f.path, f.text);

const css = await esbuild.build({
  ...common,
  entryPoints: [here + "src/app.css"],
  outfile: here + "dist/app.css",
  loader: { ".css": "css" },
});
for (const f of css.outputFiles) writeFileSync(f.path, f.text);




writeFileSync(here + "dist/favicon.svg", readFileSync(here + "src/favicon.svg"));

// The standalone verifier: one file, its script and style inline and pinned by hash in its own
// Content-Security-Policy (a file opened offline has no server to send headers, and browsers
// refuse Subresource Integrity on file: scripts, so the hash pin is the page's integrity); no
// connect-src: it reaches no network.
const standalone = await esbuild.build({
  ...common,
  format: "iife",
  entryPoints: [here + "src/standalone.js"],
  outfile: here + "dist/verify.js",
});
const script = standalone.outputFiles[0].text.replace(/<\/(script)/gi, "<\\/$1").trimEnd();
const style = readFileSync(here + "src/standalone.css", "utf8").trim();
const b64sha256 = (t) => createHash("sha256").update(t, "utf8").digest("base64");
export const verifierCsp =
  `default-src 'none'; script-src 'sha256-${b64sha256(script)}'; style-src 'sha256-${b64sha256(style)}'; ` +
  "img-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'";
const page = readFileSync(here + "src/verify.html", "utf8")
  .replace("__CSP__", verifierCsp)
  .replace("__STYLE__", () => style)
  .replace("__SCRIPT__", () => script);
writeFileSync(here + "dist/verify.html", page);
writeFileSync(here + "dist/verify.csp", verifierCsp + "\n");

// The shell, with Subresource Integrity on its script and style sheet.
const sri = (f) => "sha384-" + createHash("sha384").update(readFileSync(here + "dist/" + f)).digest("base64");
writeFileSync(
  here + "dist/index.html",
  readFileSync(here + "src/index.html", "utf8")
    .replace("__SRI_JS__", sri("app.js"))
    .replace("__SRI_CSS__", sri("app.css")),
);

for (const f of ["app.js", "app.css", "verify.html"]) {
  const b = readFileSync(here + "dist/" + f);
  const sri = "sha384-" + createHash("sha384").update(b).digest("base64");
  const sha256 = createHash("sha256").update(b).digest("hex");
  console.log(`dist/${f}: ${b.length} bytes (${(b.length / 1024).toFixed(1)} KiB), ${sri}, sha256 ${sha256}`);
}
