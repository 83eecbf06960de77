"""How a ``TrackingWorker`` stops (within a bound, after reporting what it was doing),
and the timing of what its threads and forks do meanwhile.

#20: a `progress-sim worker --with-scheduler` sent SIGTERM now and then did not exit
within 60 s beside two CPU hogs. RQ's SIGTERM handler raises ``StopRequested`` wherever
an idle worker's main thread is; landing in the report the worker makes after a job, it
was swallowed there, and the worker went on waiting for jobs. And RQ waits for its
scheduler process without a limit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fakeredis
import pytest
import redis
from rq import Queue
from rq.scheduler import RQScheduler

from progress_sdk import ProgressPublisher
from progress_sdk.rq import TrackingWorker, configure, enqueue_media
from progress_sdk.rq.settings import ENV_PREFIX, current

TESTS = Path(__file__).parent
MODEL = "SIGLIP-LSTM-V4"


def _ignore_sigterm(ready: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    while True:
        signal.pause()


def _worker_with_scheduler(target: Any) -> tuple[TrackingWorker, Any]:
    """A TrackingWorker whose scheduler process runs ``target(ready)``, once it is ready."""
    connection = fakeredis.FakeRedis()
    worker = TrackingWorker([Queue("q", connection=connection)], connection=connection)
    context = multiprocessing.get_context("fork")  # as RQ starts its scheduler
    ready = context.Event()
    process = context.Process(target=target, args=(ready,), name="Scheduler")
    process.start()
    assert ready.wait(60), "the scheduler process never started"
    worker.scheduler = RQScheduler(worker.queues, connection=connection)
    worker.scheduler._process = process  # what RQScheduler.start() sets
    return worker, process


def _stop_at_once(ready: Any) -> None:
    ready.set()
    while True:
        signal.pause()


def test_a_scheduler_that_ignores_sigterm_is_killed_and_the_worker_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RQ would wait for it forever; the worker waits its bound, then SIGKILLs it and
    logs a warning naming the process."""
    worker, process = _worker_with_scheduler(_ignore_sigterm)
    worker.scheduler_stop_timeout = 0.2
    try:
        with caplog.at_level(logging.WARNING, logger="progress_sdk.rq"):
            worker.stop_scheduler()
    finally:
        if process.is_alive():
            process.kill()
        process.join()
    assert process.exitcode == -signal.SIGKILL
    (record,) = [r for r in caplog.records if r.name == "progress_sdk.rq"]
    assert record.levelno == logging.WARNING
    assert f"scheduler process {process.pid} did not stop" in record.getMessage()
    assert "SIGKILL" in record.getMessage()


def test_a_scheduler_that_stops_on_sigterm_is_not_killed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGTERM ends it; nothing is killed or logged, and a second stop (RQ's teardown
    after a warm shutdown) signals nobody."""
    worker, process = _worker_with_scheduler(_stop_at_once)
    try:
        with caplog.at_level(logging.WARNING, logger="progress_sdk.rq"):
            worker.stop_scheduler()
            worker.stop_scheduler()
    finally:
        if process.is_alive():
            process.kill()
        process.join()
    assert process.exitcode == -signal.SIGTERM
    assert [r for r in caplog.records if r.name == "progress_sdk.rq"] == []


@pytest.fixture
def rq_url(redis_url: str) -> str:
    """The same server, database 15 (RQ's keys, as in tests/test_rq_integration.py)."""
    return urlunsplit(urlsplit(redis_url)._replace(path="/15"))


@pytest.fixture
def rq_queue(rq_url: str) -> Iterator[Queue]:
    """A queue of this test alone; deleted with its jobs after."""
    connection = redis.Redis.from_url(rq_url)
    queue = Queue(f"progress-test-{uuid.uuid4().hex}", connection=connection)
    yield queue
    registries = [queue.started_job_registry, queue.finished_job_registry,
                  queue.failed_job_registry, queue.deferred_job_registry]
    job_ids = set(queue.get_job_ids())
    for registry in registries:
        job_ids.update(registry.get_job_ids())
    for job_id in job_ids:
        connection.delete(f"rq:job:{job_id}", f"rq:results:{job_id}",
                          f"rq:job:{job_id}:dependents", f"rq:job:{job_id}:dependencies")
    connection.delete(*(registry.key for registry in registries))
    queue.delete(delete_jobs=True)
    connection.close()


@pytest.mark.redis
def test_sigterm_while_the_worker_reports_a_job_stops_it_after_the_report(
    redis_url: str, rq_url: str, rq_queue: Queue, channel: str, subscriber: Any
) -> None:
    """The job ends without reporting its model; SIGTERM reaches the worker's main
    process as it reports that (tests/rq_stopping.py). The report is whole (the model's
    failure, then the media's end) and the worker, not a burst one, exits 0."""
    prefix = f"progress-test-rq:{uuid.uuid4().hex}"
    before = current().prefix
    configure(prefix=prefix)
    try:
        with ProgressPublisher(redis_url, channel) as publisher:
            enqueue_media(rq_queue, "rq_stopping.unreported", media_id="m-stop", user_id="u-1",
                          models=[MODEL], publisher=publisher)
    finally:
        configure(prefix=before)
    # A hung test's bound only: before #20's fix this worker never exited.
    worker = subprocess.run(
        [sys.executable, str(TESTS / "rq_stopping.py"), rq_url, rq_queue.name, redis_url,
         channel],
        env=dict(os.environ, **{ENV_PREFIX: prefix}), capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "could not report" not in worker.stderr, worker.stderr[-3000:]
    events = [json.loads(raw) for raw in subscriber.settled()]
    assert [e["event"] for e in events] == [
        "PROCESSING_STARTED", "ANALYSIS_QUEUED", "ANALYSIS_FAILED", "PROCESSING_FAILED",
    ]
    assert events[2]["data"]["error_message"] == "the job ended without reporting its result"


def test_a_horse_forked_while_the_sweeper_holds_the_settings_lock_gets_its_publisher() -> None:
    """The worker's sweeper thread asks for the publisher under the settings' lock every
    sweep; a horse forked at that moment gets a lock of its own, not a held copy."""
    from progress_sdk.rq import settings

    held, release = threading.Event(), threading.Event()

    def sweeper() -> None:
        with settings._lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=sweeper)
    thread.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:  # the horse
            os._exit(0 if settings.default_publisher() is not None else 1)
    finally:
        release.set()
        thread.join()
    deadline = time.monotonic() + 60  # a hung test's bound only
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if status[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert status[0] == pid and os.waitstatus_to_exitcode(status[1]) == 0


def test_the_sweeper_thread_sweeps_every_sweep_interval_even_below_the_liveness_beat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The liveness key is refreshed every alive_ttl/3 s (here 20 min); sweeps still come
    every sweep_interval (here 10 ms): three of them long before a second beat."""
    from progress_sdk.rq import worker as worker_module

    swept: list[object] = []
    three = threading.Event()

    def counting_sweep(connection: object) -> int:
        swept.append(connection)
        if len(swept) >= 3:
            three.set()
        return 0

    monkeypatch.setattr(worker_module, "sweep", counting_sweep)
    connection = fakeredis.FakeRedis()
    worker = TrackingWorker([Queue("q", connection=connection)], connection=connection,
                            alive_ttl=3600, sweep_interval=0.01)
    worker.register_birth()
    try:
        assert three.wait(60), f"{len(swept)} sweeps"  # a hung test's bound: 20 min before
    finally:
        worker.register_death()
