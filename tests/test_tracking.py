"""The tracking API: ProgressPublisher.media(...) → MediaRun, run.model(...) → ModelRun.

Most tests run against ``CapturingPublisher`` (synchronous, in memory, nothing
coalesced), so they see exactly what the API emitted; the last ones send the same
calls through the real threaded publisher into fakeredis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import sys
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progress_sdk import (
    EventType,
    InvalidEventError,
    ModelRun,
    ProgressPublisher,
    TrackingError,
    validate_lines,
)
from progress_sdk import defaults as d
from progress_sdk.testing import CapturingPublisher

SIGLIP = "SIGLIP-LSTM-V4"
LIPFD = "LIP-FD-V1"
MEL = "MEL-SPECTROGRAM-CNN-V3"


class Boom(Exception):
    """The job's own error, raised inside tracked blocks."""


@pytest.fixture
def pub() -> Iterator[CapturingPublisher]:
    """A capturing publisher, closed after the test."""
    publisher = CapturingPublisher()
    yield publisher
    publisher.close()


def models_of(pub: CapturingPublisher) -> list[tuple[str, str | None]]:
    """(event, model_name) pairs, the shape most sequence assertions need."""
    return [(e["event"], e["data"].get("model_name")) for e in pub.events]


# -- a normal run -----------------------------------------------------------------------


def test_normal_run_emits_the_contract_sequence(pub):
    """A media with one model emits started, model started, progress, completed, completed."""
    with (
        pub.media("m1", "u1", filename="clip.mp4", run_id="r1") as run,
        run.model(SIGLIP) as model,
    ):
        model.progress(1, 2)
        model.progress(2, 2)
        model.complete("FAKE", 0.93)
    assert models_of(pub) == [
        ("PROCESSING_STARTED", None),
        ("ANALYSIS_STARTED", SIGLIP),
        ("FRAME_ANALYSIS_PROGRESS", SIGLIP),
        ("FRAME_ANALYSIS_PROGRESS", SIGLIP),
        ("ANALYSIS_COMPLETED", SIGLIP),
        ("PROCESSING_COMPLETED", None),
    ]
    first, last = pub.events[0], pub.events[-1]
    assert first["data"] == {"filename": "clip.mp4"}
    assert first["message"] == "Started processing clip.mp4"
    assert last["data"] == {"filename": "clip.mp4"}
    assert {e["run_id"] for e in pub.events} == {"r1"}
    assert {e["user_id"] for e in pub.events} == {"u1"}
    assert [e["seq"] for e in pub.events] == list(range(1, 7))
    assert run.outcome == "PROCESSING_COMPLETED"
    assert model.state == "completed"
    pub.events.assert_valid()


def test_run_without_run_id_leaves_the_field_out(pub):
    """run_id is optional: without it no event carries the key."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP):
        pass
    assert all("run_id" not in e for e in pub.events)
    assert pub.events[0]["message"] == "Processing started"


def test_model_block_that_exits_normally_completes_without_a_verdict(pub):
    """Leaving a model block without complete() emits ANALYSIS_COMPLETED with no prediction."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP):
        pass
    completed = pub.events.of_type("ANALYSIS_COMPLETED")
    assert completed[0]["data"] == {"model_name": SIGLIP}


def test_queue_emits_queued_per_model_and_returns_their_trackers(pub):
    """queue() announces each model as ANALYSIS_QUEUED; the trackers start later."""
    with pub.media("m1", "u1") as run:
        trackers = run.queue([SIGLIP, LIPFD])
        assert [t.model_name for t in trackers] == [SIGLIP, LIPFD]
        assert all(isinstance(t, ModelRun) and t.state == "queued" for t in trackers)
        assert run.model(SIGLIP) is trackers[0]
        for tracker in trackers:
            with tracker:
                tracker.complete("REAL", 0.1)
    assert models_of(pub)[1:3] == [("ANALYSIS_QUEUED", SIGLIP), ("ANALYSIS_QUEUED", LIPFD)]
    assert pub.events.types().count("ANALYSIS_QUEUED") == 2
    pub.events.assert_valid()


def test_queued_model_never_started_is_failed_when_the_media_finishes(pub):
    """A queued model has a row in the UI, so the end of the run closes it as failed."""
    with pub.media("m1", "u1") as run:
        run.queue([SIGLIP, LIPFD])
        with run.model(SIGLIP) as model:
            model.complete("FAKE", 0.8)
    failed = pub.events.for_model(LIPFD)[-1]
    assert failed["event"] == "ANALYSIS_FAILED"
    assert "finished before this model reported a result" in failed["data"]["error_message"]
    assert pub.events[-1]["event"] == "PROCESSING_COMPLETED"
    pub.events.assert_valid()


def test_model_asked_for_but_never_started_leaves_no_trace(pub):
    """run.model(name) alone emits nothing and is not counted at the end."""
    with pub.media("m1", "u1") as run:
        run.model(SIGLIP)
        with run.model(LIPFD) as model:
            model.complete()
    assert pub.events.for_model(SIGLIP) == []
    assert pub.events[-1]["message"] == "Analysis complete: 1/1 models succeeded"


# -- progress and steps -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (EventType.FRAME_ANALYSIS_PROGRESS, "Analyzed 3/10 frames"),
        (EventType.WINDOW_PROCESSING_PROGRESS, "Processed 3/10 windows"),
        (EventType.VISUALIZATION_GENERATION_PROGRESS, "Generated visualization 3/10 steps"),
        ("WINDOW_PROCESSING_PROGRESS", "Processed 3/10 windows"),
    ],
)
def test_progress_event_types_have_default_messages(pub, event, message):
    """Each progress event type (enum or name) gets a message naming its unit."""
    with pub.media("m1", "u1") as run, run.model(MEL) as model:
        model.progress(3, 10, event=event)
    emitted = pub.events[2]
    assert emitted["event"] == str(event)
    assert emitted["message"] == message
    assert emitted["data"] == {"model_name": MEL, "progress": 3, "total": 10}


