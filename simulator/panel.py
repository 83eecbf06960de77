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

__all__ = ["LivePanel", "MediaView", "Notice", "PanelState", "RowView", "format_eta", "render"]

_COMPLETED = frozenset({"ANALYSIS_COMPLETED", "ANALYSIS_COMPLETE"})
# The stage a progress event type's bar shows, when the event has no data.phase.
_STAGES = {
    "FRAME_ANALYSIS_PROGRESS": "frames",
    "WINDOW_PROCESSING_PROGRESS": "windows",
    "VISUALIZATION_GENERATION_PROGRESS": "visualization",
}
_STATUS = {"ANALYSIS_QUEUED": "queued", "ANALYSIS_STARTED": "analyzing"}
_TERMINAL_ROW = frozenset({"completed", "failed"})


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
    """Seconds since this media's last event (a stale panel: the job may have died)."""
    late: bool

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


class PanelState:
    """Feed decoded events with ``feed``; read ``snapshot()`` and ``drain_notices()``.

    Thread-safe: one thread may feed while another draws.
    """

    def __init__(self, *, max_notices: int = 1000) -> None:
        self._lock = threading.Lock()
        self._media: dict[str, _Media] = {}
        self._notices: deque[Notice] = deque(maxlen=max_notices)
        self.completed = 0
        """Media that ended with PROCESSING_COMPLETED (partial ones included)."""
        self.partial = 0
        """Media that completed with at least one failed model."""
        self.failed = 0
        """Media that ended with an error notice."""

    def feed(self, event: dict[str, Any], now: float | None = None) -> None:
        """Apply one decoded event (any producer; malformed fields are ignored)."""
        media_id = event.get("media_id")
        name = event.get("event")
        if type(media_id) is not str or type(name) is not str:
            return
        data = event.get("data")
        if not isinstance(data, dict):
            data = {}
        at = time.monotonic() if now is None else now
        with self._lock:
            media = self._media.get(media_id)
            if name == "PROCESSING_STARTED":
                # A repeat (one job per model announces the run each) keeps the panel.
                if media is None:
                    media = self._media[media_id] = _Media(
                        _str(event.get("user_id")), _str(data.get("filename")), at, late=False
                    )
                elif media.filename is None:
                    media.filename = _str(data.get("filename"))
                media.last = at
                return
            if name in ("PROCESSING_COMPLETED", "PROCESSING_FAILED"):
                self._finish(media_id, media, name, event, data)
                return
            model = data.get("model_name")
            if type(model) is not str or not model:
                return
            lowered = model.lower()
            if "worker" in lowered or "backend" in lowered:
                return
            if media is None:
                media = self._media[media_id] = _Media(
                    _str(event.get("user_id")), None, at, late=True
                )
            media.last = at
            row = media.rows.get(model)
            media.rows[model] = _next_row(row, model, name, data, at)
            # Close when every row has its terminal status; a later model event reopens.
            media.open = not all(r.status in _TERMINAL_ROW for r in media.rows.values())

    def _finish(
        self, media_id: str, media: _Media | None, name: str, event: dict[str, Any],
        data: dict[str, Any],
    ) -> None:
        ok = name == "PROCESSING_COMPLETED"
        filename = media.filename if media is not None else _str(data.get("filename"))
        outcome = "failed"
        if ok:
            rows = media.rows.values() if media is not None else ()
            done = sum(1 for r in rows if r.status == "completed")
            failed = sum(1 for r in rows if r.status == "failed")
            text = f"analysis complete: {done} model{'s' if done != 1 else ''} completed"
            outcome = "success"
            if failed:
                text = f"analysis partly failed: {done} of {done + failed} models completed, "
                text += f"{failed} failed"
                outcome = "partial"
                self.partial += 1
            self.completed += 1
        else:
            text = "analysis failed: " + (
                _str(data.get("error_message")) or _str(event.get("message")) or "unknown error"
            )
            self.failed += 1
        self._notices.append(Notice(media_id, filename, ok, text, outcome))
        self._media.pop(media_id, None)

    def snapshot(self, now: float | None = None) -> list[MediaView]:
        """The open panels, oldest first, as immutable views."""
        at = time.monotonic() if now is None else now
        with self._lock:
            return [
                MediaView(
                    media_id, m.user_id, m.filename, tuple(m.rows.values()), at - m.last, m.late
                )
                for media_id, m in self._media.items()
                if m.open
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
            return [media_id for media_id, m in self._media.items() if m.open]


def _str(value: object) -> str | None:
    return value if type(value) is str and value else None


def _next_row(
    row: RowView | None, model: str, name: str, data: dict[str, Any], at: float
) -> RowView:
    base = row if row is not None else RowView(model, "analyzing")
    if name in _COMPLETED:
        confidence = data.get("confidence")
        return dataclasses.replace(
            base, status="completed", eta=None,
            prediction=_str(data.get("prediction")),
            confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
        )
    if name == "ANALYSIS_FAILED":
        error = _str(data.get("error_message")) or "failed"
        return dataclasses.replace(base, status="failed", error=error, eta=None)
    status = _STATUS.get(name) or _str(data.get("phase")) or (row.status if row else "analyzing")
    progress, total = data.get("progress"), data.get("total")
    if not (type(progress) is int and type(total) is int and total > 0):
        return dataclasses.replace(base, status=status)
    stage = _str(data.get("phase")) or _STAGES.get(name, "progress")
    since = base.since
    if stage != base.stage or since is None or progress < since[1]:
        since = (at, progress)  # a new stage: its bar starts again, so does the estimate
    return dataclasses.replace(
        base, status=status, progress=progress, total=total, stage=stage, since=since,
        eta=_eta(data, progress, total, since, at),
    )


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

_STALE_AFTER = 10.0


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
    if view.idle >= _STALE_AFTER:
        note += f" · [yellow]no events for {view.idle:.0f} s[/]"
    summary = ""
    if view.rows:
        done = sum(1 for r in view.rows if r.finished)
        summary = f" · {view.overall:.0%} overall, {done}/{len(view.rows)} models done"
        if view.eta is not None:
            summary += f", ETA {format_eta(view.eta)}"
    return f"[bold]{title}[/]{summary} [dim]{escape(view.media_id)}{who}{note}[/]"


def _row_status(row: RowView) -> tuple[Text, Text]:
    """The mark and the status text of one row."""
    if row.status == "completed":
        status = Text("completed", style="green")
        if row.prediction:
            conf = f" {row.confidence:.0%}" if row.confidence is not None else ""
            status.append(f" · {row.prediction}{conf}", style="default")
        return Text("✓", style="green"), status
    if row.status == "failed":
        return Text("✗", style="red"), Text(f"failed: {row.error}", style="red")
    if row.stage is None or row.progress is None or row.total is None:
        return Text("·", style="dim"), Text(row.status, style="cyan")
    if row.progress >= row.total:
        # The bar of this stage is full but the model has not reported a result yet.
        return Text("…", style="yellow"), Text(f"{row.stage} done · finishing", style="yellow")
    text = f"{row.stage} {row.progress}/{row.total}"
    if row.status not in (row.stage, "analyzing"):
        text = f"{row.status} · {text}"
    if row.eta is not None:
        text += f" · ETA {format_eta(row.eta)}"
    return Text("·", style="dim"), Text(text, style="cyan")


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
        mark, status = _row_status(row)
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
