"""What the publisher accepts, every consumer reads: a differential test against the relay.

The publisher's checks (emit's fast and full paths, the tracking API lenient and strict)
are held to the relay's decoder (orjson) and its per-event rules (``EventRouter.route``):
whatever goes out decodes to the same values, with integers still integers, and is
routed, not dropped. Inputs lean on what broke readers: integers past 64 bits (orjson
reads them as lossy floats, or refuses the event past ~1e308), NaN and infinities, deep
nesting, non-string keys, lone surrogates, subclasses of the JSON types.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from progress_sdk import InvalidEventError
from progress_sdk.testing import CapturingPublisher
from simulator.relay.routing import EventRouter
from simulator.relay.stats import RelayStats

BOUNDARY_INTS = [
    2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**400,
    -(10**400), 10**1000,
]


class Level(enum.IntEnum):
    HIGH = 2**70


class Text(str):
    """A str subclass, as some libraries hand out."""


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(BOUNDARY_INTS),
    st.floats(),  # NaN and both infinities included
    st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, 1e300]),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "é", Text("sub"), Level.HIGH]),
)
KEYS = st.one_of(st.text(max_size=5), st.integers(), st.none(), st.booleans())


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(KEYS, children, max_size=4),
    )


FREE = st.recursive(LEAVES, _containers, max_leaves=12)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


DEEP = st.integers(1, 80).map(_nested)  # past MAX_JSON_DEPTH (64) too


NUMBERS = st.one_of(st.integers(-3, 5), st.sampled_from(BOUNDARY_INTS), st.floats())


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly valid event whose free-form values and numbers vary."""
    kind = draw(
        st.sampled_from(["ANALYSIS_COMPLETED", "FRAME_ANALYSIS_PROGRESS", "PROCESSING_STARTED"])
    )
    data: dict[str, Any] = {}
    if kind != "PROCESSING_STARTED":
        data["model_name"] = "A"
    if kind == "FRAME_ANALYSIS_PROGRESS":
        data["progress"], data["total"] = draw(NUMBERS), draw(NUMBERS)
    if kind == "ANALYSIS_COMPLETED" and draw(st.booleans()):
        data["confidence"] = draw(NUMBERS)
    if draw(st.booleans()):
        data["details"] = draw(st.dictionaries(KEYS, st.one_of(FREE, DEEP), max_size=3))
    if draw(st.booleans()):
        data[draw(st.text(min_size=1, max_size=5))] = draw(FREE)
    event: dict[str, Any] = {
        "media_id": "m1", "user_id": "u1", "event": kind, "message": "x", "data": data,
    }
    if draw(st.booleans()):
        event[draw(st.sampled_from(["extra", "trace", "n"]))] = draw(st.one_of(FREE, DEEP))
    return event


def repr_id(value: object) -> str:
    """A short test id (a 5,000-digit integer has no repr)."""
    if type(value) is int and value.bit_length() > 64:
        return f"int{value.bit_length()}bits"
    return repr(value)


def _same(decoded: Any, expected: Any) -> bool:
    """Equal, type for type: an integer must come back as an integer, not a float."""
    if type(decoded) is not type(expected):
        return False
    if isinstance(expected, dict):
        return decoded.keys() == expected.keys() and all(
            _same(decoded[k], expected[k]) for k in expected
        )
    if isinstance(expected, list):
        return len(decoded) == len(expected) and all(map(_same, decoded, expected))
    return bool(decoded == expected)


def _routed(raw: bytes) -> None:
    """The relay decodes ``raw`` as Python's exact parser does and forwards it."""
    exact = json.loads(raw)
    assert _same(orjson.loads(raw), exact), raw[:200]
    stats = RelayStats()
    routed = EventRouter(stats).route(raw)
    assert routed is not None, (stats, raw[:200])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
@example(
    {
        "media_id": "m1", "user_id": "u1", "event": "ANALYSIS_COMPLETED", "message": "x",
        "data": {"model_name": "A", "details": {"frames": 10**400}},
    }
)
def test_what_emit_accepts_the_relay_decodes_and_forwards(event: dict[str, Any]) -> None:
    """emit() refuses what the relay could not read; whatever it accepts is routed."""
    publisher = CapturingPublisher()
    try:
        publisher.emit(event)
    except InvalidEventError:
        return
    _routed(publisher.events.raw[-1])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    details=st.dictionaries(KEYS, st.one_of(FREE, DEEP), max_size=3),
    done=NUMBERS,
    total=NUMBERS,
    confidence=NUMBERS,
)
def test_what_the_lenient_tracking_api_sends_the_relay_forwards(
    details: dict[Any, Any], done: Any, total: Any, confidence: Any
) -> None:
    """Outside strict mode the tracking API repairs or leaves out what readers cannot
    take, and every event it sends is routed; the model's completion always goes out."""
    publisher = CapturingPublisher(strict=False)
    with publisher.media("m1", "u1") as run, run.model("A") as model:
        model.progress(done, total, details=details)
        model.complete("FAKE", confidence, details=details)
    assert "ANALYSIS_COMPLETED" in publisher.events.types()
    for raw in publisher.events.raw:
        _routed(raw)


@pytest.mark.parametrize(
    "value", [10**400, 10**5000, 2**63, -(2**63) - 1, Level.HIGH, float("nan")], ids=repr_id
)
def test_a_completion_with_a_number_no_reader_takes_is_refused_or_sent_without_it(value):
    """Issue 17's case: emit() refuses the event; the lenient tracking API sends the
    completion without its details (counted), which the relay forwards; strict raises."""
    bad = {"frames": value}
    with pytest.raises(InvalidEventError, match=r"data\.details"):
        CapturingPublisher().emit(
            {
                "media_id": "m1", "user_id": "u1", "event": "ANALYSIS_COMPLETED",
                "message": "x", "data": {"model_name": "A", "details": bad},
            }
        )
    lenient = CapturingPublisher(strict=False)
    with lenient.media("m1", "u1") as run, run.model("A") as model:
        model.complete(details=bad)
    completed = lenient.events.of_type("ANALYSIS_COMPLETED")[0]
    assert "details" not in completed["data"]
    assert lenient.stats().forgiven == {"details": 1}
    for raw in lenient.events.raw:
        _routed(raw)
    strict = CapturingPublisher(strict=True)
    with (
        pytest.raises(InvalidEventError),
        strict.media("m1", "u1") as run,
        run.model("A") as model,
    ):
        model.complete(details=bad)


def test_a_total_past_64_bits_is_refused_or_the_call_skipped():
    """progress/total are held to the same range: emit() refuses, lenient skips the call
    (total_range), strict raises."""
    event = {
        "media_id": "m1", "user_id": "u1", "event": "FRAME_ANALYSIS_PROGRESS", "message": "x",
        "data": {"model_name": "A", "progress": 1, "total": 2**63},
    }
    with pytest.raises(InvalidEventError, match=r"data\.total"):
        CapturingPublisher().emit(event)
    lenient = CapturingPublisher(strict=False)
    with lenient.media("m1", "u1") as run, run.model("A") as model:
        model.progress(1, 2**63)
        model.progress(1, 2**63 - 1)
    sent = lenient.events.of_type("FRAME_ANALYSIS_PROGRESS")
    assert [e["data"]["total"] for e in sent] == [2**63 - 1]
    assert lenient.stats().forgiven == {"total_range": 1}
    for raw in lenient.events.raw:
        _routed(raw)
