"""Tests for simulator.panel: the UI's panel semantics and the rich renderer."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from progress_sdk import defaults as d
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
    assert notice.ok and notice.outcome == "partial"
    assert "1 of 2 models completed, 1 failed" in notice.text
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


def render_text(state: PanelState, now: float = 100.0) -> str:
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(render(state.snapshot(now=now), max_lines=100))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_eta_comes_from_details_or_from_the_rate_seen() -> None:
    """details.eta_seconds (model.track) wins; otherwise progress over time estimates it."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"), now=0.0)
    state.feed(ev("ANALYSIS_STARTED", model_name="A"), now=0.0)
    state.feed(ev("ANALYSIS_STARTED", model_name="B"), now=0.0)
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=10, total=100,
                  details={"eta_seconds": 42.0}), now=1.0)
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="B", progress=0, total=100), now=0.0)
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="B", progress=25, total=100), now=10.0)
    assert rows(state)["A"].eta == 42.0
    assert rows(state)["B"].eta == 30.0  # 25 frames in 10 s, 75 to go
    (view,) = state.snapshot(now=10.0)
    assert view.eta == 42.0
    text = render_text(state, now=10.0)
    assert "ETA 42s" in text and "ETA 30s" in text and "no update" not in text


def test_a_quiet_media_says_how_long_instead_of_a_frozen_eta() -> None:
    """No event for QUIET_AFTER seconds: "no update for N s", no ETA, the panel open."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"), now=0.0)
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=10, total=100,
                  details={"eta_seconds": 42.0}), now=1.0)
    quiet_at = 1.0 + d.QUIET_AFTER + 4
    (view,) = state.snapshot(now=quiet_at)
    assert view.quiet and view.eta == 42.0  # kept, not shown
    text = render_text(state, now=quiet_at)
    assert f"no update for {d.QUIET_AFTER + 4:.0f} s" in text and "ETA" not in text
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=20, total=100,
                  details={"eta_seconds": 30.0}), now=quiet_at)
    assert "ETA 30s" in render_text(state, now=quiet_at + 1)


def test_bar_names_its_stage_and_a_full_bar_is_not_done() -> None:
    """A model's bar restarts per progress type: the row says which, and 100% reads finishing."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"))
    state.feed(ev("ANALYSIS_STARTED", model_name="A"))
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=300, total=300))
    assert rows(state)["A"].stage == "frames"
    assert "frames done · finishing" in render_text(state)
    state.feed(ev("VISUALIZATION_GENERATION_PROGRESS", model_name="A", progress=20, total=80))
    row = rows(state)["A"]
    assert (row.stage, row.fraction) == ("visualization", 0.25)
    assert "visualization 20/80" in render_text(state)


def test_overall_progress_per_media() -> None:
    """Mean of the rows, a finished row (completed or failed) counting as whole."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"))
    for name in "ABCD":
        state.feed(ev("ANALYSIS_QUEUED", model_name=name))
    state.feed(ev("ANALYSIS_STARTED", model_name="A"))
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=50, total=100))
    state.feed(ev("ANALYSIS_STARTED", model_name="B"))
    state.feed(ev("ANALYSIS_COMPLETED", model_name="B"))
    state.feed(ev("ANALYSIS_STARTED", model_name="C"))
    state.feed(ev("ANALYSIS_FAILED", model_name="C", error_message="x"))
    (view,) = state.snapshot()
    assert view.overall == (0.5 + 1 + 1 + 0) / 4
    assert "62% overall, 1 completed, 1 failed, 2 to go" in render_text(state)


def test_success_partial_failure_and_failure_are_three_outcomes() -> None:
    """All completed ✓, completed with failures ◐, PROCESSING_FAILED ✗."""
    state = PanelState()
    for media, results in (("ok", "++"), ("part", "+-"), ("bad", "--")):
        state.feed(ev("PROCESSING_STARTED", media=media, filename=f"{media}.mp4"))
        for i, result in enumerate(results):
            state.feed(ev("ANALYSIS_STARTED", media=media, model_name=f"M{i}"))
            state.feed(ev("ANALYSIS_COMPLETED" if result == "+" else "ANALYSIS_FAILED",
                          media=media, model_name=f"M{i}", error_message="x"))
        terminal = "PROCESSING_FAILED" if media == "bad" else "PROCESSING_COMPLETED"
        state.feed(ev(terminal, media=media, error_message="every model failed"))
    notices = {n.media_id: n for n in state.drain_notices()}
    assert [notices[m].outcome for m in ("ok", "part", "bad")] == ["success", "partial", "failed"]
    assert str(notices["ok"]).startswith("✓ ok.mp4")
    assert str(notices["part"]).startswith("◐ part.mp4")
    assert str(notices["bad"]).startswith("✗ bad.mp4")
    assert (state.completed, state.partial, state.failed) == (2, 1, 1)


def test_counts_tell_failed_models_from_completed_ones() -> None:
    """A media whose models all ended reads "8 completed, 2 failed", not "10/10"."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"))
    names = [f"M{i}" for i in range(10)]
    for name in names:
        state.feed(ev("ANALYSIS_QUEUED", model_name=name))
    state.feed(ev("ANALYSIS_STARTED", model_name="M0"))  # one still running: panel open
    for name in names[1:9]:
        state.feed(ev("ANALYSIS_COMPLETED", model_name=name))
    state.feed(ev("ANALYSIS_FAILED", model_name="M9", error_message="x"))
    assert "8 completed, 1 failed, 1 to go" in render_text(state)
    state.feed(ev("ANALYSIS_FAILED", model_name="M0", error_message="x"))
    state.feed(ev("PROCESSING_COMPLETED"))
    (notice,) = state.drain_notices()
    assert "8 of 10 models completed, 2 failed" in notice.text
    assert "10/10" not in notice.text


