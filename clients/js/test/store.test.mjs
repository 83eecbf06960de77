// The store's behaviour beyond the conformance suite: subscriptions, sockets, limits.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";

import { createProgressStore, noticeKey, orderedModels, toastFor } from "../dist/index.js";

const orderedModelsOf = (m) => orderedModels(m).map((r) => r.modelName);

const update = (seq, event, data = {}, extra = {}) => ({
  mediaId: "m1", userId: "u1", event, message: "", data, timestamp: null, seq, source: "w1",
  runId: "r1", ...extra });

test("getState keeps its object until something changes; listeners hear each change", () => {
  const store = createProgressStore({ now: () => 1000 });
  let calls = 0;
  const stop = store.subscribe(() => calls++);
  const before = store.getState();
  assert.equal(store.getState(), before);
  store.receive("progress_update", update(1, "PROCESSING_STARTED", { filename: "a.mp4" }));
  assert.notEqual(store.getState(), before);
  assert.equal(calls, 1);
  assert.equal(store.getState().media.m1.lastUpdateAt, 1000);
  assert.equal(store.getMedia("m1"), store.getState().media.m1);
  store.receive("unknown_event", {});
  store.receive("progress_update", null);
  store.receive("progress_update", { event: "PROCESSING_STARTED" });
  assert.equal(calls, 1);
  stop();
  store.receive("progress_update", update(2, "ANALYSIS_STARTED", { model_name: "M" }));
  assert.equal(calls, 1);
});

test("attach follows a socket's events and connection, and detaches", () => {
  const socket = new EventEmitter();
  const store = createProgressStore();
  const detach = store.attach(socket);
  socket.emit("connect_error", new Error("the token has expired"));
  assert.equal(store.getState().connection, "refused");
  assert.equal(store.getState().connectionError, "the token has expired");
  socket.emit("connect");
  assert.equal(store.getState().connection, "connected");
  socket.emit("progress_update", update(1, "PROCESSING_STARTED"));
  socket.emit("processing_error", { mediaId: "m1", filename: null, error: "boom" });
  assert.equal(store.getState().media.m1.status, "failed");
  assert.equal(store.getState().media.m1.error, "boom");
  detach();
  assert.equal(socket.listenerCount("progress_update"), 0);
  socket.emit("disconnect");
  assert.equal(store.getState().connection, "connected");
});

const snapshot = (extra) => ({
  mediaId: "m1", userId: "u1", status: "running", filename: null, runId: "r1", error: null,
  seq: 1, source: "w1", seqs: { w1: 1 }, updatedAt: "2026-12-01T10:00:00.500000Z",
  models: [], ...extra });

test("a snapshot sets lastUpdateAt from quietSeconds, else updatedAt; unknown fields are ignored", () => {
  const now = Date.parse("2026-12-01T10:01:00Z");
  let store = createProgressStore({ now: () => now });
  // quietSeconds is counted by the server's clock: it wins over updatedAt, which a browser
  // clock that is off would misread.
  store.receive("progress_snapshot", snapshot({ quietSeconds: 40, ownerAlive: true,
                                                somethingNew: { a: 1 } }));
  let m = store.getState().media.m1;
  assert.equal(m.lastUpdateAt, now - 40_000);
  assert.equal(m.ownerAlive, true);
  assert.equal("somethingNew" in m, false);
  store = createProgressStore({ now: () => now });
  store.receive("progress_snapshot", snapshot({ quietSeconds: null, ownerAlive: null }));
  assert.equal(store.getState().media.m1.lastUpdateAt, Date.parse("2026-12-01T10:00:00.500Z"));
  assert.equal(store.getState().media.m1.ownerAlive, null);
  // An updatedAt ahead of the browser's clock is read as now, never as a future.
  store = createProgressStore({ now: () => 5 });
  store.receive("progress_snapshot", snapshot({}));
  assert.equal(store.getState().media.m1.lastUpdateAt, 5);
});

