"""The bounded backlog per socket: the policy alone, then in a real relay process with a
socket that stops reading (a raw WebSocket client) and real Socket.IO clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis
from relay_support import SECRET, Client, RelayProcess, StalledSocket, event, wait_until
from snapshot_oracle import fold_each

from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker
from simulator.relay import sign_token
from simulator.relay.backlog import Backlog, BacklogLimits, BacklogStats, coalesce_key


def progress(media: str, model: str, n: int, *, run: str = "r1",
             event_type: str = "FRAME_ANALYSIS_PROGRESS") -> dict[str, Any]:
    """A ``progress_update`` payload as the relay shapes it."""
    return {"mediaId": media, "userId": "u", "event": event_type, "message": "",
            "data": {"model_name": model, "progress": n, "total": 100}, "runId": run}


def lifecycle(media: str, kind: str, model: str | None = None) -> dict[str, Any]:
    """A lifecycle ``progress_update`` payload."""
    data = {"model_name": model} if model else {}
    return {"mediaId": media, "userId": "u", "event": kind, "message": "", "data": data}


def push(backlog: Backlog[str], name: str, payload: dict[str, Any], label: str) -> str | None:
    """Push ``label`` (10 bytes) under the key the relay would give ``name``/``payload``."""
    return backlog.push(label, 10, coalesce_key(name, payload))


# -- the policy -------------------------------------------------------------------------


def test_a_superseded_progress_update_leaves_and_the_newer_one_waits_last() -> None:
    """A newer progress of the same (media, run, model, event) takes the older one out
    and goes to the back, so the socket still gets a subsequence of the channel in
    order; other keys and lifecycle packets stay where they were."""
    backlog: Backlog[str] = Backlog(BacklogLimits(), stats := BacklogStats())
    push(backlog, "progress_update", progress("m1", "A", 1), "A1")
    push(backlog, "progress_update", lifecycle("m1", "ANALYSIS_STARTED", "B"), "B-started")
    push(backlog, "progress_update", progress("m1", "B", 1), "B1")
    assert push(backlog, "progress_update", progress("m1", "A", 2), "A2") == "A1"
    push(backlog, "progress_update", progress("m2", "A", 1), "m2-A1")
    assert push(backlog, "progress_update", progress("m1", "A", 3), "A3") == "A2"
    assert (len(backlog), backlog.bytes, stats.replaced) == (4, 40, 2)
    assert [backlog.pop() for _ in range(4)] == ["B-started", "B1", "m2-A1", "A3"]
    assert backlog.bytes == 0
    # Once taken, a key's packet is gone from the backlog: the next one only waits.
    push(backlog, "progress_update", progress("m1", "A", 4), "A4")
    assert push(backlog, "progress_update", progress("m1", "A", 5), "A5") == "A4"


def test_lifecycle_events_and_the_other_socket_events_are_never_replaced() -> None:
    """Only progress events have a key; every lifecycle event, media_update,
    processing_error and progress_snapshot waits as it is, however many there are."""
    unkeyed = [
        ("progress_update", lifecycle("m1", kind, "A"))
        for kind in ("ANALYSIS_QUEUED", "ANALYSIS_STARTED", "ANALYSIS_COMPLETED",
                     "ANALYSIS_FAILED")
    ] + [
        ("progress_update", lifecycle("m1", kind))
        for kind in ("PROCESSING_STARTED", "PROCESSING_COMPLETED", "PROCESSING_FAILED")
    ] + [
        ("media_update", {"id": "m1", "mediaId": "m1", "status": "COMPLETED"}),
        ("processing_error", {"mediaId": "m1", "error": "x"}),
        ("progress_snapshot", {"mediaId": "m1", "status": "PROCESSING"}),
    ]
    backlog: Backlog[str] = Backlog(BacklogLimits(), stats := BacklogStats())
    for round_ in range(3):
        for i, (name, payload) in enumerate(unkeyed):
            assert coalesce_key(name, payload) is None
            assert push(backlog, name, payload, f"{round_}-{i}") is None
    assert len(backlog) == 3 * len(unkeyed) and stats.replaced == 0
    keys = {coalesce_key("progress_update", p) for p in (
        progress("m1", "A", 1), progress("m2", "A", 1), progress("m1", "B", 1),
        progress("m1", "A", 1, run="r2"),
        progress("m1", "A", 1, event_type="VISUALIZATION_GENERATION_PROGRESS"))}
    assert len(keys) == 5


def test_the_backlog_says_which_limit_it_is_over_and_when_a_paced_sender_may_go_on() -> None:
    """Over ``max_bytes`` → "bytes", over ``max_events`` → "events"; a paced sender may
    add more only below half of both."""
    stats = BacklogStats()
    by_bytes: Backlog[str] = Backlog(BacklogLimits(max_bytes=100, max_events=1000), stats)
    for i in range(10):
        by_bytes.push(f"p{i}", 10)
        assert by_bytes.over_limit() is None
        assert by_bytes.has_room() == (i < 5)
    by_bytes.push("one more", 1)
    assert by_bytes.over_limit() == "bytes"
    by_events: Backlog[str] = Backlog(BacklogLimits(max_bytes=10**9, max_events=3), stats)
    for i in range(3):
        by_events.push(f"p{i}", 1)
    assert by_events.over_limit() is None
    by_events.push("p3", 1)
    assert by_events.over_limit() == "events"
    assert (stats.high_water_bytes, stats.high_water_events) == (101, 11)
    assert by_events.clear() == 4 and len(by_events) == 0 and by_events.bytes == 0
    with pytest.raises(ValueError, match="at least 1"):
        BacklogLimits(max_bytes=0)


# -- in a relay process -----------------------------------------------------------------

FILLER = "x" * 4000


def _user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


@pytest.mark.redis
@pytest.mark.slow
def test_a_socket_that_stops_reading_gets_every_lifecycle_event_and_the_latest_progress(
    redis_url: str, channel: str
) -> None:
    """While a socket does not read, 300 progress updates of one model pile up behind
    the full TCP buffers; when it reads again it gets every lifecycle event in order, and
    of the progress only what was already on its way plus the latest, in channel order."""
    relay = RelayProcess.cli(redis_url, channel, "--no-sweep", "--no-catch-up")
    publish = redis.Redis.from_url(redis_url)
    user = _user()
    try:
        relay.wait_subscribed()
        stalled = StalledSocket(relay.url, {"token": sign_token(SECRET, user)}, rcvbuf=4096)
        # Lifecycle fillers until packets wait in the relay (the kernel's buffers are full).
        fillers = 0
        # Twenty at a time: the whole stall must stay well inside the Engine.IO ping
        # timeout (45 s), which would end the socket, on a busy machine too.
        while relay.healthz()["backlog"]["high_water_events"] < 20:
            for _ in range(20):
                publish.publish(channel, event(user, f"fill-{fillers}", "PROCESSING_STARTED",
                                               data={"details": {"pad": FILLER}}))
                fillers += 1
        for n in range(1, 301):
            publish.publish(channel, event(
                user, "m1", "FRAME_ANALYSIS_PROGRESS", seq=n, source="w",
                data={"model_name": "A", "progress": n, "total": 300}))
        publish.publish(channel, event(user, "m1", "ANALYSIS_COMPLETED", seq=301, source="w",
                                       data={"model_name": "A"}))
        wait_until(lambda: relay.healthz()["forwarded"] == fillers + 301,
                   what="the relay to take every event")
        replaced = relay.healthz()["backlog"]["replaced"]
        stalled.read_until(lambda name, payload: payload["event"] == "ANALYSIS_COMPLETED")
        stalled.close()
    finally:
        publish.close()
        relay.stop()
    updates = stalled.named("progress_update")
    started = [u["mediaId"] for u in updates if u["event"] == "PROCESSING_STARTED"]
    assert started == [f"fill-{i}" for i in range(fillers)]
    seqs = [u["seq"] for u in updates if u["mediaId"] == "m1"]
    assert seqs == sorted(seqs) and seqs[-2:] == [300, 301]
    assert len(seqs) < 301 and replaced == 301 - len(seqs)


@pytest.mark.redis
@pytest.mark.slow
def test_a_socket_over_its_limit_is_disconnected_others_keep_receiving_and_it_resyncs(
    redis_url: str, channel: str
) -> None:
    """A socket that never reads is disconnected once 300 kB wait for it, with the reason
    logged and counted; another user's socket gets every one of its events meanwhile, in
    order; the first user's next socket gets its snapshot (the resync)."""
    keys = SnapshotKeys(f"test-backlog-{uuid.uuid4().hex[:8]}:")
    relay = RelayProcess.cli(redis_url, channel, "--no-sweep", "--snapshot-prefix", keys.prefix,
                             "--max-backlog-bytes", "300000")
    publish = redis.Redis.from_url(redis_url)
    slow_user, other_user = _user(), _user()
    tracker = SnapshotTracker(SnapshotConfig(keys), channel=channel)
    fold_each(tracker, {"media_id": "m-slow", "user_id": slow_user, "event": "PROCESSING_STARTED",
                   "data": {"filename": "a.mp4"}, "seq": 1, "source": "w"}, time.time())
    for command in tracker.take_commands():
        publish.execute_command(*command)

    async def scenario() -> tuple[Client, Client]:
        other = Client()
        await other.connect(relay.url, {"token": sign_token(SECRET, other_user)})
        stalled = await asyncio.to_thread(
            StalledSocket, relay.url, {"token": sign_token(SECRET, slow_user)}, 4096)
        sent = 0

        async def disconnected() -> int:
            health = await asyncio.to_thread(relay.healthz)
            count: int = health["backlog"]["disconnected"]["bytes"]
            return count

        while not await disconnected():
            for _ in range(10):
                publish.publish(channel, event(slow_user, f"s-{sent}", "PROCESSING_STARTED",
                                               data={"details": {"pad": FILLER}}))
                publish.publish(channel, event(
                    other_user, "m-other", "FRAME_ANALYSIS_PROGRESS", seq=sent + 1,
                    source="w", data={"model_name": "A", "progress": sent, "total": 10**6}))
                sent += 1
        await asyncio.to_thread(wait_until, lambda: relay.healthz()["sockets"] == 1, 15.0,
                                "the slow socket to go")
        got = await other.wait_for("progress_update", sent, timeout=30)
        assert [u["seq"] for u in got] == list(range(1, sent + 1))
        assert other.sio.connected
        stalled.close()
        again = Client()
        await again.connect(relay.url, {"token": sign_token(SECRET, slow_user)})
        await again.wait_for("progress_snapshot", 1)
        await other.sio.disconnect()
        await again.sio.disconnect()
        return other, again

    try:
        relay.wait_subscribed()
        _, again = asyncio.run(scenario())
        health = relay.healthz()["backlog"]
    finally:
        publish.close()
        relay.stop()
    assert [s["mediaId"] for s in again.named("progress_snapshot")] == ["m-slow"]
    assert health["disconnected"] == {"bytes": 1, "events": 0}
    assert 300_000 < health["high_water_bytes"] < 300_000 + 2 * len(FILLER)
    assert "backlog over its limit (bytes: 300000)" in relay.output
