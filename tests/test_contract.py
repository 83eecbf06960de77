"""LifecycleValidator: the lifecycle rules 1-6 of docs/contract.md over streams of events."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from progress_sdk import LifecycleValidator, Report, validate_lines
from progress_sdk import contract as contract_module
from progress_sdk.exceptions import ConfigurationError

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE = "worker-1:100:beef"


class Run:
    """Builds one publisher's events for tests, numbering seq per media like the SDK."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.seq: dict[str, int] = {}

    def add(self, event: str, media: str = "m1", run_id: str | None = "r1", **data: Any) -> Run:
        seq = self.seq[media] = self.seq.get(media, 0) + 1
        ev: dict[str, Any] = {
            "media_id": media, "user_id": "u-1", "event": event, "message": event,
            "data": data, "schema_version": 1, "seq": seq, "source": SOURCE,
            "timestamp": "2026-11-26T05:00:00.000000Z",
        }
        if run_id is not None:
            ev["run_id"] = run_id
        self.events.append(ev)
        return self

    def model(self, name: str, *progress: int, total: int = 10, outcome: str = "ok",
              media: str = "m1") -> Run:
        self.add("ANALYSIS_STARTED", media, model_name=name)
        for done in progress:
            self.add("FRAME_ANALYSIS_PROGRESS", media, model_name=name, progress=done,
                     total=total)
        if outcome == "ok":
            self.add("ANALYSIS_COMPLETED", media, model_name=name, prediction="FAKE",
                     confidence=0.9)
        elif outcome == "failed":
            self.add("ANALYSIS_FAILED", media, model_name=name, error_message="boom")
        return self

    def lines(self) -> list[bytes]:
        return [json.dumps(ev).encode() for ev in self.events]

    def report(self, **kwargs: Any) -> Report:
        return validate_lines(self.lines(), strict=True, **kwargs)


def lines(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()


def rules(report: Report) -> list[str]:
    return [f.rule for f in report.violations]


def good(media: str = "m1") -> Run:
    return (
        Run().add("PROCESSING_STARTED", media, filename="a.mp4")
        .model("SIGLIP-LSTM-V4", 3, 7, 10, media=media)
        .model("LIP-FD-V1", 5, outcome="failed", media=media)
        .add("PROCESSING_COMPLETED", media)
    )


# -- fixtures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["valid_video_multi_model", "valid_audio_phases", "valid_partly_failed", "valid_all_failed"],
)
def test_valid_fixture_passes_strictly(name: str) -> None:
    """Each valid fixture stream keeps every rule, in strict mode."""
    report = validate_lines(lines(f"{name}.ndjson"), strict=True)
    assert report.ok, report.to_text()
    assert (report.violations, report.lost, report.incomplete) == ([], [], [])


@pytest.mark.parametrize("rule", [1, 2, 3, 4, 5, 6])
def test_invalid_fixture_breaks_exactly_its_rule(rule: int) -> None:
    """Each invalid fixture is reported under the one rule it breaks, with line numbers."""
    (path,) = FIXTURES.glob(f"invalid_rule{rule}_*.ndjson")
    report = validate_lines(path.read_bytes().splitlines(), strict=True)
    assert not report.ok
    assert set(report.violations_by_rule) == {f"rule {rule}"}
    assert all(f.position is not None and f.position >= 1 for f in report.violations)
    assert all(f.media_id for f in report.violations)
    assert all("expected" in f.message for f in report.violations)


def test_lost_events_are_reported_apart_from_violations() -> None:
    """A seq gap is counted as lost events, and the stream is still valid."""
    report = validate_lines(lines("lost_events.ndjson"), strict=True)
    assert report.ok
    assert (report.lost_gaps, report.lost_events) == (1, 3)
    assert report.lost[0].count == 3
    assert report.lost[0].source and report.lost[0].media_id == "9b2f0c1e"


def test_crashed_job_is_incomplete_not_a_violation() -> None:
    """A run without a terminal event is listed as incomplete, failing only unless allowed."""
    lines = (FIXTURES / "incomplete_crashed_job.ndjson").read_bytes().splitlines()
    report = validate_lines(lines, strict=True)
    assert not report.ok and report.violation_count == 0
    assert report.incomplete_count == 1
    assert "SIGLIP-LSTM-V4" in report.incomplete[0].message
    assert validate_lines(lines, strict=True, allow_incomplete=True).ok


