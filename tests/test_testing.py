"""progress_sdk.testing: CapturingPublisher, CapturedEvents and the progress_events fixture."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from progress_sdk import (
    EventType,
    InvalidEventError,
    ProgressPublisher,
    PublisherClosedError,
    Report,
    parse_event,
)
from progress_sdk.testing import CapturedEvents, CapturingPublisher

pytest_plugins = ["pytester"]

SIGLIP = "SIGLIP-LSTM-V4"
LIPFD = "LIP-FD-V1"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def event(name: str, media_id: str = "m1", **data: Any) -> dict[str, Any]:
    """The wire fields of one event as job code would emit() them."""
    return {"media_id": media_id, "user_id": "u1", "event": name, "message": name, "data": data}


@pytest.fixture
def pub() -> Iterator[CapturingPublisher]:
    """A capturing publisher, closed after the test."""
    publisher = CapturingPublisher()
    yield publisher
    publisher.close()


@pytest.fixture
def two_models(pub: CapturingPublisher) -> CapturingPublisher:
    """A finished run: SIGLIP completes after two progress events, LIP-FD fails."""
    with pub.media("m1", "u1") as run:
        with run.model(SIGLIP) as model:
            model.progress(1, 2)
            model.progress(2, 2)
            model.complete("FAKE", 0.9)
        with run.model(LIPFD) as model:
            model.fail("no face")
    return pub


# -- CapturingPublisher -------------------------------------------------------------------


def test_capturing_publisher_is_a_progress_publisher(pub):
    """Code that takes a ProgressPublisher accepts the capturing one."""
    assert isinstance(pub, ProgressPublisher)
    assert isinstance(pub.events, CapturedEvents)
    assert pub.channel == "media-progress-events"
    assert pub.source.startswith("capturing-publisher:")  # as production's sources


def test_events_are_recorded_synchronously_with_the_v1_envelope(pub):
    """An emitted event is in ``events`` when emit() returns, as it would be on the wire."""
    pub.emit(event("PROCESSING_STARTED", filename="a.mp4"))
    assert len(pub.events) == 1
    captured = pub.events[0]
    assert captured["event"] == "PROCESSING_STARTED"
    assert captured["data"] == {"filename": "a.mp4"}
    assert captured["schema_version"] == 1
    assert captured["seq"] == 1
    assert captured["source"] == pub.source
    assert TIMESTAMP.match(captured["timestamp"])
    assert json.loads(pub.events.raw[0]) == captured
    parse_event(pub.events.raw[0], strict=True)


def test_channel_and_source_can_be_chosen():
    """The channel and source given are used as in the real publisher."""
    publisher = CapturingPublisher("my-channel", source="job-7")
    publisher.emit(event("PROCESSING_STARTED"))
    assert publisher.channel == "my-channel"
    assert publisher.events[0]["source"].startswith("job-7:")  # made unique, as in production
    publisher.close()


def test_seq_counts_per_media(pub):
    """seq is numbered per media_id, as the real publisher numbers it."""
    for media_id in ["a", "b", "a", "a", "b"]:
        pub.emit(event("PROCESSING_STARTED", media_id))
    assert [(e["media_id"], e["seq"]) for e in pub.events] == [
        ("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2),
    ]


def test_nothing_is_coalesced(pub):
    """Every progress value is kept, however fast they come."""
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        for i in range(101):
            model.progress(i, 100)
    progress = pub.events.of_type("FRAME_ANALYSIS_PROGRESS")
    assert [e["data"]["progress"] for e in progress] == list(range(101))
    stats = pub.stats()
    assert stats.accepted == stats.published == len(pub.events)
    assert stats.coalesced == 0 and stats.queued == 0 and stats.dropped_total == 0


def test_invalid_events_are_refused_and_not_recorded(pub):
    """emit() validates as the real publisher does; a refused event leaves no trace."""
    with pytest.raises(InvalidEventError, match=r"data\.model_name"):
        pub.emit(event("ANALYSIS_STARTED"))
    with pytest.raises(InvalidEventError, match="set by the publisher"):
        pub.emit({**event("PROCESSING_STARTED"), "seq": 5})
    assert len(pub.events) == 0
    assert pub.events.raw == []


def test_emit_accepts_the_read_side_alias_and_records_the_canonical_name(pub):
    """ANALYSIS_COMPLETE is recorded as ANALYSIS_COMPLETED, as the publisher sends it."""
    pub.emit(event("ANALYSIS_COMPLETE", model_name=SIGLIP))
    assert pub.events.types() == ["ANALYSIS_COMPLETED"]


def test_flush_and_close_succeed_at_once_and_emit_after_close_raises(pub):
    """There is nothing to deliver: flush() and close() return True; then emit() raises."""
    pub.emit(event("PROCESSING_STARTED"))
    assert pub.flush(0) is True
    assert pub.close() is True
    assert pub.close() is True
    with pytest.raises(PublisherClosedError, match="after close"):
        pub.emit(event("PROCESSING_COMPLETED"))
    assert len(pub.events) == 1


# -- CapturedEvents -----------------------------------------------------------------------


def test_captured_events_is_a_sequence(two_models):
    """Length, indexing, slicing, iteration and repr work like a list of events."""
    events = two_models.events
    assert len(events) == 8
    assert events[0]["event"] == "PROCESSING_STARTED"
    assert events[-1]["event"] == "PROCESSING_COMPLETED"
    assert [e["event"] for e in events[1:3]] == ["ANALYSIS_STARTED", "FRAME_ANALYSIS_PROGRESS"]
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert repr(events).startswith("CapturedEvents(['PROCESSING_STARTED', 'ANALYSIS_STARTED'")
    assert next(reversed(events)) is events[-1]
    assert events.index(events[2]) == 2


def test_types_lists_each_event_type_in_order(two_models):
    """types() is the event sequence at a glance."""
    assert two_models.events.types() == [
        "PROCESSING_STARTED",
        "ANALYSIS_STARTED",
        "FRAME_ANALYSIS_PROGRESS",
        "FRAME_ANALYSIS_PROGRESS",
        "ANALYSIS_COMPLETED",
        "ANALYSIS_STARTED",
        "ANALYSIS_FAILED",
        "PROCESSING_COMPLETED",
    ]


def test_of_type_selects_one_event_type(two_models):
    """of_type() takes a name or an EventType and keeps the order."""
    events = two_models.events
    progress = events.of_type("FRAME_ANALYSIS_PROGRESS")
    assert [e["data"]["progress"] for e in progress] == [1, 2]
    assert events.of_type(EventType.FRAME_ANALYSIS_PROGRESS) == progress
    assert events.of_type(EventType.ANALYSIS_FAILED)[0]["data"]["model_name"] == LIPFD
    assert events.of_type("SPECTROGRAM_GENERATION_START") == []


def test_for_model_selects_one_models_events(two_models):
    """for_model() keeps the events whose data names the model."""
    events = two_models.events
    assert [e["event"] for e in events.for_model(LIPFD)] == ["ANALYSIS_STARTED", "ANALYSIS_FAILED"]
    assert len(events.for_model(SIGLIP)) == 4
    assert events.for_model("UNKNOWN-MODEL") == []


def test_validate_returns_the_validator_report(two_models):
    """validate() runs the lifecycle validator, strict by default."""
    report = two_models.events.validate()
    assert isinstance(report, Report)
    assert report.ok and report.strict
    assert report.events == 8
    assert report.counts["FRAME_ANALYSIS_PROGRESS"] == 2
    assert two_models.events.validate(strict=False).strict is False


def test_assert_valid_returns_the_report_for_a_valid_stream(two_models):
    """A stream that keeps the contract passes and yields its report."""
    assert two_models.events.assert_valid().ok


def test_assert_valid_fails_with_the_report_text(pub):
    """A lifecycle violation fails the assertion with the validator's report."""
    pub.emit(event("ANALYSIS_STARTED", model_name=SIGLIP))  # before PROCESSING_STARTED
    with pytest.raises(AssertionError) as info:
        pub.events.assert_valid()
    text = str(info.value)
    assert text.startswith("captured events break the contract:\nINVALID: 1 event checked")
    assert "rule 1" in text
    assert pub.events.validate().to_text(
        allow_hint="assert_valid(allow_incomplete=True) accepts them"
    ) in text


