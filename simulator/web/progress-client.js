/* GENERATED from clients/js/src by clients/js/scripts/bundle-page.mjs (esbuild); do not edit: run `npm run bundle:page` in clients/js. */
var ProgressClient = (() => {
  var __defProp = Object.defineProperty;
  var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
  var __getOwnPropNames = Object.getOwnPropertyNames;
  var __hasOwnProp = Object.prototype.hasOwnProperty;
  var __export = (target, all) => {
    for (var name in all)
      __defProp(target, name, { get: all[name], enumerable: true });
  };
  var __copyProps = (to, from, except, desc) => {
    if (from && typeof from === "object" || typeof from === "function") {
      for (let key of __getOwnPropNames(from))
        if (!__hasOwnProp.call(to, key) && key !== except)
          __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
    }
    return to;
  };
  var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

  // <stdin>
  var stdin_exports = {};
  __export(stdin_exports, {
    createProgressStore: () => createProgressStore,
    formatDuration: () => formatDuration,
    modelCounts: () => modelCounts,
    noticeFor: () => noticeFor,
    noticeKey: () => noticeKey,
    orderedModels: () => orderedModels,
    outcome: () => outcome,
    overallProgress: () => overallProgress,
    quietSeconds: () => quietSeconds,
    retryingLabel: () => retryingLabel,
    timeLabel: () => timeLabel,
    toastFor: () => toastFor
  });

  // src/fold.ts
  var MODEL_STATUS = {
    ANALYSIS_QUEUED: "queued",
    ANALYSIS_STARTED: "analyzing",
    ANALYSIS_COMPLETED: "completed",
    ANALYSIS_COMPLETE: "completed",
    ANALYSIS_FAILED: "failed"
  };
  var PHASE_OF = {
    AUDIO_EXTRACTION_START: "audio_extraction",
    AUDIO_EXTRACTION_COMPLETE: "audio_extraction",
    SPECTROGRAM_GENERATION_START: "spectrogram_generation",
    SPECTROGRAM_GENERATION_COMPLETE: "spectrogram_generation"
  };
  var text = (v) => typeof v === "string" && v ? v : null;
  var int = (v) => Number.isInteger(v) ? v : null;
  var num = (v) => typeof v === "number" && Number.isFinite(v) ? v : null;
  var object = (v) => v !== null && typeof v === "object" && !Array.isArray(v) ? v : {};
  function shownModel(name) {
    return typeof name === "string" && name !== "" && !/worker|backend/i.test(name);
  }
  function sequence(u) {
    const source = text(u.source), seq = int(u.seq);
    return source !== null && seq !== null ? [source, seq] : null;
  }
  function isRepeat(seqs, u) {
    const at = sequence(u);
    if (at === null) return false;
    const last = seqs[at[0]];
    return last !== void 0 && at[1] <= last;
  }
  function newMedia(mediaId, seqs, now) {
    return {
      mediaId,
      userId: null,
      filename: null,
      runId: null,
      status: "running",
      error: null,
      models: {},
      seqs,
      lastUpdateAt: now,
      queueOrder: [],
      ownerAlive: null
    };
  }
  function applyUpdate(media, u, now) {
    const id = text(u.mediaId), name = text(u.event);
    if (id === null || name === null || media && isRepeat(media.seqs, u)) return media;
    const data = object(u.data), runId = text(u.runId);
    const seqs = { ...media?.seqs ?? {} };
    const at = sequence(u);
    if (at) seqs[at[0]] = at[1];
    let m = media;
    if (name === "PROCESSING_STARTED") {
      const newRun = !m || m.status !== "running" || runId !== null && m.runId !== null && runId !== m.runId;
      if (newRun) m = newMedia(id, seqs, now);
      m = { ...m, filename: m.filename ?? text(data.filename), runId: runId ?? m.runId };
    } else if (m && m.status !== "running") {
      return { ...m, seqs };
    } else if (name === "PROCESSING_COMPLETED" || name === "PROCESSING_FAILED") {
      m = m ?? newMedia(id, seqs, now);
      const failed = name === "PROCESSING_FAILED";
      m = {
        ...m,
        status: failed ? "failed" : "completed",
        error: failed ? text(data.error_message) ?? text(u.message) ?? "failed" : null
      };
    } else {
      const model = data.model_name;
      if (!shownModel(model)) return media ? { ...media, seqs } : void 0;
      m = m ?? newMedia(id, seqs, now);
      if (name === "ANALYSIS_QUEUED" && !(model in m.models)) {
        m = { ...m, queueOrder: [...m.queueOrder, model] };
      }
      m = { ...m, models: { ...m.models, [model]: applyModel(m.models[model], model, name, data) } };
    }
    return {
      ...m,
      userId: text(u.userId) ?? m.userId,
      runId: runId ?? m.runId,
      seqs,
      lastUpdateAt: now,
      ownerAlive: null
    };
  }
  function emptyRow(modelName) {
    return {
      modelName,
      status: "queued",
      progress: null,
      total: null,
      phase: null,
      prediction: null,
      confidence: null,
      error: null,
      etaSeconds: null,
      attempt: null,
      attempts: null,
      retryReason: null
    };
  }
  function attemptOf(data) {
    const details = object(data.details);
    const attempt = int(details.attempt), attempts = int(details.attempts);
    return attempt !== null && attempts !== null && attempt >= 1 && attempt <= attempts ? [attempt, attempts] : null;
  }
  function applyModel(row, modelName, name, data) {
    let r = row ? { ...row } : emptyRow(modelName);
    const status = MODEL_STATUS[name];
    const attempt = attemptOf(data);
    if ((status === "queued" || status === "analyzing") && attempt !== null && (r.attempt === null || attempt[0] > r.attempt)) {
      const reason = text(object(data.details).retry_reason) ?? r.error ?? r.retryReason;
      r = {
        ...emptyRow(modelName),
        attempt: attempt[0],
        attempts: attempt[1],
        retryReason: reason
      };
    }
    if (status) r.status = status;
    else if (r.status === "queued") r.status = "analyzing";
    const phase = text(data.phase) ?? PHASE_OF[name] ?? null;
    if (phase !== null) r.phase = phase;
    const progress = int(data.progress), total = int(data.total);
    if (progress !== null && total !== null && total > 0) {
      r.progress = Math.min(Math.max(progress, 0), total);
      r.total = total;
    }
    const eta = num(object(data.details).eta_seconds);
    if (eta !== null) r.etaSeconds = Math.max(eta, 0);
    if (r.status === "completed") {
      r.prediction = text(data.prediction);
      r.confidence = num(data.confidence);
      r.etaSeconds = null;
      if (r.total !== null) r.progress = r.total;
    } else if (r.status === "failed") {
      r.error = text(data.error_message) ?? "failed";
      r.etaSeconds = null;
    }
    return r;
  }
  function fromSnapshot(snap, now) {
    const id = text(snap.mediaId);
    if (id === null) return void 0;
    const models = {};
    for (const r of Array.isArray(snap.models) ? snap.models : []) {
      if (!shownModel(r?.modelName)) continue;
      models[r.modelName] = {
        modelName: r.modelName,
        status: MODEL_STATUS_OF[r.status] ?? "queued",
        progress: int(r.progress),
        total: int(r.total),
        phase: text(r.phase),
        prediction: text(r.prediction),
        confidence: num(r.confidence),
        error: text(r.error),
        etaSeconds: num(r.etaSeconds),
        attempt: null,
        attempts: null,
        retryReason: null
      };
    }
    const seqs = {};
    for (const [source, seq] of Object.entries(object(snap.seqs))) {
      if (int(seq) !== null) seqs[source] = seq;
    }
    const updatedAt = Date.parse(typeof snap.updatedAt === "string" ? snap.updatedAt : "");
    const status = snap.status === "completed" || snap.status === "failed" ? snap.status : "running";
    const quiet = num(snap.quietSeconds);
    const lastUpdateAt = quiet !== null ? now - quiet * 1e3 : Number.isFinite(updatedAt) ? Math.min(updatedAt, now) : now;
    return {
      mediaId: id,
      userId: text(snap.userId),
      filename: text(snap.filename),
      runId: text(snap.runId),
      status,
      error: text(snap.error),
      models,
      seqs,
      lastUpdateAt,
      queueOrder: [],
      ownerAlive: typeof snap.ownerAlive === "boolean" ? snap.ownerAlive : null
    };
  }
  var MODEL_STATUS_OF = {
    queued: "queued",
    analyzing: "analyzing",
    completed: "completed",
    failed: "failed"
  };
  function outcome(m) {
    if (m.status === "running") return null;
    if (m.status === "failed") return "failed";
    return Object.values(m.models).some((r) => r.status === "failed") ? "partial" : "success";
  }
  function overallProgress(m) {
    if (m.status !== "running") return 1;
    const rows = Object.values(m.models);
    if (!rows.length) return 0;
    const part = (r) => r.status === "completed" || r.status === "failed" ? 1 : r.total ? (r.progress ?? 0) / r.total : 0;
    return rows.reduce((sum, r) => sum + part(r), 0) / rows.length;
  }
  function orderedModels(m) {
    const placed = new Set(m.queueOrder);
    const rest = Object.keys(m.models).filter((name) => !placed.has(name)).sort((a, b) => a < b ? -1 : a > b ? 1 : 0);
    return [...rest, ...m.queueOrder.filter((name) => name in m.models)].map((name) => m.models[name]);
  }

  // src/labels.ts
  var QUIET_AFTER_SECONDS = 15;
  function quietSeconds(m, now) {
    if (m.status !== "running") return null;
    const quiet = Math.floor((now - m.lastUpdateAt) / 1e3);
    return quiet >= QUIET_AFTER_SECONDS ? quiet : null;
  }
  function retryingLabel(r) {
    return r.status === "queued" && r.attempt !== null && r.attempts !== null && r.attempt > 1 ? `retrying (${r.attempt}/${r.attempts})` : null;
  }
  function modelCounts(m) {
    const rows = Object.values(m.models);
    const completed = rows.filter((r) => r.status === "completed").length;
    const failed = rows.filter((r) => r.status === "failed").length;
    const parts = [`${completed} completed`];
    if (failed) parts.push(`${failed} failed`);
    if (rows.length - completed - failed) parts.push(`${rows.length - completed - failed} to go`);
    return parts.join(", ");
  }
  function formatDuration(seconds) {
    const whole = Math.max(Math.round(seconds), 0);
    if (whole < 60) return `${whole} s`;
    if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
    return `${Math.floor(whole / 3600)} h ${String(Math.floor(whole % 3600 / 60)).padStart(2, "0")} min`;
  }
  function mediaEtaSeconds(m) {
    const etas = Object.values(m.models).filter((r) => r.status === "analyzing" && r.etaSeconds !== null).map((r) => r.etaSeconds);
    return etas.length ? Math.max(...etas) : null;
  }
  function timeLabel(m, now) {
    if (m.status !== "running") return null;
    if (m.ownerAlive === false) return "the worker stopped; ending this analysis";
    const quiet = quietSeconds(m, now);
    if (quiet !== null) return `no update for ${quiet} s`;
    const eta = mediaEtaSeconds(m);
    return eta !== null ? `about ${formatDuration(eta)} left` : null;
  }

  // src/toasts.ts
  var TITLES = {
    success: "Analysis complete",
    partial: "Analysis partly complete",
    failed: "Analysis failed"
  };
  function counts(m) {
    const rows = Object.values(m.models);
    return {
      done: rows.filter((r) => r.status === "completed").length,
      failed: rows.filter((r) => r.status === "failed").length,
      all: rows.length
    };
  }
  function noticeFor(m) {
    const kind = outcome(m);
    if (kind === null) return null;
    const { done, failed, all } = counts(m);
    const body = kind === "failed" ? m.error ?? "failed" : `${done} of ${all} models completed` + (failed ? `, ${failed} failed` : "");
    return {
      id: 0,
      mediaId: m.mediaId,
      runId: m.runId,
      kind,
      title: m.filename ? `${TITLES[kind]}: ${m.filename}` : TITLES[kind],
      body
    };
  }
  function terminalNotice(prev, next) {
    if (prev && outcome(prev) !== null && (prev.runId === null || next.runId === null || prev.runId === next.runId)) {
      return null;
    }
    return noticeFor(next);
  }
  function noticeKey(n) {
    return `${n.mediaId}:${n.runId ?? ""}:${n.kind}`;
  }
  function toastFor(m) {
    const notice = noticeFor(m);
    if (notice) {
      return {
        id: m.mediaId,
        kind: notice.kind,
        title: notice.title,
        body: notice.body,
        progress: 1
      };
    }
    const progress = overallProgress(m);
    return {
      id: m.mediaId,
      kind: "loading",
      title: `Analysing ${m.filename ?? "your file"}`,
      body: `${Math.round(progress * 100)}% \xB7 ${modelCounts(m)}`,
      progress
    };
  }

  // src/store.ts
  var EVENTS = [
    "progress_snapshot",
    "progress_update",
    "processing_error",
    "media_update",
    "session_ended",
    "caught_up"
  ];
  function createProgressStore(options = {}) {
    const now = options.now ?? Date.now;
    const replayLimit = options.replayLimit ?? 256;
    const maxFinished = options.maxFinished ?? 200;
    const maxNotices = options.maxNotices ?? 50;
    const tracks = /* @__PURE__ */ new Map();
    const finished = [];
    const listeners = /* @__PURE__ */ new Set();
    const media = /* @__PURE__ */ new Map();
    let fields = {
      connection: "connecting",
      connectionError: null,
      sessionEnded: null,
      caughtUp: false,
      notices: [],
      counters: { updates: 0, repeats: 0, snapshots: 0, staleSnapshots: 0 }
    };
    let cached = null;
    let noticeId = 0;
    function set(changes) {
      fields = { ...fields, ...changes };
      cached = null;
      for (const listener of [...listeners]) listener();
    }
    function getState() {
      return cached ?? (cached = { ...fields, media: Object.fromEntries(media) });
    }
    function count(key) {
      return { ...fields.counters, [key]: fields.counters[key] + 1 };
    }
    function commit(prev, next, counters) {
      const notice = terminalNotice(prev, next);
      let notices = fields.notices;
      if (notice) notices = [...notices, { ...notice, id: ++noticeId }].slice(-maxNotices);
      media.set(next.mediaId, next);
      if (options.queueOrders && next.queueOrder.length && next.queueOrder !== prev?.queueOrder) {
        options.queueOrders.set(next.mediaId, next.runId, next.queueOrder);
      }
      if (next.status !== "running" && prev?.status !== next.status) {
        finished.push(next.mediaId);
        while (finished.length > maxFinished) {
          const id = finished.shift();
          if (media.get(id)?.status !== "running" && !finished.includes(id)) {
            media.delete(id);
            tracks.delete(id);
          }
        }
      }
      set({ notices, counters });
    }
    function track(id) {
      let t = tracks.get(id);
      if (!t) tracks.set(id, t = { recent: [], trimmed: {} });
      return t;
    }
    function remember(t, u) {
      if (!sequence(u)) return;
      t.recent.push(u);
      if (t.recent.length > replayLimit) {
        const [source, seq] = sequence(t.recent.shift());
        t.trimmed[source] = Math.max(t.trimmed[source] ?? seq, seq);
      }
    }
    function forget(t) {
      for (const u of t.recent) {
        const [source, seq] = sequence(u);
        t.trimmed[source] = Math.max(t.trimmed[source] ?? seq, seq);
      }
      t.recent = [];
    }
    function onUpdate(u) {
      if (u === null || typeof u !== "object" || typeof u.mediaId !== "string") return;
      const prev = media.get(u.mediaId);
      if (prev && isRepeat(prev.seqs, u)) {
        set({ counters: count("repeats") });
        return;
      }
      const next = applyUpdate(prev, u, now());
      if (next === void 0 || next === prev) return;
      remember(track(u.mediaId), u);
      if (next.status !== "running") forget(track(u.mediaId));
      commit(prev, next, count("updates"));
    }
    function onSnapshot(snap) {
      if (snap === null || typeof snap !== "object") return;
      const at = now();
      let next = fromSnapshot(snap, at);
      if (!next) return;
      const prev = media.get(next.mediaId);
      const t = track(next.mediaId);
      const base = next;
      const uncovered = (u) => {
        const [source, seq] = sequence(u);
        const runId = typeof u.runId === "string" ? u.runId : null;
        return seq > (base.seqs[source] ?? -Infinity) && (!runId || !base.runId || runId === base.runId);
      };
      const tooOld = Object.entries(t.trimmed).some(
        ([source, seq]) => seq > (base.seqs[source] ?? -Infinity)
      );
      if (prev && tooOld) {
        set({ counters: count("staleSnapshots") });
        return;
      }
      const order = prev && prev.runId === next.runId ? prev.queueOrder : options.queueOrders?.get(next.mediaId, next.runId);
      if (order?.length) next = { ...next, queueOrder: order.filter((n) => typeof n === "string") };
      t.recent = t.recent.filter(uncovered);
      for (const u of t.recent) next = applyUpdate(next, u, at) ?? next;
      if (prev) next = { ...next, seqs: highest(prev.seqs, next.seqs) };
      commit(prev, next, count("snapshots"));
    }
    function onFallback(name, payload) {
      const p = payload;
      const m = p && typeof p.mediaId === "string" ? media.get(p.mediaId) : void 0;
      if (!m || m.status !== "running") return;
      const failed = name === "processing_error";
      onUpdate({
        mediaId: m.mediaId,
        event: failed ? "PROCESSING_FAILED" : "PROCESSING_COMPLETED",
        data: failed ? { error_message: p.error } : {}
      });
    }
    function receive(name, payload) {
      if (name === "progress_update") onUpdate(payload);
      else if (name === "progress_snapshot") onSnapshot(payload);
      else if (name === "processing_error" || name === "media_update") onFallback(name, payload);
      else if (name === "session_ended") onSessionEnded(payload);
      else if (name === "caught_up" && !fields.caughtUp) set({ caughtUp: true });
    }
    function onSessionEnded(payload) {
      const p = payload ?? {};
      const reason = typeof p.reason === "string" ? p.reason : "ended";
      const message = typeof p.message === "string" && p.message ? p.message : "the relay ended the session";
      set({
        connection: "ended",
        connectionError: null,
        sessionEnded: { reason, message },
        caughtUp: false
      });
    }
    function connection(connection2, error = null) {
      if (fields.connection === "ended" && connection2 !== "connected") return;
      if (fields.connection !== connection2 || fields.connectionError !== error) {
        set({
          connection: connection2,
          connectionError: error,
          caughtUp: false,
          sessionEnded: connection2 === "connected" ? null : fields.sessionEnded
        });
      }
    }
    function attach(socket) {
      const handlers = [
        ...EVENTS.map((name) => [name, (p) => receive(name, p)]),
        ["connect", () => connection("connected")],
        ["disconnect", () => connection("disconnected")],
        ["connect_error", (err) => connection("refused", typeof err?.message === "string" ? err.message : "refused")]
      ];
      for (const [name, fn] of handlers) socket.on(name, fn);
      if (socket.connected) connection("connected");
      return () => {
        for (const [name, fn] of handlers) socket.off(name, fn);
      };
    }
    return {
      getState,
      getMedia: (mediaId) => media.get(mediaId),
      subscribe(listener) {
        listeners.add(listener);
        return () => {
          listeners.delete(listener);
        };
      },
      receive,
      attach
    };
  }
  function highest(a, b) {
    const out = { ...a };
    for (const [source, seq] of Object.entries(b)) out[source] = Math.max(out[source] ?? seq, seq);
    return out;
  }
  return __toCommonJS(stdin_exports);
})();
