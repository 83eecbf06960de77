"""``progress-sim run --via rq`` and ``progress-sim worker``: simulated media as real RQ jobs.

``enqueue_simulation`` plans each media with a seeded RNG (units per model, time per
unit, which models fail and which work horses crash) and enqueues it in the product's
layout: one ``simulate_model`` job per model and a finalizer (``enqueue_media``). A
planned crash is real: the job SIGKILLs its own work horse half-way through its model,
and the ``TrackingWorker`` that ran it reports the model's failure and, when it was the
media's last model, the media's end. ``run_worker`` runs such a worker.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

import redis
from rq import Queue

from progress_sdk import ProgressPublisher
from progress_sdk.event_types import FRAME_ANALYSIS_PROGRESS, WINDOW_PROCESSING_PROGRESS
from progress_sdk.rq import (
    JobTracking,
    MediaJobs,
    TrackingWorker,
    configure,
    enqueue_media,
    tracked_job,
)
from progress_sdk.rq.worker import unloadable

from .catalog import CATALOG

__all__ = [
    "RqRunSummary",
    "SimulatorWorker",
    "add_import_paths",
    "enqueue_simulation",
    "media_ids",
    "plan_steps",
    "run_worker",
    "simulate_model",
    "start_workers",
    "wait_for",
]

DEFAULT_QUEUE = "progress-sim"


class SimulatedModelError(Exception):
    """A simulated model failure (its message is what the UI shows)."""


@tracked_job
def simulate_model(tracking: JobTracking, plan: dict[str, dict[str, Any]]) -> str:
    """One model of a simulated media: progress, then complete, fail or a real crash."""
    model = tracking.model()
    step = plan[model.model_name]
    units, seconds = int(step["units"]), float(step["seconds"])
    event = step["event"]
    # model.track() reports each unit once done, with elapsed, rate and ETA in
    # data.details, as a real worker's frame loop does.
    for unit in model.track(range(1, units + 1), event=event):
        if unit == step.get("crash_at"):
            os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
        if unit == step.get("fail_at"):
            raise SimulatedModelError(step["error"])
        time.sleep(seconds)
    model.complete("FAKE" if step["fake"] else "REAL", round(float(step["confidence"]), 3))
    return model.model_name


def plan_steps(rng: random.Random, models: tuple[str, ...], speed: float, fail_rate: float,
               crash_rate: float) -> dict[str, dict[str, Any]]:
    """One media's plan: per model, its units, time per unit, verdict, and where it fails
    (with a reason of its kind) or its horse crashes."""
    plan: dict[str, dict[str, Any]] = {}
    for name in models:
        units = rng.randint(40, 120)
        audio = CATALOG[name].kind == "audio"
        step: dict[str, Any] = {
            "units": units,
            "seconds": 0.0 if speed == 0 else rng.uniform(0.005, 0.03) / speed,
            "event": WINDOW_PROCESSING_PROGRESS if audio else FRAME_ANALYSIS_PROGRESS,
            "fake": rng.random() < 0.5,
            "confidence": rng.uniform(0.5, 1.0),
        }
        if rng.random() < crash_rate:
            step["crash_at"] = rng.randint(2, units)
        elif rng.random() < fail_rate:
            step["fail_at"] = rng.randint(2, units)
            # The model's own kind of failure (an audio model finds no audio stream, a
            # video model no face), as the in-process simulation gives it.
            step["error"] = rng.choice(CATALOG[name].errors)(rng)
        plan[name] = step
    return plan


def enqueue_simulation(
    queue: Queue, publisher: ProgressPublisher, *, media: int, models: tuple[str, ...],
    users: int, seed: int, speed: float = 1.0, fail_rate: float = 0.0,
    crash_rate: float = 0.0,
) -> list[MediaJobs]:
    """Enqueue ``media`` simulated media, one job per model plus a finalizer each."""
    rng = random.Random(seed)
    enqueued = []
    for index, media_id in enumerate(media_ids(seed, media)):
        plan = plan_steps(rng, models, speed, fail_rate, crash_rate)
        enqueued.append(enqueue_media(
            queue, simulate_model, plan, media_id=media_id,
            user_id=f"user-{index % users + 1}", models=list(models),
            run_id=f"run-{media_id}", filename=f"{media_id}.mp4", publisher=publisher,
        ))
    return enqueued


def media_ids(seed: int, media: int) -> list[str]:
    """The ids ``enqueue_simulation`` gives its media (known before they are enqueued,
    so a subscriber can keep to them)."""
    return [f"sim-{seed}-{index:04d}" for index in range(media)]


@dataclass
class RqRunSummary:
    """How the enqueued media ended, as their last jobs (finalizers) report it."""

    media: int
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def finished(self) -> int:
        """Media whose finalizer returned."""
        return sum(self.outcomes.values())

    def to_text(self) -> str:
        """One line for people."""
        parts = ", ".join(f"{count} {name}" for name, count in sorted(self.outcomes.items()))
        return f"{self.finished}/{self.media} media ended ({parts or 'none'})"


def wait_for(
    enqueued: list[MediaJobs], timeout: float | None, stop: threading.Event | None = None
) -> RqRunSummary:
    """Wait until every media's last job ended (or ``timeout``, or ``stop`` is set);
    summarise outcomes."""
    summary = RqRunSummary(len(enqueued))
    pending = list(enqueued)
    deadline = None if timeout is None else time.monotonic() + timeout
    stop = stop or threading.Event()
    while pending and (deadline is None or time.monotonic() < deadline) and not stop.is_set():
        still = []
        for jobs in pending:
            status = jobs.last.get_status(refresh=True)
            if status == "finished":
                summary.outcomes[str(jobs.last.return_value())] += 1
            elif status in ("failed", "stopped", "canceled"):
                summary.outcomes[f"finalizer {status}"] += 1
            else:
                still.append(jobs)
        pending = still
        if pending:
            stop.wait(0.2)
    return summary


def start_workers(
    url: str, channel: str, queue: str, count: int, log: IO[bytes]
) -> list[subprocess.Popen[bytes]]:
    """``count`` burst ``progress-sim worker`` processes on ``queue``, output to ``log``.

    Burst: each stops once the queue is empty. A media's finalizer is enqueued by the
    worker that ended its last model before that worker looks at the queue again, so the
    last worker standing always runs it.
    """
    command = [sys.executable, "-c", "from simulator.cli import main; main()",
               "--redis-url", url, "--channel", channel, "worker", "--burst", "--queue", queue]
    return [subprocess.Popen(command, stdout=log, stderr=log) for _ in range(count)]


class SimulatorWorker(TrackingWorker):
    """``progress-sim worker``'s TrackingWorker: a job whose code cannot be imported is one
    ``error:`` line on stderr (which module, and what to do) instead of rq's traceback."""

    def handle_exception(self, job: Any, *exc_info: Any) -> None:
        """One line for an unimportable job; rq's logged traceback for anything else."""
        why = unloadable(job) if self.is_horse else None
        if why is None:
            super().handle_exception(job, *exc_info)
            return
        sys.stderr.write(
            f"error: cannot import {job.func_name} ({why}): start the worker in the folder "
            "that holds its module, or name that folder with --path\n"
        )
        sys.stderr.flush()


def add_import_paths(paths: tuple[str, ...]) -> None:
    """Put ``paths`` on ``sys.path`` as ``rq worker --path`` does (its default: ``.``).

    Absolute, so a job's module is found however the horse's working folder changes.
    """
    for path in paths:
        folder = os.path.abspath(path)
        if folder not in sys.path:
            sys.path.append(folder)


def run_worker(
    url: str, channel: str, queues: tuple[str, ...], *, burst: bool,
    with_scheduler: bool = False,
) -> None:
    """Run a TrackingWorker on ``queues``; its jobs publish on ``channel`` at ``url``
    (``with_scheduler``: RQ's scheduler too, for retries with intervals)."""
    connection = redis.Redis.from_url(url)
    configure(publisher=ProgressPublisher(url, channel))
    worker = SimulatorWorker(
        [Queue(name, connection=connection) for name in queues], connection=connection
    )
    worker.work(burst=burst, logging_level="WARNING", with_scheduler=with_scheduler)
