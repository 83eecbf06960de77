"""The product UI's progress panel, in a terminal.

``PanelState`` is pure and follows docs/contract.md, "How the existing UI consumes events": a
panel per media opened by ``PROCESSING_STARTED``; a row per model whose status is
``queued`` (ANALYSIS_QUEUED), ``analyzing`` (ANALYSIS_STARTED), ``completed``
(ANALYSIS_COMPLETED or ANALYSIS_COMPLETE), ``failed`` (ANALYSIS_FAILED, with
``data.error_message``) or else ``data.phase``; a bar from ``progress``/``total``; model
names containing "worker" or "backend" ignored. The panel closes when every row is
completed or failed; the media terminal event then gives one final success or error
notice. It only reads the fields the relay forwards to browsers (``media_id``,
``user_id``, ``event``, ``message``, ``data``).

Two liberties, both for a terminal that may join a stream late: a model event for a media
without a panel opens one (marked ``late``), and an event without a phase keeps the row's
last status and bar rather than blanking them.

What it adds to the product's panel, all derived from the same events: an ETA per row
(``data.details.eta_seconds`` when the job sends it, as ``model.track()`` does, else
estimated from the progress seen), the stage a bar belongs to (a model's bar restarts for
each progress type, e.g. frames then visualization, so the row names it, and a bar at
100% whose model has not finished reads "finishing"), an overall progress per media (the
mean of its rows, a finished row counting as whole, as the product's hook computes it) and
three final outcomes: success (every model completed), partial (the media completed with
some models failed) and failure.

The values it hands out are in simulator/panel_views.py; ``render`` and ``LivePanel``, which
draw them with rich, in simulator/panel_render.py (both re-exported here).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from progress_sdk.event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_QUEUED,
    COMPLETED_ALIAS,
    EVENT_TYPES,
    MEDIA_TERMINAL_NAMES,
    PROCESSING_COMPLETED,
    PROCESSING_STARTED,
)

from .panel_render import LivePanel, format_eta, model_counts, render
from .panel_views import ROW_STATES, TERMINAL_ROW, MediaView, Notice, RowView

__all__ = [
    "LivePanel",
    "MediaView",
    "Notice",
    "PanelState",
    "RowView",
    "format_eta",
    "model_counts",
    "render",
]

_COMPLETED = frozenset({ANALYSIS_COMPLETED, COMPLETED_ALIAS})
# The stage a progress event type's bar shows, when the event has no data.phase.
_STAGES = {row.name: row.stage for row in EVENT_TYPES.values() if row.stage is not None}
# The statuses a model row takes on before its end (which has its own handling).
_STATUS = {
    row.name: row.status
    for row in EVENT_TYPES.values()
    if row.status is not None and not row.terminal
}
# The tracking API's phase names, for producers that leave data.phase out.
_PHASE_OF = {row.name: row.phase for row in EVENT_TYPES.values() if row.phase is not None}
_RUNNING = "running"
# Sequenced events kept per media to rebuild on a snapshot older than they are (as the
# browser store's replayLimit).
_REPLAY = 256


@dataclass
class _Media:
    user_id: str | None
    filename: str | None
    last: float
    late: bool
    open: bool = True
    rows: dict[str, RowView] = field(default_factory=dict)
    run_id: str | None = None
    status: str = _RUNNING
    error: str | None = None
    seqs: dict[str, int] = field(default_factory=dict)
    """The last seq applied per source: an event at or below it is a repeat."""
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_REPLAY))
    """The last sequenced events applied, to rebuild on a snapshot older than they are."""
    trimmed: dict[str, int] = field(default_factory=dict)
    """The highest seq per source that left ``recent``."""
    queued: dict[str, int] = field(default_factory=dict)
    """Each model's place in the media's queue (its ANALYSIS_QUEUED among the others)."""

    def ordered_rows(self) -> tuple[RowView, ...]:
        """Rows in queue order, whatever order their events came in.

        A listener that joined late (or a snapshot) gave no ANALYSIS_QUEUED for some
        models: those were queued before it joined, so they come first, by name, and two
        listeners (or one restarted) draw the same rows in the same order rather than in
        whichever order the models reported. The browser store's ``orderedModels`` has the
        same rule (the conformance suite's ``order``).
        """
        return tuple(sorted(
            self.rows.values(),
            key=lambda row: (1, self.queued[row.model], "") if row.model in self.queued
            else (0, 0, row.model),
        ))


class PanelState:
    """Feed decoded events with ``feed`` (and a relay's ``progress_snapshot`` payloads with
    ``apply_snapshot``); read ``snapshot()``, ``all_media()`` and ``drain_notices()``.

    The same semantics as the browser package's store (clients/js), held to it by the
    conformance suite (clients/js/conformance/streams.json, tests/test_conformance.py):
    repeats dropped by (source, seq), a snapshot merged with the live events it does not
    cover, one notice per media run. Thread-safe: one thread may feed while another draws.
    """

    def __init__(self, *, max_notices: int = 1000, max_ended: int = 1000) -> None:
        self._lock = threading.Lock()
        self._media: dict[str, _Media] = {}
        self._notices: deque[Notice] = deque(maxlen=max_notices)
        self._max_ended = max_ended
        self.completed = 0
        """Media that ended with PROCESSING_COMPLETED (partial ones included)."""
        self.partial = 0
        """Media that completed with at least one failed model."""
        self.failed = 0
        """Media that ended with an error notice."""
        self.repeats = 0
        """Events dropped as already applied (by source and seq)."""

    def feed(self, event: dict[str, Any], now: float | None = None) -> None:
        """Apply one decoded event (any producer; malformed fields are ignored)."""
        media_id = event.get("media_id")
        if type(media_id) is not str or type(event.get("event")) is not str:
            return
        at = time.monotonic() if now is None else now
        with self._lock:
            media = self._media.get(media_id)
            at_seq = _sequence(event)
            if media is not None and at_seq and at_seq[1] <= media.seqs.get(at_seq[0], -1):
                self.repeats += 1
                return
            before = _run_state(media)
            media = self._apply(media_id, media, event, at)
            if media is None:
                return
            if at_seq:
                _remember(media, event, at_seq)
            if media.status != _RUNNING:
                _forget(media)
            self._notify(media_id, before, media)

    def _apply(
        self, media_id: str, media: _Media | None, event: dict[str, Any], at: float
    ) -> _Media | None:
        name = str(event["event"])
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        run_id = _str(event.get("run_id"))
        at_seq = _sequence(event)
        if name == PROCESSING_STARTED:
            if media is None or media.status != _RUNNING or (
                run_id and media.run_id and run_id != media.run_id
            ):  # a new run; a repeat (one job per model announces the run each) keeps it
                seqs = dict(media.seqs) if media is not None else {}
                media = self._media[media_id] = _Media(
                    _str(event.get("user_id")), _str(data.get("filename")), at, late=False,
                    run_id=run_id, seqs=seqs,
                )
            elif media.filename is None:
                media.filename = _str(data.get("filename"))
        elif media is not None and media.status != _RUNNING:
            pass  # a straggler after the media's end does not reopen it
        elif name in MEDIA_TERMINAL_NAMES:
            media = media or self._new_late(media_id, event, at)
            media.status = "completed" if name == PROCESSING_COMPLETED else "failed"
            if media.status == "failed":
                media.error = (_str(data.get("error_message")) or _str(event.get("message"))
                               or "failed")
        else:
            model = data.get("model_name")
            if type(model) is not str or not _shown(model):
                return media
            media = media or self._new_late(media_id, event, at)
            if name == ANALYSIS_QUEUED and model not in media.rows:
                # Its first queueing places it; a retry's re-queueing keeps that place.
                media.queued.setdefault(model, len(media.queued))
            media.rows[model] = _next_row(media.rows.get(model), model, name, data, at)
            # Close when every row has its terminal status; a later model event reopens.
            media.open = not all(r.status in TERMINAL_ROW for r in media.rows.values())
        if media is not None:
            media.last = at
            media.run_id = run_id or media.run_id
            if at_seq:
                media.seqs[at_seq[0]] = at_seq[1]
        return media

    def _new_late(self, media_id: str, event: dict[str, Any], at: float) -> _Media:
        media = self._media[media_id] = _Media(_str(event.get("user_id")), None, at, late=True)
        return media

    def apply_snapshot(self, payload: dict[str, Any], now: float | None = None) -> None:
        """Apply a relay's ``progress_snapshot`` (camelCase): it replaces the media's state,
        and the live events already applied that it does not cover are applied again on
        top. A snapshot older than the events kept for that is ignored."""
        media_id = payload.get("mediaId")
        if type(media_id) is not str:
            return
        at = time.monotonic() if now is None else now
        base = _from_snapshot(payload, at)
        with self._lock:
            prev = self._media.get(media_id)
            if prev is not None and any(
                seq > base.seqs.get(source, -1) for source, seq in prev.trimmed.items()
            ):
                return
            before = _run_state(prev)
            self._media[media_id] = base
            if prev is not None and prev.run_id == base.run_id:
                base.queued = dict(prev.queued)  # the snapshot's rows carry no queue order
            for event in prev.recent if prev is not None else ():
                source, seq = _sequence(event) or ("", -1)
                run_id = _str(event.get("run_id"))
                if seq > base.seqs.get(source, -1) and (
                    not run_id or not base.run_id or run_id == base.run_id
                ):
                    self._apply(media_id, base, event, at)
                    base.recent.append(event)
            for source, seq in (prev.seqs if prev is not None else {}).items():
                base.seqs[source] = max(base.seqs.get(source, seq), seq)
            self._notify(media_id, before, base)

    def _notify(self, media_id: str, before: tuple[str, str | None] | None,
                media: _Media) -> None:
        """The notice of a media that just ended: once per run, none when it had ended."""
        if media.status == _RUNNING:
            return
        if before is not None and before[0] != _RUNNING and (
            before[1] is None or media.run_id is None or before[1] == media.run_id
        ):
            return
        self._notices.append(self._notice(media_id, media))
        ended = [k for k, m in self._media.items() if m.status != _RUNNING]
        for key in ended[: max(len(ended) - self._max_ended, 0)]:
            del self._media[key]

    def _notice(self, media_id: str, media: _Media) -> Notice:
        if media.status == "failed":
            self.failed += 1
            text = "analysis failed: " + (media.error or "unknown error")
            return Notice(media_id, media.filename, False, text, "failed")
        done = sum(1 for r in media.rows.values() if r.status == "completed")
        failed = sum(1 for r in media.rows.values() if r.status == "failed")
        text = f"analysis complete: {done} model{'s' if done != 1 else ''} completed"
        outcome = "success"
        if failed:
            text = f"analysis partly failed: {done} of {done + failed} models completed, "
            text += f"{failed} failed"
            outcome = "partial"
            self.partial += 1
        self.completed += 1
        return Notice(media_id, media.filename, True, text, outcome)

    def snapshot(self, now: float | None = None) -> list[MediaView]:
        """The open panels, oldest first, as immutable views."""
        return [v for v in self.all_media(now) if v.status == _RUNNING and v.open]

    def all_media(self, now: float | None = None) -> list[MediaView]:
        """Every media kept, running or ended (the newest ``max_ended`` of those)."""
        at = time.monotonic() if now is None else now
        with self._lock:
            return [
                MediaView(
                    media_id, m.user_id, m.filename, m.ordered_rows(), at - m.last, m.late,
                    status=m.status, error=m.error, open=m.open,
                )
                for media_id, m in self._media.items()
            ]

    def drain_notices(self) -> list[Notice]:
        """Notices not yet taken, oldest first."""
        with self._lock:
            notices = list(self._notices)
            self._notices.clear()
            return notices

    @property
    def open_media(self) -> list[str]:
        """media_id of every panel still open (a crashed job's panel stays open)."""
        with self._lock:
            return [
                media_id for media_id, m in self._media.items()
                if m.open and m.status == _RUNNING
            ]


def _run_state(media: _Media | None) -> tuple[str, str | None] | None:
    return (media.status, media.run_id) if media is not None else None


def _sequence(event: dict[str, Any]) -> tuple[str, int] | None:
    source, seq = event.get("source"), event.get("seq")
    if type(source) is str and source and type(seq) is int:
        return source, seq
    return None


def _remember(media: _Media, event: dict[str, Any], at_seq: tuple[str, int]) -> None:
    if len(media.recent) == media.recent.maxlen:
        old = _sequence(media.recent[0])
        if old is not None:
            media.trimmed[old[0]] = max(media.trimmed.get(old[0], old[1]), old[1])
    media.recent.append(event)


def _forget(media: _Media) -> None:
    """An ended media needs no replay: what it kept becomes the bar a later snapshot must
    reach (an older one is ignored), so a finished media holds no events."""
    for event in media.recent:
        source, seq = _sequence(event) or ("", -1)
        media.trimmed[source] = max(media.trimmed.get(source, seq), seq)
    media.recent.clear()


def _shown(model: str) -> bool:
    lowered = model.lower()
    return bool(model) and "worker" not in lowered and "backend" not in lowered


def _from_snapshot(payload: dict[str, Any], at: float) -> _Media:
    status = payload.get("status")
    media = _Media(
        _str(payload.get("userId")), _str(payload.get("filename")), at, late=False,
        run_id=_str(payload.get("runId")),
        status=status if status in ("completed", "failed") else _RUNNING,
        error=_str(payload.get("error")),
    )
    seqs = payload.get("seqs")
    for source, seq in (seqs.items() if isinstance(seqs, dict) else ()):
        if type(seq) is int:
            media.seqs[str(source)] = seq
    models = payload.get("models")
    for row in models if isinstance(models, list) else ():
        name = row.get("modelName") if isinstance(row, dict) else None
        if type(name) is str and _shown(name):
            media.rows[name] = _snapshot_row(name, row)
    media.open = not media.rows or not all(
        r.status in TERMINAL_ROW for r in media.rows.values())
    return media


def _snapshot_row(name: str, row: dict[str, Any]) -> RowView:
    status = row.get("status")
    phase = _str(row.get("phase"))
    eta, confidence = row.get("etaSeconds"), row.get("confidence")
    return RowView(
        name, status if status in ROW_STATES else "queued",
        progress=row.get("progress") if type(row.get("progress")) is int else None,
        total=row.get("total") if type(row.get("total")) is int else None,
        error=_str(row.get("error")), prediction=_str(row.get("prediction")),
        confidence=_number(confidence), stage=phase, phase=phase, eta=_number(eta),
    )


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _str(value: object) -> str | None:
    return value if type(value) is str and value else None


def _next_row(
    row: RowView | None, model: str, name: str, data: dict[str, Any], at: float
) -> RowView:
    base = row if row is not None else RowView(model, "analyzing")
    attempt = _attempt(data)
    if name in _STATUS and attempt is not None and (
        base.attempt is None or attempt[0] > base.attempt[0]
    ):
        # A retried job's next attempt: the model starts over (docs/contract.md, rule 2).
        reason = data.get("details", {}).get("retry_reason")
        base = RowView(model, _STATUS[name], attempt=attempt,
                       retry_reason=_str(reason) or base.error or base.retry_reason)
    phase = _str(data.get("phase")) or _PHASE_OF.get(name) or base.phase
    if name in _COMPLETED:
        confidence = data.get("confidence")
        return dataclasses.replace(
            base, status="completed", eta=None, phase=phase,
            prediction=_str(data.get("prediction")),
            confidence=_number(confidence),
            progress=base.total if base.total is not None else base.progress,
        )
    if name == ANALYSIS_FAILED:
        error = _str(data.get("error_message")) or "failed"
        return dataclasses.replace(base, status="failed", error=error, eta=None, phase=phase)
    # Any other model event means the model runs (its ANALYSIS_STARTED may have gone by).
    fallback = row.status if row is not None and row.status != "queued" else "analyzing"
    status = _STATUS.get(name) or _str(data.get("phase")) or fallback
    progress, total = data.get("progress"), data.get("total")
    if not (type(progress) is int and type(total) is int and total > 0):
        return dataclasses.replace(base, status=status, phase=phase)
    progress = min(max(progress, 0), total)
    stage = _str(data.get("phase")) or _STAGES.get(name, "progress")
    since = base.since
    if stage != base.stage or since is None or progress < since[1]:
        since = (at, progress)  # a new stage: its bar starts again, so does the estimate
    return dataclasses.replace(
        base, status=status, progress=progress, total=total, stage=stage, since=since,
        eta=_eta(data, progress, total, since, at), phase=phase,
    )


def _attempt(data: dict[str, Any]) -> tuple[int, int] | None:
    """(attempt, of) from ``data.details`` of a retried job's event, else None."""
    details = data.get("details")
    if not isinstance(details, dict):
        return None
    attempt, attempts = details.get("attempt"), details.get("attempts")
    if type(attempt) is int and type(attempts) is int and 1 <= attempt <= attempts:
        return attempt, attempts
    return None


def _eta(
    data: dict[str, Any], progress: int, total: int, since: tuple[float, int], at: float
) -> float | None:
    """The job's own ETA (details.eta_seconds) if it sends one, else the rate seen here."""
    details = data.get("details")
    if isinstance(details, dict):
        eta = details.get("eta_seconds")
        if isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta >= 0:
            return float(eta)
    elapsed, done = at - since[0], progress - since[1]
    if elapsed <= 0 or done <= 0:
        return None
    return (total - progress) * elapsed / done