def test_progress_defaults_to_frame_analysis(pub):
    """Without event=, progress is FRAME_ANALYSIS_PROGRESS."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(0, 300)
    assert pub.events.types()[2] == "FRAME_ANALYSIS_PROGRESS"


def test_progress_carries_phase_details_and_a_custom_message(pub):
    """phase, details and message are passed through to the event."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(5, 10, phase="frame_analysis", details={"fps": 30}, message="Halfway")
    emitted = pub.events[2]
    assert emitted["message"] == "Halfway"
    assert emitted["data"] == {
        "model_name": SIGLIP, "progress": 5, "total": 10,
        "phase": "frame_analysis", "details": {"fps": 30},
    }


@pytest.mark.parametrize(
    ("done", "total", "field"),
    [
        (-1, 10, "data.progress"),
        (11, 10, "data.progress"),
        (0, 0, "data.total"),
        (1.5, 10, "data.progress"),
        (True, 10, "data.progress"),
        (1, "10", "data.total"),
    ],
)
def test_progress_out_of_bounds_or_not_integer_is_refused(pub, done, total, field):
    """progress needs integers with 0 <= progress <= total and total > 0."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError) as info:
            model.progress(done, total)
        assert field in {p.field for p in info.value.problems}
    assert "FRAME_ANALYSIS_PROGRESS" not in pub.events.types()


def test_progress_with_a_non_progress_event_type_is_refused(pub):
    """event= must be one of the three progress types; the error lists them."""
    with (
        pub.media("m1", "u1") as run,
        run.model(SIGLIP) as model,
        pytest.raises(InvalidEventError, match="WINDOW_PROCESSING_PROGRESS"),
    ):
        model.progress(1, 2, event="ANALYSIS_STARTED")


def test_progress_decreasing_is_refused_by_rule_3(pub):
    """A progress value lower than the last one of its type raises, naming rule 3."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(5, 10)
        with pytest.raises(InvalidEventError, match="must not decrease") as info:
            model.progress(4, 10)
        assert info.value.problems[0].rule == "rule_3"
        model.progress(5, 10)  # equal is fine
    pub.events.assert_valid()


def test_progress_total_changing_is_refused_by_rule_3(pub):
    """total is fixed per model and progress type once reported."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(5, 10)
        with pytest.raises(InvalidEventError, match="total must not change"):
            model.progress(6, 12)
    pub.events.assert_valid()


def test_rule_3_is_per_progress_type(pub):
    """Another progress type has its own counter, so a new pass may start at 0."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(300, 300)
        model.progress(0, 20, event=EventType.VISUALIZATION_GENERATION_PROGRESS)
        model.progress(20, 20, event=EventType.VISUALIZATION_GENERATION_PROGRESS)
    pub.events.assert_valid()


def test_details_nested_5000_deep_raise_invalid_event_error(pub):
    """progress() and complete() refuse over-deep details: InvalidEventError, not RecursionError."""
    deep: list[Any] = []
    inner = deep
    for _ in range(4999):
        inner.append([])
        inner = inner[0]
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError, match=r"data\.details.*\[depth\]"):
            model.progress(1, 10, details={"tree": deep})
        with pytest.raises(InvalidEventError, match=r"data\.details.*\[depth\]"):
            model.complete("FAKE", 0.9, details={"tree": deep})
        model.progress(2, 10)  # the refused calls changed nothing
    pub.events.assert_valid()


def test_refused_progress_call_has_no_effect(pub):
    """A progress call refused for a bad phase or details does not count for rule 3."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError, match=r"data\.phase"):
            model.progress(9, 10, phase="")
        with pytest.raises(InvalidEventError, match="finite"):
            model.progress(9, 10, details={"x": float("nan")})
        with pytest.raises(InvalidEventError, match="message"):
            model.progress(9, 10, message="x" * (d.MAX_MESSAGE_CHARS + 1))
        model.progress(3, 10)  # would break rule 3 had a refused 9/10 been recorded
    assert [e["data"]["progress"] for e in pub.events.of_type("FRAME_ANALYSIS_PROGRESS")] == [3]


def test_progress_details_must_be_json_and_fit_the_event(pub):
    """details must serialise to JSON and keep the event under 64 KiB."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError, match="JSON-serialisable"):
            model.progress(1, 10, details={"when": object()})
        with pytest.raises(InvalidEventError, match="max_size"):
            model.progress(1, 10, details={"blob": "x" * d.MAX_EVENT_BYTES})
        with pytest.raises(InvalidEventError, match="dict"):
            model.progress(1, 10, details=[1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "phase", "message"),
    [
        (EventType.AUDIO_EXTRACTION_START, "audio_extraction", f"Extracting audio ({MEL})"),
        ("AUDIO_EXTRACTION_COMPLETE", "audio_extraction", f"Audio extracted ({MEL})"),
        (
            EventType.SPECTROGRAM_GENERATION_START,
            "spectrogram_generation",
            f"Generating spectrogram ({MEL})",
        ),
        (
            "SPECTROGRAM_GENERATION_COMPLETE",
            "spectrogram_generation",
            f"Spectrogram generated ({MEL})",
        ),
    ],
)
def test_step_emits_phase_events(pub, event, phase, message):
    """step() emits a phase event with its phase name and a default message."""
    with pub.media("m1", "u1") as run, run.model(MEL) as model:
        model.step(event)
    emitted = pub.events[2]
    assert emitted["event"] == str(event)
    assert emitted["data"] == {"model_name": MEL, "phase": phase}
    assert emitted["message"] == message


