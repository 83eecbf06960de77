"""Liveness with the RQ integration: real forking TrackingWorkers, the snapshot sweeper
on short settings. A silent tracked job is never failed; a worker killed with its horse
gets its media failed once, whichever sweeper gets there first (the other is fenced)."""

# The RQ integration tests' fixtures are imported by name, and test parameters of the
# same names are what pytest fills from them.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from conftest import Subscriber
from counted_sweeper import Sweeping
from rq import Queue, Worker
from test_rq_integration import (  # noqa: F401 - fixtures, by name
    A,
    B,
    Workers,
    _marker_pid,
    assert_strictly_valid,
    prefix,
    queues,
    rq_url,
    settle,
    wait_for_terminals,
    workers,
)

from progress_sdk import ProgressPublisher
from progress_sdk import defaults as d
from progress_sdk.rq import enqueue_media
from progress_sdk.rq.state import RunState
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, read_media
from progress_sdk.sweeper import Sweeper

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def keys() -> SnapshotKeys:
    """A snapshot prefix of this test alone (the workers get it too)."""
    return SnapshotKeys(f"test-live-rq-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def short(workers: Workers, keys: SnapshotKeys) -> Workers:
    """The workers, with a 1 s liveness TTL and this test's snapshot prefix."""
    workers.env[d.ENV_LIVENESS_TTL] = "1"
    workers.env[d.ENV_SNAPSHOT_PREFIX] = keys.prefix
    return workers


@pytest.fixture
def sweeping(redis_url: str, channel: str, keys: SnapshotKeys) -> Iterator[Sweeping]:
    """The snapshot sweeper (as in a relay) with stale_after 1 s, a pass every 0.2 s."""
    sweeping = Sweeping(Sweeper(redis.Redis.from_url(redis_url), channel=channel,
                                config=SnapshotConfig(keys, liveness_ttl=1), stale_after=1),
                        0.2)
    yield sweeping
    sweeping.stop()


@pytest.fixture
def announcer(redis_url: str, channel: str, keys: SnapshotKeys) -> Iterator[ProgressPublisher]:
    """The enqueuing side's publisher, on this test's snapshot prefix."""
    out = ProgressPublisher(redis_url, channel, snapshots=SnapshotConfig(keys, liveness_ttl=1))
    yield out
    out.close()


@pytest.mark.timeout(180)
def test_model_jobs_silent_longer_than_every_setting_complete(  # noqa: PLR0917
    redis_url: str, channel: str, subscriber: Subscriber, short: Workers, queues: object,
    sweeping: Sweeping, announcer: ProgressPublisher, keys: SnapshotKeys,
) -> None:
    """Two model jobs in two workers at once, each silent 4 s between its reports (1 s
    liveness TTL, stale_after 1 s): the media completes, nothing is failed. (A media
    waiting on the queue has no owner and stale_after applies to it: the workers are
    up before the media is enqueued, so it waits only for a fork.)"""
    queue: Queue = queues()  # type: ignore[operator]
    first, second = short.start(queue, burst=False), short.start(queue, burst=False)
    deadline = time.monotonic() + 60
    while Worker.count(queue=queue) < 2:
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)
    enqueue_media(queue, "rq_tracked_jobs.analyse_model", 3, 4.0, {}, media_id="m-quiet",
                  user_id="u-live", models=[A, B], publisher=announcer)
    events = wait_for_terminals(subscriber, {"m-quiet"}, timeout=90)
    assert first.poll() is None and second.poll() is None
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    names = [e["event"] for e in events]
    assert names.count("PROCESSING_COMPLETED") == 1 and not any(
        n.endswith("_FAILED") for n in names)
    snap = read_media(redis.Redis.from_url(redis_url), keys, "m-quiet")
    assert snap is not None and snap.status == "completed" and snap.swept is None


@pytest.mark.timeout(180)
@pytest.mark.parametrize("alive_ttl", [2.0, 20.0], ids=["rq-sweeper-first", "snapshot-first"])
def test_a_worker_killed_with_its_horse_ends_its_media_once(  # noqa: PLR0917
    redis_url: str, rq_url: str, channel: str, subscriber: Subscriber, short: Workers,
    queues: object, sweeping: Sweeping, announcer: ProgressPublisher, keys: SnapshotKeys,
    prefix: str, alive_ttl: float,
) -> None:
    """SIGKILL a TrackingWorker and its horse mid-model, with another worker sweeping RQ
    jobs: the media ends once and the stream stays strictly valid, whichever of the two
    sweepers acts first (the other one's events are withheld)."""
    marker = f"progress-test-marker:{uuid.uuid4().hex}"
    dead: Queue = queues()  # type: ignore[operator]
    jobs = enqueue_media(dead, "rq_tracked_jobs.analyse_media", 20, 0.01, {B: "stall"},
                  f"{marker}:m-dead", media_id="m-dead", user_id="u-dead", models=[A, B],
                  layout="single", publisher=announcer)
    short.start(queues(), burst=False)  # type: ignore[operator] # sweeps dead workers' jobs
    doomed = short.start(dead, burst=False, alive_ttl=alive_ttl)
    horse = _marker_pid(redis.Redis.from_url(rq_url), f"{marker}:m-dead:{B}")
    doomed.kill()
    os.kill(horse, signal.SIGKILL)
    wait_for_terminals(subscriber, {"m-dead"}, timeout=60)
    state = RunState(redis.Redis.from_url(rq_url), prefix=prefix, ttl=3600)
    client = redis.Redis.from_url(redis_url)
    if alive_ttl > 10:
        # The snapshot sweeper has ended the media; the dead worker's RQ key would expire
        # within alive_ttl and let the RQ sweeper act: expire it now, not 20 s later.
        record = state.load_job(jobs.last.id)
        assert record is not None and record.owner is not None
        state.forget_worker(record.owner)
    # Both sweepers have had their say once the RQ job is closed (by its sweeper, or by
    # it finding the run already ended) and the snapshot is terminal.

    def both_done() -> bool:
        record = state.load_job(jobs.last.id)
        snap = read_media(client, keys, "m-dead")
        return (record is None or record.closed) and snap is not None and snap.terminal

    deadline = time.monotonic() + 90  # only a hung test gets there
    while not both_done():
        assert time.monotonic() < deadline, "the RQ job or the snapshot never closed"
        time.sleep(0.1)
    sweeping.two_more_passes()  # the snapshot sweeper swept again: an ending sent twice shows
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    events = [json.loads(raw) for raw in received]
    # The RQ sweeper ends it by rule 5 (model A completed: PROCESSING_COMPLETED), the
    # snapshot sweeper with PROCESSING_FAILED; one ending either way, and nothing after.
    ends = [i for i, e in enumerate(events)
            if e["event"] in ("PROCESSING_COMPLETED", "PROCESSING_FAILED")]
    assert len(ends) == 1 and ends[0] == len(events) - 1, [e["event"] for e in events]
    if alive_ttl > 10:  # the worker's RQ key outlives the horse's: the snapshot sweeper's
        assert events[-1]["event"] == "PROCESSING_FAILED"
        assert events[-1]["data"]["error_message"] == d.SWEEP_ERROR_MESSAGE
