"""What a socket that stops reading costs the relay, with and without the backlog bound.

    python benchmarks/backlog_bench.py [--rate 1000] [--size 4096] [--seconds 20]
        [--kind lifecycle|progress] [--stalled 1] [--repeats 1]

Layouts, interleaved per repeat:

- ``bounded``: ``progress-sim relay`` on its defaults (--max-backlog-bytes/-events);
- ``unbounded``: limits of 10^12 bytes / 10^9 events, i.e. what the relay did before.

Each trial: one relay process; a healthy user's socket (a minimal Engine.IO client over
``websockets`` that reads everything, at 50 events/s, each carrying its send time); then
a raw WebSocket client of another user that completes the Engine.IO/Socket.IO handshake
and never reads again (``tests/relay_support.StalledSocket``), so the TCP window fills;
then ``--rate`` events/s of ``--size`` bytes for that user for ``--seconds``. ``lifecycle``
events (PROCESSING_STARTED of distinct media) can never be coalesced: the worst case;
``progress`` events of one model are. Reported: relay RSS (VmRSS from /proc) before the
stalled socket, at its peak and at the end, the peak's growth; when the relay
disconnected the stalled socket (and why, from /healthz); the healthy socket's events
received against sent and its latency publish → socket, p50/p99; the relay's CPU per
event. ``--stalled N``: N such sockets one after another, each connected once the relay
dropped the one before (does the memory freed with one serve the next?). Against the
shared Redis at REDIS_URL, on a channel of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from relay_support import SECRET, RelayProcess, StalledSocket  # noqa: E402

from simulator.relay import sign_token  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LAYOUTS = {
    "bounded": [],
    "unbounded": ["--max-backlog-bytes", str(10**12), "--max-backlog-events", str(10**9)],
}
HEALTHY_RATE = 50


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class HealthyReader(threading.Thread):
    """One socket that reads everything, on its own event loop; records latencies."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.latencies: list[float] = []
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import websockets

        ws_url = self.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url, max_queue=None, compression=None) as ws:
            await ws.recv()  # Engine.IO open
            await ws.send("40" + json.dumps({"token": self.token}))
            while not str(await ws.recv()).startswith("40"):
                pass
            self.ready.set()
            while not self.stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                if message == "2":
                    await ws.send("3")
                elif isinstance(message, str) and message.startswith('42["progress_update"'):
                    payload = json.loads(message[2:])[1]
                    self.latencies.append(time.time() - payload["data"]["details"]["sent"])


def _event(user: str, n: int, kind: str, pad: str) -> bytes:
    if kind == "progress":
        obj: dict[str, Any] = {
            "media_id": "m-slow", "event": "FRAME_ANALYSIS_PROGRESS",
            "data": {"model_name": "A", "progress": n % 10**6, "total": 10**6,
                     "details": {"pad": pad}}}
    else:
        obj = {"media_id": f"m-slow-{n}", "event": "PROCESSING_STARTED",
               "data": {"details": {"pad": pad}}}
    obj.update(user_id=user, message="", seq=n + 1, source="bench")
    return json.dumps(obj, separators=(",", ":")).encode()


def _healthy_event(user: str, n: int) -> bytes:
    return json.dumps({
        "media_id": "m-ok", "user_id": user, "event": "FRAME_ANALYSIS_PROGRESS", "message": "",
        "seq": n + 1, "source": "bench-ok",
        "data": {"model_name": "B", "progress": n, "total": 10**6,
                 "details": {"sent": time.time()}}}).encode()


