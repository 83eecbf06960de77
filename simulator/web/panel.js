/*
 * The browser panel of the reference relay: one panel per media, a row per model, an
 * overall progress and a final notice, as the product's UI shows them (docs/panel.md).
 *
 * State comes from three socket events: `progress_snapshot` (sent on connect, one per
 * media of the user: the state so far and the last seq per source), `progress_update`
 * (live events; one whose seq a snapshot or an earlier event already covered is dropped)
 * and `processing_error` (a fallback for relays that do not forward the terminal event).
 * Everything user-provided is written with textContent, never as HTML.
 */
(function () {
  "use strict";

  var COMPLETED = { ANALYSIS_COMPLETED: 1, ANALYSIS_COMPLETE: 1 };
  var PHASE_OF = {
    AUDIO_EXTRACTION_START: "audio_extraction", AUDIO_EXTRACTION_COMPLETE: "audio_extraction",
    SPECTROGRAM_GENERATION_START: "spectrogram_generation",
    SPECTROGRAM_GENERATION_COMPLETE: "spectrogram_generation",
  };
  var NOTICE_MS = 8000;
  var SEEN_KEY = "progress-panel:notices-shown";

  // -- state -------------------------------------------------------------------------

  var media = {};   // mediaId -> {mediaId, filename, status, error, rows: {name: row}, order}
  var seqs = {};    // mediaId -> {source: last seq applied}
  var counters = { updates: 0, duplicates: 0, snapshots: 0 };
  var order = 0;

  function text(v) { return typeof v === "string" && v ? v : null; }
  function int(v) { return typeof v === "number" && Math.floor(v) === v ? v : null; }
  function ignoredModel(name) { return /worker|backend/i.test(name); }

  function newMedia(id) {
    return { mediaId: id, filename: null, status: "running", error: null, rows: {},
             order: order++, noticeShown: false };
  }

  function covered(id, source, seq) {
    if (typeof source !== "string" || int(seq) === null) return false;
    var last = (seqs[id] || {})[source];
    return last !== undefined && seq <= last;
  }

  function remember(id, source, seq) {
    if (typeof source !== "string" || int(seq) === null) return;
    (seqs[id] = seqs[id] || {})[source] = seq;
  }

  function applySnapshot(snap) {
    var id = snap.mediaId;
    if (typeof id !== "string") return;
    var m = newMedia(id);
    if (media[id]) m.order = media[id].order;
    m.filename = text(snap.filename);
    m.status = snap.status || "running";
    m.error = text(snap.error);
    (snap.models || []).forEach(function (r) {
      if (typeof r.modelName !== "string" || ignoredModel(r.modelName)) return;
      m.rows[r.modelName] = {
        name: r.modelName, status: r.status || "queued", progress: int(r.progress),
        total: int(r.total), phase: text(r.phase), prediction: text(r.prediction),
        confidence: typeof r.confidence === "number" ? r.confidence : null,
        error: text(r.error), eta: typeof r.etaSeconds === "number" ? r.etaSeconds : null,
      };
    });
    media[id] = m;
    seqs[id] = Object.assign({}, snap.seqs || {});
    counters.snapshots++;
    if (m.status !== "running") finish(m, m.status === "completed");
    schedule();
  }

  function applyUpdate(u) {
    var id = u.mediaId, name = u.event, data = u.data || {};
    if (typeof id !== "string" || typeof name !== "string") return;
    if (covered(id, u.source, u.seq)) { counters.duplicates++; return; }
    remember(id, u.source, u.seq);
    counters.updates++;
    var m = media[id];
    if (name === "PROCESSING_STARTED") {
      if (!m || m.status !== "running") m = media[id] = newMedia(id);
      m.filename = m.filename || text(data.filename);
    } else {
      if (!m) m = media[id] = newMedia(id);  // joined late, without a snapshot
      if (name === "PROCESSING_COMPLETED") { m.status = "completed"; finish(m, true); }
      else if (name === "PROCESSING_FAILED") {
        m.status = "failed";
        m.error = text(data.error_message) || text(u.message) || "failed";
        finish(m, false);
      } else if (text(data.model_name) && !ignoredModel(data.model_name)) {
        updateRow(m, data.model_name, name, data);
      }
    }
    schedule();
  }

  function updateRow(m, model, name, data) {
    var row = m.rows[model] || (m.rows[model] = { name: model, status: "queued",
      progress: null, total: null, phase: null, prediction: null, confidence: null,
      error: null, eta: null });
    if (name === "ANALYSIS_QUEUED") row.status = "queued";
    else if (name === "ANALYSIS_STARTED") row.status = "analyzing";
    else if (COMPLETED[name]) {
      row.status = "completed"; row.prediction = text(data.prediction);
      row.confidence = typeof data.confidence === "number" ? data.confidence : null;
      if (row.total !== null) row.progress = row.total;
      row.eta = null;
    } else if (name === "ANALYSIS_FAILED") {
      row.status = "failed"; row.error = text(data.error_message) || "failed"; row.eta = null;
    } else if (row.status === "queued") row.status = "analyzing";
    var phase = text(data.phase) || PHASE_OF[name];
    if (phase) row.phase = phase;
    var p = int(data.progress), t = int(data.total);
    if (p !== null && t !== null && t > 0) { row.progress = Math.min(Math.max(p, 0), t); row.total = t; }
    var eta = data.details && data.details.eta_seconds;
    if (typeof eta === "number" && row.status === "analyzing") row.eta = Math.max(eta, 0);
  }

  function rowFraction(r) {
    if (r.status === "completed" || r.status === "failed") return 1;
    return r.total ? r.progress / r.total : 0;
  }

  function overall(m) {
    var rows = Object.values(m.rows);
    if (m.status !== "running") return 1;
    if (!rows.length) return 0;
    return rows.reduce(function (s, r) { return s + rowFraction(r); }, 0) / rows.length;
  }

  function outcome(m) {
    if (m.status === "running") return null;
    if (m.status === "failed") return "failed";
    var rows = Object.values(m.rows);
    return rows.some(function (r) { return r.status === "failed"; }) ? "partial" : "completed";
  }

  // -- final notices, shown once per media and outcome (also across reloads) ------------

  function seenNotices() {
    try { return JSON.parse(localStorage.getItem(SEEN_KEY) || "[]"); } catch (e) { return []; }
  }

  function finish(m, ok) {
    if (m.noticeShown) return;
    m.noticeShown = true;
    var key = m.mediaId + ":" + m.status + ":" + JSON.stringify(seqs[m.mediaId] || {});
    var seen = seenNotices();
    if (seen.indexOf(key) >= 0) return;
    seen.push(key);
    try { localStorage.setItem(SEEN_KEY, JSON.stringify(seen.slice(-200))); } catch (e) { /* private mode */ }
    var rows = Object.values(m.rows);
    var done = rows.filter(function (r) { return r.status === "completed"; }).length;
    var failed = rows.filter(function (r) { return r.status === "failed"; }).length;
    var kind = ok ? (failed ? "partial" : "success") : "failed";
    var title = { success: "Analysis complete", partial: "Analysis partly complete",
                  failed: "Analysis failed" }[kind];
    var body = ok
      ? done + " of " + rows.length + " models completed" + (failed ? ", " + failed + " failed" : "")
      : (m.error || "failed");
    toast(kind, title + ": " + (m.filename || m.mediaId), body, m.mediaId);
  }

  function toast(kind, title, body, mediaId) {
    var el = document.createElement("div");
    el.className = "toast " + kind;
    el.dataset.mediaId = mediaId;
    var strong = document.createElement("strong");
    strong.textContent = title;
    var span = document.createElement("span");
    span.textContent = body;
    el.append(strong, span);
    document.getElementById("toasts").append(el);
    setTimeout(function () { el.remove(); }, NOTICE_MS);
  }

  // -- drawing (at most once per frame, however fast events arrive) ---------------------

  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; render(); });
  }

  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined && content !== null) e.textContent = content;
    return e;
  }

  function bar(fraction) {
    var b = el("div", "bar"), fill = el("span");
    fill.style.width = Math.round(Math.min(Math.max(fraction, 0), 1) * 100) + "%";
    b.append(fill);
    return b;
  }

  function statusText(r) {
    if (r.status === "analyzing" && r.phase) return r.phase.replace(/_/g, " ");
    return r.status;
  }

  function detailText(r) {
    if (r.status === "failed") return r.error;
    if (r.status === "completed") {
      if (!r.prediction) return "done";
      return r.prediction + (r.confidence !== null ? " (" + Math.round(r.confidence * 100) + "%)" : "");
    }
    var parts = [];
    if (r.total) parts.push(r.progress + " / " + r.total);
    if (r.eta !== null) parts.push("~" + Math.ceil(r.eta) + " s left");
    return parts.join(" · ");
  }

  function renderRow(r) {
    var tr = el("tr", "row");
    tr.dataset.model = r.name;
    tr.dataset.status = r.status;
    var barCell = el("td", "row-bar");
    barCell.append(bar(rowFraction(r)));
    tr.append(el("td", "row-name", r.name), el("td", "row-status", statusText(r)), barCell,
              el("td", "row-detail", detailText(r)));
    return tr;
  }

  function renderPanel(m) {
    var result = outcome(m);
    var panel = el("article", "panel");
    panel.dataset.mediaId = m.mediaId;
    panel.dataset.status = result || "running";
    var head = el("div", "panel-head");
    var titles = el("div");
    titles.append(el("div", "panel-title", m.filename || m.mediaId),
                  el("div", "panel-sub", m.mediaId));
    head.append(titles);
    if (result) head.append(el("span", "outcome " + result,
      { completed: "completed", partial: "partly completed", failed: "failed" }[result]));
    var rows = Object.values(m.rows);
    var done = rows.filter(function (r) { return r.status === "completed" || r.status === "failed"; }).length;
    var fraction = overall(m);
    var line = el("div", "overall");
    line.append(bar(fraction), el("span", "overall-text",
      Math.round(fraction * 100) + "% · " + done + "/" + rows.length + " models"));
    panel.append(head, line);
    if (m.status === "failed" && m.error) panel.append(el("div", "row-detail error", m.error));
    var table = el("table", "rows");
    rows.forEach(function (r) { table.append(renderRow(r)); });
    panel.append(table);
    return panel;
  }

  function render() {
    var all = Object.values(media).sort(function (a, b) { return a.order - b.order; });
    var active = all.filter(function (m) { return m.status === "running"; });
    var finished = all.filter(function (m) { return m.status !== "running"; }).reverse();
    document.getElementById("active").replaceChildren.apply(
      document.getElementById("active"), active.map(renderPanel));
    document.getElementById("finished").replaceChildren.apply(
      document.getElementById("finished"), finished.map(renderPanel));
    document.getElementById("finished-title").hidden = finished.length === 0;
    document.getElementById("empty").hidden = all.length > 0;
  }

  // -- connection ---------------------------------------------------------------------

  function setConnection(state, label) {
    var c = document.getElementById("connection");
    c.dataset.state = state;
    c.textContent = label;
  }

  // The token travels in the URL's fragment, which browsers never send to a server.
  var token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) {
    setConnection("error", "no token: open the URL `progress-sim relay --dev` prints");
  } else if (typeof io !== "function") {
    setConnection("error", "the Socket.IO client did not load");
  } else {
    var socket = io({ auth: { token: token } });
    socket.on("connect", function () { setConnection("connected", "live"); });
    socket.on("disconnect", function () { setConnection("connecting", "reconnecting…"); });
    socket.on("connect_error", function (err) { setConnection("error", "refused: " + err.message); });
    socket.on("progress_snapshot", applySnapshot);
    socket.on("progress_update", applyUpdate);
    socket.on("processing_error", function (e) {
      var m = e && media[e.mediaId];
      if (m && m.status === "running") {
        applyUpdate({ mediaId: e.mediaId, event: "PROCESSING_FAILED", data: { error_message: e.error } });
      }
    });
  }

  // For tests and the e2e check: the panel state as plain data.
  window.progressPanel = {
    state: function () {
      var out = {};
      Object.keys(media).forEach(function (id) {
        var m = media[id];
        out[id] = { status: m.status, outcome: outcome(m), filename: m.filename, error: m.error,
                    overall: overall(m), rows: JSON.parse(JSON.stringify(m.rows)) };
      });
      return out;
    },
    counters: counters,
  };
  render();
})();