def test_step_takes_a_custom_message(pub):
    """step(message=...) replaces the default text."""
    with pub.media("m1", "u1") as run, run.model(MEL) as model:
        model.step("AUDIO_EXTRACTION_START", "Demuxing the audio track")
    assert pub.events[2]["message"] == "Demuxing the audio track"


@pytest.mark.parametrize("event", ["FRAME_ANALYSIS_PROGRESS", "ANALYSIS_COMPLETED", "NOPE"])
def test_step_refuses_non_phase_events(pub, event):
    """step() takes only the four phase events; the error lists them."""
    with (
        pub.media("m1", "u1") as run,
        run.model(MEL) as model,
        pytest.raises(InvalidEventError, match="AUDIO_EXTRACTION_START"),
    ):
        model.step(event)
    assert pub.events.types() == [
        "PROCESSING_STARTED", "ANALYSIS_STARTED", "ANALYSIS_COMPLETED", "PROCESSING_COMPLETED",
    ]


def test_step_before_the_model_started_is_refused(pub):
    """A phase event needs ANALYSIS_STARTED first (rule 2)."""
    with pub.media("m1", "u1") as run:
        model = run.model(MEL)
        with pytest.raises(TrackingError, match="call start"):
            model.step("AUDIO_EXTRACTION_START")


# -- complete and fail ----------------------------------------------------------------------


def test_complete_carries_prediction_confidence_and_details(pub):
    """complete() puts the verdict in data and in the message."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.complete("FAKE", 0.93, details={"frames": 300})
    emitted = pub.events.of_type("ANALYSIS_COMPLETED")[0]
    assert emitted["data"] == {
        "model_name": SIGLIP, "prediction": "FAKE", "confidence": 0.93,
        "details": {"frames": 300},
    }
    assert emitted["message"] == f"{SIGLIP} analysis completed: FAKE (93%)"


def test_complete_with_a_custom_message(pub):
    """complete(message=...) replaces the default text."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.complete("REAL", message="Looks genuine")
    assert pub.events.of_type("ANALYSIS_COMPLETED")[0]["message"] == "Looks genuine"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"confidence": 1.5}, "data.confidence"),
        ({"confidence": -0.1}, "data.confidence"),
        ({"confidence": float("nan")}, "data.confidence"),
        ({"confidence": True}, "data.confidence"),
        ({"prediction": ""}, "data.prediction"),
        ({"prediction": "F" * (d.MAX_PREDICTION_CHARS + 1)}, "data.prediction"),
        ({"details": {"x": float("inf")}}, "data.details"),
        ({"message": 42}, "message"),
    ],
)
def test_complete_with_invalid_values_is_refused_and_the_model_stays_open(pub, kwargs, field):
    """An invalid verdict raises InvalidEventError naming the field; the model can retry."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError) as info:
            model.complete(**kwargs)
        assert field in {p.field for p in info.value.problems}
        assert model.state == "started"
        model.complete("FAKE", 0.5)
    pub.events.assert_valid()


def test_confidence_above_one_names_data_confidence(pub):
    """confidence 1.5 fails with a message that names data.confidence."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError, match=r"data\.confidence"):
            model.complete("FAKE", 1.5)
        model.complete("FAKE", 1.0)


def test_fail_emits_analysis_failed_with_the_error_message(pub):
    """fail(text) emits ANALYSIS_FAILED with data.error_message; the media then fails."""
    with pub.media("m1", "u1") as run, run.model(LIPFD) as model:
        model.fail("no face found")
    failed = pub.events.of_type("ANALYSIS_FAILED")[0]
    assert failed["data"] == {"model_name": LIPFD, "error_message": "no face found"}
    assert failed["message"] == f"{LIPFD} failed: no face found"
    assert model.state == "failed"
    assert pub.events[-1]["event"] == "PROCESSING_FAILED"
    pub.events.assert_valid()


def test_fail_accepts_an_exception(pub):
    """fail(exc) shows users the exception's own text and keeps its type in details."""
    with pub.media("m1", "u1") as run, run.model(LIPFD) as model:
        model.fail(ValueError("bad codec"))
    data = pub.events.of_type("ANALYSIS_FAILED")[0]["data"]
    assert data["error_message"] == "bad codec"
    assert data["details"] == {"error_type": "ValueError"}


@pytest.mark.parametrize("error", ["", "   "])
def test_fail_needs_a_non_empty_error(pub, error):
    """The UI shows error_message, so an empty one is refused."""
    with pub.media("m1", "u1") as run, run.model(LIPFD) as model:
        with pytest.raises(InvalidEventError, match=r"data\.error_message"):
            model.fail(error)
        model.fail("real reason")


def test_fail_before_start_and_twice_is_refused(pub):
    """A model can fail only once it was queued or started, and only once."""
    with pub.media("m1", "u1") as run:
        model = run.model(LIPFD)
        with pytest.raises(TrackingError, match="call start"):
            model.fail("too early")
        model.start()
        model.fail("once")
        with pytest.raises(TrackingError, match="already ended"):
            model.fail("twice")
        with pytest.raises(TrackingError, match="already ended"):
            model.complete()


def test_long_errors_are_clipped_so_every_event_stays_valid(pub):
    """An exception with a huge message yields error_message and message within limits."""
    with pytest.raises(Boom), pub.media("m1", "u1") as run, run.model(SIGLIP):
        raise Boom("x" * 5000)
    for emitted in pub.events:
        assert len(emitted["message"]) <= d.MAX_MESSAGE_CHARS
        assert len(emitted["data"].get("error_message", "")) <= d.MAX_ERROR_MESSAGE_CHARS
    pub.events.assert_valid()


