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
from collections.abc import Callable, Mapping

from . import defaults as d
from ._lenient import GENERIC_ERROR, clip

__all__ = ["ErrorMessages", "describe_error", "error_type_name"]

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
