"""The accept-only fast path of the contract rules: ``fast_accept``.

This module may only accept. ``fast_accept`` returns an event's type when the event is
certainly valid, and ``None`` for anything else, without saying why: then
``_rules.check_event`` runs every rule, which decides and names each problem. Nothing
here may refuse an event, report a problem, or accept one the full checks refuse; it can
make a valid event faster to recognise (one pass, few calls, verdicts remembered for
strings that repeat), never change what is valid. ``tests/test_events.py`` holds it to
that with a differential test against the full checks over generated near-valid events.

It is on the hot paths (``ProgressPublisher.emit`` on the job's thread, the lifecycle
validator for every line): its length and its written-out string checks are measured
choices, see ``benchmarks/validate_bench.py`` and ``benchmarks/publisher_core_bench.py``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from . import defaults as d
from ._timestamps import parse_timestamp
from .event_types import (
    ALL_EVENT_NAMES,
    ANALYSIS_COMPLETED,
    COMPLETED_ALIAS,
    FAILURE_EVENT_NAMES,
    MODEL_EVENT_NAMES,
    PROGRESS_EVENT_NAMES,
)

__all__ = ["fast_accept"]

_ZERO = timedelta(0)
_MAX_INT = d.MAX_JSON_INT


def _bad_str(value: object, max_chars: int) -> bool:
    """True unless ``value`` is a string ``check_str`` certainly accepts (non-blank, not
    too long). Conservative: any ``isspace()`` string defers to ``check_str``."""
    return type(value) is not str or not value or len(value) > max_chars or value.isspace()


# Verdicts the fast path remembers, for strings that repeat from event to event. Both
# tables hold only what the fast path's own checks accepted, are bounded (cleared when
# full) and are only ever read by the fast path: they can make it faster, never make it
# accept more.
#
# Identity strings (media_id, user_id, run_id, source, model_name, phase) of at most
# _KNOWN_ID_CHARS characters, non-blank: valid for every one of those fields, as no
# field's limit is below _KNOWN_ID_CHARS.
_KNOWN_ID_CHARS = 64
_KNOWN_IDS: set[str] = set()
_KNOWN_IDS_MAX = 4096
assert (
    min(
        d.MAX_MEDIA_ID_CHARS,
        d.MAX_USER_ID_CHARS,
        d.MAX_RUN_ID_CHARS,
        d.MAX_SOURCE_CHARS,
        d.MAX_MODEL_NAME_CHARS,
        d.MAX_PHASE_CHARS,
    )
    >= _KNOWN_ID_CHARS
)
# The "YYYY-MM-DDTHH:MM:SS." prefixes of canonical UTC timestamps
# (YYYY-MM-DDTHH:MM:SS.ffffffZ, what the publisher sends) that parse_timestamp accepted.
# With a known prefix, a timestamp of that shape is valid whatever its six ASCII digits of
# microseconds: the date and time are the prefix's, the offset is Z.
_KNOWN_SECONDS: set[str] = set()
_KNOWN_SECONDS_MAX = 1024
_CANONICAL_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)


def _accept_id(value: object, max_chars: int) -> bool:
    """The fast path's check of an identity string not in ``_KNOWN_IDS``; remembers it."""
    if type(value) is not str or _bad_str(value, max_chars):
        return False
    if len(value) <= _KNOWN_ID_CHARS:
        if len(_KNOWN_IDS) >= _KNOWN_IDS_MAX:
            _KNOWN_IDS.clear()
        _KNOWN_IDS.add(value)
    return True


def _accept_timestamp(value: str, strict: bool) -> bool:
    """The fast path's check of a timestamp whose second is not in ``_KNOWN_SECONDS``."""
    parsed = parse_timestamp(value)
    if parsed is None:
        return False
    offset = parsed.utcoffset()
    if offset is None or (strict and offset != _ZERO):
        return False
    if offset == _ZERO and _CANONICAL_UTC.fullmatch(value):
        if len(_KNOWN_SECONDS) >= _KNOWN_SECONDS_MAX:
            _KNOWN_SECONDS.clear()
        _KNOWN_SECONDS.add(value[:20])
    return True


