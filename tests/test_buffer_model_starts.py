"""EventBuffer overflow and rule 2: a model whose start gave way loses the rest of its
attempt (progress and terminal event), never its media's terminal event."""

from __future__ import annotations

import json
from typing import Any

from test_buffer import Clock, entry, fields, lifecycle, progress, wire

from progress_sdk._buffer import EventBuffer
from progress_sdk._entry import Entry
from progress_sdk._model_starts import ModelStarts
from progress_sdk.contract import validate_lines


def failed(media: str) -> Entry:
    return entry(fields("PROCESSING_FAILED", media, None, error_message="gone"))


def attempt(event: str, media: str, number: int) -> Entry:
    more: dict[str, Any] = {"error_message": "gone"} if event == "ANALYSIS_FAILED" else {}
    return entry(fields(event, media, "A", details={"attempt": number}, **more))


def send(buffer: EventBuffer, out: list[bytes]) -> list[dict[str, Any]]:
    batch = [wire(item) for item in buffer.take(1000)]
    buffer.finish_batch()
    out.extend(batch)
    return [json.loads(line) for line in batch]


def violations(out: list[bytes]) -> list[str]:
    report = validate_lines(out, strict=True, allow_incomplete=True)
    return [str(v) for v in report.violations]


def opened(buffer: EventBuffer, media: list[str], out: list[bytes]) -> None:
    for m in media:
        buffer.accept(lifecycle("PROCESSING_STARTED", m, None))
    send(buffer, out)


def test_a_terminal_event_that_evicts_its_own_models_start_is_dropped_with_it():
    """The sequence that made the publisher's lost-terminals test flaky: a model start
    takes the last slot, its progress is dropped, its terminal event evicts the start."""
    buffer, out = EventBuffer(capacity=4, min_interval=0.0, clock=Clock()), []
    opened(buffer, ["m0", "m1", "m2", "m3"], out)
    for m in ("m0", "m1", "m2"):
        buffer.accept(failed(m))
    buffer.accept(lifecycle("ANALYSIS_STARTED", "m3"))  # the last slot
    assert buffer.accept(progress(1, "m3")) is False  # nothing ranks below it
    assert buffer.accept(lifecycle("ANALYSIS_COMPLETED", "m3")) is False
    assert dict(buffer.dropped) == {"buffer_full": 2, "evicted": 1}
    buffer.accept(failed("m3"))  # the media's own terminal event is not affected
    sent = send(buffer, out)
    assert [(e["media_id"], e["event"]) for e in sent] == [
        ("m0", "PROCESSING_FAILED"), ("m1", "PROCESSING_FAILED"),
        ("m2", "PROCESSING_FAILED"), ("m3", "PROCESSING_FAILED")]
    assert violations(out) == []


def test_an_evicted_start_takes_its_waiting_terminal_and_later_progress_along():
    buffer, out = EventBuffer(capacity=3, min_interval=0.0, clock=Clock()), []
    opened(buffer, ["m1", "m2"], out)
    buffer.accept(lifecycle("ANALYSIS_STARTED", "m1"))
    buffer.accept(lifecycle("ANALYSIS_COMPLETED", "m1"))
    buffer.accept(failed("m2"))
    buffer.accept(lifecycle("ANALYSIS_STARTED", "m2", "B"))  # evicts m1's start
    assert dict(buffer.dropped) == {"evicted": 2}  # ... and m1's terminal event
    sent = send(buffer, out)
    assert [e["event"] for e in sent] == ["PROCESSING_FAILED", "ANALYSIS_STARTED"]
    # Full of starts: model D's start is dropped, so its progress and terminal go too.
    for m in ("m3", "m4", "m5"):
        buffer.accept(lifecycle("PROCESSING_STARTED", m, None))
    assert buffer.accept(lifecycle("ANALYSIS_STARTED", "m1", "D")) is False
    send(buffer, out)
    assert buffer.accept(progress(1, "m1", "D")) is False
    assert buffer.accept(lifecycle("ANALYSIS_FAILED", "m1", "D")) is False
    buffer.accept(failed("m1"))
    assert [e["event"] for e in send(buffer, out)] == ["PROCESSING_FAILED"]
    assert buffer.dropped["buffer_full"] == 3
    assert not [v for v in violations(out) if "rule 2" in v]


def test_a_retry_of_a_lost_model_is_sent_again():
    buffer, out = EventBuffer(capacity=2, min_interval=0.0, clock=Clock()), []
    opened(buffer, ["m1", "m2"], out)
    buffer.accept(failed("m2"))
    buffer.accept(lifecycle("PROCESSING_STARTED", "m3", None))
    assert buffer.accept(attempt("ANALYSIS_STARTED", "m1", 1)) is False
    sent = send(buffer, out)
    assert buffer.accept(progress(1, "m1")) is False
    assert buffer.accept(attempt("ANALYSIS_QUEUED", "m1", 2)) is True  # a new attempt
    assert buffer.accept(attempt("ANALYSIS_STARTED", "m1", 2)) is True
    sent += send(buffer, out)
    assert buffer.accept(progress(2, "m1")) is True
    assert buffer.accept(attempt("ANALYSIS_FAILED", "m1", 2)) is True
    sent += send(buffer, out)
    assert [e["event"] for e in sent] == [
        "PROCESSING_FAILED", "PROCESSING_STARTED", "ANALYSIS_QUEUED", "ANALYSIS_STARTED",
        "FRAME_ANALYSIS_PROGRESS", "ANALYSIS_FAILED"]
    buffer.accept(failed("m1"))
    send(buffer, out)
    assert violations(out) == []


def test_the_lost_model_table_is_bounded():
    models = ModelStarts(limit=10)
    for i in range(100):
        models.started(("m", None, f"A{i}"), None, 0)  # dropped starts, never ended
        models.started(("m", None, f"B{i}"), i, i)  # queued starts, never ended
    assert len(models.lost) == 10
    assert list(models.lost)[-1] == ("m", None, "A99")
    models.started(("m", None, "A99"), 100, 99)  # a retry; B99 still waits
    assert ("m", None, "A99") not in models.lost
    assert models.evicted(("m", None, "B99"), 99) is None  # still known: now lost
    assert ("m", None, "B99") in models.lost
