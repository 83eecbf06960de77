"""Publishing what a job could not: failed models and the media's terminal event.

Whoever notices that a job ended without its events (the worker's parent process after
a horse died, the sweeper after a worker died, the finalizer job, the last model job of
a media) calls these functions. They work from the shared state alone (``RunState``),
so any process can, and its atomic steps make sure each model's failure and the media's
terminal event are published once, whoever gets there first.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import defaults as d
from ..event_types import ANALYSIS_FAILED, ANALYSIS_QUEUED, PROCESSING_COMPLETED, PROCESSING_FAILED
from ..publisher import ProgressPublisher
from .state import RunRecord, RunState

__all__ = [
    "close_job",
    "finalize_run",
    "publish_model_failed",
    "publish_retry",
    "publish_terminal",
    "retry_job",
]

log = logging.getLogger("progress_sdk.rq")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fields(run: RunRecord, event: str, message: str, data: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "media_id": run.media_id,
        "user_id": run.user_id,
        "event": event,
        "message": _clip(message, d.MAX_MESSAGE_CHARS),
        "data": data,
    }
    if run.run_id is not None:
        fields["run_id"] = run.run_id
    return fields


def publish_model_failed(
    publisher: ProgressPublisher, run: RunRecord, model: str, error: str
) -> None:
    """Emit ``ANALYSIS_FAILED`` for ``model`` with ``error`` (the UI shows it)."""
    error = _clip(error, d.MAX_ERROR_MESSAGE_CHARS)
    publisher.emit(
        _fields(
            run,
            ANALYSIS_FAILED,
            f"{model} failed: {error}",
            {"model_name": model, "error_message": error},
        )
    )


def publish_retry(
    publisher: ProgressPublisher, run: RunRecord, model: str, reason: str, *, attempt: int,
    attempts: int,
) -> None:
    """Emit ``ANALYSIS_QUEUED`` for ``model``'s attempt ``attempt`` of ``attempts``.

    Not ``ANALYSIS_FAILED``: the model is not done, and a UI that knows nothing of retries
    shows it queued, which it is; the failed attempt's text goes in
    ``data.details.retry_reason``. Readers count an ``ANALYSIS_QUEUED`` (or
    ``ANALYSIS_STARTED``) with a higher ``details.attempt`` as the model's new run
    (docs/contract.md, rule 2).
    """
    reason = _clip(reason, d.MAX_ERROR_MESSAGE_CHARS)
    publisher.emit(
        _fields(
            run,
            ANALYSIS_QUEUED,
            f"{model} retrying ({attempt}/{attempts}): {reason}",
            {"model_name": model, "details": {
                "attempt": attempt, "attempts": attempts, "retry_reason": reason}},
        )
    )


def retry_job(
    publisher: ProgressPublisher, state: RunState, job_id: str, reason: str,
    *, attempt: int, attempts: int, delivery_timeout: float = 5.0,
) -> bool:
    """Announce that RQ runs the job again as attempt ``attempt`` of ``attempts``.

    A model job's model, or every model of a single job's media (the whole media runs
    again), is queued again with ``reason``; the media does not end. Once per attempt,
    whoever (the horse, or the worker's parent after a crash) gets there first; the job
    stays open, owned by no worker, so the sweeper reports it if RQ never runs it.
    Returns False when the attempt was already announced (or the job is unknown).
    """
    record = state.load_job(job_id)
    if record is None or record.run_key is None or not state.announce_attempt(job_id, attempt):
        return False
    run = state.load_run(record.run_key)
    if run is None or run.terminal is not None:
        return False
    if record.role == "model" and record.model:
        models = [record.model] if run.models.get(record.model) != "completed" else []
    else:
        models = list(run.models)
    for model in models:
        state.set_model(run.key, model, "queued")
        publish_retry(publisher, run, model, reason, attempt=attempt, attempts=attempts)
    publisher.flush(delivery_timeout)
    return True


def publish_terminal(
    publisher: ProgressPublisher,
    state: RunState,
    run_key: str,
    *,
    failed_outside: str | None = None,
    delivery_timeout: float = 5.0,
) -> str | None:
    """Emit the media's terminal event by contract rule 5; the caller holds the claim.

    ``PROCESSING_COMPLETED`` when a model completed and the job did not fail outside
    any model (``failed_outside``, the reason, when it did); else ``PROCESSING_FAILED``.
    Waits up to ``delivery_timeout`` for delivery, then records the outcome.
    """
    run = state.load_run(run_key)
    if run is None:
        return None
    data: dict[str, Any] = {"filename": run.filename} if run.filename else {}
    completed = sum(1 for s in run.models.values() if s == "completed")
    if failed_outside is None and completed:
        event = PROCESSING_COMPLETED
        message = f"Analysis complete: {completed}/{len(run.models)} models succeeded"
    else:
        event = PROCESSING_FAILED
        error = failed_outside or (
            "every model failed" if run.models else "no model was run for this media"
        )
        data["error_message"] = _clip(error, d.MAX_ERROR_MESSAGE_CHARS)
        message = f"Processing failed: {error}"
    publisher.emit(_fields(run, event, message, data))
    publisher.flush(delivery_timeout)
    state.terminal_sent(run_key, event)
    return event


# How long a reporter holds a model's failure beyond its delivery wait: a reporter that
# dies in between leaves the model to a sweep after that (sweeps run every few seconds).
_FAILURE_HOLD_MARGIN = 10.0


def _end_open_model(
    publisher: ProgressPublisher, state: RunState, run: RunRecord, model: str, error: str,
    *, claim: bool, delivery_timeout: float,
) -> bool | None:
    """Fail one model unless it already ended; returns whether the terminal was claimed.

    None when another process is reporting the model's failure right now. The failure
    is delivered (bounded wait) before the shared state says the model ended: whoever
    then ends the media publishes its terminal event after this one (contract rule 5),
    not ahead of it from another process's publisher. This is housekeeping of a worker,
    sweeper or finalizer, never a job's own emit, which stays non-blocking.
    """
    if not state.take_model_failure(run.key, model, delivery_timeout + _FAILURE_HOLD_MARGIN):
        return None
    latest = state.load_run(run.key)
    if latest is None or model not in latest.open_models:
        return False
    publish_model_failed(publisher, run, model, error)
    publisher.flush(delivery_timeout)
    _, claimed = state.end_model(run.key, model, "failed", claim=claim)
    return claimed


def finalize_run(
    publisher: ProgressPublisher, state: RunState, run_key: str, reason: str,
    *, delivery_timeout: float = 5.0,
) -> str | None:
    """End a media run: fail the models still open (``reason``), then its terminal event.

    Returns the terminal event type, whoever published it (None for an unknown run).
    """
    run = state.load_run(run_key)
    if run is None:
        return None
    if run.terminal is not None:
        return run.terminal
    claimed = False
    for model in run.open_models:
        claimed = bool(_end_open_model(
            publisher, state, run, model, reason, claim=True, delivery_timeout=delivery_timeout,
        )) or claimed
    if not run.open_models:
        claimed = state.claim_terminal(run_key)
    if claimed:
        return publish_terminal(publisher, state, run_key, delivery_timeout=delivery_timeout)
    publisher.flush(delivery_timeout)
    latest = state.load_run(run_key)
    return latest.terminal if latest is not None else None


def close_job(
    publisher: ProgressPublisher, state: RunState, job_id: str, reason: str,
    *, delivery_timeout: float = 5.0,
) -> bool:
    """Publish what a job that ended without reporting left open; False if nothing was.

    A model job's model fails with ``reason`` (and if it was its media's last open
    model, the media ends, rule 5). A single job's running models fail with ``reason``,
    the ones it never reached fail as not run, and the media ends: by the models when
    one was running (the failure happened inside it), else ``PROCESSING_FAILED``. A
    finalizer job's media is finalized. Idempotent: a closed job is left alone.
    """
    record = state.load_job(job_id)
    if record is None or record.closed:
        return False
    run = state.load_run(record.run_key) if record.run_key else None
    if run is not None and record.role == "model" and record.model:
        claimed = _end_open_model(
            publisher, state, run, record.model, reason, claim=True,
            delivery_timeout=delivery_timeout,
        )
        if claimed is None:
            return False  # another process reports it now, and closes the job after
        if claimed:
            publish_terminal(publisher, state, run.key, delivery_timeout=delivery_timeout)
    elif run is not None and record.role == "single":
        if not _close_single(publisher, state, run, reason, delivery_timeout):
            return False
    elif run is not None and record.role == "finalizer":
        finalize_run(publisher, state, run.key, reason, delivery_timeout=delivery_timeout)
    publisher.flush(delivery_timeout)
    return state.close_job(job_id) and run is not None


def _close_single(
    publisher: ProgressPublisher, state: RunState, run: RunRecord, reason: str,
    delivery_timeout: float,
) -> bool:
    """False when another process reports one of its models now (and ends the media)."""
    if run.terminal is not None:
        return True
    running = [m for m, s in run.models.items() if s == "started"]
    for model in run.open_models:
        error = reason if model in running else f"not run: {reason}"
        taken = _end_open_model(
            publisher, state, run, model, error, claim=False, delivery_timeout=delivery_timeout
        )
        if taken is None:
            return False
    if state.claim_terminal(run.key):
        publish_terminal(
            publisher, state, run.key,
            failed_outside=None if running else reason,
            delivery_timeout=delivery_timeout,
        )
    return True
