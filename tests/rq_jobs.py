"""Jobs for tests/test_rq_worker.py, run by a real RQ worker in another process.

``PUBLISHER`` is created when this module is imported. ``work()`` imports it in the
worker's main process before the worker starts, as a worker that preloads its job code
does; RQ then forks a work horse per job, so each job uses a forked copy of the
publisher, and the horse ends with ``os._exit`` (no atexit handlers). The publisher reads
REDIS_URL and MEDIA_PROGRESS_CHANNEL_NAME from the environment the test sets.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import redis
from rq import Queue
from rq_burst import Worker

from progress_sdk import ProgressPublisher

PUBLISHER = ProgressPublisher()
IMPORTED_IN = os.getpid()
FRAMES = 300


class ModelError(Exception):
    """A model that cannot analyse the media."""


def analyse(media_id: str, models: list[str], failing: list[str]) -> dict[str, Any]:
    """Track one media through ``models``; those in ``failing`` raise ModelError."""
    with PUBLISHER.media(
        media_id, "u-rq", filename=f"{media_id}.mp4", run_id=f"run-{media_id}"
    ) as run:
        run.queue(models)
        for name in models:
            # A failed model fails its row; the media goes on with the next model.
            with contextlib.suppress(ModelError), run.model(name) as model:
                for frame in range(1, FRAMES + 1):
                    model.progress(frame, FRAMES)
                    if name in failing and frame == FRAMES // 2:
                        raise ModelError(f"{name} lost the face track at frame {frame}")
                model.complete("FAKE", 0.87)
    return {
        "pid": os.getpid(),
        "imported_in": IMPORTED_IN,
        "source": PUBLISHER.source,
        "outcome": run.outcome,
    }


def work(url: str, queue_name: str) -> None:
    """Run a burst worker (a plain one, see rq_burst) on ``queue_name`` in this process."""
    connection = redis.Redis.from_url(url)
    Worker([Queue(queue_name, connection=connection)], connection=connection).work(burst=True)