test("a snapshot older than the replay window keeps the store's own state", () => {
  const store = createProgressStore({ replayLimit: 2 });
  for (let seq = 1; seq <= 5; seq++) {
    store.receive("progress_update", update(seq, "FRAME_ANALYSIS_PROGRESS",
                                            { model_name: "M", progress: seq, total: 10 }));
  }
  store.receive("progress_snapshot", {
    mediaId: "m1", userId: "u1", status: "running", filename: null, runId: "r1", error: null,
    seq: 1, source: "w1", seqs: { w1: 1 }, updatedAt: "2026-12-01T10:00:00Z",
    models: [{ modelName: "M", status: "analyzing", progress: 1, total: 10, phase: null,
               prediction: null, confidence: null, error: null, etaSeconds: null }] });
  assert.equal(store.getState().media.m1.models.M.progress, 5);
  assert.equal(store.getState().counters.staleSnapshots, 1);
});

test("finished media beyond maxFinished are dropped, oldest first; running ones stay", () => {
  const store = createProgressStore({ maxFinished: 2 });
  for (const id of ["a", "b", "c"]) {
    store.receive("progress_update", update(1, "PROCESSING_STARTED", {}, { mediaId: id }));
    store.receive("progress_update", update(2, "PROCESSING_COMPLETED", {}, { mediaId: id }));
  }
  store.receive("progress_update", update(1, "PROCESSING_STARTED", {}, { mediaId: "d" }));
  assert.deepEqual(Object.keys(store.getState().media).sort(), ["b", "c", "d"]);
});

test("the toast of a media: loading with its progress, then its outcome", () => {
  const store = createProgressStore();
  store.receive("progress_update", update(1, "PROCESSING_STARTED", { filename: "a.mp4" }));
  store.receive("progress_update", update(2, "FRAME_ANALYSIS_PROGRESS",
                                          { model_name: "M", progress: 1, total: 4 }));
  let toast = toastFor(store.getState().media.m1);
  assert.deepEqual([toast.id, toast.kind, toast.progress], ["m1", "loading", 0.25]);
  store.receive("progress_update", update(3, "ANALYSIS_FAILED",
                                          { model_name: "M", error_message: "x" }));
  store.receive("progress_update", update(4, "PROCESSING_COMPLETED"));
  toast = toastFor(store.getState().media.m1);
  assert.equal(toast.kind, "partial");
  assert.equal(toast.title, "Analysis partly complete: a.mp4");
  const [notice] = store.getState().notices;
  assert.equal(noticeKey(notice), "m1:r1:partial");
});

test("session_ended says the session ended and why, until a connect; caught_up is kept per connection", () => {
  const socket = new EventEmitter();
  const store = createProgressStore();
  store.attach(socket);
  socket.emit("connect");
  assert.equal(store.getState().caughtUp, false);
  socket.emit("caught_up", {});
  assert.equal(store.getState().caughtUp, true);
  socket.emit("session_ended", { reason: "token_expired", message: "your session expired" });
  socket.emit("disconnect", "io server disconnect");
  socket.emit("connect_error", new Error("the token has expired"));
  let s = store.getState();
  // Neither the disconnect that follows nor a refused retry with the old token turns it
  // back into "reconnecting…".
  assert.equal(s.connection, "ended");
  assert.deepEqual(s.sessionEnded, { reason: "token_expired", message: "your session expired" });
  assert.equal(s.caughtUp, false);
  socket.emit("connect");
  s = store.getState();
  assert.equal(s.connection, "connected");
  assert.equal(s.sessionEnded, null);
  assert.equal(s.caughtUp, false);  // a new catch-up begins
});

