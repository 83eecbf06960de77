"""The publisher's snapshot writer (``SnapshotHook``) folds whole batches read back from
their wire bytes; Redis must end up holding exactly what the straightforward fold (each
event folded on its own, in order: tests/snapshot_oracle.py) writes."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
import redis
from snapshot_oracle import fold_each

from progress_sdk._wire import WireEncoder
from progress_sdk.snapshot import SnapshotConfig, SnapshotHook, SnapshotKeys, SnapshotTracker

pytestmark = pytest.mark.redis

SOURCE = "w9:7:fast"
MEDIA = ("m1", "m2", "m3")
MODELS = ("A", "B", "C")
MEDIA_EVENTS = ("PROCESSING_STARTED", "PROCESSING_COMPLETED", "PROCESSING_FAILED")
MODEL_EVENTS = (
    "ANALYSIS_QUEUED", "ANALYSIS_STARTED", "ANALYSIS_COMPLETED", "ANALYSIS_FAILED",
    "AUDIO_EXTRACTION_START", "AUDIO_EXTRACTION_COMPLETE", "SPECTROGRAM_GENERATION_START",
)  # fmt: skip
PROGRESS_EVENTS = ("FRAME_ANALYSIS_PROGRESS", "WINDOW_PROCESSING_PROGRESS")


def random_fields(rng: random.Random) -> dict[str, Any]:
    """One event of any kind, sometimes with data of the wrong type, never valid for sure."""
    kind = rng.random()
    data: dict[str, Any] = {}
    if kind < 0.1:
        event = rng.choice(MEDIA_EVENTS)
        data = rng.choice([{}, {"filename": "v.mp4"}, {"error_message": "boom"}])
    else:
        event = rng.choice(PROGRESS_EVENTS if kind < 0.7 else MODEL_EVENTS)
        data["model_name"] = rng.choice(MODELS)
        if event in PROGRESS_EVENTS or rng.random() < 0.2:
            total = rng.choice([10, 10, 0, "10"])
            data.update(progress=rng.choice([rng.randint(0, 12), None]), total=total)
        if rng.random() < 0.4:
            data["phase"] = rng.choice(["frame_analysis", "", "windows"])
        if rng.random() < 0.3:
            data["details"] = {"eta_seconds": rng.choice([3.5, -1, "soon", 12])}
        if event in ("ANALYSIS_COMPLETED", "ANALYSIS_FAILED"):
            data.update(prediction="FAKE", confidence=rng.choice([1, 0.5]), error_message="oom")
    fields: dict[str, Any] = {
        "media_id": rng.choice(MEDIA), "event": event, "message": event, "data": data,
    }
    if rng.random() < 0.95:
        fields["user_id"] = rng.choice(["u1", "u1", "u2"])
    if rng.random() < 0.9:
        fields["run_id"] = rng.choice(["r1", "r2"])
    return fields


def repeat(rng: random.Random, fields: dict[str, Any]) -> dict[str, Any]:
    """The same event again (a worker's next progress value or phase), or with a value
    that equals the old one in Python but not to the fold (``1.0``, ``True``)."""
    data = dict(fields["data"])
    change = rng.random()
    if change < 0.4 and "progress" in data:
        data["progress"] = rng.choice([rng.randint(0, 12), True, 3.0, None])
    elif change < 0.5:
        key = rng.choice(["total", "confidence", "phase"])
        data[key] = rng.choice([1, 1.0, True, 10, 10.0, "f"])
    elif change < 0.6:
        data["details"] = {"eta_seconds": rng.choice([1, 1.0, True])}
    elif change < 0.7:
        key = rng.choice(["user_id", "run_id"])
        fields = {k: v for k, v in fields.items() if k != key}  # the next one leaves it out
    return {**fields, "data": data, "message": f"again {rng.random()}"}


def random_batches(seed: int, events: int) -> Iterator[list[bytes]]:
    """``events`` wire events as the publisher numbers and stamps them, in random batches;
    half of them repeat their media's previous event, changed a little or not at all."""
    rng = random.Random(seed)
    encoder = WireEncoder(SOURCE)
    seqs: dict[str, int] = {}
    last: dict[str, dict[str, Any]] = {}
    ts = 1_790_000_000.0 + rng.random()
    payloads = []
    for _ in range(events):
        fields = random_fields(rng)
        if fields["media_id"] in last and rng.random() < 0.5:
            fields = repeat(rng, last[fields["media_id"]])
        last[fields["media_id"]] = fields
        seq = seqs[fields["media_id"]] = seqs.get(fields["media_id"], 0) + 1
        ts += rng.choice([0.0, 0.000_001, 0.013, 0.7, 1.9])
        payloads.append(encoder.encode(fields, seq, ts))
    while payloads:
        size = rng.choice([1, 2, 5, 17, 60])
        yield payloads[:size]
        del payloads[:size]


def reference_commands(tracker: SnapshotTracker, batch: list[bytes]) -> list[Any]:
    """The straightforward fold: each decoded event on its own, in order."""
    for payload in batch:
        event = orjson.loads(payload)
        ts = datetime.fromisoformat(event["timestamp"]).timestamp()
        fold_each(tracker, event, ts)
    return tracker.take_commands()


def queue_contents(pipe: Any, keys: SnapshotKeys) -> list[str]:
    """Queue reads of every media hash and index under ``keys``; their names, in order."""
    pipe.zrange(keys.inflight, 0, -1, withscores=True)
    for user in ("u1", "u2"):
        pipe.zrange(keys.user(user), 0, -1, withscores=True)
    for media in MEDIA:
        pipe.hgetall(keys.media(media))
    return ["inflight", *(f"user:{user}" for user in ("u1", "u2")), *MEDIA]


def fold_both(client: redis.Redis, ref: list[Any], fast: list[Any], slow_keys: SnapshotKeys,
              fast_keys: SnapshotKeys) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run both folds' commands, each in order, then read what each left in Redis: one
    round trip per batch (a pipeline keeps the order and raises the first error, as
    running them one by one would; the test makes hundreds of batches, and on a busy
    machine every round trip waits for a core)."""
    pipe = client.pipeline(transaction=False)
    for command in [*ref, *fast]:
        pipe.execute_command(*command)
    names = queue_contents(pipe, slow_keys)
    queue_contents(pipe, fast_keys)
    replies = pipe.execute()[len(ref) + len(fast):]
    half = len(names)
    return dict(zip(names, replies[:half], strict=True)), dict(
        zip(names, replies[half:], strict=True)
    )


@pytest.mark.parametrize("seed", range(16))
def test_the_batch_fold_writes_what_the_event_by_event_fold_writes(
    redis_url: str, seed: int
) -> None:
    """A random stream of every kind of event, in random batches: after each batch, the
    snapshot keys in Redis are the same through both paths."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-fast-{uuid.uuid4().hex[:8]}"
    slow = SnapshotConfig(SnapshotKeys(f"{prefix}-ref:"), ttl=30)
    fast = SnapshotConfig(SnapshotKeys(f"{prefix}-fast:"), ttl=30)
    tracker = SnapshotTracker(slow, channel="chan")
    hook = SnapshotHook(fast, channel="chan")
    try:
        for batch in random_batches(seed, 400):
            by_events, by_batch = fold_both(client, reference_commands(tracker, batch),
                                            list(hook(batch)), slow.keys, fast.keys)
            assert by_batch == by_events
    finally:
        for config in (slow, fast):
            # count: the shared server holds ~100,000 keys of other tests and sessions, and
            # SCAN's default of 10 per call made this cleanup ~10,000 round trips.
            found = client.scan_iter(f"{config.keys.prefix}*", count=10_000)
            client.delete(*found, "none")
