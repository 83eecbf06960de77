"""The publisher's sender: one daemon thread that drains the buffer into the transport.

It waits for work (or a held value's deadline), takes a batch, serialises it, hands it to
the transport and accounts for the ``Delivery`` it gets back: published, refused (counted
as dropped, never resent), not sent and safe to resend (back to the head of the buffer,
retried with backoff while Redis is unreachable), or of unknown fate (counted as
dropped: pub/sub is at-most-once). Nothing it does can raise into job code: what goes
wrong is counted and logged once per outage or reason.

Every method that touches the buffer or the counters holds the publisher's lock
(``settled``'s); the transport is only ever called without it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from . import defaults as d
from ._buffer import DONE, Entry, EventBuffer
from ._resp import Activity
from ._wire import WireEncoder
from .liveness import Liveness
from .redis_urls import mask_url
from .transport import Command, ConnectFailed, Delivery, Transport

logger = logging.getLogger("progress_sdk")


class OutgoingEvent(Protocol):
    """What a batch hook sees of each event of a batch."""

    media_id: str
    event: str
    seq: int
    ts: float | None
    """When the event was accepted (``time.time()``)."""
    fields: dict[str, Any] | None
    """The event's wire fields without the envelope (kept while a hook is set)."""


BatchHook = Callable[[str, Sequence[OutgoingEvent]], Sequence[Command]]
"""Given the publisher's ``source`` and a batch's events in order, the extra Redis
commands to write in the same pipeline, before the batch's PUBLISH commands. Called again
for the same events if the batch is sent again after a connection reset."""

WireHook = Callable[[Sequence[bytes]], Sequence[Command]]
"""``BatchHook`` given the batch's wire bytes instead (the snapshots): it needs no event
to keep its fields dict while it waits in the buffer."""


