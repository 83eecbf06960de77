"""Cluster benchmark: delivered throughput and latency on a 3-master Redis Cluster with 1
and 3 shard channels, against a single Redis server, in one run.

    python benchmarks/cluster_bench.py [--events 20000] [--rounds 3] [--rate 1000]

It starts its own single redis-server and its own cluster (3 masters, 3 replicas;
tests/redis_cluster.py) on free loopback ports, so the shared server is not touched.
Variants, interleaved round by round; medians reported with their range over the rounds:

- ``single``: one server, the one channel (classic PUBLISH);
- ``cluster-1``: the cluster, shards=1 (every event SPUBLISHed on one master);
- ``cluster-3``: the cluster, shards=3 (media spread over three masters).

For each: (1) delivered throughput of one ProgressPublisher emitting --events lifecycle
events (never coalesced) of 150 media as fast as it can; (2) latency emit -> subscriber
at --rate events/s; (3) the subscribers' capacity: they are frozen while --capacity-events
events are published, then drain the backlog Redis kept for them; the publisher's figure
must stay under it for the subscriber not to be the bottleneck. Subscribers run in other
processes, one per channel (on a cluster: on a replica of the channel's master, as
progress-sim subscribes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from progress_sdk import ProgressPublisher
from progress_sdk.sharding import shard_channels

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_cluster import LocalCluster, free_cluster_ports

MEDIA = 150


def event_fields(i: int, t: float = 0.0) -> dict[str, Any]:
    """A lifecycle-shaped event (never coalesced); the emit time travels in the message."""
    return {
        "media_id": f"media-{i % MEDIA}",
        "user_id": "user-17",
        "event": "AUDIO_EXTRACTION_START",
        "message": f"Extracting audio {i} {t:.6f}",
        "data": {"model_name": "SCATTERING-WAVE-V1", "phase": "audio_extraction"},
        "run_id": "run-0007",
    }


def subscriber_main(url: str, channel: str, ready: Any, stop: Any, out: Any) -> None:
    from simulator.listener import subscribe

    subscription = subscribe(url, [channel])
    got = 0
    first = last = 0.0
    latencies: list[float] = []

    def handle(payload: bytes) -> bool:
        nonlocal got, first, last
        now = time.time()
        first = first or now
        last = now
        got += 1
        sent = float(json.loads(payload)["message"].rsplit(" ", 1)[1])
        if sent:
            latencies.append(now - sent)
        return True

    ready.set()
    subscription.pump(handle, idle=stop.is_set)
    subscription.close()
    out.put({"got": got, "first": first, "last": last, "latencies": latencies})


class Subscribers:
    """One subscriber process per channel; ``collect`` once everything was sent."""

    def __init__(self, url: str, channels: list[str]) -> None:
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.out: Any = ctx.Queue()
        self.procs = []
        for channel in channels:
            ready = ctx.Event()
            proc = ctx.Process(target=subscriber_main, args=(url, channel, ready, self.stop,
                                                              self.out))
            proc.start()
            ready.wait(30)
            self.procs.append(proc)

    def collect(self, expected: int, timeout: float = 60.0) -> dict[str, Any]:
        # The subscribers stop when idle after `stop`; wait for the last message first.
        time.sleep(0.5)
        self.stop.set()
        results = [self.out.get(timeout=timeout) for _ in self.procs]
        for proc in self.procs:
            proc.join(10)
        got = sum(r["got"] for r in results)
        return {
            "got": got,
            "expected": expected,
            "first": min(r["first"] for r in results if r["first"]),
            "last": max(r["last"] for r in results),
            "latencies": [x for r in results for x in r["latencies"]],
        }


def channels_of(variant: str, base: str) -> list[str]:
    return shard_channels(base, 3 if variant == "cluster-3" else 1)


def shards_of(variant: str) -> int:
    return 3 if variant == "cluster-3" else 1


def bench_throughput(variant: str, url: str, n: int) -> tuple[float, float]:
    """Events per second delivered to the subscribers, and sent: accepted by Redis (until
    flush() returns; the subscribers' pace does not count)."""
    base = f"bench-{uuid.uuid4().hex[:8]}"
    subs = Subscribers(url, channels_of(variant, base))
    publisher = ProgressPublisher(url, base, shards=shards_of(variant))
    publisher.emit(event_fields(0))  # the first batch finds out what url is
    publisher.flush(10)
    start = time.time()
    for i in range(n):
        publisher.emit(event_fields(i))
    publisher.flush(120)
    sent = n / (time.time() - start)
    publisher.close()
    result = subs.collect(n + 1)
    return (result["got"] - 1) / (result["last"] - start), sent


def bench_latency(variant: str, url: str, rate: float, seconds: float) -> tuple[float, float]:
    base = f"bench-{uuid.uuid4().hex[:8]}"
    subs = Subscribers(url, channels_of(variant, base))
    publisher = ProgressPublisher(url, base, shards=shards_of(variant))
    n = int(rate * seconds)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < next_at:
            time.sleep(max(0.0, min(0.0005, next_at - time.perf_counter())))
        next_at += interval
        publisher.emit(event_fields(i, time.time()))
    publisher.flush(30)
    publisher.close()
    lat = sorted(x * 1000 for x in subs.collect(n)["latencies"])
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]


