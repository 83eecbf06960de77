"""What the relay's metrics cost per event, against prometheus-client's own objects.

The relay counts in plain ``Counter``s and its own ``LagHistogram`` (read at scrape time by
``simulator/relay/metrics.py``); this measures that per-event work and, for scale, what
the same counting would cost through prometheus-client's ``Counter.labels().inc()`` and
``Histogram.observe`` (each takes a lock). Pure CPU on one thread: run it on a quiet
machine for figures to quote; under load it gives upper bounds.

    python benchmarks/relay_metrics_bench.py [--events 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter

from simulator.relay.stats import LAG_BUCKETS, LagHistogram

KINDS = ("PROCESSING_STARTED", "FRAME_ANALYSIS_PROGRESS", "PROCESSING_COMPLETED")
STAMP = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def relay_counts(events: int) -> None:
    events_in: Counter[str] = Counter()
    events_out: Counter[str] = Counter()
    for i in range(events):
        kind = KINDS[i % 3]
        events_in[kind] += 1
        events_out[kind] += 2


def relay_lag(events: int) -> None:
    lag = LagHistogram()
    now = time.time()
    for _ in range(events):
        lag.observe_timestamp(STAMP, now)


def loop_only(events: int) -> None:
    for i in range(events):
        _ = KINDS[i % 3]


def prometheus_counts(events: int) -> None:
    registry = CollectorRegistry()
    events_in = PromCounter("bench_in", "in", ["type"], registry=registry)
    events_out = PromCounter("bench_out", "out", ["type"], registry=registry)
    for i in range(events):
        kind = KINDS[i % 3]
        events_in.labels(kind).inc()
        events_out.labels(kind).inc(2)


def prometheus_lag(events: int) -> None:
    registry = CollectorRegistry()
    lag = Histogram("bench_lag", "lag", buckets=LAG_BUCKETS, registry=registry)
    for _ in range(events):
        lag.observe(0.003)


def per_event_us(run: Callable[[int], None], events: int) -> float:
    start = time.perf_counter()
    run(events)
    return (time.perf_counter() - start) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = {"loop alone": loop_only, "relay: in/out Counters": relay_counts,
             "relay: lag (parse + bucket)": relay_lag,
             "prometheus-client: labels().inc() x2": prometheus_counts,
             "prometheus-client: Histogram.observe": prometheus_lag}
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so drifting load hits every case alike
        for name, run in cases.items():
            results[name].append(per_event_us(run, args.events))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.events} events x {args.repeats}")
    for name, values in results.items():
        print(f"{name:40s} median {statistics.median(values):6.3f} us/event "
              f"(range {min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
