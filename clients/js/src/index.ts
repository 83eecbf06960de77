/**
 * @progress-sdk/client: the browser side of progress-sdk's relay.
 *
 * - `connect(url, token)` or `createProgressStore().attach(socket)`: per-media state from
 *   `progress_snapshot` and live events, without gap or repeat;
 * - the payload types of every socket event (`ProgressUpdate`, `ProgressSnapshot`...);
 * - the product's toast rules (`toastFor`, `terminalNotice`) and the words a UI shows
 *   (`modelCounts`, `timeLabel`, `retryingLabel`; rows in queue order: `orderedModels`);
 * - React: `@progress-sdk/client/react`; the conformance runner: `.../conformance`.
 */
export { connect, type Connection, type ProgressSocket, type TokenSource } from "./connect.js";
export {
  applyUpdate, fromSnapshot, isRepeat, type MediaState, type MediaStatus, type ModelState,
  type ModelStatus, orderedModels, type Outcome, outcome, overallProgress, shownModel,
  type UpdateLike,
} from "./fold.js";
export {
  formatDuration, mediaEtaSeconds, modelCounts, QUIET_AFTER_SECONDS, quietSeconds,
  retryingLabel, timeLabel,
} from "./labels.js";
export {
  type ConnectionState, type Counters, createProgressStore, type ProgressState,
  type ProgressStore, type QueueOrderMemory, type SessionEnd, type SocketLike, type StoreOptions,
} from "./store.js";
export { type Notice, noticeFor, noticeKey, type Toast, terminalNotice, toastFor } from "./toasts.js";
export type * from "./types.js";