class Sender:
    """Drains an ``EventBuffer`` through a ``Transport`` on a thread of its own."""

    def __init__(
        self,
        buffer: EventBuffer,
        settled: threading.Condition,
        transport: Transport,
        encoder: WireEncoder,
        *,
        batch_size: int,
        name: str,
        source: str,
        batch_hook: BatchHook | None = None,
        wire_hook: WireHook | None = None,
        route: Callable[[str], bytes] | None = None,
        keep_alive: object = None,
        liveness: Liveness | None = None,
        withheld: Callable[[], list[int]] | None = None,
    ) -> None:
        self.buffer = buffer
        # The thread references this sender, so whatever is kept here lives while the
        # thread runs (until close()): the publisher front, whose exit flush otherwise
        # misses a publisher job code no longer references, with events still queued.
        self.keep_alive = keep_alive
        self.source = source
        self.settled = settled  # its lock guards the buffer and every counter below
        self.transport = transport
        self.encoder = encoder
        self.batch_size = batch_size
        self.batch_hook = batch_hook
        self.wire_hook = wire_hook
        self.route = route
        """media_id -> its shard channel; None: every event on the transport's channel."""
        # Liveness (progress_sdk.liveness): the key refreshed on this thread's own timer,
        # and the positions of a batch's events the wire hook found fenced.
        self.liveness = liveness
        self.withheld = withheld
        self.name = name
        # Wakes the idle sender. The front sets it while holding the lock, so a signal
        # handler can never find the event's own lock held by its thread (the woken
        # sender then waits for the lock a moment; measured: no change in emit() p50,
        # idle or busy).
        self.wakeup = threading.Event()
        self.stop = threading.Event()
        self.idle = False
        self.flushers = 0  # flush() calls waiting: held values go out at once
        self.closing = False
        self.running = False  # the thread is running (set under the lock)
        self.publishing_since: float | None = None  # monotonic time a publish call began
        self.published = 0
        self.dropped: Counter[str] = Counter()
        self.reconnects = 0
        self.connected = False
        self.last_error: str | None = None
        self.no_subscribers = 0
        self.extra_failed = 0  # the batch hook's extra commands (snapshot writes) that failed
        self._logged: set[str] = set()
        self._outage_started: float | None = None
        self._backoff = d.RECONNECT_BACKOFF_INITIAL
        self._thread: threading.Thread | None = None

    # -- the thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (under the lock: by the first accepted event, or by the next
        one after the thread ended)."""
        self.running = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        """Whether ``start`` was called."""
        return self._thread is not None

    def is_alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def known_down(self) -> bool:
        """Whether the last attempt to reach Redis failed (read under the lock)."""
        return not self.connected and self.last_error is not None

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
        since = self.publishing_since
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

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                if not self._deliver(batch):
                    return
        except BaseException:
            # A bug outside any batch. The thread ends; the next emit(), flush() or close()
            # starts a new one for what is left.
            logger.exception(
                "progress_sdk: sender thread failed; the next emit, flush or close restarts it"
            )
            with self.settled:
                self.last_error = "sender thread failed (see log)"
        finally:
            with self.settled:
                self.running = False
                lost = len(self.buffer.in_flight)
                if lost:  # the batch it held when it failed: counted, not left in flight
                    self.dropped["sender_error"] += lost
                    self.buffer.finish_batch()
                self.settled.notify_all()
            if self.closing and self.liveness is not None:
                self.liveness.release()
            if self.stop.is_set():
                # close() gave up waiting for this thread (a slow Redis): the connection
                # it may have opened since is released here, not left behind.
                self.transport.close()

    def _deliver(self, batch: list[Any]) -> bool:
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

    def _next_batch(self) -> list[Any] | None:
        """Wait for work; take up to batch_size events, numbered. None: stop."""
        buffer = self.buffer
        while True:
            with self.settled:
                buffer.release_due(everything=self.flushers > 0 or self.closing)
                if buffer.lost:  # terminal events a full buffer gave up, once it has room
                    buffer.resend_lost()
                if buffer.ready:
                    self.idle = False
                    return buffer.take(self.batch_size)
                if self.closing:
                    return None
                deadline = buffer.next_deadline()
                # Cleared under the lock: an event accepted from here on sees the sender
                # idle and sets wakeup; one accepted before is seen in buffer.ready above.
                self.idle = True
                self.wakeup.clear()
            timeout = None if deadline is None else max(0.0, deadline - buffer.clock())
            live = self.liveness
            due = None if live is None else live.due_in()
            if due is not None:
                # The key is refreshed however long the job is silent.
                if due <= 0:
                    live.refresh()  # type: ignore[union-attr]
                    continue
                timeout = due if timeout is None else min(timeout, due)
            self.wakeup.wait(timeout)

    # -- one batch --------------------------------------------------------------------

    def _send(self, batch: list[Any]) -> Delivery | None:
        """Deliver one batch. None when nothing of it was left to send."""
        live = self.liveness
        if live is not None and (due := live.due_in()) is not None and due <= 0:
            live.refresh()  # also under load; and a new publisher's first media are owned
        payloads = self._payloads(batch)
        if not payloads:
            self._finish_batch()
            return None
        hooked = self.batch_hook is not None or self.wire_hook is not None
        extra = self._extra_commands(batch, payloads) if hooked else ()
        if not payloads:  # every event withheld (fenced)
            self._finish_batch()
            return None
        self.publishing_since = time.monotonic()
        try:
            if self.route is not None:  # shard channels: each media's own
                route = self.route
                return self.transport.publish(payloads, extra, [route(e.media_id) for e in batch])
            # Without extra commands the call is the one-argument form every transport takes.
            if extra:
                return self.transport.publish(payloads, extra)
            return self.transport.publish(payloads)
        except ConnectFailed as exc:
            return Delivery.nothing_sent(len(payloads), mask_url(str(exc)))
        finally:
            self.publishing_since = None

    def _payloads(self, batch: list[Any]) -> list[bytes]:
        """The batch's bytes, serialising its progress events, in place; one that cannot
        be serialised (its data was changed after emit()) is dropped alone."""
        payloads: list[bytes] = []
        kept: list[Any] = []
        failed: list[tuple[Entry, Exception]] = []
        keep = self.batch_hook is not None
        for item in batch:
            if type(item) is bytes:
                payloads.append(item)
                kept.append(item)
                continue
            try:
                payloads.append(item.finish(self.encoder, keep=keep))
            except (TypeError, ValueError, RecursionError) as exc:
                failed.append((item, exc))
            else:
                kept.append(item)
        if failed:
            self._drop_unserialisable(batch, kept, failed)
        return payloads

    def _drop_unserialisable(
        self, batch: list[Any], kept: list[Any], failed: list[tuple[Entry, Exception]]
    ) -> None:
        # One locked step: counted as dropped and out of the in-flight list (``batch`` is
        # the buffer's) together, so no stats() counts an event both ways.
        with self.settled:
            self.dropped["unserialisable"] += len(failed)
            for entry, _ in failed:
                entry.state = DONE
            batch[:] = kept
        entry, exc = failed[0]
        self._log_once(
            "unserialisable",
            "progress_sdk: dropped a %s event of media %r that is no longer "
            "JSON-serialisable (was its data changed after emit()?): %s (logged once; "
            "counted as dropped[unserialisable])",
            entry.event,
            entry.media_id,
            exc,
        )

    def _extra_commands(self, batch: list[Any], payloads: list[bytes]) -> list[Command]:
        extra: list[Command] = []
        if self.wire_hook is not None:
            extra += self._run_hook(self.wire_hook, payloads)
            if self.withheld is not None and (positions := self.withheld()):
                self._withhold(batch, payloads, positions)
        if self.batch_hook is not None:
            extra += self._run_hook(self.batch_hook, self.source, batch)
        return extra

    def _run_hook(self, hook: Callable[..., Sequence[Command]], *args: Any) -> Sequence[Command]:
        try:
            return hook(*args)
        except KeyboardInterrupt:
            raise
        except BaseException:
            # Even a SystemExit from the hook's code costs only this batch's extras: the
            # hook runs on the sender's thread, which must not end with events queued.
            self._log_once(
                "batch_hook",
                "progress_sdk: the batch hook failed; its commands are left out of this batch",
                exc_info=True,
            )
            return ()

    def _withhold(self, batch: list[Any], payloads: list[bytes], positions: list[int]) -> None:
        """Take the events of runs a sweeper ended out of the batch: counted as
        ``dropped["fenced"]`` (one locked step, as for unserialisable ones)."""
        gone = set(positions)
        with self.settled:
            self.dropped["fenced"] += len(gone)
            for i in gone:
                if type(batch[i]) is not bytes:
                    batch[i].state = DONE
            batch[:] = [item for i, item in enumerate(batch) if i not in gone]
        payloads[:] = [p for i, p in enumerate(payloads) if i not in gone]

    def _finish_batch(self, requeue: list[Any] | None = None) -> None:
        with self.settled:
            self.buffer.finish_batch(requeue)
            self.settled.notify_all()

    def _drop(self, batch: list[Any], reason: str, error: str) -> None:
        with self.settled:
            self.dropped[reason] += len(batch)
            self.last_error = error
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
            self.published += delivery.published
            if delivery.refused:
                self.dropped["rejected"] += delivery.refused
            self.no_subscribers += max(0, delivery.published - delivery.receivers)
            self.extra_failed += delivery.extra_failed
            if delivery.error is not None:
                self.last_error = delivery.error
            self.connected = not delivery.not_sent
            # Counted with the batch it delivered: whoever sees it settled sees this.
            # Our transports count every new connection, also one made before a batch
            # without any failing (a restart between two batches); a transport that does
            # not (a test double) has its recoveries after a failed batch counted.
            made = getattr(self.transport, "reconnects", None)
            if isinstance(made, int):
                self.reconnects = made
            elif recovered:
                self.reconnects += 1
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
        self.dropped["delivery_unknown"] += len(rest)
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
        if self.stop.wait(self._backoff * random.uniform(0.5, 1.0)):
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
