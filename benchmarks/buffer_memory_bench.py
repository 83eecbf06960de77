"""What the publisher's buffer holds while Redis is away, for one source tree or several.

Two figures, each measured in a fresh process through the public API:

1. **Buffered starts.** ``--starts`` (100,000) ``PROCESSING_STARTED`` of as many media emitted
   into a publisher whose Redis is unreachable: bytes per buffered start (tracemalloc), and
   one full garbage collection right after the emits, against the same emits into a buffer
   of 1,000 (which then holds 1,000), so the difference is what the buffered starts cost the
   collector.
2. **A batch that hangs in flight.** A server that accepts the connection and never answers
   (a frozen Redis reached through a user's own client has no socket timeout): the sender's
   first batch stays in flight while ``--hang-events`` (200,000) lifecycle events are emitted
   into a buffer of ``--hang-capacity`` (1,000). Bytes held by the process afterwards.

Several trees (``--tree /path/to/checkout``, repeatable) are measured in turn, the turns
repeated ``--repeats`` times so the load of a shared machine hits them alike; medians are
printed. Without ``--tree``, the checkout this script is in.

    python benchmarks/buffer_memory_bench.py --tree /tmp/main --tree . --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens: events stay buffered


def start_fields(i: int) -> dict[str, Any]:
    return {
        "media_id": f"media-{i:07d}",
        "user_id": "user-17",
        "event": "PROCESSING_STARTED",
        "message": "Processing started",
        "data": {"filename": f"clip-{i}.mp4"},
    }


def lifecycle_fields(i: int) -> dict[str, Any]:
    return {
        "media_id": f"media-{i % 50}",
        "user_id": "user-17",
        "event": "AUDIO_EXTRACTION_START",
        "message": f"Extracting audio, step {i}",
        "data": {"model_name": "SCATTERING-WAVE-V1", "phase": "audio_extraction"},
        "run_id": "run-0007",
    }


def starts_gc(n: int, capacity: int) -> dict[str, float]:
    from progress_sdk import ProgressPublisher

    pub = ProgressPublisher(DEAD_URL, "bench-mem", min_progress_interval=0, buffer_size=capacity)
    pub.emit(lifecycle_fields(0))  # starts the sender thread outside the measurement
    gc.collect()
    for i in range(n):  # made one at a time: a list of them would cost the collection
        pub.emit(start_fields(i))
    t0 = time.perf_counter()
    gc.collect()
    full = time.perf_counter() - t0
    queued = pub.stats().queued
    pub.close(0.2)
    return {"full_gc_ms": full * 1000, "queued": queued}


def starts_memory(n: int) -> dict[str, float]:
    from progress_sdk import ProgressPublisher

    pub = ProgressPublisher(DEAD_URL, "bench-mem", min_progress_interval=0, buffer_size=n)
    events = [start_fields(i) for i in range(n)]
    pub.emit(lifecycle_fields(0))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for f in events:
        pub.emit(f)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    queued = pub.stats().queued
    pub.close(0.2)
    return {"per_start_b": (after - before) / n, "queued": queued}


def _silent_server() -> tuple[socket.socket, list[socket.socket]]:
    """Accepts connections and reads nothing, answers nothing: a batch written to it waits
    for replies forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def hang_memory(n: int, capacity: int) -> dict[str, float]:
    import redis

    from progress_sdk import ProgressPublisher

    server, held = _silent_server()
    port = server.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port)  # no socket timeout: a user's own client
    pub = ProgressPublisher(client, "bench-mem", min_progress_interval=0, buffer_size=capacity)
    events = [lifecycle_fields(i) for i in range(n)]
    pub.emit(events[0])
    time.sleep(1.0)  # the sender takes that first event: in flight, waiting for replies
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for f in events[1:]:
        pub.emit(f)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stats = pub.stats()
    result = {"held_mb": (after - before) / 1e6, "queued": stats.queued}
    server.close()
    for conn in held:
        conn.close()
    pub.close(0.2)
    return result


def child(kind: str, args: argparse.Namespace) -> None:
    if kind == "starts_gc_full":
        out = starts_gc(args.starts, args.starts)
    elif kind == "starts_gc_few":
        out = starts_gc(args.starts, 1_000)
    elif kind == "starts_memory":
        out = starts_memory(args.starts)
    else:
        out = hang_memory(args.hang_events, args.hang_capacity)
    print(json.dumps(out))


KINDS = ("starts_gc_full", "starts_gc_few", "starts_memory", "hang")


def run_child(tree: Path, kind: str, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PROGRESS_SDK_SNAPSHOTS": "0"}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--starts",
        str(args.starts),
        "--hang-events",
        str(args.hang_events),
        "--hang-capacity",
        str(args.hang_capacity),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=tree)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout to measure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--starts", type=int, default=100_000)
    parser.add_argument("--hang-events", type=int, default=200_000)
    parser.add_argument("--hang-capacity", type=int, default=1_000)
    parser.add_argument("--only", choices=["starts", "hang"], help="one figure only")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    trees = [t.resolve() for t in args.tree or [Path(__file__).resolve().parent.parent]]
    kinds = [k for k in KINDS if not args.only or k.startswith(args.only)]
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}; median of {args.repeats} interleaved runs\n"
    )
    got: dict[tuple[Path, str], list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for kind in kinds:
            for tree in trees:
                got.setdefault((tree, kind), []).append(run_child(tree, kind, args))

    def med(tree: Path, kind: str, key: str) -> float:
        return statistics.median(r[key] for r in got[(tree, kind)])

    for tree in trees:
        print(tree)
        if "starts_memory" in kinds:
            runs = [round(r["per_start_b"]) for r in got[(tree, "starts_memory")]]
            per_start = med(tree, "starts_memory", "per_start_b")
            print(
                f"  {args.starts:,} starts buffered: {per_start:.0f}"
                f" B per start (runs {runs}); full gc "
                f"{med(tree, 'starts_gc_full', 'full_gc_ms'):.1f} ms vs "
                f"{med(tree, 'starts_gc_few', 'full_gc_ms'):.1f} ms with 1,000 buffered "
                f"(runs {[round(r['full_gc_ms'], 1) for r in got[(tree, 'starts_gc_full')]]} vs "
                f"{[round(r['full_gc_ms'], 1) for r in got[(tree, 'starts_gc_few')]]})"
            )
        if "hang" in kinds:
            runs = [round(r["held_mb"], 1) for r in got[(tree, "hang")]]
            print(
                f"  {args.hang_events:,} events during one hang, buffer of "
                f"{args.hang_capacity:,}: {med(tree, 'hang', 'held_mb'):.1f} MB held "
                f"(runs {runs}), {med(tree, 'hang', 'queued'):.0f} queued"
            )


if __name__ == "__main__":
    main()
