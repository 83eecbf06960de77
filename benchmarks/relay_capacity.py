"""The measured costs behind docs/relay.md's capacity model (issue #18, deliver 3).

    python benchmarks/relay_capacity.py sockets [--counts 1000,2000,4000] [--idle-seconds 30]
    python benchmarks/relay_capacity.py events [--rate 4000] [--seconds 4]
    python benchmarks/relay_capacity.py redis [--rate 10000] [--seconds 4]
    python benchmarks/relay_capacity.py redis-busy

Each mode runs its variants interleaved, ``--repeats`` times (default 3; ``sockets`` 2),
prints every run with the load average before it, then the medians.

- ``sockets``: one ``progress-sim relay`` (contract channel, nothing published) with N
  idle sockets (two per user, benchmarks/relay_load.py's bare client in 2 processes):
  the relay's RSS before and with them, its CPU over ``--idle-seconds`` with no event
  (Engine.IO pings each socket every 25 s), and a least-squares fit of both against N.
- ``events``: one relay on the contract channel at ``--rate`` events/s: ``k=1``, ``k=2``,
  ``k=4`` (250 users with k sockets each, every event of one of them) and ``read-only``
  (250 users with 2 sockets here, every event of 250 other users: what a node on the
  contract channel pays for other nodes' users). Relay CPU per event, from ``/proc``,
  from the publisher's start until the relay read every event (``/healthz`` ``received``)
  and every delivery arrived; the fit over k gives CPU per delivery.
- ``redis``: a private redis-server (tests/own_redis.py; never the shared one) and a
  raw-socket subscriber process subscribed, like a relay node, to 250 users' channels
  (``--contract-sub``: and to the contract channel). A ``ProgressPublisher`` emits
  FRAME_ANALYSIS_PROGRESS-heavy whole runs of 500 media of those users at ``--rate``
  (``min_progress_interval=0``: every event published), with user channels and the
  contract channel and snapshots on or off; redis-server's CPU (``INFO cpu``) per
  published event. Also the server memory of 10,000 channel subscriptions.
- ``redis-busy``: redis-server CPU per PUBLISH (~400 bytes, one subscriber) from
  ``redis-benchmark``, 50 clients, one command per write against 100: a busy server,
  where the paced runs of ``redis`` leave it idle between writes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay_bench import Relay
from relay_load import LoadClients, cpu_seconds, publish, warm_up_publisher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from progress_sdk import ProgressPublisher
from progress_sdk.sharding import user_channel
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys
from tests.own_redis import OwnRedis

MARK = b"$7\r\nmessage\r\n"


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line through (xs, ys): (intercept, slope)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def interleave(variants: dict[str, Callable[[], dict[str, float]]], repeats: int
               ) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for n in range(repeats):
        order = list(variants) if n % 2 == 0 else list(reversed(variants))
        for name in order:
            before = load()
            figures = {**variants[name](), "load": before}
            runs[name].append(figures)
            print(f"  {name:>22}: " + "  ".join(f"{k} {v:,.2f}" for k, v in figures.items()),
                  flush=True)
    return runs


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


# -- per socket ---------------------------------------------------------------------------


def idle_sockets(count: int, idle: float) -> dict[str, float]:
    """RSS and idle CPU of one relay with ``count`` connected sockets."""
    relay = Relay(f"bench-cap-{uuid.uuid4().hex}")
    clients = None
    try:
        time.sleep(1.0)  # settle after start
        rss_empty = rss_mb(relay.proc.pid)
        users = [f"cap-{uuid.uuid4().hex[:6]}-{i}" for i in range(count // 2)]
        clients = LoadClients([(relay.url, u) for u in users for _ in (0, 1)], 2)
        while relay.healthz()["sockets"] < count:
            time.sleep(0.2)
        rss_full = rss_mb(relay.proc.pid)
        cpu = cpu_seconds(relay.proc.pid)
        time.sleep(idle)
        idle_cpu = cpu_seconds(relay.proc.pid) - cpu
        fds = len(os.listdir(f"/proc/{relay.proc.pid}/fd"))
        return {"rss_empty_mb": rss_empty, "rss_mb": rss_full, "rss_after_idle_mb":
                rss_mb(relay.proc.pid), "idle_cores": idle_cpu / idle, "fds": fds}
    finally:
        if clients is not None:
            clients.kill()
        relay.stop()


def mode_sockets(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.counts.split(",")]
    runs = interleave({f"{c} sockets": lambda c=c: idle_sockets(c, args.idle_seconds)
                       for c in counts}, args.repeats or 2)
    print("medians:")
    rows = {c: medians(runs[f"{c} sockets"]) for c in counts}
    for c, m in rows.items():
        print(f"  {c:>6} sockets: RSS {m['rss_empty_mb']:.1f} -> {m['rss_mb']:.1f} MB "
              f"(after idle {m['rss_after_idle_mb']:.1f}), idle {m['idle_cores'] * 100:.2f}% "
              f"of a core, {m['fds']:.0f} fds, load {m['load']:.1f}")
    every = [(c, r) for c in counts for r in runs[f"{c} sockets"]]
    base, per = fit([c for c, _ in every], [r["rss_after_idle_mb"] for _, r in every])
    cpu0, cpu_per = fit([c for c, _ in every], [r["idle_cores"] for _, r in every])
    print(f"fit over every run: RSS {base:.1f} MB + {per * 1024:.1f} KB per socket; "
          f"idle CPU {cpu0 * 1e3:.2f} ms/s + {cpu_per * 1e6:.2f} us/s per socket")


# -- per event ----------------------------------------------------------------------------


def event_trial(k: int, rate: int, seconds: float, read_only: bool) -> dict[str, float]:
    """One relay on the contract channel; 250 users with ``k`` sockets each; events of
    those users, or (``read_only``) of 250 users with no socket here."""
    channel = f"bench-cap-{uuid.uuid4().hex}"
    here = [f"cap-{uuid.uuid4().hex[:6]}-{i}" for i in range(250)]
    away = [f"away-{uuid.uuid4().hex[:6]}-{i}" for i in range(250)]
    relay, clients = Relay(channel), None
    try:
        clients = LoadClients([(relay.url, u) for u in here for _ in range(k)], 2)
        clients.warm_up(warm_up_publisher(channel, here, False))
        received = relay.healthz()["received"]
        cpu = cpu_seconds(relay.proc.pid)
        sent = publish(channel, away if read_only else here, rate, seconds, per_user=False,
                       timeout=seconds * 10 + 60)
        deadline = time.monotonic() + 30
        while relay.healthz()["received"] < received + sent["published"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not read every event within 30 s")
            time.sleep(0.05)
        expected = 0 if read_only else int(sent["published"]) * k
        got, drain = clients.drain(expected, 2.0, 30.0) if expected else (0, 0.0)
        relay_cpu = cpu_seconds(relay.proc.pid) - cpu
        health = relay.healthz()
    finally:
        if clients is not None:
            clients.kill()
        relay.stop()
    published = sent["published"]
    return {"in_per_s": published / sent["seconds"], "us_per_event": relay_cpu * 1e6 / published,
            "delivered_ratio": got / max(1, expected), "drain_s": drain,
            "no_local_socket": health["no_local_socket"], "relay_cores": relay_cpu / (
                sent["seconds"] + drain)}


def mode_events(args: argparse.Namespace) -> None:
    variants: dict[str, Callable[[], dict[str, float]]] = {
        f"k={k}": (lambda k=k: event_trial(k, args.rate, args.seconds, False)) for k in (1, 2, 4)}
    variants["read-only"] = lambda: event_trial(2, args.rate, args.seconds, True)
    runs = interleave(variants, args.repeats or 3)
    print("medians:")
    for name, rows in runs.items():
        m = medians(rows)
        print(f"  {name:>10}: {m['us_per_event']:.1f} us per event, in {m['in_per_s']:,.0f}/s, "
              f"delivered {m['delivered_ratio']:.3f}, load {m['load']:.1f}")
    ks = [k for k in (1, 2, 4) for _ in runs[f"k={k}"]]
    us = [r["us_per_event"] for k in (1, 2, 4) for r in runs[f"k={k}"]]
    per_event, per_delivery = fit([float(k) for k in ks], us)
    print(f"fit over every k run: {per_event:.1f} us per event + {per_delivery:.1f} us per "
          f"delivery")


# -- Redis --------------------------------------------------------------------------------


def subscriber_main(port: int, channels: list[str], ready: Any, stop: Any, out: Any) -> None:
    """Subscribes ``channels`` on one raw connection and counts messages until ``stop``."""
    sock = socket.create_connection(("127.0.0.1", port))
    args = [b"SUBSCRIBE", *(c.encode() for c in channels)]
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args))
    confirmed, buf = 0, b""
    while confirmed < len(channels):
        buf += sock.recv(1 << 16)
        confirmed = buf.count(b"$9\r\nsubscribe\r\n")
    ready.set()
    sock.settimeout(0.2)
    got, tail = 0, b""
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        chunk = tail + data
        got += chunk.count(MARK)
        tail = chunk[-(len(MARK) - 1):]
    out.put(got)


MODELS = ("SIGLIP-LSTM-V4", "LIP-FD-V1", "SCATTERING-WAVE-V1")


def run_events(media: str, user: str, progress: int) -> list[dict[str, Any]]:
    """One media's whole run: started, each model queued, started, ``progress`` updates
    and completed, then the media completed (3 + 4 + 3 * ``progress`` events)."""
    def event(name: str, **data: Any) -> dict[str, Any]:
        return {"media_id": media, "user_id": user, "event": name,
                "message": name.replace("_", " ").lower(), "data": data}

    out = [event("PROCESSING_STARTED", filename="clip.mp4")]
    out += [event("ANALYSIS_QUEUED", model_name=m) for m in MODELS]
    for m in MODELS:
        out.append(event("ANALYSIS_STARTED", model_name=m))
        out += [event("FRAME_ANALYSIS_PROGRESS", model_name=m, progress=p + 1, total=progress)
                for p in range(progress)]
        out.append(event("ANALYSIS_COMPLETED", model_name=m, prediction="REAL",
                         confidence=0.9))
    out.append(event("PROCESSING_COMPLETED"))
    return out


def stream(users: list[str], count: int, in_flight: int = 500) -> list[dict[str, Any]]:
    """``count`` events of ``in_flight`` media runs at a time, interleaved, each run
    replaced by the next when it ends: ~86 % progress updates (20 per model)."""
    out: list[dict[str, Any]] = []
    runs = [iter(run_events(f"m-{s}-0", users[s % len(users)], 20)) for s in range(in_flight)]
    generation = [0] * in_flight
    while len(out) < count:
        for s in range(in_flight):
            item = next(runs[s], None)
            if item is None:
                generation[s] += 1
                runs[s] = iter(run_events(f"m-{s}-{generation[s]}", users[s % len(users)], 20))
                item = next(runs[s])
            out.append(item)
    return out[:count]


def server_counters(client: Any) -> tuple[float, int]:
    """redis-server's own CPU seconds (``INFO cpu``, getrusage: microseconds, where
    ``/proc``'s ticks of 10 ms are too coarse for the ~0.1 s a trial takes) and the
    commands it ran."""
    info = client.info()
    return (float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            int(info["total_commands_processed"]))


def redis_trial(server: OwnRedis, events: list[dict[str, Any]], users: list[str], rate: int,
                *, user_channels: bool, contract: bool, snapshots: bool, contract_sub: bool,
                idle: float) -> dict[str, float]:
    """``idle``: the server's CPU seconds per second with no load, taken off ``net_us``."""
    channel = f"cap-{uuid.uuid4().hex[:8]}"
    subscribed = [user_channel(channel, u) for u in users] if user_channels else []
    if contract_sub or not user_channels:
        subscribed.append(channel)
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=subscriber_main, args=(server.port, subscribed, ready, stop, out))
    sub.start()
    ready.wait(30)
    config = SnapshotConfig(SnapshotKeys(f"{channel}:"), liveness_ttl=10) if snapshots else False
    pub = ProgressPublisher(server.url, channel, user_channels=user_channels,
                            contract_channel=contract, min_progress_interval=0,
                            buffer_size=len(events), snapshots=config, source="cap")
    import redis

    counters = redis.Redis(port=server.port)
    counters.ping()  # its connection's own commands go before the first reading
    (cpu, commands), began = server_counters(counters), time.monotonic()
    per_tick = max(1, rate // 100)
    for start in range(0, len(events), per_tick):
        for fields in events[start:start + per_tick]:
            pub.emit(dict(fields, data=dict(fields["data"])))
        delay = began + (start + per_tick) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    pub.flush(60)
    cpu_after, commands_after = server_counters(counters)
    used = cpu_after - cpu
    elapsed = time.monotonic() - began
    published = pub.stats().published
    pub.close()
    time.sleep(0.3)  # the subscriber's last reads
    stop.set()
    got = out.get(timeout=30)
    sub.join(10)
    return {"published": published, "in_per_s": published / elapsed, "received": got,
            "commands_per_event": (commands_after - commands - 1) / max(1, published),
            "us_per_event": used * 1e6 / max(1, published), "server_cores": used / elapsed,
            "net_us": (used - idle * elapsed) * 1e6 / max(1, published)}


REDIS_VARIANTS = {  # name: (user_channels, contract, snapshots)
    "contract": (False, True, False),
    "user": (True, False, False),
    "user+contract": (True, True, False),
    "contract+snapshots": (False, True, True),
    "user+contract+snapshots": (True, True, True),
}


def busy_publish(server: OwnRedis, pipeline: int, clients: int = 50, count: int = 200_000
                 ) -> dict[str, float]:
    """redis-server CPU per ``PUBLISH`` of a ~400-byte event to a channel with one
    subscriber, from ``redis-benchmark`` with ``clients`` connections writing ``pipeline``
    commands at a time as fast as the server answers: a busy server, where one command per
    write does not pay a wake-up per command as a quiet one does."""
    import redis

    channel = f"cap-busy-{uuid.uuid4().hex[:8]}:user:u-1"
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=subscriber_main, args=(server.port, [channel], ready, stop, out))
    sub.start()
    ready.wait(30)
    counters = redis.Redis(port=server.port)
    counters.ping()
    cpu, began = server_counters(counters)[0], time.monotonic()
    subprocess.run(["redis-benchmark", "-p", str(server.port), "-c", str(clients), "-n",
                    str(count), "-P", str(pipeline), "-q", "PUBLISH", channel, "x" * 400],
                   check=True, capture_output=True)
    used, elapsed = server_counters(counters)[0] - cpu, time.monotonic() - began
    time.sleep(0.3)
    stop.set()
    got = out.get(timeout=30)
    sub.join(10)
    return {"per_s": count / elapsed, "received": got, "us_per_publish": used * 1e6 / count}


