// Connect to a relay as the product's browsers do (socket.io-client, auth.token) and
// print one JSON line per socket event; "connected" first, or {"connect_error": reason}.
// Usage: node client.mjs URL TOKEN SECONDS
import { io } from "socket.io-client";

const [url, token, seconds] = process.argv.slice(2);
const socket = io(url, { auth: { token }, reconnection: false });
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");

socket.on("connect", () => print({ connected: true }));
socket.on("connect_error", (err) => {
  print({ connect_error: err.message });
  process.exit(0);
});
socket.onAny((name, payload) => print({ name, payload }));
setTimeout(() => {
  socket.close();
  process.exit(0);
}, Number(seconds) * 1000);
