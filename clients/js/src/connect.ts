/**
 * `connect(url, token)`: a Socket.IO connection as the product's browsers make it (the
 * JWT in the handshake's `auth.token`, never in the URL) with a store attached.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import { createProgressStore, type ProgressStore, type StoreOptions } from "./store.js";
import type { ClientToServerEvents, ServerToClientEvents } from "./types.js";

export type ProgressSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export interface Connection extends ProgressStore {
  readonly socket: ProgressSocket;
  /** Stop listening and close the socket. */
  disconnect(): void;
}

export function connect(
  url: string | undefined, token: string,
  options: { socket?: Partial<ManagerOptions & SocketOptions>; store?: StoreOptions } = {},
): Connection {
  const store = createProgressStore(options.store);
  const socket: ProgressSocket = url === undefined
    ? io({ ...options.socket, auth: { token } })
    : io(url, { ...options.socket, auth: { token } });
  const detach = store.attach(socket);
  return { ...store, socket, disconnect() { detach(); socket.close(); } };
}
