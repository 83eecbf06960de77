"""The sender thread's courier: delivers one batch at a time and accounts for it.

It serialises a batch, hands it to the transport and accounts for the ``Delivery`` it
gets back: published, refused (counted as dropped, never resent), not sent and safe to
resend (back to the head of the buffer, retried with backoff while Redis is unreachable),
or of unknown fate (counted as dropped: pub/sub is at-most-once). What goes wrong is
counted and logged once per outage or reason. Every change to the buffer or the counters
holds the publisher's lock (``settled``'s); the transport is only called without it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import defaults as d
from ._batch import BatchHook, BatchPrep, OutgoingEvent, WireHook
from ._buffer import EventBuffer
from ._resp import Activity
from ._wire import WireEncoder
from .liveness import Liveness
from .redis_urls import mask_url
from .transport import Command, ConnectFailed, Delivery, Transport

__all__ = ["BatchHook", "Courier", "OutgoingEvent", "SenderCounters", "UserRoute", "WireHook"]

logger = logging.getLogger("progress_sdk")


class SenderCounters(NamedTuple):
    """What the sender thread counted (``Sender.counters``; see ``PublisherStats``)."""

    published: int
    dropped: Counter[str]
    reconnects: int
    connected: bool
    last_error: str | None
    no_subscribers: int
    extra_failed: int
    wakeups: int = 0
    """Set by ``Sender.counters``: the front's wake-ups of the idle thread."""


class UserRoute(NamedTuple):
    """User channels (``progress_sdk.sharding.UserChannels``), as the courier uses them."""

    route: Callable[[str], bytes]
    """user_id -> its channel (``sharding.user_router``)."""
    contract: bool
    """Also publish on the contract (or shard) channel: then that PUBLISH is the one the
    event is accounted by, and the user channel's goes with the batch's extra commands."""


def user_channels(
    users: UserRoute, transport: Transport, batch: list[Any], payloads: list[bytes],
    extra: Sequence[Command],
) -> tuple[list[bytes] | None, Sequence[Command]]:
    """(the events' channels, extra commands) with user channels: each event on its
    user's channel alone; or, the contract channel kept, on the contract (shard)
    channel, its user channel's PUBLISH (a cluster's SPUBLISH) added to the extras in
    batch order, written before the batch's PUBLISHes in the same write: each channel
    keeps a media's order, and the event's fate is its contract PUBLISH's (a refused
    user channel's counts in ``extra_failed``)."""
    route = users.route
    named = [route(e.user_id) for e in batch]
    if not users.contract:
        return named, extra
    verb: bytes = getattr(transport, "publish_command", b"PUBLISH")
    return None, [*extra, *((verb, c, p) for c, p in zip(named, payloads, strict=True))]


