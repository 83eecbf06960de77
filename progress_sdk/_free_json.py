"""Checks of the free-form JSON an event may carry, before it is accepted.

Most of an event is fields with types and length limits (``_rules``). Three places take
anything: ``data.details``, unknown ``data`` keys and unknown top-level keys. Whatever is
found there must still be something every consumer can read, or the event is refused at
the call with ``InvalidEventError``:

* plain JSON types only (str, int, float, bool, None, list/tuple, dict): an ``object()``
  would make the sender fail later, where nobody can tell the job;
* finite numbers: ``float("inf")`` and NaN serialise as the non-JSON literals
  ``Infinity``/``NaN``, which ``JSON.parse`` and orjson reject;
* integers in the signed 64-bit range (``MIN_JSON_INT`` … ``MAX_JSON_INT``): orjson, the
  relay's decoder, reads a wider one as a lossy float, or past ~1.8e308 refuses the
  whole event;
* at most ``MAX_JSON_DEPTH`` levels of nesting: deeper structures exhaust the recursion
  limits of JSON encoders and parsers (the standard library raises ``RecursionError``);
* a whole event of at most ``MAX_EVENT_BYTES`` (64 KiB, the contract's limit).

Events without free-form JSON (all progress events of the tracking API, most lifecycle
events) skip every check here after two set lookups: their fields' length limits already
keep them under 64 KiB (see ``defaults``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from . import _rules
from . import defaults as d
from .exceptions import Problem

# Room left for the envelope fields the publisher adds after these checks.
ENVELOPE_MARGIN = 2048

KNOWN_EVENT_KEYS = frozenset(
    {"media_id", "user_id", "event", "message", "data", "run_id", *_rules.ENVELOPE_V1_FIELDS}
)
KNOWN_DATA_KEYS = frozenset(
    {
        "model_name",
        "progress",
        "total",
        "phase",
        "details",
        "prediction",
        "confidence",
        "error_message",
        "filename",
    }
)
# Every JSON value takes at least one byte, so a value with more nodes than the event's
# byte limit is too big whatever they are: the walk stops there. That also bounds its
# time for structures that share sub-lists (a DAG that would serialise to gigabytes).
_MAX_NODES = d.MAX_EVENT_BYTES

_USE = "use str, int, float, bool, None, list or dict"


def has_free_json(data: dict[str, Any]) -> bool:
    """True when ``data`` holds values whose size is not bounded by a field limit."""
    return "details" in data or not KNOWN_DATA_KEYS.issuperset(data)


def check_free_json(event: dict[str, Any], problems: list[Problem]) -> None:
    """Append the problems of an event's free-form JSON (see the module doc).

    ``event`` holds wire fields (a whole event, or only the parts the caller wants
    checked, such as ``{"data": {"details": ...}}``). Each free value is named in its
    problem: ``data.details``, ``data.<key>`` or ``<key>``. The size is measured only
    when ``problems`` is still empty.
    """
    data = event.get("data")
    # has_free_json, written out: this runs for every event emit() takes.
    free_data = type(data) is dict and ("details" in data or not KNOWN_DATA_KEYS.issuperset(data))
    if not free_data and KNOWN_EVENT_KEYS.issuperset(event):
        return  # the common case: nothing here is free-form
    for key, value in event.items():
        if key not in KNOWN_EVENT_KEYS:
            _check_value(key, value, problems)
    if free_data:
        assert isinstance(data, dict)
        for key, value in data.items():
            if key == "details" or key not in KNOWN_DATA_KEYS:
                _check_value(f"data.{key}", value, problems)
    if not problems:  # measuring an event that is refused anyway would only add noise
        _check_size(event, problems)


def _check_value(field: str, value: object, problems: list[Problem]) -> None:
    found = json_value_problem(value)
    if found is not None:
        rule, message = found
        problems.append(Problem(field, rule, message))


def json_value_problem(value: object, max_depth: int = d.MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """``(rule, message)`` for the first reason ``value`` cannot be sent, else None.

    Iterative, so no nesting depth can raise ``RecursionError`` here, and bounded to
    ``_MAX_NODES`` values. Plain scalars in a container are checked where they stand,
    without a trip through the stack: that is most of the values, and of the time.
    """
    isfinite = math.isfinite
    low, high = d.MIN_JSON_INT, d.MAX_JSON_INT
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list, tuple)):
            found = _scalar_problem(item)
            if found is not None:
                return found
            continue
        if depth >= max_depth:
            return "depth", (
                f"is nested more than {max_depth} levels deep (or contains itself): "
                "flatten it, e.g. into a list of records"
            )
        if isinstance(item, dict):
            if not all(type(key) is str or isinstance(key, str) for key in item):
                bad = next(key for key in item if not isinstance(key, str))
                return "json", (
                    f"has a key of type {type(bad).__name__}: object keys must be strings"
                )
            item = item.values()
        nodes += len(item)
        if nodes > _MAX_NODES:
            return "max_size", (
                f"holds more than {_MAX_NODES} values, more than a {d.MAX_EVENT_BYTES}-byte "
                "event can carry: send a summary, not the raw data"
            )
        for child in item:
            kind = type(child)
            if kind is str or kind is bool or child is None:
                continue
            if kind is int and low <= child <= high:
                continue
            if kind is float and isfinite(child):
                continue
            stack.append((child, depth + 1))
    return None


def _scalar_problem(item: object) -> tuple[str, str] | None:
    """The problem of a value that is not a list, tuple or dict, else None."""
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        return "finite", f"holds {item!r}, which JSON cannot carry: send a finite number, or None"
    if item is None or isinstance(item, str):
        return None  # subclasses serialise as their base type
    if isinstance(item, int):  # bool, IntEnum... serialise as their base type too
        if d.MIN_JSON_INT <= item <= d.MAX_JSON_INT:
            return None
        return "int_range", (
            f"holds an integer of {item.bit_length()} bits, outside the signed 64-bit range "
            "every reader takes (-2**63 .. 2**63-1): send it as a string, or a float"
        )
    return "json", (
        f"holds a value of type {type(item).__name__}, which is not JSON-serialisable: {_USE}"
    )


def _check_size(event: dict[str, Any], problems: list[Problem]) -> None:
    """Measure the event; only free-form JSON can push it past MAX_EVENT_BYTES."""
    try:
        # ASCII-escaped: never smaller than the UTF-8 the publisher sends (so the bound
        # holds), and a lone surrogate is measured instead of failing to encode.
        size = len(json.dumps(event, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        # json_value_problem accepted every free value, so this is a known field of the
        # wrong type that the caller did not check first.
        problems.append(Problem("$", "json", f"must be JSON-serialisable ({_USE}): {exc}"))
        return
    budget = d.MAX_EVENT_BYTES - ENVELOPE_MARGIN
    if size > budget:
        problems.append(
            Problem(
                "$",
                "max_size",
                f"the event is {size} bytes, at most {budget} allowed before the envelope "
                f"(a whole event is at most {d.MAX_EVENT_BYTES} bytes): trim data.details "
                "or other free-form values",
            )
        )
