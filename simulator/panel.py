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

``LivePanel`` draws snapshots of a ``PanelState`` with rich on its own timer, at a fixed
frame rate, so however fast events arrive, drawing costs the same.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from progress_sdk import defaults as d
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
_TERMINAL_ROW = frozenset({"completed", "failed"})
_ROW_STATES = frozenset({"queued", "analyzing", "completed", "failed"})
# The tracking API's phase names, for producers that leave data.phase out.
_PHASE_OF = {row.name: row.phase for row in EVENT_TYPES.values() if row.phase is not None}
_RUNNING = "running"
# Sequenced events kept per media to rebuild on a snapshot older than they are (as the
# browser store's replayLimit).
_REPLAY = 256


@dataclass(frozen=True)
class RowView:
    """One model row as drawn."""

    model: str
    status: str
    progress: int | None = None
    total: int | None = None
    error: str | None = None
    prediction: str | None = None
    confidence: float | None = None
    stage: str | None = None
    """What the bar measures: the progress event's phase, or its type (frames, windows...)."""
    eta: float | None = None
    """Seconds left in this stage, as of the row's last event."""
    since: tuple[float, int] | None = None
    """(time, progress) of the first event of this stage, to estimate an ETA."""
    phase: str | None = None
    """The stage the model last reported (``data.phase``, or the phase event's own)."""
    attempt: tuple[int, int] | None = None
    """(attempt, of) while a retried job runs the model again (``data.details``)."""
    retry_reason: str | None = None
    """Why the previous attempt failed."""

    @property
    def retrying(self) -> str | None:
        """``retrying (2/3)`` between a failed attempt and the next one's start."""
        if self.attempt is None or self.status != "queued":
            return None
        return f"retrying ({self.attempt[0]}/{self.attempt[1]})"

    @property
    def state(self) -> str:
        """queued, analyzing, completed or failed (``status`` may name the phase instead)."""
        return self.status if self.status in _ROW_STATES else "analyzing"

    @property
    def finished(self) -> bool:
        """Completed or failed."""
        return self.status in _TERMINAL_ROW

    @property
    def fraction(self) -> float | None:
        """progress/total in 0..1, or None without a bar."""
        if self.status == "completed":
            return 1.0
        if self.progress is None or not self.total:
            return None
        return max(0.0, min(1.0, self.progress / self.total))


@dataclass(frozen=True)
class MediaView:
    """One open panel as drawn."""

    media_id: str
    user_id: str | None
    filename: str | None
    rows: tuple[RowView, ...]
    idle: float
    """Seconds since this media's last event."""
    late: bool
    status: str = "running"
    """running, completed or failed."""
    error: str | None = None
    """The media's error, when it failed."""
    open: bool = True
    """False once every row ended (the panel closes before the media's own end)."""

    @property
    def outcome(self) -> str | None:
        """None while running; success, partial (completed with failed rows) or failed."""
        if self.status == "running":
            return None
        if self.status == "failed":
            return "failed"
        return "partial" if any(r.status == "failed" for r in self.rows) else "success"

    @property
    def quiet(self) -> bool:
        """No event for ``QUIET_AFTER`` seconds: a state, not a failure (a live worker's
        long step; a dead one's media is failed by the sweeper). Shown as "no update for
        N s" instead of an ETA that would only freeze."""
        return self.idle >= d.QUIET_AFTER

    @property
    def overall(self) -> float:
        """Progress of the whole media in 0..1: the mean of its rows, finished rows whole."""
        if not self.rows:
            return 0.0
        parts = [1.0 if r.finished else (r.fraction or 0.0) for r in self.rows]
        return sum(parts) / len(parts)

    @property
    def eta(self) -> float | None:
        """Seconds until the slowest running model finishes its stage, when known."""
        etas = [r.eta for r in self.rows if r.eta is not None and not r.finished]
        return max(etas) if etas else None


