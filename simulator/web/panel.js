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

  // How long a notice stays; a test (or an embedding page) may set it before this script.
  var NOTICE_MS = window.PROGRESS_PANEL_NOTICE_MS || 8000;
  var SEEN_KEY = "progress-panel:notices-shown";
  var ORDER_KEY = "progress-panel:queue-order";
  var PC = window.ProgressClient;
  var store = PC ? PC.createProgressStore({ queueOrders: queueOrderMemory() }) : null;

  // Each media run's queue order, kept across reloads: a snapshot carries none, and rows
  // that jumped on reload were issue #21's first panel complaint. Bounded to 200 runs.
  function queueOrderMemory() {
    function load() {
      try { return JSON.parse(localStorage.getItem(ORDER_KEY) || "{}") || {}; } catch (e) { return {}; }
    }
    return {
      get: function (mediaId, runId) {
        var order = load()[mediaId + ":" + (runId || "")];
        return Array.isArray(order) ? order : undefined;
      },
      set: function (mediaId, runId, order) {
        var all = load(), key = mediaId + ":" + (runId || "");
        delete all[key];
        all[key] = order;
        var keys = Object.keys(all);
        keys.slice(0, Math.max(keys.length - 200, 0)).forEach(function (k) { delete all[k]; });
        try { localStorage.setItem(ORDER_KEY, JSON.stringify(all)); } catch (e) { /* private mode */ }
      },
    };
  }

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
    document.getElementById("toasts").prepend(el);
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
    var retrying = PC.retryingLabel(r);
    if (retrying) return retrying;
    if (r.status === "analyzing" && r.phase) return r.phase.replace(/_/g, " ");
    return r.status;
  }

  function detailText(r, quiet) {
    if (r.status === "failed") return r.error;
    if (r.status === "completed") {
      if (!r.prediction) return "done";
      return r.prediction + (r.confidence !== null ? " (" + Math.round(r.confidence * 100) + "%)" : "");
    }
    if (PC.retryingLabel(r)) return r.retryReason ? "last attempt: " + r.retryReason : "";
    var parts = [];
    if (r.total) parts.push(r.progress + " / " + r.total);
    // A quiet media's ETA would only freeze: the panel's head says how long it has been.
    if (r.etaSeconds !== null && r.status === "analyzing" && !quiet) {
      parts.push("about " + PC.formatDuration(r.etaSeconds) + " left");
    }
    if (r.attempt > 1) parts.push("attempt " + r.attempt + "/" + r.attempts);
    return parts.join(" · ");
  }

  function renderRow(r, quiet) {
    var tr = el("tr", "row");
    tr.dataset.model = r.modelName;
    tr.dataset.status = PC.retryingLabel(r) ? "retrying" : r.status;
    var barCell = el("td", "row-bar");
    barCell.append(bar(rowFraction(r)));
    tr.append(el("td", "row-name", r.modelName), el("td", "row-status", statusText(r)), barCell,
              el("td", "row-detail", detailText(r, quiet)));
    return tr;
  }

  var OUTCOME_CLASS = { success: "completed", partial: "partial", failed: "failed" };

  // No internal id reaches the page's text: a media without a filename is "Untitled file"
  // (its id stays in data-media-id for scripts and tests).
  function renderPanel(m, now) {
    var result = OUTCOME_CLASS[PC.outcome(m)] || null;
    var panel = el("article", "panel");
    panel.dataset.mediaId = m.mediaId;
    panel.dataset.status = result || "running";
    var head = el("div", "panel-head");
    head.append(el("div", "panel-title", m.filename || "Untitled file"));
    var time = PC.timeLabel(m, now);
    var quiet = PC.quietSeconds(m, now) !== null || m.ownerAlive === false;
    if (time) {
      var t = el("span", "panel-time", time);
      t.dataset.kind = m.ownerAlive === false ? "gone" : quiet ? "quiet" : "eta";
      head.append(t);
    }
    if (result) head.append(el("span", "outcome " + result,
      { completed: "completed", partial: "partly completed", failed: "failed" }[result]));
    var rows = PC.orderedModels(m);
    var fraction = PC.overallProgress(m);
    var line = el("div", "overall");
    line.append(bar(fraction), el("span", "overall-text",
      Math.round(fraction * 100) + "% · " + PC.modelCounts(m)));
    panel.append(head, line);
    if (m.status === "failed" && m.error) panel.append(el("div", "row-detail error", m.error));
    var table = el("table", "rows");
    rows.forEach(function (r) { table.append(renderRow(r, quiet)); });
    panel.append(table);
    return panel;
  }

  function render() {
    var state = store.getState();
    var now = Date.now();
    showNotices(state.notices);
    var all = Object.values(state.media);  // in the order first seen
    var active = all.filter(function (m) { return m.status === "running"; });
    var finished = all.filter(function (m) { return m.status !== "running"; }).reverse();
    document.getElementById("active").replaceChildren.apply(
      document.getElementById("active"), active.map(function (m) { return renderPanel(m, now); }));
    document.getElementById("finished").replaceChildren.apply(
      document.getElementById("finished"), finished.map(function (m) { return renderPanel(m, now); }));
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

  function showConnection() {
    var s = store.getState();
    if (s.connection === "ended") {
      setConnection("error", "session ended: " + s.sessionEnded.message + "; open a fresh URL");
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
    if (socket && !socket.connected && currentToken()) socket.connect();
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
    window.addEventListener("hashchange", function () {
      if (store.getState().connection === "ended") useToken(null);
    });
    store.attach(socket);
    // "No update for N s" counts on between events: redraw once a second while one runs.
    setInterval(function () {
      if (Object.values(store.getState().media).some(function (m) { return m.status === "running"; })) schedule();
    }, 1000);
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
                         eta: r.etaSeconds, attempt: r.attempt, attempts: r.attempts,
                         retryReason: r.retryReason };
        });
        out[id] = { status: m.status, outcome: PC.outcome(m), filename: m.filename,
                    error: m.error, overall: PC.overallProgress(m), rows: rows,
                    lastUpdateAt: m.lastUpdateAt, ownerAlive: m.ownerAlive,
                    order: PC.orderedModels(m).map(function (r) { return r.modelName; }) };
      });
      return out;
    },
    // A page that gets tokens from its API hands a fresh one here after session_ended.
    useToken: useToken,
    get counters() {
      var c = store ? store.getState().counters : {};
      return { updates: c.updates, duplicates: c.repeats, snapshots: c.snapshots };
    },
    get caughtUp() { return store ? store.getState().caughtUp : false; },
  };
  if (store) render();
})();
