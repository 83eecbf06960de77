"""Enqueueing a media in either layout, and the finalizer job of the per-model layout.

``enqueue_media(queue, job, ..., layout="per-model")`` is the product's layout: one job
per model, each running ``job`` with ``model=<name>``, and a finalizer job that RQ runs
once every model job has ended, failed ones included (``Dependency(allow_failure=True)``).
The media's terminal event goes out as soon as its last model ends, from whichever
process ends it (the model's horse, the worker that saw the horse die, the sweeper);
the finalizer then closes anything still open (a model job that ended without the SDK
noticing) and returns the outcome, so RQ has one job to wait on per media.

``layout="single"`` enqueues one job for all the models.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rq import Queue
from rq.job import Dependency, Job

from ..exceptions import ConfigurationError
from ..publisher import ProgressPublisher
from ..tracking import MediaRun
from . import settings
from .closing import finalize_run
from .decorator import META_KEY
from .state import MAX_MODELS, RunState

__all__ = ["MediaJobs", "enqueue_media", "finalize_media"]

LAYOUTS = ("per-model", "single")


@dataclass
class MediaJobs:
    """The RQ jobs of one media: one per model (or one in all), and the finalizer."""

    media_id: str
    run_id: str | None
    jobs: dict[str, Job] = field(default_factory=dict)
    finalizer: Job | None = None

    @property
    def last(self) -> Job:
        """The job that ends last: the finalizer, or the single job."""
        return self.finalizer if self.finalizer is not None else next(iter(self.jobs.values()))


def finalize_media(run_key: str) -> str | None:
    """The finalizer job: ends the media run if nobody has; returns its terminal event."""
    config = settings.current()
    from rq import get_current_job  # noqa: PLC0415 - the job's own connection

    job = get_current_job()
    if job is None:
        raise ConfigurationError("finalize_media runs as an RQ job (enqueue_media enqueues it)")
    state = RunState(job.connection, prefix=config.prefix, ttl=config.state_ttl)
    outcome = finalize_run(
        settings.default_publisher(), state, run_key,
        "the model's job ended without reporting a result",
        delivery_timeout=config.delivery_timeout,
    )
    state.close_job(job.id)
    return outcome


def _check(models: Sequence[str], layout: str) -> list[str]:
    if layout not in LAYOUTS:
        raise ConfigurationError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    names = list(models)
    if not names or len(set(names)) != len(names) or len(names) > MAX_MODELS:
        raise ConfigurationError(
            f"models must be 1 to {MAX_MODELS} distinct model names, got {names!r}"
        )
    return names


def enqueue_media(
    queue: Queue,
    job: Any,
    *args: Any,
    media_id: str,
    user_id: str,
    models: Sequence[str],
    run_id: str | None = None,
    filename: str | None = None,
    layout: str = "per-model",
    publisher: ProgressPublisher | None = None,
    job_timeout: int | None = None,
    finalizer_timeout: int = 60,
    **kwargs: Any,
) -> MediaJobs:
    """Enqueue ``job`` (a ``@tracked_job``) for a media; ``args``/``kwargs`` go to it.

    In the per-model layout the media is announced first (``PROCESSING_STARTED`` and
    ``ANALYSIS_QUEUED`` per model, through ``publisher``, default: the configured one),
    so the UI shows every model's row before any job runs.
    """
    names = _check(models, layout)
    config = settings.current()
    state = RunState(queue.connection, prefix=config.prefix, ttl=config.state_ttl)
    ids = {"media_id": media_id, "user_id": user_id, "run_id": run_id, "filename": filename,
           "models": names}
    result = MediaJobs(media_id, run_id)
    run_key = state.run_key(media_id, run_id)
    if layout == "single":
        job_id = uuid.uuid4().hex
        state.forget_run(run_key)  # a re-analysis: the horse records the run afresh
        state.record_job(job_id, run_key=run_key, role="single")
        result.jobs["*"] = queue.enqueue(
            job, *args, job_id=job_id, meta={META_KEY: ids}, job_timeout=job_timeout, **kwargs
        )
        return result
    out = publisher or settings.default_publisher()
    # The model jobs and whoever ends the last model end this run, not this process.
    run = MediaRun(out, media_id, user_id, filename=filename, run_id=run_id,
                   ends_elsewhere=True)
    run.start()
    run.queue(names)
    state.record_run(media_id=media_id, user_id=user_id, run_id=run_id, filename=filename,
                     layout="per-model", models=names, fresh=True)
    out.flush(config.delivery_timeout)
    try:
        _enqueue_per_model(
            queue, state, result, run_key=run_key, job=job, args=args, kwargs=kwargs, ids=ids,
            job_timeout=job_timeout, finalizer_timeout=finalizer_timeout,
        )
    except BaseException as exc:
        # The UI already shows the media: end it rather than leave its panel open.
        for enqueued in result.jobs.values():
            enqueued.cancel()
        finalize_run(out, state, run_key, f"the media could not be enqueued: {exc}",
                     delivery_timeout=config.delivery_timeout)
        raise
    return result


def _enqueue_per_model(
    queue: Queue, state: RunState, result: MediaJobs, *, run_key: str, job: Any,
    args: tuple[Any, ...], kwargs: dict[str, Any], ids: dict[str, Any],
    job_timeout: int | None, finalizer_timeout: int,
) -> None:
    for name in ids["models"]:
        job_id = uuid.uuid4().hex
        state.record_job(job_id, run_key=run_key, role="model", model=name)
        result.jobs[name] = queue.enqueue(
            job, *args, job_id=job_id, meta={META_KEY: {**ids, "model": name}},
            job_timeout=job_timeout, **kwargs,
        )
    finalizer_id = uuid.uuid4().hex
    state.record_job(finalizer_id, run_key=run_key, role="finalizer")
    result.finalizer = queue.enqueue(
        finalize_media, run_key, job_id=finalizer_id, job_timeout=finalizer_timeout,
        depends_on=Dependency(jobs=list(result.jobs.values()), allow_failure=True),
        meta={META_KEY: {"media_id": ids["media_id"], "run_id": ids["run_id"],
                         "role": "finalizer"}},
    )