@pytest.mark.parametrize("message", [7, "m" * (d.MAX_MESSAGE_CHARS + 1)])
def test_custom_messages_are_checked_at_the_call(pub, message):
    """Every message= argument is checked where it is given, before anything is emitted."""
    with pytest.raises(InvalidEventError, match="message"):
        pub.media("m1", "u1", message=message)
    with pub.media("m1", "u1") as run:
        model = run.model(SIGLIP)
        with pytest.raises(InvalidEventError, match="message"):
            model.start(message)
        assert model.state == "new"
        with model:
            with pytest.raises(InvalidEventError, match="message"):
                model.step("AUDIO_EXTRACTION_START", message)
            with pytest.raises(InvalidEventError, match="message"):
                model.fail("boom", message)
            assert model.state == "started"
        with pytest.raises(InvalidEventError, match="message"):
            run.finish(message)
        with pytest.raises(InvalidEventError, match="message"):
            run.fail("boom", message)
        assert run.outcome is None
    pub.events.assert_valid()


# -- exceptions leaving blocks ------------------------------------------------------------


def test_exception_in_model_block_fails_the_model_and_propagates(pub):
    """An exception leaving a model block emits ANALYSIS_FAILED with its message and re-raises."""
    with pub.media("m1", "u1") as run:
        with run.model(SIGLIP) as good:
            good.complete("FAKE", 0.9)
        with pytest.raises(Boom, match="no face found"), run.model(LIPFD) as bad:
            bad.progress(10, 100)
            raise Boom("no face found in 40% of frames")
    failed = pub.events.of_type("ANALYSIS_FAILED")
    assert len(failed) == 1
    assert failed[0]["data"]["model_name"] == LIPFD
    assert failed[0]["data"]["error_message"] == "no face found in 40% of frames"
    assert failed[0]["data"]["details"]["error_type"].endswith("test_tracking.Boom")
    assert bad.state == "failed"
    assert pub.events[-1]["event"] == "PROCESSING_COMPLETED"  # one model completed
    pub.events.assert_valid()


def test_exception_without_a_message_reports_its_type(pub):
    """An exception whose text is empty shows a generic sentence; its type is in details."""
    with pytest.raises(Boom), pub.media("m1", "u1") as run, run.model(SIGLIP):
        raise Boom()
    data = pub.events.of_type("ANALYSIS_FAILED")[0]["data"]
    assert data["error_message"] == "an unexpected error occurred"
    assert data["details"]["error_type"].endswith("Boom")


def test_exception_in_media_block_fails_open_models_then_the_media(pub):
    """An exception in the media block fails every open model, then PROCESSING_FAILED."""
    with pytest.raises(Boom, match="disk full"), pub.media("m1", "u1") as run:
        run.queue([LIPFD])
        with run.model(SIGLIP) as done:
            done.complete("FAKE", 0.9)
        open_model = run.model(MEL).start()
        raise Boom("disk full")
    assert models_of(pub)[-3:] == [
        ("ANALYSIS_FAILED", LIPFD),
        ("ANALYSIS_FAILED", MEL),
        ("PROCESSING_FAILED", None),
    ]
    for failed in pub.events[-3:]:
        assert "disk full" in failed["data"]["error_message"]
    assert open_model.state == "failed"
    # Rule 5: the job failed outside any model, so the media fails despite a success.
    assert run.outcome == "PROCESSING_FAILED"
    pub.events.assert_valid()


def test_exception_passing_through_both_blocks_fails_model_then_media(pub):
    """An exception leaving a model block and then the media block fails both once."""
    with pytest.raises(Boom), pub.media("m1", "u1") as run, run.model(SIGLIP):
        raise Boom("cuda out of memory")
    assert pub.events.types() == [
        "PROCESSING_STARTED", "ANALYSIS_STARTED", "ANALYSIS_FAILED", "PROCESSING_FAILED",
    ]
    pub.events.assert_valid()


# -- rule 5 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "terminal", "message"),
    [
        (["fail", "fail"], "PROCESSING_FAILED", "Processing failed: every model failed"),
        (["fail", "complete"], "PROCESSING_COMPLETED", "Analysis complete: 1/2 models succeeded"),
        (["complete"], "PROCESSING_COMPLETED", "Analysis complete: 1/1 models succeeded"),
        ([], "PROCESSING_FAILED", "Processing failed: no model was run for this media"),
    ],
)
def test_media_outcome_follows_rule_5(pub, outcomes, terminal, message):
    """Completed if at least one model completed; failed if all failed or none ran."""
    names = [SIGLIP, LIPFD]
    with pub.media("m1", "u1") as run:
        for name, outcome in zip(names, outcomes, strict=False):
            with run.model(name) as model:
                if outcome == "fail":
                    model.fail("boom")
                else:
                    model.complete("REAL", 0.2)
    last = pub.events[-1]
    assert (last["event"], last["message"]) == (terminal, message)
    if terminal == "PROCESSING_FAILED":
        assert last["data"]["error_message"]
    assert run.outcome == terminal
    pub.events.assert_valid()


# -- out-of-order use -----------------------------------------------------------------------


def test_model_before_the_media_started_is_refused_with_a_hint(pub):
    """Without start() or `with`, run.model() explains what to do."""
    run = pub.media("m1", "u1")
    with pytest.raises(TrackingError, match=r"call start\(\) or use `with publisher.media"):
        run.model(SIGLIP)
    assert len(pub.events) == 0


def test_progress_before_the_model_started_is_refused_with_a_hint(pub):
    """progress() on a model not started says to call start() first."""
    with pub.media("m1", "u1") as run:
        model = run.model(SIGLIP)
        with pytest.raises(TrackingError, match=r"progress\(1, 10\) while the model is new"):
            model.progress(1, 10)
        run.queue([SIGLIP])
        with pytest.raises(TrackingError, match="call start"):
            model.progress(1, 10)


