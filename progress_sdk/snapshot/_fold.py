"""Folding events into snapshots: ``fold_event`` (in place, the writer's hot path),
``apply_event`` (into a copy), and which publishers vouch for a media (``owners_of``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_QUEUED,
    ANALYSIS_STARTED,
    EVENT_TYPES,
    MEDIA_EVENT_NAMES,
    MODEL_EVENT_NAMES,
    PROCESSING_COMPLETED,
    PROCESSING_STARTED,
    normalize_event_name,
)
from ._model import (
    COMPLETED,
    FAILED,
    RUNNING,
    MediaSnapshot,
    ModelSnapshot,
    int_or_none,
    number_or_none,
    text_or_none,
)

__all__ = ["apply_event", "copy_snapshot", "fold_event", "owner_of", "owners_of"]

_MODEL_STATUS = {row.name: row.status for row in EVENT_TYPES.values() if row.status is not None}
assert set(_MODEL_STATUS.values()) >= {COMPLETED, FAILED}
# The tracking API's phase names for the phase events (tracking.ModelRun.step), used when
# another producer leaves data.phase out.
_PHASE_OF = {row.name: row.phase for row in EVENT_TYPES.values() if row.phase is not None}


def apply_event(
    state: MediaSnapshot | None, event: Mapping[str, Any], now: float
) -> MediaSnapshot:
    """Fold one decoded wire event into a copy of ``state`` (None: no snapshot yet).

    Lenient like the UI: fields of the wrong type are ignored, names are normalised
    (``ANALYSIS_COMPLETE``), a ``PROCESSING_STARTED`` after a terminal event starts a
    fresh snapshot (a re-analysis). The caller checked that ``event`` has a ``media_id``.
    """
    return fold_event(copy_snapshot(state) if state is not None else None, event, now)


def copy_snapshot(state: MediaSnapshot) -> MediaSnapshot:
    """A copy that shares nothing mutable with ``state``."""
    return replace(
        state, seqs=dict(state.seqs), models={k: replace(m) for k, m in state.models.items()}
    )


def fold_event(
    state: MediaSnapshot | None,
    event: Mapping[str, Any],
    now: float,
    seq: int | None = None,
    source: str | None = None,
) -> MediaSnapshot:
    """``apply_event`` in place (the publisher's hot path): returns ``state`` changed, or
    a new snapshot for a first event or a new run. ``seq``/``source``, when given, stand
    for the event's own (the publisher numbers events outside their fields)."""
    name = event.get("event")
    name = normalize_event_name(name) if type(name) is str else ""
    data = event.get("data")
    data = data if type(data) is dict or isinstance(data, Mapping) else {}  # ABC check: slow
    if state is None or (name == PROCESSING_STARTED and state.status != RUNNING):
        state = MediaSnapshot(str(event.get("media_id")), started_at=now)
    state.updated_at = now
    user_id, run_id = event.get("user_id"), event.get("run_id")
    if type(user_id) is str and user_id:
        state.user_id = user_id
    if type(run_id) is str and run_id:
        state.run_id = run_id
    if seq is None:
        seq, source = int_or_none(event.get("seq")), text_or_none(event.get("source"))
    if seq is not None and source:
        state.seq, state.source = seq, source
        state.seqs[source] = seq
    if name in MEDIA_EVENT_NAMES:
        _fold_media(state, name, data, event)
    elif name in MODEL_EVENT_NAMES:
        model = data.get("model_name")
        if type(model) is str and model:
            row = state.models.get(model)
            if row is None or (name in _ATTEMPT_STARTS and _retried(data)):
                # A retried job's next attempt starts the model over (contract, rule 2).
                row = state.models[model] = ModelSnapshot()
            _fold_model(row, name, data, now)
    return state


def _fold_media(
    state: MediaSnapshot, name: str, data: Mapping[str, Any], event: Mapping[str, Any]
) -> None:
    if name == PROCESSING_STARTED:
        if not state.filename:
            state.filename = text_or_none(data.get("filename"))
    elif name == PROCESSING_COMPLETED:
        state.status = COMPLETED
    else:
        state.status = FAILED
        state.error = (
            text_or_none(data.get("error_message")) or text_or_none(event.get("message"))
            or "failed"
        )


_ATTEMPT_STARTS = frozenset({ANALYSIS_QUEUED, ANALYSIS_STARTED})


def _retried(data: Mapping[str, Any]) -> bool:
    details = data.get("details")
    attempt = details.get("attempt") if isinstance(details, Mapping) else None
    return type(attempt) is int and attempt > 1


def _fold_model(row: ModelSnapshot, name: str, data: Mapping[str, Any], now: float) -> None:
    row.updated_at = now
    status = _MODEL_STATUS.get(name)
    if status is not None:
        row.status = status
    elif row.status == "queued":
        row.status = "analyzing"  # joined late: its ANALYSIS_STARTED went by
    phase = data.get("phase")
    phase = phase if type(phase) is str and phase else _PHASE_OF.get(name)
    if phase is not None:
        row.phase = phase
    progress, total = data.get("progress"), data.get("total")
    if type(progress) is int and type(total) is int and total > 0:
        row.progress, row.total = min(max(progress, 0), total), total
    details = data.get("details")
    if details is not None and (type(details) is dict or isinstance(details, Mapping)):
        eta = number_or_none(details.get("eta_seconds"))
        if eta is not None:
            row.eta_seconds = max(eta, 0.0)
    if name == ANALYSIS_COMPLETED:
        row.prediction = text_or_none(data.get("prediction"))
        row.confidence = number_or_none(data.get("confidence"))
        row.eta_seconds = None
        if row.total is not None:
            row.progress = row.total
    elif name == ANALYSIS_FAILED:
        row.error = text_or_none(data.get("error_message")) or "failed"
        row.eta_seconds = None


def owners_of(state: MediaSnapshot) -> set[str]:
    """The publishers vouching for a running media: the owners of its rows analyzing, or
    else the media's owner (none: it waits on a queue, or no liveness). The sweeper fails
    the media for a gone owner only when every one of them is gone."""
    rows = {row.owner for row in state.models.values() if row.status == "analyzing" and row.owner}
    if rows:
        return rows
    return {state.owner} if state.owner else set()


def owner_of(state: MediaSnapshot, owner: str) -> str:
    """``owner``, unless the media waits on a queue: no model analyzing and one queued
    (RQ's per-model layout between two model jobs, or just enqueued). Then no process
    vouches for it (empty): a worker that picks a model up becomes its owner."""
    waiting = False
    for row in state.models.values():
        if row.status == "analyzing":
            return owner
        waiting = waiting or row.status == "queued"
    return "" if waiting else owner
