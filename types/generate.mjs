// Generates progress-event.d.ts from the committed JSON Schema (docs/schema/progress-event.v1.json).
// Usage: node generate.mjs            writes progress-event.d.ts
//        node generate.mjs --stdout   prints it (the drift test compares it with the committed file)
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const schema = JSON.parse(
  readFileSync(join(here, "..", "docs", "schema", "progress-event.v1.json"), "utf8"),
);
const banner = `/**
 * Types of one v1 progress event on the media-progress-events channel.
 * GENERATED from docs/schema/progress-event.v1.json by types/generate.mjs
 * (json-schema-to-typescript); do not edit: run \`npm run generate\` in types/.
 * Narrow on \`event\` to get each event type's \`data\`.
 */`;
const ts = await compile(schema, "ProgressEvent", {
  bannerComment: banner,
  additionalProperties: false,
  unreachableDefinitions: true,
  format: true,
  style: { printWidth: 100 },
});
if (process.argv.includes("--stdout")) {
  process.stdout.write(ts);
} else {
  writeFileSync(join(here, "progress-event.d.ts"), ts);
}