def _order(events: list[dict[str, Any]]) -> list[str]:
    state = PanelState()
    for event in events:
        state.feed(event)
    (view,) = state.snapshot()
    return [row.model for row in view.rows]


def test_rows_stay_in_queue_order_whatever_order_models_report_in() -> None:
    """Rows follow ANALYSIS_QUEUED order although models start and report in another; a
    retry's re-queueing keeps the row's place."""
    queued = [ev("ANALYSIS_QUEUED", model_name=name) for name in ("C", "A", "D", "B")]
    started = [ev("ANALYSIS_STARTED", model_name=name) for name in ("B", "D", "A", "C")]
    requeued = [ev("ANALYSIS_FAILED", model_name="C", error_message="x"),
                ev("ANALYSIS_QUEUED", model_name="C")]
    assert _order([ev("PROCESSING_STARTED"), *queued, *started, *requeued]) == [
        "C", "A", "D", "B"
    ]


def test_a_late_listener_draws_the_same_rows_in_the_same_order_each_time() -> None:
    """Joined after the queueing (a restarted `listen`), the rows do not follow the order
    the models happened to report in: two arrival orders, one row order."""
    progress = [ev("FRAME_ANALYSIS_PROGRESS", model_name=name, progress=1, total=9)
                for name in ("LIP", "EFF", "SIG")]
    first = _order(progress)
    again = _order(list(reversed(progress)))
    assert first == again == ["EFF", "LIP", "SIG"]


def test_a_retried_model_reads_retrying_then_its_attempt_never_failed() -> None:
    """A retried job's model between attempts reads "retrying (2/3)" with the reason,
    then its new attempt starts over (bar and all), and only its last end counts."""
    state = PanelState()
    state.feed(ev("PROCESSING_STARTED"))
    state.feed(ev("ANALYSIS_QUEUED", model_name="A"))
    state.feed(ev("ANALYSIS_STARTED", model_name="A", details={"attempt": 1, "attempts": 3}))
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=40, total=100,
                  details={"attempt": 1, "attempts": 3}))
    state.feed(ev("ANALYSIS_QUEUED", model_name="A", details={
        "attempt": 2, "attempts": 3, "retry_reason": "CUDA out of memory"}))
    (row,) = rows(state).values()
    assert (row.retrying, row.progress, row.finished) == ("retrying (2/3)", None, False)
    shown = render_text(state)
    assert "retrying (2/3): CUDA out of memory" in shown and "failed" not in shown
    state.feed(ev("ANALYSIS_STARTED", model_name="A", details={"attempt": 2, "attempts": 3}))
    state.feed(ev("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=10, total=100,
                  details={"attempt": 2, "attempts": 3}))
    assert "frames 10/100" in render_text(state) and "attempt 2/3" in render_text(state)
    state.feed(ev("ANALYSIS_COMPLETED", model_name="A", details={"attempt": 2, "attempts": 3}))
    state.feed(ev("PROCESSING_COMPLETED"))
    (notice,) = state.drain_notices()
    assert notice.outcome == "success"