def test_legacy_producer_is_valid_leniently_only() -> None:
    """Events without the v1 envelope (and the ANALYSIS_COMPLETE alias) pass leniently only."""
    lines = (FIXTURES / "valid_legacy_producer.ndjson").read_bytes().splitlines()
    assert validate_lines(lines).ok
    strict = validate_lines(lines, strict=True)
    assert set(strict.violations_by_rule) == {"event"}
    assert {f.field for f in strict.violations} == {"schema_version", "seq", "source",
                                                     "timestamp"}


# -- one passing and one failing stream per rule --------------------------------------


def test_rule1_repeated_processing_started_is_allowed() -> None:
    """Rule 1: PROCESSING_STARTED may repeat before the terminal event."""
    run = Run().add("PROCESSING_STARTED").model("A").add("PROCESSING_STARTED")
    assert run.model("B").add("PROCESSING_COMPLETED").report().ok


def test_rule1_event_before_processing_started() -> None:
    """Rule 1: an event of a run that never started is a violation, reported once."""
    report = Run().model("A", 1, 2).add("PROCESSING_COMPLETED").report()
    assert rules(report) == ["rule 1"]
    assert report.violations[0].position == 1
    assert report.violations[0].run_id == "r1"


def test_rule1_runs_are_told_apart_by_run_id() -> None:
    """Rule 1: a run_id that never had PROCESSING_STARTED is a run of its own."""
    run = Run().add("PROCESSING_STARTED", run_id="r1").add(
        "ANALYSIS_STARTED", run_id="r2", model_name="A"
    )
    assert rules(run.report(allow_incomplete=True)) == ["rule 1"]


def test_rule1_reanalysis_after_terminal_starts_a_new_run() -> None:
    """Rule 1: PROCESSING_STARTED after a terminal event starts a new run of the same media."""
    run = good()
    run.add("PROCESSING_STARTED").model("A").add("PROCESSING_COMPLETED")
    assert run.report().ok


def test_rule2_queued_model_may_fail_without_starting() -> None:
    """Rule 2: a queued model the job gave up on may go straight to ANALYSIS_FAILED."""
    run = Run().add("PROCESSING_STARTED").add("ANALYSIS_QUEUED", model_name="A")
    run.add("ANALYSIS_FAILED", model_name="A", error_message="aborted")
    assert run.add("PROCESSING_FAILED", error_message="aborted").report().ok


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.add("FRAME_ANALYSIS_PROGRESS", model_name="B", progress=1, total=2),
         "no ANALYSIS_STARTED"),
        (lambda r: r.add("ANALYSIS_COMPLETED", model_name="B"), "never started"),
        (lambda r: r.add("ANALYSIS_COMPLETED", model_name="A"), "after ANALYSIS_COMPLETED"),
        (lambda r: r.add("ANALYSIS_STARTED", model_name="A"), "after ANALYSIS_COMPLETED"),
        (lambda r: r.add("ANALYSIS_QUEUED", model_name="C").add(
            "ANALYSIS_COMPLETED", model_name="C"), "never started"),
    ],
)
def test_rule2_model_order_violations(mutate: Any, expected: str) -> None:
    """Rule 2: model events out of order, or after the model's terminal event, are violations."""
    run = Run().add("PROCESSING_STARTED").model("A")
    mutate(run)
    report = run.report(allow_incomplete=True)
    assert rules(report) == ["rule 2"]
    assert expected in report.violations[0].message
    assert report.violations[0].model_name in {"A", "B", "C"}


def test_rule2_repeated_analysis_started() -> None:
    """Rule 2: a second ANALYSIS_STARTED for a running model is a violation."""
    run = Run().add("PROCESSING_STARTED").add("ANALYSIS_STARTED", model_name="A")
    report = run.add("ANALYSIS_STARTED", model_name="A").report(allow_incomplete=True)
    assert rules(report) == ["rule 2"]


def test_rule3_progress_may_stay_level_per_event_type() -> None:
    """Rule 3: equal progress is fine, and each progress event type has its own counter."""
    run = Run().add("PROCESSING_STARTED").add("ANALYSIS_STARTED", model_name="A")
    steps = [("FRAME_ANALYSIS_PROGRESS", 5, 10), ("FRAME_ANALYSIS_PROGRESS", 5, 10),
             ("VISUALIZATION_GENERATION_PROGRESS", 1, 4)]
    for event, done, total in steps:
        run.add(event, model_name="A", progress=done, total=total)
    run.add("ANALYSIS_COMPLETED", model_name="A").add("PROCESSING_COMPLETED")
    assert run.report().ok


