"""EventRouter: which channel messages become which socket events, and what is dropped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulator.relay.fencing import RunFence
from simulator.relay.routing import EventRouter, progress_update, user_room
from simulator.relay.stats import RelayStats


def _raw(**fields: Any) -> bytes:
    obj = {"media_id": "m1", "user_id": "u1", "event": "PROCESSING_STARTED",
           "message": "started", "data": {}}
    obj.update(fields)
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


def test_a_valid_event_becomes_a_camel_case_progress_update_for_its_user() -> None:
    """The six product fields plus seq, source and runId, for room user:<id>."""
    routed = EventRouter(RelayStats()).route(
        _raw(seq=3, source="w:1", run_id="r", timestamp="2026-11-26T05:00:00.123456Z")
    )
    assert routed is not None and routed.room == "user:u1" == user_room("u1")
    assert routed.emits == (("progress_update", {
        "mediaId": "m1", "userId": "u1", "event": "PROCESSING_STARTED", "message": "started",
        "data": {}, "timestamp": "2026-11-26T05:00:00.123456Z", "seq": 3, "source": "w:1",
        "runId": "r",
    }),)


def test_envelope_fields_a_legacy_producer_leaves_out_are_left_out() -> None:
    """Without seq/source/run_id the update carries only the product's six fields."""
    update = progress_update(json.loads(_raw()))
    assert set(update) == {"mediaId", "userId", "event", "message", "data", "timestamp"}


def test_completed_adds_media_update_with_the_filename_from_the_start() -> None:
    """PROCESSING_COMPLETED is followed by media_update naming the media and its file."""
    router = EventRouter(RelayStats())
    router.route(_raw(data={"filename": "clip.mp4"}))
    routed = router.route(_raw(event="PROCESSING_COMPLETED", run_id="r"))
    assert routed is not None
    names = [name for name, _ in routed.emits]
    assert names == ["progress_update", "media_update"]
    media = routed.emits[1][1]
    assert (media["id"], media["filename"], media["runId"]) == ("m1", "clip.mp4", "r")


def test_failed_adds_processing_error() -> None:
    """PROCESSING_FAILED is followed by processing_error {mediaId, filename, error}."""
    router = EventRouter(RelayStats())
    routed = router.route(_raw(event="PROCESSING_FAILED", data={"error_message": "bad file"}))
    assert routed is not None
    assert routed.emits[1] == ("processing_error",
                               {"mediaId": "m1", "filename": None, "error": "bad file"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b'"a string"', "invalid_json"),
        (_raw(user_id=None), "missing_user_id"),
        (_raw(user_id="  "), "missing_user_id"),
        (_raw(user_id=7), "missing_user_id"),
        (_raw(media_id=None), "missing_media_id"),
        (_raw(event="NOT_AN_EVENT"), "schema"),
        (_raw(event="ANALYSIS_STARTED"), "schema"),  # no model_name
        (_raw(data={"details": {"blob": "x" * 70_000}}), "too_large"),
    ],
)
def test_unroutable_or_invalid_messages_are_dropped_and_counted(raw: bytes, reason: str) -> None:
    """Each is dropped (None) and counted under its reason; nothing raises."""
    stats = RelayStats()
    assert EventRouter(stats).route(raw) is None
    assert dict(stats.dropped) == {reason: 1}


def test_the_completed_alias_is_forwarded_as_sent() -> None:
    """ANALYSIS_COMPLETE (a read-side alias) is valid and forwarded unchanged."""
    routed = EventRouter(RelayStats()).route(
        _raw(event="ANALYSIS_COMPLETE", data={"model_name": "M"})
    )
    assert routed is not None and routed.emits[0][1]["event"] == "ANALYSIS_COMPLETE"


def test_a_resent_event_is_dropped_as_a_repeat() -> None:
    """The same (source, media_id, seq) twice, or a seq not above the last: forwarded once,
    the rest counted under repeat; other sources and media keep their own sequence."""
    stats = RelayStats()
    router = EventRouter(stats)
    first = _raw(seq=5, source="w:1")
    assert router.route(first) is not None
    assert router.route(first) is None  # the resend after a reset
    assert router.route(_raw(seq=4, source="w:1")) is None
    assert router.route(_raw(seq=5, source="w:2")) is not None
    assert router.route(_raw(seq=5, source="w:1", media_id="m2")) is not None
    assert router.route(_raw(seq=6, source="w:1")) is not None
    assert dict(stats.dropped) == {"repeat": 2}


def test_the_first_end_of_a_run_wins_and_a_new_start_opens_it_again() -> None:
    """After a run's terminal event its later events, a second end included, are dropped
    as after_terminal; a PROCESSING_STARTED of the media starts a new run that goes out;
    other runs of the media and runs without run_id are fenced each on their own."""
    stats = RelayStats()
    router = EventRouter(stats)
    progress = {"model_name": "M", "progress": 1, "total": 2}
    failed = {"error_message": "the worker stopped reporting"}
    assert router.route(_raw(run_id="r1")) is not None
    assert router.route(_raw(run_id="r1", event="PROCESSING_FAILED", data=failed)) is not None
    assert router.route(_raw(run_id="r1", event="FRAME_ANALYSIS_PROGRESS", data=progress)) is None
    assert router.route(_raw(run_id="r1", event="PROCESSING_COMPLETED")) is None
    assert router.route(_raw(run_id="r2", event="FRAME_ANALYSIS_PROGRESS", data=progress))
    assert router.route(_raw(event="PROCESSING_COMPLETED")) is not None  # no run_id: its own
    assert router.route(_raw(event="PROCESSING_FAILED", data=failed)) is None
    assert router.route(_raw(run_id="r1")) is not None  # a re-analysis under the same id
    assert router.route(_raw(run_id="r1", event="PROCESSING_COMPLETED")) is not None
    assert dict(stats.dropped) == {"after_terminal": 3}


def test_the_fence_forgets_the_oldest_ended_runs_past_its_capacity() -> None:
    """Bounded: with room for two ended runs, the first one ended is forgotten."""
    fence = RunFence(capacity=2)
    for media in ("a", "b", "c"):
        assert not fence.ended({"media_id": media, "event": "PROCESSING_COMPLETED"})
    assert len(fence) == 2
    assert not fence.ended({"media_id": "a", "event": "PROCESSING_FAILED"})  # forgotten
    assert fence.ended({"media_id": "c", "event": "PROCESSING_FAILED"})


def test_events_without_seq_or_source_are_never_repeats() -> None:
    """A legacy producer's identical events are all forwarded."""
    router = EventRouter(RelayStats())
    assert all(router.route(_raw()) is not None for _ in range(3))
    assert all(router.route(_raw(seq=1)) is not None for _ in range(2))
