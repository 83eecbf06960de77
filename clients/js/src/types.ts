/**
 * The payload of every socket event a relay emits, and of the channel event they carry.
 * Everything here derives from the generated files (src/generated/, from docs/schema/):
 * change the schema, run `npm run generate`, and the drift tests keep Python and
 * TypeScript in step.
 */
import type { ProgressEvent } from "./generated/channel.js";
import type {
  MediaUpdate, ProcessingError, ProgressSnapshot, ProgressUpdateEnvelope,
} from "./generated/socket.js";

export type * from "./generated/channel.js";
export type {
  MediaUpdate, ModelSnapshot, ProcessingError, ProgressSnapshot, ProgressUpdateEnvelope,
} from "./generated/socket.js";

/**
 * One `progress_update`: a channel event in camelCase. Narrow on `event` to get that
 * event type's `data`, as with `ProgressEvent`.
 */
export type ProgressUpdate<E extends ProgressEvent = ProgressEvent> =
  E extends ProgressEvent ? ProgressUpdateEnvelope & { event: E["event"]; data: E["data"] }
    : never;

/** The events a relay emits, for `Socket<ServerToClientEvents>` of socket.io-client. */
export interface ServerToClientEvents {
  progress_update: (payload: ProgressUpdate) => void;
  media_update: (payload: MediaUpdate) => void;
  processing_error: (payload: ProcessingError) => void;
  progress_snapshot: (payload: ProgressSnapshot) => void;
}

/** A client emits nothing to a relay. */
export type ClientToServerEvents = Record<string, never>;