test("the words a UI shows: counts, ETA, quiet, a gone worker, retrying", async () => {
  const { modelCounts, timeLabel, retryingLabel, orderedModels } = await import("../dist/index.js");
  let now = 1_000_000;
  const store = createProgressStore({ now: () => now });
  store.receive("progress_update", update(1, "PROCESSING_STARTED", { filename: "a.mp4" }));
  store.receive("progress_update", update(2, "ANALYSIS_QUEUED", { model_name: "B" }));
  store.receive("progress_update", update(3, "ANALYSIS_QUEUED", { model_name: "A",
    details: { attempt: 1, attempts: 3 } }));
  store.receive("progress_update", update(4, "FRAME_ANALYSIS_PROGRESS", { model_name: "B",
    progress: 10, total: 100, details: { eta_seconds: 125.2 } }));
  let m = store.getMedia("m1");
  assert.deepEqual(orderedModels(m).map((r) => r.modelName), ["B", "A"]);
  assert.equal(retryingLabel(m.models.A), null);  // a first attempt's queueing is no retry
  assert.equal(timeLabel(m, now), "about 2 min 05 s left");
  assert.equal(modelCounts(m), "0 completed, 2 to go");
  now += 14_999;
  assert.equal(timeLabel(store.getMedia("m1"), now), "about 2 min 05 s left");
  now += 26_001;  // 41 s without news: the ETA would only freeze
  assert.equal(timeLabel(store.getMedia("m1"), now), "no update for 41 s");
  store.receive("progress_update", update(5, "ANALYSIS_QUEUED", { model_name: "A",
    details: { attempt: 2, attempts: 3, retry_reason: "CUDA out of memory" } }));
  m = store.getMedia("m1");
  assert.equal(retryingLabel(m.models.A), "retrying (2/3)");
  assert.equal(m.models.A.retryReason, "CUDA out of memory");
  assert.equal(timeLabel(m, now), "about 2 min 05 s left");
  store.receive("progress_update", update(6, "ANALYSIS_COMPLETED", { model_name: "B" }));
  store.receive("progress_update", update(7, "ANALYSIS_FAILED", { model_name: "A",
    error_message: "no face found", details: { attempt: 3, attempts: 3 } }));
  assert.equal(modelCounts(store.getMedia("m1")), "1 completed, 1 failed");
  // A snapshot that found the worker gone: no ETA, no "no update", but why.
  store.receive("progress_snapshot", {
    mediaId: "m2", userId: "u1", status: "running", filename: null, runId: "r2", error: null,
    seq: 3, source: "w2", seqs: { w2: 3 }, updatedAt: "2026-12-01T10:00:00Z",
    quietSeconds: 20, ownerAlive: false, models: [{ modelName: "A", status: "analyzing",
      progress: 1, total: 9, phase: null, prediction: null, confidence: null, error: null,
      etaSeconds: 4 }] });
  assert.match(timeLabel(store.getMedia("m2"), now), /worker stopped/);
  assert.doesNotMatch(timeLabel(store.getMedia("m2"), now), /w2|r2/);
});

test("a page's queue-order memory gives a reloaded store the rows' queue order", () => {
  const kept = new Map();
  const queueOrders = { get: (id, run) => kept.get(`${id}:${run}`),
                        set: (id, run, order) => kept.set(`${id}:${run}`, order) };
  const before = createProgressStore({ queueOrders });
  before.receive("progress_update", update(1, "PROCESSING_STARTED"));
  for (const [seq, name] of [[2, "ZETA"], [3, "ALPHA"]]) {
    before.receive("progress_update", update(seq, "ANALYSIS_QUEUED", { model_name: name }));
  }
  const snap = { mediaId: "m1", userId: "u1", status: "running", filename: null, runId: "r1",
    error: null, seq: 3, source: "w1", seqs: { w1: 3 }, updatedAt: "2026-12-01T10:00:00Z",
    models: ["ALPHA", "ZETA"].map((modelName) => ({ modelName, status: "queued", progress: null,
      total: null, phase: null, prediction: null, confidence: null, error: null,
      etaSeconds: null })) };
  const names = (store) => orderedModelsOf(store.getMedia("m1"));
  const reloaded = createProgressStore({ queueOrders });
  reloaded.receive("progress_snapshot", snap);
  assert.deepEqual(names(reloaded), ["ZETA", "ALPHA"]);
  const elsewhere = createProgressStore();  // another device: by name
  elsewhere.receive("progress_snapshot", snap);
  assert.deepEqual(names(elsewhere), ["ALPHA", "ZETA"]);
  const rerun = createProgressStore({ queueOrders });  // another run of the media: not its order
  rerun.receive("progress_snapshot", { ...snap, runId: "r2" });
  assert.deepEqual(names(rerun), ["ALPHA", "ZETA"]);
});
