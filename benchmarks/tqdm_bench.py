"""What a tqdm loop costs per item when it also reports its model's progress.

    python benchmarks/tqdm_bench.py [--items 200000] [--repeats 5]

Against the local Redis (REDIS_URL or redis://127.0.0.1:6379/0), a publisher with its
default coalescing, inside a running model. Per-item cost (process time, median of the
repeats, variants interleaved so the shared machine's load hits all alike) of:

- ``bare``: ``for _ in items`` (the loop itself);
- ``tqdm``: ``tqdm.tqdm`` drawing to /dev/null, and with ``disable=True``;
- ``sdk-tqdm``: ``progress_sdk.tqdm.tqdm`` the same two ways (each item reported);
- ``track``: ``model.track(items)``, the SDK's own loop.

The drop-in's extra cost over plain tqdm is one ``progress()`` per item, which is what
``model.track()`` pays too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

from tqdm import tqdm as plain_tqdm

from progress_sdk import ModelRun, ProgressPublisher
from progress_sdk.tqdm import tqdm as sdk_tqdm

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _variants(model: Callable[[], ModelRun], sink: object) -> dict[str, Callable[[range], None]]:
    def bare(items: range) -> None:
        for _ in items:
            pass

    def tqdm_bar(items: range) -> None:
        for _ in plain_tqdm(items, file=sink, mininterval=0.1):
            pass

    def tqdm_off(items: range) -> None:
        for _ in plain_tqdm(items, disable=True):
            pass

    def sdk_bar(items: range) -> None:
        for _ in sdk_tqdm(items, file=sink, mininterval=0.1, model=model()):
            pass

    def sdk_off(items: range) -> None:
        for _ in sdk_tqdm(items, disable=True, model=model()):
            pass

    def track(items: range) -> None:
        for _ in model().track(items):
            pass

    return {"bare": bare, "tqdm (bar)": tqdm_bar, "tqdm (disable=True)": tqdm_off,
            "sdk-tqdm (bar)": sdk_bar, "sdk-tqdm (disable=True)": sdk_off,
            "model.track": track}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    publisher = ProgressPublisher(REDIS_URL, f"bench-tqdm-{uuid.uuid4().hex}")
    timings: dict[str, list[float]] = {}
    with open(os.devnull, "w") as sink, publisher.media("bench", "u-bench") as run:
        models = iter(range(10**9))
        # Each loop a fresh model: rule 3 (progress never decreases) holds per model.
        variants = _variants(lambda: run.model(f"BENCH-{next(models)}").start(), sink)
        for _ in range(args.repeats):
            for name, loop in variants.items():
                began = time.process_time()
                loop(range(args.items))
                timings.setdefault(name, []).append(time.process_time() - began)
    publisher.close()
    print(f"{args.items:,} items, median of {args.repeats}, load {os.getloadavg()[0]:.1f}")
    base = statistics.median(timings["bare"])
    for name, values in timings.items():
        per_item = (statistics.median(values) - base) / args.items * 1e9
        print(f"  {name:<24} {per_item:8.0f} ns per item over the bare loop")


if __name__ == "__main__":
    main()