def test_assert_valid_fails_on_a_run_left_open_unless_allowed(pub):
    """A run without a terminal event fails, unless allow_incomplete is given."""
    pub.media("m1", "u1").start()
    with pytest.raises(AssertionError, match="incomplete run"):
        pub.events.assert_valid()
    report = pub.events.assert_valid(allow_incomplete=True)
    assert report.incomplete_count == 1


def test_assert_valid_names_the_python_argument_not_the_cli_flag(pub):
    """A Python test is told about allow_incomplete=True, not --allow-incomplete."""
    pub.media("m1", "u1").start()
    with pytest.raises(AssertionError) as info:
        pub.events.assert_valid()
    assert "assert_valid(allow_incomplete=True) accepts them" in str(info.value)
    assert "--allow-incomplete" not in str(info.value)


def test_assert_valid_fails_on_lost_events(pub):
    """A seq gap means lost events; a capture must have none."""
    pub.media("m1", "u1").start()
    started = pub.events[0]
    failed = dict(started, seq=3, event="PROCESSING_FAILED", data={"error_message": "x"})
    pub.events.append_wire(json.dumps(failed).encode())  # seq 2 never arrived
    assert pub.events.validate().ok  # a gap is not a violation...
    with pytest.raises(AssertionError, match="1 event lost"):
        pub.events.assert_valid()  # ...but a capture never loses anything


