/**
 * React bindings (React is an optional peer): `useProgressState` reads a store through
 * `useSyncExternalStore`; `useAnalysisProgress` plays the product's hook of that name for
 * one media.
 */
import { useCallback, useState, useSyncExternalStore } from "react";

import { type MediaState, type ModelState, outcome, type Outcome, overallProgress } from "./fold.js";
import type { ProgressState, ProgressStore } from "./store.js";

/** The store's whole state; re-renders when it changes. */
export function useProgressState(store: ProgressStore): ProgressState {
  return useSyncExternalStore(store.subscribe, store.getState, store.getState);
}

export interface AnalysisProgress {
  /** The media, or undefined before its first event or snapshot. */
  readonly media: MediaState | undefined;
  /** Its rows by model name (the product hook's `modelProgress`). */
  readonly modelProgress: Readonly<Record<string, ModelState>>;
  /** In 0..1: the mean of the rows, finished rows whole. */
  readonly overallProgress: number;
  readonly isComplete: boolean;
  readonly outcome: Outcome | null;
  /** Shown from the media's start until `hideProgress` (the product's panel). */
  readonly isProgressVisible: boolean;
  showProgress(): void;
  hideProgress(): void;
}

const NO_MODELS: Readonly<Record<string, ModelState>> = Object.freeze({});

/** One media's progress, as the product's `useAnalysisProgress(mediaId)` gives it. */
export function useAnalysisProgress(store: ProgressStore, mediaId: string): AnalysisProgress {
  const read = useCallback(() => store.getMedia(mediaId), [store, mediaId]);
  const media = useSyncExternalStore(store.subscribe, read, read);
  const [hidden, setHidden] = useState<string | null>(null);
  const run = media ? `${media.mediaId}:${media.runId ?? ""}` : null;
  return {
    media,
    modelProgress: media?.models ?? NO_MODELS,
    overallProgress: media ? overallProgress(media) : 0,
    isComplete: media ? media.status !== "running" : false,
    outcome: media ? outcome(media) : null,
    // A new run of the media shows the panel again, as PROCESSING_STARTED did.
    isProgressVisible: media !== undefined && hidden !== run,
    showProgress: () => setHidden(null),
    hideProgress: () => setHidden(run),
  };
}