def subscription_memory(server: OwnRedis, count: int = 10_000) -> float:
    """Bytes of server memory per channel subscription (one connection, ``count``)."""
    import redis

    client = redis.Redis(port=server.port)
    before = int(client.info("memory")["used_memory"])
    sock = socket.create_connection(("127.0.0.1", server.port))
    names = [f"cap-sub-{i}:user:u-{i}".encode() for i in range(count)]
    args = [b"SUBSCRIBE", *names]
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args))
    buf = b""
    while buf.count(b"$9\r\nsubscribe\r\n") < count:
        buf += sock.recv(1 << 20)
    after = int(client.info("memory")["used_memory"])
    sock.close()
    return (after - before) / count


def mode_redis(args: argparse.Namespace) -> None:
    server = OwnRedis().start()
    try:
        import redis

        idle = redis.Redis(port=server.port)
        before = server_counters(idle)[0]
        time.sleep(3)
        idle_cps = (server_counters(idle)[0] - before) / 3
        print(f"idle redis-server: {idle_cps * 1e3:.2f} ms of CPU per second", flush=True)
        users = [f"u-{i}" for i in range(250)]
        events = stream(users, int(args.rate * args.seconds))
        variants = {name: (lambda v=v: redis_trial(
            server, events, users, args.rate, user_channels=v[0], contract=v[1],
            snapshots=v[2], contract_sub=args.contract_sub, idle=idle_cps))
            for name, v in REDIS_VARIANTS.items()}
        runs = interleave(variants, args.repeats or 3)
        print("medians:")
        for name, rows in runs.items():
            m = medians(rows)
            print(f"  {name:>24}: {m['us_per_event']:.2f} us of redis-server CPU per event "
                  f"({m['net_us']:.2f} without its idle CPU), "
                  f"{m['commands_per_event']:.2f} commands per event, in {m['in_per_s']:,.0f}/s, "
                  f"received {m['received']:,.0f} of {m['published']:,.0f}, load {m['load']:.1f}")
        print(f"server memory per channel subscription: {subscription_memory(server):.0f} B")
    finally:
        server.kill()


def mode_busy(args: argparse.Namespace) -> None:
    server = OwnRedis().start()
    try:
        busy = interleave({f"redis-benchmark -P {p}": (lambda p=p: busy_publish(server, p))
                           for p in (1, 100)}, args.repeats or 3)
        print("medians:")
        for name, rows in busy.items():
            m = medians(rows)
            print(f"  {name}: {m['us_per_publish']:.2f} us of redis-server CPU per PUBLISH, "
                  f"{m['per_s']:,.0f}/s, load {m['load']:.1f}")
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["sockets", "events", "redis", "redis-busy"])
    parser.add_argument("--counts", default="1000,2000,4000")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--contract-sub", action="store_true")
    args = parser.parse_args()
    if not args.rate:
        args.rate = 10_000 if args.mode == "redis" else 4000
    modes = {"sockets": mode_sockets, "events": mode_events, "redis": mode_redis,
             "redis-busy": mode_busy}
    modes[args.mode](args)


if __name__ == "__main__":
    main()
