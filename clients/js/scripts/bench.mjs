// The store's size (minified and gzipped, as a bundler ships it) and its fold speed under
// node, in events/s. Needs dist/ (npm run build).
// Usage: node scripts/bench.mjs [--media 20] [--models 8] [--steps 100] [--repeats 5]
//
// Fold speed is measured on progress_update payloads for --media media in flight at once
// (round-robin, as a user's several uploads interleave), each with --models rows of
// --steps progress events. Baseline, same run: JSON.parse of the same payloads' text, the
// cost socket.io-client pays per event before the store sees it.
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

import { applyUpdate, createProgressStore } from "../dist/index.js";

const { values } = parseArgs({ options: {
  media: { type: "string", default: "20" }, models: { type: "string", default: "8" },
  steps: { type: "string", default: "100" }, repeats: { type: "string", default: "5" } } });
const [media, models, steps, repeats] = ["media", "models", "steps", "repeats"].map(
  (k) => Number(values[k]));

async function size(entry) {
  const out = await build({
    stdin: { contents: entry, resolveDir: new URL("..", import.meta.url).pathname, loader: "ts" },
    bundle: true, minify: true, format: "esm", write: false, target: "es2020",
    external: ["socket.io-client", "react"],
  });
  const code = out.outputFiles[0].contents;
  return { min: code.length, gzip: gzipSync(code, { level: 9 }).length };
}

function events() {
  const out = [];
  const seq = new Map();
  const next = (m) => { seq.set(m, (seq.get(m) ?? 0) + 1); return seq.get(m); };
  const base = (m, event, data) => ({ mediaId: `m${m}`, userId: "u1", event, message: "",
    data, timestamp: "2026-12-01T10:00:00.000000Z", seq: next(m), source: "w1", runId: "r1" });
  for (let m = 0; m < media; m++) out.push(base(m, "PROCESSING_STARTED", { filename: "a.mp4" }));
  for (let k = 0; k < models; k++) {
    for (let m = 0; m < media; m++) out.push(base(m, "ANALYSIS_STARTED", { model_name: `M${k}` }));
    for (let s = 1; s <= steps; s++) {
      for (let m = 0; m < media; m++) {
        out.push(base(m, "FRAME_ANALYSIS_PROGRESS", { model_name: `M${k}`, progress: s,
          total: steps, phase: "frame_analysis", details: { eta_seconds: steps - s } }));
      }
    }
    for (let m = 0; m < media; m++) {
      out.push(base(m, "ANALYSIS_COMPLETED", { model_name: `M${k}`, prediction: "FAKE",
                                               confidence: 0.9 }));
    }
  }
  for (let m = 0; m < media; m++) out.push(base(m, "PROCESSING_COMPLETED", {}));
  return out;
}

function rate(run, n) {
  const rates = [];
  for (let r = 0; r < repeats; r++) {
    const t = performance.now();
    run();
    rates.push(n / ((performance.now() - t) / 1000));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}

const stream = events();
const texts = stream.map((e) => JSON.stringify(e));
const fmt = (x) => Math.round(x).toLocaleString("en-US");
rate(() => { const s = createProgressStore(); for (const e of stream) s.receive("progress_update", e); }, 1);  // warm-up
const store = rate(() => {
  const s = createProgressStore();
  s.subscribe(() => {});
  for (const e of stream) s.receive("progress_update", e);
}, stream.length);
const reading = rate(() => {
  const s = createProgressStore();
  s.subscribe(() => s.getState());  // a listener that reads the whole state every time
  for (const e of stream) s.receive("progress_update", e);
}, stream.length);
const fold = rate(() => {
  const state = new Map();
  for (const e of stream) state.set(e.mediaId, applyUpdate(state.get(e.mediaId), e, 0));
}, stream.length);
const parse = rate(() => { for (const t of texts) JSON.parse(t); }, texts.length);
const storeSize = await size(`export { createProgressStore } from "./src/store.ts";`);
const allSize = await size(`export * from "./src/store.ts"; export * from "./src/toasts.ts";
export * from "./src/fold.ts";`);
console.log(`node ${process.version}; ${stream.length} events: ${media} media at once, ` +
            `${models} models, ${steps} progress events each; medians of ${repeats}`);
console.log(`store.receive (subscribed):  ${fmt(store)} events/s`);
console.log(`  with getState() per event:  ${fmt(reading)} events/s`);
console.log(`applyUpdate alone:           ${fmt(fold)} events/s`);
console.log(`baseline, JSON.parse:        ${fmt(parse)} events/s`);
console.log(`size, createProgressStore:   ${storeSize.min} B minified, ${storeSize.gzip} B gzipped`);
console.log(`size, store+fold+toasts:     ${allSize.min} B minified, ${allSize.gzip} B gzipped`);
