"""Publisher benchmark: ProgressPublisher against the naive synchronous baseline.

One command, against the local Redis (REDIS_URL or redis://127.0.0.1:6379/0); every
figure is measured for the baseline and the publisher in the same run, and reported as a
ratio. Not part of the test suite: timings on a shared machine are noisy.

    python benchmarks/publisher_bench.py [--events 20000] [--outage-seconds 30]

Baseline (what the product does today): build a pydantic ProgressEvent, model_dump_json,
redis.publish on the caller's thread, per event.

1. emit time on the caller's thread, p50/p99 (paced at 5,000 events/s, as a busy job);
2. sustained throughput delivered to a subscriber in another process;
3. latency emit -> subscriber at 1,000 events/s;
4. Redis unreachable (a TCP proxy that is cut) for --outage-seconds at 2,000 events/s:
   emit p99 before vs during the outage, and memory growth against the buffer size.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from progress_sdk import ProgressEvent, ProgressPublisher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tcp_proxy import TcpProxy

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def event_fields(i: int, t: float = 0.0) -> dict[str, Any]:
    # A lifecycle-shaped event: never coalesced, so every one is delivered.
    # The emit time travels in the message (not in data.details, which would make emit
    # measure the size of free-form JSON, something real progress events do not carry).
    return {
        "media_id": f"media-{i % 50}",
        "user_id": "user-17",
        "event": "AUDIO_EXTRACTION_START",
        "message": f"Extracting audio {i} {t:.6f}",
        "data": {"model_name": "SCATTERING-WAVE-V1", "phase": "audio_extraction"},
        "run_id": "run-0007",
    }


class Baseline:
    """The synchronous publisher the product uses today."""

    def __init__(self, url: str, channel: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.channel = channel
        self.seq = 0

    def emit(self, fields: dict[str, Any]) -> None:
        self.seq += 1
        event = ProgressEvent(
            **fields,
            seq=self.seq,
            source="baseline",
            schema_version=1,
            timestamp="2026-11-26T05:00:00.000000Z",
        )
        self.client.publish(self.channel, event.model_dump_json(exclude_none=True))

    def flush(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        self.client.close()


def subscriber_main(url: str, channel: str, expected: int, ready: Any, out: Any) -> None:
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    ready.set()
    got = 0
    first = last = 0.0
    latencies: list[float] = []
    deadline = time.time() + 600
    while got < expected and time.time() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message is None or message["type"] != "message":
            continue
        now = time.time()
        if got == 0:
            first = now
        last = now
        got += 1
        sent = float(json.loads(message["data"])["message"].rsplit(" ", 1)[1])
        if sent:
            latencies.append(now - sent)
    out.put({"got": got, "first": first, "last": last, "latencies": latencies})


def start_subscriber(channel: str, expected: int) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=subscriber_main, args=(REDIS_URL, channel, expected, ready, out))
    proc.start()
    ready.wait(30)
    time.sleep(0.2)  # the SUBSCRIBE reaches Redis just after ready is set
    return proc, out


def make(kind: str, channel: str, url: str = REDIS_URL, **kw: Any) -> Any:
    if kind == "baseline":
        return Baseline(url, channel)
    return ProgressPublisher(url, channel, **kw)


def bench_emit_time(kind: str, n: int, rate: float) -> dict[str, float]:
    pub = make(kind, f"bench-{uuid.uuid4().hex}")
    times: list[float] = []
    interval = 1.0 / rate
    next_at = time.perf_counter()
    gc.disable()
    for i in range(n):
        fields = event_fields(i)
        t0 = time.perf_counter_ns()
        pub.emit(fields)
        times.append((time.perf_counter_ns() - t0) / 1000)
        next_at += interval
        while time.perf_counter() < next_at:
            pass
    gc.enable()
    pub.flush(10)
    pub.close()
    return {"p50_us": pct(times, 0.5), "p99_us": pct(times, 0.99), "max_us": max(times)}


def bench_throughput(kind: str, n: int) -> dict[str, float]:
    channel = f"bench-{uuid.uuid4().hex}"
    proc, out = start_subscriber(channel, n)
    pub = make(kind, channel)
    start = time.time()
    for i in range(n):
        pub.emit(event_fields(i))
    emitted = time.time()
    pub.flush(60)
    result = out.get(timeout=120)
    proc.join(10)
    pub.close()
    elapsed = result["last"] - start
    return {
        "delivered": result["got"],
        "events_per_s": result["got"] / elapsed if elapsed > 0 else 0.0,
        "caller_busy_s": emitted - start,
    }


def bench_latency(kind: str, rate: float, seconds: float) -> dict[str, float]:
    n = int(rate * seconds)
    channel = f"bench-{uuid.uuid4().hex}"
    proc, out = start_subscriber(channel, n)
    pub = make(kind, channel)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < next_at:
            time.sleep(max(0.0, min(0.0005, next_at - time.perf_counter())))
        next_at += interval
        pub.emit(event_fields(i, time.time()))
    pub.flush(10)
    result = out.get(timeout=120)
    proc.join(10)
    pub.close()
    lat = [x * 1000 for x in result["latencies"]]
    return {"delivered": result["got"], "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}


def outage_main(seconds: float, rate: float, buffer_size: int, out: Any) -> None:
    out.put(bench_outage_here(seconds, rate, buffer_size))


def bench_outage(seconds: float, rate: float, buffer_size: int) -> dict[str, float]:
    """In a fresh process, so its memory growth is its own."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=outage_main, args=(seconds, rate, buffer_size, out))
    proc.start()
    result: dict[str, float] = out.get(timeout=seconds + 300)
    proc.join(10)
    return result


