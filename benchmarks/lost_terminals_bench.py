"""What keeping lost terminal events aside costs the buffer (progress_sdk._lost_terminals).

    python benchmarks/lost_terminals_bench.py [--baseline TREE] [--repeats 5] [--media 20000]

Each figure is measured in a fresh process per tree (this checkout, and ``--baseline``, a
checkout of the tree before the change, e.g. a ``git worktree``), the turns interleaved so
the shared machine's load hits both alike; medians reported, in microseconds:

1. ``start+end``: EventBuffer.accept of a PROCESSING_STARTED and its terminal event with
   room to spare, per media: the path every run takes (now one more length check).
2. ``overflow``: accept of a terminal event into a buffer full of terminal events of
   media on screen, per event: the path where one gives way (now its bytes are kept).
3. ``resend``: EventBuffer.resend_lost per event sent again (this tree only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(media: int) -> dict[str, float]:
    """Run in the child: the figures for the tree on ``sys.path`` (imported here, so
    that the parent never loads either tree's buffer)."""
    from progress_sdk._buffer import EventBuffer
    from progress_sdk._entry import Entry
    from progress_sdk._wire import WireEncoder

    encoder = WireEncoder("bench:1:abcd")

    def made(event: str, media_id: str) -> Entry:
        entry = Entry({"media_id": media_id, "user_id": "u-1", "event": event,
                       "message": "m", "data": {}, "run_id": "r"}, time.time())
        entry.serialise(encoder, keep=False)
        return entry

    def drain(buffer: EventBuffer) -> None:
        while buffer.ready:
            buffer.take(500)
            buffer.finish_batch()

    ids = [f"media-{i:08d}" for i in range(media)]
    starts = [made("PROCESSING_STARTED", m) for m in ids]
    ends = [made("PROCESSING_COMPLETED", m) for m in ids]
    buffer = EventBuffer(2 * media + 10, 0.0)
    began = time.perf_counter()
    for start, end in zip(starts, ends, strict=True):
        buffer.accept(start)
        buffer.accept(end)
    pair = (time.perf_counter() - began) / media
    drain(buffer)
    # Overflow: a quarter of the media fill the buffer with their terminal events (their
    # starts went out); the other three quarters' terminal events push them out.
    capacity = media // 4
    buffer = EventBuffer(capacity, 0.0)
    for start in (made("PROCESSING_STARTED", m) for m in ids):
        buffer.accept(start)
        drain(buffer)
    ends = [made("PROCESSING_COMPLETED", m) for m in ids]
    for end in ends[:capacity]:
        buffer.accept(end)
    began = time.perf_counter()
    for end in ends[capacity:]:
        buffer.accept(end)
    overflow = (time.perf_counter() - began) / (media - capacity)
    figures = {"start+end": pair * 1e6, "overflow": overflow * 1e6}
    if hasattr(buffer, "resend_lost"):
        drain(buffer)
        began = time.perf_counter()
        sent = 0
        while buffer.lost:
            sent += buffer.resend_lost()
            drain(buffer)
        figures["resend"] = (time.perf_counter() - began) / max(1, sent) * 1e6
    return figures


def run_tree(tree: Path, media: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(media)], env=env, check=True,
        capture_output=True, text=True, cwd=tree,
    ).stdout
    figures: dict[str, float] = json.loads(out)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout before the change")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--media", type=int, default=20_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    trees = {"this tree": HERE}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            runs[name].append(run_tree(tree, args.media))
    for name, results in runs.items():
        line = ", ".join(
            f"{key} {statistics.median(r[key] for r in results):.2f} us"
            for key in results[0]
        )
        print(f"{name}: {line}")


if __name__ == "__main__":
    main()