def test_progress_after_complete_is_refused(pub):
    """Nothing may follow a model's terminal event (rule 2)."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.complete("FAKE", 0.9)
        with pytest.raises(TrackingError, match="while the model is completed: it already ended"):
            model.progress(1, 10)
    assert "FRAME_ANALYSIS_PROGRESS" not in pub.events.types()
    pub.events.assert_valid()


def test_model_after_the_media_finished_is_refused(pub):
    """run.model() after the terminal event names it and says to start a new run."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP):
        pass
    with pytest.raises(TrackingError, match=r"ended with PROCESSING_COMPLETED.*new run"):
        run.model(LIPFD)


def test_same_model_twice_in_one_run_is_refused(pub):
    """Each model runs once per run."""
    with pub.media("m1", "u1") as run:
        with run.model(SIGLIP):
            pass
        with pytest.raises(TrackingError, match="already completed"):
            run.model(SIGLIP)


def test_finish_twice_is_refused(pub):
    """A run has exactly one terminal event (rule 4)."""
    run = pub.media("m1", "u1").start()
    run.finish()
    with pytest.raises(TrackingError, match="ended with PROCESSING_FAILED"):
        run.finish()
    with pytest.raises(TrackingError, match="ended with"):
        run.fail("late")
    assert pub.events.types() == ["PROCESSING_STARTED", "PROCESSING_FAILED"]


def test_finish_before_start_is_refused(pub):
    """finish() on a run never started raises instead of emitting a lone terminal event."""
    with pytest.raises(TrackingError, match="before the media run started"):
        pub.media("m1", "u1").finish()
    assert len(pub.events) == 0


def test_start_is_idempotent(pub):
    """Calling start() again emits nothing more."""
    run = pub.media("m1", "u1")
    assert run.start() is run.start()
    model = run.model(SIGLIP)
    assert model.start() is model.start()
    assert pub.events.types() == ["PROCESSING_STARTED", "ANALYSIS_STARTED"]


# -- identities ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"media_id": "", "user_id": "u1"}, "media_id"),
        ({"media_id": "m" * (d.MAX_MEDIA_ID_CHARS + 1), "user_id": "u1"}, "media_id"),
        ({"media_id": "m1", "user_id": ""}, "user_id"),
        ({"media_id": "m1", "user_id": " "}, "user_id"),
        ({"media_id": "m1", "user_id": "u1", "run_id": ""}, "run_id"),
        ({"media_id": "m1", "user_id": "u1", "filename": ""}, "data.filename"),
        ({"media_id": 17, "user_id": "u1"}, "media_id"),
    ],
)
def test_invalid_ids_raise_at_the_call_site(pub, kwargs, field):
    """publisher.media() checks its identities before anything is emitted."""
    with pytest.raises(InvalidEventError) as info:
        pub.media(**kwargs)
    assert [p.field for p in info.value.problems] == [field]
    assert len(pub.events) == 0


def test_media_id_of_exactly_128_characters_is_fine(pub):
    """The limit is inclusive."""
    with pub.media("m" * d.MAX_MEDIA_ID_CHARS, "u1") as run, run.model(SIGLIP):
        pass
    pub.events.assert_valid()


@pytest.mark.parametrize("name", ["", " ", "M" * (d.MAX_MODEL_NAME_CHARS + 1)])
def test_invalid_model_name_is_refused(pub, name):
    """run.model() checks the name the UI groups by."""
    with pub.media("m1", "u1") as run, pytest.raises(InvalidEventError, match="model_name"):
        run.model(name)


# -- without `with`, and crashed jobs -------------------------------------------------------


def test_explicit_start_and_finish_without_with(pub):
    """start()/complete()/fail()/finish() produce the same stream as the blocks."""
    run = pub.media("m1", "u1", run_id="r1").start()
    siglip = run.model(SIGLIP).start()
    siglip.progress(10, 10)
    siglip.complete("FAKE", 0.9)
    lipfd = run.model(LIPFD).start()
    lipfd.fail("no face")
    assert run.finish() == "PROCESSING_COMPLETED"
    assert models_of(pub) == [
        ("PROCESSING_STARTED", None),
        ("ANALYSIS_STARTED", SIGLIP),
        ("FRAME_ANALYSIS_PROGRESS", SIGLIP),
        ("ANALYSIS_COMPLETED", SIGLIP),
        ("ANALYSIS_STARTED", LIPFD),
        ("ANALYSIS_FAILED", LIPFD),
        ("PROCESSING_COMPLETED", None),
    ]
    pub.events.assert_valid()


def test_explicit_finish_fails_models_left_open(pub):
    """finish() with a model still started fails it first (rule 4)."""
    run = pub.media("m1", "u1").start()
    run.model(SIGLIP).start()
    assert run.finish("Done") == "PROCESSING_FAILED"
    assert pub.events.types()[-2:] == ["ANALYSIS_FAILED", "PROCESSING_FAILED"]
    assert pub.events[-1]["message"] == "Done"
    pub.events.assert_valid()


def test_explicit_media_fail(pub):
    """run.fail(exc) ends the run with PROCESSING_FAILED and the exception's text."""
    run = pub.media("m1", "u1").start()
    assert run.fail(OSError("upload vanished")) == "PROCESSING_FAILED"
    assert pub.events[-1]["data"]["error_message"] == "upload vanished"
    assert pub.events[-1]["data"]["details"] == {"error_type": "OSError"}
    pub.events.assert_valid()


def test_finish_inside_the_block_is_kept_and_exit_adds_nothing(pub):
    """A run finished inside its block is not ended again when the block exits."""
    with pub.media("m1", "u1") as run:
        with run.model(SIGLIP):
            pass
        run.finish()
    assert pub.events.types().count("PROCESSING_COMPLETED") == 1
    pub.events.assert_valid()


def test_crashed_job_leaves_the_run_incomplete(pub):
    """A job that stops calling leaves an open run: invalid, unless incomplete is allowed."""
    run = pub.media("m1", "u1").start()
    model = run.model(SIGLIP).start()
    model.progress(10, 300)
    # ... the process dies here: no terminal events.
    report = pub.events.validate()
    assert not report.ok
    assert report.incomplete_count == 1
    with pytest.raises(AssertionError, match="incomplete run"):
        pub.events.assert_valid()
    assert pub.events.assert_valid(allow_incomplete=True).violation_count == 0