@pytest.mark.parametrize(
    ("second", "expected"), [((4, 10), "decreased from 5/10"), ((6, 12), "total changed")]
)
def test_rule3_progress_decreases_or_total_changes(
    second: tuple[int, int], expected: str
) -> None:
    """Rule 3: progress going back, or a changed total, is a violation naming both values."""
    run = Run().add("PROCESSING_STARTED").add("ANALYSIS_STARTED", model_name="A")
    run.add("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=5, total=10)
    run.add("FRAME_ANALYSIS_PROGRESS", model_name="A", progress=second[0], total=second[1])
    report = run.report(allow_incomplete=True)
    assert rules(report) == ["rule 3"]
    assert expected in report.violations[0].message
    assert report.violations[0].position == 4


def test_rule4_terminal_with_open_model() -> None:
    """Rule 4: the media terminal event before a model's terminal event is a violation."""
    run = Run().add("PROCESSING_STARTED").model("A").add("ANALYSIS_STARTED", model_name="B")
    report = run.add("PROCESSING_COMPLETED").report()
    assert rules(report) == ["rule 4"]
    assert "'B'" in report.violations[0].message or "B had" in report.violations[0].message


@pytest.mark.parametrize("late", ["PROCESSING_COMPLETED", "PROCESSING_FAILED", "ANALYSIS_QUEUED"])
def test_rule4_nothing_after_the_terminal_event(late: str) -> None:
    """Rule 4: a second terminal event, or any event after it, is a violation."""
    run = good()
    run.add(late, model_name="X", error_message="late")
    report = run.report()
    assert rules(report) == ["rule 4"]
    assert "after PROCESSING_COMPLETED at line" in report.violations[0].message


def test_rule5_failed_run_with_no_model() -> None:
    """Rule 5: a job that failed outside any model ends with PROCESSING_FAILED."""
    run = Run().add("PROCESSING_STARTED").add("PROCESSING_FAILED", error_message="bad file")
    assert run.report().ok


@pytest.mark.parametrize("outcomes", [[], ["failed"], ["failed", "failed"]])
def test_rule5_completed_without_a_completed_model(outcomes: list[str]) -> None:
    """Rule 5: PROCESSING_COMPLETED when no model completed is a violation."""
    run = Run().add("PROCESSING_STARTED")
    for i, outcome in enumerate(outcomes):
        run.model(f"M{i}", outcome=outcome)
    report = run.add("PROCESSING_COMPLETED").report()
    assert rules(report) == ["rule 5"]


def test_rule6_sources_and_media_count_separately() -> None:
    """Rule 6: seq is per (source, media_id), so interleaved media each count from 1."""
    a, b = good("m1"), good("m2")
    interleaved = [ev for pair in zip(a.events, b.events, strict=True) for ev in pair]
    report = validate_lines([json.dumps(ev) for ev in interleaved], strict=True)
    assert report.ok and report.lost_gaps == 0


@pytest.mark.parametrize(("seq", "word"), [(3, "repeats"), (2, "decreases")])
def test_rule6_repeated_or_decreasing_seq(seq: int, word: str) -> None:
    """Rule 6: a different event reusing a seq, or a decreasing seq, is a violation."""
    run = good()
    # Another event after progress 3 (seq 3), sent with `seq`: not a copy of seq 3.
    assert run.events[2]["data"]["progress"] == 3
    run.events.insert(3, dict(run.events[2], seq=seq, message="progress again"))
    report = run.report()
    assert rules(report) == ["rule 6"]
    assert word in report.violations[0].message
    assert report.violations[0].source == SOURCE
    assert report.lost_gaps == 0


def test_rule6_gap_is_lost_events() -> None:
    """Rule 6: a gap in seq is reported as lost events with their count."""
    run = good()
    for ev in run.events[4:]:
        ev["seq"] += 5
    report = run.report()
    assert report.ok
    assert [(f.position, f.count) for f in report.lost] == [(5, 5)]


# -- repeats: a publisher's resend after a connection reset ---------------------------------

W = contract_module.REPEAT_WINDOW


def two_media() -> list[bytes]:
    """Two valid runs (m1, m2) interleaved event by event, as one publisher sends them."""
    pairs = zip(good("m1").events, good("m2").events, strict=True)
    return [json.dumps(ev).encode() for pair in pairs for ev in pair]


def test_a_resent_batch_validates_strictly_with_its_events_counted_as_duplicates() -> None:
    """A batch sent again byte for byte after a reset is N duplicates, not violations."""
    lines = two_media()
    # The first eight events (both PROCESSING_STARTEDs, a model start, progress) twice.
    report = validate_lines([*lines[:8], *lines[:8], *lines[8:]], strict=True)
    assert report.ok
    assert report.duplicates == 8
    assert (report.violation_count, report.lost_gaps) == (0, 0)
    assert report.events == len(lines) + 8
    assert report.counts == validate_lines(lines, strict=True).counts  # checked once


def test_a_resent_terminal_event_is_not_an_event_after_the_terminal() -> None:
    """A duplicate does not go through the lifecycle rules again (here rule 4)."""
    lines = good().lines()
    report = validate_lines([*lines, *lines[-2:]], strict=True)
    assert report.ok
    assert report.duplicates == 2


def test_a_changed_event_reusing_a_seq_is_still_a_rule_6_violation() -> None:
    """An event whose seq was seen but whose content differs is a repeat: rule 6."""
    lines = two_media()
    changed = json.loads(lines[7])  # m2's progress 7: its message changes, not its level
    changed["message"] = "not the event first sent with this seq"
    resend = [*lines[2:7], json.dumps(changed).encode()]
    report = validate_lines([*lines[:8], *resend, *lines[8:]], strict=True)
    assert rules(report) == ["rule 6"]
    assert report.violations[0].position == 14
    assert "repeats" in report.violations[0].message
    assert report.duplicates == 5


def test_exact_repeats_are_recognised_among_a_pairs_last_repeat_window_events() -> None:
    """A copy of one of its pair's last REPEAT_WINDOW events is a duplicate; older, rule 6."""
    run = Run().add("PROCESSING_STARTED").model("SIGLIP-LSTM-V4", *[5] * (W + 1), outcome="open")
    sent = len(run.events)  # seq 1 .. W + 3
    run.add("ANALYSIS_COMPLETED", model_name="SIGLIP-LSTM-V4", prediction="REAL", confidence=1)
    lines = run.add("PROCESSING_COMPLETED").lines()
    recent, too_old = lines[sent - W], lines[sent - W - 1]  # seq W + 3 - (W - 1), one before
    report = validate_lines([*lines[:sent], recent, too_old, *lines[sent:]], strict=True)
    assert report.duplicates == 1
    assert rules(report) == ["rule 6"]
    assert report.violations[0].position == sent + 2


def test_decoded_events_are_duplicates_when_their_content_is_equal() -> None:
    """feed(dict) tells a copy (keys in any order) from a different event with the same seq."""
    validator = LifecycleValidator(strict=True)
    events = good().events
    for ev in events[:4]:
        assert validator.feed(ev) == []
    assert validator.feed(dict(reversed(list(events[3].items())))) == []
    findings = validator.feed(dict(events[3], message="another"))
    assert [f.rule for f in findings] == ["rule 6"]
    for ev in events[4:]:
        validator.feed(ev)
    report = validator.finish()
    assert report.duplicates == 1
    assert report.violation_count == 1


def test_duplicates_are_shown_in_the_text_and_json_reports() -> None:
    """The report's text and dict both show the duplicate count."""
    lines = good().lines()
    report = validate_lines([*lines[:3], *lines[1:3], *lines[3:]], strict=True)
    assert "2 duplicates dropped (exact repeats of an event already seen" in report.to_text()
    assert report.to_dict()["duplicates"] == 2
    assert report.to_text().startswith("VALID")


# -- properties ---------------------------------------------------------------------------

MODELS = ["SIGLIP-LSTM-V4", "COLOR-CUES-LSTM-V1", "MEL-SPECTROGRAM-CNN-V3", "LIP-FD-V1"]


@st.composite
def lifecycles(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid interleaved runs of one to three media, each with its models and outcomes."""
    streams = []
    for m in range(draw(st.integers(1, 3))):
        media = f"media-{m}"
        run = Run().add("PROCESSING_STARTED", media)
        models = draw(st.lists(st.sampled_from(MODELS), unique=True, max_size=3))
        if draw(st.booleans()):
            for name in models:
                run.add("ANALYSIS_QUEUED", media, model_name=name)
        completed = 0
        for name in models:
            total = draw(st.integers(1, 50))
            steps = sorted(draw(st.lists(st.integers(0, total), max_size=4)))
            outcome = draw(st.sampled_from(["ok", "failed"]))
            completed += outcome == "ok"
            run.model(name, *steps, total=total, outcome=outcome, media=media)
        if completed:
            run.add("PROCESSING_COMPLETED", media)
        else:
            run.add("PROCESSING_FAILED", media, error_message="every model failed")
        streams.append(run.events)
    # Interleave the media, keeping each one's own order.
    merged: list[dict[str, Any]] = []
    cursors = [0] * len(streams)
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        live = [i for i, s in enumerate(streams) if cursors[i] < len(s)]
        i = draw(st.sampled_from(live))
        merged.append(streams[i][cursors[i]])
        cursors[i] += 1
    return merged


def check(events: list[dict[str, Any]], **kwargs: Any) -> Report:
    return validate_lines([json.dumps(ev) for ev in events], strict=True, **kwargs)


@settings(max_examples=60, deadline=None)
@given(lifecycles())
def test_generated_valid_lifecycles_pass(events: list[dict[str, Any]]) -> None:
    """Any lifecycle built by the rules passes, with nothing lost or left open."""
    report = check(events)
    assert report.ok, report.to_text()
    assert report.lost_gaps == 0


def _terminal_indices(events: list[dict[str, Any]], names: set[str]) -> list[int]:
    return [i for i, ev in enumerate(events) if ev["event"] in names]


@settings(max_examples=40, deadline=None)
@given(lifecycles(), st.data())
def test_dropping_a_terminal_event_is_caught(events: list[dict[str, Any]], data: Any) -> None:
    """Removing a model or media terminal event leaves a violation or an incomplete run."""
    names = {"ANALYSIS_COMPLETED", "ANALYSIS_FAILED", "PROCESSING_COMPLETED", "PROCESSING_FAILED"}
    i = data.draw(st.sampled_from(_terminal_indices(events, names)))
    del events[i]
    assert not check(events).ok


@settings(max_examples=40, deadline=None)
@given(lifecycles(), st.data())
def test_repeating_a_seq_is_caught(events: list[dict[str, Any]], data: Any) -> None:
    """Giving an event the seq of the one before it breaks rule 6, unless that makes a copy."""
    later = [i for i, ev in enumerate(events) if ev["seq"] > 1]
    i = data.draw(st.sampled_from(later))
    media, seq = events[i]["media_id"], events[i]["seq"] - 1
    before = next(ev for ev in events if ev["media_id"] == media and ev["seq"] == seq)
    events[i] = dict(events[i], seq=seq)
    report = check(events)
    if events[i] == before:  # two equal progress steps: now a resend of the first
        assert report.ok and report.duplicates == 1
    else:
        assert "rule 6" in report.violations_by_rule


@settings(max_examples=40, deadline=None)
@given(lifecycles(), st.data())
def test_moving_an_event_after_the_terminal_is_caught(
    events: list[dict[str, Any]], data: Any
) -> None:
    """Moving a model event of a media past its media terminal event is a violation."""
    movable = [i for i, ev in enumerate(events) if ev["data"].get("model_name")]
    assume(movable)
    i = data.draw(st.sampled_from(movable))
    ev = events.pop(i)
    end = next(j for j, e in enumerate(events)
               if e["media_id"] == ev["media_id"] and e["event"].startswith("PROCESSING_")
               and e["event"] != "PROCESSING_STARTED")
    events.insert(end + 1, ev)
    report = check(events)
    assert not report.ok
    assert report.violations_by_rule.get("rule 4", 0) >= 1


@settings(max_examples=40, deadline=None)
@given(lifecycles(), st.data())
def test_reordering_started_after_progress_is_caught(
    events: list[dict[str, Any]], data: Any
) -> None:
    """Swapping ANALYSIS_STARTED with the model's next event breaks rule 2 (and seq order)."""
    starts = [
        i for i, ev in enumerate(events)
        if ev["event"] == "ANALYSIS_STARTED"
    ]
    assume(starts)
    i = data.draw(st.sampled_from(starts))
    name = events[i]["data"]["model_name"]
    j = next(j for j in range(i + 1, len(events))
             if events[j]["data"].get("model_name") == name
             and events[j]["media_id"] == events[i]["media_id"])
    events[i], events[j] = events[j], events[i]
    report = check(events)
    assert "rule 2" in report.violations_by_rule


@settings(max_examples=40, deadline=None)
@given(lifecycles(), st.data())
def test_decreasing_progress_is_caught(events: list[dict[str, Any]], data: Any) -> None:
    """Lowering a progress value below the previous one of its model breaks rule 3."""
    seen: dict[tuple[str, str], int] = {}
    candidates = []
    for i, ev in enumerate(events):
        if ev["event"] == "FRAME_ANALYSIS_PROGRESS":
            key = (ev["media_id"], ev["data"]["model_name"])
            if seen.get(key, 0) > 0:
                candidates.append((i, seen[key]))
            seen[key] = ev["data"]["progress"]
    assume(candidates)
    i, previous = data.draw(st.sampled_from(candidates))
    events[i] = dict(events[i], data=dict(events[i]["data"], progress=previous - 1))
    assert "rule 3" in check(events).violations_by_rule


# -- malformed input ------------------------------------------------------------------------

MALFORMED = [
    (b"not json at all", "json", None),
    (b"[1, 2, 3]", "event", "$"),
    (b"42", "event", "$"),
    (b"null", "event", "$"),
    (b'"a string"', "event", "$"),
    (b"\xff\xfe\x00garbage", "json", None),
    (b'{"media_id": "\xc3\x28"}', "json", None),
    (b"[" * 100_000 + b"]" * 100_000, "event", "$"),  # too large to parse
    (b"[" * 30_000 + b"]" * 30_000, "json", None),  # nested too deeply
    (b'{"x": NaN}', "json", None),
    (b'{"media_id":"m","user_id":"u","event":"NOPE","message":"","data":{}}', "event", "event"),
    (b"{} trailing", "json", None),
]


@pytest.mark.parametrize(("line", "rule", "field"), MALFORMED)
def test_malformed_line_is_a_line_numbered_finding(
    line: bytes, rule: str, field: str | None
) -> None:
    """Every malformed line gives a finding with its line number; nothing raises."""
    report = validate_lines([b"", line])
    assert not report.ok
    first = report.violations[0]
    assert (first.rule, first.field, first.position) == (rule, field, 2)
    assert str(first).startswith("line 2: ")


def test_ten_megabyte_line_is_reported_without_parsing() -> None:
    """A 10 MB line is one size finding, however it is fed."""
    big = b'{"message": "' + b"x" * 10_000_000 + b'"}'
    for raw in (big, big.decode()):
        findings = LifecycleValidator().feed(raw, 9)
        assert [(f.rule, f.check, f.position) for f in findings] == [("event", "max_size", 9)]


def test_wrong_types_in_every_field_each_get_a_finding() -> None:
    """An event with a wrong type in every field names each field in its own finding."""
    ev = {"media_id": 1, "user_id": [], "event": 3, "message": {}, "data": "x",
          "schema_version": "1", "seq": "2", "source": 4, "timestamp": 5, "run_id": 6}
    findings = LifecycleValidator(strict=True).feed(json.dumps(ev).encode(), 1)
    assert {f.field for f in findings} == set(ev)
    assert all(f.position == 1 for f in findings)


def test_hostile_identities_are_escaped_in_text() -> None:
    """Control characters and lone surrogates in ids cannot break the text report."""
    ev = {"media_id": "a\nb\x1b[31m\ud800", "user_id": "u", "event": "ANALYSIS_STARTED",
          "message": "", "data": {"model_name": "A"}}
    validator = LifecycleValidator()
    validator.feed(ev)
    report = validator.finish()
    text = report.to_text()
    text.encode("utf-8")  # no lone surrogate left in it
    assert "a\\nb\\x1b[31m\\ud800" in text
    json.dumps(report.to_dict())


# -- API and memory -------------------------------------------------------------------------


def test_feed_accepts_dicts_and_counts_positions() -> None:
    """feed takes decoded dicts too, and numbers events itself when no position is given."""
    validator = LifecycleValidator()
    for ev in Run().model("A").events:
        validator.feed(ev)
    report = validator.finish()
    assert [f.position for f in report.violations] == [1]
    assert report.events == 2
    assert report.counts == {"ANALYSIS_STARTED": 1, "ANALYSIS_COMPLETED": 1}


def test_finish_is_a_snapshot() -> None:
    """finish() can be called again after more events: a run closed later is no longer open."""
    validator = LifecycleValidator()
    run = good()
    for ev in run.events[:-1]:
        validator.feed(ev)
    assert validator.finish().incomplete_count == 1
    validator.feed(run.events[-1])
    assert validator.finish().ok


def test_report_to_dict_is_json() -> None:
    """to_dict holds the verdict, counts and findings, and serialises as JSON."""
    path = FIXTURES / "invalid_rule3_progress_decreases.ndjson"
    data = json.loads(json.dumps(validate_lines(path.read_bytes().splitlines()).to_dict()))
    assert data["ok"] is False
    assert data["violations_by_rule"] == {"rule 3": 1}
    assert data["violations"][0]["position"] == 7
    assert data["counts"]["FRAME_ANALYSIS_PROGRESS"] == 10


def test_memory_after_runs_end_is_bounded() -> None:
    """Finished runs and seq counters are kept in bounded tables; findings are capped."""
    validator = LifecycleValidator(max_finished_runs=5, max_sequences=7, max_findings=3)
    for m in range(50):
        for ev in good(f"m{m}").events:
            validator.feed(ev)
    for _ in range(10):
        validator.feed(b"nope")
    sizes = validator.sizes()
    assert (sizes.open_runs, sizes.finished_runs, sizes.sequences) == (0, 5, 7)
    report = validator.finish()
    assert (len(report.violations), report.violation_count) == (3, 10)
    assert "and 7 more" in report.to_text()


def started(media: str) -> dict[str, Any]:
    """A PROCESSING_STARTED of ``media`` (lenient: no envelope)."""
    return {"media_id": media, "user_id": "u-1", "event": "PROCESSING_STARTED",
            "message": "go", "data": {}}


def test_open_runs_are_bounded_and_the_forgotten_reported_incomplete() -> None:
    """Runs that never end are forgotten past max_open_runs and still counted as incomplete."""
    validator = LifecycleValidator(max_open_runs=3, max_finished_runs=2, max_findings=10)
    for m in range(10):
        assert validator.feed(started(f"m{m}")) == []
    sizes = validator.sizes()
    assert (sizes.open_runs, sizes.forgotten_runs) == (3, 2)
    report = validator.finish()
    assert report.incomplete_count == 10
    assert [f.media_id for f in report.incomplete] == [f"m{m}" for m in range(10)]
    assert all("forgotten" in f.message for f in report.incomplete[:7])
    assert not any("forgotten" in f.message for f in report.incomplete[7:])


def test_the_least_recently_seen_open_run_is_forgotten_first() -> None:
    """An event keeps its run open; the run quiet for longest goes first."""
    validator = LifecycleValidator(max_open_runs=2)
    run = Run()
    run.add("PROCESSING_STARTED", "a").add("PROCESSING_STARTED", "b")
    run.add("ANALYSIS_STARTED", "a", model_name="M")
    run.add("PROCESSING_STARTED", "c")  # b is forgotten, not a
    run.add("FRAME_ANALYSIS_PROGRESS", "a", model_name="M", progress=5, total=10)
    run.add("FRAME_ANALYSIS_PROGRESS", "a", model_name="M", progress=4, total=10)
    findings = [f for ev in run.events for f in validator.feed(ev)]
    assert [(f.rule, f.media_id) for f in findings] == [("rule 3", "a")]
    incomplete = validator.finish().incomplete
    assert sorted((f.media_id, "forgotten" in f.message) for f in incomplete) == [
        ("a", False), ("b", True), ("c", False),
    ]


def test_a_forgotten_run_that_ends_is_no_longer_incomplete() -> None:
    """Events of a forgotten run are no violation; its terminal event closes it."""
    validator = LifecycleValidator(max_open_runs=1)
    run = Run()
    run.add("PROCESSING_STARTED", "a").add("ANALYSIS_STARTED", "a", model_name="M")
    run.add("PROCESSING_STARTED", "b")  # a is forgotten
    run.add("ANALYSIS_COMPLETED", "a", model_name="M", prediction="FAKE", confidence=0.9)
    run.add("PROCESSING_COMPLETED", "a")
    findings = [f for ev in run.events for f in validator.feed(ev)]
    assert findings == []
    report = validator.finish()
    assert [f.media_id for f in report.incomplete] == ["b"]
    # The run ended: a later event of it breaks rule 4 as for any finished run.
    late = Run()
    late.seq["a"] = 4
    late.add("PROCESSING_FAILED", "a", error_message="again")
    assert [f.rule for f in validator.feed(late.events[0])] == ["rule 4"]


def test_open_runs_stay_bounded_over_a_long_stream() -> None:
    """A listener fed 20,000 runs that never end keeps at most max_open_runs of them."""
    validator = LifecycleValidator(max_open_runs=100, max_finished_runs=100, max_findings=5)
    for m in range(20_000):
        validator.feed(started(f"m{m}"))
    sizes = validator.sizes()
    assert 100 - 100 // 16 < sizes.open_runs <= 100  # forgotten a sixteenth at a time
    assert sizes.forgotten_runs == 100
    report = validator.finish()
    assert report.incomplete_count == 20_000
    assert len(report.incomplete) == 5


def test_default_bounds_are_documented_constants() -> None:
    """The default bounds are the module constants the docs name."""
    validator = LifecycleValidator()
    assert validator.max_finished_runs == contract_module.MAX_FINISHED_RUNS
    assert validator.max_open_runs == contract_module.MAX_OPEN_RUNS
    assert validator.max_sequences == contract_module.MAX_SEQUENCES
    assert validator.max_findings == contract_module.MAX_FINDINGS


def validated_with(lines: list[bytes], strict: bool, **options: Any) -> Report:
    """What validate_lines reports, from a validator made with ``options``."""
    validator = LifecycleValidator(strict, **options)
    for number, line in enumerate(lines, start=1):
        if line and not line.isspace():
            validator.feed(line, number)
    return validator.finish()


@pytest.mark.parametrize("json_decoder", ["stdlib", "orjson"])
def test_both_json_decoders_agree_on_typical_input(json_decoder: str) -> None:
    """The standard-library decoder and orjson (when installed) give the same findings."""
    if json_decoder == "orjson":
        pytest.importorskip("orjson")
    lines = [b"  {}  ", b"{}x", b"", b"\xef\xbb\xbf{}", b'{"a": Infinity}',
             *good().lines()]
    report = validated_with(lines, True, json_decoder=json_decoder)
    assert [(f.position, f.rule) for f in report.violations if f.rule == "json"] == [
        (2, "json"), (4, "json"), (5, "json"),
    ]
    # Line 1, {}, misses the five required fields and the four of the strict envelope.
    assert report.violations_by_rule["event"] == 9


def test_the_json_decoder_chosen_is_the_one_used() -> None:
    """At their one documented difference, a lone surrogate escape, each decoder answers
    as itself: Python's json reads it, orjson refuses it."""
    pytest.importorskip("orjson")
    line = Run().add("PROCESSING_STARTED", filename="\ud800.mp4").lines()[0]
    assert b"\\ud800" in line
    stdlib = LifecycleValidator(json_decoder="stdlib")
    assert stdlib.feed(line) == []
    assert [f.rule for f in LifecycleValidator(json_decoder="orjson").feed(line)] == ["json"]
    assert stdlib.json_decoder == "stdlib"


def test_an_unknown_json_decoder_is_refused() -> None:
    """A decoder name the validator does not know raises ConfigurationError naming them."""
    with pytest.raises(ConfigurationError, match="'auto', 'orjson' or 'stdlib'"):
        LifecycleValidator(json_decoder="simdjson")  # type: ignore[arg-type]


def _shuffled_stream(seed: int) -> list[bytes]:
    """Fixture lines, picked at random and bent: every rule gets broken somewhere."""
    lines = [
        line
        for path in sorted((Path(__file__).parent / "fixtures").glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]
    rng = random.Random(seed)
    picked = [rng.choice(lines) for _ in range(400)]
    out = []
    for line in picked:
        obj = json.loads(line)
        data = obj.get("data")
        if isinstance(data, dict) and "progress" in data and rng.random() < 0.3:
            data["progress"] = rng.randint(0, data.get("total", 1) or 1)
            if rng.random() < 0.2:
                data["total"] = data.get("total", 1) + 1
        if "seq" in obj and rng.random() < 0.3:
            obj["seq"] = rng.randint(1, 40)
        out.append(json.dumps(obj).encode())
    return out


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("strict", [False, True])
def test_accepted_events_shortcut_reports_what_the_general_path_does(
    seed: int, strict: bool
) -> None:
    """feed's shortcut for fast-accepted events finds exactly what its general path finds
    (the same validator with ``fast_path=False``)."""
    lines = _shuffled_stream(seed)
    fast = validate_lines(lines, strict).to_dict()
    general = validated_with(lines, strict, fast_path=False).to_dict()
    assert fast == general
    assert fast["violation_count"] > 0
    assert fast["duplicates"] > 0  # fixture lines picked twice: exact repeats
