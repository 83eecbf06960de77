"""The dead-worker sweeper, against the real Redis server and real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from conftest import Subscriber
from snapshot_oracle import fold_each

from progress_sdk import defaults as d
from progress_sdk.contract import validate_lines
from progress_sdk.exceptions import ConfigurationError
from progress_sdk.sharding import user_channel
from progress_sdk.snapshot import (
    SnapshotConfig,
    SnapshotKeys,
    SnapshotTracker,
    owners_of,
    read_media,
)
from progress_sdk.sweeper import Sweeper

pytestmark = pytest.mark.redis
WORKER = Path(__file__).with_name("snapshot_worker.py")


@pytest.fixture
def config() -> SnapshotConfig:
    """Snapshot settings under a prefix no other test uses."""
    return SnapshotConfig(SnapshotKeys(f"test-sweep-{uuid.uuid4().hex[:8]}:"), ttl=30)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    """A client of the real Redis server."""
    return redis.Redis.from_url(redis_url)


def start_media(client: redis.Redis, config: SnapshotConfig, media_id: str, at: float) -> None:
    """Write the snapshot of a media with one completed and one running model."""
    tracker = SnapshotTracker(config)
    for seq, (event, data) in enumerate([
        ("PROCESSING_STARTED", {}), ("ANALYSIS_STARTED", {"model_name": "A"}),
        ("ANALYSIS_COMPLETED", {"model_name": "A"}), ("ANALYSIS_STARTED", {"model_name": "B"}),
    ], start=1):  # fmt: skip
        fold_each(tracker, {"media_id": media_id, "user_id": "u", "event": event, "data": data,
                       "seq": seq, "source": "w"}, at)
    for command in tracker.take_commands():
        client.execute_command(*command)


def test_a_stale_media_gets_failure_events_for_running_models_then_processing_failed(
    client: redis.Redis, config: SnapshotConfig, redis_url: str, channel: str,
    subscriber: Subscriber,
) -> None:
    """Running models fail, completed ones stay, and the media fails with the reason."""
    start_media(client, config, "m1", time.time() - 60)
    start_media(client, config, "fresh", time.time())
    sweeper = Sweeper(client, channel=channel, config=config, stale_after=30)
    result = sweeper.sweep()
    assert result.leader and result.failed == ("m1",) and result.events == 2
    events = [json.loads(m) for m in subscriber.settled()]  # the sweep returned
    assert [(e["event"], e["data"].get("model_name")) for e in events] == [
        ("ANALYSIS_FAILED", "B"), ("PROCESSING_FAILED", None),
    ]
    assert all(e["data"]["error_message"] == d.SWEEP_ERROR_MESSAGE for e in events)
    assert [e["seq"] for e in events] == [1, 2] and events[0]["user_id"] == "u"
    snap = read_media(client, config.keys, "m1")
    assert snap is not None and snap.status == "failed"
    assert snap.error == d.SWEEP_ERROR_MESSAGE
    assert {k: m.status for k, m in snap.models.items()} == {"A": "completed", "B": "failed"}
    assert client.zscore(config.keys.inflight, "m1") is None
    assert 0 < client.pttl(config.keys.media("m1")) <= 30_000
    assert sweeper.sweep(now=time.time() + 10).failed == ()  # nothing twice
    assert client.zscore(config.keys.inflight, "fresh") is not None


def test_a_swept_medias_failure_also_goes_to_its_users_channel(
    client: redis.Redis, config: SnapshotConfig, redis_url: str, channel: str,
    subscriber: Subscriber,
) -> None:
    """Relays on user channels (issue #18) read ``<channel>:user:<user_id>`` only: the
    failure events go there too, the same bytes in the same order."""
    mine = Subscriber(redis_url, user_channel(channel, "u"))
    try:
        start_media(client, config, "m1", time.time() - 60)
        assert Sweeper(client, channel=channel, config=config, stale_after=30).sweep().events == 2
        assert mine.wait_for(2) == subscriber.wait_for(2)
        assert len(mine.settled()) == 2
    finally:
        mine.close()


def test_a_worker_that_resumes_after_the_sweep_cannot_reopen_its_media(
    client: redis.Redis, config: SnapshotConfig, channel: str
) -> None:
    """The stopped worker's next progress write leaves the media failed and swept."""
    tracker = SnapshotTracker(config)
    event = {"media_id": "zombie", "user_id": "u", "data": {"model_name": "B"}, "source": "w"}
    fold_each(tracker, {**event, "event": "PROCESSING_STARTED", "seq": 1}, time.time() - 60)
    fold_each(tracker, {**event, "event": "ANALYSIS_STARTED", "seq": 2}, time.time() - 60)
    for command in tracker.take_commands():
        client.execute_command(*command)
    assert Sweeper(client, channel=channel, config=config, stale_after=30).sweep().failed
    fold_each(tracker, {**event, "event": "FRAME_ANALYSIS_PROGRESS", "seq": 3,
                   "data": {"model_name": "B", "progress": 5, "total": 9}}, time.time())
    for command in tracker.take_commands():
        client.execute_command(*command)
    snap = read_media(client, config.keys, "zombie")
    assert snap is not None and snap.status == "failed"
    assert client.zscore(config.keys.inflight, "zombie") is None


def test_only_the_lease_holder_acts_until_it_lets_go(
    client: redis.Redis, config: SnapshotConfig, channel: str
) -> None:
    """A second sweeper does nothing while the first holds the lease, then takes over."""
    first = Sweeper(client, channel=channel, config=config, lease=30)
    second = Sweeper(client, channel=channel, config=config, lease=30)
    assert first.sweep().leader and first.sweep().leader
    assert not second.sweep().leader
    first.release_lease()
    assert second.sweep().leader and not first.sweep().leader
    second.release_lease()


def test_racing_sweepers_never_publish_a_failure_twice(
    client: redis.Redis, config: SnapshotConfig, redis_url: str, channel: str,
    subscriber: Subscriber,
) -> None:
    """Sweepers whose leases lapse constantly still fail each media exactly once."""
    old = time.time() - 60
    media = [f"m{i}" for i in range(40)]
    for media_id in media:
        start_media(client, config, media_id, old)
    sweepers = [Sweeper(redis.Redis.from_url(redis_url), channel=channel, config=config,
                        lease=0.001, stale_after=30) for _ in range(3)]
    barrier = threading.Barrier(len(sweepers))

    def race(sweeper: Sweeper) -> None:
        barrier.wait()
        for _ in range(20):
            sweeper.sweep()

    threads = [threading.Thread(target=race, args=(s,)) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    events = [json.loads(m) for m in subscriber.settled()]  # a duplicate included
    finals = [e["media_id"] for e in events if e["event"] == "PROCESSING_FAILED"]
    assert sorted(finals) == sorted(media)
    assert len(events) == 80


def test_stale_after_lease_and_republish_after_must_be_positive(client: redis.Redis) -> None:
    """Settings that would sweep everything at once, never hold a lease or publish a
    claimed failure again while its claimer is still publishing it are refused."""
    with pytest.raises(ConfigurationError, match="stale_after"):
        Sweeper(client, stale_after=0)
    with pytest.raises(ConfigurationError, match="lease"):
        Sweeper(client, lease=-1)
    with pytest.raises(ConfigurationError, match="republish_after"):
        Sweeper(client, republish_after=0)


@pytest.mark.slow
def test_a_sigkilled_worker_process_gets_its_media_failed_and_the_stream_keeps_the_contract(
    client: redis.Redis, config: SnapshotConfig, redis_url: str, channel: str,
    subscriber: Subscriber,
) -> None:
    """A plain worker killed mid-run: once its liveness key lapses, the sweeper closes its
    media, by the contract's rules."""
    env = {**os.environ, d.ENV_LIVENESS_TTL: "1"}
    worker = subprocess.Popen([sys.executable, str(WORKER), redis_url, channel,
                               config.keys.prefix, "doomed", "u9"], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            snap = read_media(client, config.keys, "doomed")
            row = snap.models.get("B") if snap is not None else None
            if row is not None and row.progress:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the worker never reported progress")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    # Its liveness keys lapse within 1 s (polled; the bound only ends a hung test). Then
    # one sweep, its clock past the owner grace after the media's last news, fails it:
    # no real wait for the grace and no sweeping "until it happens".
    snap = read_media(client, config.keys, "doomed")
    assert snap is not None and not snap.terminal
    owners = owners_of(snap)
    assert owners, "the worker's media names no owner"
    deadline = time.monotonic() + 60
    while any(client.exists(config.keys.alive(owner)) for owner in owners):
        assert time.monotonic() < deadline, "the killed worker's liveness key never lapsed"
        time.sleep(0.05)
    sweeper = Sweeper(client, channel=channel, config=config)
    last = max(snap.updated_at, snap.alive_at or 0.0)
    result = sweeper.sweep(max(time.time(), last + d.SWEEP_OWNER_GRACE + 1))
    assert result.failed == ("doomed",), result
    snap = read_media(client, config.keys, "doomed")
    assert snap is not None and snap.status == "failed" and snap.error == d.SWEEP_ERROR_MESSAGE
    assert sweeper.sweep(time.time() + 60).failed == ()  # failed once: nothing to do again
    lines = subscriber.settled()
    report = validate_lines(lines, strict=True)
    assert report.ok, report.to_text()
    last = json.loads(lines[-1])
    assert last["event"] == "PROCESSING_FAILED" and last["data"]["error_message"] == (
        d.SWEEP_ERROR_MESSAGE
    )
    assert [json.loads(x)["event"] for x in lines].count("PROCESSING_FAILED") == 1
