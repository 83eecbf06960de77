"""The v1 contract's per-event rules, as plain checks over a JSON-shaped dict.

This is the one implementation of "is this event valid": the pydantic models in
``events`` call it for their cross-field rules, ``ProgressPublisher.emit`` and the
tracking API call it on the job's thread, and the lifecycle validator calls it for every
line it reads. It works on plain dicts rather than building a pydantic model because it
runs on hot paths (a few microseconds per event matter there); a differential test keeps
it in agreement with the pydantic models, which remain the typed API and the source of
the JSON Schema.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from . import defaults as d
from ._fast_accept import fast_accept
from ._timestamps import parse_timestamp
from .event_types import (
    ALL_EVENT_NAMES,
    FAILURE_EVENT_NAMES,
    MODEL_EVENT_NAMES,
    PROGRESS_EVENT_NAMES,
    normalize_event_name,
)
from .exceptions import Problem

ENVELOPE_V1_FIELDS = ("schema_version", "seq", "source", "timestamp")

_ZERO = timedelta(0)
_MAX_INT = d.MAX_JSON_INT


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python, but `true` is not a number on the wire.
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


# str.isspace() counts U+001C..U+001F as whitespace; Unicode's White_Space, which the
# JSON Schema's pattern \S (and so ProgressEvent) uses, does not. A string is blank when
# every character is White_Space.
_INFO_SEPARATORS = frozenset("\x1c\x1d\x1e\x1f")


def is_blank(value: str) -> bool:
    """Empty, or nothing but Unicode White_Space: what no text field of the contract takes."""
    return not value or (value.isspace() and not _INFO_SEPARATORS.intersection(value))


def check_str(
    problems: list[Problem],
    field: str,
    value: object,
    max_chars: int,
    *,
    required: bool,
    what: str,
) -> None:
    if value is None:
        if required:
            problems.append(Problem(field, "required", f"is required: {what}"))
        return
    if type(value) is not str and not isinstance(value, str):
        problems.append(
            Problem(field, "type", f"must be a string, got {type(value).__name__}: {what}")
        )
        return
    if is_blank(value):
        problems.append(Problem(field, "non_empty", f"must not be empty: {what}"))
    elif len(value) > max_chars:
        problems.append(
            Problem(
                field,
                "max_length",
                f"is {len(value)} characters, at most {max_chars} allowed: shorten it",
            )
        )


# The optional strings of ``data``: (max characters, what the field is, for the message).
_OPTIONAL_DATA = {
    "phase": (d.MAX_PHASE_CHARS, "a short machine-readable stage name"),
    "prediction": (d.MAX_PREDICTION_CHARS, 'a label such as "FAKE" or "REAL"'),
    "filename": (d.MAX_FILENAME_CHARS, "the uploaded file's name, shown in the panel title"),
}


def check_data(event: str, data: dict[str, Any], problems: list[Problem]) -> None:
    """Append the problems of ``data`` for an event of (already normalised) type ``event``."""
    _check_model_name(event, data.get("model_name"), problems)

    progress = data.get("progress")
    total = data.get("total")
    if event in PROGRESS_EVENT_NAMES or progress is not None or total is not None:
        _check_progress_total(event, progress, total, problems)

    _check_optional_data(data, "phase", problems)

    details = data.get("details")
    if details is not None and not isinstance(details, dict):
        problems.append(
            Problem(
                "data.details",
                "type",
                f"must be a JSON object (dict), got {type(details).__name__}",
            )
        )

    _check_optional_data(data, "prediction", problems)
    confidence = data.get("confidence")
    if confidence is not None:
        _check_confidence(confidence, problems)

    error_message = data.get("error_message")
    if event in FAILURE_EVENT_NAMES or error_message is not None:
        check_str(
            problems,
            "data.error_message",
            error_message,
            d.MAX_ERROR_MESSAGE_CHARS,
            required=event in FAILURE_EVENT_NAMES,
            what=f"{event} must say what went wrong; the UI shows it",
        )

    _check_optional_data(data, "filename", problems)


def _check_model_name(event: str, model_name: object, problems: list[Problem]) -> None:
    """data.model_name: required of a model event, else checked when given."""
    if event in MODEL_EVENT_NAMES:
        check_str(
            problems,
            "data.model_name",
            model_name,
            d.MAX_MODEL_NAME_CHARS,
            required=True,
            what=f"{event} is a model event; the UI groups progress by model_name",
        )
    elif model_name is not None:
        check_str(
            problems,
            "data.model_name",
            model_name,
            d.MAX_MODEL_NAME_CHARS,
            required=False,
            what="the model this event is about",
        )


def _check_optional_data(data: dict[str, Any], key: str, problems: list[Problem]) -> None:
    """One of ``_OPTIONAL_DATA``, when the event gives it."""
    value = data.get(key)
    if value is not None:
        max_chars, what = _OPTIONAL_DATA[key]
        check_str(problems, f"data.{key}", value, max_chars, required=False, what=what)


def _check_progress_total(
    event: str, progress: object, total: object, problems: list[Problem]
) -> None:
    """data.progress and data.total, for a progress event or data giving either: both
    integers, total > 0 and 0 <= progress <= total."""
    with_what = (
        "progress events" if event in PROGRESS_EVENT_NAMES else "data.progress/data.total"
    )
    ok = True
    for name, value in (("progress", progress), ("total", total)):
        if value is None:
            problems.append(
                Problem(
                    f"data.{name}",
                    "required",
                    f"is required with {with_what}: give both progress and total as integers",
                )
            )
            ok = False
        elif not _is_int(value):
            problems.append(
                Problem(
                    f"data.{name}",
                    "type",
                    f"must be an integer, got {type(value).__name__} {value!r}",
                )
            )
            ok = False
    if ok:
        assert isinstance(total, int) and isinstance(progress, int)
        if total <= 0:
            problems.append(
                Problem("data.total", "positive", f"must be > 0, got {_show_int(total)}")
            )
        elif total > d.MAX_JSON_INT:
            problems.append(
                Problem(
                    "data.total",
                    "bounds",
                    f"must be at most 2**63-1, the largest integer every reader takes, got "
                    f"{_show_int(total)}",
                )
            )
        elif progress < 0 or progress > total:
            problems.append(
                Problem(
                    "data.progress",
                    "bounds",
                    "must satisfy 0 <= progress <= total, got "
                    f"{_show_int(progress)}/{_show_int(total)}",
                )
            )


def _show_int(value: int) -> str:
    """An integer for a message: its digits, or its size when it has too many to print
    (str() refuses past 4,300 digits)."""
    return str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"


def _check_confidence(confidence: object, problems: list[Problem]) -> None:
    """data.confidence: a finite number in [0, 1] (a bool is not one)."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        problems.append(
            Problem(
                "data.confidence",
                "type",
                f"must be a number in [0, 1], got {type(confidence).__name__}",
            )
        )
    elif not (
        0 <= confidence <= 1  # an int: math.isfinite overflows past ~1.8e308
        if isinstance(confidence, int)
        else math.isfinite(confidence) and 0.0 <= confidence <= 1.0
    ):
        problems.append(
            Problem(
                "data.confidence",
                "bounds",
                f"must be in [0, 1], got "
                f"{_show_int(confidence) if isinstance(confidence, int) else confidence}",
            )
        )


