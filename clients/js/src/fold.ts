/**
 * The UI's semantics as pure functions: one live `progress_update`, or one
 * `progress_snapshot`, folded into a media's state. The same rules as the publisher's
 * snapshot fold (progress_sdk/snapshot.py) and the terminal panel (simulator/panel.py);
 * the conformance suite (conformance/streams.json) holds the three to one behaviour.
 */
import type { ProgressSnapshot } from "./generated/socket.js";

export type MediaStatus = "running" | "completed" | "failed";
export type ModelStatus = "queued" | "analyzing" | "completed" | "failed";
/** How a media ended: every model completed, some failed, or the media failed. */
export type Outcome = "success" | "partial" | "failed";

/** One model's row. */
export interface ModelState {
  readonly modelName: string;
  readonly status: ModelStatus;
  readonly progress: number | null;
  readonly total: number | null;
  /** The stage the model reported (`data.phase`, or the phase event's own). */
  readonly phase: string | null;
  readonly prediction: string | null;
  readonly confidence: number | null;
  readonly error: string | null;
  /** Seconds left as the worker reported them (`data.details.eta_seconds`). */
  readonly etaSeconds: number | null;
  /** The attempt this row shows and how many a retried job has (`data.details.attempt`,
   *  `attempts`), else null. Queued with an attempt above 1: "retrying (2/3)". */
  readonly attempt: number | null;
  readonly attempts: number | null;
  /** Why the previous attempt failed (`data.details.retry_reason`). */
  readonly retryReason: string | null;
}

/** One media: its run, its status and a row per model. */
export interface MediaState {
  readonly mediaId: string;
  readonly userId: string | null;
  readonly filename: string | null;
  readonly runId: string | null;
  readonly status: MediaStatus;
  readonly error: string | null;
  readonly models: Readonly<Record<string, ModelState>>;
  /** The last seq applied per source: an update at or below it is a repeat. */
  readonly seqs: Readonly<Record<string, number>>;
  /** Epoch ms of the media's last change: when a live event arrived, or from a snapshot
   *  (now less its `quietSeconds`, else its `updatedAt`). A running media quiet for long
   *  may have lost its worker: see `quietSeconds()`. */
  readonly lastUpdateAt: number;
  /** Models in the order their first `ANALYSIS_QUEUED` of this run came (a retry's
   *  re-queueing keeps the place); read the rows through `orderedModels()`. */
  readonly queueOrder: readonly string[];
  /** False when a snapshot found the media's worker gone (its liveness key expired): the
   *  sweeper is about to end it. Null when unknown; a live event since clears it. */
  readonly ownerAlive: boolean | null;
}

/** A `progress_update` as the fold reads it: any producer, every field checked. */
export interface UpdateLike {
  readonly mediaId?: unknown;
  readonly userId?: unknown;
  readonly event?: unknown;
  readonly message?: unknown;
  readonly data?: unknown;
  readonly seq?: unknown;
  readonly source?: unknown;
  readonly runId?: unknown;
}

type Data = Record<string, unknown>;

const MODEL_STATUS: Record<string, ModelStatus> = {
  ANALYSIS_QUEUED: "queued",
  ANALYSIS_STARTED: "analyzing",
  ANALYSIS_COMPLETED: "completed",
  ANALYSIS_COMPLETE: "completed",
  ANALYSIS_FAILED: "failed",
};
// The tracking API's phase names, for producers that leave data.phase out.
const PHASE_OF: Record<string, string> = {
  AUDIO_EXTRACTION_START: "audio_extraction",
  AUDIO_EXTRACTION_COMPLETE: "audio_extraction",
  SPECTROGRAM_GENERATION_START: "spectrogram_generation",
  SPECTROGRAM_GENERATION_COMPLETE: "spectrogram_generation",
};

const text = (v: unknown): string | null => (typeof v === "string" && v ? v : null);
const int = (v: unknown): number | null => (Number.isInteger(v) ? (v as number) : null);
const num = (v: unknown): number | null =>
  typeof v === "number" && Number.isFinite(v) ? v : null;
const object = (v: unknown): Data =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Data) : {};