@dataclass(frozen=True)
class Notice:
    """The final success or error notice of one media."""

    media_id: str
    filename: str | None
    ok: bool
    text: str
    outcome: str = "success"
    """``success`` (every model completed), ``partial`` (completed with failed models) or
    ``failed`` (PROCESSING_FAILED)."""

    def __str__(self) -> str:
        mark = {"success": "✓", "partial": "◐"}.get(self.outcome, "✗")
        name = self.filename or self.media_id
        return f"{mark} {name} ({self.media_id}): {self.text}"


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
        models: those follow, by name, so two listeners (or one restarted) draw the same
        rows in the same order rather than in whichever order the models reported.
        """
        return tuple(sorted(
            self.rows.values(),
            key=lambda row: (0, self.queued[row.model], "") if row.model in self.queued
            else (1, 0, row.model),
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
            media.open = not all(r.status in _TERMINAL_ROW for r in media.rows.values())
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
        r.status in _TERMINAL_ROW for r in media.rows.values())
    return media


def _snapshot_row(name: str, row: dict[str, Any]) -> RowView:
    status = row.get("status")
    phase = _str(row.get("phase"))
    eta, confidence = row.get("etaSeconds"), row.get("confidence")
    return RowView(
        name, status if status in _ROW_STATES else "queued",
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


def format_eta(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# -- drawing ---------------------------------------------------------------------------



def render(views: list[MediaView], *, max_lines: int = 200, footer: str = "") -> RenderableType:
    """Draw open panels as rich tables, as many as fit in ``max_lines``."""
    parts: list[RenderableType] = []
    used = 1 if footer else 0
    shown = 0
    for view in views:
        height = len(view.rows) + 4
        if shown and used + height > max_lines:
            break
        parts.append(_panel(view))
        used += height
        shown += 1
    if shown < len(views):
        parts.append(Text(f"… and {len(views) - shown} more media in progress", style="dim"))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def _title(view: MediaView) -> str:
    title = escape(view.filename or view.media_id)
    who = f" · {escape(view.user_id)}" if view.user_id else ""
    note = " · joined late" if view.late else ""
    if view.quiet:
        note += f" · [yellow]no update for {view.idle:.0f} s[/]"
    summary = ""
    if view.rows:
        summary = f" · {view.overall:.0%} overall, {model_counts(view.rows)}"
        if view.eta is not None and not view.quiet:
            summary += f", ETA {format_eta(view.eta)}"
    return f"[bold]{title}[/]{summary} [dim]{escape(view.media_id)}{who}{note}[/]"


def model_counts(rows: tuple[RowView, ...]) -> str:
    """``8 completed, 2 failed`` (and ``, 3 to go`` while models still run): a failed
    model is not a done one, as "10/10 models" made it look."""
    completed = sum(1 for r in rows if r.status == "completed")
    failed = sum(1 for r in rows if r.status == "failed")
    parts = [f"{completed} completed"]
    if failed:
        parts.append(f"{failed} failed")
    if len(rows) - completed - failed:
        parts.append(f"{len(rows) - completed - failed} to go")
    return ", ".join(parts)


def _row_status(row: RowView, quiet: bool = False) -> tuple[Text, Text]:
    """The mark and the status text of one row (``quiet``: no ETA, it would be frozen)."""
    if row.status == "completed":
        status = Text("completed", style="green")
        if row.prediction:
            conf = f" {row.confidence:.0%}" if row.confidence is not None else ""
            status.append(f" · {row.prediction}{conf}", style="default")
        return Text("✓", style="green"), status
    if row.status == "failed":
        return Text("✗", style="red"), Text(f"failed: {row.error}", style="red")
    if row.retrying is not None:
        why = f": {row.retry_reason}" if row.retry_reason else ""
        return Text("↻", style="yellow"), Text(f"{row.retrying}{why}", style="yellow")
    again = ""
    if row.attempt is not None and row.attempt[0] > 1:
        again = f" · attempt {row.attempt[0]}/{row.attempt[1]}"
    if row.stage is None or row.progress is None or row.total is None:
        return Text("·", style="dim"), Text(row.status + again, style="cyan")
    if row.progress >= row.total:
        # The bar of this stage is full but the model has not reported a result yet.
        return Text("…", style="yellow"), Text(f"{row.stage} done · finishing", style="yellow")
    text = f"{row.stage} {row.progress}/{row.total}"
    if row.status not in (row.stage, "analyzing"):
        text = f"{row.status} · {text}"
    if row.eta is not None and not quiet:
        text += f" · ETA {format_eta(row.eta)}"
    return Text("·", style="dim"), Text(text + again, style="cyan")


def _panel(view: MediaView) -> Table:
    table = Table(
        title=_title(view),
        title_justify="left",
        show_header=False,
        expand=False,
        box=None,
        padding=(0, 1),
    )
    table.add_column("mark", width=1)
    table.add_column("model", no_wrap=True, min_width=24)
    table.add_column("bar", width=16)
    table.add_column("pct", justify="right", width=4)
    table.add_column("status", no_wrap=True, overflow="ellipsis", max_width=70)
    if not view.rows:
        table.add_row("", Text("waiting for models…", style="dim"), "", "", "")
    for row in view.rows:
        fraction = row.fraction
        bar: RenderableType = (
            ProgressBar(total=1.0, completed=fraction, width=16) if fraction is not None else ""
        )
        pct = f"{fraction * 100:.0f}%" if fraction is not None else ""
        mark, status = _row_status(row, view.quiet)
        table.add_row(mark, Text(row.model), bar, pct, status)
    return table


class LivePanel:
    """Redraws a ``PanelState`` on a timer; notices scroll above the live area.

    Use as a context manager around the work that feeds the state. ``footer`` returns a
    status line (events seen, violations) drawn under the panels.
    """

    def __init__(
        self,
        state: PanelState,
        console: Console,
        *,
        fps: float = 10.0,
        footer: Callable[[], str] | None = None,
    ) -> None:
        self.state = state
        self.console = console
        self.interval = 1.0 / fps
        self._footer = footer
        self._live = Live(console=console, auto_refresh=False, transient=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-sim-panel", daemon=True)

    def __enter__(self) -> LivePanel:
        self._live.start()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.draw()
        self._live.stop()
        # The live area is transient; leave the final state of any panel still open
        # (crashed media) on screen, since it is part of the story.
        views = self.state.snapshot()
        if views:
            self.console.print(render(views, max_lines=10_000))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()

    def draw(self) -> None:
        """Print pending notices and redraw the open panels once."""
        for notice in self.state.drain_notices():
            style = {"success": "green", "partial": "yellow"}.get(notice.outcome, "red")
            self._live.console.print(Text(str(notice), style=style))
        footer = self._footer() if self._footer is not None else ""
        lines = max(5, self.console.size.height - 1)
        self._live.update(render(self.state.snapshot(), max_lines=lines, footer=footer),
                          refresh=True)
