/*
 * The browser panel of the reference relay: one panel per media, a row per model, an
 * overall progress and a final notice, as the product's UI shows them (docs/panel.md).
 *
 * The state is the browser package's store (progress-client.js, bundled from clients/js:
 * the same code a product UI imports as @progress-sdk/client, held to the conformance
 * suite): it folds `progress_snapshot` and live `progress_update`s per media, drops
 * repeats by (source, seq) and merges a reconnect's snapshots without gap or duplicate.
 * This file only draws it. Everything user-provided is written with textContent, never
 * as HTML.
 */
(function () {
  "use strict";

  var NOTICE_MS = 8000;
  var SEEN_KEY = "progress-panel:notices-shown";
  var PC = window.ProgressClient;
  var store = PC ? PC.createProgressStore() : null;

  // -- final notices, shown once per media run and outcome (also across reloads) --------

  var lastNotice = 0;

  function seenNotices() {
    try { return JSON.parse(localStorage.getItem(SEEN_KEY) || "[]"); } catch (e) { return []; }
  }

  function showNotices(notices) {
    var fresh = notices.filter(function (n) { return n.id > lastNotice; });
    if (!fresh.length) return;
    lastNotice = fresh[fresh.length - 1].id;
    var seen = seenNotices();
    fresh.forEach(function (n) {
      var key = PC.noticeKey(n);
      if (seen.indexOf(key) >= 0) return;
      seen.push(key);
      toast(n.kind, n.title, n.body, n.mediaId);
    });
    try { localStorage.setItem(SEEN_KEY, JSON.stringify(seen.slice(-200))); } catch (e) { /* private mode */ }
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

  function rowFraction(r) {
    if (r.status === "completed" || r.status === "failed") return 1;
    return r.total ? (r.progress || 0) / r.total : 0;
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
    if (r.etaSeconds !== null) parts.push("~" + Math.ceil(r.etaSeconds) + " s left");
    return parts.join(" · ");
  }

  function renderRow(r) {
    var tr = el("tr", "row");
    tr.dataset.model = r.modelName;
    tr.dataset.status = r.status;
    var barCell = el("td", "row-bar");
    barCell.append(bar(rowFraction(r)));
    tr.append(el("td", "row-name", r.modelName), el("td", "row-status", statusText(r)), barCell,
              el("td", "row-detail", detailText(r)));
    return tr;
  }

  var OUTCOME_CLASS = { success: "completed", partial: "partial", failed: "failed" };

  function renderPanel(m) {
    var result = OUTCOME_CLASS[PC.outcome(m)] || null;
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
    var rows = Object.values(m.models);
    var done = rows.filter(function (r) { return r.status === "completed" || r.status === "failed"; }).length;
    var fraction = PC.overallProgress(m);
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
    var state = store.getState();
    showNotices(state.notices);
    var all = Object.values(state.media);  // in the order first seen
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

  var LABELS = { connecting: "connecting…", connected: "live", disconnected: "reconnecting…" };

  function setConnection(state, label) {
    var c = document.getElementById("connection");
    c.dataset.state = state === "refused" ? "error" : state === "disconnected" ? "connecting" : state;
    c.textContent = label;
  }

  // Set when the relay ended the session (token expired or revoked): it does not come back
  // by itself; a fresh token does (a new URL fragment, or useToken below).
  var ended = null;

  function showConnection() {
    var s = store.getState();
    if (ended && s.connection !== "connected") {
      setConnection("error", "session ended: " + ended + "; open a fresh URL");
      return;
    }
    setConnection(s.connection, s.connection === "refused"
      ? "refused: " + s.connectionError : LABELS[s.connection]);
  }

  // The token travels in the URL's fragment, which browsers never send to a server. It is
  // read again at every connect, so a reconnect uses the freshest one.
  var override = null;
  function currentToken() {
    return override || new URLSearchParams(location.hash.slice(1)).get("token");
  }
  var token = currentToken();
  var socket = null;
  function useToken(fresh) {
    if (fresh) override = fresh;
    if (socket && !socket.connected && currentToken()) { ended = null; socket.connect(); }
  }
  if (!store) {
    setConnection("error", "the progress client did not load");
  } else if (!token) {
    setConnection("error", "no token: open the URL `progress-sim relay --dev` prints");
  } else if (typeof io !== "function") {
    setConnection("error", "the Socket.IO client did not load");
  } else {
    store.subscribe(schedule);
    store.subscribe(showConnection);
    socket = io({ auth: function (cb) { cb({ token: currentToken() }); } });
    socket.on("session_ended", function (e) {
      ended = (e && e.message) || "the relay ended the session";
      showConnection();
    });
    window.addEventListener("hashchange", function () { if (ended) useToken(null); });
    store.attach(socket);
  }

  // For tests and the e2e check: the panel state as plain data.
  window.progressPanel = {
    state: function () {
      var out = {};
      var media = store ? store.getState().media : {};
      Object.keys(media).forEach(function (id) {
        var m = media[id];
        var rows = {};
        Object.keys(m.models).forEach(function (name) {
          var r = m.models[name];
          rows[name] = { status: r.status, progress: r.progress, total: r.total, phase: r.phase,
                         prediction: r.prediction, confidence: r.confidence, error: r.error,
                         eta: r.etaSeconds };
        });
        out[id] = { status: m.status, outcome: PC.outcome(m), filename: m.filename,
                    error: m.error, overall: PC.overallProgress(m), rows: rows,
                    lastUpdateAt: m.lastUpdateAt };
      });
      return out;
    },
    // A page that gets tokens from its API hands a fresh one here after session_ended.
    useToken: useToken,
    get counters() {
      var c = store ? store.getState().counters : {};
      return { updates: c.updates, duplicates: c.repeats, snapshots: c.snapshots };
    },
  };
  if (store) render();
})();
