"""The loop both kinds of subscription run in ``pump``: messages into a handler until told
to stop.

``Subscription`` (one server) and ``ClusterSubscription`` (sharded pub/sub) differ only in
where a message comes from and in what they do between messages; each passes a
``receive`` function for that, and this loop keeps the rules of stopping in one place:
``stop`` set, ``count`` messages kept, ``timeout`` seconds passed, or ``idle`` (asked after
each quiet poll) says so.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

__all__ = ["Polled", "pump_messages"]


class Polled(enum.Enum):
    """What ``receive`` returns when it has no message to hand over."""

    QUIET = "quiet"
    """Nothing arrived within the wait: ``idle`` is asked whether to stop."""
    OTHER = "other"
    """Something that is not a message (a confirmation, a channel to move): carry on."""


def pump_messages(  # noqa: PLR0917 - the arguments of ``pump``, passed on
    receive: Callable[[float], bytes | str | Polled],
    handle: Callable[[bytes], bool],
    stop: threading.Event | None,
    count: int | None,
    timeout: float | None,
    idle: Callable[[], bool] | None,
    poll: Callable[[], float],
) -> int:
    """Feed what ``receive`` (waiting at most the seconds it is given, ``poll()`` or less
    near the deadline) returns to ``handle`` until a rule of stopping holds; return the
    number of messages ``handle`` kept."""
    deadline = None if timeout is None else time.monotonic() + timeout
    kept = 0
    while not (stop is not None and stop.is_set()) and not (count is not None and kept >= count):
        wait = poll()
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                break
        message = receive(wait)
        if message is Polled.QUIET:
            if idle is not None and idle():
                break
            continue
        if message is Polled.OTHER:
            continue
        if handle(message if isinstance(message, bytes) else str(message).encode()):
            kept += 1
    return kept
