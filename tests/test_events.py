"""ProgressEvent, parse_event and _rules.check_event: the per-event rules of the v1 contract."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from progress_sdk import (
    EventType,
    InvalidEventError,
    ProgressEvent,
    _fast_accept,
    _rules,
    parse_event,
)
from progress_sdk import _validate as validate_module
from progress_sdk._timestamps import parse_timestamp
from progress_sdk.event_types import ALL_EVENT_NAMES, normalize_event_name

ENVELOPE = {
    "schema_version": 1,
    "seq": 7,
    "source": "worker-3:4711:a8f2",
    "timestamp": "2026-11-26T05:00:00.123456Z",
    "run_id": "run-0007",
}


def example(event: str, **data: Any) -> dict[str, Any]:
    """A valid v1 event of type ``event`` with ``data``."""
    return {
        "media_id": "9b2f0c1e",
        "user_id": "u-17",
        "event": event,
        "message": f"{event} happened",
        "data": data,
        **ENVELOPE,
    }


M = "SIGLIP-LSTM-V4"
VALID: dict[str, dict[str, Any]] = {
    "PROCESSING_STARTED": example("PROCESSING_STARTED", filename="interview.mp4"),
    "PROCESSING_COMPLETED": example("PROCESSING_COMPLETED"),
    "PROCESSING_FAILED": example("PROCESSING_FAILED", error_message="could not decode video"),
    "ANALYSIS_QUEUED": example("ANALYSIS_QUEUED", model_name=M),
    "ANALYSIS_STARTED": example("ANALYSIS_STARTED", model_name=M),
    "FRAME_ANALYSIS_PROGRESS": example(
        "FRAME_ANALYSIS_PROGRESS", model_name=M, progress=150, total=300, phase="frames"
    ),
    "WINDOW_PROCESSING_PROGRESS": example(
        "WINDOW_PROCESSING_PROGRESS", model_name="MEL-SPECTROGRAM-CNN-V3", progress=0, total=48
    ),
    "VISUALIZATION_GENERATION_PROGRESS": example(
        "VISUALIZATION_GENERATION_PROGRESS", model_name=M, progress=4, total=4
    ),
    "AUDIO_EXTRACTION_START": example("AUDIO_EXTRACTION_START", model_name="SCATTERING-WAVE-V1"),
    "AUDIO_EXTRACTION_COMPLETE": example(
        "AUDIO_EXTRACTION_COMPLETE", model_name="SCATTERING-WAVE-V1"
    ),
    "SPECTROGRAM_GENERATION_START": example(
        "SPECTROGRAM_GENERATION_START", model_name="STFT-SPECTROGRAM-CNN-V3"
    ),
    "SPECTROGRAM_GENERATION_COMPLETE": example(
        "SPECTROGRAM_GENERATION_COMPLETE", model_name="STFT-SPECTROGRAM-CNN-V3"
    ),
    "ANALYSIS_COMPLETED": example(
        "ANALYSIS_COMPLETED", model_name=M, prediction="FAKE", confidence=0.93,
        details={"frames": 300},
    ),
    "ANALYSIS_FAILED": example("ANALYSIS_FAILED", model_name=M, error_message="CUDA OOM"),
}


def _drop(key: str) -> Any:
    def change(ev: dict[str, Any]) -> None:
        ev["data"].pop(key)
    return change


def _set(key: str, value: Any) -> Any:
    def change(ev: dict[str, Any]) -> None:
        ev["data"][key] = value
    return change


# One broken example per event type: (type, change, field named, rule named).
INVALID = [
    ("PROCESSING_STARTED", lambda ev: ev.update(user_id=""), "user_id", "non_empty"),
    ("PROCESSING_COMPLETED", lambda ev: ev.update(media_id="m" * 129), "media_id", "max_length"),
    ("PROCESSING_FAILED", _drop("error_message"), "data.error_message", "required"),
    ("ANALYSIS_QUEUED", _drop("model_name"), "data.model_name", "required"),
    ("ANALYSIS_STARTED", _set("model_name", "  "), "data.model_name", "non_empty"),
    ("FRAME_ANALYSIS_PROGRESS", _set("progress", 301), "data.progress", "bounds"),
    ("WINDOW_PROCESSING_PROGRESS", _set("total", 0), "data.total", "positive"),
    ("VISUALIZATION_GENERATION_PROGRESS", _drop("total"), "data.total", "required"),
    ("AUDIO_EXTRACTION_START", _set("model_name", 3), "data.model_name", "type"),
    ("AUDIO_EXTRACTION_COMPLETE", _set("phase", "p" * 65), "data.phase", "max_length"),
    ("SPECTROGRAM_GENERATION_START", _set("details", [1]), "data.details", "type"),
    ("SPECTROGRAM_GENERATION_COMPLETE", _set("progress", True), "data.progress", "type"),
    ("ANALYSIS_COMPLETED", _set("confidence", 1.5), "data.confidence", "bounds"),
    ("ANALYSIS_FAILED", _set("error_message", ""), "data.error_message", "non_empty"),
]


def test_every_event_type_has_valid_and_invalid_examples() -> None:
    """The examples below cover every event type of the contract."""
    assert set(VALID) == {e.value for e in EventType}
    assert {t for t, *_ in INVALID} == {e.value for e in EventType}


@pytest.mark.parametrize("event", sorted(VALID))
def test_valid_example_builds_and_parses_strictly(event: str) -> None:
    """A valid event builds as a ProgressEvent and parses strictly, unchanged on the wire."""
    ev = VALID[event]
    built = ProgressEvent(**ev)
    assert built.event is EventType(event)
    parsed = parse_event(json.dumps(ev).encode(), strict=True)
    assert parsed == built
    assert json.loads(parsed.to_json_bytes()) == ev


@pytest.mark.parametrize("event", sorted(VALID))
def test_valid_example_without_envelope_is_lenient_only(event: str) -> None:
    """Without the v1 envelope an event parses leniently and fails strictly, naming each field."""
    ev = {k: v for k, v in VALID[event].items() if k not in _rules.ENVELOPE_V1_FIELDS}
    assert parse_event(ev).event is EventType(event)
    with pytest.raises(InvalidEventError) as info:
        parse_event(ev, strict=True)
    assert {p.field for p in info.value.problems} == set(_rules.ENVELOPE_V1_FIELDS)
    assert {p.rule for p in info.value.problems} == {"required"}


@pytest.mark.parametrize(("event", "change", "field", "rule"), INVALID)
def test_invalid_example_names_field_and_rule(
    event: str, change: Any, field: str, rule: str
) -> None:
    """An invalid event is refused by the model, parse_event and check_event alike, naming why."""
    ev = copy.deepcopy(VALID[event])
    change(ev)
    for strict in (False, True):
        with pytest.raises(InvalidEventError) as info:
            parse_event(json.dumps(ev), strict=strict)
        assert (field, rule) in {(p.field, p.rule) for p in info.value.problems}
        assert field in str(info.value)
    with pytest.raises(InvalidEventError) as built:
        ProgressEvent(**ev)
    assert field in {p.field for p in built.value.problems}
    _, problems = _rules.check_event(ev, strict=False)
    assert (field, rule) in {(p.field, p.rule) for p in problems}


def test_completed_alias_is_read_as_analysis_completed() -> None:
    """ANALYSIS_COMPLETE from other producers reads as ANALYSIS_COMPLETED."""
    ev = dict(VALID["ANALYSIS_COMPLETED"], event="ANALYSIS_COMPLETE")
    assert parse_event(ev, strict=True).event is EventType.ANALYSIS_COMPLETED
    assert _rules.check_event(ev) == ("ANALYSIS_COMPLETED", [])


@pytest.mark.parametrize(
    ("raw", "field", "rule"),
    [
        (b"not json", "$", "json"),
        (b"[1, 2]", "$", "type"),
        (b"42", "$", "type"),
        (b"\xff\xfe{}", "$", "json"),
        (b'{"event": "NOT_A_TYPE"}', "event", "known_type"),
        (b" " * (65 * 1024), "$", "max_size"),
    ],
)
def test_parse_event_refuses_malformed_input(raw: bytes, field: str, rule: str) -> None:
    """parse_event turns malformed input into an InvalidEventError naming the problem."""
    with pytest.raises(InvalidEventError) as info:
        parse_event(raw)
    assert (field, rule) in {(p.field, p.rule) for p in info.value.problems}


def test_strict_timestamp_must_be_utc() -> None:
    """Strict mode refuses a timestamp with a non-UTC offset that lenient mode accepts."""
    ev = dict(VALID["ANALYSIS_STARTED"], timestamp="2026-11-26T07:00:00+02:00")
    assert _rules.check_event(ev, strict=False)[1] == []
    assert [(p.field, p.rule) for p in _rules.check_event(ev, strict=True)[1]] == [
        ("timestamp", "utc")
    ]


# -- differential tests -------------------------------------------------------------------

# Values chosen to sit on either side of each rule: right and wrong types, bounds, blanks.
STRINGS = st.sampled_from(
    ["x", "SIGLIP-LSTM-V4", "", " ", "\t", "\x1c", "a" * 129, "a" * 2001, "é"]
)
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 400), st.floats(allow_nan=True), STRINGS,
    st.just([]), st.just({}), st.just({"k": 1}),
    # Either side of the 64-bit range readers take (defaults.MAX_JSON_INT).
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400]),
)
TIMESTAMPS = st.sampled_from(
    ["2026-11-26T05:00:00.123456Z", "2026-11-26T05:00:00+00:00", "2026-11-26T07:00:00+02:00",
     "yesterday", "2026-13-01T00:00:00Z", "2026-11-26T05:00:00", "1700000000"]
)
EVENT_NAMES = st.sampled_from([*sorted(ALL_EVENT_NAMES), "ANALYSIS_COMPLETE", "NOPE"])


@st.composite
def near_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with a few fields replaced by boundary or wrongly typed values."""
    name = draw(EVENT_NAMES)
    base = copy.deepcopy(VALID.get(normalize_event_name(name), VALID["ANALYSIS_STARTED"]))
    base["event"] = name
    fields = ["media_id", "user_id", "message", "seq", "source", "run_id", "schema_version"]
    for key in draw(st.lists(st.sampled_from(fields), max_size=3)):
        base[key] = draw(ANY_VALUE)
    data_keys = ["model_name", "progress", "total", "phase", "prediction", "confidence",
                 "error_message", "filename", "details"]
    for key in draw(st.lists(st.sampled_from(data_keys), max_size=3)):
        base["data"][key] = draw(ANY_VALUE)
    if draw(st.booleans()):
        base["timestamp"] = draw(TIMESTAMPS)
    for key in draw(st.lists(st.sampled_from(list(_rules.ENVELOPE_V1_FIELDS)), max_size=2)):
        base.pop(key, None)
    return base


