"""What the end of a media run and ``close()`` cost the job while Redis is in trouble.

    python benchmarks/run_end_bench.py [--repeats 5]

The suite checks that these waits are bounded (each test gives the publisher an hour of
``finish_flush_timeout``, so a wait that is not cut short hangs the test) but asserts no
durations: on a busy machine a wall-clock bound fails for the wrong reason. The figures
are measured here instead, each scenario with its own redis-server (tests/own_redis.py)
and repeated; the median and the range over the repeats are printed.

1. Redis frozen (SIGSTOP): the first run end after the freeze (it notices the stall after
   STALL_NOTICE of no reply bytes) and the five run ends after it (no wait at all);
2. Redis killed while the sender idled: three run ends (the first learns of it when its
   connect fails);
3. Redis known to be down: one run end;
4. ``close(timeout=1)`` with 10 events and nothing listening on the port.
5. ``emit()`` with the connection cut (a TCP proxy): the slowest of 500 calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from own_redis import OwnRedis
from tcp_proxy import TcpProxy

from progress_sdk import ProgressPublisher

HOUR = 3600.0  # finish_flush_timeout: only the stall or failure ends a wait


def event(i: int) -> dict[str, object]:
    """A lifecycle-shaped event (never coalesced)."""
    return {"media_id": "m-bench", "user_id": "u1", "event": "AUDIO_EXTRACTION_START",
            "message": f"event {i}", "data": {"model_name": "A"}}


def one_run(publisher: ProgressPublisher, media_id: str) -> float:
    """A short media run; the seconds its end (the terminal event) took."""
    with publisher.media(media_id, "u1") as run, run.model("A") as model:
        model.progress(1, 2)
        started = time.perf_counter()
        model.complete()
    return time.perf_counter() - started


def frozen() -> dict[str, float]:
    server = OwnRedis().start()
    publisher = ProgressPublisher(server.url, f"bench-{uuid.uuid4().hex}",
                                  finish_flush_timeout=HOUR)
    try:
        one_run(publisher, "warm-up")
        publisher.flush(5)
        server.freeze()
        ends = [one_run(publisher, f"m{i}") for i in range(6)]
        server.thaw()
        publisher.flush(15)
        return {"frozen: first run end (ms)": ends[0] * 1e3,
                "frozen: slowest of the next five (ms)": max(ends[1:]) * 1e3}
    finally:
        publisher.close(2)
        server.kill()


def killed() -> dict[str, float]:
    server = OwnRedis().start()
    publisher = ProgressPublisher(server.url, f"bench-{uuid.uuid4().hex}",
                                  finish_flush_timeout=HOUR)
    try:
        one_run(publisher, "warm-up")
        publisher.flush(5)
        server.kill()
        started = time.perf_counter()
        for i in range(3):
            one_run(publisher, f"m{i}")
        return {"killed: three run ends (ms)": (time.perf_counter() - started) * 1e3}
    finally:
        publisher.close(0.5)


def known_down() -> dict[str, float]:
    publisher = ProgressPublisher("redis://127.0.0.1:1/0", f"bench-{uuid.uuid4().hex}",
                                  finish_flush_timeout=HOUR)
    try:
        run = publisher.media("m-down", "u1").start()
        deadline = time.monotonic() + 30
        while not publisher.stats().last_error and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        run.finish()
        return {"known down: run end (ms)": (time.perf_counter() - started) * 1e3}
    finally:
        publisher.close(0.5)


def close_refused() -> dict[str, float]:
    publisher = ProgressPublisher("redis://127.0.0.1:1/0", f"bench-{uuid.uuid4().hex}")
    for i in range(10):
        publisher.emit(event(i))
    started = time.perf_counter()
    publisher.close(timeout=1.0)
    return {"close(timeout=1) refused (ms)": (time.perf_counter() - started) * 1e3}


def emit_cut() -> dict[str, float]:
    server = OwnRedis().start()
    proxy = TcpProxy(("127.0.0.1", server.port))
    publisher = ProgressPublisher(proxy.url, f"bench-{uuid.uuid4().hex}",
                                  min_progress_interval=0)
    try:
        publisher.emit(event(0))
        publisher.flush(5)
        proxy.cut()
        slowest = 0.0
        for i in range(1, 501):
            started = time.perf_counter()
            publisher.emit(event(i))
            slowest = max(slowest, time.perf_counter() - started)
        return {"cut: slowest of 500 emit() (ms)": slowest * 1e3}
    finally:
        publisher.close(0.5)
        proxy.close()
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    scenarios: list[Callable[[], dict[str, float]]] = [
        frozen, killed, known_down, close_refused, emit_cut,
    ]
    figures: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for scenario in scenarios:
            for name, value in scenario().items():
                figures.setdefault(name, []).append(value)
    print(f"median (range) of {args.repeats} repeats")
    for name, values in figures.items():
        print(f"  {name:40s} {statistics.median(values):9.2f}"
              f"  ({min(values):.2f} to {max(values):.2f})")


if __name__ == "__main__":
    main()
