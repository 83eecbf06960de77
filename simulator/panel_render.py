"""Drawing the terminal panel with rich: ``render`` for one frame, ``LivePanel`` on a timer.

``LivePanel`` draws snapshots of a ``PanelState`` at a fixed frame rate, so however fast
events arrive, drawing costs the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .panel_views import MediaView, RowView

if TYPE_CHECKING:
    from .panel import PanelState

__all__ = ["LivePanel", "format_eta", "model_counts", "render"]


def format_eta(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"



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
