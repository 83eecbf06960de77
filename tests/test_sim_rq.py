"""``progress-sim worker`` and ``progress-sim run --via rq``, as a user runs them.

Real processes all the way: a ``listen --json`` recording of the channel, ``run --via
rq`` enqueueing media whose horses crash (SIGKILL) at ``--crash-rate``, a burst
``worker``; then ``validate --strict`` on the recording.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

pytestmark = pytest.mark.redis

CLI = [sys.executable, "-c", "from simulator.cli import main; main()"]


def test_run_via_rq_needs_a_redis_url() -> None:
    """Without --redis-url there is nothing for workers to share: one error line, exit 2."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run([*CLI, "run", "--via", "rq"], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --via rq needs --redis-url")
    assert "Traceback" not in result.stderr


def test_worker_with_an_unreachable_redis_says_so_without_the_password() -> None:
    """A refused connection: one error line, exit 2, the password masked."""
    result = subprocess.run(
        [*CLI, "--redis-url", "redis://:hunter2@127.0.0.1:1/0", "worker", "--burst"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach Redis")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_simulated_rq_model_reports_its_eta_as_a_tracked_loop_does() -> None:
    """The job run by ``run --via rq`` loops over its frames with ``model.track()``: 0/total
    first, then every frame done with elapsed, rate and an ETA, 0 at the last frame."""
    from progress_sdk.testing import CapturingPublisher
    from simulator.rq_run import simulate_model

    capturing = CapturingPublisher()
    plan = {"SIGLIP-LSTM-V4": {"units": 5, "seconds": 0.002, "fake": True,
                               "event": "FRAME_ANALYSIS_PROGRESS", "confidence": 0.9}}
    simulate_model.with_publisher(capturing)(plan, media_id="m-eta", user_id="u-1",
                                             model="SIGLIP-LSTM-V4")
    progress = [e["data"] for e in capturing.events.of_type("FRAME_ANALYSIS_PROGRESS")]
    assert [data["progress"] for data in progress] == [0, 1, 2, 3, 4, 5]
    assert "eta_seconds" not in progress[0]["details"]
    etas = [data["details"]["eta_seconds"] for data in progress[1:]]
    assert all(eta > 0 for eta in etas[:-1]) and etas[-1] == 0


@pytest.mark.slow
def test_crashing_horses_still_close_every_media_in_a_strictly_valid_recording(
    redis_url: str, tmp_path: Path
) -> None:
    """--crash-rate SIGKILLs work horses; the recording validates strictly, none open."""
    url = urlunsplit(urlsplit(redis_url)._replace(path="/15"))
    channel = f"test-progress-{uuid.uuid4().hex}"
    queue = f"progress-test-{uuid.uuid4().hex}"
    env = dict(os.environ, PROGRESS_SDK_RQ_PREFIX=f"progress-test-rq:{uuid.uuid4().hex}")
    common = [*CLI, "--redis-url", url, "--channel", channel]
    recording = tmp_path / "channel.ndjson"
    with recording.open("wb") as out:
        listener = subprocess.Popen([*common, "listen", "--json"], stdout=out,
                                    stderr=subprocess.DEVNULL, env=env)
        try:
            _wait_for_subscriber(url, channel)
            run = subprocess.Popen(
                [*common, "run", "--via", "rq", "--queue", queue, "--media", "4",
                 "--models", "SIGLIP-LSTM-V4,LIP-FD-V1,EFFICIENTNET-B7-V1", "--crash-rate",
                 "0.4", "--fail-rate", "0.2", "--speed", "10", "--seed", "11"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )
            _wait_for_jobs(url, queue)
            worker = subprocess.run([*common, "worker", "--queue", queue, "--burst"],
                                    capture_output=True, text=True, timeout=90, env=env,
                                    check=False)
            assert worker.returncode == 0, worker.stderr[-2000:]
            stdout, stderr = run.communicate(timeout=60)
            assert run.returncode == 0, stderr
            assert stdout.startswith("4/4 media ended"), stdout
            # The crashes were real: RQ logged its horses' deaths.
            assert "signal 9" in worker.stdout + worker.stderr
            time.sleep(0.5)
        finally:
            listener.terminate()
            listener.wait(10)
            _forget_queue(url, queue)
    result = subprocess.run([*CLI, "validate", "--strict", str(recording)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout
    assert "incomplete" not in result.stdout
    assert "PROCESSING_" in result.stdout


def _wait_for_subscriber(url: str, channel: str) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while not client.pubsub_numsub(channel)[0][1]:
        assert time.monotonic() < deadline, "the listener never subscribed"
        time.sleep(0.05)
    client.close()


def _wait_for_jobs(url: str, queue: str) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while client.llen(f"rq:queue:{queue}") < 12:
        assert time.monotonic() < deadline, "run --via rq never enqueued its jobs"
        time.sleep(0.05)
    client.close()


def _forget_queue(url: str, queue_name: str) -> None:
    from rq import Queue

    connection = redis.Redis.from_url(url)
    queue = Queue(queue_name, connection=connection)
    registries = [queue.started_job_registry, queue.finished_job_registry,
                  queue.failed_job_registry, queue.deferred_job_registry]
    job_ids = set(queue.get_job_ids())
    for registry in registries:
        job_ids.update(registry.get_job_ids())
    for job_id in job_ids:
        connection.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    connection.delete(*(registry.key for registry in registries))
    queue.delete(delete_jobs=True)
    connection.close()
