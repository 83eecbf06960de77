// The store's behaviour beyond the conformance suite: subscriptions, sockets, limits.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";

import { createProgressStore, noticeKey, toastFor } from "../dist/index.js";

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

test("the snapshot's updatedAt sets lastUpdateAt; unknown fields are ignored", () => {
  const store = createProgressStore({ now: () => 5 });
  store.receive("progress_snapshot", {
    mediaId: "m1", userId: "u1", status: "running", filename: null, runId: "r1", error: null,
    seq: 1, source: "w1", seqs: { w1: 1 }, updatedAt: "2026-12-01T10:00:00.500000Z",
    models: [], quietSeconds: 12, somethingNew: { a: 1 } });
  const m = store.getState().media.m1;
  assert.equal(m.lastUpdateAt, Date.parse("2026-12-01T10:00:00.500Z"));
  assert.equal("somethingNew" in m, false);
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