def check_event(
    obj: object, *, strict: bool = False, fast: bool = True
) -> tuple[str | None, list[Problem]]:
    """Check one decoded wire event.

    Returns the normalised event type (``None`` when it is missing or unknown) and the
    list of problems; an empty list means the event is valid. ``strict`` requires the v1
    envelope fields (``schema_version``, ``seq``, ``source``, ``timestamp``); lenient
    mode accepts events from producers that do not send them. A valid event is usually
    recognised by ``_fast_accept.fast_accept``, which may only accept; anything else gets
    every rule below, and so does every event with ``fast`` off.
    """
    if fast and type(obj) is dict:
        accepted = fast_accept(obj, strict)
        if accepted is not None:
            return accepted, []
    return _check_event_full(obj, strict=strict)


def _check_event_full(obj: object, *, strict: bool) -> tuple[str | None, list[Problem]]:
    """``check_event`` without its fast path: every rule, naming each problem."""
    problems: list[Problem] = []
    if not isinstance(obj, dict):
        kind = "array" if isinstance(obj, list) else type(obj).__name__
        if obj is None:
            kind = "null"
        problems.append(Problem("$", "type", f"an event must be a JSON object, got {kind}"))
        return None, problems

    check_str(
        problems,
        "media_id",
        obj.get("media_id"),
        d.MAX_MEDIA_ID_CHARS,
        required=True,
        what="the id of the media this event is about",
    )
    check_str(
        problems,
        "user_id",
        obj.get("user_id"),
        d.MAX_USER_ID_CHARS,
        required=True,
        what="the relay routes by user_id and silently drops events without it",
    )
    event = _check_event_name(obj.get("event"), problems)
    _check_message(obj.get("message"), problems)

    data = obj.get("data")
    if data is None:
        problems.append(Problem("data", "required", "is required (use {} when empty)"))
    elif not isinstance(data, dict):
        problems.append(
            Problem("data", "type", f"must be a JSON object, got {type(data).__name__}")
        )
    elif event is not None:
        check_data(event, data, problems)

    check_envelope(obj, problems, strict=strict)
    return event, problems


