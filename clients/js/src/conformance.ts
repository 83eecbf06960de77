/**
 * The conformance suite's runner: feeds each stream of conformance/streams.json to a
 * fresh reducer and compares, after every step, the state it shows with the expected one.
 * Any UI can run it: adapt its reducer to `Reducer` (see docs/browser.md).
 */
import { type MediaState, orderedModels, outcome } from "./fold.js";
import { createProgressStore } from "./store.js";

export interface ConformanceModel {
  status: string;
  progress: number | null;
  total: number | null;
  phase: string | null;
  prediction: string | null;
  confidence: number | null;
  error: string | null;
  attempt: number | null;
  attempts: number | null;
  retryReason: string | null;
}

export interface ConformanceMedia {
  status: string;
  outcome: string | null;
  filename: string | null;
  error: string | null;
  /** The rows' model names in the order a UI draws them (queue order, then by name). */
  order: string[];
  models: Record<string, ConformanceModel>;
}

export interface ConformanceNotice { mediaId: string; outcome: string }

export interface ConformanceStep {
  note: string;
  on: string;
  payload: unknown;
  expect: { media: Record<string, ConformanceMedia>; notices: ConformanceNotice[] };
}

export interface ConformanceStream { name: string; description: string; steps: ConformanceStep[] }

/** What the suite needs of a UI's reducer. */
export interface Reducer {
  receive(name: string, payload: unknown): void;
  media(): Record<string, ConformanceMedia>;
  notices(): ConformanceNotice[];
}

export interface Mismatch {
  stream: string;
  step: number;
  note: string;
  expected: unknown;
  actual: unknown;
}

/** Every step whose state differs from the expected one (empty: the reducer conforms). */
export function runConformance(streams: readonly ConformanceStream[],
                               makeReducer: () => Reducer): Mismatch[] {
  const mismatches: Mismatch[] = [];
  for (const stream of streams) {
    const reducer = makeReducer();
    stream.steps.forEach((step, index) => {
      reducer.receive(step.on, structuredClone(step.payload));
      const actual = { media: reducer.media(), notices: reducer.notices() };
      if (canonical(actual) !== canonical(step.expect)) {
        mismatches.push({ stream: stream.name, step: index + 1, note: step.note,
                          expected: step.expect, actual });
      }
    });
  }
  return mismatches;
}

/** One media as the suite states it. */
export function project(m: MediaState): ConformanceMedia {
  const models: Record<string, ConformanceModel> = {};
  for (const [name, r] of Object.entries(m.models)) {
    models[name] = { status: r.status, progress: r.progress, total: r.total, phase: r.phase,
                     prediction: r.prediction, confidence: r.confidence, error: r.error,
                     attempt: r.attempt, attempts: r.attempts, retryReason: r.retryReason };
  }
  return { status: m.status, outcome: outcome(m), filename: m.filename, error: m.error,
           order: orderedModels(m).map((r) => r.modelName), models };
}

/** This package's store as a `Reducer`. */
export function storeReducer(): Reducer {
  const store = createProgressStore({ now: () => 0 });
  return {
    receive: store.receive,
    media: () => Object.fromEntries(
      Object.entries(store.getState().media).map(([id, m]) => [id, project(m)])),
    notices: () => store.getState().notices.map((n) => ({ mediaId: n.mediaId,
                                                           outcome: n.kind })),
  };
}

/** JSON with sorted keys: equal values, equal text (numbers by value, as JSON.parse reads). */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v);
}
