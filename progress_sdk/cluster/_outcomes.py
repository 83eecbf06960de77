"""What a cluster node's replies mean for a batch's events: published, refused, to be
sent again, or of unknown fate; and the ``Delivery`` that reports them."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from .._resp import TRANSIENT_ERRORS
from ..redis_urls import mask_url
from ..transport import Command, Delivery

__all__ = [
    "NOT_RUN",
    "OK",
    "REFUSED",
    "REPLY_ERRORS",
    "RESEND",
    "UNKNOWN",
    "delivery_of",
    "keep_order",
    "key_of",
    "reply_text",
]


def key_of(command: Command) -> bytes | str | None:
    """The key a command is routed by: ``EVAL``/``EVALSHA``'s first key, else its first
    argument; None for a command without one (``SCRIPT LOAD``, ``EVAL`` of no key)."""
    name = str(command[0].decode() if isinstance(command[0], bytes) else command[0]).upper()
    if name in ("SCRIPT", "FUNCTION", "PING"):
        return None
    if name in ("EVAL", "EVALSHA", "FCALL"):
        index = 3 if int(command[2]) > 0 else None
    else:
        index = 1 if len(command) > 1 else None
    if index is None:
        return None
    key = command[index]
    return key if isinstance(key, (bytes, str)) else str(key)


NOT_RUN = TRANSIENT_ERRORS | {"MOVED", "ASK"}
"""Error reply codes meaning the node did not run the command: the slot is served
elsewhere (``MOVED``, ``ASK``), or the node cannot serve it now (``BUSY``, ``LOADING``,
``READONLY``...: ``_resp.TRANSIENT_ERRORS``, the single-server rule). Safe to send again
once the slot map is read afresh, unless a later event of its channel was published
(``keep_order``)."""

OK, REFUSED, RESEND, UNKNOWN = 0, 1, 2, 3

# redis-py raises an error reply as an exception named after the reply's first word, and
# drops that word from the text; subclasses come before their base classes here.
_ERROR_CODES: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.MovedError, "MOVED"),
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.ClusterCrossSlotError, "CROSSSLOT"),
)

# What read_response raises for an error reply: the connection itself is fine (LOADING
# comes as a ConnectionError subclass).
REPLY_ERRORS = (redis.ResponseError, redis.exceptions.BusyLoadingError)


def reply_text(exc: Exception) -> str:
    """An error reply's text as Redis wrote it (``MOVED 3999 host:port``)."""
    text = str(exc)
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return text if text.split(" ", 1)[0] == code else f"{code} {text}"
    return text


def keep_order(outcomes: list[int], names: Sequence[bytes]) -> None:
    """Refuse, instead of resending, an event not run when a later event of its channel
    was published: sent again, it would arrive behind that one, and consumers drop an
    event older than the last they saw of its media (the single-server rule, per channel:
    a channel's events all go to one master, in order)."""
    published_later: set[bytes] = set()
    for i in range(len(outcomes) - 1, -1, -1):
        if outcomes[i] == OK:
            published_later.add(names[i])
        elif outcomes[i] == RESEND and names[i] in published_later:
            outcomes[i] = REFUSED


def delivery_of(outcomes: list[int], receivers: int, errors: list[str],
                extra: int, extra_error: str | None) -> Delivery:
    """The ``Delivery`` of a batch whose events had ``outcomes``."""
    published = outcomes.count(OK)
    # SPUBLISH counts only the master's own subscribers; consumers subscribe on
    # replicas (to outlive a failover), so the count says nothing: not reported.
    receivers = published
    refused = outcomes.count(REFUSED)
    resend = [i for i, o in enumerate(outcomes) if o == RESEND]
    unknown = [i for i, o in enumerate(outcomes) if o == UNKNOWN]
    # A batch with both (one master timed out, another was reset: rare) sends none
    # again: nothing is published twice, and what is lost is counted.
    left = sorted(resend + unknown)
    error = mask_url(errors[0]) if errors else None
    if not left:
        return Delivery(published=published, refused=refused, receivers=receivers,
                        error=error, extra_failed=extra, extra_error=extra_error)
    tail = list(range(len(outcomes) - len(left), len(outcomes)))
    return Delivery(
        published=published, refused=refused, not_sent=len(left), resend=not unknown,
        receivers=receivers, error=error, extra_failed=extra, extra_error=extra_error,
        unsent=None if left == tail else tuple(left),
    )
