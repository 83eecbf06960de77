"""A reload storm against one relay process: what it costs and what it leaves behind.

One user with ``--snapshots`` snapshots (3 models each); ``--sockets`` clients connect at
the same moment and close right after sending the Socket.IO connect, ``--rounds`` times
(issue #17: 3,000 x 200 x 2 grew the relay from 61 MB to 1.36 GB, then 1.47 GB, and left
7, then 44 phantom sockets). After each round it waits until the relay's counters stop
moving for two seconds (the old relay has no "catch-ups running" counter to wait on),
then reports the relay's RSS and peak RSS (``VmHWM``) and the sockets still registered
(``/healthz`` ``sockets``: each one is a phantom, since every client has gone).

``--stay``: the clients instead stay until their catch-up is over (``caught_up``, with
every snapshot the bound lets through), then close: the cost of 200 full catch-ups.

Usage::

    python benchmarks/catchup_storm.py [--snapshots 3000] [--sockets 200] [--rounds 2] [--stay]

It runs its own redis-server on a free port and the relay of the code on PYTHONPATH (so
``PYTHONPATH=/path/to/old/checkout`` measures another version). One JSON line per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from own_redis import OwnRedis
from relay_support import (
    SECRET,
    Client,
    RelayProcess,
    connect_and_close_at_once,
    peak_rss_mb,
    write_snapshots,
)

from simulator.relay import sign_token


def rss_mb(pid: int) -> float:
    """The current resident set size of ``pid`` (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settle(relay: RelayProcess, quiet: float = 2.0, limit: float = 600.0) -> dict[str, Any]:
    """Wait until /healthz's counters did not change for ``quiet`` seconds."""
    last: Any = None
    since = time.monotonic()
    deadline = since + limit
    while time.monotonic() < deadline:
        health = relay.healthz()
        counters = (health["sockets"], health["connects"], health["disconnects"],
                    json.dumps(health.get("catch_up", {}), sort_keys=True))
        if counters != last:
            last, since = counters, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return health
        time.sleep(0.25)
    return relay.healthz()


def connect_and_stay(url: str, token: str, sockets: int) -> int:
    """``sockets`` clients connect at once, each waits for ``caught_up``, then all close;
    the snapshots they got."""

    async def one() -> int:
        client = Client()
        await client.connect(url, {"token": token})
        await client.sio.disconnect()
        return len(client.named("progress_snapshot"))

    async def storm() -> int:
        return sum(await asyncio.gather(*(one() for _ in range(sockets))))

    return asyncio.run(storm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshots", type=int, default=3000)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stay", action="store_true",
                        help="clients stay until caught up instead of closing at once")
    args = parser.parse_args()
    server = OwnRedis().start()
    prefix = f"storm-{uuid.uuid4().hex[:6]}:"
    user = "storm-user"
    relay = None
    try:
        write_snapshots(server.url, prefix, user, args.snapshots)
        relay = RelayProcess.cli(server.url, "storm", "--snapshot-prefix", prefix, "--no-sweep")
        relay.wait_subscribed()
        pid = relay.proc.pid
        token = sign_token(SECRET, user)
        print(json.dumps({"round": 0, "rss_mb": round(rss_mb(pid), 1)}), flush=True)
        for n in range(1, args.rounds + 1):
            started = time.monotonic()
            received = None
            if args.stay:
                received = connect_and_stay(relay.url, token, args.sockets)
            else:
                connect_and_close_at_once(relay.url, token, args.sockets)
            health = settle(relay)
            print(json.dumps({
                "round": n, "settled_s": round(time.monotonic() - started, 1),
                "rss_mb": round(rss_mb(pid), 1), "peak_rss_mb": round(peak_rss_mb(pid), 1),
                "phantom_sockets": health["sockets"], "connects": health["connects"],
                "snapshots_received": received,
                "disconnects": health["disconnects"], "catch_up": health.get("catch_up"),
            }), flush=True)
    finally:
        if relay is not None:
            relay.stop()
        server.kill()


if __name__ == "__main__":
    main()
