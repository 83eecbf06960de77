"""Relay load benchmark: 500 sockets, 5,000 events/s in, two relay processes against one.

    python benchmarks/relay_bench.py [--rates 5000,1000] [--seconds 6] [--sockets 500]
        [--repeats 3]
    python benchmarks/relay_bench.py --vs-node [--rates 1000,3000,5000,12000]
        [--sockets-list 100,500] [--seconds 6] [--repeats 3] | --vs-node --quick

Layouts, interleaved (A B A B ...) and reported as medians over the repeats:

- ``2 nodes``: two ``progress-sim relay`` processes; each user has two sockets, one on
  each node (the worst case for fan-out: every node serves every user);
- ``1 node``: the product's layout, one process with all the sockets.

Each trial: a publisher process PUBLISHes valid FRAME_ANALYSIS_PROGRESS events at
each of ``--rates`` for ``--seconds`` (pipelined, paced every 10 ms; the send time rides in
``data.details.sent``); two client processes hold the sockets with a minimal Engine.IO
client over ``websockets`` (cheaper than python-socketio's, so they are not the
bottleneck; their CPU is reported) and record each ``progress_update``'s arrival.
Reported: events/s in, deliveries received against expected, latency publish → socket
p50/p99, relay CPU (cores, from /proc), client CPU. ``--loops`` compares uvloop with
asyncio on one node; ``--micro`` the per-event costs of packet encoding and subscription
reads, each against python-socketio's / redis-py's default way. Against the shared Redis
at REDIS_URL, on a channel of its own.

``--vs-node`` (issue #18): ``progress-sim relay`` (one process) against the Node.js
reference relay of benchmarks/node_relay (``npm ci`` there first, done for you when
node_modules is missing), the same load through each, interleaved (python, node, then
node, python on the next repeat), at each of ``--rates`` with each of ``--sockets-list``
(default 1k/3k/5k/12k events/s with 100 and 500 sockets, two per user); medians of the
repeats: relay CPU per event, p50/p99 publish → socket, peak RSS, deliveries received
against expected, and the load's own CPU (client processes and publisher), to show the
load is not the bottleneck. ``--quick``: 1k events/s, 100 sockets, 2 s, one repeat (a
smoke run, not figures). Run it on a quiet machine; the load average is printed with
every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from array import array
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "benchmark-secret-that-is-32-bytes-long!"
HERE = Path(__file__).resolve()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- the client process -------------------------------------------------------------------


async def _socket(url: str, token: str, arrivals: array[float], ready: asyncio.Event,
                  stop: asyncio.Event) -> None:
    import orjson
    import websockets

    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url, max_queue=None, compression=None) as ws:
        await ws.recv()  # Engine.IO open
        await ws.send("40" + json.dumps({"token": token}))
        reply = await ws.recv()
        if not str(reply).startswith("40"):
            raise RuntimeError(f"refused: {reply!r}")
        ready.set()
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            if message == "2":
                await ws.send("3")
            elif isinstance(message, str) and message.startswith('42["progress_update"'):
                now = time.time()
                payload = orjson.loads(message[2:])[1]
                arrivals.append(now - payload["data"]["details"]["sent"])


async def _client_main(urls: list[str], users: list[str]) -> None:
    sys.path.insert(0, str(HERE.parent.parent))
    from simulator.relay.auth import sign_token

    arrivals: array[float] = array("d")
    stop = asyncio.Event()
    readies = []
    tasks = []
    for user in users:
        token = sign_token(SECRET, user)
        for url in urls:
            ready = asyncio.Event()
            readies.append(ready)
            tasks.append(asyncio.create_task(_socket(url, token, arrivals, ready, stop)))
            await asyncio.sleep(0.002)  # no thundering herd of handshakes
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    began = cpu_seconds(os.getpid())
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent says when
    cpu = cpu_seconds(os.getpid()) - began
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"latencies": list(arrivals), "cpu": cpu}), flush=True)


# -- the publisher process ----------------------------------------------------------------


def _publish_main(channel: str, users: list[str], rate: int, seconds: float) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    sent, began = 0, time.monotonic()
    total = int(rate * seconds)
    n_users = len(users)
    while sent < total:
        pipe = client.pipeline(transaction=False)
        now = time.time()
        stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for _ in range(min(per_tick, total - sent)):
            user = users[sent % n_users]
            sent += 1
            pipe.publish(channel, json.dumps({
                "media_id": f"m-{user}", "user_id": user, "event": "FRAME_ANALYSIS_PROGRESS",
                "message": f"Analyzed {sent % 300 + 1}/300 frames",
                "data": {"model_name": "SIGLIP-LSTM-V4", "progress": sent % 300 + 1,
                         "total": 300, "details": {"sent": now}},
                "schema_version": 1, "seq": sent, "source": "bench", "timestamp": stamp,
            }, separators=(",", ":")))
        pipe.execute()
        due = began + sent / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - began
    print(json.dumps({"published": sent, "seconds": elapsed, "cpu": time.process_time()}),
          flush=True)


# -- the parent ---------------------------------------------------------------------------


class Relay:
    """One ``progress-sim relay`` process on a free port."""

    def __init__(self, channel: str, event_loop: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from simulator.cli import main; main()",
             "--redis-url", REDIS_URL, "--channel", channel, "relay", "--port", "0",
             "--log-level", "warning", "--event-loop", event_loop],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "JWT_SECRET": SECRET},
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on " in line:
                self.url = line.split("listening on ")[1].split()[0]
                break
        while not self.healthz()["redis_connected"]:
            time.sleep(0.05)

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            body: dict[str, Any] = json.load(response)
            return body

    def delivered(self) -> int | None:
        """Deliveries queued so far, by the relay's own count."""
        return int(self.healthz()["delivered"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


NODE_RELAY = HERE.parent / "node_relay"


class NodeRelay:
    """benchmarks/node_relay/relay.mjs on a free port, listening and subscribed."""

    def __init__(self, channel: str, event_loop: str = "auto") -> None:
        if not (NODE_RELAY / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_RELAY, check=True)
        self.proc = subprocess.Popen(
            ["node", str(NODE_RELAY / "relay.mjs"), "--port", "0", "--redis-url", REDIS_URL,
             "--channel", channel],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "JWT_SECRET": SECRET},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the Node relay did not start (see its stderr)")
        self.url = json.loads(line)["listening"]

    def delivered(self) -> int | None:
        """Not counted by the Node relay: the trial waits for its CPU to go quiet."""
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _settle(relays: list[Any], expected: int) -> None:
    """Wait until the relays queued every delivery (their own count) or, for a relay that
    does not count, until its CPU goes quiet (under 2% of a core over half a second);
    30 s at most, then a second for the last packets on their way to the clients."""
    deadline = time.monotonic() + 30
    if all(r.delivered() is not None for r in relays):
        while sum(r.delivered() for r in relays) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        last = sum(cpu_seconds(r.proc.pid) for r in relays)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = sum(cpu_seconds(r.proc.pid) for r in relays)
            if now - last < 0.01:
                break
            last = now
    time.sleep(1.0)


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def trial(nodes: int, rate: int, seconds: float, sockets: int, *,
          event_loop: str = "auto", relay_class: Any = Relay) -> dict[str, float]:
    """One run of one layout; returns its figures."""
    channel = f"bench-relay-{uuid.uuid4().hex}"
    users = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(sockets // 2)]
    relays = [relay_class(channel, event_loop) for _ in range(nodes)]
    urls = [r.url for r in relays]
    # Two sockets per user: one on each node, or both on the single node.
    socket_urls = urls if nodes == 2 else urls * 2
    halves = [users[: len(users) // 2], users[len(users) // 2:]]
    clients = [_spawn("client", ",".join(socket_urls), ",".join(h)) for h in halves]
    try:
        for client in clients:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process did not get its sockets up")
        before = [cpu_seconds(r.proc.pid) for r in relays]
        publisher = _spawn("publish", channel, ",".join(users), str(rate), str(seconds))
        out, _ = publisher.communicate(timeout=seconds * 10 + 60)
        sent = json.loads(out)
        expected = sent["published"] * 2
        _settle(relays, expected)
        relay_cpu = sum(cpu_seconds(r.proc.pid) - b for r, b in zip(relays, before, strict=True))
        rss = sum(peak_rss_mb(r.proc.pid) for r in relays)
        wall = sent["seconds"] + 1.0
        results = []
        for client in clients:
            out, _ = client.communicate("stop\n", timeout=60)
            results.append(json.loads(out))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        for relay in relays:
            relay.stop()
    latencies = sorted(x for r in results for x in r["latencies"]) or [float("nan")]
    q = lambda p: latencies[min(len(latencies) - 1, round(p * (len(latencies) - 1)))]  # noqa: E731
    return {
        "rate_in": sent["published"] / sent["seconds"],
        "received": sum(len(r["latencies"]) for r in results),
        "expected": expected,
        "p50_ms": q(0.5) * 1000,
        "p99_ms": q(0.99) * 1000,
        "relay_cores": relay_cpu / wall,
        "relay_us_per_event_cpu": relay_cpu * 1e6 / max(1, sent["published"]),
        "relay_rss_mb": rss,
        "client_cores": sum(r["cpu"] for r in results) / wall,
        "publisher_cores": sent["cpu"] / sent["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=None,
                        help="Comma-separated events/s to run each layout at (default "
                             "5000,1000; with --vs-node 1000,3000,5000,12000).")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", action="store_true",
                        help="Instead: one node at the first rate, uvloop against asyncio.")
    parser.add_argument("--micro", action="store_true",
                        help="Instead: packet encoding and subscription reads per event.")
    parser.add_argument("--vs-node", action="store_true",
                        help="Instead: one progress-sim relay against the Node.js reference "
                             "relay, interleaved (defaults: --rates 1000,3000,5000,12000, "
                             "--sockets-list 100,500).")
    parser.add_argument("--sockets-list", default=None,
                        help="With --vs-node: comma-separated socket counts (default 100,500).")
    parser.add_argument("--quick", action="store_true",
                        help="With --vs-node: a smoke run (1000/s, 100 sockets, 2 s, 1 repeat).")
    args = parser.parse_args()
    if args.micro:
        micro(args.repeats)
        return
    if args.vs_node:
        compare_node(args)
        return
    args.rates = args.rates or "5000,1000"
    if args.loops:
        compare_loops(args)
        return
    layouts = {"2 nodes": 2, "1 node": 1}
    rates = [int(r) for r in args.rates.split(",")]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    loads = []
    for repeat in range(args.repeats):
        for rate in rates:
            for name, nodes in layouts.items():
                loads.append(os.getloadavg()[0])
                figures = trial(nodes, rate, args.seconds, args.sockets)
                figures["relay_us_per_event"] = (
                    figures["relay_cores"] * 1e6 / figures["rate_in"]
                )
                runs.setdefault((name, rate), []).append(figures)
                print(f"[{repeat + 1}/{args.repeats}] {name} @ {rate}/s: " + ", ".join(
                    f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)
    print(f"\n{args.sockets} sockets ({args.sockets // 2} users x 2), {args.seconds:g} s per "
          f"run; medians of {args.repeats} interleaved runs; load average before the runs "
          f"{statistics.median(loads):.1f} (median) on {os.cpu_count()} cores, shared")
    print(f"{'layout':<8} {'in/s':>7} {'received/expected':>19} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'relay cores':>12} {'relay us/event':>15} {'client cores':>13}")
    for (name, _), figures in runs.items():
        med = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        print(f"{name:<8} {med['rate_in']:>7,.0f} "
              f"{med['received']:>9,.0f}/{med['expected']:<9,.0f} {med['p50_ms']:>8.1f} "
              f"{med['p99_ms']:>8.1f} {med['relay_cores']:>12.2f} "
              f"{med['relay_us_per_event']:>15.0f} {med['client_cores']:>13.2f}")


_PAYLOAD = {
    "mediaId": "9b2f0c1e-3c41-4f0e-9d7a-0c1f2e3d4a5b", "userId": "u-17",
    "event": "FRAME_ANALYSIS_PROGRESS", "message": "Analyzed 150/300 frames",
    "data": {"model_name": "SIGLIP-LSTM-V4", "progress": 150, "total": 300,
             "phase": "frame_analysis", "details": {"fps": 29.97, "window": [120, 150]}},
    "timestamp": "2026-11-26T05:00:00.123456Z", "seq": 42, "source": "worker-3:4711:a8f2",
    "runId": "run-0007",
}


def _encode_us(packet_class: Any, repeats: int = 20000) -> float:
    began = time.process_time()
    for _ in range(repeats):
        packet_class(2, namespace="/", data=["progress_update", _PAYLOAD]).encode()
    return (time.process_time() - began) / repeats * 1e6


async def _read_us(blocking: bool, hiredis: bool, messages: int = 20000) -> float:
    import redis
    import redis.asyncio as aioredis
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

    channel = f"bench-read-{uuid.uuid4().hex}"
    parser = _AsyncHiredisParser if hiredis else _AsyncRESP2Parser
    client = aioredis.Redis.from_url(REDIS_URL, parser_class=parser)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
        pass
    publisher = redis.Redis.from_url(REDIS_URL)
    pipe = publisher.pipeline(transaction=False)
    for _ in range(messages):
        pipe.publish(channel, json.dumps(_PAYLOAD))
    pipe.execute()
    publisher.close()
    began, got = time.process_time(), 0
    while got < messages:
        message = await pubsub.get_message(timeout=None if blocking else 1.0)
        if message is not None and message["type"] == "message":
            got += 1
    spent = time.process_time() - began
    await pubsub.aclose()
    await client.aclose()
    return spent / messages * 1e6


async def _queue_us(queue: Any, repeats: int = 50000) -> float:
    """One packet into a socket's queue and out again, as an emit and the writer do."""
    import engineio.packet

    from simulator.relay.engine_internals import JsonPacket

    frame = JsonPacket(2, namespace="/", data=["progress_update", _PAYLOAD]).encode()
    packet = engineio.packet.Packet(engineio.packet.MESSAGE, frame)
    began = time.process_time()
    for _ in range(repeats):  # as python-engineio's poll: get, then get_nowait until empty
        queue.put_nowait(packet)
        await queue.get()
        queue.task_done()
        try:  # noqa: SIM105 - as poll does it; contextlib.suppress would be timed too
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    return (time.process_time() - began) / repeats * 1e6


async def _emit_path_us(bounded: bool, users: int = 250, events: int = 20000) -> float:
    """python-socketio's room emit to 500 sockets (two per user) and python-engineio's
    ``poll`` taking each packet, in one process, no network: per event, on the socket
    queue python-engineio makes or on the relay's."""
    import engineio.async_socket
    import socketio

    from simulator.relay.backlog import BacklogLimits, BacklogStats
    from simulator.relay.engine_internals import JsonPacket, install_backlogs

    sio = socketio.AsyncServer(async_mode="asgi", serializer=JsonPacket)
    if bounded:
        install_backlogs(sio, BacklogLimits(), BacklogStats())
    taken = [0]

    async def writer(socket: Any) -> None:
        while packets := await socket.poll():
            for packet in packets:
                packet.encode()
            taken[0] += len(packets)

    writers = []
    for n in range(users * 2):
        socket = engineio.async_socket.AsyncSocket(sio.eio, f"e{n}")
        sio.eio.sockets[f"e{n}"] = socket
        await sio.enter_room(await sio.manager.connect(f"e{n}", "/"), f"user:{n // 2}")
        writers.append(asyncio.create_task(writer(socket)))
    began = time.process_time()
    for i in range(events):
        payload = dict(_PAYLOAD, seq=i, mediaId=f"m{i % users}")
        await sio.emit("progress_update", payload, room=f"user:{i % users}")
    while taken[0] < 2 * events:
        await asyncio.sleep(0)
    spent = time.process_time() - began
    for socket in sio.eio.sockets.values():
        socket.queue.put_nowait(None)
    await asyncio.gather(*writers)
    return spent / events * 1e6


def _on_relay_loop(coroutine: Any) -> float:
    """Run on uvloop when installed, as the relay does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - depends on the environment
        return float(asyncio.run(coroutine))
    return float(uvloop.run(coroutine))


def micro(repeats: int) -> None:
    """The per-event costs the relay chose its way around, each against the default, and
    what the bounded backlog adds per delivery and per event."""
    import socketio.packet

    sys.path.insert(0, str(HERE.parent.parent))
    from simulator.relay.backlog import BacklogLimits, BacklogStats
    from simulator.relay.engine_internals import BacklogQueue, JsonPacket

    figures: dict[str, list[float]] = {}
    for _ in range(repeats):
        figures.setdefault("encode default Packet", []).append(_encode_us(socketio.packet.Packet))
        figures.setdefault("encode JsonPacket", []).append(_encode_us(JsonPacket))
        plain = asyncio.run(_queue_us(asyncio.Queue()))
        figures.setdefault("socket queue: asyncio.Queue", []).append(plain)
        bounded = BacklogQueue(BacklogLimits(), BacklogStats(), lambda queue, limit: None)
        figures.setdefault("socket queue: BacklogQueue", []).append(
            asyncio.run(_queue_us(bounded)))
        for bounded in (False, True):
            name = f"emit path, 500 sockets: {'BacklogQueue' if bounded else 'asyncio.Queue'}"
            figures.setdefault(name, []).append(_on_relay_loop(_emit_path_us(bounded)))
        for blocking in (False, True):
            for hiredis in (False, True):
                name = (f"read {'blocking' if blocking else 'timeout=1'}, "
                        f"{'hiredis' if hiredis else 'Python parser'}")
                figures.setdefault(name, []).append(asyncio.run(_read_us(blocking, hiredis)))
    print(f"CPU per event, medians of {repeats} interleaved runs (process time, shared machine)")
    for name, values in figures.items():
        print(f"  {name:<36} {statistics.median(values):6.1f} us")


RELAYS = {"python": Relay, "node": NodeRelay}
_COLUMNS = ("rate_in", "received", "expected", "p50_ms", "p99_ms", "relay_us_per_event_cpu",
            "relay_rss_mb", "client_cores", "publisher_cores", "load")


def compare_node(args: argparse.Namespace) -> None:
    """progress-sim relay against the Node.js reference relay, the same load through each,
    interleaved; medians per (sockets, rate, relay) and the CPU ratio."""
    rates = [int(r) for r in (args.rates or "1000,3000,5000,12000").split(",")]
    sockets_list = [int(n) for n in (args.sockets_list or "100,500").split(",")]
    seconds, repeats = args.seconds, args.repeats
    if args.quick:
        rates, sockets_list, seconds, repeats = [1000], [100], 2.0, 1
    runs: dict[tuple[int, int, str], list[dict[str, float]]] = {}
    for repeat in range(repeats):
        order = list(RELAYS) if repeat % 2 == 0 else list(reversed(RELAYS))
        for sockets in sockets_list:
            for rate in rates:
                for name in order:
                    load = os.getloadavg()[0]
                    figures = trial(1, rate, seconds, sockets, relay_class=RELAYS[name])
                    figures["load"] = load
                    runs.setdefault((sockets, rate, name), []).append(figures)
                    print(f"[{repeat + 1}/{repeats}] {name} {sockets} sockets @ {rate}/s: "
                          + ", ".join(f"{k} {figures[k]:,.2f}" for k in _COLUMNS), flush=True)
    print(f"\nprogress-sim relay (1 process) against the Node.js relay, {seconds:g} s per run, "
          f"two sockets per user; medians of {repeats} interleaved runs on {os.cpu_count()} "
          "cores. The load column is the 1-minute load average before each run: figures "
          "measured at a load above the core count are not results.")
    print(f"{'sockets':>7} {'rate':>6} {'relay':<7} {'in/s':>7} {'received/expected':>19} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'us/event':>9} {'RSS MB':>7} {'clients':>8} "
          f"{'pub':>5} {'load':>5} {'ratio':>6}")
    for sockets in sockets_list:
        for rate in rates:
            medians = {name: {k: statistics.median(f[k] for f in runs[(sockets, rate, name)])
                              for k in _COLUMNS} for name in RELAYS}
            for name, m in medians.items():
                ratio = m["relay_us_per_event_cpu"] / medians["node"]["relay_us_per_event_cpu"]
                print(f"{sockets:>7} {rate:>6} {name:<7} {m['rate_in']:>7,.0f} "
                      f"{m['received']:>9,.0f}/{m['expected']:<9,.0f} {m['p50_ms']:>8.1f} "
                      f"{m['p99_ms']:>8.1f} {m['relay_us_per_event_cpu']:>9.0f} "
                      f"{m['relay_rss_mb']:>7.0f} {m['client_cores']:>8.2f} "
                      f"{m['publisher_cores']:>5.2f} {m['load']:>5.1f} {ratio:>5.2f}x")


def compare_loops(args: argparse.Namespace) -> None:
    """One relay node, the event loop as the only difference, interleaved."""
    rate = int(args.rates.split(",")[0])
    runs: dict[str, list[dict[str, float]]] = {"asyncio": [], "uvloop": []}
    for repeat in range(args.repeats):
        for loop, results in runs.items():
            figures = trial(1, rate, args.seconds, args.sockets, event_loop=loop)
            figures["relay_us_per_event"] = figures["relay_cores"] * 1e6 / figures["rate_in"]
            results.append(figures)
            print(f"[{repeat + 1}/{args.repeats}] {loop}: " + ", ".join(
                f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)
    for loop, figures in runs.items():
        med = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        print(f"{loop:<8} relay {med['relay_us_per_event']:.0f} us/event, "
              f"p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        asyncio.run(_client_main(sys.argv[2].split(","), sys.argv[3].split(",")))
    elif len(sys.argv) > 1 and sys.argv[1] == "publish":
        _publish_main(sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