def bench_outage_here(seconds: float, rate: float, buffer_size: int) -> dict[str, float]:
    host, port = "127.0.0.1", 6379
    proxy = TcpProxy((host, port))
    pub = ProgressPublisher(proxy.url, f"bench-{uuid.uuid4().hex}", buffer_size=buffer_size)
    interval = 1.0 / rate

    def run(duration: float, offset: int) -> list[float]:
        times: list[float] = []
        next_at = time.perf_counter()
        end = next_at + duration
        i = offset
        while time.perf_counter() < end:
            while time.perf_counter() < next_at:
                time.sleep(max(0.0, min(0.0005, next_at - time.perf_counter())))
            next_at += interval
            fields = event_fields(i)
            t0 = time.perf_counter_ns()
            pub.emit(fields)
            times.append((time.perf_counter_ns() - t0) / 1000)
            i += 1
        return times

    gc.collect()
    before_times = run(3.0, 0)
    pub.flush(10)
    rss_before = rss_mib()
    proxy.cut()
    during_times = run(seconds, 10**6)
    rss_during = rss_mib()
    stats = pub.stats()
    proxy.restore()
    recovered = pub.flush(60)
    after = pub.stats()
    pub.close(5)
    proxy.close()
    return {
        "emit_p50_before_us": pct(before_times, 0.5),
        "emit_p99_before_us": pct(before_times, 0.99),
        "emit_p50_outage_us": pct(during_times, 0.5),
        "emit_p99_outage_us": pct(during_times, 0.99),
        "emitted_during_outage": len(during_times),
        "queued_at_end_of_outage": stats.queued,
        "dropped_during_outage": stats.dropped_total,
        "rss_growth_mib": rss_during - rss_before,
        "buffer_size": buffer_size,
        "recovered": recovered,
        "published_after_recovery": after.published,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    args = parser.parse_args()
    redis.Redis.from_url(REDIS_URL).ping()
    results: dict[str, Any] = {}

    print(f"1. emit() on the caller's thread, {args.events} events paced at 5,000/s")
    for kind in ("baseline", "publisher"):
        results[f"emit_{kind}"] = r = bench_emit_time(kind, args.events, 5000)
        print(f"   {kind:9} p50 {r['p50_us']:7.2f} us  p99 {r['p99_us']:7.2f} us")
    b, p = results["emit_baseline"], results["emit_publisher"]
    print(
        f"   ratio publisher/baseline: p50 {p['p50_us'] / b['p50_us']:.3f}  "
        f"p99 {p['p99_us'] / b['p99_us']:.3f}   (target <= 0.1)"
    )

    n = args.events * 5
    print(f"2. throughput delivered to a subscriber process, {n} events")
    for kind in ("baseline", "publisher"):
        results[f"throughput_{kind}"] = r = bench_throughput(kind, n)
        print(
            f"   {kind:9} {r['events_per_s']:10,.0f} events/s delivered "
            f"({r['delivered']} of {n}); caller busy {r['caller_busy_s']:.2f} s"
        )
    ratio = (
        results["throughput_publisher"]["events_per_s"]
        / results["throughput_baseline"]["events_per_s"]
    )
    print(f"   ratio publisher/baseline: {ratio:.2f}x   (target >= 5x)")

    print(f"3. latency emit -> subscriber at 1,000 events/s for {args.latency_seconds:.0f} s")
    for kind in ("baseline", "publisher"):
        results[f"latency_{kind}"] = r = bench_latency(kind, 1000, args.latency_seconds)
        print(
            f"   {kind:9} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms "
            f"({r['delivered']} delivered)   (target p50 <= 1 ms, p99 <= 5 ms)"
        )

    print(f"4. Redis unreachable for {args.outage_seconds:.0f} s at 2,000 events/s")
    for buffer_size in (10_000, 100_000):
        results[f"outage_{buffer_size}"] = r = bench_outage(args.outage_seconds, 2000, buffer_size)
        print(
            f"   buffer_size {buffer_size:>7}: emit p99 {r['emit_p99_before_us']:.2f} us before, "
            f"{r['emit_p99_outage_us']:.2f} us during; {r['emitted_during_outage']} emitted, "
            f"{r['queued_at_end_of_outage']} queued, {r['dropped_during_outage']} dropped; "
            f"RSS +{r['rss_growth_mib']:.1f} MiB; recovered={r['recovered']}"
        )

    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "publisher_bench.json").write_text(json.dumps(results, indent=2))
    print(f"raw figures: {out / 'publisher_bench.json'}")


if __name__ == "__main__":
    main()