class Courier:
    """Delivers the batches the sender thread takes, and keeps what they cost."""

    def __init__(
        self,
        buffer: EventBuffer,
        settled: threading.Condition,
        transport: Transport,
        encoder: WireEncoder,
        stop: threading.Event,
        *,
        source: str,
        batch_hook: BatchHook | None = None,
        wire_hook: WireHook | None = None,
        route: Callable[[str], bytes] | None = None,
        users: UserRoute | None = None,
        liveness: Liveness | None = None,
        withheld: Callable[[], list[int]] | None = None,
    ) -> None:
        self.buffer = buffer
        self.settled = settled  # its lock guards the buffer and every counter below
        self.transport = transport
        self.encoder = encoder
        self._stop = stop  # set by close(): a backoff wait ends at once
        self.route = route
        """media_id -> its shard channel; None: every event on the transport's channel."""
        self.users = users
        """Each event also (or only) on its user's channel; None: off."""
        # Liveness (progress_sdk.liveness): told what each batch's snapshot writes did.
        self.liveness = liveness
        self._publishing_since: float | None = None  # monotonic time a publish call began
        self._published = 0
        self._dropped: Counter[str] = Counter()
        self._reconnects = 0
        self._connected = False
        self._last_error: str | None = None
        self._no_subscribers = 0
        self._extra_failed = 0  # the batch hook's extra commands (snapshot writes) that failed
        self._logged: set[str] = set()
        self._outage_started: float | None = None
        self._backoff = d.RECONNECT_BACKOFF_INITIAL
        self._prep = BatchPrep(
            settled, encoder, self._dropped, self._log_once, source=source,
            batch_hook=batch_hook, wire_hook=wire_hook, withheld=withheld,
        )

    def counters(self) -> SenderCounters:
        """The thread's counters, for stats()."""
        return SenderCounters(
            self._published, self._dropped.copy(), self._reconnects, self._connected,
            self._last_error, self._no_subscribers, self._extra_failed,
        )

    def known_down(self) -> bool:
        """Whether the last attempt to reach Redis failed."""
        return not self._connected and self._last_error is not None

    def stalled(self, after: float) -> bool:
        """Whether the publish call under way is stalled: on a working connection, no
        byte has moved for more than ``after`` s, or four of Redis's usual answer times
        if longer (a frozen or overloaded Redis, not a distant one); still connecting,
        for more than CONNECT_TIMEOUT.

        Not the call's age: a fresh process's first call connects (TCP, AUTH/HELLO/SELECT,
        the cluster question) and a large batch takes its time while its replies flow;
        taken for stalls, they made the run's end stop waiting, and a process that ends
        with os._exit right after lost its last run, uncounted.
        """
        since = self._publishing_since
        if since is None:
            return False
        now = time.monotonic()
        activity: Activity | None = getattr(self.transport, "activity", None)
        if activity is None:  # a transport that does not say: the call's age
            return now - since > after
        if activity.ready < since:  # still connecting (ready is an earlier call's)
            return now - since > d.CONNECT_TIMEOUT
        # A distant Redis answers each batch later than ``after``: that is not a stall.
        return now - activity.moved > activity.patience(after)

    def thread_failed(self) -> None:
        """The thread ended on a bug outside any batch (under the lock)."""
        self._last_error = "sender thread failed (see log)"

    def drop_in_flight_locked(self) -> None:
        """The batch the ending thread held: counted, not left in flight."""
        lost = len(self.buffer.in_flight)
        if lost:
            self._dropped["sender_error"] += lost
            self.buffer.finish_batch()

    def deliver(self, batch: list[Any]) -> bool:
        """Send one batch and account for it. False: stop (close() gave up)."""
        try:
            delivery = self._send(batch)
            if self.liveness is not None:
                # Only snapshot writes Redis confirmed count as the media's news.
                self.liveness.delivered(
                    delivery is not None and not delivery.not_sent and not delivery.extra_failed
                )
            return True if delivery is None else self._account(batch, delivery)
        except Exception as exc:
            # Whatever went wrong costs this batch, never the sender.
            self._log_once(
                f"error:{type(exc).__name__}",
                "progress_sdk: unexpected error sending %d event(s); they are counted as "
                "dropped (sender_error) and sending continues (logged once per error type)",
                len(batch),
                exc_info=True,
            )
            self._drop(batch, "sender_error", mask_url(repr(exc)))
            return True

    def touch(self) -> None:
        """Between batches, on the liveness timer: a silent publisher's media are
        rewritten on a Redis restarted empty without waiting for their next event
        (``RedisTransport.touch``)."""
        touch = getattr(self.transport, "touch", None)
        if touch is None:
            return
        try:
            touch()
        except Exception:
            self._log_once("touch", "progress_sdk: checking the connection between batches "
                           "failed (logged once)", exc_info=True)

    # -- one batch --------------------------------------------------------------------

    def _send(self, batch: list[Any]) -> Delivery | None:
        """Deliver one batch. None when nothing of it was left to send."""
        live = self.liveness
        if live is not None and (due := live.due_in()) is not None and due <= 0:
            live.refresh()  # also under load; and a new publisher's first media are owned
        payloads = self._prep.payloads(batch)
        if not payloads:
            self._finish_batch()
            return None
        extra: Sequence[Command] = (
            self._prep.extra_commands(batch, payloads) if self._prep.hooked else ()
        )
        if not payloads:  # every event withheld (fenced)
            self._finish_batch()
            return None
        self._publishing_since = time.monotonic()
        try:
            channels = None
            if self.users is not None:
                channels, extra = user_channels(self.users, self.transport, batch, payloads,
                                                extra)
            if channels is None and self.route is not None:  # shard channels: each media's
                route = self.route
                channels = [route(e.media_id) for e in batch]
            if channels is not None:
                return self.transport.publish(payloads, extra, channels)
            # Without extra commands the call is the one-argument form every transport takes.
            if extra:
                return self.transport.publish(payloads, extra)
            return self.transport.publish(payloads)
        except ConnectFailed as exc:
            return Delivery.nothing_sent(len(payloads), mask_url(str(exc)))
        finally:
            self._publishing_since = None

    def _finish_batch(self, requeue: list[Any] | None = None) -> None:
        with self.settled:
            self.buffer.finish_batch(requeue)
            self.settled.notify_all()

    def _drop(self, batch: list[Any], reason: str, error: str) -> None:
        with self.settled:
            self._dropped[reason] += len(batch)
            self._last_error = error
            self.buffer.finish_batch()
            self.settled.notify_all()

    # -- accounting ---------------------------------------------------------------------

    def _account(self, batch: list[Any], delivery: Delivery) -> bool:
        """Record a batch's fate; wait out an outage. False: stop (close() gave up)."""
        done = delivery.published + delivery.refused
        if delivery.refused:
            self._log_refusals(delivery)
        if delivery.extra_failed:
            self._log_extra_failures(delivery)
        # Not sent: the batch's tail, or (a cluster batch spans masters) given positions.
        unsent = delivery.unsent
        rest = batch[done:] if unsent is None else [batch[i] for i in unsent]
        recovered = not delivery.not_sent and self._outage_started is not None
        with self.settled:
            self._published += delivery.published
            if delivery.refused:
                self._dropped["rejected"] += delivery.refused
            self._no_subscribers += max(0, delivery.published - delivery.receivers)
            self._extra_failed += delivery.extra_failed
            if delivery.error is not None:
                self._last_error = delivery.error
            self._connected = not delivery.not_sent
            # Counted with the batch it delivered: whoever sees it settled sees this.
            # Our transports count every new connection, also one made before a batch
            # without any failing (a restart between two batches); a transport that does
            # not (a test double) has its recoveries after a failed batch counted.
            made = getattr(self.transport, "reconnects", None)
            if isinstance(made, int):
                self._reconnects = made
            elif recovered:
                self._reconnects += 1
            if not rest:
                self.buffer.finish_batch()
            elif not delivery.resend:
                self._lose_unknown_locked(rest, delivery)
            else:
                self.buffer.finish_batch(rest, written=delivery.written)
            self.settled.notify_all()
        if not delivery.not_sent:
            self._outage_over()
            return True
        return True if not delivery.resend else self._retry_later(delivery)

    def _log_refusals(self, delivery: Delivery) -> None:
        self._log_once(
            f"refused:{delivery.error}",
            "progress_sdk: Redis at %s refused %d event(s) (%s); refused events are "
            "counted as dropped (rejected).",
            self.transport.description,
            delivery.refused,
            delivery.error,
        )

    def _log_extra_failures(self, delivery: Delivery) -> None:
        error = delivery.extra_error or "no reason given"
        self._log_once(
            f"extra:{error.split(' ', 1)[0]}",
            "progress_sdk: %d extra command(s) of a batch (snapshot writes, or the batch "
            "hook's) failed at %s (%s); the events themselves are not affected. Counted in "
            "stats().extra_failed (logged once per reason).",
            delivery.extra_failed,
            self.transport.description,
            error,
        )

    def _lose_unknown_locked(self, rest: list[Any], delivery: Delivery) -> None:
        logger.warning(
            "progress_sdk: no reply from %s (%s); %d event(s) of unknown fate counted as "
            "dropped (pub/sub is at-most-once).",
            self.transport.description,
            delivery.error,
            len(rest),
        )
        self._dropped["delivery_unknown"] += len(rest)
        self.buffer.finish_batch()

    def _retry_later(self, delivery: Delivery) -> bool:
        """Wait before sending the events put back (backoff with jitter). False: stop."""
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            logger.warning(
                "progress_sdk: Redis unreachable or not serving at %s (%s); buffering "
                "events and retrying with backoff. Job code is not affected.",
                self.transport.description,
                delivery.error,
            )
        if self._stop.wait(self._backoff * random.uniform(0.5, 1.0)):
            with self.settled:
                self.buffer.drain()
                self.settled.notify_all()
            return False
        self._backoff = min(self._backoff * 2, d.RECONNECT_BACKOFF_MAX)
        return True

    def _outage_over(self) -> None:
        self._backoff = d.RECONNECT_BACKOFF_INITIAL
        if self._outage_started is None:
            return
        logger.warning(
            "progress_sdk: Redis at %s reachable again after %.1f s; buffered events are "
            "being delivered.",
            self.transport.description,
            time.monotonic() - self._outage_started,
        )
        self._outage_started = None

    def _log_once(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        logger.error(message, *args, exc_info=exc_info)
