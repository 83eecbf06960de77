"""Lenient in production, strict in tests: what the tracking API does with bad progress data.

A publisher that is not strict (the default) repairs or skips bad data once a run started,
logs each kind once and counts it in ``stats().forgiven``; a strict one (the testing
helpers' default) raises ``InvalidEventError`` at the call. Ids at ``media()`` raise in
both modes. Issue #9, finding 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction

import fakeredis
import pytest

from progress_sdk import InvalidEventError, ProgressPublisher
from progress_sdk.testing import CapturingPublisher

SIGLIP = "SIGLIP-LSTM-V4"


@pytest.fixture
def lenient() -> Iterator[CapturingPublisher]:
    """A capturing publisher in production's (lenient) mode."""
    publisher = CapturingPublisher(strict=False)
    yield publisher
    publisher.close()


def progress_of(pub: CapturingPublisher) -> list[tuple[int, int]]:
    """(progress, total) of every progress event captured."""
    return [
        (e["data"]["progress"], e["data"]["total"])
        for e in pub.events
        if e["event"].endswith("_PROGRESS")
    ]


def test_the_real_publisher_is_lenient_by_default_and_testing_helpers_are_strict():
    """ProgressPublisher() forgives; CapturingPublisher() and the fixture raise."""
    real = ProgressPublisher(fakeredis.FakeRedis(), "lenient-default", finish_flush_timeout=0)
    capturing = CapturingPublisher()
    try:
        assert real.strict is False
        assert capturing.strict is True
    finally:
        real.close(1)
        capturing.close()


def test_progress_events_fixture_is_strict(progress_events):
    """The pytest fixture catches what production forgives."""
    with progress_events.media("m1", "u1") as run, run.model(SIGLIP) as model:
        with pytest.raises(InvalidEventError, match=r"data\.progress"):
            model.progress(11, 10)
        model.complete()


def test_strict_can_come_from_the_environment(monkeypatch):
    """PROGRESS_SDK_STRICT=1 makes a publisher strict when strict= is not given."""
    monkeypatch.setenv("PROGRESS_SDK_STRICT", "1")
    publisher = ProgressPublisher(fakeredis.FakeRedis(), "strict-env", finish_flush_timeout=0)
    try:
        assert publisher.strict is True
    finally:
        publisher.close(1)


def test_off_by_one_frame_count_is_clamped_and_counted(lenient):
    """m.progress(11, 10): the job goes on, 10/10 goes out, the kind is counted."""
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(11, 10)
        model.progress(-3, 10)
        model.complete()
    assert progress_of(lenient) == [(10, 10), (10, 10)]
    # -3 is clamped to 0, and then held at 10: progress never goes back (rule 3).
    assert lenient.stats().forgiven == {"progress_range": 2, "progress_decreased": 1}
    lenient.events.assert_valid()


@pytest.mark.parametrize(
    ("done", "total", "sent"),
    [
        (5.0, 10, (5, 10)),
        (5.7, 10, (5, 10)),
        ("7", "10", (7, 10)),
        (Decimal("3"), Fraction(10, 1), (3, 10)),
        (True, 10, (1, 10)),
    ],
)
def test_numbers_of_the_wrong_type_are_converted(lenient, done, total, sent):
    """A float, a numeric string, a Decimal become ints; counted as progress_type."""
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(done, total)
        model.complete()
    assert progress_of(lenient) == [sent]
    assert lenient.stats().forgiven == {"progress_type": 1}
    lenient.events.assert_valid()


@pytest.mark.parametrize(
    ("done", "total", "kind"),
    [
        (0, 0, "total_range"),
        (5, -1, "total_range"),
        (float("nan"), 10, "progress_type"),
        (None, 10, "progress_type"),
        (3, object(), "progress_type"),
    ],
)
def test_unusable_progress_is_skipped_and_counted(lenient, done, total, kind):
    """total=0, NaN, None: nothing to draw, so the call emits nothing and the job goes on."""
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(done, total)
        model.complete()
    assert progress_of(lenient) == []
    assert lenient.stats().forgiven[kind] == 1
    lenient.events.assert_valid()


def test_a_re_estimated_total_is_rescaled_to_the_first_one(lenient):
    """Rule 3 forbids a changed total: the first total is kept, at the same fraction."""
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(100, 300)
        model.progress(310, 310)
        model.complete()
    assert progress_of(lenient) == [(100, 300), (300, 300)]
    assert lenient.stats().forgiven == {"total_changed": 1}
    lenient.events.assert_valid()


