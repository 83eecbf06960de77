"""The tracking API's checks of what job code passes, and its repairs of bad data.

Ids are checked at once (``check_text``). After a run started, bad progress data is
repaired, counted in ``stats().forgiven`` and logged once per kind, unless the sink is
strict (``forgive``); ``progress_sdk._lenient`` lists the repairs.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _lenient, _rules
from . import defaults as d
from ._sink import EventSink
from .exceptions import InvalidEventError, Problem
from .failures import describe_error

__all__ = ["check_text", "failure_data", "forgive", "message_text"]

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
