// Builds the web UI into dist/ (committed: the server embeds dist/ in its binary, so running it
// needs no Node.js). scripts/test rebuilds and fails when dist/ differs from the sources.
//
//   dist/app.js, dist/app.css   the application (Preact + htm, uPlot, noble)
//   dist/verify.html            the standalone receipt verifier: one file with its script
//                               inlined as a module whose hash its CSP pins (save it, open it
//                               offline; its SHA-256 is printed by `tracevault ui verifier-digest`)
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

for (const f of ["app.js", "app.css"]) {
  const b = readFileSync(here + "dist/" + f);
  const sri = "sha384-" + createHash("sha384").update(b).digest("base64");
  console.log(`dist/${f}: ${b.length} bytes (${(b.length / 1024).toFixed(1)} KiB), ${sri}`);
}
