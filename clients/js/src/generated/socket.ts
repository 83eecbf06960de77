/* GENERATED from docs/schema/socket-events.v1.json by clients/js/scripts/generate.mjs
 * (json-schema-to-typescript); do not edit: run `npm run generate` in clients/js. */

/**
 * The payloads a relay emits to a browser's Socket.IO socket, one definition per socket event. A progress_update carries one channel event (progress-event.v1.json) in camelCase: its `event` and `data` are the channel event's. Checked against the Python relay's payloads by tests/test_socket_schema.py; the TypeScript types in clients/js are generated from this file and progress-event.v1.json.
 */
export type SocketPayload =
  | ProgressUpdateEnvelope
  | MediaUpdate
  | ProcessingError
  | ModelSnapshot
  | ProgressSnapshot
  | CaughtUp
  | SessionEnded;

/**
 * `progress_update`, all but `event` and `data` (those are the channel event's, typed per event type). The first six fields are the product relay's; `seq`, `source` and `runId` come when the channel event has them.
 */
export interface ProgressUpdateEnvelope {
  /**
   * The channel event's media_id.
   */
  mediaId: string;
  /**
   * The channel event's user_id: the socket's own user.
   */
  userId: string;
  /**
   * Human-readable text; show it as text, never as HTML.
   */
  message: string;
  /**
   * ISO 8601 UTC time of emit; null from producers that send none.
   */
  timestamp: string | null;
  /**
   * Strictly increasing per (source, mediaId): a repeat has a seq at or below the last one seen.
   */
  seq?: number;
  /**
   * The publisher instance that numbered seq.
   */
  source?: string;
  /**
   * One analysis run of the media.
   */
  runId?: string;
}
/**
 * `media_update`, after PROCESSING_COMPLETED (the relay has no database: what the events tell).
 */
export interface MediaUpdate {
  /**
   * The media id (the product's Media.id).
   */
  id: string;
  mediaId: string;
  userId: string;
  /**
   * From the media's PROCESSING_STARTED, null if unknown.
   */
  filename: string | null;
  status: "COMPLETED";
  runId: string | null;
}
/**
 * `processing_error`, after PROCESSING_FAILED.
 */
export interface ProcessingError {
  mediaId: string;
  filename: string | null;
  /**
   * data.error_message, else the event's message.
   */
  error: string;
}
/**
 * One model's row inside a progress_snapshot.
 */
export interface ModelSnapshot {
  modelName: string;
  status: "queued" | "analyzing" | "completed" | "failed";
  progress: number | null;
  total: number | null;
  phase: string | null;
  prediction: string | null;
  confidence: number | null;
  error: string | null;
  etaSeconds: number | null;
}
/**
 * `progress_snapshot`, on connect, one per media of the user, before any live event: the media's state so far and the last seq applied per source (a live event at or below seqs[source] is already in it). Readers ignore fields they do not know.
 */
export interface ProgressSnapshot {
  mediaId: string;
  userId: string | null;
  status: "running" | "completed" | "failed";
  filename: string | null;
  runId: string | null;
  error: string | null;
  /**
   * The last seq applied (of source).
   */
  seq: number | null;
  source: string | null;
  /**
   * The last seq applied per source.
   */
  seqs: {
    [k: string]: number;
  };
  /**
   * ISO 8601 UTC time of the snapshot's last change.
   */
  updatedAt: string;
  /**
   * For a running media without news for at least 15 s (a live worker's long step: a state, not a failure), the whole seconds since its last event as of the read; otherwise null. Show "no update for N s" instead of an ETA, counting on from updatedAt.
   */
  quietSeconds?: number | null;
  /**
   * Whether the media's worker held its liveness key when the snapshot was read; null when the reader did not check or the media has no owner (docs/panel.md).
   */
  ownerAlive?: boolean | null;
  models: ModelSnapshot[];
}
/**
 * `caught_up`, once per socket after its catch-up snapshots (the reference relay): the socket is in the live stream from here on; events published before it may have come inside a snapshot.
 */
export interface CaughtUp {}
/**
 * `session_ended`, right before the relay disconnects a socket whose token expired or was revoked (the reference relay): nothing was sent to it after that instant; connect again with a fresh token.
 */
export interface SessionEnded {
  reason: "token_expired" | "revoked";
  /**
   * Why, safe to show; never holds the token.
   */
  message: string;
}