def _model_accepts(obj: dict[str, Any]) -> bool:
    try:
        ProgressEvent.model_validate(obj)
    except (InvalidEventError, ValidationError):
        return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_events())
def test_check_event_agrees_with_the_pydantic_model(obj: dict[str, Any]) -> None:
    """check_event (lenient) and ProgressEvent accept exactly the same events."""
    _, problems = _rules.check_event(obj, strict=False)
    assert (problems == []) == _model_accepts(obj), problems


@settings(max_examples=300, deadline=None)
@given(near_events(), st.booleans())
def test_fast_path_only_accepts_what_the_full_checks_accept(
    obj: dict[str, Any], strict: bool
) -> None:
    """The fast path of check_event never accepts an event the full checks refuse."""
    accepted = _fast_accept.fast_accept(obj, strict)
    if accepted is not None:
        full = _rules.check_event(obj, strict=strict, fast=False)
        assert full == (accepted, [])


# What free-form JSON (data.details, unknown keys) may hold, the forbidden often.
FREE_VALUES = st.sampled_from(
    [0, 1.5, "text", None, True, [1, [2]], float("inf"), float("-inf"), float("nan"),
     object(), {1: "not a str key"}, "x" * 70_000, 2**63 - 1, 2**63, -(2**63) - 1, 10**400]
)


