"""The publisher's sender: one daemon thread that drains the buffer into the transport.

It waits for work (or a held value's deadline), takes a batch and hands it to its
``Courier`` (``progress_sdk._courier``), which delivers and accounts for it. Nothing it
does can raise into job code. The front talks to it through a few methods (waking it,
starting it, flushing, closing, stopping, its counters), each called under the
publisher's lock (``settled``'s) unless said otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._buffer import EventBuffer
from ._courier import BatchHook, Courier, OutgoingEvent, SenderCounters, UserRoute, WireHook
from ._wire import WireEncoder
from .liveness import Liveness
from .transport import Transport

# The hooks' types are defined with the courier that calls them; named from here too.
__all__ = ["BatchHook", "OutgoingEvent", "Sender", "SenderCounters", "UserRoute", "WireHook"]

logger = logging.getLogger("progress_sdk")


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
        users: UserRoute | None = None,
        keep_alive: object = None,
        liveness: Liveness | None = None,
        withheld: Callable[[], list[int]] | None = None,
    ) -> None:
        self.buffer = buffer
        # The thread references this sender, so whatever is kept here lives while the
        # thread runs (until close()): the publisher front, whose exit flush otherwise
        # misses a publisher job code no longer references, with events still queued.
        self.keep_alive = keep_alive
        self.settled = settled  # its lock guards the buffer and the state below
        self.batch_size = batch_size
        # Liveness (progress_sdk.liveness): the key refreshed on this thread's own timer.
        self.liveness = liveness
        self.name = name
        # Wakes the idle sender. The front sets it while holding the lock, so a signal
        # handler can never find the event's own lock held by its thread (the woken
        # sender then waits for the lock a moment; measured: no change in emit() p50,
        # idle or busy).
        self.wakeup = threading.Event()
        # Times the front woke the idle thread (stats().sender_wakeups): counted on the
        # branch that already pays for a futex wake, so an event that leaves the sender
        # asleep costs nothing more.
        self._wakeups = 0
        self._stop = threading.Event()
        self._idle = False
        self._flushers = 0  # flush() calls waiting: held values go out at once
        self._closing = False
        self._running = False  # the thread is running (set under the lock)
        self._courier = Courier(
            buffer, settled, transport, encoder, self._stop, source=source,
            batch_hook=batch_hook, wire_hook=wire_hook, route=route, users=users,
            liveness=liveness, withheld=withheld,
        )
        self._thread: threading.Thread | None = None

    # -- the front's side: called under the lock (``settled``'s) unless said ------------

    def wake_if_idle(self) -> None:
        """Wake the thread if it waits for work (an event went in). Under the lock, so that
        a signal handler interrupting the caller never finds the wakeup's own lock taken by
        its thread; an event that only replaced a waiting one leaves it asleep (waking
        it costs the job the interpreter lock)."""
        if self._idle:
            self._wakeups += 1
            self.wakeup.set()

    def ensure_running(self) -> bool:
        """Start the thread if work waits and it is not running (the first event, or the
        thread ended on a bug: what it left queued must still go out). Not once ``stop``
        was called. Returns whether the thread runs now."""
        if self._running:
            return True
        if self._stop.is_set() or not self.buffer.queued:
            return False
        self._running = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return True

    @contextlib.contextmanager
    def flushing(self) -> Iterator[None]:
        """While a flush() waits: held values go out at once, and the thread is woken."""
        self._flushers += 1
        self.wake_if_idle()
        try:
            yield
        finally:
            self._flushers -= 1

    def wait_settled(self, deadline: float | None, stall_after: float | None) -> bool:
        """flush()'s wait (under the lock, which it releases while waiting): until every
        event accepted so far is published or dropped; False at ``deadline`` (monotonic),
        or with ``stall_after``, once Redis stalls that long or is known to be down."""
        buffer = self.buffer
        target = buffer.flush_target()
        if not buffer.unsettled(target):
            return True
        # Restarted once per call: a thread that dies again is not restarted in a loop.
        restarts = 1
        with self.flushing():
            while buffer.unsettled(target):
                if not self._running:
                    if not restarts or not self.ensure_running():
                        return False
                    restarts -= 1
                if stall_after is not None and (self.stalled(stall_after) or self.known_down()):
                    return False  # Redis stalled or down meanwhile: stop waiting
                remaining = 0.5 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Bounded, so that a sender that ended or stalled is noticed.
                slice_ = 0.5 if stall_after is None else stall_after / 2
                self.settled.wait(min(remaining, slice_))
        return True

    def begin_closing(self) -> None:
        """Nothing more is accepted: the thread sends what is queued, held values
        included, then ends."""
        self._closing = True

    def wake(self) -> None:
        """Wake the thread whatever it waits for (no lock needed)."""
        self.wakeup.set()

    def stop(self, timeout: float) -> None:
        """Stop the thread, waiting up to ``timeout`` s for it to end (without the lock).
        A batch it still holds is its to account for; a backoff wait ends at once."""
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def counters(self) -> SenderCounters:
        """The thread's counters and the front's wake-ups of it, for stats()."""
        return self._courier.counters()._replace(wakeups=self._wakeups)

    def known_down(self) -> bool:
        """Whether the last attempt to reach Redis failed."""
        return self._courier.known_down()

    def stalled(self, after: float) -> bool:
        """Whether the publish call under way is stalled (``Courier.stalled``)."""
        return self._courier.stalled(after)

    @property
    def started(self) -> bool:
        """Whether the thread was ever started."""
        return self._thread is not None

    def _run(self) -> None:
        courier = self._courier
        try:
            while (batch := self._next_batch()) is not None:
                if not courier.deliver(batch):
                    return
        except BaseException:
            # A bug outside any batch. The thread ends; the next emit(), flush() or close()
            # starts a new one for what is left.
            logger.exception(
                "progress_sdk: sender thread failed; the next emit, flush or close restarts it"
            )
            with self.settled:
                courier.thread_failed()
        finally:
            with self.settled:
                self._running = False
                courier.drop_in_flight_locked()
                self.settled.notify_all()
            if self._closing and self.liveness is not None:
                self.liveness.release()
            if self._stop.is_set():
                # close() gave up waiting for this thread (a slow Redis): the connection
                # it may have opened since is released here, not left behind.
                courier.transport.close()

    def _next_batch(self) -> list[Any] | None:
        """Wait for work; take up to batch_size events, numbered. None: stop."""
        buffer = self.buffer
        while True:
            with self.settled:
                buffer.release_due(everything=self._flushers > 0 or self._closing)
                if buffer.lost:  # terminal events a full buffer gave up, once it has room
                    buffer.resend_lost()
                if buffer.ready:
                    self._idle = False
                    return buffer.take(self.batch_size)
                if self._closing:
                    return None
                deadline = buffer.next_deadline()
                # Cleared under the lock: an event accepted from here on sees the sender
                # idle and sets wakeup; one accepted before is seen in buffer.ready above.
                self._idle = True
                self.wakeup.clear()
            timeout = None if deadline is None else max(0.0, deadline - buffer.clock())
            live = self.liveness
            due = None if live is None else live.due_in()
            if due is not None:
                # The key is refreshed however long the job is silent.
                if due <= 0:
                    live.refresh()  # type: ignore[union-attr]
                    self._courier.touch()
                    continue
                timeout = due if timeout is None else min(timeout, due)
            self.wakeup.wait(timeout)

