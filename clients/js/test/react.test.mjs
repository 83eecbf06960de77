// useAnalysisProgress and useProgressState rendered by React (react-dom/server): the hook
// reads the store's media, and follows it from one render to the next.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";

import { createProgressStore } from "../dist/index.js";
import { useAnalysisProgress, useProgressState } from "../dist/react.js";

const update = (seq, event, data = {}) => ({
  mediaId: "m1", userId: "u1", event, message: "", data, timestamp: null, seq, source: "w1",
  runId: "r1" });

function Panel({ store }) {
  const p = useAnalysisProgress(store, "m1");
  const all = useProgressState(store);
  const rows = Object.values(p.modelProgress).map((r) => `${r.modelName}=${r.status}`);
  return createElement("p", null, [
    `visible=${p.isProgressVisible}`, `overall=${p.overallProgress}`,
    `complete=${p.isComplete}`, `outcome=${p.outcome}`, `media=${Object.keys(all.media)}`,
    ...rows].join(" "));
}

test("the hook shows a media's rows, progress and outcome", () => {
  const store = createProgressStore();
  const html = () => renderToStaticMarkup(createElement(Panel, { store }));
  assert.equal(html(), "<p>visible=false overall=0 complete=false outcome=null media=</p>");
  store.receive("progress_update", update(1, "PROCESSING_STARTED"));
  store.receive("progress_update", update(2, "FRAME_ANALYSIS_PROGRESS",
                                          { model_name: "A", progress: 1, total: 4 }));
  store.receive("progress_update", update(3, "ANALYSIS_COMPLETED", { model_name: "B" }));
  assert.equal(html(), "<p>visible=true overall=0.625 complete=false outcome=null media=m1 " +
                       "A=analyzing B=completed</p>");
  store.receive("progress_update", update(4, "ANALYSIS_FAILED",
                                          { model_name: "A", error_message: "x" }));
  store.receive("progress_update", update(5, "PROCESSING_COMPLETED"));
  assert.equal(html(), "<p>visible=true overall=1 complete=true outcome=partial media=m1 " +
                       "A=failed B=completed</p>");
});
