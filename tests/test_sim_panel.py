"""Tests for simulator.panel: the UI's panel semantics and the rich renderer."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from simulator.panel import LivePanel, PanelState, render


def ev(event: str, media: str = "m1", **data: Any) -> dict[str, Any]:
    return {"media_id": media, "user_id": "u1", "event": event, "message": event, "data": data}


def rows(state: PanelState, media: str = "m1") -> dict[str, Any]:
    (view,) = [v for v in state.snapshot() if v.media_id == media]
    return {r.model: r for r in view.rows}


def test_statuses_follow_the_ui() -> None:
    """QUEUED→queued, STARTED→analyzing, else data.phase, with a bar from progress/total."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED", filename="a.mp4"))
    state.feed(ev("ANALYSIS_QUEUED", model_name="A"))
    state.feed(ev("ANALYSIS_QUEUED", model_name="B"))
    assert rows(state)["A"].status == "queued"
    state.feed(ev("ANALYSIS_STARTED", model_name="A"))
    assert rows(state)["A"].status == "analyzing"
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=30, total=120,
                  phase="frame_analysis"))
    row = rows(state)["A"]
    assert (row.status, row.fraction) == ("frame_analysis", 0.25)
    (view,) = state.snapshot()
    assert view.filename == "a.mp4" and not view.late


def test_complete_alias_and_failure_close_the_panel_then_notice() -> None:
    """ANALYSIS_COMPLETE counts as completed; when all rows end the panel closes."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED", filename="a.mp4"))
    state.feed(ev("ANALYSIS_STARTED", model_name="A"))
    state.feed(ev("ANALYSIS_STARTED", model_name="B"))
    state.feed(ev("ANALYSIS_COMPLETE", model_name="A", prediction="FAKE", confidence=0.9))
    assert rows(state)["A"].status == "completed"
    state.feed(ev("ANALYSIS_FAILED", model_name="B", error_message="CUDA out of memory"))
    assert state.snapshot() == []
    assert state.drain_notices() == []
    state.feed(ev("PROCESSING_COMPLETED"))
    (notice,) = state.drain_notices()
    assert notice.ok and "1 model completed, 1 failed" in notice.text
    assert "a.mp4" in str(notice)


def test_failed_row_shows_error_and_media_failure_notice() -> None:
    """A failed row keeps its error; PROCESSING_FAILED gives an error notice with it."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"))
    state.feed(ev("ANALYSIS_STARTED", model_name="A"))
    state.feed(ev("ANALYSIS_STARTED", model_name="B"))
    state.feed(ev("ANALYSIS_FAILED", model_name="A", error_message="No face detected"))
    assert rows(state)["A"].error == "No face detected"
    state.feed(ev("PROCESSING_FAILED", error_message="could not decode"))
    (notice,) = state.drain_notices()
    assert not notice.ok and "could not decode" in notice.text
    assert state.snapshot() == [] and state.failed == 1


def test_worker_and_backend_models_are_ignored() -> None:
    """Model names containing worker or backend get no row."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"))
    state.feed(ev("ANALYSIS_STARTED", model_name="gpu-worker-3"))
    state.feed(ev("ANALYSIS_STARTED", model_name="Backend"))
    state.feed(ev("ANALYSIS_STARTED", model_name="A"))
    assert list(rows(state)) == ["A"]


def test_late_join_and_foreign_shapes() -> None:
    """A model event without PROCESSING_STARTED opens a late panel; junk is ignored."""
    state = PanelState()
    state.feed({"event": "ANALYSIS_STARTED"})
    state.feed({"media_id": 3, "event": "PROCESSING_STARTED"})
    state.feed(ev("ANALYSIS_STARTED", media="m2", model_name="A"))
    state.feed({"media_id": "m2", "event": "FRAME_ANALYSIS_PROGRESS", "data": "nope"})
    (view,) = state.snapshot()
    assert view.media_id == "m2" and view.late


def test_render_fits_and_counts_hidden_media() -> None:
    """render() draws what fits in max_lines and says how many more are open."""
    state = PanelState()
    for i in range(5):
        state.feed(ev("PROCESSING_STARTED", media=f"m{i}", filename=f"f{i}.mp4"))
        state.feed(ev("ANALYSIS_STARTED", media=f"m{i}", model_name="A"))
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(render(state.snapshot(), max_lines=12, footer="footer"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "f0.mp4" in text and "f1.mp4" in text and "f4.mp4" not in text
    assert "more media in progress" in text and "footer" in text


def test_live_panel_draws_notices_and_leaves_open_panels() -> None:
    """LivePanel prints notices and, at exit, the panels still open (crashed media)."""
    state = PanelState()
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True)
    with LivePanel(state, console, fps=50, footer=lambda: "3 events"):
        state.feed(ev("PROCESSING_STARTED", media="ok", filename="good.mp4"))
        state.feed(ev("ANALYSIS_STARTED", media="ok", model_name="A"))
        state.feed(ev("ANALYSIS_COMPLETED", media="ok", model_name="A"))
        state.feed(ev("PROCESSING_COMPLETED", media="ok"))
        state.feed(ev("PROCESSING_STARTED", media="dead", filename="crashed.mp4"))
        state.feed(ev("ANALYSIS_STARTED", media="dead", model_name="B"))
    text = buffer.getvalue()
    assert "✓ good.mp4" in text
    assert "crashed.mp4" in text
