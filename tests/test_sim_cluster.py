"""Consumers on a Redis Cluster: sharded subscriptions that follow failovers and moved
slots, and `listen`/`record` given the URL of any node."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from redis_cluster import ClusterNode, LocalCluster

from progress_sdk.sharding import channel_for, shard_channels
from simulator.cluster_subscription import ClusterSubscription
from simulator.listener import subscribe

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

FIXTURES = Path(__file__).parent / "fixtures"
# One media per shard of three: a7c3d210 -> 0, d0e5f6a8 -> 1, 9b2f0c1e -> 2.
CLI = [sys.executable, "-c", "from simulator.cli import main; main()"]
STREAMS = ["valid_audio_phases", "valid_all_failed", "valid_video_multi_model"]


def _lines(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / f"{name}.ndjson").read_bytes().splitlines() if line]


def _spublish(cluster: LocalCluster, channel: str, payload: bytes) -> int:
    with cluster.owner(channel).client() as client:
        return int(client.spublish(channel, payload))


class Collector:
    """Pumps a subscription on a thread and keeps what arrives."""

    def __init__(self, subscription: ClusterSubscription) -> None:
        self.subscription = subscription
        self.messages: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.subscription.pump(self._keep, stop=self._stop)

    def _keep(self, payload: bytes) -> bool:
        self.messages.append(payload)
        return True

    def settled(self, cluster: LocalCluster, channels: list[str],
                timeout: float = 30.0) -> list[bytes]:
        """Every message so far, once a marker SPUBLISHed now on each of ``channels`` has
        arrived (the markers removed). A shard channel's messages reach a subscriber in
        the order its master ran the SPUBLISHes, so whatever was published on it before
        this call (a duplicate included) comes first. ``timeout`` bounds a hung test."""
        markers = {f"settled {channel} {uuid.uuid4().hex}".encode(): channel
                   for channel in channels}
        for marker, channel in markers.items():
            _spublish(cluster, channel, marker)
        deadline = time.monotonic() + timeout
        while not all(marker in self.messages for marker in markers):
            assert time.monotonic() < deadline, "a marker never arrived"
            time.sleep(0.02)
        for marker in markers:
            self.messages.remove(marker)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.subscription.close()


def _until_each_channel_hears(cluster: LocalCluster, collector: Collector, channels: list[str],
                              timeout: float = 20.0) -> None:
    """Publish a marker on each channel until the collector got one from every channel."""
    deadline = time.monotonic() + timeout
    heard: set[str] = set()
    while heard != set(channels):
        assert time.monotonic() < deadline, f"never heard again on {set(channels) - heard}"
        for channel in set(channels) - heard:
            marker = f"marker {channel} {uuid.uuid4().hex}".encode()
            try:
                _spublish(cluster, channel, marker)
            except Exception:  # the cluster is still electing; try again
                continue
            time.sleep(0.1)
            if marker in collector.messages:
                heard.add(channel)


def test_shard_channels_are_subscribed_in_their_own_shards(redis_cluster):
    """Three shard channels, three masters: each SSUBSCRIBE sits on the replica of its
    slot's master (a subscription there outlives the master)."""
    channels = shard_channels(f"t-{uuid.uuid4().hex[:8]}", 3)
    subscription = subscribe(redis_cluster.url, channels)
    try:
        assert isinstance(subscription, ClusterSubscription)
        for channel in channels:
            (replica,) = redis_cluster.replicas_of(redis_cluster.owner(channel))
            with replica.client() as client:
                assert client.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1
    finally:
        subscription.close()


