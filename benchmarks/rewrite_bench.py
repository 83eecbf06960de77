"""What a publisher's rewrite after a Redis restart without persistence costs
(``SnapshotTracker.rewrite_commands`` through ``RedisTransport.on_new_server``).

    python benchmarks/rewrite_bench.py [--media 10000] [--repeats 3]

A tracker holding ``--media`` media in flight (two models each, one with progress) is
rewritten whole on a redis-server of the benchmark's own, restarted empty before each
turn: ``build`` is the commands' making (the sender thread's CPU), ``publish`` the whole
batch that carries them (INFO, the rewrite and one event, until Redis answered). Best of
``--repeats``, in milliseconds; the batch's size in MB. Once per restart and publisher.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from own_redis import OwnRedis

from progress_sdk._resp import frame_command
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker
from progress_sdk.transport import RedisTransport


def event(name: str, seq: int, n: int, **data: Any) -> dict[str, Any]:
    return {
        "media_id": f"media-{n}", "user_id": f"u{n % 50}", "event": name, "message": name,
        "data": data, "schema_version": 1, "seq": seq, "source": "w1", "run_id": "r1",
        "timestamp": "2026-11-26T05:00:00.000000Z",
    }  # fmt: skip


def tracker_of(media: int) -> SnapshotTracker:
    tracker = SnapshotTracker(SnapshotConfig(SnapshotKeys("bench:"), liveness_ttl=None))
    for n in range(media):
        tracker.apply_batch([
            event("PROCESSING_STARTED", 1, n, filename="clip.mp4"),
            event("ANALYSIS_STARTED", 2, n, model_name="A"),
            event("FRAME_ANALYSIS_PROGRESS", 3, n, model_name="A", progress=3, total=8,
                  phase="frame_analysis"),
            event("ANALYSIS_STARTED", 4, n, model_name="B"),
        ], lambda _: 100.0)  # fmt: skip
    tracker.take_commands()
    return tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tracker = tracker_of(args.media)
    builds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        commands = tracker.rewrite_commands()
        builds.append(time.perf_counter() - started)
    size = sum(len(frame_command(command)) for command in commands)
    server = OwnRedis().start()
    transport = RedisTransport(server.url, "bench")
    transport.on_new_server = tracker.rewrite_commands
    publishes = []
    try:
        transport.publish([b"{}"])
        for _ in range(args.repeats):
            server.kill()
            server.start()
            started = time.perf_counter()
            delivery = transport.publish([b"{}"])
            publishes.append(time.perf_counter() - started)
            assert delivery.published == 1 and not delivery.extra_failed, delivery
    finally:
        transport.close()
        server.kill()
    print(f"{args.media} media: build {min(builds) * 1000:.0f} ms, publish "
          f"{min(publishes) * 1000:.0f} ms, {len(commands)} commands, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
