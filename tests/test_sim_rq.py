"""``progress-sim worker`` and ``progress-sim run --via rq``, as a user runs them.

Real processes all the way: a ``listen --json`` recording of the channel, ``run --via
rq`` enqueueing media whose horses crash (SIGKILL) at ``--crash-rate``, a burst
``worker``; then ``validate --strict`` on the recording.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
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
            # Plain lines of the media's events while waiting, then the summary.
            assert stdout.splitlines()[-1].startswith("4/4 media ended"), stdout
            assert " PROCESSING_STARTED " in stdout
            # The crashes were real: RQ logged its horses' deaths.
            assert "signal 9" in worker.stdout + worker.stderr
            _wait_for_terminals(recording, 4)  # the listener has written every media's end
        finally:
            listener.terminate()
            listener.wait(10)
            _forget_queue(url, queue)
    result = subprocess.run([*CLI, "validate", "--strict", str(recording)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout
    assert "incomplete" not in result.stdout
    assert "PROCESSING_" in result.stdout


def _wait_for_terminals(recording: Path, media: int) -> None:
    """Until the listener's NDJSON (flushed line by line) holds ``media`` media's ends."""
    deadline = time.monotonic() + 60  # a hung test's bound only
    ended: set[str] = set()
    while len(ended) < media:
        assert time.monotonic() < deadline, f"{len(ended)} of {media} ends recorded"
        time.sleep(0.05)
        for line in recording.read_text().split("\n")[:-1]:  # whole lines only
            event = json.loads(line) if line.strip() else {}
            if event.get("event") in ("PROCESSING_COMPLETED", "PROCESSING_FAILED"):
                ended.add(event["media_id"])


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


_JOB_MODULE = '''
from progress_sdk.rq import tracked_job


@tracked_job
def analyse_one(tracking):
    model = tracking.model()
    model.complete("REAL", 0.9)
    return model.model_name
'''

# As the console script runs: without -c's current folder on sys.path (-P), so only the
# worker's own --path handling can find a module there.
SCRIPT = [sys.executable, "-P", "-c", "from simulator.cli import main; main()"]


def _enqueue(url: str, queue_name: str, channel: str, prefix: str, func: str) -> str:
    """One media of one model running ``func`` (by name); returns its media id."""
    from rq import Queue

    from progress_sdk import ProgressPublisher
    from progress_sdk.rq import configure, enqueue_media
    from progress_sdk.rq.settings import current

    before = current().prefix
    configure(prefix=prefix)
    media_id = f"m-{uuid.uuid4().hex[:8]}"
    try:
        with ProgressPublisher(url, channel) as publisher:
            enqueue_media(Queue(queue_name, connection=redis.Redis.from_url(url)), func,
                          media_id=media_id, user_id="u-1", models=["SIGLIP-LSTM-V4"],
                          publisher=publisher)
    finally:
        configure(prefix=before)
    return media_id


def _terminals(subscriber: Any, media: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every event of ``media``, once each has its terminal event (or the deadline)."""
    deadline = time.monotonic() + 60
    while True:
        events = [json.loads(raw) for raw in subscriber.wait_for(0, timeout=0)]
        ended = {e["media_id"] for e in events if e["event"].startswith("PROCESSING_")
                 and e["event"] != "PROCESSING_STARTED"}
        if media <= ended or time.monotonic() > deadline:
            assert media <= ended, f"no terminal event for {sorted(media - ended)}"
            return {m: [e for e in events if e["media_id"] == m] for m in media}
        time.sleep(0.1)


