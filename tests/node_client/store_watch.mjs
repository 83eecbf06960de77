// The browser package's store on a real connection: connect(url, token) from
// clients/js/dist (socket.io-client underneath), printing one JSON line when connected and
// one with the whole state once COUNT media have ended (or {"refused": reason}).
// Usage: node store_watch.mjs URL TOKEN COUNT
import { connect } from "../../clients/js/dist/index.js";

const [url, token, count] = process.argv.slice(2);
const progress = connect(url, token, { socket: { reconnection: false } });
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");
let connected = false;

progress.subscribe(() => {
  const state = progress.getState();
  if (state.connection === "refused") {
    print({ refused: state.connectionError });
    process.exit(0);
  }
  if (state.connection === "connected" && !connected) {
    connected = true;
    print({ connected: true });
  }
  const ended = Object.values(state.media).filter((m) => m.status !== "running");
  if (ended.length >= Number(count)) {
    print({ state });
    progress.disconnect();
    process.exit(0);
  }
});
