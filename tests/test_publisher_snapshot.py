"""The publisher keeps each media's snapshot in Redis, in the same pipeline as the publish."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis
from conftest import Subscriber

from progress_sdk import ProgressPublisher
from progress_sdk import defaults as d
from progress_sdk.exceptions import ConfigurationError
from progress_sdk.sharding import channel_for
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, read_media, read_user

pytestmark = pytest.mark.redis


@pytest.fixture
def config() -> SnapshotConfig:
    """Snapshot settings under a prefix no other test uses."""
    return SnapshotConfig(SnapshotKeys(f"test-pubsnap-{uuid.uuid4().hex[:8]}:"), ttl=60)


def run_job(publisher: ProgressPublisher, media_id: str = "m1") -> None:
    """One media, one model completed after progress, one failed."""
    with publisher.media(media_id, "u1", filename="clip.mp4", run_id="r1") as run:
        with run.model("SIGLIP-LSTM-V4") as model:
            for i in range(1, 11):
                model.progress(i, 10, phase="frame_analysis")
            model.complete(prediction="FAKE", confidence=0.75)
        with run.model("LIP-FD-V1") as model:
            model.fail("no face found")


def test_a_tracked_job_leaves_its_final_snapshot(
    redis_url: str, channel: str, config: SnapshotConfig, subscriber: Subscriber
) -> None:
    """After the run, Redis holds the media's final state and the last seq published."""
    with ProgressPublisher(redis_url, channel, snapshots=config) as publisher:
        run_job(publisher)
        assert publisher.flush(5)
    client = redis.Redis.from_url(redis_url)
    snap = read_media(client, config.keys, "m1")
    last = json.loads(subscriber.settled()[-1])  # flushed: the last one published
    assert snap is not None and snap.status == "completed" and snap.filename == "clip.mp4"
    assert snap.run_id == "r1" and snap.user_id == "u1"
    assert (snap.seq, snap.source) == (last["seq"], last["source"])
    siglip, lip = snap.models["SIGLIP-LSTM-V4"], snap.models["LIP-FD-V1"]
    assert (siglip.status, siglip.progress, siglip.total, siglip.prediction) == (
        "completed", 10, 10, "FAKE",
    )
    assert (lip.status, lip.error) == ("failed", "no face found")
    assert [s.media_id for s in read_user(client, config.keys, "u1")] == ["m1"]
    assert 0 < client.pttl(config.keys.media("m1")) <= 60_000


def test_snapshots_can_be_turned_off(
    redis_url: str, channel: str, config: SnapshotConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """snapshots=False, or PROGRESS_SDK_SNAPSHOTS=0, writes nothing besides the events."""
    client = redis.Redis.from_url(redis_url)
    with ProgressPublisher(redis_url, channel, snapshots=False) as publisher:
        run_job(publisher, "off-1")
    monkeypatch.setenv(d.ENV_SNAPSHOTS, "0")
    monkeypatch.setenv(d.ENV_SNAPSHOT_PREFIX, config.keys.prefix)
    with ProgressPublisher(redis_url, channel) as publisher:
        assert publisher.snapshots is None
        run_job(publisher, "off-2")
    default = SnapshotKeys()
    assert not client.exists(default.media("off-1"), config.keys.media("off-2"))
    with pytest.raises(ConfigurationError, match="snapshots must be"):
        ProgressPublisher(redis_url, channel, snapshots="yes")  # type: ignore[arg-type]


@pytest.mark.slow
def test_subscribe_then_read_gives_no_gap_under_a_busy_stream(
    redis_url: str, channel: str, config: SnapshotConfig
) -> None:
    """A reader that subscribes, then reads the snapshot, misses no event newer than it."""
    publisher = ProgressPublisher(redis_url, channel, snapshots=config, min_progress_interval=0)
    started = threading.Event()

    def job() -> None:
        with publisher.media("busy", "u1") as run, run.model("M") as model:
            started.set()
            for i in range(1, 10_001):
                model.progress(i, 10_000)
                if i % 10 == 0:
                    time.sleep(0.002)  # long enough a stream for readers to join it
            model.complete()

    worker = threading.Thread(target=job)
    worker.start()
    started.wait(5)
    client = redis.Redis.from_url(redis_url)
    readers: list[tuple[int, Subscriber]] = []
    try:
        while worker.is_alive() and len(readers) < 8:
            sub = Subscriber(redis_url, channel)  # subscribed before reading
            snap = read_media(client, config.keys, "busy")
            readers.append((snap.seq if snap and snap.seq else 0, sub))
        worker.join(60)
        assert publisher.flush(10)
        assert len(readers) >= 3, "the job ended before readers could join it"
        final = read_media(client, config.keys, "busy")
        assert final is not None and final.status == "completed" and final.seq
        for snap_seq, sub in readers:
            sub.wait_for(final.seq - snap_seq, timeout=5)
            seqs = [json.loads(m)["seq"] for m in sub.messages]
            newer = [s for s in seqs if s > snap_seq]
            assert newer == list(range(snap_seq + 1, final.seq + 1)), (
                f"reader joined at seq {snap_seq}: first live seqs {newer[:3]}"
            )
    finally:
        publisher.close()
        for _, sub in readers:
            sub.close()


def test_with_shard_channels_the_snapshot_names_the_media_s_own_channel(
    redis_url: str, channel: str, config: SnapshotConfig
) -> None:
    """shards=3: the snapshot records the shard channel, where the sweeper then publishes."""
    with ProgressPublisher(redis_url, channel, snapshots=config, shards=3) as publisher:
        run_job(publisher, "sharded")
        assert publisher.flush(5)
    snap = read_media(redis.Redis.from_url(redis_url), config.keys, "sharded")
    assert snap is not None and snap.channel == channel_for(channel, 3, "sharded")
    assert snap.channel != channel


def test_a_snapshot_write_redis_refuses_is_counted_and_logged_once(
    redis_url: str, channel: str, config: SnapshotConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's snapshot index holding a string (WRONGTYPE): the media's events still go
    out, and each refused snapshot write is counted in stats().extra_failed, logged once.
    (A media's own key holding a string is simply replaced by its run's first write.)"""
    client = redis.Redis.from_url(redis_url)
    client.set(config.keys.user("u1"), "not a sorted set", ex=60)
    with ProgressPublisher(redis_url, channel, snapshots=config) as publisher:
        with publisher.media("clash", "u1") as run:
            assert publisher.flush(5)  # a batch of its own: the start
            with run.model("M") as model:
                model.complete()
        assert publisher.flush(5)
        stats = publisher.stats()
    assert stats.dropped == {} and stats.published == stats.accepted
    assert stats.extra_failed >= 2  # at least the index's write of each batch
    refusals = [r for r in caplog.records if "WRONGTYPE" in r.getMessage()]
    assert len(refusals) == 1
