"""Soak: jobs report for N minutes while their Redis is killed, frozen and cut at random.

    python benchmarks/soak.py [--minutes 5] [--workers 4] [--seed 1] [--sample 15]
                              [--tracemalloc]

Not part of the test suite. Starts its own redis-server on a free loopback port; the
jobs' publisher reaches it through a TCP proxy (tests/tcp_proxy.py), a subscriber
directly. At random intervals one of:

- kill: redis-server killed and the proxy cut; restarted after 1-5 s, and the proxy
  restored once the subscriber has subscribed again (so what the publisher sends after
  the restart has a listener: the subscriber's own reconnect is not what is measured);
- freeze: redis-server stopped with SIGSTOP for 1-8 s, then SIGCONT;
- cut: the proxy resets every connection and refuses new ones for 0.5-3 s.

Reports:

- lifecycle events lost: every lifecycle event a run emitted must arrive (the job process
  counts what it emitted, the subscriber what arrived once), and the runs still open at
  the end with what they miss;
- duplicates, by kind: *repeats* (the same bytes under the same (source, media_id, seq):
  a batch resent after a cut, which consumers drop) and *real* ones (other bytes under a
  seq already seen, or a lifecycle event arriving again under a new seq);
- job time lost to stalls: what the runs' ends (``run.finish()``) waited, total, p50, p99
  and worst;
- memory: the job process's RSS (jobs and publisher run in a process of their own) and
  its count of Python-allocated blocks every ``--sample`` seconds, with the publisher's
  ``stats()`` and the load average, and a least-squares slope (MiB/min) over the run's
  second half. ``--tracemalloc`` adds the job process's top allocation growth between the
  half and the end (slows the jobs; for finding a leak, not for the other figures).

The harness keeps nothing per run on the job side (counters and a log-bucketed
histogram) and, on the subscriber side, a run's seqs only until its terminal event and
all its lifecycle events have arrived, then in a bounded list of recently finished runs
(to recognise late repeats), so the memory measured is the publisher's.
Expected: 0 lost, 0 real duplicates, any repeats, job time near 0, slope near 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import queue
import random
import sys
import threading
import time
import tracemalloc
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from own_redis import OwnRedis
from tcp_proxy import TcpProxy

from progress_sdk import ProgressPublisher
from progress_sdk import defaults as d

CHANNEL = "soak"
MODELS = ("SIGLIP-LSTM-V4", "LIP-FD-V1")
LIFECYCLE_PER_RUN = 2 + 2 * len(MODELS)  # started, each model's start and end, completed
TERMINALS = ("PROCESSING_COMPLETED", "PROCESSING_FAILED")
RECENT_FINISHED = 5_000  # finished runs the subscriber still recognises (minutes of runs)
BUCKET = 1.05  # the end-wait histogram's bucket ratio: percentiles within 5 %


# -- the job process -----------------------------------------------------------------


class WaitHistogram:
    """Run-end waits in log buckets: bounded however many runs, exact total and worst."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.worst = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[int(math.log(max(seconds, 1e-6) / 1e-6, BUCKET))] += 1
        self.count += 1
        self.total += seconds
        self.worst = max(self.worst, seconds)

    def merge(self, other: WaitHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total
        self.worst = max(self.worst, other.worst)

    def over(self, seconds: float) -> tuple[int, float]:
        """How many waits took longer than ``seconds`` (to a bucket) and about how long in
        all (each counted at its bucket's upper bound)."""
        first = int(math.log(seconds / 1e-6, BUCKET)) + 1
        count = sum(n for b, n in self.buckets.items() if b >= first)
        return count, sum(
            n * 1e-6 * BUCKET ** (b + 1) for b, n in self.buckets.items() if b >= first
        )

    def percentile(self, p: float) -> float:
        """The upper bound of the bucket holding the p-th percentile, in seconds."""
        rank, seen = p * self.count, 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return min(1e-6 * BUCKET ** (bucket + 1), self.worst)
        return self.worst


@dataclass
class JobTally:
    """One worker thread's counters (merged at the end: no lock on the hot path)."""

    runs: int = 0
    lifecycle: int = 0
    waits: WaitHistogram = field(default_factory=WaitHistogram)


def job(publisher: ProgressPublisher, worker: int, stop: threading.Event, tally: JobTally) -> None:
    """Media runs back to back; counts what each emitted and how long its end took."""
    rng = random.Random(worker)
    while not stop.is_set():
        run = publisher.media(f"w{worker}-m{tally.runs + 1}", f"user-{worker}")
        run.start()
        for name in MODELS:
            model = run.model(name).start()
            steps = rng.randint(5, 40)
            for i in range(1, steps + 1):
                time.sleep(0.002)
                model.progress(i, steps)
            model.complete(prediction="REAL", confidence=0.9)
        started = time.perf_counter()
        run.finish()
        tally.waits.add(time.perf_counter() - started)
        tally.runs += 1
        tally.lifecycle += LIFECYCLE_PER_RUN


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sample(publisher: ProgressPublisher, started: float, tallies: list[JobTally]) -> dict[str, Any]:
    stats = publisher.stats()
    return {
        "t": time.monotonic() - started,
        "rss": rss_mib(),
        "blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
        "runs": sum(t.runs for t in tallies),
        "queued": stats.queued,
        "accepted": stats.accepted,
        "published": stats.published,
        "dropped": stats.dropped_total,
        "reconnects": stats.reconnects,
        "load": os.getloadavg()[0],
    }


@dataclass(frozen=True)
class JobSettings:
    url: str
    workers: int
    seconds: float
    every: float  # seconds between samples
    trace: bool  # tracemalloc on
    remember: int | None = None  # the publisher's per-media bound, if not the default


def jobs_main(settings: JobSettings, out: Any) -> None:
    """The job process: its memory is the publisher's and the jobs' alone. Sends a sample
    every ``settings.every`` seconds and a final report through ``out``."""
    url, workers, seconds = settings.url, settings.workers, settings.seconds
    every, trace = settings.every, settings.trace
    if trace:
        tracemalloc.start(8)
    if settings.remember is not None:
        # Every run is a new media: the per-media tables (seq counters: ~125 B a media)
        # grow until this bound, 100,000 by default, then stay. A smaller one reaches it
        # within the run, so what grows after that is something else.
        d.MAX_REMEMBERED_MEDIA = settings.remember
    publisher = ProgressPublisher(url, CHANNEL)
    stop = threading.Event()
    tallies = [JobTally() for _ in range(workers)]
    threads = [
        threading.Thread(target=job, args=(publisher, w, stop, tallies[w]), daemon=True)
        for w in range(workers)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    half = None
    while (left := started + seconds - time.monotonic()) > 0:
        time.sleep(min(every, left))
        out.put(("sample", sample(publisher, started, tallies)))
        if trace and half is None and time.monotonic() - started >= seconds / 2:
            gc.collect()  # live objects only: cyclic garbage waits for a full collection
            half = tracemalloc.take_snapshot()
    stop.set()
    for thread in threads:
        thread.join(30)
    flushed = publisher.flush(60)
    stats = publisher.stats()
    publisher.close(5)
    waits = WaitHistogram()
    for tally in tallies:
        waits.merge(tally.waits)
    growth = []
    if half is not None:
        gc.collect()
        diff = tracemalloc.take_snapshot().compare_to(half, "lineno")
        growth = [str(d) for d in diff[:12]]
    out.put(("final", {
        "runs": sum(t.runs for t in tallies),
        "lifecycle": sum(t.lifecycle for t in tallies),
        "waits": {"count": waits.count, "total": waits.total, "worst": waits.worst,
                  "p50": waits.percentile(0.5), "p99": waits.percentile(0.99),
                  "over_10ms": waits.over(0.01), "over_100ms": waits.over(0.1)},
        "flushed": flushed,
        "stats": repr(stats),
        "growth": growth,
    }))  # fmt: skip


# -- the subscriber ------------------------------------------------------------------


@dataclass
class RunSeen:
    """What arrived of one run: each seq's bytes (as a hash) and its lifecycle events."""

    seqs: dict[int, int] = field(default_factory=dict)
    lifecycle: dict[tuple[str, str | None], int] = field(default_factory=dict)
    terminal: bool = False


class Tally:
    """Loss and duplicates, on the fly: a run leaves ``open`` once complete and stays in a
    bounded list of recently finished runs, so late repeats are still recognised."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], RunSeen] = {}
        self.finished: OrderedDict[tuple[str, str], RunSeen] = OrderedDict()
        self.messages = 0
        self.lifecycle = 0  # distinct lifecycle events received
        self.complete = 0  # runs with their terminal and every lifecycle event
        self.repeats: Counter[str] = Counter()  # same bytes under a seen (source, media_id,
        # seq), which consumers drop; by the chaos action last begun when it arrived
        self.chaos = "none"
        self.other_bytes = 0  # a seq seen before with other bytes: a real duplicate
        self.lifecycle_again = 0  # a lifecycle event again under a new seq: real too
        self.forgotten = 0  # finished runs pushed out of the recent list

    def add(self, raw: bytes) -> None:
        self.messages += 1
        event = json.loads(raw)
        key = (event["source"], event["media_id"])
        run = self.open.get(key) or self.finished.get(key)
        if run is None:
            run = self.open[key] = RunSeen()
        seq, digest = event["seq"], hash(raw)
        if seq in run.seqs:
            if run.seqs[seq] == digest:
                self.repeats[self.chaos] += 1
            else:
                self.other_bytes += 1
            return
        run.seqs[seq] = digest
        name = event["event"]
        if "PROGRESS" in name:
            return
        what = (name, (event.get("data") or {}).get("model_name"))
        if what in run.lifecycle:
            self.lifecycle_again += 1
            return
        run.lifecycle[what] = seq
        self.lifecycle += 1
        run.terminal = run.terminal or name in TERMINALS
        if run.terminal and len(run.lifecycle) == LIFECYCLE_PER_RUN and key in self.open:
            self.finish(key)

    def finish(self, key: tuple[str, str]) -> None:
        self.complete += 1
        self.finished[key] = self.open.pop(key)
        if len(self.finished) > RECENT_FINISHED:
            self.finished.popitem(last=False)
            self.forgotten += 1


class Subscriber(threading.Thread):
    """Tallies every message; subscribes again whenever its connection breaks."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.tally = Tally()
        self.subscribed = threading.Event()
        self.subscriptions = 0  # how many times it has subscribed
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                pubsub.get_message(timeout=1.0)  # the confirmation: subscribed for real
                self.subscriptions += 1
                self.subscribed.set()
                while not self.stop.is_set():
                    message = pubsub.get_message(timeout=0.1)
                    if message is not None:
                        self.tally.add(message["data"])
            except (redis.RedisError, OSError):
                self.subscribed.clear()
                time.sleep(0.01)


# -- chaos and the report ------------------------------------------------------------


def chaos(
    *,
    server: OwnRedis,
    proxy: TcpProxy,
    sub: Subscriber,
    stop: threading.Event,
    rng: random.Random,
    log: Counter[str],
) -> None:
    while not stop.wait(rng.uniform(2, 6)):
        kind = rng.choice(["kill", "freeze", "cut"])
        log[kind] += 1
        sub.tally.chaos = kind
        if kind == "kill":
            proxy.cut()
            before = sub.subscriptions
            server.kill()
            time.sleep(rng.uniform(1, 5))
            server.start()
            deadline = time.monotonic() + 10
            while sub.subscriptions == before and time.monotonic() < deadline:
                time.sleep(0.01)
            proxy.restore()
        elif kind == "freeze":
            server.freeze()
            time.sleep(rng.uniform(1, 8))
            server.thaw()
        else:
            proxy.cut()
            time.sleep(rng.uniform(0.5, 3))
            proxy.restore()


def slope_mib_per_min(samples: list[dict[str, Any]], key: str = "rss") -> float:
    """Least-squares slope of ``key`` over the second half of the samples, per minute."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return float("nan")
    ts = [s["t"] / 60 for s in half]
    ys = [s[key] for s in half]
    t_mean, y_mean = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    return sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / var


def print_sample(s: dict[str, Any], tally: Tally, log: Counter[str]) -> None:
    print(
        f"  {s['t']:5.0f} s  RSS {s['rss']:.1f} MiB  blocks {s['blocks'] / 1000:.0f}k  "
        f"gc objects {s['gc_objects'] / 1000:.0f}k  runs {s['runs']}  queued {s['queued']}  "
        f"dropped {s['dropped']}  subscriber open {len(tally.open)}  "
        f"load {s['load']:.1f}  chaos {dict(log)}",
        flush=True,
    )


def report(final: dict[str, Any], tally: Tally, samples: list[dict[str, Any]],
           log: Counter[str]) -> None:  # fmt: skip
    waits = final["waits"]
    print(f"\nchaos: {dict(log)}; runs finished: {final['runs']}; flushed: {final['flushed']}")
    print(f"publisher: {final['stats']}")
    print(
        f"lifecycle events lost: {final['lifecycle'] - tally.lifecycle} "
        f"(emitted {final['lifecycle']}, arrived {tally.lifecycle}); runs complete at the "
        f"subscriber {tally.complete} of {final['runs']}, open {len(tally.open)}"
    )
    for (_, media_id), run in list(tally.open.items())[:5]:
        print(f"  open: {media_id}: {sorted(f'{e}/{m}' for e, m in run.lifecycle)}")
    print(
        f"duplicates: repeats (same bytes, same source/media_id/seq; consumers drop them) "
        f"{tally.repeats.total()} {dict(tally.repeats)} (by the chaos action last begun); "
        f"real: other bytes under a seen seq {tally.other_bytes}, "
        f"a lifecycle event again under a new seq {tally.lifecycle_again}"
        f"{f'; finished runs forgotten {tally.forgotten}' if tally.forgotten else ''}"
    )
    print(
        f"job time lost at run ends: total {waits['total']:.2f} s over {waits['count']} runs "
        f"({waits['total'] / max(waits['count'], 1) * 1000:.1f} ms a run), "
        f"p50 {waits['p50'] * 1000:.1f} ms, p99 {waits['p99'] * 1000:.1f} ms, "
        f"worst {waits['worst'] * 1000:.0f} ms; over 10 ms: {waits['over_10ms'][0]} runs "
        f"(~{waits['over_10ms'][1]:.1f} s), over 100 ms: {waits['over_100ms'][0]} runs "
        f"(~{waits['over_100ms'][1]:.1f} s)"
    )
    if samples:
        rss = " ".join(f"{s['rss']:.1f}" for s in samples)
        print(
            f"job process RSS MiB: {rss}; slope over "
            f"the second half {slope_mib_per_min(samples):+.2f} MiB/min; allocated blocks "
            f"{samples[0]['blocks'] / 1000:.0f}k -> {samples[-1]['blocks'] / 1000:.0f}k "
            f"({slope_mib_per_min(samples, 'blocks') / 1000:+.1f}k/min over the second half)"
        )
        loads = " ".join(f"{s['load']:.1f}" for s in samples)
        print(f"load average (1 min): {loads}")
    for line in final["growth"]:
        print(f"  growth: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--tracemalloc", action="store_true", help="report allocation growth")
    parser.add_argument("--remember", type=int, default=None,
                        help="the publisher's per-media bound (default 100,000): smaller "
                        "fills within the run, to see whether anything else grows")
    args = parser.parse_args()
    print(f"seed {args.seed}, {args.workers} workers, {args.minutes} min; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    server = OwnRedis().start()
    proxy = TcpProxy(("127.0.0.1", server.port))
    sub = Subscriber(server.port)
    sub.start()
    sub.subscribed.wait(10)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(
        target=jobs_main,
        args=(
            JobSettings(proxy.url, args.workers, args.minutes * 60, args.sample,
                        args.tracemalloc, args.remember),
            out,
        ),
    )
    child.start()
    chaos_stop = threading.Event()
    log: Counter[str] = Counter()
    chaos_thread = threading.Thread(
        target=chaos,
        kwargs={"server": server, "proxy": proxy, "sub": sub, "stop": chaos_stop,
                "rng": random.Random(args.seed), "log": log},
        daemon=True,
    )  # fmt: skip
    chaos_thread.start()
    samples: list[dict[str, Any]] = []
    final = None
    while final is None:
        try:
            kind, payload = out.get(timeout=5)
        except queue.Empty:
            if not child.is_alive():
                raise SystemExit("the job process ended without a report") from None
            continue
        if kind == "sample":
            samples.append(payload)
            print_sample(payload, sub.tally, log)
            if payload["t"] >= args.minutes * 60:
                chaos_stop.set()  # the jobs stop now: let the last batches through
        else:
            final = payload
    chaos_stop.set()
    chaos_thread.join(30)
    child.join(120)
    time.sleep(1.0)
    sub.stop.set()
    sub.join(5)
    report(final, sub.tally, samples, log)
    proxy.close()
    server.kill()


if __name__ == "__main__":
    main()