def bench_capacity(variant: str, url: str, n: int) -> float:
    """The subscribers' own rate: they are frozen (SIGSTOP) while ``n`` events are
    published, so the events wait in Redis's output buffers, then thawed; the rate at
    which they drain that backlog is what they can take."""
    base = f"bench-{uuid.uuid4().hex[:8]}"
    subs = Subscribers(url, channels_of(variant, base))
    for proc in subs.procs:
        os.kill(proc.pid, signal.SIGSTOP)
    publisher = ProgressPublisher(url, base, shards=shards_of(variant))
    for i in range(n):
        publisher.emit(event_fields(i))
    publisher.flush(60)
    publisher.close()
    for proc in subs.procs:
        os.kill(proc.pid, signal.SIGCONT)
    result = subs.collect(n)
    return result["got"] / (result["last"] - result["first"])


def start_single() -> tuple[subprocess.Popen[bytes], str]:
    port = free_cluster_ports(1)[0]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    # Below Redis's pub/sub output buffer limits (8 MB for 60 s) while frozen.
    parser.add_argument("--capacity-events", type=int, default=10000)
    args = parser.parse_args()
    single, single_url = start_single()
    cluster = LocalCluster().start()
    urls = {"single": single_url, "cluster-1": cluster.url, "cluster-3": cluster.url}
    figures: dict[str, dict[str, list[float]]] = {
        v: {"throughput": [], "sent": [], "capacity": [], "p50": [], "p99": []} for v in urls
    }
    try:
        for r in range(args.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for variant in order:
                url = urls[variant]
                f = figures[variant]
                f["capacity"].append(bench_capacity(variant, url, args.capacity_events))
                delivered, sent = bench_throughput(variant, url, args.events)
                f["throughput"].append(delivered)
                f["sent"].append(sent)
                p50, p99 = bench_latency(variant, url, args.rate, args.seconds)
                f["p50"].append(p50)
                f["p99"].append(p99)
                print(f"round {r + 1} {variant:10} throughput {f['throughput'][-1]:9,.0f} ev/s"
                      f"  sent {f['sent'][-1]:9,.0f} ev/s"
                      f"  capacity {f['capacity'][-1]:9,.0f} ev/s  latency p50 {p50:.2f} ms"
                      f"  p99 {p99:.2f} ms", file=sys.stderr)
    finally:
        cluster.stop()
        single.terminate()
        single.wait(5)
    report(figures, args)


def spread(values: list[float], ref: float = 1.0) -> str:
    """The median with the range over the rounds, divided by ``ref``."""
    return (f"{statistics.median(values) / ref:,.2f} "
            f"({min(values) / ref:,.2f}-{max(values) / ref:,.2f})")


def report(figures: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    """Medians with their range over the rounds; "vs single" round by round (each
    variant's round against the single server's same round, which shared its load)."""
    print(f"\nmedians (range) of {args.rounds} interleaved rounds, {args.events:,} events "
          f"(latency at {args.rate:,.0f} ev/s for {args.seconds:.0f} s)")
    single = figures["single"]
    for variant, f in figures.items():
        ratios = [t / s for t, s in zip(f["throughput"], single["throughput"], strict=True)]
        sent = [t / s for t, s in zip(f["sent"], single["sent"], strict=True)]
        print(f"{variant:10} delivered {spread(f['throughput'], 1000)} k ev/s,"
              f" vs single {spread(ratios)}; sent {spread(f['sent'], 1000)} k ev/s,"
              f" vs single {spread(sent)}; subscriber capacity"
              f" {spread(f['capacity'], 1000)} k ev/s; latency p50"
              f" {spread(f['p50'])} ms, p99 {spread(f['p99'])} ms")

if __name__ == "__main__":
    main()
