"""Locks that raise a signal while the main thread holds them, for the signal-handler
scripts of test_publisher_close.py (each runs in a process of its own), or say when
another thread is about to take them.

A script calls ``LockPoints.install`` before it creates what it tests: from then on the
standard library's ``threading.RLock()`` and ``threading.Lock()``, called from
progress_sdk's code, return a ``SignallingLock``, the same lock with a probe. Every time
the main thread takes one or is about to let one go is a point (``only`` counts one
kind); ``fire_at`` picks the point at which SIGUSR1 is raised (``signal.raise_signal``
runs the handler before it returns), so the handler runs while that lock is held, as a
real signal may. Nothing of the publisher's is read or replaced: the test reaches its
locks through the factories it creates them with.
"""

from __future__ import annotations

import inspect
import signal
import threading
from collections.abc import Callable
from typing import Any


class LockPoints:
    """The points the main thread passed in the locks made since ``install``."""

    def __init__(self) -> None:
        self.made = 0  # locks handed out
        self.passed = 0  # points passed while watching
        self.fire_at: int | None = None  # the point (1-based) at which SIGUSR1 is raised
        self.only: str | None = None  # count only points of this kind ("take", "let go")
        self.fired: str | None = None  # "take" or "let go": where the handler ran
        self.watching = False
        # Called on any other thread right before it takes a probed lock (it may wait).
        self.other_thread_takes: Callable[[], None] | None = None
        self._real = (threading.RLock, threading.Lock)
        self._main = threading.main_thread()

    def install(self) -> None:
        """Make ``threading.RLock()`` and ``threading.Lock()`` called from progress_sdk
        return probed locks."""
        threading.RLock, threading.Lock = map(self._probed, self._real)

    def uninstall(self) -> None:
        """The factories as they were; locks already made keep their probe."""
        threading.RLock, threading.Lock = self._real

    def _probed(self, real: Any) -> Any:
        def make() -> Any:
            caller = inspect.currentframe()
            caller = caller.f_back if caller is not None else None
            module = caller.f_globals.get("__name__", "") if caller is not None else ""
            if not module.startswith("progress_sdk"):
                return real()
            self.made += 1
            return SignallingLock(real(), self)

        return make

    def point(self, where: str) -> None:
        """A point: the main thread took a probed lock or is about to let it go."""
        if not self.watching or threading.current_thread() is not self._main:
            return
        if self.only is not None and where != self.only:
            return
        self.passed += 1
        if self.passed == self.fire_at:
            self.watching = False  # what the handler takes is not counted
            self.fired = where
            try:
                signal.raise_signal(signal.SIGUSR1)
            finally:
                self.watching = True


class SignallingLock:
    """A lock (``threading.RLock`` or ``Lock``) that tells its ``LockPoints`` when it is
    taken or let go."""

    def __init__(self, lock: Any, points: LockPoints) -> None:
        self.lock = lock
        self.points = points

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        told = self.points.other_thread_takes
        if told is not None and threading.current_thread() is not threading.main_thread():
            told()
        got: bool = self.lock.acquire(blocking, timeout)
        if got:
            self.points.point("take")
        return got

    def release(self) -> None:
        self.points.point("let go")
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __getattr__(self, name: str) -> Any:
        # The rest of the lock's interface as it is: what threading.Condition asks of a
        # lock it is given (whether it is owned, releasing it while it waits).
        return getattr(self.lock, name)
