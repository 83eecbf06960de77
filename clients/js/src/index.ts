/**
 * @progress-sdk/client: the browser side of progress-sdk's relay.
 *
 * - `connect(url, token)` or `createProgressStore().attach(socket)`: per-media state from
 *   `progress_snapshot` and live events, without gap or repeat;
 * - the payload types of every socket event (`ProgressUpdate`, `ProgressSnapshot`...);
 * - the product's toast rules (`toastFor`, `terminalNotice`);
 * - React: `@progress-sdk/client/react`; the conformance runner: `.../conformance`.
 */
export { connect, type Connection, type ProgressSocket } from "./connect.js";
export {
  applyUpdate, fromSnapshot, isRepeat, type MediaState, type MediaStatus, type ModelState,
  type ModelStatus, type Outcome, outcome, overallProgress, shownModel, type UpdateLike,
} from "./fold.js";
export {
  type ConnectionState, type Counters, createProgressStore, type ProgressState,
  type ProgressStore, type SocketLike, type StoreOptions,
} from "./store.js";
export { type Notice, noticeFor, noticeKey, type Toast, terminalNotice, toastFor } from "./toasts.js";
export type * from "./types.js";
