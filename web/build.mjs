// Builds the page into dist/ (committed: the server embeds exactly these three files), or with
// --tests the pure modules into test/build/ for node's test runner. Deterministic: the same
// sources give the same bytes (no source maps, no timestamps, no minification).
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
const common = { bundle: true, format: "esm", target: "chrome120", charset: "utf8", legalComments: "none", logLevel: "warning" };

if (process.argv.includes("--tests")) {
  // The modules without DOM, one output file each, for test/unit/*.test.mjs.
  const pure = ["codec", "pixel_clock", "reorder", "clock_sync", "backoff", "auto_quality", "control", "stats", "keys", "refusals", "overlay", "picture_queue", "playout", "tracks"];
  rmSync(`${here}test/build`, { recursive: true, force: true });
  await esbuild.build({
    ...common,
    bundle: false,
    entryPoints: pure.map((m) => `${here}src/${m}.ts`),
    outdir: `${here}test/build`,
  });
} else {
  mkdirSync(`${here}dist`, { recursive: true });
  for (const f of readdirSync(`${here}dist`)) rmSync(`${here}dist/${f}`);
  await esbuild.build({ ...common, entryPoints: [`${here}src/viewer.ts`], outfile: `${here}dist/viewer.js` });
  await esbuild.build({ ...common, entryPoints: [`${here}src/worklet.ts`], outfile: `${here}dist/worklet.js` });
  copyFileSync(`${here}src/index.html`, `${here}dist/index.html`);
}
