"""ProgressPublisher on a real Redis Cluster: sharded pub/sub, shard channels, moved
slots and a master killed mid-run."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis
from redis_cluster import LocalCluster
from test_sim_cluster import Collector, _move_slot

from progress_sdk import ProgressPublisher
from progress_sdk.cluster import slot_of
from progress_sdk.contract import validate_lines
from progress_sdk.sharding import channel_for, shard_channels, subscribed_channels
from simulator.cluster_subscription import ClusterSubscription
from simulator.listener import Subscription

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _event(media_id: str, i: int) -> dict[str, object]:
    return {
        "media_id": media_id,
        "user_id": "u-1",
        "event": "AUDIO_EXTRACTION_START",
        "message": f"event {i}",
        "data": {"model_name": "SIGLIP-LSTM-V4", "details": {"i": i}},
    }


def _wait(collector: Collector, count: int, timeout: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while len(collector.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [json.loads(m) for m in collector.messages]


def _run_media(publisher: ProgressPublisher, media_id: str, steps: int = 20) -> None:
    with publisher.media(media_id, "u-1", filename="clip.mp4") as run, \
            run.model("SIGLIP-LSTM-V4") as model:
        for i in range(1, steps + 1):
            model.progress(i, steps)
        model.complete("FAKE", 0.9)


def test_a_node_url_publishes_with_sharded_pub_sub(redis_cluster):
    """Given a replica's URL, the publisher finds the cluster and SPUBLISHes every event,
    in order, where a sharded subscription hears it."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    try:
        with ProgressPublisher(redis_cluster.replicas()[0].url, channel) as publisher:
            for i in range(300):
                publisher.emit(_event("m-1", i))
            assert publisher.flush(10)
            assert "Redis Cluster" in repr(publisher)
        events = [json.loads(m) for m in collector.settled(redis_cluster, [channel])]
        assert [e["data"]["details"]["i"] for e in events] == list(range(300))  # type: ignore[index]
        assert publisher.stats().published == 300
    finally:
        collector.close()


def test_a_redis_cluster_client_is_accepted(redis_cluster):
    """A redis-py RedisCluster client works as the target too."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        with ProgressPublisher(client, channel) as publisher:
            publisher.emit(_event("m-1", 0))
            assert publisher.flush(10)
        assert len(collector.settled(redis_cluster, [channel])) == 1
    finally:
        collector.close()
        client.close()


def test_shards_keep_each_media_on_its_channel_in_order(redis_cluster):
    """With shards=3 each media's events travel, in order, on its own shard channel
    only, and the merged stream passes strict validation."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    collectors = {
        name: Collector(ClusterSubscription(redis_cluster.url, [name]).open())
        for name in subscribed_channels(base, 3)
    }
    media = [f"media-{i}" for i in range(12)]
    try:
        with ProgressPublisher(redis_cluster.url, base, shards=3,
                               min_progress_interval=0) as publisher:
            threads = [threading.Thread(target=_run_media, args=(publisher, m)) for m in media]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert publisher.flush(10)
        for name, collector in collectors.items():
            collector.settled(redis_cluster, [name])  # all each channel carried, no more
        expected = publisher.stats().published
        assert sum(len(c.messages) for c in collectors.values()) == expected
        assert collectors[base].messages == []
        for name in shard_channels(base, 3):
            for raw in collectors[name].messages:
                assert channel_for(base, 3, json.loads(raw)["media_id"]) == name
        assert {len(collectors[n].messages) > 0 for n in shard_channels(base, 3)} == {True}
        everything = [m for c in collectors.values() for m in c.messages]
        report = validate_lines(everything, strict=True)
        assert report.ok, report.to_text()
        assert report.lost_events == 0
    finally:
        for collector in collectors.values():
            collector.close()


