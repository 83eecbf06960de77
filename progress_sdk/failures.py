"""The text a user reads when a model or a media fails.

``data.error_message`` is shown in the product's UI, so by default it is the exception's
own text, without its class name (``Task exceeded maximum timeout value (3 seconds)``,
not ``JobTimeoutException: Task exceeded ...``); the class goes to
``data.details.error_type`` for logs and support. A mapping given to
``ProgressPublisher(error_messages=...)`` replaces that text for chosen exception types::

    def gpu_text(error: BaseException) -> str | None:
        if "CUDA out of memory" in str(error):
            return "The GPU ran out of memory; try again later"
        return None          # not this one: fall back to the exception's own text

    publisher = ProgressPublisher(error_messages={
        TimeoutError: "The analysis took too long and was stopped",
        RuntimeError: gpu_text,
    })

The most specific class of the exception's MRO found in the mapping wins; a callable may
return ``None`` to pass. A hook that raises is ignored (the job's own exception matters
more than a pretty message).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

from . import defaults as d
from ._lenient import GENERIC_ERROR, clip

__all__ = ["ErrorMessages", "describe_error", "error_type_name", "traceback_text"]

logger = logging.getLogger("progress_sdk")

ErrorMessages = Mapping[
    type[BaseException], str | Callable[[BaseException], str | None]
]
"""Exception type → the text users read, or a callable returning it (``None``: pass)."""


def error_type_name(error: BaseException) -> str:
    """``module.QualName`` of the exception's class (just the name for builtins)."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _own_text(error: BaseException) -> str:
    try:
        return str(error).strip()
    except Exception:  # an exception whose __str__ raises still fails its model
        return ""


def _mapped_text(error: BaseException, messages: ErrorMessages) -> str | None:
    for cls in type(error).__mro__:
        entry = messages.get(cls)
        if entry is None:
            continue
        if isinstance(entry, str):
            return entry
        try:
            text = entry(error)
        except Exception:
            logger.warning(
                "progress_sdk: the error_messages hook for %s raised; using the error's own "
                "text", cls.__qualname__, exc_info=True,
            )
            return None
        if text:
            return str(text)
    return None


def describe_error(
    error: BaseException | str, messages: ErrorMessages | None = None
) -> tuple[str, str | None]:
    """The user-facing text of ``error`` and its type name (``None`` for a string).

    An exception's text is never empty (a generic sentence stands in for an exception
    without one); a string is returned stripped, so the caller can refuse a blank one.
    Either is clipped to ``MAX_ERROR_MESSAGE_CHARS``.
    """
    if not isinstance(error, BaseException):
        return clip(error.strip(), d.MAX_ERROR_MESSAGE_CHARS), None
    text = (_mapped_text(error, messages) if messages else None) or _own_text(error)
    return clip(text or GENERIC_ERROR, d.MAX_ERROR_MESSAGE_CHARS), error_type_name(error)


# The exception line that ends a formatted traceback: ``module.Class: text`` or ``Class``.
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?::[ \t]*(?P<text>.*))?")


def traceback_text(formatted: str) -> str:
    """The user-facing text of an exception known only as a formatted traceback.

    Another process (RQ's work horse, say) hands over ``traceback.format_exception``
    text, which ends with ``module.Class: text`` (and the text's further lines); users
    read only the text, as ``describe_error`` gives them for a live exception. A class
    without a text gives the generic sentence; anything that is not a traceback comes
    back as its last line.
    """
    lines = [line for line in formatted.rstrip().splitlines() if line.strip()]
    if not lines:
        return GENERIC_ERROR
    if not formatted.lstrip().startswith("Traceback"):
        return clip(lines[-1].strip(), d.MAX_ERROR_MESSAGE_CHARS)
    # The exception's lines are the unindented ones after the last frame (indented).
    first = len(lines)
    while first > 0 and not lines[first - 1][:1].isspace():
        first -= 1
    first = min(first, len(lines) - 1)
    match = _EXCEPTION_LINE.fullmatch(lines[first].strip())
    if match is None:
        text = " ".join(line.strip() for line in lines[first:])
    else:
        text = " ".join([match.group("text") or "", *(line.strip() for line in lines[first + 1:])])
    return clip(text.strip() or GENERIC_ERROR, d.MAX_ERROR_MESSAGE_CHARS)
