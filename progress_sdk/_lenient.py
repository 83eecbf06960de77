"""Repairs for bad progress data, used by the tracking API outside strict mode.

A ten-minute analysis must not die because a decoder's frame count was off by one, or a
progress value came as ``5.0``. After a run started, ``tracking`` checks each argument as
strictly as ever; when a check fails and the publisher is not strict, it asks this module
for the nearest value the contract accepts (or ``None``: skip the call), counts the kind
in ``stats().forgiven`` and logs the first of each kind. Strict mode raises instead.

Each function here is pure: a raw value in, a repaired value (or ``None``) out.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

from . import defaults as d

__all__ = [
    "KINDS",
    "as_count",
    "as_fraction",
    "as_text",
    "clamp_progress",
    "clip",
]

# Every kind ``stats().forgiven`` may count, with what was done about it (the log line).
KINDS: Mapping[str, str] = {
    "progress_type": "a progress or total that is not an integer was converted (or the "
    "call skipped when it is not a number)",
    "progress_range": "a progress outside 0..total was clamped into it",
    "total_range": "a total that is not in 1..2**63-1 made the call be skipped",
    "progress_decreased": "a progress lower than the last one was held at the last one "
    "(contract rule 3)",
    "total_changed": "a total different from the first one was rescaled to the first "
    "(contract rule 3)",
    "event_type": "a progress or step call with an event type of the wrong kind was skipped",
    "phase": "a phase that is not a short non-empty string was converted, clipped or left out",
    "message": "a message that is not a string, or too long, was converted or clipped",
    "details": "details that are not a JSON object every reader takes (within the size "
    "and depth limits, finite numbers, 64-bit integers) were left out",
    "prediction": "a prediction that is not a short non-empty string was converted, "
    "clipped or left out",
    "confidence": "a confidence that is not a number in 0..1 was converted, clamped or "
    "left out",
    "error_message": "an empty or non-string error was replaced by a generic text",
    "model_name": "a model name that is not a short non-empty string was converted or "
    "clipped; an empty one got a tracker that emits nothing",
}

GENERIC_ERROR = "an unexpected error occurred"


def as_count(value: object) -> int | None:
    """``value`` as an int: ints and integer-like objects as they are, finite reals and
    numeric strings truncated; ``None`` for anything else (NaN, None, objects)."""
    if type(value) is int:
        return value
    if isinstance(value, (str, bytes)):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None
    try:
        return operator.index(value)  # type: ignore[arg-type]  # numpy ints, bool
    except TypeError:
        pass
    try:
        number = float(value)  # type: ignore[arg-type]  # numpy floats, Decimal, Fraction
    except (TypeError, ValueError, OverflowError):
        return None
    return int(number) if math.isfinite(number) else None


def clamp_progress(done: int, total: int) -> int:
    """``done`` moved into 0..total."""
    return max(0, min(done, total))


def as_fraction(value: object) -> float | None:
    """A confidence: any real number, clamped into 0..1; ``None`` when not a finite number."""
    if isinstance(value, (str, bytes)) or value is None:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    else:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(number):
        return None
    return max(0.0, min(1.0, number))


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``, the cut marked with an ellipsis."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def as_text(value: object, max_chars: int) -> str | None:
    """A short text field: ``str()`` of a non-string, clipped; ``None`` when blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:  # a __str__ that raises must not reach job code
            return None
    if not value.strip():
        return None
    return clip(value, max_chars)


def message_text(value: object) -> str | None:
    """An event message: any value as text, clipped to the contract's limit."""
    if value is None:
        return None
    return as_text(value, d.MAX_MESSAGE_CHARS) or ""


def json_details(details: object) -> dict[str, Any] | None:
    """``details`` as a dict when it is a mapping, else ``None`` (left out)."""
    if isinstance(details, Mapping):
        return dict(details)
    return None
