"""Soak: jobs report for N minutes while their Redis is killed, frozen and cut at random.

    python benchmarks/soak.py [--minutes 5] [--workers 4] [--seed 1]

Not part of the test suite. Starts its own redis-server on a free loopback port; the
jobs' publisher reaches it through a TCP proxy (tests/tcp_proxy.py), a subscriber
directly. At random intervals one of:

- kill: redis-server killed and the proxy cut; restarted after 1-5 s, and the proxy
  restored once the subscriber has subscribed again (so what the publisher sends after
  the restart has a listener: the subscriber's own reconnect is not what is measured);
- freeze: redis-server stopped with SIGSTOP for 1-8 s, then SIGCONT;
- cut: the proxy resets every connection and refuses new ones for 0.5-3 s.

Reports: lifecycle events lost (every lifecycle event a run emitted must arrive),
duplicates (repeats of (source, media_id, seq), which consumers drop), job time lost
to stalls (time the runs' ends waited, total and worst), and the process's memory over
time (the job process's RSS; jobs and publisher run in a process of their own).
Expected: 0, any (resent after cuts; dropped by consumers), near 0, flat.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from own_redis import OwnRedis
from tcp_proxy import TcpProxy

from progress_sdk import ProgressPublisher

CHANNEL = "soak"
MODELS = ("SIGLIP-LSTM-V4", "LIP-FD-V1")


class Subscriber(threading.Thread):
    """Keeps every message; subscribes again whenever its connection breaks."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.messages: list[bytes] = []
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
                        self.messages.append(message["data"])
            except (redis.RedisError, OSError):
                self.subscribed.clear()
                time.sleep(0.01)


def job(
    publisher: ProgressPublisher, worker: int, stop: threading.Event, out: dict[str, Any]
) -> None:
    """Media runs back to back; records what each emitted and how long its end took."""
    rng = random.Random(worker)
    n = 0
    while not stop.is_set():
        n += 1
        media_id = f"w{worker}-m{n}"
        lifecycle = ["PROCESSING_STARTED"]
        run = publisher.media(media_id, f"user-{worker}")
        run.start()
        for name in MODELS:
            model = run.model(name).start()
            lifecycle.append("ANALYSIS_STARTED")
            steps = rng.randint(5, 40)
            for i in range(1, steps + 1):
                time.sleep(0.002)
                model.progress(i, steps)
            model.complete(prediction="REAL", confidence=0.9)
            lifecycle.append("ANALYSIS_COMPLETED")
        started = time.perf_counter()
        run.finish()
        out["end_wait"].append(time.perf_counter() - started)
        lifecycle.append("PROCESSING_COMPLETED")
        out["expected"][media_id] = lifecycle


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def jobs_main(url: str, workers: int, seconds: float, out_path: str) -> None:
    """The job process: its memory is the publisher's and the jobs' alone."""
    publisher = ProgressPublisher(url, CHANNEL)
    stop = threading.Event()
    out: dict[str, Any] = {"end_wait": [], "expected": {}}
    threads = [
        threading.Thread(target=job, args=(publisher, w, stop, out), daemon=True)
        for w in range(workers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    flushed = publisher.flush(60)
    stats = publisher.stats()
    publisher.close(5)
    with open(out_path, "w") as f:
        json.dump({**out, "flushed": flushed, "stats": repr(stats)}, f)


def chaos(
    *,
    server: OwnRedis,
    proxy: TcpProxy,
    sub: Subscriber,
    stop: threading.Event,
    rng: random.Random,
    log: Counter,
) -> None:
    while not stop.wait(rng.uniform(2, 6)):
        kind = rng.choice(["kill", "freeze", "cut"])
        log[kind] += 1
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    server = OwnRedis().start()
    proxy = TcpProxy(("127.0.0.1", server.port))
    sub = Subscriber(server.port)
    sub.start()
    sub.subscribed.wait(10)
    out_path = f"/tmp/soak-{os.getpid()}.json"
    ctx = mp.get_context("spawn")
    child = ctx.Process(
        target=jobs_main, args=(proxy.url, args.workers, args.minutes * 60, out_path)
    )
    child.start()
    chaos_stop = threading.Event()
    log: Counter[str] = Counter()
    chaos_thread = threading.Thread(
        target=chaos,
        kwargs={
            "server": server,
            "proxy": proxy,
            "sub": sub,
            "stop": chaos_stop,
            "rng": random.Random(args.seed),
            "log": log,
        },
        daemon=True,
    )
    chaos_thread.start()
    memory: list[float] = []
    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline and child.is_alive():
        time.sleep(min(10.0, max(0.1, deadline - time.monotonic())))
        if child.pid is not None and child.is_alive():
            memory.append(rss_mib(child.pid))
            print(
                f"  {len(sub.messages)} messages, job process RSS {memory[-1]:.1f} MiB, "
                f"chaos {dict(log)}",
                flush=True,
            )
    chaos_stop.set()
    chaos_thread.join(30)
    child.join(120)
    time.sleep(1.0)
    sub.stop.set()
    with open(out_path) as f:
        out = json.load(f)
    os.unlink(out_path)
    report(out, sub.messages, out["stats"], flushed=out["flushed"], memory=memory, log=log)
    proxy.close()
    server.kill()


def report(
    out: dict[str, Any],
    messages: list[bytes],
    stats: str,
    *,
    flushed: bool,
    memory: list[float],
    log: Counter[str],
) -> None:
    keys: Counter[tuple[str, str, int]] = Counter()
    received: dict[str, list[str]] = {}
    for raw in messages:
        event = json.loads(raw)
        key = (event["source"], event["media_id"], event["seq"])
        keys[key] += 1
        if keys[key] == 1 and "PROGRESS" not in event["event"]:
            received.setdefault(event["media_id"], []).append(event["event"])
    lost = sum(
        len(expected) - len(received.get(media, [])) for media, expected in out["expected"].items()
    )
    duplicates = sum(count - 1 for count in keys.values())
    waits = sorted(out["end_wait"])
    print(f"\nchaos: {dict(log)}; runs finished: {len(out['expected'])}; flushed: {flushed}")
    print(f"publisher: {stats}")
    print(f"lifecycle events lost: {lost}")
    print(f"duplicates (same source, media_id, seq; consumers drop them): {duplicates}")
    print(
        f"job time lost at run ends: total {sum(waits):.2f} s over {len(waits)} runs, "
        f"worst {waits[-1] * 1000 if waits else 0:.0f} ms, "
        f"p99 {waits[int(0.99 * (len(waits) - 1))] * 1000 if waits else 0:.1f} ms"
    )
    if memory:
        print(
            f"job process RSS MiB, every 10 s: {' '.join(f'{m:.1f}' for m in memory)} "
            f"(first {memory[0]:.1f}, last {memory[-1]:.1f}, max {max(memory):.1f})"
        )


if __name__ == "__main__":
    main()