def _emit_outcome(check: Any, obj: dict[str, Any]) -> object:
    try:
        return check(copy.deepcopy(obj))
    except InvalidEventError as exc:
        return ("refused", [(p.field, p.rule) for p in exc.problems])


@settings(max_examples=400, deadline=None)
@given(near_events(), st.booleans(), st.sampled_from(["", "details", "top"]), FREE_VALUES)
def test_emit_s_fast_path_gives_what_its_full_checks_give(
    obj: dict[str, Any], without_envelope: bool, free_at: str, free: object
) -> None:
    """emit() decides a plain dict in one pass when it is certainly valid; what it accepts
    that way is exactly what the general path returns (envelope keys and free-form JSON
    included), and anything else goes to the general path."""
    if without_envelope:  # what emit() is given: the publisher sets these
        for key in _rules.ENVELOPE_V1_FIELDS:
            obj.pop(key, None)
    if free_at == "details" and isinstance(obj.get("data"), dict):
        obj["data"]["details"] = {"x": free}
    elif free_at == "top":
        obj["x_custom"] = [free]
    fast = validate_module.certainly_valid_fields(copy.deepcopy(obj))
    full = _emit_outcome(validate_module.checked_fields, obj)
    if fast is not None:
        assert fast == full
    assert _emit_outcome(validate_module.validated_fields, obj) == full


