"""Liveness, separate from progress: the sweeper fails a media only when its owner is
gone (or, opt-in, stuck), and a worker whose run a sweeper ended withholds its events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from conftest import Subscriber
from counted_sweeper import Sweeping
from redis_cluster import LocalCluster
from test_sim_cluster import Collector

from progress_sdk import defaults as d
from progress_sdk.cluster import client_for
from progress_sdk.contract import validate_lines
from progress_sdk.exceptions import ConfigurationError
from progress_sdk.liveness import Liveness
from progress_sdk.snapshot import (
    MediaSnapshot,
    ModelSnapshot,
    SnapshotConfig,
    SnapshotKeys,
    owner_of,
    owners_of,
    read_media,
    read_user,
)
from progress_sdk.sweeper import OWNER_GONE, STALE, STUCK, Sweeper
from simulator.cluster_subscription import ClusterSubscription

WORKER = Path(__file__).with_name("liveness_worker.py")


@pytest.fixture
def config() -> SnapshotConfig:
    """Snapshot settings under a prefix no other test uses, a short liveness TTL."""
    return SnapshotConfig(SnapshotKeys(f"test-live-{uuid.uuid4().hex[:8]}:"), ttl=60,
                          liveness_ttl=1)


# -- fast unit tests ----------------------------------------------------------------------


def test_a_media_waiting_on_a_queue_has_no_owner() -> None:
    """Queued models and none analyzing: handed to a queue; otherwise the writer owns it."""
    state = MediaSnapshot("m", models={"A": ModelSnapshot("completed"),
                                       "B": ModelSnapshot("queued")})
    assert owner_of(state, "w") == ""
    state.models["B"].status = "analyzing"
    assert owner_of(state, "w") == "w"
    assert owner_of(MediaSnapshot("m"), "w") == "w"  # started, no model yet


def test_each_model_row_vouches_for_its_media() -> None:
    """Models analysed by several workers at once (RQ's per-model layout): the media's
    owners are its analyzing rows' owners, else the media's own owner."""
    state = MediaSnapshot("m", owner="x", models={
        "A": ModelSnapshot("analyzing", owner="x"), "B": ModelSnapshot("analyzing", owner="y"),
        "C": ModelSnapshot("completed", owner="z")})
    assert owners_of(state) == {"x", "y"}
    state.models["A"].status = state.models["B"].status = "completed"
    assert owners_of(state) == {"x"}
    assert owners_of(MediaSnapshot("m")) == set()


@pytest.mark.parametrize(
    ("owner", "alive", "quiet", "stuck_after", "expected"),
    [
        ("w", True, 10_000.0, None, None),  # silent for hours, owner alive: never failed
        ("w", False, 10.0, None, OWNER_GONE),
        ("w", False, 1.0, None, None),  # within the grace: its first refresh may be late
        ("w", True, 60.0, 30.0, STUCK),
        ("", None, 400.0, None, STALE),  # no owner (queued, other producer): stale_after
        ("", None, 100.0, None, None),
    ],
)
def test_the_sweeper_fails_for_a_gone_owner_stuck_or_stale_never_for_silence(
    owner: str, alive: bool | None, quiet: float, stuck_after: float | None,
    expected: str | None,
) -> None:
    """The verdict for one running media, by owner liveness and time without news."""
    sweeper = Sweeper(fakeredis.FakeRedis(), stuck_after=stuck_after)
    now = 1_000_000.0
    snapshot = MediaSnapshot("m", owner=owner or None, updated_at=now - quiet)
    assert sweeper.reason(snapshot, alive, now) == expected
    snapshot.alive_at = now - 0.5  # the owner's guard confirmed it just now
    assert sweeper.reason(snapshot, alive, now) in (None, STALE)


def test_stuck_after_leaves_the_guard_room() -> None:
    """stuck_after below the minimum is refused with the reason."""
    with pytest.raises(ConfigurationError, match="stuck_after"):
        Sweeper(fakeredis.FakeRedis(), stuck_after=1)


def test_the_guard_withholds_a_swept_runs_events_until_a_new_run() -> None:
    """Events of a run the sweeper ended are withheld and counted once per run; a new
    run's PROCESSING_STARTED and what follows go out."""
    client = fakeredis.FakeRedis()
    keys = SnapshotKeys("unit:")
    client.hset(keys.media("m"), mapping={"status": "failed", "swept": "stuck"})
    client.hset(keys.media("ok"), mapping={"status": "running", "updated_at": "1"})
    live = Liveness("w", keys.alive("w"), keys.media, 10, lambda: client)
    progress = {"media_id": "m", "event": "FRAME_ANALYSIS_PROGRESS"}
    batch = [progress, {"media_id": "ok", "event": "FRAME_ANALYSIS_PROGRESS"}, progress,
             {"media_id": "m", "event": "PROCESSING_STARTED"}, progress]
    assert live.withheld(batch) == [0, 2]
    assert live.fenced_runs == 1 and not live.is_fenced("m")
    assert float(client.hget(keys.media("ok"), "alive_at") or 0) > 0  # confirmed
    assert not client.hexists(keys.media("m"), "alive_at")


def test_only_writes_redis_confirmed_spare_a_media_the_guard() -> None:
    """A media written within the guard period skips the check, unless that write's batch
    was not delivered (an outage: a sweeper may have ended the run meanwhile)."""
    client = fakeredis.FakeRedis()
    keys = SnapshotKeys("unit2:")
    now = time.time()
    for media_id in ("sent", "lost"):
        client.hset(keys.media(media_id), mapping={"status": "running", "updated_at": "1"})
    live = Liveness("w", keys.alive("w"), keys.media, 10, lambda: client, wall=lambda: now)
    for media_id, ok in (("sent", True), ("lost", False)):
        live.wrote([(media_id, now, False)])
        live.delivered(ok)
    assert live.withheld([{"media_id": "sent", "event": "FRAME_ANALYSIS_PROGRESS"},
                          {"media_id": "lost", "event": "FRAME_ANALYSIS_PROGRESS"}]) == []
    assert not client.hexists(keys.media("sent"), "alive_at")  # no check: written just now
    assert client.hexists(keys.media("lost"), "alive_at")  # checked (and confirmed)


def test_the_key_is_refreshed_on_its_own_timer_and_deleted_on_release() -> None:
    """Due at once, then every third of the TTL while media are open; release deletes."""
    client = fakeredis.FakeRedis()
    now = [0.0]
    live = Liveness("w", "k", str, 9, lambda: client, clock=lambda: now[0])
    assert live.due_in() == 0.0 and live.refresh()
    assert 0 < client.pttl("k") <= 9000
    assert live.due_in() == pytest.approx(3.0)
    now[0] = 5.0
    assert live.due_in() is None  # nothing open: the key may lapse
    live.open = 1
    assert live.due_in() == pytest.approx(-2.0)
    live.release()
    assert not client.exists("k")


# -- real processes -------------------------------------------------------------------------


@pytest.fixture
def sweeping(redis_url: str, channel: str, config: SnapshotConfig) -> Iterator[Sweeping]:
    """A sweeper on short settings (stale_after 1 s, a pass every 0.2 s) on a thread."""
    sweeping = Sweeping(Sweeper(redis.Redis.from_url(redis_url), channel=channel,
                                config=config, stale_after=1), 0.2)
    yield sweeping
    sweeping.stop()


def _worker(redis_url: str, channel: str, config: SnapshotConfig, *args: str
            ) -> subprocess.Popen[str]:
    env = {**os.environ, d.ENV_LIVENESS_TTL: str(config.liveness_ttl)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), redis_url, channel, config.keys.prefix, *args],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def _wait(condition: object, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout  # only a hung test gets there
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _strictly_valid(subscriber: Subscriber, redis_url: str, channel: str
                    ) -> list[dict[str, object]]:
    """Everything on the channel so far (a sentinel published now arrives after it all),
    strictly valid."""
    sentinel = f"sentinel-{uuid.uuid4().hex}".encode()
    redis.Redis.from_url(redis_url).publish(channel, sentinel)
    _wait(lambda: sentinel in subscriber.messages, "the sentinel")
    lines = [m for m in subscriber.messages if m != sentinel]
    report = validate_lines(lines, strict=True)
    assert report.ok, report.to_text()
    return [json.loads(line) for line in lines]


@pytest.mark.redis
@pytest.mark.slow
def test_a_live_worker_silent_longer_than_every_setting_is_never_failed(
    redis_url: str, channel: str, config: SnapshotConfig, sweeping: Sweeping,
    subscriber: Subscriber,
) -> None:
    """A step silent for 8 s, with a 1 s liveness TTL, a 1 s stale_after and sweeps every
    0.2 s: the media is not failed, its later events and its completion go out."""
    worker = _worker(redis_url, channel, config, "silent", "8")
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "silent"
    client = redis.Redis.from_url(redis_url)
    (mid,) = read_user(client, config.keys, "u-quiet")  # the reader checks the owner
    assert mid.status == "running" and mid.owner_alive is True
    assert mid.to_client()["ownerAlive"] is True
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0
    stats = json.loads(out.splitlines()[-1])
    assert stats == {"fenced_runs": 0, "dropped": {}, "swept": False}
    snap = read_media(client, config.keys, "quiet-media")
    assert snap is not None and snap.status == "completed" and snap.swept is None
    _wait(lambda: any(b"PROCESSING_COMPLETED" in m for m in subscriber.messages),
          "the completion")
    events = _strictly_valid(subscriber, redis_url, channel)
    names = [e["event"] for e in events]
    assert "PROCESSING_FAILED" not in names and "ANALYSIS_FAILED" not in names
    assert names[-1] == "PROCESSING_COMPLETED"


@pytest.mark.redis
def test_a_dead_workers_media_are_all_failed(
    redis_url: str, channel: str, config: SnapshotConfig, sweeping: Sweeping,
    subscriber: Subscriber,
) -> None:
    """A worker ends with os._exit with 10 media open: each gets its failure, once."""
    worker = _worker(redis_url, channel, config, "die", "10")
    assert worker.stdout is not None and worker.stdin is not None
    assert worker.stdout.readline().strip() == "ready"
    worker.communicate("go\n", timeout=30)
    assert worker.returncode == 1  # os._exit: nothing ran at exit
    client = redis.Redis.from_url(redis_url)

    def all_failed() -> bool:
        snaps = [read_media(client, config.keys, f"dead-{n}") for n in range(10)]
        return all(s is not None and s.status == "failed" for s in snaps)

    _wait(all_failed, "the dead worker's 10 media to be failed")
    snap = read_media(client, config.keys, "dead-3")
    assert snap is not None and snap.swept == OWNER_GONE and snap.error == d.SWEEP_ERROR_MESSAGE
    sweeping.two_more_passes()  # a failure sent again would be on the channel by now
    events = _strictly_valid(subscriber, redis_url, channel)
    assert [e["event"] for e in events].count("PROCESSING_FAILED") == 10


@pytest.mark.redis
@pytest.mark.slow
def test_stuck_after_fails_a_silent_live_worker_which_learns_and_stops_the_run(
    redis_url: str, channel: str, config: SnapshotConfig, subscriber: Subscriber,
) -> None:
    """With stuck_after 10 s, a step silent for 14 s is failed explicitly; the worker's
    later events of that run never reach the channel, and it counts the fenced run."""
    sweeper = Sweeper(redis.Redis.from_url(redis_url), channel=channel, config=config,
                      stuck_after=10)
    stop = threading.Event()
    thread = threading.Thread(target=sweeper.run, args=(stop, 0.2), daemon=True)
    thread.start()
    try:
        worker = _worker(redis_url, channel, config, "silent", "14")
        out, _ = worker.communicate(timeout=120)
    finally:
        stop.set()
        thread.join(10)
    assert worker.returncode == 0
    stats = json.loads(out.splitlines()[-1])
    assert stats["fenced_runs"] == 1 and stats["swept"] is True
    assert stats["dropped"]["fenced"] >= 3  # progress, completion, the media's end
    snap = read_media(redis.Redis.from_url(redis_url), config.keys, "quiet-media")
    assert snap is not None and snap.status == "failed" and snap.swept == STUCK
    assert snap.error == sweeper.message(STUCK) and "10 s" in snap.error
    events = _strictly_valid(subscriber, redis_url, channel)
    names = [e["event"] for e in events]
    assert names[-2:] == ["ANALYSIS_FAILED", "PROCESSING_FAILED"]
    assert names.count("PROCESSING_FAILED") == 1 and "PROCESSING_COMPLETED" not in names


@pytest.mark.cluster
@pytest.mark.slow
def test_on_a_cluster_a_stuck_run_is_fenced_by_its_owner_guard(
    redis_cluster: LocalCluster, config: SnapshotConfig,
) -> None:
    """The same stuck_after run on a Redis Cluster (the guard is a one-key script routed
    to the media's master; the sweeper claims, then publishes): one ending, nothing of
    the run after it, the fenced run counted by the worker."""
    channel = f"t-live-{uuid.uuid4().hex[:8]}"
    collector = Collector(ClusterSubscription(redis_cluster.url, [channel]).open())
    sweeper = Sweeper(client_for(redis_cluster.url), channel=channel, config=config,
                      stuck_after=10)
    stop = threading.Event()
    thread = threading.Thread(target=sweeper.run, args=(stop, 0.2), daemon=True)
    thread.start()
    try:
        worker = _worker(redis_cluster.url, channel, config, "silent", "14")
        out, _ = worker.communicate(timeout=120)
        _wait(lambda: any(b"PROCESSING_FAILED" in m for m in collector.messages),
              "the sweeper's failure on the sharded channel")
    finally:
        stop.set()
        thread.join(10)
        collector.close()
    assert worker.returncode == 0
    stats = json.loads(out.splitlines()[-1])
    assert stats["fenced_runs"] == 1 and stats["dropped"]["fenced"] >= 3
    lines = list(collector.messages)
    report = validate_lines(lines, strict=True)
    assert report.ok, report.to_text()
    names = [json.loads(line)["event"] for line in lines]
    assert names[-1] == "PROCESSING_FAILED" and "PROCESSING_COMPLETED" not in names


@pytest.mark.redis
@pytest.mark.slow
def test_a_frozen_worker_taken_for_dead_withholds_its_run_when_it_wakes(
    redis_url: str, channel: str, config: SnapshotConfig, sweeping: Sweeping,
    subscriber: Subscriber,
) -> None:
    """A liveness false positive: the worker is frozen (SIGSTOP, as a long pause or a
    partition would) past its TTL, the sweeper fails its media; thawed, the worker sends
    nothing of that run (fenced, counted), and the stream has one ending."""
    worker = _worker(redis_url, channel, config, "silent", "1")
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "silent"
    os.kill(worker.pid, signal.SIGSTOP)
    client = redis.Redis.from_url(redis_url)
    try:
        _wait(lambda: (s := read_media(client, config.keys, "quiet-media")) is not None
              and s.terminal, "the sweeper to fail the frozen worker's media")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0
    stats = json.loads(out.splitlines()[-1])
    assert stats["fenced_runs"] == 1 and stats["swept"] is True
    snap = read_media(client, config.keys, "quiet-media")
    assert snap is not None and snap.swept == OWNER_GONE
    events = _strictly_valid(subscriber, redis_url, channel)
    names = [e["event"] for e in events]
    assert names[-1] == "PROCESSING_FAILED" and "PROCESSING_COMPLETED" not in names