def trial(layout: str, args: argparse.Namespace) -> dict[str, float]:
    """One relay process, one healthy and one stalled socket; returns the figures."""
    channel = f"bench-backlog-{uuid.uuid4().hex}"
    relay = RelayProcess.cli(REDIS_URL, channel, "--no-sweep", *LAYOUTS[layout],
                             secret=SECRET, log_level="warning")
    publisher = redis.Redis.from_url(REDIS_URL)
    ok_user = f"ok-{uuid.uuid4().hex[:6]}"
    reader = HealthyReader(relay.url, sign_token(SECRET, ok_user))
    try:
        relay.wait_subscribed()
        reader.start()
        if not reader.ready.wait(30):
            raise RuntimeError("the healthy socket did not connect")
        time.sleep(1.0)  # let the process settle before the baseline
        baseline = rss_mb(relay.proc.pid)
        figures = _load(relay, publisher, channel, ok_user, args)
        time.sleep(1.0)  # the healthy socket's last events on their way
        reader.stop.set()
        reader.join(10)
        figures["rss_end_mb"] = rss_mb(relay.proc.pid)
    finally:
        reader.stop.set()
        publisher.close()
        relay.stop()
    latencies = sorted(reader.latencies)
    q = lambda p: latencies[min(len(latencies) - 1, round(p * (len(latencies) - 1)))]  # noqa: E731
    figures.update(
        rss_before_mb=baseline, growth_mb=figures["rss_peak_mb"] - baseline,
        healthy_received=len(latencies), healthy_p50_ms=q(0.5) * 1000,
        healthy_p99_ms=q(0.99) * 1000,
    )
    return figures


def _load(relay: RelayProcess, publisher: redis.Redis, channel: str, ok_user: str,
          args: argparse.Namespace) -> dict[str, float]:
    """Connect the stalled sockets one after another (the next once the relay dropped the
    one before) and publish for ``args.seconds``, sampling RSS; the figures so far."""
    stalled: list[StalledSocket] = []
    slow_user = ""
    pad = "x" * max(0, args.size - 200)
    cpu_before = cpu_seconds(relay.proc.pid)
    began = time.monotonic()
    sent = healthy = 0
    peak, disconnected_at = 0.0, -1.0
    next_sample = began
    while (now := time.monotonic()) < began + args.seconds:
        if len(stalled) < args.stalled and (not stalled or _dropped(relay) >= len(stalled)):
            slow_user = f"slow-{uuid.uuid4().hex[:6]}"
            stalled.append(StalledSocket(relay.url, {"token": sign_token(SECRET, slow_user)}))
        pipe = publisher.pipeline(transaction=False)
        due = int((now - began) * args.rate)
        for n in range(sent, due):
            pipe.publish(channel, _event(slow_user, n, args.kind, pad))
        sent = max(sent, due)
        due_ok = int((now - began) * HEALTHY_RATE)
        for n in range(healthy, due_ok):
            pipe.publish(channel, _healthy_event(ok_user, n))
        healthy = max(healthy, due_ok)
        pipe.execute()
        if now >= next_sample:
            next_sample = now + 0.25
            peak = max(peak, rss_mb(relay.proc.pid))
            if disconnected_at < 0 and _dropped(relay):
                disconnected_at = now - began
        time.sleep(0.01)
    elapsed = time.monotonic() - began
    health = relay.healthz()
    for socket in stalled:
        socket.close()
    return {
        "rss_peak_mb": max(peak, rss_mb(relay.proc.pid)),
        "disconnected_after_s": disconnected_at,
        "disconnected_by_bytes": health["backlog"]["disconnected"]["bytes"],
        "disconnected_by_events": health["backlog"]["disconnected"]["events"],
        "stalled_sockets": len(stalled), "slow_events_sent": sent, "healthy_sent": healthy,
        "discarded": health["backlog"]["discarded"],
        "replaced": health["backlog"]["replaced"],
        "relay_us_per_event": (cpu_seconds(relay.proc.pid) - cpu_before) * 1e6
        / max(1, sent + healthy),
        "seconds": elapsed,
    }


def _dropped(relay: RelayProcess) -> int:
    """Sockets the relay disconnected for their backlog so far."""
    return sum(relay.healthz()["backlog"]["disconnected"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="Events/s to the stalled socket.")
    parser.add_argument("--size", type=int, default=4096, help="Bytes per event (about).")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--kind", choices=["lifecycle", "progress"], default="lifecycle")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stalled", type=int, default=1,
                        help="Stalled sockets, one after another (each of its own user).")
    parser.add_argument("--layouts", default="bounded,unbounded")
    args = parser.parse_args()
    for repeat in range(args.repeats):
        for layout in args.layouts.split(","):
            load = os.getloadavg()[0]
            figures = trial(layout, args)
            print(f"[{repeat + 1}/{args.repeats}] {layout} ({args.kind}, {args.rate}/s of "
                  f"{args.size} B, {args.seconds:g} s, load {load:.1f}): " + ", ".join(
                      f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
