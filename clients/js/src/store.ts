/**
 * The client store: folds a relay's socket events into per-media state, framework-free.
 *
 * `attach(socket)` listens to a Socket.IO socket (any object with `on`/`off`); `receive`
 * takes one socket event by hand. `subscribe`/`getState` fit React's
 * `useSyncExternalStore`: the state is immutable and its object changes only when
 * something shown changed.
 *
 * Catch-up and reconnects: the relay sends one `progress_snapshot` per media on every
 * connect. A snapshot replaces what the store held for its media, and the live updates
 * already applied that the snapshot does not cover (seq above its `seqs[source]`: they
 * came before it, around a catch-up) are applied again on top, so nothing is lost or
 * shown twice. For that each media keeps its last `replayLimit` sequenced updates.
 */
import {
  applyUpdate, fromSnapshot, isRepeat, type MediaState, sequence, type UpdateLike,
} from "./fold.js";
import type { ProgressSnapshot } from "./generated/socket.js";
import { type Notice, terminalNotice } from "./toasts.js";

/** `ended`: the relay ended the session (`session_ended`: token expired or revoked); it
 *  does not come back by itself, a fresh token does (see `connect`). */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "refused" | "ended";

/** Why the relay ended the session, as its `session_ended` said (safe to show). */
export interface SessionEnd {
  readonly reason: string;
  readonly message: string;
}

export interface Counters {
  /** Live updates applied. */
  readonly updates: number;
  /** Live updates dropped as already applied (by source and seq). */
  readonly repeats: number;
  /** `progress_snapshot` payloads applied. */
  readonly snapshots: number;
  /** Snapshots older than what the store held and could not rebuild from: kept its own. */
  readonly staleSnapshots: number;
}

export interface ProgressState {
  /** Every media seen, by id, in the order first seen. */
  readonly media: Readonly<Record<string, MediaState>>;
  readonly connection: ConnectionState;
  /** Why the relay refused the socket (`connect_error`), while `connection` is refused. */
  readonly connectionError: string | null;
  /** Set by `session_ended` until the socket connects again. */
  readonly sessionEnded: SessionEnd | null;
  /** True once the relay said the catch-up is over (`caught_up`) on this connection: the
   *  snapshots of what ran before are in, the rest comes live. */
  readonly caughtUp: boolean;
  /** The last terminal notices, oldest first; `id` rises by one per notice. */
  readonly notices: readonly Notice[];
  readonly counters: Counters;
}

/** What `attach` needs of a Socket.IO socket (typed or not: the names are `any` so a
 *  `Socket<ServerToClientEvents>` fits). */
export interface SocketLike {
  on(event: any, listener: (...args: any[]) => void): unknown;
  off(event: any, listener: (...args: any[]) => void): unknown;
  readonly connected?: boolean;
}

/** Where a page keeps each media run's queue order across reloads (e.g. localStorage): a
 *  snapshot carries none, so without it a reloaded page lists a media's rows by name. */
export interface QueueOrderMemory {
  get(mediaId: string, runId: string | null): readonly string[] | undefined;
  set(mediaId: string, runId: string | null, order: readonly string[]): void;
}

export interface StoreOptions {
  /** Keeps queue orders across reloads; none by default. */
  queueOrders?: QueueOrderMemory;
  /** Epoch ms; injected by tests. */
  now?: () => number;
  /** Sequenced live updates kept per media to rebuild on an older snapshot (default 256). */
  replayLimit?: number;
  /** Finished media kept (oldest dropped first); default 200. */
  maxFinished?: number;
  /** Notices kept in the state; default 50. */
  maxNotices?: number;
}

export interface ProgressStore {
  getState(): ProgressState;
  /** One media's state, without building the whole state (what a per-media hook reads). */
  getMedia(mediaId: string): MediaState | undefined;
  subscribe(listener: () => void): () => void;
  /** Apply one socket event (name and payload); unknown names are ignored. */
  receive(name: string, payload: unknown): void;
  /** Listen to a socket; returns a function that stops listening. */
  attach(socket: SocketLike): () => void;
}

interface Track {
  recent: UpdateLike[];
  trimmed: Record<string, number>;
}

