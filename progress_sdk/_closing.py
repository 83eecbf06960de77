"""Closing a publisher: flush(), close(), the bounded wait at a run's end, the exit flush,
and the registry of live publishers that forks and interpreter exit need.

close() first refuses new media runs (closing), fails the runs job code left open, then
refuses everything (closed); it must never wait on its own thread (a signal handler that
interrupted the publisher's lock or one of its runs) and must return within its timeout
even when Redis is down.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import cast

from . import defaults as d
from ._buffer import EventBuffer
from ._sender import Sender
from ._sink import EventSink
from .event_types import PROCESSING_STARTED
from .exceptions import PublisherClosedError
from .tracking import fail_open_runs, inside_a_run
from .transport import Transport

__all__ = ["Closing", "live_publishers"]


class Closing:
    """The closing half of ``ProgressPublisher`` (mixed into it, which sets the
    attributes below in ``_init_state``)."""

    _lock: threading.RLock
    _settled: threading.Condition
    _buffer: EventBuffer
    _sender: Sender
    _transport: Transport
    _pid: int
    fail_runs_left_open: bool
    finish_flush_timeout: float

    def _init_closing(self) -> None:
        # ``_close_started``: a close() is past its first step.
        self._closing = False
        self._closed = False
        self._close_started = False
        self._close_result = False
        # Set when the first close() has decided its result: later calls wait for it.
        self._close_done = threading.Event()

    def _sink(self) -> EventSink:
        """This publisher as the tracking API's sink (ProgressPublisher is one)."""
        return cast("EventSink", self)

    def _after_fork_in_child(self) -> None:
        """Start afresh in a forked child (the publisher's)."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def _refuse_if_closing(self, event: str) -> None:
        """Raise PublisherClosedError for an event close() no longer takes. While close()
        fails the runs left open, their events still go in, but a new run's
        PROCESSING_STARTED does not: close() would not see that run, and its terminal
        event would be refused (a panel that never ends). Once closed, nothing goes in.
        Called under the lock that orders accepting with close() (testing: its own)."""
        if self._closed or (self._closing and event == PROCESSING_STARTED):
            raise PublisherClosedError(
                "emit() after close(): create a new ProgressPublisher, or emit before closing"
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted before this call is published or dropped.

        Held progress values are sent at once. Returns True if they all were before
        ``timeout`` seconds (None: no limit). Events that other threads emit meanwhile
        are not waited for.
        """
        return self._wait_settled(timeout, stall_after=None)

    def _wait_settled(self, timeout: float | None, *, stall_after: float | None) -> bool:
        """flush(); with ``stall_after``, give up once the publish call under way has
        moved no byte that long (a frozen server; see ``Sender.stalled``)."""
        if self._held_here():
            return False  # a signal handler interrupting emit(): see close()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            return self._sender.wait_settled(deadline, stall_after)

    def close(self, timeout: float = d.DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Send what is buffered (for up to ``timeout`` seconds), stop the sender, disconnect.

        Returns True when nothing accepted was lost. Events still buffered when the
        timeout passes are counted as ``dropped["closed"]``. Idempotent: a later call
        returns the first call's result, waiting (up to its own ``timeout``) for the first
        call to finish; False if it has not.

        Called from a signal handler that interrupted this publisher's own lock or one
        of its media runs on the same thread (inside ``emit()``, or a run's change such
        as its end), it cannot wait: it refuses new media runs from then on and returns
        False at once; a later ``close()`` or the exit hook finishes.
        """
        if self._held_here() or inside_a_run(self._sink()):
            self._closing = True
            return False
        with self._lock:
            first = not self._close_started
            self._close_started = self._closing = True
        if not first:
            return self._close_done.wait(timeout) and self._close_result
        try:
            self._end_runs_left_open()
            delivered = self._stop_sending(timeout)
            self._transport.close()
            live_publishers.discard(self)
            with self._lock:
                lost = {k: n for k, n in self._dropped_locked().items() if k != "fenced"}
                self._close_result = delivered and not lost
        finally:
            self._close_done.set()
        return self._close_result

    def _end_runs_left_open(self) -> None:
        """close()'s first step, while new runs are refused: the runs left open end with
        PROCESSING_FAILED; then nothing more is accepted."""
        if self.fail_runs_left_open:
            fail_open_runs(self._sink(), "the worker stopped before this media's analysis finished")
        with self._lock:
            self._closed = True
            self._sender.begin_closing()

    def _held_here(self) -> bool:
        """Whether this thread holds the lock: a signal handler interrupted it there."""
        # RLock._is_owned is what threading.Condition itself asks; typeshed omits it.
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def _stop_sending(self, timeout: float) -> bool:
        """close()'s delivery part: flush, stop the thread, and count what is left as
        dropped["closed"]. True when everything was delivered (or dropped and counted
        before)."""
        sender = self._sender
        sender.wake()
        deadline = time.monotonic() + timeout
        # flush() restarts a sender that died with work queued. A slice of the budget is
        # kept for stopping the thread: close() must return within its timeout even when
        # Redis is down.
        delivered = self.flush(max(0.0, timeout * 0.9 - 0.05))
        sender.stop(max(0.0, deadline - time.monotonic()))
        with self._lock:
            # Whatever still waits (not sent in time, or behind a sender that died) is
            # counted, never left queued; a batch still in flight is the thread's to count.
            if self._buffer.drain():
                delivered = False
            self._settled.notify_all()
        return delivered

    def run_ended(self) -> None:
        """Called by a media run's terminal event: wait, bounded, for delivery.

        The process may end right after the job with os._exit (RQ's work horse does, and
        it may have created this publisher itself, so no fork hook knows), which skips
        atexit and would lose the run's last events. With Redis up this costs well under
        a millisecond once per run; while Redis is known to be down it costs nothing.
        """
        timeout = self.finish_flush_timeout
        if timeout <= 0 or self._pid != os.getpid():
            return
        sender = self._sender
        with self._lock:
            known_down = sender.known_down()
        # A server that takes our bytes but does not answer (frozen, overloaded) costs
        # each run at most STALL_NOTICE: then, and while it lasts, runs do not wait.
        if not known_down and not sender.stalled(d.STALL_NOTICE):
            self._wait_settled(timeout, stall_after=d.STALL_NOTICE)

    def _flush_at_exit(self, timeout: float) -> None:
        if not self._close_started and self._pid == os.getpid():
            # As close() does first: daemon threads still run job code during exit, and a
            # run they started after the open runs were failed would never end.
            with self._lock:
                self._closing = True
            if self.fail_runs_left_open:
                fail_open_runs(
                    self._sink(), "the worker exited before this media's analysis finished"
                )
            self.flush(timeout)

    def _dropped_locked(self) -> dict[str, int]:
        return dict(self._buffer.dropped + self._sender.counters().dropped)


# Weak, so that a publisher nobody uses is collected; one whose sender thread runs stays
# here anyway, as the thread keeps it alive (Sender's keep_alive) until close() ends it.
live_publishers: weakref.WeakSet[Closing] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for publisher in list(live_publishers):
        publisher._after_fork_in_child()


def _flush_at_exit() -> None:
    # Bounded: a dead Redis must not hold the process at exit for more than a moment.
    deadline = time.monotonic() + d.DEFAULT_ATEXIT_FLUSH_TIMEOUT
    for publisher in list(live_publishers):
        publisher._flush_at_exit(max(0.0, deadline - time.monotonic()))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
atexit.register(_flush_at_exit)