def test_clear_forgets_the_captured_events(two_models):
    """clear() empties the capture; later events are captured afresh."""
    events = two_models.events
    events.clear()
    assert len(events) == 0 and events.raw == [] and events.types() == []
    with two_models.media("m2", "u1") as run, run.model(SIGLIP):
        pass
    assert events.types()[0] == "PROCESSING_STARTED"
    assert {e["media_id"] for e in events} == {"m2"}
    events.assert_valid()


# -- the progress_events pytest fixture -----------------------------------------------------

PLUGIN_TESTS = """
    import pytest
    from progress_sdk.testing import CapturingPublisher
    from progress_sdk import PublisherClosedError

    seen = []

    def test_fixture_is_a_fresh_capturing_publisher(progress_events, request):
        assert isinstance(progress_events, CapturingPublisher)
        assert request.config.pluginmanager.get_plugin("progress_sdk") is not None
        with progress_events.media("m1", "u1") as run, run.model("SIGLIP-LSTM-V4"):
            pass
        progress_events.events.assert_valid()
        seen.append(progress_events)

    def test_each_test_gets_its_own_and_the_last_one_was_closed(progress_events):
        assert progress_events is not seen[0]
        assert len(progress_events.events) == 0
        with pytest.raises(PublisherClosedError):
            seen[0].emit({"media_id": "m", "user_id": "u", "event": "PROCESSING_STARTED",
                          "message": "", "data": {}})
"""


def test_progress_events_fixture_comes_from_the_entry_point_plugin(pytester):
    """The pytest11 plugin gives every test a fresh CapturingPublisher and closes it."""
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_progress_events_fixture_needs_the_plugin(pytester):
    """With the plugin disabled the fixture is unknown, so it is the plugin that provides it."""
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest("-p", "no:progress_sdk", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'progress_events' not found*"])


def test_assert_valid_failure_shows_the_report_in_the_test_output(pytester):
    """A user's test that breaks the contract fails with the validator's findings."""
    pytester.makepyfile(
        """
        def test_job(progress_events):
            progress_events.emit({"media_id": "m1", "user_id": "u1", "event": "ANALYSIS_STARTED",
                                  "message": "go", "data": {"model_name": "SIGLIP-LSTM-V4"}})
            progress_events.events.assert_valid()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*captured events break the contract:*", "*INVALID: 1 event checked*", "*rule 1*"]
    )