def fast_accept(obj: dict[str, Any], strict: bool) -> str | None:
    """The normalised event type if ``obj`` is certainly valid, else ``None``.

    The common case, a valid event, is decided here in one pass with few function calls
    (``check_event`` is on the validator's and publisher's hot paths; the string checks
    are ``_bad_str`` written out for that reason, and identity strings and timestamps'
    seconds already seen valid are looked up in ``_KNOWN_IDS`` and ``_KNOWN_SECONDS``).
    It only ever accepts: anything unusual (a wrong type, a str subclass, a value out of
    bounds) returns ``None`` and the full checks run, which also say what is wrong. So
    this cannot change what is valid, only how fast a valid event is recognised; a test
    holds it to that.
    """
    get = obj.get
    known = _KNOWN_IDS
    event = get("event")
    if type(event) is not str:
        return None
    if event == COMPLETED_ALIAS:
        event = ANALYSIS_COMPLETED
    if event not in ALL_EVENT_NAMES:
        return None
    v = get("media_id")
    if type(v) is not str or (v not in known and not _accept_id(v, d.MAX_MEDIA_ID_CHARS)):
        return None
    v = get("user_id")
    if type(v) is not str or (v not in known and not _accept_id(v, d.MAX_USER_ID_CHARS)):
        return None
    v = get("message")
    if type(v) is not str or len(v) > d.MAX_MESSAGE_CHARS:
        return None
    data = get("data")
    if type(data) is not dict:
        return None

    if data:
        dget = data.get
        model_name = dget("model_name")
        if model_name is None:
            if event in MODEL_EVENT_NAMES:
                return None
        elif type(model_name) is not str or (
            model_name not in known and not _accept_id(model_name, d.MAX_MODEL_NAME_CHARS)
        ):
            return None
        progress = dget("progress")
        total = dget("total")
        if (progress is not None or total is not None or event in PROGRESS_EVENT_NAMES) and (
            type(progress) is not int
            or type(total) is not int
            or total <= 0
            or total > _MAX_INT
            or progress < 0
            or progress > total
        ):
            return None
        phase = dget("phase")
        if phase is not None and (
            type(phase) is not str
            or (phase not in known and not _accept_id(phase, d.MAX_PHASE_CHARS))
        ):
            return None
        # Progress events carry only these four keys: look the others up only when
        # data holds something else.
        common = (
            (model_name is not None)
            + (progress is not None)
            + (total is not None)
            + (phase is not None)
        )
        if len(data) == common:
            if event in FAILURE_EVENT_NAMES:
                return None  # no error_message
        else:
            v = dget("prediction")
            if v is not None and _bad_str(v, d.MAX_PREDICTION_CHARS):
                return None
            v = dget("filename")
            if v is not None and _bad_str(v, d.MAX_FILENAME_CHARS):
                return None
            v = dget("details")
            if v is not None and type(v) is not dict:
                return None
            v = dget("confidence")
            # NaN fails both comparisons, so it falls through to the full check too.
            if v is not None and ((type(v) is not float and type(v) is not int) or not 0 <= v <= 1):
                return None
            v = dget("error_message")
            if v is None:
                if event in FAILURE_EVENT_NAMES:
                    return None
            elif _bad_str(v, d.MAX_ERROR_MESSAGE_CHARS):
                return None
    elif event in MODEL_EVENT_NAMES or event in FAILURE_EVENT_NAMES:
        return None

    v = get("schema_version")
    if v is None:
        if strict:
            return None
    elif type(v) is not int or v != d.SCHEMA_VERSION:
        return None
    v = get("seq")
    if v is None:
        if strict:
            return None
    elif type(v) is not int or v < 1 or v > _MAX_INT:
        return None
    v = get("source")
    if v is None:
        if strict:
            return None
    elif type(v) is not str or (v not in known and not _accept_id(v, d.MAX_SOURCE_CHARS)):
        return None
    v = get("timestamp")
    if v is None:
        if strict:
            return None
    elif type(v) is not str or (
        not (
            len(v) == 27
            and v[26] == "Z"
            and v[:20] in _KNOWN_SECONDS
            and (fraction := v[20:26]).isdigit()
            and fraction.isascii()
        )
        and not _accept_timestamp(v, strict)
    ):
        return None
    v = get("run_id")
    if v is not None and (
        type(v) is not str or (v not in known and not _accept_id(v, d.MAX_RUN_ID_CHARS))
    ):
        return None
    return event
