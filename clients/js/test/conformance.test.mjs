// The store against the conformance suite, and the suite against a reducer that breaks it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { runConformance, storeReducer } from "../dist/conformance.js";

const suite = JSON.parse(readFileSync(new URL("../conformance/streams.json", import.meta.url)));

test("the store passes every step of every stream", () => {
  assert.ok(suite.streams.length >= 6);
  assert.deepEqual(runConformance(suite.streams, storeReducer), []);
});

test("a reducer that shows repeats fails the suite", () => {
  // The store without its repeat check: every update with a seq gets a fresh source.
  let n = 0;
  const careless = () => {
    const inner = storeReducer();
    return { ...inner, receive(name, payload) {
      if (name === "progress_update" && payload.source) payload.source += `#${n++}`;
      inner.receive(name, payload);
    } };
  };
  const failures = runConformance(suite.streams, careless);
  assert.ok(failures.some((f) => f.stream === "repeats"), JSON.stringify(failures[0]));
});

test("a reducer that takes snapshots whole fails the catch-up stream", () => {
  const careless = () => {
    const inner = storeReducer();
    return { ...inner, receive(name, payload) {
      // Forget the media first, so live events applied before the snapshot are lost.
      if (name === "progress_snapshot") payload.seqs = { ...payload.seqs, w1: 1e9 };
      inner.receive(name, payload);
    } };
  };
  const names = new Set(runConformance(suite.streams, careless).map((f) => f.stream));
  assert.ok(names.has("catch-up around live events"), [...names].join(", "));
});
