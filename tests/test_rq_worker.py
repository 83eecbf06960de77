"""A real RQ worker runs tracked jobs: every job's whole stream arrives, once, in order.

The worker is another process (rq 3, burst mode) running ``tests/rq_jobs.py``. RQ forks a
work horse per job and ends it with ``os._exit``, so nothing at exit flushes for it;
a media run's terminal event waits (bounded) for delivery for exactly that reason.
RQ's own keys live in Redis database 15, shared with every other test session running at
the same time: each test uses its own queue and deletes that queue's jobs and registries
afterwards (never FLUSHDB). The progress events go over this test's own pub/sub channel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from progress_sdk import validate_lines

pytestmark = pytest.mark.redis

TESTS = Path(__file__).parent
SIGLIP = "SIGLIP-LSTM-V4"
LIPFD = "LIP-FD-V1"
RQ_DB = 15
SENTINEL = b"end-of-test-stream"


@pytest.fixture
def rq_url(redis_url: str) -> str:
    """The same server, database 15 (RQ's keys stay apart from the tests' other keys)."""
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{RQ_DB}"))


def forget_queue(queue: Queue) -> None:
    """Delete the queue, its jobs and its registries; other sessions' keys stay untouched."""
    registries = [
        queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry,
        queue.deferred_job_registry, queue.scheduled_job_registry,
        queue.canceled_job_registry,
    ]
    job_ids = set(queue.get_job_ids())
    for registry in registries:
        job_ids.update(registry.get_job_ids())
    connection = queue.connection
    for job_id in job_ids:
        connection.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    connection.delete(*(registry.key for registry in registries))
    queue.delete(delete_jobs=True)


@pytest.fixture
def queue(rq_url: str) -> Iterator[Queue]:
    """An RQ queue no other test uses, deleted with its jobs afterwards."""
    connection = redis.Redis.from_url(rq_url)
    rq_queue = Queue(f"progress-test-{uuid.uuid4().hex}", connection=connection)
    yield rq_queue
    forget_queue(rq_queue)
    connection.close()


def run_worker(command: list[str], rq_url: str, channel: str) -> None:
    """Run a burst worker to completion; its publisher sends on ``channel``."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        REDIS_URL=rq_url,  # pub/sub ignores the database number
        MEDIA_PROGRESS_CHANNEL_NAME=channel,
    )
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"worker failed:\n{result.stdout}\n{result.stderr}"


def received_until_now(subscriber, url: str, channel: str) -> list[bytes]:
    """Everything published on the channel so far, the test's sentinel excluded.

    Redis delivers a channel's messages in the order it executed the PUBLISH commands;
    the worker has exited, so a sentinel published now arrives after all of its events.
    """
    client = redis.Redis.from_url(url)
    client.publish(channel, SENTINEL)
    client.close()
    deadline = time.monotonic() + 10
    messages = subscriber.wait_for(1, timeout=10)
    while SENTINEL not in messages and time.monotonic() < deadline:
        messages = subscriber.wait_for(len(messages) + 1, timeout=deadline - time.monotonic())
    assert SENTINEL in messages, "the sentinel never arrived"
    return [m for m in messages if m != SENTINEL]


def lifecycle(events: list[dict[str, Any]], media_id: str) -> list[tuple[str, str | None]]:
    """The media's non-progress events as (event, model_name)."""
    return [
        (e["event"], e["data"].get("model_name"))
        for e in events
        if e["media_id"] == media_id and not e["event"].endswith("_PROGRESS")
    ]


PRELOADED = {
    # rq_jobs.work() imports the job module (and so the publisher) before the worker
    # starts, as a worker script that preloads its job code does.
    "worker-script": lambda url, queue: [
        sys.executable, "-c", "import sys, rq_jobs; rq_jobs.work(sys.argv[1], sys.argv[2])",
        url, queue,
    ],
    # The rq CLI imports its -c settings module in the worker's main process (the -w
    # class is a plain rq.Worker that exits without RQ's 60 s wait: see rq_burst.Worker).
    "rq-cli-config": lambda url, queue: [
        sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", url,
        "-c", "rq_jobs", "-w", "rq_burst.Worker", queue,
    ],
}


