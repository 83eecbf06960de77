// Generates src/generated/*.ts from the committed JSON Schemas, the one source of the wire
// shapes: docs/schema/progress-event.v1.json (the channel event, itself generated from the
// Python models) and docs/schema/socket-events.v1.json (what a relay emits to sockets).
// Usage: node scripts/generate.mjs           writes the files
//        node scripts/generate.mjs --check   exits 1 and names each file that differs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const schemas = join(here, "..", "..", "..", "docs", "schema");
const out = join(here, "..", "src", "generated");
const options = (source) => ({
  bannerComment: `/* GENERATED from docs/schema/${source} by clients/js/scripts/generate.mjs
 * (json-schema-to-typescript); do not edit: run \`npm run generate\` in clients/js. */`,
  additionalProperties: false,
  unreachableDefinitions: true,
  format: true,
  style: { printWidth: 100 },
});

const channel = JSON.parse(readFileSync(join(schemas, "progress-event.v1.json"), "utf8"));
const socket = JSON.parse(readFileSync(join(schemas, "socket-events.v1.json"), "utf8"));
// The socket schema is a set of definitions; one root names them all for the compiler.
socket.oneOf = Object.keys(socket.$defs).map((name) => ({ $ref: `#/$defs/${name}` }));
socket.title = "SocketPayload";

const files = {
  "channel.ts": await compile(channel, "ProgressEvent", options("progress-event.v1.json")),
  "socket.ts": await compile(socket, "SocketPayload", options("socket-events.v1.json")),
};
let stale = 0;
for (const [name, text] of Object.entries(files)) {
  const path = join(out, name);
  if (process.argv.includes("--check")) {
    let committed = "";
    try { committed = readFileSync(path, "utf8"); } catch { /* missing: stale */ }
    if (committed !== text) { console.error(`stale: src/generated/${name}`); stale++; }
  } else {
    writeFileSync(path, text);
  }
}
process.exit(stale ? 1 : 0);