const EVENTS = ["progress_snapshot", "progress_update", "processing_error",
                "media_update", "session_ended", "caught_up"] as const;

export function createProgressStore(options: StoreOptions = {}): ProgressStore {
  const now = options.now ?? Date.now;
  const replayLimit = options.replayLimit ?? 256;
  const maxFinished = options.maxFinished ?? 200;
  const maxNotices = options.maxNotices ?? 50;
  const tracks = new Map<string, Track>();
  const finished: string[] = [];  // ids in the order they ended (maxFinished kept)
  const listeners = new Set<() => void>();
  // The media live in a Map, changed in place; getState() makes the immutable record once
  // per change it is asked after (getMedia reads one media without it). Copying the record
  // on every event cost O(media) per event: 38,000 events/s with 200 media kept against
  // 330,000 with 20; with the Map, 210,000-420,000 for both (scripts/bench.mjs, 2 busy
  // cores).
  const media = new Map<string, MediaState>();
  let fields: Omit<ProgressState, "media"> = {
    connection: "connecting", connectionError: null, sessionEnded: null, caughtUp: false,
    notices: [],
    counters: { updates: 0, repeats: 0, snapshots: 0, staleSnapshots: 0 },
  };
  let cached: ProgressState | null = null;
  let noticeId = 0;

  function set(changes: Partial<Omit<ProgressState, "media">>): void {
    fields = { ...fields, ...changes };
    cached = null;
    for (const listener of [...listeners]) listener();
  }

  function getState(): ProgressState {
    return (cached ??= { ...fields, media: Object.fromEntries(media) });
  }

  function count(key: keyof Counters): Counters {
    return { ...fields.counters, [key]: fields.counters[key] + 1 };
  }

  function commit(prev: MediaState | undefined, next: MediaState, counters: Counters): void {
    const notice = terminalNotice(prev, next);
    let notices = fields.notices;
    if (notice) notices = [...notices, { ...notice, id: ++noticeId }].slice(-maxNotices);
    media.set(next.mediaId, next);
    if (options.queueOrders && next.queueOrder.length && next.queueOrder !== prev?.queueOrder) {
      options.queueOrders.set(next.mediaId, next.runId, next.queueOrder);
    }
    if (next.status !== "running" && prev?.status !== next.status) {
      finished.push(next.mediaId);
      // Oldest first out; an id already restarted (running again) is skipped.
      while (finished.length > maxFinished) {
        const id = finished.shift()!;
        if (media.get(id)?.status !== "running" && !finished.includes(id)) {
          media.delete(id);
          tracks.delete(id);
        }
      }
    }
    set({ notices, counters });
  }

  function track(id: string): Track {
    let t = tracks.get(id);
    if (!t) tracks.set(id, (t = { recent: [], trimmed: {} }));
    return t;
  }

  function remember(t: Track, u: UpdateLike): void {
    if (!sequence(u)) return;
    t.recent.push(u);
    if (t.recent.length > replayLimit) {
      const [source, seq] = sequence(t.recent.shift()!)!;
      t.trimmed[source] = Math.max(t.trimmed[source] ?? seq, seq);
    }
  }

  // An ended media needs no replay: what it kept becomes the bar a later snapshot must
  // reach (an older one is ignored), so a finished media holds no events.
  function forget(t: Track): void {
    for (const u of t.recent) {
      const [source, seq] = sequence(u)!;
      t.trimmed[source] = Math.max(t.trimmed[source] ?? seq, seq);
    }
    t.recent = [];
  }

  function onUpdate(u: UpdateLike): void {
    if (u === null || typeof u !== "object" || typeof u.mediaId !== "string") return;
    const prev = media.get(u.mediaId);
    if (prev && isRepeat(prev.seqs, u)) {
      set({ counters: count("repeats") });
      return;
    }
    const next = applyUpdate(prev, u, now());
    if (next === undefined || next === prev) return;
    remember(track(u.mediaId), u);
    if (next.status !== "running") forget(track(u.mediaId));
    commit(prev, next, count("updates"));
  }

  function onSnapshot(snap: ProgressSnapshot): void {
    if (snap === null || typeof snap !== "object") return;
    const at = now();
    let next = fromSnapshot(snap, at);
    if (!next) return;
    const prev = media.get(next.mediaId);
    const t = track(next.mediaId);
    const base = next;
    const uncovered = (u: UpdateLike): boolean => {
      const [source, seq] = sequence(u)!;
      const runId = typeof u.runId === "string" ? u.runId : null;
      return seq > (base.seqs[source] ?? -Infinity) && (!runId || !base.runId ||
                                                         runId === base.runId);
    };
    const tooOld = Object.entries(t.trimmed).some(
      ([source, seq]) => seq > (base.seqs[source] ?? -Infinity));
    if (prev && tooOld) {
      set({ counters: count("staleSnapshots") });
      return;
    }
    // A snapshot carries no queue order: the same run keeps the one seen live (or, after a
    // reload, the one the page remembered).
    const order = prev && prev.runId === next.runId ? prev.queueOrder
      : options.queueOrders?.get(next.mediaId, next.runId);
    if (order?.length) next = { ...next, queueOrder: order.filter((n) => typeof n === "string") };
    t.recent = t.recent.filter(uncovered);
    for (const u of t.recent) next = applyUpdate(next, u, at) ?? next;
    if (prev) next = { ...next, seqs: highest(prev.seqs, next.seqs) };
    commit(prev, next, count("snapshots"));
  }

  // A relay that does not forward the terminal progress_update still sends these.
  function onFallback(name: string, payload: unknown): void {
    const p = payload as { mediaId?: unknown; error?: unknown } | null;
    const m = p && typeof p.mediaId === "string" ? media.get(p.mediaId) : undefined;
    if (!m || m.status !== "running") return;
    const failed = name === "processing_error";
    onUpdate({ mediaId: m.mediaId, event: failed ? "PROCESSING_FAILED" : "PROCESSING_COMPLETED",
               data: failed ? { error_message: p!.error } : {} });
  }

  function receive(name: string, payload: unknown): void {
    if (name === "progress_update") onUpdate(payload as UpdateLike);
    else if (name === "progress_snapshot") onSnapshot(payload as ProgressSnapshot);
    else if (name === "processing_error" || name === "media_update") onFallback(name, payload);
    else if (name === "session_ended") onSessionEnded(payload);
    else if (name === "caught_up" && !fields.caughtUp) set({ caughtUp: true });
  }

  function onSessionEnded(payload: unknown): void {
    const p = (payload ?? {}) as { reason?: unknown; message?: unknown };
    const reason = typeof p.reason === "string" ? p.reason : "ended";
    const message = typeof p.message === "string" && p.message ? p.message
      : "the relay ended the session";
    set({ connection: "ended", connectionError: null, sessionEnded: { reason, message },
          caughtUp: false });
  }

  function connection(connection: ConnectionState, error: string | null = null): void {
    // After session_ended the socket's own disconnect (or a refused retry with the old
    // token) must not turn "ended" back into "reconnecting…": only a connect does.
    if (fields.connection === "ended" && connection !== "connected") return;
    if (fields.connection !== connection || fields.connectionError !== error) {
      set({ connection, connectionError: error, caughtUp: false,
            sessionEnded: connection === "connected" ? null : fields.sessionEnded });
    }
  }

  function attach(socket: SocketLike): () => void {
    const handlers: [string, (...args: any[]) => void][] = [
      ...EVENTS.map((name) => [name, (p: unknown) => receive(name, p)] as [string, (p: unknown) => void]),
      ["connect", () => connection("connected")],
      ["disconnect", () => connection("disconnected")],
      ["connect_error", (err: { message?: unknown }) =>
        connection("refused", typeof err?.message === "string" ? err.message : "refused")],
    ];
    for (const [name, fn] of handlers) socket.on(name, fn);
    if (socket.connected) connection("connected");
    return () => { for (const [name, fn] of handlers) socket.off(name, fn); };
  }

  return {
    getState,
    getMedia: (mediaId) => media.get(mediaId),
    subscribe(listener) {
      listeners.add(listener);
      return () => { listeners.delete(listener); };
    },
    receive,
    attach,
  };
}

function highest(a: Readonly<Record<string, number>>,
                 b: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = { ...a };
  for (const [source, seq] of Object.entries(b)) out[source] = Math.max(out[source] ?? seq, seq);
  return out;
}