@pytest.mark.parametrize("launcher", sorted(PRELOADED))
def test_worker_jobs_deliver_their_whole_stream_once(
    launcher, rq_url, queue, channel, subscriber
):
    """Two jobs in forked work horses, one with a failing model: each media's stream
    arrives complete, valid in strict mode, without a gap or a duplicate."""
    ok = queue.enqueue("rq_jobs.analyse", "m-rq-ok", [SIGLIP, LIPFD], [])
    partly = queue.enqueue("rq_jobs.analyse", "m-rq-partly", [SIGLIP, LIPFD], [LIPFD])

    run_worker(PRELOADED[launcher](rq_url, queue.name), rq_url, channel)

    results = {}
    for job in (ok, partly):
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED, job.latest_result()
        results[job.args[0]] = job.return_value()
    for result in results.values():
        # The job ran in a horse forked from the process that created the publisher.
        assert result["pid"] != result["imported_in"]
        assert result["outcome"] == "PROCESSING_COMPLETED"

    received = received_until_now(subscriber, rq_url, channel)
    report = validate_lines(received, strict=True)
    assert report.ok, report.to_text()
    assert report.lost_events == 0 and report.incomplete_count == 0, report.to_text()
    assert len(set(received)) == len(received), "a message arrived twice"

    events = [json.loads(raw) for raw in received]
    assert {e["media_id"] for e in events} == set(results), "a job's events never arrived"
    numbered = [(e["source"], e["media_id"], e["seq"]) for e in events]
    assert len(set(numbered)) == len(numbered), "a seq was sent twice"
    for media_id, result in results.items():
        mine = [e for e in events if e["media_id"] == media_id]
        assert {e["source"] for e in mine} == {result["source"]}  # the horse's own source
        assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
        assert {e["run_id"] for e in mine} == {f"run-{media_id}"}

    assert lifecycle(events, "m-rq-ok") == [
        ("PROCESSING_STARTED", None),
        ("ANALYSIS_QUEUED", SIGLIP),
        ("ANALYSIS_QUEUED", LIPFD),
        ("ANALYSIS_STARTED", SIGLIP),
        ("ANALYSIS_COMPLETED", SIGLIP),
        ("ANALYSIS_STARTED", LIPFD),
        ("ANALYSIS_COMPLETED", LIPFD),
        ("PROCESSING_COMPLETED", None),
    ]
    assert lifecycle(events, "m-rq-partly") == [
        ("PROCESSING_STARTED", None),
        ("ANALYSIS_QUEUED", SIGLIP),
        ("ANALYSIS_QUEUED", LIPFD),
        ("ANALYSIS_STARTED", SIGLIP),
        ("ANALYSIS_COMPLETED", SIGLIP),
        ("ANALYSIS_STARTED", LIPFD),
        ("ANALYSIS_FAILED", LIPFD),
        ("PROCESSING_COMPLETED", None),
    ]
    failed = next(e for e in events if e["event"] == "ANALYSIS_FAILED")
    assert failed["data"]["error_message"] == (
        f"{LIPFD} lost the face track at frame 150"
    )
    assert failed["data"]["details"]["error_type"].endswith("ModelError")

    def last_progress(media_id: str, model: str) -> tuple[int, int]:
        values = [
            (e["data"]["progress"], e["data"]["total"])
            for e in events
            if e["media_id"] == media_id and e["data"].get("model_name") == model
            and e["event"] == "FRAME_ANALYSIS_PROGRESS"
        ]
        return values[-1]

    # Coalescing keeps the latest value of each model, so the UI's bars end where the
    # models stopped.
    assert last_progress("m-rq-ok", SIGLIP) == (300, 300)
    assert last_progress("m-rq-ok", LIPFD) == (300, 300)
    assert last_progress("m-rq-partly", LIPFD) == (150, 300)


def test_worker_importing_the_job_module_in_the_horse_delivers_every_stream(
    rq_url, queue, channel, subscriber
):
    """A publisher created inside the work horse still gets each run's events out."""
    media = [f"m-rq-lazy-{i}" for i in range(3)]
    for media_id in media:
        queue.enqueue("rq_jobs.analyse", media_id, [SIGLIP], [])
    command = [
        sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", rq_url,
        "-w", "rq_burst.Worker", queue.name,
    ]
    run_worker(command, rq_url, channel)
    events = [json.loads(raw) for raw in received_until_now(subscriber, rq_url, channel)]
    terminal = {e["media_id"] for e in events if e["event"] == "PROCESSING_COMPLETED"}
    assert terminal == set(media)
