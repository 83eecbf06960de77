"""_free_json: what the publisher refuses among the free-form JSON an event carries."""

from __future__ import annotations

from typing import Any

import pytest

from progress_sdk import defaults as d
from progress_sdk._free_json import check_free_json, json_value_problem
from progress_sdk.exceptions import Problem


def nested(depth: int) -> list[Any]:
    """A list nested ``depth`` levels deep: [[[...]]]."""
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer


def event(**extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "media_id": "m1",
        "user_id": "u1",
        "event": "PROCESSING_STARTED",
        "message": "Processing started",
        "data": {},
    }
    fields.update(extra)
    return fields


def problems_of(fields: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[Problem] = []
    check_free_json(fields, found)
    return [(p.field, p.rule) for p in found]


def test_an_event_without_free_json_has_no_problems():
    """Known fields only: nothing to check here."""
    assert problems_of(event()) == []


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        (float("nan"), "finite"),
        ([1.0, {"x": float("nan")}], "finite"),
        (object(), "json"),
        ({"a": {1, 2}}, "json"),
        ({1: "int keys become strings, or fail in orjson"}, "json"),
        (nested(d.MAX_JSON_DEPTH + 1), "depth"),
        (nested(5000), "depth"),
        ("x" * 1_000_000, "max_size"),
        ([0] * (d.MAX_EVENT_BYTES + 1), "max_size"),
    ],
)
def test_every_unknown_top_level_key_is_checked(value: Any, rule: str):
    """An unknown top-level key that is not finite, plain, shallow JSON under 64 KiB is named."""
    field = "$" if rule == "max_size" and isinstance(value, str) else "extra"
    assert problems_of(event(extra=value)) == [(field, rule)]


def test_details_and_unknown_data_keys_are_checked_too():
    """data.details and unknown data keys are free-form as well, and named in the problem."""
    fields = event(data={"details": {"deep": nested(5000)}, "note": float("inf")})
    assert problems_of(fields) == [("data.details", "depth"), ("data.note", "finite")]


def test_the_depth_limit_is_inclusive():
    """A value exactly MAX_JSON_DEPTH levels deep is accepted; one more level is not."""
    assert json_value_problem(nested(d.MAX_JSON_DEPTH)) is None
    assert json_value_problem(nested(d.MAX_JSON_DEPTH + 1)) is not None


def test_a_value_that_contains_itself_is_refused_without_looping():
    """A cycle is reported (as too deep), not walked forever."""
    loop: list[Any] = []
    loop.append(loop)
    assert problems_of(event(extra=loop)) == [("extra", "depth")]


def test_shared_sublists_cannot_make_the_walk_explode():
    """A DAG that would serialise to gigabytes is refused after a bounded walk."""
    value: list[Any] = [0]
    for _ in range(40):
        value = [value, value]
    assert problems_of(event(extra=value)) == [("extra", "max_size")]


def test_plain_json_and_its_subclasses_are_accepted():
    """Tuples, IntEnum-like int subclasses and nested plain values pass."""

    class Level(int):
        pass

    value = {"a": (1, 2.5, "x", None, True), "b": [{"c": Level(3)}], "d": -0.0}
    assert problems_of(event(extra=value, data={"details": value})) == []


def test_messages_say_what_to_do():
    """Each refusal names the field and says how to fix it."""
    found: list[Problem] = []
    check_free_json(event(extra=nested(100)), found)
    assert "flatten it" in found[0].message
    found = []
    check_free_json(event(extra=float("nan")), found)
    assert "finite number" in found[0].message
