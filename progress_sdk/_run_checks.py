"""The tracking API's checks of what job code passes, and its repairs of bad data.

Ids are checked at once (``check_text``). After a run started, bad progress data is
repaired, counted in ``stats().forgiven`` and logged once per kind, unless the sink is
strict (``forgive``); ``progress_sdk._lenient`` lists the repairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import _lenient, _rules
from . import defaults as d
from ._sink import EventSink
from .event_types import ANALYSIS_COMPLETED
from .exceptions import InvalidEventError, Problem
from .failures import describe_error

__all__ = [
    "check_text",
    "failure_data",
    "forgive",
    "message_text",
    "repaired_field",
    "repaired_text",
    "verdict_data",
]

logger = logging.getLogger("progress_sdk")


def check_text(field: str, value: object, max_chars: int, what: str) -> None:
    """Raise InvalidEventError unless ``value`` is a non-empty string of at most
    ``max_chars``; ``what`` says what the field is for."""
    problems: list[Problem] = []
    _rules.check_str(problems, field, value, max_chars, required=True, what=what)
    if problems:
        raise InvalidEventError(problems)


def message_text(given: object, default: str) -> str:
    """The event's ``message``: the caller's, checked on the spot, else ``default``.

    ``default`` may embed an error text of up to MAX_ERROR_MESSAGE_CHARS, which with its
    prefix can pass MAX_MESSAGE_CHARS: it is clipped, never refused, because it is built
    on the way out of a failing block, where raising would hide the job's own exception.
    """
    if given is None:
        if len(default) > d.MAX_MESSAGE_CHARS:
            default = default[: d.MAX_MESSAGE_CHARS - 1] + "…"
        return default
    if not isinstance(given, str):
        problem = Problem(
            "message", "type", f"must be a string, got {type(given).__name__}: text for people"
        )
    elif len(given) > d.MAX_MESSAGE_CHARS:
        problem = Problem(
            "message",
            "max_length",
            f"is {len(given)} characters, at most {d.MAX_MESSAGE_CHARS} allowed: shorten it",
        )
    else:
        return given
    raise InvalidEventError([problem])


def forgive(sink: EventSink, media_id: str, kind: str, error: InvalidEventError) -> None:
    """Raise ``error`` if ``sink`` is strict; else count ``kind`` and log its first time."""
    if sink.strict:
        raise error
    if sink.count_forgiven(kind) == 1:
        logger.warning(
            "progress_sdk forgave bad progress data (%s) in media %r: %s; %s. Logged "
            "once per kind, counted in stats().forgiven; a strict publisher raises.",
            kind, media_id, _lenient.KINDS[kind], error,
        )


def failure_data(sink: EventSink, media_id: str, error: object) -> tuple[str, dict[str, Any]]:
    """``data`` of a failure event: the user-facing text, and the exception's type
    (bad input repaired and counted unless ``sink`` is strict)."""
    if not isinstance(error, (BaseException, str)):
        forgive(
            sink, media_id, "error_message",
            InvalidEventError([Problem(
                "data.error_message", "type",
                f"fail() takes an exception or a string, got {type(error).__name__}",
            )]),
        )
        error = _lenient.as_text(error, d.MAX_ERROR_MESSAGE_CHARS) or ""
    text, error_type = describe_error(error, sink.error_messages)
    if not text:
        forgive(
            sink, media_id, "error_message",
            InvalidEventError([Problem(
                "data.error_message", "required",
                "must be a non-empty string: say what went wrong; the UI shows it",
            )]),
        )
        text = _lenient.GENERIC_ERROR
    data: dict[str, Any] = {"error_message": text}
    if error_type is not None:
        data["details"] = {"error_type": error_type}
    return text, data


def verdict_data(
    model_name: str,
    prediction: object,
    confidence: object,
    forgive_bad: Callable[[str, InvalidEventError], None],
) -> dict[str, Any]:
    """``data`` of ANALYSIS_COMPLETED: prediction and confidence, repaired (through
    ``forgive_bad``, which raises when strict)."""
    data: dict[str, Any] = {}
    if prediction is not None:
        data["prediction"] = prediction
    if confidence is not None:
        data["confidence"] = confidence
    problems: list[Problem] = []
    _rules.check_data(ANALYSIS_COMPLETED, {"model_name": model_name, **data}, problems)
    if not problems:
        return data
    error = InvalidEventError(problems, event_type=ANALYSIS_COMPLETED)
    fields = {problem.field for problem in problems}
    if "data.prediction" in fields:
        forgive_bad("prediction", error)
        data.pop("prediction")
        fixed = _lenient.as_text(prediction, d.MAX_PREDICTION_CHARS)
        if fixed is not None:
            data["prediction"] = fixed
    if "data.confidence" in fields:
        forgive_bad("confidence", error)
        data.pop("confidence")
        fraction = _lenient.as_fraction(confidence)
        if fraction is not None:
            data["confidence"] = fraction
    return data


def repaired_text(sink: EventSink, media_id: str, given: object, default: str) -> str:
    """The event message: the caller's (repaired unless ``sink`` is strict), else
    ``default``."""
    try:
        return message_text(given, default)
    except InvalidEventError as exc:
        forgive(sink, media_id, "message", exc)
        return _lenient.message_text(given) or default


def repaired_field(
    sink: EventSink, media_id: str, field: str, value: object, *, max_chars: int, what: str,
    kind: str,
) -> str | None:
    """An optional short text field, repaired (or ``None``: left out) unless ``sink`` is
    strict; ``kind`` is what a repair counts as."""
    try:
        check_text(field, value, max_chars, what)
    except InvalidEventError as exc:
        forgive(sink, media_id, kind, exc)
        return _lenient.as_text(value, max_chars)
    assert isinstance(value, str)
    return value