def test_two_runs_of_one_media_are_numbered_as_one_sequence(pub):
    """A re-analysis continues the media's seq, and both runs keep the contract."""
    for run_id in ("r1", "r2"):
        with pub.media("m1", "u1", run_id=run_id) as run, run.model(SIGLIP):
            pass
    assert [e["seq"] for e in pub.events] == list(range(1, 9))
    pub.events.assert_valid()


# -- property: any use of the API keeps the contract ----------------------------------------

MODELS = [SIGLIP, LIPFD, MEL]
PROGRESS_TYPES = [
    "FRAME_ANALYSIS_PROGRESS", "WINDOW_PROCESSING_PROGRESS", "VISUALIZATION_GENERATION_PROGRESS",
]
PHASE_EVENTS = [
    "AUDIO_EXTRACTION_START", "AUDIO_EXTRACTION_COMPLETE",
    "SPECTROGRAM_GENERATION_START", "SPECTROGRAM_GENERATION_COMPLETE",
]
RUNS = 2  # two media tracked at once, interleaved

error_texts = st.one_of(
    st.sampled_from(["boom", "no face found", ""]),
    st.text(max_size=30),
    # Long enough that "<model> failed: <error>" passes the message limit.
    st.integers(d.MAX_ERROR_MESSAGE_CHARS - 5, 2 * d.MAX_MESSAGE_CHARS).map(lambda n: "e" * n),
)
progress_ops = st.tuples(
    st.just("progress"),
    st.sampled_from(PROGRESS_TYPES),
    st.integers(-1, 12),
    st.sampled_from([10, 10, 10, 12]),
    st.sampled_from([None, None, "frame_analysis", ""]),
)
step_ops = st.tuples(st.just("step"), st.sampled_from([*PHASE_EVENTS, "ANALYSIS_STARTED"]))
inner_ops = st.lists(st.one_of(progress_ops, step_ops), max_size=4)
model = st.sampled_from(MODELS)
run_index = st.integers(0, RUNS - 1)
confidences = st.one_of(st.none(), st.floats(-0.5, 1.5), st.just(float("nan")))
predictions = st.one_of(st.none(), st.sampled_from(["FAKE", "REAL", ""]), st.text(max_size=70))

operations = st.one_of(
    st.tuples(st.just("queue"), run_index, st.lists(model, max_size=3)),
    st.tuples(st.just("start"), run_index, model),
    st.tuples(st.just("again"), run_index, model),
    st.tuples(st.just("call"), run_index, model, st.one_of(progress_ops, step_ops)),
    st.tuples(st.just("complete"), run_index, model, predictions, confidences),
    st.tuples(st.just("fail"), run_index, model, error_texts),
    # A `with run.model(...)` block: some calls, then a normal exit, complete() or a raise.
    st.tuples(
        st.just("block"), run_index, model, inner_ops,
        st.sampled_from(["exit", "complete", "raise"]), error_texts,
    ),
    st.tuples(st.just("finish"), run_index),
    st.tuples(st.just("media_fail"), run_index, error_texts),
)


@dataclasses.dataclass
class Program:
    """Random tracking-API calls over RUNS media, and how each media block ends."""

    ops: list[tuple[Any, ...]]
    endings: list[str]  # per run: "exit", "raise" (the media block) or "crash"
    refused: int = 0
    log: list[str] = dataclasses.field(default_factory=list)


programs = st.builds(
    Program,
    st.lists(operations, max_size=25),
    st.lists(st.sampled_from(["exit", "raise", "crash"]), min_size=RUNS, max_size=RUNS),
)


def _inner(tracker: ModelRun, op: tuple[Any, ...]) -> None:
    if op[0] == "progress":
        _, event, done, total, phase = op
        tracker.progress(done, total, event=event, phase=phase)
    else:
        tracker.step(op[1])


def run_program(publisher: ProgressPublisher, program: Program) -> None:
    """Play ``program`` against ``publisher``; refused calls are counted, others must work.

    Each refused call (TrackingError, InvalidEventError) must emit nothing; with a
    CapturingPublisher that is checked after every call.
    """
    captured = publisher.events if isinstance(publisher, CapturingPublisher) else None

    def attempt(call: Any, *args: Any) -> None:
        before = len(captured) if captured is not None else 0
        try:
            call(*args)
        except (TrackingError, InvalidEventError) as exc:
            program.refused += 1
            program.log.append(f"refused: {exc}")
            if captured is not None:
                assert len(captured) == before, f"a refused call emitted events: {exc}"

    runs = [
        publisher.media(f"m-{i}", "u-1", filename=f"clip-{i}.mp4", run_id=f"r-{i}" if i else None)
        for i in range(RUNS)
    ]
    for run in runs:
        run.start()
    # run.model(name) hands out a model's tracker until it starts; later calls go to
    # the tracker kept here, as job code would.
    trackers: dict[tuple[int, str], ModelRun] = {}

    def tracker(index: int, name: str) -> ModelRun:
        if (index, name) not in trackers:
            trackers[index, name] = runs[index].model(name)
        return trackers[index, name]

    def queue(index: int, names: list[str]) -> None:
        for name, queued in zip(names, runs[index].queue(names), strict=True):
            trackers[index, name] = queued

    for op in program.ops:
        kind, index = op[0], op[1]
        run = runs[index]
        if kind == "queue":
            attempt(queue, index, op[2])
        elif kind == "start":
            attempt(lambda i, m: tracker(i, m).start(), index, op[2])
        elif kind == "again":
            attempt(run.model, op[2])  # refused once the model has started
        elif kind == "call":
            attempt(lambda i, m, o: _inner(tracker(i, m), o), index, op[2], op[3])
        elif kind == "complete":
            attempt(lambda i, m, p, c: tracker(i, m).complete(p, c), index, *op[2:])
        elif kind == "fail":
            attempt(lambda i, m, e: tracker(i, m).fail(e), index, op[2], op[3])
        elif kind == "block":
            attempt(lambda i, m, *rest: _block(tracker(i, m), *rest), index, *op[2:])
        elif kind == "finish":
            attempt(run.finish)
        elif kind == "media_fail":
            attempt(run.fail, op[2])
    for run, ending in zip(runs, program.endings, strict=True):
        if ending == "exit":
            run.__exit__(None, None, None)
        elif ending == "raise":
            error = Boom("the job died outside any model")
            run.__exit__(Boom, error, None)


