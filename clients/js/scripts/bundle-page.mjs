// Bundles the store for the relay's page (simulator/web/progress-client.js): one classic
// script that defines `ProgressClient` (no module loader, no CDN; the page gets
// socket.io-client from the relay as before). Not minified: the wheel ships it readable.
// Usage: node scripts/bundle-page.mjs           writes the file
//        node scripts/bundle-page.mjs --check   exits 1 when the committed file differs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "..", "..", "simulator", "web", "progress-client.js");
const result = await build({
  stdin: {
    contents: `export { createProgressStore } from "./src/store.ts";
export { orderedModels, outcome, overallProgress } from "./src/fold.ts";
export { formatDuration, modelCounts, quietSeconds, retryingLabel, timeLabel } from "./src/labels.ts";
export { noticeKey, noticeFor, toastFor } from "./src/toasts.ts";`,
    resolveDir: join(here, ".."),
    loader: "ts",
  },
  bundle: true,
  format: "iife",
  globalName: "ProgressClient",
  target: "es2020",
  write: false,
  legalComments: "none",
  banner: { js: "/* GENERATED from clients/js/src by clients/js/scripts/bundle-page.mjs " +
                "(esbuild); do not edit: run `npm run bundle:page` in clients/js. */" },
});
const text = result.outputFiles[0].text;
if (process.argv.includes("--check")) {
  let committed = "";
  try { committed = readFileSync(target, "utf8"); } catch { /* missing: stale */ }
  if (committed !== text) {
    console.error("stale: simulator/web/progress-client.js");
    process.exit(1);
  }
} else {
  writeFileSync(target, text);
}
