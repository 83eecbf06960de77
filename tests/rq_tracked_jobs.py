"""Tracked jobs for tests/test_rq_integration.py, run by real forking RQ workers.

Each job reports ``frames`` frames per model, ``frame_seconds`` apart, and does to each
model what ``plan`` says: ``fail`` raises at half way, ``sigkill`` kills its own work
horse there, ``hang`` ignores SIGALRM (as native code that never returns to Python
would) and sleeps, so RQ's soft timeout cannot end it, only a kill; ``stall`` sleeps.
``fail`` aside, the job writes ``<marker>:<model>`` = its pid to Redis, so the test
knows when to act and whom to kill: ``hang`` once it has run 2 s past its timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import redis
from rq import Queue, get_current_job

from progress_sdk.rq import JobTracking, TrackedModel, TrackingWorker, tracked_job


class ModelError(Exception):
    """A model that cannot analyse the media."""


def _play(model: TrackedModel, frames: int, frame_seconds: float, what: str | None,
          marker: str | None) -> None:
    for frame in range(1, frames + 1):
        model.progress(frame, frames)
        if frame == frames // 2 and what is not None:
            _misbehave(model.model_name, what, marker)
        time.sleep(frame_seconds)
    model.complete("FAKE", 0.9)


def _misbehave(model: str, what: str, marker: str | None) -> None:
    if what == "fail":
        raise ModelError(f"{model} lost the face track")
    job = get_current_job()
    if what == "hang" and job is not None:
        # Ignored, not blocked: the horse's other threads would take a blocked SIGALRM,
        # and its handler would raise here once this thread ran Python again.
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        # Past the timeout by more than the moment between the fork and the worker's
        # noting the job's start: its failure then reads as a timeout's.
        time.sleep((job.timeout or 0) + 2)
    if marker is not None and job is not None:
        job.connection.set(f"{marker}:{model}", os.getpid(), ex=300)
    if what == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what in ("hang", "stall"):
        time.sleep(600)


@tracked_job
def analyse_model(tracking: JobTracking, frames: int, frame_seconds: float,
                  plan: dict[str, str], marker: str | None = None) -> str:
    """One model of a media (the per-model layout)."""
    model = tracking.model()
    _play(model, frames, frame_seconds, plan.get(model.model_name), marker)
    return model.model_name


@tracked_job
def analyse_media(tracking: JobTracking, frames: int, frame_seconds: float,
                  plan: dict[str, str], marker: str | None = None) -> list[str]:
    """Every model of a media (the single-job layout); a failed model does not stop it."""
    for name in tracking.models:
        with contextlib.suppress(ModelError), tracking.model(name) as model:
            _play(model, frames, frame_seconds, plan.get(name), marker)
    return [tracking.model(name).state for name in tracking.models]


@tracked_job
def flaky_model(tracking: JobTracking, frames: int, failing: dict[str, list[str]]) -> str:
    """One model whose attempts go as ``failing[model]`` says, one entry per attempt
    (``raise``, ``sigkill``; missing: it completes). RQ's Retry runs it again."""
    model = tracking.model()
    plan = failing.get(model.model_name, [])
    what = plan[tracking.attempt - 1] if tracking.attempt <= len(plan) else None
    for frame in model.track(range(frames)):
        if frame == frames // 2 and what == "raise":
            raise ModelError(f"{model.model_name} lost the face track "
                             f"(attempt {tracking.attempt})")
        if frame == frames // 2 and what == "sigkill":
            tracking.publisher.flush(5)  # what went out before the crash, deterministic
            os.kill(os.getpid(), signal.SIGKILL)
    model.complete("REAL", 0.8)
    return model.model_name


@tracked_job
def flaky_media(tracking: JobTracking, frames: int, failing_attempts: int) -> list[str]:
    """Every model of a media; the job fails outside its models in its first
    ``failing_attempts`` attempts, after its first model completed."""
    for index, name in enumerate(tracking.models):
        with tracking.model(name) as model:
            for _ in model.track(range(frames)):
                pass
        if index == 0 and tracking.attempt <= failing_attempts:
            raise ModelError(f"the media's audio track is unreadable (attempt {tracking.attempt})")
    return [tracking.model(name).state for name in tracking.models]


def work(url: str, queue_name: str, burst: bool, alive_ttl: float) -> None:
    """Run a TrackingWorker on ``queue_name`` (RQ's keys at ``url``) in this process."""
    connection = redis.Redis.from_url(url)
    worker = TrackingWorker(
        [Queue(queue_name, connection=connection)], connection=connection,
        alive_ttl=alive_ttl, sweep_interval=1.0, job_monitoring_interval=1,
    )
    worker.work(burst=burst, logging_level="WARNING")


if __name__ == "__main__":
    work(sys.argv[1], sys.argv[2], sys.argv[3] == "burst", float(sys.argv[4]))
