"""Snapshots on a real Redis Cluster: written beside the sharded publish, read by a relay's
catch-up, swept when a worker dies (each key routed to its own master)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_cluster import LocalCluster
from relay_support import SECRET, RelayProcess, sockets_joining_a_busy_job
from snapshot_oracle import fold_each
from test_sim_cluster import Collector

from progress_sdk import ProgressPublisher
from progress_sdk import defaults as d
from progress_sdk.cluster import client_for, slot_of
from progress_sdk.contract import validate_lines
from progress_sdk.snapshot import (
    SnapshotConfig,
    SnapshotKeys,
    SnapshotTracker,
    owners_of,
    read_media,
    read_user,
)
from progress_sdk.sweeper import Sweeper
from simulator.catchup_check import check_late_join
from simulator.cluster_subscription import ClusterSubscription
from simulator.relay import sign_token
from simulator.relay.routing import RepeatFilter

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
BUSY_JOB = Path(__file__).with_name("busy_job.py")


@pytest.fixture
def keys() -> SnapshotKeys:
    """A snapshot prefix no other test uses."""
    return SnapshotKeys(f"test-snapclust-{uuid.uuid4().hex[:8]}:")


def test_a_run_on_a_cluster_writes_snapshots_on_every_master(
    redis_cluster: LocalCluster, keys: SnapshotKeys
) -> None:
    """Media whose snapshots live on different masters all get theirs written, in flight
    and finished, with the user's index and the in-flight index kept."""
    channel, user = f"t-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:6]}"
    media = [f"m-{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    client = client_for(redis_cluster.url)
    owners = {redis_cluster.owner(keys.media(m)).port for m in media}
    assert len(owners) >= 2, "the media's keys should span masters"
    config = SnapshotConfig(keys)
    with ProgressPublisher(redis_cluster.url, channel, snapshots=config, shards=3) as pub:
        runs = [pub.media(m, user, filename=f"{m}.mp4").__enter__() for m in media]
        models = [run.model("SIGLIP-LSTM-V4").__enter__() for run in runs]
        for model in models:
            model.progress(1, 4)
        assert pub.flush(10)
        running = [read_media(client, keys, m) for m in media]
        assert [s.status if s else None for s in running] == ["running"] * 6
        assert running[0] is not None and running[0].models["SIGLIP-LSTM-V4"].progress == 1
        assert sorted(x.decode() for x in client.zrange(keys.inflight, 0, -1)) == sorted(media)
        for model, run in zip(models, runs, strict=True):
            model.complete("FAKE", 0.9)
            run.__exit__(None, None, None)
        assert pub.flush(10)
    finished = read_user(client, keys, user)
    assert sorted(s.media_id for s in finished) == sorted(media)
    assert {s.status for s in finished} == {"completed"}
    assert client.zrange(keys.inflight, 0, -1) == []


def test_a_socket_joining_mid_run_on_a_cluster_gets_snapshots_then_live_events(
    redis_cluster: LocalCluster, keys: SnapshotKeys
) -> None:
    """A relay on the cluster sends sockets that connect while a job streams their
    snapshot first, then live events without gap or duplicate, ending as a socket that
    was there from the start."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    relay = RelayProcess.cli(redis_cluster.url, channel, "--snapshot-prefix", keys.prefix,
                             "--no-sweep")
    user = f"u-{uuid.uuid4().hex[:8]}"
    token = sign_token(SECRET, user)
    try:
        relay.wait_subscribed()

        early, late = sockets_joining_a_busy_job(
            relay.url, token,
            [sys.executable, str(BUSY_JOB), redis_cluster.url, channel, keys.prefix, user,
             "2000"], 3, redis_url=redis_cluster.url, channel=channel, user_id=user,
        )
        assert late, "the job ended before a socket could join it"
        for index, client in enumerate(late):
            assert check_late_join(list(early.events), list(client.events),
                                   f"late socket {index}") == []
        assert any(s["status"] == "running" for c in late
                   for s in c.named("progress_snapshot")), "no socket joined mid-run"
    finally:
        relay.stop()


def test_the_sweeper_on_a_cluster_fails_the_media_of_a_sigkilled_worker(
    redis_cluster: LocalCluster, keys: SnapshotKeys
) -> None:
    """A plain worker process killed mid-run on a cluster: a sweeper given a node's URL
    writes the failure into the snapshot and publishes it on the sharded channel, once."""
    channel, user = f"t-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:6]}"
    client = client_for(redis_cluster.url)
    assert slot_of(keys.media("busy")) != slot_of(channel)
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    worker = subprocess.Popen([sys.executable, str(BUSY_JOB), redis_cluster.url, channel,
                               keys.prefix, user, "1000000"],
                              env={**os.environ, d.ENV_LIVENESS_TTL: "1"})
    try:
        deadline = time.monotonic() + 20
        snap = None
        while time.monotonic() < deadline and not (snap and snap.models):
            snap = read_media(client, keys, "busy")
            time.sleep(0.05)
        assert snap is not None and snap.models, "the worker never reported on the cluster"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        # Its liveness key lapses within 1 s (polled; the bound only ends a hung test);
        # then one sweep, its clock past the owner grace, fails the media.
        snap = read_media(client, keys, "busy")
        assert snap is not None and not snap.terminal and owners_of(snap)
        deadline = time.monotonic() + 60
        while any(client.exists(keys.alive(owner)) for owner in owners_of(snap)):
            assert time.monotonic() < deadline, "the killed worker's liveness key never lapsed"
            time.sleep(0.05)
        sweeper = Sweeper(client_for(redis_cluster.url), channel=channel,
                          config=SnapshotConfig(keys), stale_after=0.5)
        last = max(snap.updated_at, snap.alive_at or 0.0)
        assert sweeper.sweep(max(time.time(), last + d.SWEEP_OWNER_GRACE + 1)).failed == ("busy",)
        assert sweeper.sweep(time.time() + 60).failed == ()  # failed once: nothing to do again
        snap = read_media(client, keys, "busy")
        assert snap is not None and snap.error == d.SWEEP_ERROR_MESSAGE, snap
        # The sweeps have returned: whatever they published, a second failure included,
        # arrives before a marker published now on the same shard channel.
        lines = [m.decode() for m in _settled(client, collector, channel)]
    finally:
        if worker.poll() is None:
            worker.kill()
        collector.close()
    finals = [json.loads(x) for x in lines if "PROCESSING_FAILED" in x]
    assert len(finals) == 1 and finals[0]["data"]["error_message"] == d.SWEEP_ERROR_MESSAGE
    assert client.zrange(keys.inflight, 0, -1) == []
    report = validate_lines(lines, strict=True)
    assert report.ok, report.to_text()


class SecondPublishFails(redis.RedisCluster):
    """A cluster client whose second SPUBLISH raises, once: a sweeper that lost Redis (or
    died) between its claim and the last of its publishes."""

    failed = False
    published = 0

    def spublish(self, channel: Any, message: Any) -> Any:
        self.published += 1
        if self.published == 2 and not self.failed:
            self.failed = True
            raise redis.ConnectionError("connection lost after the claim")
        return super().spublish(channel, message)


def _wait_until_heard(client: redis.RedisCluster, collector: Collector, channel: str) -> None:
    deadline = time.monotonic() + 20
    marker = f"marker {uuid.uuid4().hex}".encode()
    while marker not in collector.messages:
        assert time.monotonic() < deadline, "the subscription never heard its channel"
        client.spublish(channel, marker)
        time.sleep(0.1)


def _settled(client: redis.RedisCluster, collector: Collector, channel: str,
             timeout: float = 30.0) -> list[bytes]:
    """Every message of ``channel`` so far but markers, once a marker published now has
    arrived. A shard channel's messages reach a subscriber in the order its master ran the
    SPUBLISHes, so anything published before this call (a duplicate included) comes
    first: no sleep "for a second copy to show up". ``timeout`` only bounds a hung test."""
    marker = f"marker {uuid.uuid4().hex}".encode()
    client.spublish(channel, marker)
    deadline = time.monotonic() + timeout
    while marker not in collector.messages:
        assert time.monotonic() < deadline, "the marker never arrived"
        time.sleep(0.02)
    return [m for m in collector.messages if not m.startswith(b"marker ")]


def test_a_sweeper_stopped_between_its_claim_and_its_publishes_is_completed_by_the_next(
    redis_cluster: LocalCluster, keys: SnapshotKeys
) -> None:
    """A claim on a cluster whose failure events did not all go out is published again by a
    later sweep once its grace period is over (not before: its claimer may still be at
    it), and the consumer, dropping repeats by (source, media_id, seq), gets each event
    once and the media's PROCESSING_FAILED."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    config = SnapshotConfig(keys)
    client = client_for(redis_cluster.url)
    tracker = SnapshotTracker(config)
    for seq, (event, model) in enumerate([("PROCESSING_STARTED", None),
                                          ("ANALYSIS_STARTED", "A"),
                                          ("ANALYSIS_STARTED", "B")], start=1):
        fold_each(tracker, {"media_id": "lost", "user_id": "u", "event": event, "seq": seq,
                       "data": {"model_name": model} if model else {}, "source": "w"},
                      time.time() - 60)
    for command in tracker.take_commands():
        client.execute_command(*command)
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    try:
        _wait_until_heard(client, collector, channel)
        flaky = SecondPublishFails.from_url(redis_cluster.url)
        sweeper = Sweeper(flaky, channel=channel, config=config, stale_after=30,
                          republish_after=5)
        now = time.time()
        with pytest.raises(redis.ConnectionError):
            sweeper.sweep(now)
        snap = read_media(client, keys, "lost")
        assert snap is not None and snap.status == "failed"  # claimed: no sweeper fails it
        assert sweeper.sweep(now + 1).republished == ()  # its claimer may still be at it
        other = Sweeper(client_for(redis_cluster.url), channel=channel, config=config,
                        stale_after=30, republish_after=5)
        sweeper.release_lease()
        result = other.sweep(now + 6)
        assert result.republished == ("lost",) and result.events == 3
        assert other.sweep(now + 20).republished == ()  # published: nothing more to do
        events = [json.loads(m) for m in _settled(client, collector, channel)]
    finally:
        collector.close()
    repeats = RepeatFilter()
    kept = [e for e in events if not repeats.is_repeat(e)]
    assert len(events) == 4  # the first event went out twice, the other two once
    assert [(e["event"], e["data"].get("model_name"), e["seq"]) for e in kept] == [
        ("ANALYSIS_FAILED", "A", 1), ("ANALYSIS_FAILED", "B", 2), ("PROCESSING_FAILED", None, 3),
    ]
    assert len({e["source"] for e in events}) == 1  # the claimer's, not the retrier's
    assert client.zrange(keys.inflight, 0, -1) == []
