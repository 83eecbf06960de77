"""Snapshot cost: the publisher with snapshots on against off, in the same run.

    python benchmarks/snapshot_bench.py [--repeats 5] [--events 50000] [--steps 10000]

Against the local Redis (REDIS_URL or redis://127.0.0.1:6379/0). The variants of each
figure run in turn, the turns repeated (interleaved, so the shared machine's load hits
both alike); the median is reported with the ratio on/off.

1. Delivered throughput, coalescing off (lifecycle-shaped events over 50 media, so a
   batch of 500 events touches 50 snapshots: the publisher-core benchmark's events, each
   repeating its media's previous one but for its message; over 1 media, a worker's
   usual stream; and "runs": 50 media in flight, each a whole run of 23 distinct events,
   then the next media), to a subscriber in another process that only counts messages on
   a raw socket (its capacity: a raw-socket pipeline of prebuilt payloads, measured in
   the same run).
2. A CPU-bound job: --steps steps of ~200 us, ``model.progress`` every step, with default
   settings and with coalescing off; the job's time against no reporting at all.
3. Memory per buffered event (Redis unreachable, 100,000 events held), as
   ``publisher_core_bench.py`` measures it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from publisher_core_bench import memory_per_event

from progress_sdk import ProgressEvent, ProgressPublisher
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MARK = b"$7\r\nmessage\r\n"
KEYS = SnapshotKeys(f"bench-snap-{uuid.uuid4().hex[:6]}:")


def event_fields(i: int, media: int = 50) -> dict[str, Any]:
    """A lifecycle-shaped event (never coalesced): every one is delivered."""
    return {
        "media_id": f"media-{i % media}",
        "user_id": "user-17",
        "event": "AUDIO_EXTRACTION_START",
        "message": f"Extracting audio, step {i}",
        "data": {"model_name": "SCATTERING-WAVE-V1", "phase": "audio_extraction"},
        "run_id": "run-0007",
    }


MODELS = ("SIGLIP-LSTM-V4", "LIP-FD-V1", "SCATTERING-WAVE-V1")
STEPS = (
    "ANALYSIS_STARTED", "AUDIO_EXTRACTION_START", "AUDIO_EXTRACTION_COMPLETE",
    "SPECTROGRAM_GENERATION_START", "SPECTROGRAM_GENERATION_COMPLETE", "ANALYSIS_COMPLETED",
)  # fmt: skip
# One media's whole run: started, its models queued, each model's steps, completed.
LIFECYCLE = (
    [("PROCESSING_STARTED", None)]
    + [("ANALYSIS_QUEUED", m) for m in MODELS]
    + [(step, m) for m in MODELS for step in STEPS]
    + [("PROCESSING_COMPLETED", None)]
)


def lifecycle_fields(i: int, media: int = 50) -> dict[str, Any]:
    """Event ``i`` of ``media`` runs in flight at once, each a whole run of distinct
    events (no event repeats the one before it): every one is folded."""
    step, slot = divmod(i, media)
    run, position = divmod(step, len(LIFECYCLE))
    event, model = LIFECYCLE[position]
    data: dict[str, Any] = {}
    if model is not None:
        data["model_name"] = model
    if event == "PROCESSING_STARTED":
        data["filename"] = "clip.mp4"
    elif event == "ANALYSIS_COMPLETED":
        data.update(prediction="FAKE", confidence=0.93)
    return {
        "media_id": f"media-{slot}-{run}", "user_id": "user-17", "event": event,
        "message": event.replace("_", " ").lower(), "data": data, "run_id": "run-0007",
    }  # fmt: skip


def subscriber_main(channel: str, expected: int, ready: Any, out: Any) -> None:
    """Counts messages on a raw socket: far faster than the publisher."""
    parts = urlsplit(REDIS_URL)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    name = channel.encode()
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%b\r\n" % (len(name), name))
    sock.recv(1000)
    ready.set()
    got, tail, last = 0, b"", 0.0
    sock.settimeout(120)
    while got < expected:
        data = sock.recv(1 << 20)
        if not data:
            break
        chunk = tail + data
        got += chunk.count(MARK)
        tail = chunk[-(len(MARK) - 1) :]
        last = time.time()
    out.put({"got": got, "last": last})


def delivered_rate(send: Callable[[str], None], n: int) -> float:
    """Events/s from the first send to the subscriber's last message."""
    channel = f"bench-snap-{uuid.uuid4().hex}"
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=subscriber_main, args=(channel, n, ready, out))
    proc.start()
    ready.wait(30)
    time.sleep(0.2)
    start = time.time()
    send(channel)
    result = out.get(timeout=300)
    proc.join(10)
    return float(result["got"]) / (result["last"] - start)


