/**
 * `connect(url, token)`: a Socket.IO connection as the product's browsers make it (the
 * JWT in the handshake's `auth.token`, never in the URL) with a store attached.
 *
 * `token` may be a function returning the token (or a promise of it): it is asked again
 * at every connect, so a reconnect carries the freshest token, and when the relay ends the
 * session (`session_ended`: the token expired or was revoked) the connection asks it for a
 * fresh one and connects again by itself. With a plain string the state says the session
 * ended (`connection: "ended"`, `sessionEnded`) and `reconnect(token)` resumes.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import { createProgressStore, type ProgressStore, type StoreOptions } from "./store.js";
import type { ClientToServerEvents, ServerToClientEvents } from "./types.js";

export type ProgressSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** A token, or where to get a fresh one (asked at every connect). */
export type TokenSource = string | (() => string | Promise<string>);

export interface Connection extends ProgressStore {
  readonly socket: ProgressSocket;
  /** Connect again after the session ended, with `token` from now on if given. */
  reconnect(token?: TokenSource): void;
  /** Stop listening and close the socket. */
  disconnect(): void;
}

export function connect(
  url: string | undefined, token: TokenSource,
  options: { socket?: Partial<ManagerOptions & SocketOptions>; store?: StoreOptions } = {},
): Connection {
  const store = createProgressStore(options.store);
  let source = token;
  const auth = (cb: (data: object) => void): void => {
    Promise.resolve(typeof source === "function" ? source() : source)
      .then((fresh) => cb({ token: fresh }), () => cb({ token: "" }));
  };
  const socket: ProgressSocket = url === undefined
    ? io({ ...options.socket, auth })
    : io(url, { ...options.socket, auth });
  const detach = store.attach(socket);
  // The relay disconnects an ended session itself, and Socket.IO does not reconnect after
  // a server's disconnect: with a provider there is a fresh token to connect with.
  const onDisconnect = (reason: string): void => {
    if (reason === "io server disconnect" && typeof source === "function" &&
        store.getState().connection === "ended") socket.connect();
  };
  socket.on("disconnect", onDisconnect);
  return {
    ...store,
    socket,
    reconnect(fresh?: TokenSource) {
      if (fresh !== undefined) source = fresh;
      if (!socket.connected) socket.connect();
    },
    disconnect() { socket.off("disconnect", onDisconnect); detach(); socket.close(); },
  };
}