@pytest.mark.parametrize("event", sorted(VALID))
def test_fast_path_accepts_typical_valid_events(event: str) -> None:
    """Typical valid events take the fast path (a regression here costs validator speed)."""
    assert _fast_accept.fast_accept(VALID[event], True) == event


# -- the fast path's remembered verdicts --------------------------------------------------

KNOWN_SECOND = "2026-11-26T05:00:00."


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        # Same second as a timestamp already accepted, anything after it.
        st.text(alphabet="0123456789Zz+-:. \n\u0660\u0661\u00b2\u0969", max_size=12).map(
            lambda tail: KNOWN_SECOND + tail
        ),
        st.sampled_from(
            [
                KNOWN_SECOND + "123456Z",
                KNOWN_SECOND + "12345\u0666Z",  # ARABIC-INDIC DIGIT SIX: isdigit, not ASCII
                KNOWN_SECOND + "12345\u00b2Z",  # SUPERSCRIPT TWO: isdigit, not a digit
                KNOWN_SECOND + "123456z",
                KNOWN_SECOND + "1234567Z",
                KNOWN_SECOND + "12345Z",
                KNOWN_SECOND + "+23456Z",
                KNOWN_SECOND + " 23456Z",
                KNOWN_SECOND + "123456+",
                "2026-02-30T05:00:00.123456Z",  # a day that does not exist
                "2026-11-26T24:00:00.123456Z",
                "2026-11-26T05:00:60.123456Z",
                "2026-11-26T05:00:00.123456+02:00",
            ]
        ),
    ),
    st.booleans(),
)
def test_remembered_seconds_accept_only_what_parse_timestamp_accepts(
    timestamp: str, strict: bool
) -> None:
    """A timestamp whose second is remembered is still checked in full format and zone."""
    assert _fast_accept.fast_accept(VALID["ANALYSIS_STARTED"], strict) is not None  # remember it
    assert KNOWN_SECOND in _fast_accept._KNOWN_SECONDS
    obj = dict(VALID["ANALYSIS_STARTED"], timestamp=timestamp)
    accepted = _fast_accept.fast_accept(obj, strict)
    full = _rules.check_event(obj, strict=strict, fast=False)
    if accepted is not None:
        assert full == (accepted, [])
    parsed = parse_timestamp(timestamp)
    if parsed is None:
        assert accepted is None


