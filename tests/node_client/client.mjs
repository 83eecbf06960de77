// Connect to a relay as the product's browsers do (socket.io-client, auth.token) and
// print one JSON line per socket event; "connected" first, or {"connect_error": reason}.
// Usage: node client.mjs URL TOKEN SECONDS [UNTIL_MEDIA]
// With UNTIL_MEDIA it exits once an event of that media arrived (printed too): a sentinel
// the test publishes after the events it checks, so everything the relay sent before it
// has arrived; SECONDS then only bounds a hung test. Without it, it exits after SECONDS.
import { io } from "socket.io-client";

const [url, token, seconds, untilMedia] = process.argv.slice(2);
const socket = io(url, { auth: { token }, reconnection: false });
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const done = () => {
  socket.close();
  process.exit(0);
};

socket.on("connect", () => print({ connected: true }));
socket.on("connect_error", (err) => {
  print({ connect_error: err.message });
  process.exit(0);
});
socket.onAny((name, payload) => {
  print({ name, payload });
  if (untilMedia !== undefined && payload?.mediaId === untilMedia) done();
});
setTimeout(done, Number(seconds) * 1000);
