/**
 * The product's toast rules as plain functions (no DOM, no framework): while a media runs,
 * one persistent progress toast, updated in place; when it ends, one terminal notice per
 * media run, telling success, partial success and failure apart.
 */
import { type MediaState, type Outcome, outcome, overallProgress } from "./fold.js";
import { modelCounts } from "./labels.js";

/** The final notice of one media run. */
export interface Notice {
  /** Rises by one per notice a store makes (0 from `terminalNotice`). */
  readonly id: number;
  readonly mediaId: string;
  readonly runId: string | null;
  readonly kind: Outcome;
  readonly title: string;
  readonly body: string;
}

/** The persistent toast of a media: `loading` while it runs, then its outcome. */
export interface Toast {
  /** One toast per media: update the toast with this id, never add another. */
  readonly id: string;
  readonly kind: "loading" | Outcome;
  readonly title: string;
  readonly body: string;
  /** Overall progress in 0..1. */
  readonly progress: number;
}

const TITLES: Record<Outcome, string> = {
  success: "Analysis complete",
  partial: "Analysis partly complete",
  failed: "Analysis failed",
};

function counts(m: MediaState): { done: number; failed: number; all: number } {
  const rows = Object.values(m.models);
  return { done: rows.filter((r) => r.status === "completed").length,
           failed: rows.filter((r) => r.status === "failed").length, all: rows.length };
}

/** The notice for a media that ended, or null while it runs. */
export function noticeFor(m: MediaState): Notice | null {
  const kind = outcome(m);
  if (kind === null) return null;
  const { done, failed, all } = counts(m);
  const body = kind === "failed" ? m.error ?? "failed"
    : `${done} of ${all} models completed` + (failed ? `, ${failed} failed` : "");
  return { id: 0, mediaId: m.mediaId, runId: m.runId, kind,
           title: m.filename ? `${TITLES[kind]}: ${m.filename}` : TITLES[kind], body };
}

/**
 * The notice to show when a media changes from `prev` to `next`: one when it ends, none
 * for a media run that had ended already (a reconnect's snapshot of a finished media).
 */
export function terminalNotice(prev: MediaState | undefined, next: MediaState): Notice | null {
  if (prev && outcome(prev) !== null &&
      (prev.runId === null || next.runId === null || prev.runId === next.runId)) {
    return null;
  }
  return noticeFor(next);
}

/** A key per media run and outcome, to remember notices already shown (across reloads). */
export function noticeKey(n: Notice): string {
  return `${n.mediaId}:${n.runId ?? ""}:${n.kind}`;
}

/** The media's one toast, as the product's orchestrator shows it. */
export function toastFor(m: MediaState): Toast {
  const notice = noticeFor(m);
  if (notice) {
    return { id: m.mediaId, kind: notice.kind, title: notice.title, body: notice.body,
             progress: 1 };
  }
  const progress = overallProgress(m);
  return { id: m.mediaId, kind: "loading", title: `Analysing ${m.filename ?? "your file"}`,
           body: `${Math.round(progress * 100)}% · ${modelCounts(m)}`, progress };
}