def test_listen_on_a_cluster_sees_every_shard_in_order(redis_cluster, tmp_path):
    """`listen --shards 3` from one node's URL receives three media spread over three
    shards, each in publish order, and the stream keeps the contract."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    streams = {name: _lines(name) for name in STREAMS}
    total = sum(len(lines) for lines in streams.values())
    listener = subprocess.Popen(
        [*CLI, "--redis-url", redis_cluster.replicas()[0].url,
         "--channel", base, "--shards", "3", "listen", "--json", "--strict",
         "--count", str(total), "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert listener.stderr is not None
    banner = listener.stderr.readline().decode()
    assert "Listening on" in banner, banner
    rounds = max(len(lines) for lines in streams.values())
    for i in range(rounds):  # interleaved, as concurrent workers would publish
        for lines in streams.values():
            if i < len(lines):
                media = json.loads(lines[i])["media_id"]
                _spublish(redis_cluster, channel_for(base, 3, media), lines[i])
    out, err = listener.communicate(timeout=40)
    assert listener.returncode == 0, err.decode()
    received = out.splitlines()
    for lines in streams.values():
        media = json.loads(lines[0])["media_id"]
        assert [r for r in received if json.loads(r)["media_id"] == media] == lines
    assert "contract: OK: 0 violations, 0 events lost" in err.decode()


def test_record_on_a_cluster_captures_the_plain_and_shard_channels(redis_cluster, tmp_path):
    """`record --shards 2` captures events from the plain channel and both shards."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "session.ndjson"
    recorder = subprocess.Popen(
        [*CLI, "--redis-url", redis_cluster.url,
         "--channel", base, "--shards", "2", "record", str(file), "--count", "3",
         "--timeout", "30"],
        stderr=subprocess.PIPE,
    )
    assert recorder.stderr is not None
    assert "Recording" in recorder.stderr.readline().decode()
    for channel in (base, f"{base}:0", f"{base}:1"):
        payload = json.dumps({"media_id": channel, "event": "PROCESSING_STARTED"}).encode()
        _spublish(redis_cluster, channel, payload)
    _, err = recorder.communicate(timeout=40)
    assert recorder.returncode == 0, err.decode()
    media = {json.loads(line)["event"]["media_id"] for line in file.read_text().splitlines()[1:]}
    assert media == {base, f"{base}:0", f"{base}:1"}


def test_subscription_outlives_a_failover_of_the_master(redis_cluster):
    """A master is killed: the replica its channel is subscribed on is promoted, and the
    subscription carries on with no move and no gap."""
    channels = shard_channels(f"t-{uuid.uuid4().hex[:8]}", 3)
    collector = Collector(ClusterSubscription(redis_cluster.url, channels).open())
    victim = redis_cluster.owner(channels[0])
    try:
        _until_each_channel_hears(redis_cluster, collector, channels)
        redis_cluster.fail_over(victim)
        _until_each_channel_hears(redis_cluster, collector, channels)
        assert collector.subscription.moves == 0
    finally:
        collector.close()
        redis_cluster.revive(victim)


def test_subscription_moves_when_its_node_dies(redis_cluster):
    """The replica a channel is subscribed on is killed: the channel is subscribed again
    on the master of its shard and hears what is published there; the subscription says
    so (on_resubscribe: the relay resyncs its sockets then), once."""
    channel = f"t-{uuid.uuid4().hex[:8]}:1"
    again: list[bool] = []
    collector = Collector(ClusterSubscription(
        redis_cluster.url, [channel], on_resubscribe=lambda: again.append(True)).open())
    assert again == []
    (replica,) = redis_cluster.replicas_of(redis_cluster.owner(channel))
    try:
        _until_each_channel_hears(redis_cluster, collector, [channel])
        assert replica.process is not None
        replica.process.kill()
        replica.process.wait(5)
        _until_each_channel_hears(redis_cluster, collector, [channel])
        assert collector.subscription.moves == 1 and again == [True]
    finally:
        collector.close()
        redis_cluster.revive(replica)


def _move_slot(cluster: LocalCluster, slot: int, source: ClusterNode, target: ClusterNode
               ) -> None:
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    for node in cluster.masters():
        with node.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)


def test_subscription_follows_a_moved_slot(redis_cluster):
    """A shard channel's slot migrates to another master: the subscription moves with it."""
    from progress_sdk.cluster import slot_of

    channel = f"t-{uuid.uuid4().hex[:8]}:0"
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    source = redis_cluster.owner(channel)
    target = next(m for m in redis_cluster.masters() if m is not source)
    try:
        _until_each_channel_hears(redis_cluster, collector, [channel])
        _move_slot(redis_cluster, slot_of(channel), source, target)
        assert redis_cluster.owner(channel) is target
        _until_each_channel_hears(redis_cluster, collector, [channel])
        assert collector.subscription.moves >= 1
    finally:
        collector.close()
        _move_slot(redis_cluster, slot_of(channel), target, source)
        redis_cluster.wait_healthy()
