// How a TypeScript consumer of the Redis channel (a relay, the UI's orchestrator) reads
// events with the package's types: narrowing on `event` types `data`. Compiled with
// `tsc --strict` against the built package by tests/test_typescript_types.py; nothing here runs.
import type { ProgressEvent } from "@progress-sdk/client";

export interface ModelRow {
  status: string;
  progress?: number;
  total?: number;
  result?: string;
  error?: string;
}

/** One model row of the UI's panel after `event`: narrowing on `event` types `data`. */
export function nextRow(row: ModelRow | undefined, event: ProgressEvent): ModelRow | undefined {
  switch (event.event) {
    case "PROCESSING_STARTED":
    case "PROCESSING_COMPLETED":
      return row;
    case "PROCESSING_FAILED":
      return { status: "failed", error: event.data.error_message };
    case "ANALYSIS_QUEUED":
      return { status: "queued" };
    case "ANALYSIS_STARTED":
      return { status: "analyzing" };
    case "FRAME_ANALYSIS_PROGRESS":
    case "WINDOW_PROCESSING_PROGRESS":
    case "VISUALIZATION_GENERATION_PROGRESS": {
      const { progress, total, phase } = event.data;
      return { status: phase ?? row?.status ?? "analyzing", progress, total };
    }
    case "ANALYSIS_COMPLETED":
    case "ANALYSIS_COMPLETE": {
      const { prediction, confidence } = event.data;
      const result = prediction === undefined ? undefined : `${prediction} ${confidence ?? ""}`;
      return { ...row, status: "completed", result };
    }
    case "ANALYSIS_FAILED":
      return { ...row, status: "failed", error: event.data.error_message };
    default:
      return { ...row, status: event.data.phase ?? row?.status ?? "analyzing" };
  }
}

/** The model a model event is about; media events have none. */
export function modelOf(event: ProgressEvent): string | undefined {
  return "model_name" in event.data ? String(event.data.model_name) : undefined;
}