def _check_event_name(raw_event: object, problems: list[Problem]) -> str | None:
    """The normalised event type, or None (and a problem) when missing or unknown."""
    if raw_event is None:
        problems.append(Problem("event", "required", "is required: one of the v1 event types"))
        return None
    if not isinstance(raw_event, str):
        problems.append(
            Problem("event", "type", f"must be a string, got {type(raw_event).__name__}")
        )
        return None
    event = normalize_event_name(raw_event)
    if event not in ALL_EVENT_NAMES:
        problems.append(
            Problem(
                "event",
                "known_type",
                f"unknown event type {raw_event[:80]!r}; expected one of "
                + ", ".join(sorted(ALL_EVENT_NAMES)),
            )
        )
        return None
    return event


def _check_message(message: object, problems: list[Problem]) -> None:
    """The human-readable text: required, a string, bounded."""
    if message is None:
        problems.append(Problem("message", "required", "is required: human-readable text"))
    elif not isinstance(message, str):
        problems.append(
            Problem("message", "type", f"must be a string, got {type(message).__name__}")
        )
    elif len(message) > d.MAX_MESSAGE_CHARS:
        problems.append(
            Problem(
                "message",
                "max_length",
                f"is {len(message)} characters, at most {d.MAX_MESSAGE_CHARS} allowed",
            )
        )


def check_envelope(obj: dict[str, Any], problems: list[Problem], *, strict: bool) -> None:
    """Append problems of the v1 envelope fields and ``run_id``."""
    _check_version_and_seq(obj, problems, strict=strict)

    source = obj.get("source")
    if source is not None or strict:
        check_str(
            problems,
            "source",
            source,
            d.MAX_SOURCE_CHARS,
            required=strict,
            what="identifies one publisher instance",
        )

    _check_timestamp(obj.get("timestamp"), problems, strict=strict)

    run_id = obj.get("run_id")
    if run_id is not None:
        check_str(
            problems,
            "run_id",
            run_id,
            d.MAX_RUN_ID_CHARS,
            required=False,
            what="one analysis run of a media",
        )


def _check_version_and_seq(obj: dict[str, Any], problems: list[Problem], *, strict: bool) -> None:
    """schema_version (1) and seq (1..2**63-1): required in strict mode only."""
    version = obj.get("schema_version")
    if version is None:
        if strict:
            problems.append(
                Problem("schema_version", "required", "is required in strict mode: send 1")
            )
    elif not _is_int(version) or version != d.SCHEMA_VERSION:
        problems.append(
            Problem(
                "schema_version",
                "version",
                f"must be {d.SCHEMA_VERSION}, got "
                f"{_show_int(version) if _is_int(version) else repr(version)}",
            )
        )

    seq = obj.get("seq")
    if seq is None:
        if strict:
            problems.append(
                Problem("seq", "required", "is required in strict mode: an integer >= 1")
            )
    elif not _is_int(seq):
        problems.append(Problem("seq", "type", f"must be an integer, got {type(seq).__name__}"))
    elif seq < 1:
        problems.append(Problem("seq", "positive", f"must be >= 1, got {_show_int(seq)}"))
    elif seq > d.MAX_JSON_INT:
        problems.append(
            Problem("seq", "bounds", f"must be at most 2**63-1, got {_show_int(seq)}")
        )


def _check_timestamp(timestamp: object, problems: list[Problem], *, strict: bool) -> None:
    """ISO 8601 with a UTC offset (UTC itself in strict mode, where it is required)."""
    if timestamp is None:
        if strict:
            problems.append(
                Problem(
                    "timestamp",
                    "required",
                    "is required in strict mode: ISO 8601 UTC, e.g. 2026-11-26T05:00:00.123456Z",
                )
            )
    elif not isinstance(timestamp, str):
        problems.append(
            Problem("timestamp", "type", f"must be a string, got {type(timestamp).__name__}")
        )
    else:
        parsed = parse_timestamp(timestamp)
        if parsed is None:
            problems.append(
                Problem(
                    "timestamp",
                    "format",
                    f"{timestamp[:64]!r} is not ISO 8601; send e.g. 2026-11-26T05:00:00.123456Z",
                )
            )
        elif parsed.utcoffset() is None:
            # Lenient mode forgives a missing envelope, not a timestamp that says no
            # zone: ProgressEvent (AwareDatetime) refuses those too.
            problems.append(
                Problem(
                    "timestamp",
                    "timezone",
                    f"{timestamp[:64]!r} has no UTC offset; end it in Z",
                )
            )
        elif strict and parsed.utcoffset() != _ZERO:
            problems.append(
                Problem(
                    "timestamp",
                    "utc",
                    f"{timestamp[:64]!r} must be UTC (end in Z or +00:00)",
                )
            )