def test_remembered_seconds_only_come_from_valid_canonical_timestamps() -> None:
    """Only seconds of timestamps parse_timestamp accepted, in the canonical form, are kept."""
    _fast_accept._KNOWN_SECONDS.clear()
    for bad in ("2026-02-30T05:00:00.123456Z", "2026-11-26T05:00:00.123456+02:00"):
        obj = dict(VALID["ANALYSIS_STARTED"], timestamp=bad)
        assert _fast_accept.fast_accept(obj, True) is None
    # Valid, but not canonical: accepted without being remembered.
    for odd in ("2026-11-26T05:00:01+00:00", "2026-11-26 05:00:02.123456Z"):
        obj = dict(VALID["ANALYSIS_STARTED"], timestamp=odd)
        assert _fast_accept.fast_accept(obj, True) == "ANALYSIS_STARTED"
    assert not _fast_accept._KNOWN_SECONDS
    obj = dict(VALID["ANALYSIS_STARTED"], timestamp="2026-11-26T05:00:03.000001Z")
    assert _fast_accept.fast_accept(obj, True) == "ANALYSIS_STARTED"
    assert sorted(_fast_accept._KNOWN_SECONDS) == ["2026-11-26T05:00:03."]
    obj["timestamp"] = "2026-11-26T05:00:03.999999Z"
    assert _fast_accept.fast_accept(obj, True) == "ANALYSIS_STARTED"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phase", "p" * 65),  # remembered as a valid media_id (128), too long for a phase
        ("phase", " "),
        ("model_name", "\x1c"),
        ("source", ""),
    ],
)
def test_remembered_ids_do_not_widen_other_fields(field: str, value: str) -> None:
    """A string seen valid in one field is not accepted where that field's rules differ."""
    _fast_accept.fast_accept(dict(VALID["ANALYSIS_STARTED"], media_id=value), True)
    assert value not in _fast_accept._KNOWN_IDS
    obj = copy.deepcopy(VALID["FRAME_ANALYSIS_PROGRESS"])
    if field in obj["data"]:
        obj["data"][field] = value
    else:
        obj[field] = value
    assert _fast_accept.fast_accept(obj, True) is None


def test_remembered_ids_require_an_exact_str() -> None:
    """A str subclass equal to a remembered string is left to the full checks."""

    class Shouty(str):
        __slots__ = ()

    assert _fast_accept.fast_accept(VALID["ANALYSIS_STARTED"], True) is not None
    assert "9b2f0c1e" in _fast_accept._KNOWN_IDS
    obj = dict(VALID["ANALYSIS_STARTED"], media_id=Shouty("9b2f0c1e"))
    assert _fast_accept.fast_accept(obj, True) is None
    assert _rules.check_event(obj, strict=True) == ("ANALYSIS_STARTED", [])


def test_remembered_verdicts_are_bounded() -> None:
    """The tables of remembered strings and seconds never grow past their bounds."""
    for n in range(_fast_accept._KNOWN_IDS_MAX + 10):
        obj = dict(
            VALID["ANALYSIS_STARTED"],
            media_id=f"media-{n}",
            timestamp=f"2026-11-26T05:{n // 60 % 60:02d}:{n % 60:02d}.000000Z"
            if n < 3600
            else f"2026-11-27T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000000Z",
        )
        assert _fast_accept.fast_accept(obj, True) == "ANALYSIS_STARTED"
        assert len(_fast_accept._KNOWN_IDS) <= _fast_accept._KNOWN_IDS_MAX
        assert len(_fast_accept._KNOWN_SECONDS) <= _fast_accept._KNOWN_SECONDS_MAX