def _block(model: ModelRun, calls: list[tuple[Any, ...]], end: str, error: str) -> None:
    try:
        with model:
            for call in calls:
                with contextlib.suppress(TrackingError, InvalidEventError):
                    _inner(model, call)
            if end == "complete":
                model.complete("FAKE", 0.5)
            elif end == "raise":
                raise Boom(error)
    except Boom:
        assert model.state == "failed"


@settings(max_examples=300, deadline=None)
@given(programs)
def test_any_sequence_of_api_calls_produces_a_valid_stream(program):
    """Whatever the job does through the API (misuse included), the stream keeps the contract."""
    publisher = CapturingPublisher()
    try:
        run_program(publisher, program)
        crashed = program.endings.count("crash")
        report = publisher.events.assert_valid(allow_incomplete=True)
        assert report.incomplete_count <= crashed
        if not crashed:
            publisher.events.assert_valid()
        for event in publisher.events:
            if event["event"] in ("PROCESSING_COMPLETED", "PROCESSING_FAILED"):
                assert event["data"]["filename"] == f"clip-{event['media_id'][-1]}.mp4"
    finally:
        publisher.close()


# -- through the real publisher and fakeredis -----------------------------------------------


def _lifecycle(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [
        (e["media_id"], e["event"], e["data"].get("model_name"))
        for e in events
        if e["event"] not in PROGRESS_TYPES
    ]


def _last_progress(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int]]:
    last = {}
    for e in events:
        if e["event"] in PROGRESS_TYPES:
            key = (e["media_id"], e["data"]["model_name"], e["event"])
            last[key] = (e["data"]["progress"], e["data"]["total"])
    return last


def _through_fakeredis(program: Program, **options: Any) -> list[bytes]:
    client = fakeredis.FakeRedis()
    pubsub = client.pubsub()
    pubsub.subscribe("progress")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    publisher = ProgressPublisher(client, "progress", strict=True, **options)
    try:
        run_program(publisher, program)
        assert publisher.flush(5)
        stats = publisher.stats()
        assert stats.dropped_total == 0
        assert stats.published + stats.coalesced == stats.accepted
    finally:
        assert publisher.close(2)
    stats = publisher.stats()  # close() failed the runs left open: their events count too
    received = []
    while (message := pubsub.get_message(timeout=0.01)) is not None:
        if message["type"] == "message":
            received.append(message["data"])
    assert len(received) == stats.published
    pubsub.close()
    return received


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(programs, st.sampled_from([0.0, 0.1, 10.0]))
def test_real_publisher_delivers_the_api_stream_through_fakeredis(program, interval):
    """Through the threaded publisher, coalescing may drop progress values but never a
    lifecycle event, never the latest progress value, and never leaves a seq gap."""
    expected_publisher = CapturingPublisher()
    run_program(expected_publisher, Program(program.ops, program.endings))
    expected_publisher.close()  # fails the runs left open ("crash"), as the real one does
    expected = list(expected_publisher.events)

    received = _through_fakeredis(program, min_progress_interval=interval)
    report = validate_lines(received, strict=True, allow_incomplete=True)
    assert report.ok and report.lost_events == 0, report.to_text()
    events = [json.loads(raw) for raw in received]
    assert _lifecycle(events) == _lifecycle(expected)
    assert _last_progress(events) == _last_progress(expected)
    for media_id in {e["media_id"] for e in events}:
        seqs = [e["seq"] for e in events if e["media_id"] == media_id]
        assert seqs == list(range(1, len(seqs) + 1))


def test_many_progress_updates_are_coalesced_but_lifecycle_events_all_arrive():
    """A fast video model's hundreds of updates arrive as a few, with every lifecycle event."""
    program = Program(
        ops=[
            ("block", 0, SIGLIP, [("progress", "FRAME_ANALYSIS_PROGRESS", i, 300, None)
                                  for i in range(301)], "complete", ""),
            ("block", 0, LIPFD, [("progress", "FRAME_ANALYSIS_PROGRESS", i, 300, None)
                                 for i in range(150)], "raise", "no face found"),
        ],
        endings=["exit", "exit"],
    )
    received = _through_fakeredis(program)
    report = validate_lines(received, strict=True)
    assert report.ok and report.lost_events == 0, report.to_text()
    events = [json.loads(raw) for raw in received]
    assert len(events) < 50  # 451 progress calls, coalesced
    assert _lifecycle(events) == [
        ("m-0", "PROCESSING_STARTED", None),
        ("m-1", "PROCESSING_STARTED", None),
        ("m-0", "ANALYSIS_STARTED", SIGLIP),
        ("m-0", "ANALYSIS_COMPLETED", SIGLIP),
        ("m-0", "ANALYSIS_STARTED", LIPFD),
        ("m-0", "ANALYSIS_FAILED", LIPFD),
        ("m-0", "PROCESSING_COMPLETED", None),
        ("m-1", "PROCESSING_FAILED", None),
    ]
    assert _last_progress(events)[("m-0", SIGLIP, "FRAME_ANALYSIS_PROGRESS")] == (300, 300)
    assert _last_progress(events)[("m-0", LIPFD, "FRAME_ANALYSIS_PROGRESS")] == (149, 300)


