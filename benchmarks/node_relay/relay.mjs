// A Node.js relay built to the product's design (the API server of docs/contract.md and
// the product's architecture notes): one ioredis subscriber on the progress channel; a
// Socket.IO 4.8 server whose handshake carries the user's JWT in auth.token (HS256,
// jsonwebtoken); one room per user; each event emitted to its user's room as
// progress_update with the six fields the product forwards (mediaId, userId, event,
// message, data, timestamp), plus media_update after PROCESSING_COMPLETED and
// processing_error after PROCESSING_FAILED. No catch-up, no repeat filter: the product's.
//
// Usage: JWT_SECRET=... node relay.mjs [--port 0] [--host 127.0.0.1]
//            [--redis-url redis://127.0.0.1:6379/0] [--channel media-progress-events]
//            [--user-claim userId] [--fault misroute|drop|duplicate] [--fault-every 5]
// Prints one JSON line, {"listening": "http://host:port", "channel": ...}, once it both
// listens and is subscribed; exits on SIGTERM/SIGINT.
//
// --fault makes a deliberately broken variant, for checking that progress-sim e2e catches
// it: every Nth event goes to another user's room (misroute), to nobody (drop) or twice
// (duplicate).
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import Redis from "ioredis";
import jwt from "jsonwebtoken";
import { Server } from "socket.io";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    "redis-url": { type: "string", default: process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0" },
    channel: { type: "string", default: "media-progress-events" },
    "user-claim": { type: "string", default: "userId" },
    fault: { type: "string", default: "" },
    "fault-every": { type: "string", default: "5" },
  },
});
const secret = process.env.JWT_SECRET;
if (!secret) {
  console.error("error: JWT_SECRET is not set");
  process.exit(2);
}
if (!["", "misroute", "drop", "duplicate"].includes(opts.fault)) {
  console.error(`error: unknown --fault ${opts.fault}`);
  process.exit(2);
}
const every = Number(opts["fault-every"]);
const room = (userId) => `user:${userId}`;

const http = createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404, { "content-type": "application/json" });
  res.end(JSON.stringify({ status: "ok", fault: opts.fault || null }));
});
const io = new Server(http, { cors: { origin: "*" } });

io.use((socket, next) => {
  const token = socket.handshake.auth?.token;
  if (typeof token !== "string") return next(new Error("authentication required"));
  try {
    const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
    const userId = claims[opts["user-claim"]];
    if (typeof userId !== "string" && typeof userId !== "number") {
      return next(new Error(`the token carries no '${opts["user-claim"]}' claim`));
    }
    socket.data.userId = String(userId);
    return next();
  } catch (err) {
    return next(new Error(err.name === "TokenExpiredError" ? "the token has expired"
      : "the token's signature does not verify"));
  }
});
io.on("connection", (socket) => socket.join(room(socket.data.userId)));

// Filenames from PROCESSING_STARTED, for media_update and processing_error (the product
// reads them from its database).
const filenames = new Map();
const users = [];
let count = 0;

function targets(userId) {
  count += 1;
  if (!opts.fault || count % every !== 0) return [room(userId)];
  if (opts.fault === "drop") return [];
  if (opts.fault === "duplicate") return [room(userId), room(userId)];
  const other = users.find((u) => u !== userId);  // misroute
  return other === undefined ? [room(userId)] : [room(other)];
}

function relay(message) {
  let e;
  try { e = JSON.parse(message); } catch { return; }
  if (!e || typeof e.user_id !== "string" || typeof e.media_id !== "string") return;
  if (!users.includes(e.user_id)) users.push(e.user_id);
  const update = { mediaId: e.media_id, userId: e.user_id, event: e.event,
                   message: e.message ?? "", data: e.data ?? {}, timestamp: e.timestamp ?? null };
  const to = targets(e.user_id);
  for (const r of to) io.to(r).emit("progress_update", update);
  if (e.event === "PROCESSING_STARTED" && typeof e.data?.filename === "string") {
    filenames.set(e.media_id, e.data.filename);
  }
  const filename = filenames.get(e.media_id) ?? null;
  if (e.event === "PROCESSING_COMPLETED") {
    filenames.delete(e.media_id);
    io.to(room(e.user_id)).emit("media_update", { id: e.media_id, mediaId: e.media_id,
      userId: e.user_id, filename, status: "COMPLETED", runId: e.run_id ?? null });
  } else if (e.event === "PROCESSING_FAILED") {
    filenames.delete(e.media_id);
    io.to(room(e.user_id)).emit("processing_error", { mediaId: e.media_id, filename,
      error: e.data?.error_message ?? e.message ?? "" });
  }
}

const subscriber = new Redis(opts["redis-url"], { lazyConnect: true });
subscriber.on("message", (_channel, message) => relay(message));
subscriber.on("error", (err) => console.error(`redis: ${err.message}`));
await subscriber.connect();
await subscriber.subscribe(opts.channel);
http.listen(Number(opts.port), opts.host, () => {
  const { port } = http.address();
  process.stdout.write(JSON.stringify({ listening: `http://${opts.host}:${port}`,
                                        channel: opts.channel, fault: opts.fault || null }) + "\n");
});

function stop() {
  io.close();
  subscriber.disconnect();
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