def test_bad_text_and_details_are_repaired_or_left_out(lenient):
    """Phase, message, details, prediction and confidence never stop the job."""
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.progress(1, 2, phase="x" * 500, message=42, details={"f": object()})
        model.progress(2, 2, details=["not", "a", "dict"], event="NOT_A_PROGRESS_TYPE")
        model.step("FRAME_ANALYSIS_PROGRESS")
        model.complete(prediction=7, confidence=1.4)
    events = list(lenient.events)
    first = events[2]
    assert first["message"] == "42"
    assert len(first["data"]["phase"]) == 64
    assert "details" not in first["data"]
    completed = lenient.events.of_type("ANALYSIS_COMPLETED")[0]["data"]
    assert completed["prediction"] == "7"
    assert completed["confidence"] == 1.0
    assert lenient.stats().forgiven == {
        "phase": 1,
        "message": 1,
        "details": 1,
        "event_type": 2,
        "prediction": 1,
        "confidence": 1,
    }
    lenient.events.assert_valid()


def test_an_empty_error_still_fails_the_model_with_a_generic_text(lenient):
    """fail('') must still close the UI row: a generic text stands in."""
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        model.fail("")
    failed = lenient.events.of_type("ANALYSIS_FAILED")[0]["data"]
    assert failed["error_message"] == "an unexpected error occurred"
    assert lenient.stats().forgiven == {"error_message": 1}
    lenient.events.assert_valid()


def test_a_model_name_that_cannot_be_repaired_gets_a_silent_tracker(lenient):
    """run.model('') in production: the job runs on, no row without a name is emitted."""
    with lenient.media("m1", "u1") as run:
        with run.model("  ") as ghost:
            ghost.progress(1, 2)
        with run.model(12345) as numbered:  # type: ignore[arg-type]
            numbered.complete()
    assert [e["data"].get("model_name") for e in lenient.events] == [
        None, "12345", "12345", None,
    ]
    assert lenient.stats().forgiven == {"model_name": 2}
    lenient.events.assert_valid()


def test_each_kind_is_logged_once(lenient, caplog):
    """A million bad calls make one log line per kind, and the count says how many."""
    caplog.set_level(logging.WARNING, "progress_sdk")
    with lenient.media("m1", "u1") as run, run.model(SIGLIP) as model:
        for i in range(50):
            model.progress(i + 20, 10)
        model.progress(10.0, 10)
        model.complete()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "progress_range" in lines[0] and "strict" in lines[0]
    assert lenient.stats().forgiven == {"progress_range": 50, "progress_type": 1}


def test_ids_at_media_still_raise_in_lenient_mode(lenient):
    """A missing user id is a programming error caught before any work starts."""
    with pytest.raises(InvalidEventError, match="user_id"):
        lenient.media("m1", "")


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.progress(11, 10),
        lambda m: m.progress(5.0, 10),
        lambda m: m.progress(1, 0),
        lambda m: m.progress(1, 10, phase=""),
        lambda m: m.progress(1, 10, details=[1]),
        lambda m: m.progress(1, 10, event="ANALYSIS_STARTED"),
        lambda m: m.step("NOPE"),
        lambda m: m.complete(confidence=2.0),
        lambda m: m.fail(""),
    ],
)
def test_strict_mode_raises_for_every_kind(call):
    """What production forgives raises InvalidEventError in strict mode."""
    publisher = CapturingPublisher(strict=True)
    with (
        publisher.media("m1", "u1") as run,
        run.model(SIGLIP) as model,
        pytest.raises(InvalidEventError),
    ):
        call(model)
    assert publisher.stats().forgiven == {}


def test_real_publisher_forgives_through_redis():
    """The default publisher repairs the data and the stream that arrives is valid."""
    client = fakeredis.FakeRedis()
    publisher = ProgressPublisher(client, "lenient-real", finish_flush_timeout=0)
    try:
        with publisher.media("m1", "u1") as run, run.model(SIGLIP) as model:
            model.progress(11, 10)
            model.complete(confidence=float("inf"))
        assert publisher.flush(5)
        assert publisher.stats().forgiven == {"progress_range": 1, "confidence": 1}
    finally:
        publisher.close(2)
