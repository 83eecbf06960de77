/* GENERATED from docs/schema/progress-event.v1.json by clients/js/scripts/generate.mjs
 * (json-schema-to-typescript); do not edit: run `npm run generate` in clients/js. */

/**
 * One progress event on the media-progress-events Redis channel (contract v1), one variant per event type, told apart by `event`. A whole serialised event is at most 65536 bytes. Lifecycle rules (ordering, seq) are checked by progress_sdk.contract, not by this schema.
 */
export type ProgressEvent =
  | ProcessingStartedEvent
  | ProcessingCompletedEvent
  | ProcessingFailedEvent
  | AnalysisQueuedEvent
  | AnalysisStartedEvent
  | FrameAnalysisProgressEvent
  | WindowProcessingProgressEvent
  | VisualizationGenerationProgressEvent
  | AudioExtractionStartEvent
  | AudioExtractionCompleteEvent
  | SpectrogramGenerationStartEvent
  | SpectrogramGenerationCompleteEvent
  | AnalysisCompletedEvent
  | AnalysisFailedEvent;
/**
 * Any JSON value.
 */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | {
      [k: string]: JsonValue;
    };

/**
 * One PROCESSING_STARTED event.
 */
export interface ProcessingStartedEvent {
  data: MediaData;
  event: "PROCESSING_STARTED";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * The data of a media event. Other keys are kept and forwarded (any JSON).
 */
export interface MediaData {
  /**
   * Free JSON object.
   */
  details?: {
    [k: string]: JsonValue;
  };
  /**
   * Recommended on PROCESSING_STARTED; shown in the panel title.
   */
  filename?: string;
  [k: string]:
    | JsonValue
    | {
        [k: string]: JsonValue;
      }
    | string
    | undefined;
}
/**
 * One PROCESSING_COMPLETED event.
 */
export interface ProcessingCompletedEvent {
  data: MediaData;
  event: "PROCESSING_COMPLETED";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One PROCESSING_FAILED event.
 */
export interface ProcessingFailedEvent {
  data: MediaFailedData;
  event: "PROCESSING_FAILED";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * The data of PROCESSING_FAILED. Other keys are kept and forwarded (any JSON).
 */
export interface MediaFailedData {
  /**
   * Free JSON object.
   */
  details?: {
    [k: string]: JsonValue;
  };
  /**
   * Required on ANALYSIS_FAILED and PROCESSING_FAILED; the UI shows it.
   */
  error_message: string;
  /**
   * Recommended on PROCESSING_STARTED; shown in the panel title.
   */
  filename?: string;
  [k: string]:
    | JsonValue
    | {
        [k: string]: JsonValue;
      }
    | string
    | undefined;
}
/**
 * One ANALYSIS_QUEUED event.
 */
export interface AnalysisQueuedEvent {
  data: ModelData;
  event: "ANALYSIS_QUEUED";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * The data of a model event without progress (queued, started, a phase step). Other keys are kept and forwarded (any JSON).
 */
export interface ModelData {
  /**
   * Free JSON object.
   */
  details?: {
    [k: string]: JsonValue;
  };
  /**
   * Model this event is about; required on model-level events. The UI ignores names containing 'worker' or 'backend'.
   */
  model_name: string;
  /**
   * Short machine-readable stage name.
   */
  phase?: string;
  [k: string]:
    | JsonValue
    | {
        [k: string]: JsonValue;
      }
    | string
    | undefined;
}
/**
 * One ANALYSIS_STARTED event.
 */
export interface AnalysisStartedEvent {
  data: ModelData;
  event: "ANALYSIS_STARTED";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One FRAME_ANALYSIS_PROGRESS event.
 */
export interface FrameAnalysisProgressEvent {
  data: ProgressData;
  event: "FRAME_ANALYSIS_PROGRESS";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * The data of a *_PROGRESS event: 0 <= progress <= total, total > 0. Other keys are kept and forwarded (any JSON).
 */
export interface ProgressData {
  /**
   * Free JSON object.
   */
  details?: {
    [k: string]: JsonValue;
  };
  /**
   * Model this event is about; required on model-level events. The UI ignores names containing 'worker' or 'backend'.
   */
  model_name: string;
  /**
   * Short machine-readable stage name.
   */
  phase?: string;
  /**
   * Units done, 0 <= progress <= total.
   */
  progress: number;
  /**
   * Units in all, > 0.
   */
  total: number;
  [k: string]:
    | JsonValue
    | {
        [k: string]: JsonValue;
      }
    | string
    | number
    | undefined;
}
/**
 * One WINDOW_PROCESSING_PROGRESS event.
 */
export interface WindowProcessingProgressEvent {
  data: ProgressData;
  event: "WINDOW_PROCESSING_PROGRESS";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One VISUALIZATION_GENERATION_PROGRESS event.
 */
export interface VisualizationGenerationProgressEvent {
  data: ProgressData;
  event: "VISUALIZATION_GENERATION_PROGRESS";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One AUDIO_EXTRACTION_START event.
 */
export interface AudioExtractionStartEvent {
  data: ModelData;
  event: "AUDIO_EXTRACTION_START";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One AUDIO_EXTRACTION_COMPLETE event.
 */
export interface AudioExtractionCompleteEvent {
  data: ModelData;
  event: "AUDIO_EXTRACTION_COMPLETE";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One SPECTROGRAM_GENERATION_START event.
 */
export interface SpectrogramGenerationStartEvent {
  data: ModelData;
  event: "SPECTROGRAM_GENERATION_START";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One SPECTROGRAM_GENERATION_COMPLETE event.
 */
export interface SpectrogramGenerationCompleteEvent {
  data: ModelData;
  event: "SPECTROGRAM_GENERATION_COMPLETE";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * One ANALYSIS_COMPLETED event.
 */
export interface AnalysisCompletedEvent {
  data: CompletedData;
  /**
   * ANALYSIS_COMPLETE is a read-side alias sent by some existing producers; this SDK never emits it.
   */
  event: "ANALYSIS_COMPLETED" | "ANALYSIS_COMPLETE";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * The data of ANALYSIS_COMPLETED: the model's verdict. Other keys are kept and forwarded (any JSON).
 */
export interface CompletedData {
  /**
   * Confidence in 0..1.
   */
  confidence?: number;
  /**
   * Free JSON object.
   */
  details?: {
    [k: string]: JsonValue;
  };
  /**
   * Model this event is about; required on model-level events. The UI ignores names containing 'worker' or 'backend'.
   */
  model_name: string;
  /**
   * Short machine-readable stage name.
   */
  phase?: string;
  /**
   * Verdict on ANALYSIS_COMPLETED, e.g. "FAKE" or "REAL".
   */
  prediction?: string;
  [k: string]:
    | JsonValue
    | number
    | {
        [k: string]: JsonValue;
      }
    | string
    | undefined;
}
/**
 * One ANALYSIS_FAILED event.
 */
export interface AnalysisFailedEvent {
  data: ModelFailedData;
  event: "ANALYSIS_FAILED";
  /**
   * The media this event is about.
   */
  media_id: string;
  /**
   * Human-readable text, shown to the user as text (never HTML).
   */
  message: string;
  /**
   * One analysis run of a media (a media can be re-analysed).
   */
  run_id?: string;
  /**
   * Always 1 for this contract.
   */
  schema_version: 1;
  /**
   * Strictly increasing per (source, media_id); a gap is loss.
   */
  seq: number;
  /**
   * One publisher instance, e.g. host:pid:random.
   */
  source: string;
  /**
   * ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z.
   */
  timestamp: string;
  /**
   * Owner of the media; the relay routes by it and drops events without it.
   */
  user_id: string;
}
/**
 * The data of ANALYSIS_FAILED: error_message is shown to the user. Other keys are kept and forwarded (any JSON).
 */
export interface ModelFailedData {
  /**
   * Free JSON object.
   */
  details?: {
    [k: string]: JsonValue;
  };
  /**
   * Required on ANALYSIS_FAILED and PROCESSING_FAILED; the UI shows it.
   */
  error_message: string;
  /**
   * Model this event is about; required on model-level events. The UI ignores names containing 'worker' or 'backend'.
   */
  model_name: string;
  /**
   * Short machine-readable stage name.
   */
  phase?: string;
  [k: string]:
    | JsonValue
    | {
        [k: string]: JsonValue;
      }
    | string
    | undefined;
}