@pytest.mark.redis
def test_shards_on_a_single_server_publish_to_each_shard_channel(redis_url):
    """On one server shards work too (classic PUBLISH on CHANNEL:k)."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    subscription = Subscription(client, subscribed_channels(base, 2), owns_client=True).open()
    got: list[bytes] = []
    try:
        with ProgressPublisher(redis_url, base, shards=2) as publisher:
            for media in ("a7c3d210", "9b2f0c1e", "d0e5f6a8"):
                publisher.emit(_event(media, 0))
            assert publisher.flush(5)
        subscription.pump(lambda raw: got.append(raw) is None, count=3, timeout=5)
    finally:
        subscription.close()
    assert sorted(json.loads(raw)["media_id"] for raw in got) == ["9b2f0c1e", "a7c3d210",
                                                                  "d0e5f6a8"]


def test_a_moved_slot_is_followed_without_loss(redis_cluster: LocalCluster):
    """The channel's slot migrates to another master between batches: the MOVED replies
    are sent again to the new owner; nothing is lost or counted as dropped."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    source = redis_cluster.owner(channel)
    target = next(m for m in redis_cluster.masters() if m is not source)
    try:
        with ProgressPublisher(redis_cluster.url, channel) as publisher:
            for i in range(50):
                publisher.emit(_event("m-1", i))
            assert publisher.flush(10)
            _move_slot(redis_cluster, slot_of(channel), source, target)
            for i in range(50, 100):
                publisher.emit(_event("m-1", i))
            assert publisher.flush(10)
        _wait(collector, 100)  # what the source master published before the move too
        events = [json.loads(m) for m in collector.settled(redis_cluster, [channel])]
        assert [e["data"]["details"]["i"] for e in events] == list(range(100))  # type: ignore[index]
        stats = publisher.stats()
        assert stats.published == 100 and stats.dropped == {}
    finally:
        collector.close()
        _move_slot(redis_cluster, slot_of(channel), target, source)
        redis_cluster.wait_healthy()


def test_a_simulation_over_the_cluster_keeps_the_contract_strictly(redis_cluster):
    """`progress-sim run --shards 3` against a cluster node: every event the publisher
    sent reaches the run's own sharded subscriber, and the strict validator finds
    nothing wrong."""
    from click.testing import CliRunner

    from simulator.cli import cli

    channel = f"t-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(cli, [
        "--redis-url", redis_cluster.url, "--channel", channel, "--shards", "3",
        "run", "--speed", "0", "--seed", "5", "--media", "9", "--concurrency", "9", "-q",
    ])
    assert result.exit_code == 0, result.output
    assert "contract:   OK" in result.output and "never arrived" not in result.output


def test_a_batch_hook_s_extras_run_on_their_key_s_master_before_the_events(redis_cluster):
    """Extra commands of a batch hook go to the master of their key's slot (not the
    channel's), and are written before the events they go with: a consumer reading the
    key when an event arrives always finds that event's write."""
    # A channel and key on different masters (a random pair shares one a third of the time).
    for _ in range(100):
        channel = f"t-{uuid.uuid4().hex[:8]}"
        key = f"{channel}:hooked"
        if redis_cluster.owner(key).port != redis_cluster.owner(channel).port:
            break
    assert redis_cluster.owner(key).port != redis_cluster.owner(channel).port
    reader = redis.RedisCluster.from_url(redis_cluster.url)
    seen: list[tuple[int, int]] = []

    def keep(payload: bytes) -> bool:
        seq = json.loads(payload)["seq"]
        seen.append((seq, int(reader.get(key) or 0)))
        return True

    def hook(source: str, events) -> list[tuple[bytes, ...]]:
        return [(b"SET", key.encode(), str(events[-1].seq).encode())]

    subscription = ClusterSubscription(redis_cluster.url, [channel]).open()
    stop = threading.Event()
    pump = threading.Thread(target=subscription.pump, args=(keep,), kwargs={"stop": stop})
    pump.start()
    try:
        with ProgressPublisher(redis_cluster.url, channel, batch_hook=hook) as publisher:
            for i in range(60):
                publisher.emit(_event("m-1", i))
                if i % 3 == 0:
                    assert publisher.flush(10)
            assert publisher.flush(10)
        deadline = time.monotonic() + 15
        while len(seen) < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        pump.join(5)
        subscription.close()
    assert len(seen) == 60
    assert all(written >= seq for seq, written in seen), seen
    assert int(reader.get(key)) == 60