def test_models_reporting_from_threads_never_emit_after_the_run_fails():
    """Several models on their own threads race run.fail() on another: whatever the
    interleaving, no model event follows its model's or the media's terminal event."""

    rng = random.Random(7)
    # Switch threads as often as possible, so the narrow windows actually get hit.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _race_models_against_fail(rng)
    finally:
        sys.setswitchinterval(interval)


def _race_models_against_fail(rng: random.Random) -> None:
    import threading
    import time

    from progress_sdk import TrackingError
    from progress_sdk.testing import CapturingPublisher

    for round_number in range(200):
        publisher = CapturingPublisher()
        run = publisher.media(f"m{round_number}", "u1").start()
        models = [run.model(f"MODEL-{k}").start() for k in range(4)]
        steps = [rng.randint(2, 60) for _ in models]

        def work(model, n):
            try:
                for i in range(1, n):
                    model.progress(i, 100)
                model.complete(prediction="FAKE", confidence=0.5)
            except TrackingError:
                pass  # the run ended under it: refused, and nothing emitted

        threads = [
            threading.Thread(target=work, args=(m, n))
            for m, n in zip(models, steps, strict=True)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.random() * 0.002)
        run.fail("job timed out")
        for thread in threads:
            thread.join()
        publisher.events.assert_valid()


# -- the job's own exception wins; no run is left open -------------------------------------


class UnprintableError(Exception):
    """An exception whose __str__ itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


class NotTextError(Exception):
    """An exception whose __str__ returns something that is not a str."""

    def __str__(self) -> str:
        return 42  # type: ignore[return-value]  # noqa: PLE0307 - the point of the test


@pytest.mark.parametrize("error", [UnprintableError(), NotTextError(), KeyboardInterrupt()])
def test_any_exception_leaves_the_block_unchanged_and_fails_the_run(pub, error):
    """Whatever the exception's __str__ does, it propagates as is and PROCESSING_FAILED goes out."""
    with pytest.raises(type(error)) as info, pub.media("m1", "u1") as run:  # noqa: SIM117
        with run.model(SIGLIP) as model:
            model.progress(1, 10)
            raise error
    assert info.value is error
    assert [e["event"] for e in pub.events][-2:] == ["ANALYSIS_FAILED", "PROCESSING_FAILED"]
    assert pub.events[-1]["data"]["error_message"]
    pub.events.assert_valid()


def _through_closed_publisher(job: Any) -> list[dict[str, Any]]:
    """Run ``job(publisher)`` on a real publisher into fakeredis; return what was published."""
    client = fakeredis.FakeRedis()
    pubsub = client.pubsub()
    pubsub.subscribe("progress")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    publisher = ProgressPublisher(client, "progress", min_progress_interval=0)
    try:
        job(publisher)
    finally:
        publisher.close(2)
    events = []
    while (message := pubsub.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            events.append(json.loads(message["data"]))
    pubsub.close()
    return events


def test_the_jobs_exception_wins_when_the_publisher_was_closed_mid_run():
    """close() during a run fails it (PROCESSING_FAILED); the job's ValueError still leaves
    the with block as a ValueError, not PublisherClosedError."""

    def job(publisher: ProgressPublisher) -> None:
        with (
            pytest.raises(ValueError, match="disk full"),
            publisher.media("m1", "u1") as run,
            run.model(SIGLIP) as model,
        ):
            model.progress(1, 10)
            publisher.close(2)  # the worker shuts down while the job runs
            raise ValueError("disk full")

    events = _through_closed_publisher(job)
    assert [e["event"] for e in events][-2:] == ["ANALYSIS_FAILED", "PROCESSING_FAILED"]
    assert "stopped before" in events[-1]["data"]["error_message"]
    assert validate_lines([json.dumps(e) for e in events], strict=True).ok


def test_reporting_a_failure_after_close_does_not_replace_the_jobs_exception():
    """`except E as exc: run.fail(exc); raise` re-raises E though close() failed the run."""

    def job(publisher: ProgressPublisher) -> None:
        run = publisher.media("m1", "u1").start()
        with pytest.raises(ValueError, match="bad frame"):
            try:
                publisher.close(2)
                raise ValueError("bad frame")
            except ValueError as exc:
                assert run.fail(exc) == "PROCESSING_FAILED"
                raise

    events = _through_closed_publisher(job)
    assert [e["event"] for e in events] == ["PROCESSING_STARTED", "PROCESSING_FAILED"]


def test_a_start_finish_job_that_raises_still_ends_its_run():
    """start()/finish() style: the job raises before finish(); close() ends the run with
    PROCESSING_FAILED (open models failed first), so no panel stays open."""

    def crashing_job(publisher: ProgressPublisher) -> None:
        run = publisher.media("m1", "u1", filename="clip.mp4").start()
        model = run.model(SIGLIP).start()
        model.progress(3, 10)
        raise ValueError("the decoder crashed")

    def job(publisher: ProgressPublisher) -> None:
        with pytest.raises(ValueError):
            crashing_job(publisher)

    events = _through_closed_publisher(job)
    assert [e["event"] for e in events][-2:] == ["ANALYSIS_FAILED", "PROCESSING_FAILED"]
    assert events[-1]["data"]["filename"] == "clip.mp4"
    assert validate_lines([json.dumps(e) for e in events], strict=True).ok


def test_runs_left_open_stay_open_when_asked():
    """fail_runs_left_open=False (a simulator of crashed workers) leaves them as they are."""
    client = fakeredis.FakeRedis()
    publisher = ProgressPublisher(client, "progress", fail_runs_left_open=False)
    run = publisher.media("m1", "u1").start()
    publisher.close(2)
    assert run.outcome is None
