"""Memory of a long-lived validator (``progress-sim listen``) fed runs that never end.

    python benchmarks/validator_memory_bench.py [--runs 1000000] [--repeat 1]

Each run is what a job that dies after starting sends: PROCESSING_STARTED, ANALYSIS_STARTED
of one model and one progress event, as wire bytes with the v1 envelope (what `listen`
feeds its validator). Each variant runs in a child process of its own, interleaved with the
others; reported: resident memory after every tenth of the runs and the peak (the child's
own ru_maxrss), and throughput. The reference is the same validator with its open runs
unbounded (``max_open_runs`` larger than the stream), which is how it behaved before open
runs were bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from progress_sdk.contract import MAX_OPEN_RUNS, LifecycleValidator

ENVELOPE = (
    '"schema_version":1,"source":"worker-1:100:beef","timestamp":"2026-11-26T05:00:00.000000Z"'
)


def run_events(n: int) -> list[bytes]:
    media = f"media-{n:08d}"
    head = f'"media_id":"{media}","user_id":"user-{n % 997}","run_id":"run-{n}"'
    return [
        f'{{{head},"event":"PROCESSING_STARTED","message":"go","data":{{"filename":"'
        f'upload-{n}.mp4"}},"seq":1,{ENVELOPE}}}'.encode(),
        f'{{{head},"event":"ANALYSIS_STARTED","message":"s","data":{{"model_name":'
        f'"SIGLIP-LSTM-V4"}},"seq":2,{ENVELOPE}}}'.encode(),
        f'{{{head},"event":"FRAME_ANALYSIS_PROGRESS","message":"p","data":{{"model_name":'
        f'"SIGLIP-LSTM-V4","progress":1,"total":300}},"seq":3,{ENVELOPE}}}'.encode(),
    ]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(runs: int, max_open: int) -> None:
    validator = LifecycleValidator(strict=True, allow_incomplete=True, max_open_runs=max_open)
    checkpoints = []
    step = max(1, runs // 10)
    began = time.perf_counter()
    for n in range(runs):
        for raw in run_events(n):
            validator.feed(raw)
        if (n + 1) % step == 0:
            checkpoints.append(round(rss_mib(), 1))
    seconds = time.perf_counter() - began
    report = validator.finish()
    print(json.dumps({
        "rss_mib": checkpoints,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "events_per_s": 3 * runs / seconds,
        "incomplete": report.incomplete_count,
        "violations": report.violation_count,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child-max-open", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_max_open is not None:
        child(args.runs, args.child_max_open)
        return
    variants = {
        "unbounded (reference)": args.runs + 1,
        f"bounded ({MAX_OPEN_RUNS:,})": MAX_OPEN_RUNS,
    }
    results: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
    for i in range(args.repeat):
        order = list(variants.items()) if i % 2 == 0 else list(reversed(variants.items()))
        for name, max_open in order:
            out = subprocess.run(
                [sys.executable, __file__, "--runs", str(args.runs),
                 "--child-max-open", str(max_open)],
                capture_output=True, text=True, check=True,
            ).stdout
            results[name].append(json.loads(out))
    print(f"{args.runs:,} runs that never end (3 events each), {args.repeat} repeat(s):")
    for name, rs in results.items():
        peak = statistics.median(float(r["peak_mib"]) for r in rs)  # type: ignore[arg-type]
        speed = statistics.median(float(r["events_per_s"]) for r in rs)  # type: ignore[arg-type]
        print(f"  {name:>24}: peak {peak:7.1f} MiB, {speed:>9,.0f} events/s, "
              f"incomplete {rs[0]['incomplete']:,}, violations {rs[0]['violations']}")
        print(f"  {'':>24}  RSS after each tenth: {rs[0]['rss_mib']}")


if __name__ == "__main__":
    main()
