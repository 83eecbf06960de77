"""What the terminal panel draws: a model row, a media's panel and its final notice.

Frozen values that ``PanelState`` (simulator/panel.py) hands out and ``render``
(simulator/panel_render.py) draws, so drawing never holds the state's lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from progress_sdk import defaults as d

__all__ = ["ROW_STATES", "TERMINAL_ROW", "MediaView", "Notice", "RowView"]

TERMINAL_ROW = frozenset({"completed", "failed"})
"""The statuses a model row ends in."""
ROW_STATES = frozenset({"queued", "analyzing", "completed", "failed"})
"""The row states of the product's panel (a row's status may name its phase instead)."""


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
        if self.attempt is None or self.attempt[0] < 2 or self.status != "queued":
            return None  # a first attempt's queueing is no retry
        return f"retrying ({self.attempt[0]}/{self.attempt[1]})"

    @property
    def state(self) -> str:
        """queued, analyzing, completed or failed (``status`` may name the phase instead)."""
        return self.status if self.status in ROW_STATES else "analyzing"

    @property
    def finished(self) -> bool:
        """Completed or failed."""
        return self.status in TERMINAL_ROW

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
