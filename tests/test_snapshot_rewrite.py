"""A publisher's snapshots written whole again for a server that lost its data
(``SnapshotTracker.rewrite_commands``), and the transport that asks for them on a
connection to a new server (``RedisTransport.on_new_server``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
import redis
from own_redis import OwnRedis

from progress_sdk import ProgressPublisher
from progress_sdk.snapshot import (
    SnapshotConfig,
    SnapshotKeys,
    SnapshotTracker,
    read_media,
    read_user,
)
from progress_sdk.transport import Command, RedisTransport


def ev(event: str, seq: int, media: str = "m1", **data: Any) -> dict[str, Any]:
    return {
        "media_id": media, "user_id": "u1", "event": event, "message": event, "data": data,
        "schema_version": 1, "seq": seq, "source": "w1", "run_id": "r1",
        "timestamp": "2026-11-26T05:00:00.000000Z",
    }  # fmt: skip


def run(client: fakeredis.FakeRedis, commands: Sequence[Sequence[Any]]) -> None:
    for command in commands:
        client.execute_command(*command)


def test_a_server_that_lost_every_key_gets_each_snapshot_whole_from_the_rewrite() -> None:
    """After a flush, the plain progress writes would leave a hash without its status,
    user or other rows, in no index; the rewrite puts back the running media and the
    finished one (with the expiry it has left) as the tracker holds them."""
    clock = [0.0]
    config = SnapshotConfig(SnapshotKeys("rw:"), liveness_ttl=None)
    tracker = SnapshotTracker(config, clock=lambda: clock[0])
    client = fakeredis.FakeRedis()
    tracker.apply_batch([ev("PROCESSING_STARTED", 1, filename="a.mp4"),
                         ev("ANALYSIS_STARTED", 2, model_name="A"),
                         ev("ANALYSIS_STARTED", 3, model_name="B"),
                         ev("PROCESSING_STARTED", 1, media="m2", filename="b.mp4"),
                         ev("PROCESSING_COMPLETED", 2, media="m2")], lambda _: 100.0)
    run(client, tracker.take_commands())
    before = {m: read_media(client, config.keys, m) for m in ("m1", "m2")}
    client.flushall()  # the restart without persistence
    tracker.apply_batch(
        [ev("FRAME_ANALYSIS_PROGRESS", 4, model_name="B", progress=1, total=2)], lambda _: 101.0)
    partial = tracker.take_commands()
    clock[0] = 60.0
    run(client, [*tracker.rewrite_commands(), *partial])
    m1, m2 = read_media(client, config.keys, "m1"), read_media(client, config.keys, "m2")
    assert m1 is not None and m2 is not None
    assert (m1.status, m1.filename, m1.user_id, sorted(m1.models), m1.seq) == (
        "running", "a.mp4", "u1", ["A", "B"], 4)
    assert m1.models["B"].progress == 1
    assert m2 == before["m2"]
    assert 0 < client.pttl(config.keys.media("m2")) <= (config.ttl - 60.0) * 1000
    assert [s.media_id for s in read_user(client, config.keys, "u1")] == ["m2", "m1"]
    assert client.zrange(config.keys.inflight, 0, -1) == [b"m1"]


def test_a_resent_tail_after_the_end_folds_onto_the_ended_run() -> None:
    """A batch cut mid-way is sent again from its first unconfirmed event; when the
    tracker saw the run end, the tail folds onto that end, not onto nothing."""
    config = SnapshotConfig(SnapshotKeys("rw:"), liveness_ttl=None)
    tracker = SnapshotTracker(config)
    events = [ev("PROCESSING_STARTED", 1, filename="a.mp4"),
              ev("ANALYSIS_COMPLETED", 2, model_name="A", prediction="REAL"),
              ev("ANALYSIS_COMPLETED", 3, model_name="B", prediction="FAKE"),
              ev("PROCESSING_COMPLETED", 4)]
    tracker.apply_batch(events, lambda _: 100.0)
    tracker.take_commands()
    tracker.apply_batch(events[2:], lambda _: 100.0)  # the tail, again
    tracker.take_commands()
    client = fakeredis.FakeRedis()
    run(client, tracker.rewrite_commands())
    got = read_media(client, config.keys, "m1")
    assert got is not None and (got.status, got.filename, sorted(got.models)) == (
        "completed", "a.mp4", ["A", "B"])


@pytest.mark.redis
def test_the_transport_writes_the_rewrite_first_on_a_restarted_server_only() -> None:
    """A new connection to the same server writes nothing more; one to a restarted
    server writes ``on_new_server``'s commands before the batch's own."""
    server = OwnRedis().start()
    transport = RedisTransport(server.url, "rw-channel")
    asked: list[int] = []

    def rewrite() -> list[Command]:
        asked.append(1)
        return [("SET", "rw:marker", "1")]

    transport.on_new_server = rewrite
    try:
        assert transport.publish([b"{}"], [("INCR", "rw:n")]).published == 1
        transport.close()  # a new connection, the same server
        assert transport.publish([b"{}"], [("INCR", "rw:n")]).published == 1
        assert asked == []
        server.kill()
        server.start()
        assert transport.publish([b"{}"], [("INCR", "rw:n")]).published == 1
        assert asked == [1]
        check = redis.Redis(port=server.port)
        assert check.get("rw:marker") == b"1" and check.get("rw:n") == b"1"
        check.close()
    finally:
        transport.close()
        server.kill()


@pytest.mark.redis
def test_a_publisher_rewrites_its_media_on_a_redis_restarted_empty() -> None:
    """A real publisher with a media in flight: after Redis restarts empty, its next
    event reaches a server that holds the media's whole snapshot again, and its
    liveness key."""
    server = OwnRedis().start()
    keys = SnapshotKeys("rwp:")
    publisher = ProgressPublisher(server.url, "rwp", snapshots=SnapshotConfig(keys),
                                  min_progress_interval=0)
    try:
        media = publisher.media("m1", "u1", filename="a.mp4").__enter__()
        model = media.model("A").__enter__()
        model.progress(1, 4)
        assert publisher.flush(10)
        server.kill()
        server.start()
        model.progress(2, 4)
        assert publisher.flush(30)
        check = redis.Redis(port=server.port)
        got = read_media(check, keys, "m1")
        assert got is not None
        assert (got.status, got.filename, got.models["A"].progress) == ("running", "a.mp4", 2)
        assert [s.media_id for s in read_user(check, keys, "u1")] == ["m1"]
        assert check.exists(keys.alive(publisher.source))
        check.close()
    finally:
        publisher.close()
        server.kill()


@pytest.mark.redis
def test_a_silent_publisher_rewrites_its_media_within_a_liveness_refresh() -> None:
    """A media in flight whose step is silent: after Redis restarts empty, its whole
    snapshot is back without another event (the sender's liveness timer reconnects)."""
    server = OwnRedis().start()
    keys = SnapshotKeys("rws:")
    config = SnapshotConfig(keys, liveness_ttl=0.6)
    publisher = ProgressPublisher(server.url, "rws", snapshots=config, min_progress_interval=0)
    try:
        media = publisher.media("m1", "u1", filename="a.mp4").__enter__()
        media.model("A").__enter__().progress(1, 4)
        assert publisher.flush(10)
        server.kill()
        server.start()
        check = redis.Redis(port=server.port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not read_user(check, keys, "u1"):
            time.sleep(0.05)
        got = read_media(check, keys, "m1")
        assert got is not None
        assert (got.status, got.filename, got.models["A"].progress) == ("running", "a.mp4", 1)
        check.close()
    finally:
        publisher.close()
        server.kill()
