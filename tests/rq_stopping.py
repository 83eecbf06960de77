"""A TrackingWorker asked to stop while its main process reports a job
(tests/test_rq_worker_stop.py): ``python rq_stopping.py RQ_URL QUEUE EVENTS_URL CHANNEL``.

The job returns without reporting its model, so the worker's main process fails the
model and ends the media; the publisher it does that with sends SIGTERM to its own
process at its first event there, as a `kill` (or a test's ``terminate()``) landing in
that moment would. The worker does not run in burst mode: it ends only if it stops.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import redis
from rq import Queue

from progress_sdk import ProgressPublisher
from progress_sdk.rq import TrackingWorker

WORKER_PID = os.getpid()


def unreported(*args: Any, **kwargs: Any) -> None:
    """A job that ends without a word about its model (not a ``@tracked_job``)."""


class StopsWhileReporting(ProgressPublisher):
    """SIGTERM to this process at its first event in the worker's main process."""

    signalled = False

    def emit(self, event: Any) -> None:
        if os.getpid() == WORKER_PID and not StopsWhileReporting.signalled:
            StopsWhileReporting.signalled = True
            os.kill(os.getpid(), signal.SIGTERM)
        super().emit(event)


def work(rq_url: str, queue_name: str, events_url: str, channel: str) -> None:
    """Run the worker on ``queue_name`` (RQ's keys at ``rq_url``) until it stops."""
    connection = redis.Redis.from_url(rq_url)
    worker = TrackingWorker([Queue(queue_name, connection=connection)], connection=connection,
                            publisher=StopsWhileReporting(events_url, channel))
    worker.work(burst=False, logging_level="WARNING")


if __name__ == "__main__":
    work(*sys.argv[1:5])
