"""The sweeper: reports the jobs of workers that died with their work horse.

A ``TrackingWorker`` keeps a short-lived key alive (``alive_ttl``, 15 s by default) and
records itself as the owner of each job it runs. When a worker is SIGKILLed, its host
reboots or it is OOM-killed together with its horse, nothing in it can report anything,
and RQ itself only moves the job to its failed registry after the job's heartbeat
expires (a minute or more) and a worker's maintenance pass runs (every 10 minutes by
default). ``sweep()`` finds open tracked jobs whose owner's key has expired and reports
them at once (``close_job``): every ``TrackingWorker`` sweeps every few seconds, and
``progress_sdk.rq.sweep(connection)`` can run from cron or any process.

It also reports jobs that will never run: canceled (``job.cancel()``), deleted, or
failed before any worker took them. RQ does not run a finalizer whose dependency was
canceled, so nothing else would.
"""

from __future__ import annotations

import logging

import redis
from rq.exceptions import InvalidJobOperation
from rq.job import Job

from ..publisher import ProgressPublisher
from . import settings
from .closing import close_job
from .state import RunState

__all__ = ["sweep"]

log = logging.getLogger("progress_sdk.rq")


def sweep(
    connection: redis.Redis,
    publisher: ProgressPublisher | None = None,
    *,
    limit: int = 1000,
) -> int:
    """Report the open jobs of dead workers; returns how many were closed."""
    config = settings.current()
    state = RunState(connection, prefix=config.prefix, ttl=config.state_ttl)
    out = publisher or settings.default_publisher()
    closed = 0
    for job_id, age in state.open_jobs(limit):
        record = state.load_job(job_id)
        if record is None:
            state.close_job(job_id)  # its record expired: nothing left to report
            continue
        if record.closed:
            continue
        if record.owner is None:
            reason = _never_ran(connection, job_id, age)
            if reason is None:
                continue
        elif state.is_alive(record.owner):
            continue
        else:
            # Users read this: the worker's name is RQ's internal id, for the log only.
            reason = (
                "the worker running this job stopped without reporting it (killed "
                "together with its work horse, or its machine went down)"
            )
        log.warning("job %s (worker %s): %s", job_id, record.owner, reason)
        if close_job(out, state, job_id, reason, delivery_timeout=config.delivery_timeout):
            closed += 1
    return closed


# A job is recorded just before it is enqueued: give a missing one time to appear.
_ENQUEUE_GRACE = 30.0


def _never_ran(connection: redis.Redis, job_id: str, age: float) -> str | None:
    """Why a job no worker took will never run, or None while it still may."""
    try:
        status = Job(job_id, connection=connection).get_status()
    except InvalidJobOperation:
        return "the job was deleted before it ran" if age > _ENQUEUE_GRACE else None
    name = getattr(status, "value", status)  # a JobStatus enum, or a str in old rq
    if name in ("canceled", "failed", "stopped"):
        return f"the job was {name} before it ran"
    return None