/** The product's UI leaves out rows of models named like a worker or a backend. */
export function shownModel(name: unknown): name is string {
  return typeof name === "string" && name !== "" && !/worker|backend/i.test(name);
}

/** The (source, seq) of an update, when it has both. */
export function sequence(u: UpdateLike): [string, number] | null {
  const source = text(u.source), seq = int(u.seq);
  return source !== null && seq !== null ? [source, seq] : null;
}

/** True when `seqs` already holds this update (a relay's or a publisher's resend). */
export function isRepeat(seqs: Readonly<Record<string, number>>, u: UpdateLike): boolean {
  const at = sequence(u);
  if (at === null) return false;
  const last = seqs[at[0]];
  return last !== undefined && at[1] <= last;
}

export function newMedia(mediaId: string, seqs: Record<string, number>, now: number): MediaState {
  return { mediaId, userId: null, filename: null, runId: null, status: "running", error: null,
           models: {}, seqs, lastUpdateAt: now, queueOrder: [], ownerAlive: null };
}

/**
 * `media` after one live update (undefined: not seen yet). Returns `media` itself when the
 * update changes nothing the UI shows (malformed, a repeat, a straggler after the end).
 */
export function applyUpdate(media: MediaState | undefined, u: UpdateLike,
                            now: number): MediaState | undefined {
  const id = text(u.mediaId), name = text(u.event);
  if (id === null || name === null || (media && isRepeat(media.seqs, u))) return media;
  const data = object(u.data), runId = text(u.runId);
  const seqs = { ...(media?.seqs ?? {}) };
  const at = sequence(u);
  if (at) seqs[at[0]] = at[1];
  let m = media;
  if (name === "PROCESSING_STARTED") {
    const newRun = !m || m.status !== "running" || (runId !== null && m.runId !== null &&
                                                      runId !== m.runId);
    if (newRun) m = newMedia(id, seqs, now);
    m = { ...m!, filename: m!.filename ?? text(data.filename), runId: runId ?? m!.runId };
  } else if (m && m.status !== "running") {
    return { ...m, seqs };  // after the media's end: a straggler does not reopen it
  } else if (name === "PROCESSING_COMPLETED" || name === "PROCESSING_FAILED") {
    m = m ?? newMedia(id, seqs, now);
    const failed = name === "PROCESSING_FAILED";
    m = { ...m, status: failed ? "failed" : "completed",
          error: failed ? text(data.error_message) ?? text(u.message) ?? "failed" : null };
  } else {
    const model = data.model_name;
    if (!shownModel(model)) return media ? { ...media, seqs } : undefined;
    m = m ?? newMedia(id, seqs, now);  // joined late, without a snapshot
    if (name === "ANALYSIS_QUEUED" && !(model in m.models)) {
      m = { ...m, queueOrder: [...m.queueOrder, model] };  // its first queueing places it
    }
    m = { ...m, models: { ...m.models, [model]: applyModel(m.models[model], model, name, data) } };
  }
  return { ...m, userId: text(u.userId) ?? m.userId, runId: runId ?? m.runId, seqs,
           lastUpdateAt: now, ownerAlive: null };
}

type Row = { -readonly [K in keyof ModelState]: ModelState[K] };

function emptyRow(modelName: string): Row {
  return { modelName, status: "queued", progress: null, total: null, phase: null,
           prediction: null, confidence: null, error: null, etaSeconds: null, attempt: null,
           attempts: null, retryReason: null };
}

/** (attempt, attempts) of a retried job's event, from `data.details`. */
function attemptOf(data: Data): [number, number] | null {
  const details = object(data.details);
  const attempt = int(details.attempt), attempts = int(details.attempts);
  return attempt !== null && attempts !== null && attempt >= 1 && attempt <= attempts
    ? [attempt, attempts] : null;
}

