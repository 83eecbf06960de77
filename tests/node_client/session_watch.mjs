// connect(url, tokenProvider) from clients/js/dist on a real relay. The provider asks the
// test for each token (prints {"need": n}, reads one line of stdin), so the test signs the
// first one, short-lived, right when it is used. Prints one JSON line per step: caught up,
// the session ended (with the store's sessionEnded), connected again by itself, and the
// media named MEDIA once it shows. Usage: node session_watch.mjs URL MEDIA
import { createInterface } from "node:readline";

import { connect } from "../../clients/js/dist/index.js";

const [url, mediaId] = process.argv.slice(2);
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const waiting = [];
createInterface({ input: process.stdin }).on("line", (line) => waiting.shift()?.(line.trim()));
let asked = 0;
const progress = connect(url, () => new Promise((resolve) => {
  waiting.push(resolve);
  print({ need: asked++ });
}));
const seen = new Set();
const once = (key, value) => { if (!seen.has(key)) { seen.add(key); print(value); } };

progress.subscribe(() => {
  const s = progress.getState();
  if (s.connection === "refused") print({ refused: s.connectionError });
  if (s.caughtUp && !seen.has("ended")) once("caughtUp", { caughtUp: true });
  if (s.connection === "ended") once("ended", { ended: s.sessionEnded });
  if (s.connection === "connected" && seen.has("ended")) once("again", { connectedAgain: true });
  if (s.media[mediaId]) {
    print({ media: s.media[mediaId].filename });
    progress.disconnect();
    process.exit(0);
  }
});
