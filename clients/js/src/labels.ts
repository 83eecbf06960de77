/**
 * The words a UI shows for a media's state, as plain functions of the store's state (no
 * DOM): the relay's page draws with them, and a product UI can too. They say what a user
 * can act on and never carry internal ids (a worker's, a job's, a run's).
 */
import type { MediaState, ModelState } from "./fold.js";

/** A running media with no news this long reads "no update for N s" (as the terminal
 *  panel and the snapshot's `quietSeconds`: progress_sdk.defaults.QUIET_AFTER). */
export const QUIET_AFTER_SECONDS = 15;

/** Seconds since a running media's last news, when at least `QUIET_AFTER_SECONDS`; null
 *  otherwise (and for an ended media). `now`: epoch ms. */
export function quietSeconds(m: MediaState, now: number): number | null {
  if (m.status !== "running") return null;
  const quiet = Math.floor((now - m.lastUpdateAt) / 1000);
  return quiet >= QUIET_AFTER_SECONDS ? quiet : null;
}

/** `"retrying (2/3)"` while a retried model waits for its next attempt, else null. */
export function retryingLabel(r: ModelState): string | null {
  return r.status === "queued" && r.attempt !== null && r.attempts !== null && r.attempt > 1
    ? `retrying (${r.attempt}/${r.attempts})` : null;
}

/** `"8 completed, 2 failed"` (and `", 3 to go"` while models still run): a failed model is
 *  not a done one, as "10/10 models" made it look. */
export function modelCounts(m: MediaState): string {
  const rows = Object.values(m.models);
  const completed = rows.filter((r) => r.status === "completed").length;
  const failed = rows.filter((r) => r.status === "failed").length;
  const parts = [`${completed} completed`];
  if (failed) parts.push(`${failed} failed`);
  if (rows.length - completed - failed) parts.push(`${rows.length - completed - failed} to go`);
  return parts.join(", ");
}

/** `"42 s"`, `"3 min 05 s"`, `"1 h 02 min"`. */
export function formatDuration(seconds: number): string {
  const whole = Math.max(Math.round(seconds), 0);
  if (whole < 60) return `${whole} s`;
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(whole / 3600)} h ${String(Math.floor(whole % 3600 / 60)).padStart(2, "0")} min`;
}

/** Seconds until the slowest running model finishes, of those that said how long
 *  (`data.details.eta_seconds`, as `model.track()` sends it); null when none did. */
export function mediaEtaSeconds(m: MediaState): number | null {
  const etas = Object.values(m.models)
    .filter((r) => r.status === "analyzing" && r.etaSeconds !== null)
    .map((r) => r.etaSeconds!);
  return etas.length ? Math.max(...etas) : null;
}

/**
 * What a running media's time line says: its ETA while news comes, `"no update for 40 s"`
 * once it is quiet (an ETA would only freeze), and that its worker is gone when a snapshot
 * found it so (the sweeper ends such a media shortly). Null when there is nothing to say.
 */
export function timeLabel(m: MediaState, now: number): string | null {
  if (m.status !== "running") return null;
  if (m.ownerAlive === false) return "the worker stopped; ending this analysis";
  const quiet = quietSeconds(m, now);
  if (quiet !== null) return `no update for ${quiet} s`;
  const eta = mediaEtaSeconds(m);
  return eta !== null ? `about ${formatDuration(eta)} left` : null;
}