@pytest.mark.slow
def test_the_worker_imports_job_modules_from_its_folder_and_path(
    redis_url: str, tmp_path: Path, channel: str, subscriber: Any
) -> None:
    """A job module in the worker's folder runs, as does one in a --path folder; a job
    whose module is nowhere is one `error:` line naming it, and the UI's failure text
    names no exception class."""
    url = urlunsplit(urlsplit(redis_url)._replace(path="/15"))
    prefix = f"progress-test-rq:{uuid.uuid4().hex}"
    env = dict(os.environ, PROGRESS_SDK_RQ_PREFIX=prefix)
    jobs = tmp_path / "team"
    jobs.mkdir()
    (jobs / "nc_jobs.py").write_text(_JOB_MODULE)
    here, elsewhere = f"q-{uuid.uuid4().hex}", f"q-{uuid.uuid4().hex}"
    try:
        found = _enqueue(url, here, channel, prefix, "nc_jobs.analyse_one")
        missing = _enqueue(url, here, channel, prefix, "missing_jobs.analyse_one")
        by_path = _enqueue(url, elsewhere, channel, prefix, "nc_jobs.analyse_one")
        common = [*SCRIPT, "--redis-url", url, "--channel", channel, "worker", "--burst"]
        in_folder = subprocess.run([*common, "--queue", here], cwd=jobs, env=env,
                                   capture_output=True, text=True, timeout=120, check=False)
        with_path = subprocess.run([*common, "--queue", elsewhere, "--path", str(jobs)],
                                   cwd=tmp_path, env=env, capture_output=True, text=True,
                                   timeout=120, check=False)
    finally:
        _forget_queue(url, here)
        _forget_queue(url, elsewhere)
    assert in_folder.returncode == 0 and with_path.returncode == 0, in_folder.stderr
    errors = [line for line in in_folder.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, in_folder.stderr
    assert errors[0].startswith("error: cannot import missing_jobs.analyse_one (")
    assert "--path" in errors[0] and "Traceback" not in in_folder.stderr
    assert with_path.stderr.strip() == ""
    events = _terminals(subscriber, {found, missing, by_path})
    assert events[found][-1]["event"] == "PROCESSING_COMPLETED"
    assert events[by_path][-1]["event"] == "PROCESSING_COMPLETED"
    failed = next(e for e in events[missing] if e["event"] == "ANALYSIS_FAILED")
    assert failed["data"]["error_message"] == (
        "the worker could not load this job's code (missing_jobs.analyse_one)"
    )
    assert "Error" not in failed["message"]


def test_simulated_audio_models_fail_with_audio_reasons() -> None:
    """A failing model's reason is one of its own kind's (no face for video, no audio
    stream for audio), from the catalog, as in the in-process simulation."""
    import random

    from progress_sdk.testing import CapturingPublisher
    from simulator.catalog import CATALOG
    from simulator.rq_run import plan_steps, simulate_model

    for seed in range(20):
        plan = plan_steps(random.Random(seed), ("MEL-SPECTROGRAM-CNN-V3", "SIGLIP-LSTM-V4"),
                     speed=0, fail_rate=1.0, crash_rate=0.0)
        audio, video = plan["MEL-SPECTROGRAM-CNN-V3"]["error"], plan["SIGLIP-LSTM-V4"]["error"]
        assert "face" not in audio.lower() and "video" not in audio.lower(), audio
        assert "audio" not in video.lower() and "spectrogram" not in video.lower(), video
    capturing = CapturingPublisher()
    with pytest.raises(Exception, match="^" + plan["MEL-SPECTROGRAM-CNN-V3"]["error"]):
        simulate_model.with_publisher(capturing)(plan, media_id="m-a", user_id="u-1",
                                                 model="MEL-SPECTROGRAM-CNN-V3")
    (failed,) = capturing.events.of_type("ANALYSIS_FAILED")
    assert failed["data"]["error_message"] == plan["MEL-SPECTROGRAM-CNN-V3"]["error"]
    assert CATALOG["MEL-SPECTROGRAM-CNN-V3"].kind == "audio"


@pytest.mark.slow
def test_run_via_rq_with_workers_shows_the_live_panel_until_every_media_ended(
    redis_url: str,
) -> None:
    """On a terminal, `run --via rq --workers 2` starts two real workers and draws the
    panel while it waits: each media's final notice, then the summary, exit 0."""
    import pty
    import select

    url = urlunsplit(urlsplit(redis_url)._replace(path="/15"))
    channel, queue = f"test-progress-{uuid.uuid4().hex}", f"q-{uuid.uuid4().hex}"
    env = dict(os.environ, PROGRESS_SDK_RQ_PREFIX=f"progress-test-rq:{uuid.uuid4().hex}",
               COLUMNS="160", LINES="60")
    primary, secondary = pty.openpty()
    try:
        run = subprocess.Popen(
            [*CLI, "--redis-url", url, "--channel", channel, "run", "--via", "rq", "--queue",
             queue, "--workers", "2", "--media", "3", "--models",
             "SIGLIP-LSTM-V4,MEL-SPECTROGRAM-CNN-V3", "--seed", "4", "--speed", "5"],
            stdout=secondary, stderr=subprocess.PIPE, env=env,
        )
        os.close(secondary)
        shown = bytearray()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the run closed its end
                    break
                if not chunk:
                    break
                shown += chunk
            elif run.poll() is not None:
                break
        stderr = run.communicate(timeout=60)[1].decode()
    finally:
        os.close(primary)
        _forget_queue(url, queue)
    text = shown.decode("utf-8", "replace")
    assert run.returncode == 0, stderr
    assert "2 workers started here" in stderr
    assert "overall" in text  # the live panel was drawn while waiting
    for index in range(3):
        assert f"(sim-4-000{index}): " in text, text[-3000:]
    assert "3/3 media ended" in text


_FLAKY_MODULE = '''
from progress_sdk.rq import tracked_job


@tracked_job
def analyse_one(tracking):
    model = tracking.model()
    if tracking.attempt == 1:
        raise RuntimeError("the GPU was busy")
    model.complete("REAL", 0.9)
    return model.model_name
'''


@pytest.mark.slow
def test_the_worker_with_its_scheduler_runs_a_retry_after_its_interval(
    redis_url: str, tmp_path: Path, channel: str, subscriber: Any
) -> None:
    """Retry(max=1, interval=1) needs RQ's scheduler: `worker --with-scheduler` runs the
    second attempt, which completes the media."""
    from rq import Queue, Retry

    from progress_sdk import ProgressPublisher
    from progress_sdk.rq import configure, enqueue_media
    from progress_sdk.rq.settings import current

    url = urlunsplit(urlsplit(redis_url)._replace(path="/15"))
    prefix = f"progress-test-rq:{uuid.uuid4().hex}"
    (tmp_path / "flaky_jobs.py").write_text(_FLAKY_MODULE)
    queue_name = f"q-{uuid.uuid4().hex}"
    before = current().prefix
    configure(prefix=prefix)
    try:
        with ProgressPublisher(url, channel) as publisher:
            enqueue_media(Queue(queue_name, connection=redis.Redis.from_url(url)),
                          "flaky_jobs.analyse_one", media_id="m-sched", user_id="u-1",
                          models=["SIGLIP-LSTM-V4"], publisher=publisher,
                          retry=Retry(max=1, interval=1))
    finally:
        configure(prefix=before)
    worker = subprocess.Popen(
        [*SCRIPT, "--redis-url", url, "--channel", channel, "worker", "--queue", queue_name,
         "--with-scheduler"], cwd=tmp_path, env=dict(os.environ, PROGRESS_SDK_RQ_PREFIX=prefix),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        events = _terminals(subscriber, {"m-sched"})["m-sched"]
    finally:
        worker.terminate()
        worker.wait(60)
        _forget_queue(url, queue_name)
    steps = [(e["event"], (e["data"].get("details") or {}).get("attempt")) for e in events
             if e["event"].startswith("ANALYSIS_")]
    assert steps == [("ANALYSIS_QUEUED", None), ("ANALYSIS_STARTED", 1),
                     ("ANALYSIS_QUEUED", 2), ("ANALYSIS_STARTED", 2),
                     ("ANALYSIS_COMPLETED", 2)]
    assert events[-1]["event"] == "PROCESSING_COMPLETED"