def throughput(snapshots: bool, n: int, media: int = 50, lifecycle: bool = False) -> float:
    make = lifecycle_fields if lifecycle else event_fields
    fields = [make(i, media) for i in range(n)]
    config = SnapshotConfig(KEYS) if snapshots else False

    def send(channel: str) -> None:
        pub = ProgressPublisher(REDIS_URL, channel, min_progress_interval=0, buffer_size=n,
                                snapshots=config)
        for f in fields:
            pub.emit(dict(f, data=dict(f["data"])))
        pub.flush(120)
        pub.close()

    return delivered_rate(send, n)


def raw_socket(n: int) -> float:
    payloads = [
        ProgressEvent(**event_fields(i), seq=i + 1, source="bench", schema_version=1,
                      timestamp="2026-11-28T05:00:00.000000Z").to_json_bytes()
        for i in range(n)
    ]

    def send(channel: str) -> None:
        parts = urlsplit(REDIS_URL)
        sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n" % (len(channel), channel.encode())
        for start in range(0, n, 500):
            batch = payloads[start : start + 500]
            sock.sendall(b"".join(b"%b$%d\r\n%b\r\n" % (head, len(p), p) for p in batch))
            seen = 0
            while seen < len(batch):
                seen += sock.recv(1 << 16).count(b"\r\n")
        sock.close()

    return delivered_rate(send, n)


def cpu_job(variant: str, steps: int, step_us: float = 200.0) -> float:
    """Seconds a job of ``steps`` spins of ``step_us`` took, reporting each step."""
    pub = None
    if variant != "no reporting":
        snapshots = SnapshotConfig(KEYS) if variant.endswith("snapshots on") else False
        interval = 0.0 if variant.startswith("coalescing off") else 0.1
        pub = ProgressPublisher(REDIS_URL, f"bench-snap-{uuid.uuid4().hex}",
                                min_progress_interval=interval, snapshots=snapshots)
    spin = step_us / 1e6
    start = time.perf_counter()
    if pub is None:
        for _ in range(steps):
            until = time.perf_counter() + spin
            while time.perf_counter() < until:
                pass
    else:
        with pub.media(f"m-{uuid.uuid4().hex[:6]}", "u1") as run, run.model("A") as model:
            for i in range(1, steps + 1):
                until = time.perf_counter() + spin
                while time.perf_counter() < until:
                    pass
                model.progress(i, steps)
    elapsed = time.perf_counter() - start
    if pub is not None:
        pub.close()
    return elapsed


def interleave(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            runs[name].append(run())
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    print(f"snapshot cost, medians of {args.repeats} interleaved runs (machine shared)")
    rates = interleave({
        "50 media, snapshots off": lambda: throughput(False, args.events),
        "50 media, snapshots on": lambda: throughput(True, args.events),
        "1 media, snapshots off": lambda: throughput(False, args.events, 1),
        "1 media, snapshots on": lambda: throughput(True, args.events, 1),
        "runs, snapshots off": lambda: throughput(False, args.events, lifecycle=True),
        "runs, snapshots on": lambda: throughput(True, args.events, lifecycle=True),
        "raw socket (subscriber capacity)": lambda: raw_socket(args.events),
    }, args.repeats)  # fmt: skip
    print(f"1. delivered throughput, coalescing off, {args.events:,} events")
    for name, rate in rates.items():
        print(f"   {name:34s} {rate:>10,.0f} events/s")
    for media in ("50 media", "1 media", "runs"):
        ratio = rates[f"{media}, snapshots on"] / rates[f"{media}, snapshots off"]
        print(f"   {media}: on/off {ratio:.3f}")
    names = ["no reporting", "default, snapshots off", "default, snapshots on",
             "coalescing off, snapshots off", "coalescing off, snapshots on"]
    times = interleave({n: (lambda n=n: cpu_job(n, args.steps)) for n in names}, args.repeats)
    base = times["no reporting"]
    print(f"2. CPU-bound job, {args.steps:,} steps of ~200 us, model.progress every step")
    for name, seconds in times.items():
        print(f"   {name:34s} {seconds:8.3f} s  ({seconds / base - 1:+.1%} vs no reporting)")
    for mode in ("default", "coalescing off"):
        on, off = times[f"{mode}, snapshots on"], times[f"{mode}, snapshots off"]
        print(f"   {mode}: snapshots on/off {on / off:.3f}")
    sizes = interleave({
        "snapshots off": lambda: memory_per_event(100_000)["per_event_b"],
        "snapshots on": lambda: memory_per_event(100_000, snapshots=True)["per_event_b"],
    }, args.repeats)  # fmt: skip
    payload = memory_per_event(1_000)["payload_b"]
    print(f"3. memory per buffered lifecycle event (payload {payload:.0f} B)")
    for name, size in sizes.items():
        print(f"   {name:34s} {size:8.0f} B  ({size / payload:.2f}x the payload)")


if __name__ == "__main__":
    main()