function applyModel(row: ModelState | undefined, modelName: string, name: string,
                    data: Data): ModelState {
  let r: Row = row ? { ...row } : emptyRow(modelName);
  const status = MODEL_STATUS[name];
  const attempt = attemptOf(data);
  if ((status === "queued" || status === "analyzing") && attempt !== null &&
      (r.attempt === null || attempt[0] > r.attempt)) {
    // A retried job's next attempt: the model starts over (docs/contract.md, rule 2); the
    // failed attempt's text stays as the reason, the row is not failed.
    const reason = text(object(data.details).retry_reason) ?? r.error ?? r.retryReason;
    r = { ...emptyRow(modelName), attempt: attempt[0], attempts: attempt[1],
          retryReason: reason };
  }
  if (status) r.status = status;
  else if (r.status === "queued") r.status = "analyzing";  // its ANALYSIS_STARTED went by
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

/** A media's state as a `progress_snapshot` tells it (rows of worker/backend left out). */
export function fromSnapshot(snap: ProgressSnapshot, now: number): MediaState | undefined {
  const id = text(snap.mediaId);
  if (id === null) return undefined;
  const models: Record<string, ModelState> = {};
  for (const r of Array.isArray(snap.models) ? snap.models : []) {
    if (!shownModel(r?.modelName)) continue;
    models[r.modelName] = {
      modelName: r.modelName, status: MODEL_STATUS_OF[r.status] ?? "queued",
      progress: int(r.progress), total: int(r.total), phase: text(r.phase),
      prediction: text(r.prediction), confidence: num(r.confidence), error: text(r.error),
      etaSeconds: num(r.etaSeconds), attempt: null, attempts: null, retryReason: null,
    };
  }
  const seqs: Record<string, number> = {};
  for (const [source, seq] of Object.entries(object(snap.seqs))) {
    if (int(seq) !== null) seqs[source] = seq as number;
  }
  const updatedAt = Date.parse(typeof snap.updatedAt === "string" ? snap.updatedAt : "");
  const status = snap.status === "completed" || snap.status === "failed" ? snap.status
    : "running";
  // quietSeconds is counted by the reader's clock, so it needs no agreement between the
  // browser's clock and the server's; updatedAt does (a browser ahead would read quiet).
  const quiet = num(snap.quietSeconds);
  const lastUpdateAt = quiet !== null ? now - quiet * 1000
    : Number.isFinite(updatedAt) ? Math.min(updatedAt, now) : now;
  return { mediaId: id, userId: text(snap.userId), filename: text(snap.filename),
           runId: text(snap.runId), status, error: text(snap.error), models, seqs,
           lastUpdateAt, queueOrder: [],
           ownerAlive: typeof snap.ownerAlive === "boolean" ? snap.ownerAlive : null };
}

const MODEL_STATUS_OF: Record<string, ModelStatus> = {
  queued: "queued", analyzing: "analyzing", completed: "completed", failed: "failed" };

/** How the media ended, or null while it runs. */
export function outcome(m: MediaState): Outcome | null {
  if (m.status === "running") return null;
  if (m.status === "failed") return "failed";
  return Object.values(m.models).some((r) => r.status === "failed") ? "partial" : "success";
}

/** Progress of the whole media in 0..1: the mean of its rows, finished rows whole (as the
 *  product's hook computes it); 1 once the media ended. */
export function overallProgress(m: MediaState): number {
  if (m.status !== "running") return 1;
  const rows = Object.values(m.models);
  if (!rows.length) return 0;
  const part = (r: ModelState): number =>
    r.status === "completed" || r.status === "failed" ? 1
      : r.total ? (r.progress ?? 0) / r.total : 0;
  return rows.reduce((sum, r) => sum + part(r), 0) / rows.length;
}

/**
 * The rows in queue order, whatever order their events or a snapshot gave them: first the
 * models never seen queued (queued before this store joined, or known from a snapshot,
 * which carries no queue order), by name; then the order their models were queued in.
 * Two pages, or one reloaded, and the terminal panel draw the same rows in the same order.
 */
export function orderedModels(m: MediaState): ModelState[] {
  const placed = new Set(m.queueOrder);
  const rest = Object.keys(m.models).filter((name) => !placed.has(name))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return [...rest, ...m.queueOrder.filter((name) => name in m.models)]
    .map((name) => m.models[name]!);
}
