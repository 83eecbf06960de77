"""A ``Sweeper.run()`` on a thread that counts its passes, for tests that must know the
sweeper swept again (and published nothing more) rather than sleep for it."""

from __future__ import annotations

import threading

from progress_sdk.sweeper import Sweeper, SweepResult


class Sweeping:
    """``sweeper.run(stop, interval)`` on a daemon thread; ``passes`` counts the passes it
    finished (its ``sweep`` is wrapped on the instance, so ``run()`` itself is what runs)."""

    def __init__(self, sweeper: Sweeper, interval: float) -> None:
        self.sweeper = sweeper
        self.passes = 0
        self._done = threading.Condition()
        inner = sweeper.sweep

        def sweep(now: float | None = None) -> SweepResult:
            result = inner(now)
            with self._done:
                self.passes += 1
                self._done.notify_all()
            return result

        sweeper.sweep = sweep  # type: ignore[method-assign]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=sweeper.run, args=(self._stop, interval),
                                        daemon=True)
        self._thread.start()

    def two_more_passes(self, timeout: float = 60.0) -> None:
        """Wait until two more passes finished, so one surely began after this call (the
        first may have been under way); ``timeout`` only ends a hung test."""
        with self._done:
            target = self.passes + 2
            assert self._done.wait_for(lambda: self.passes >= target, timeout), "no sweeps"

    def stop(self) -> None:
        """Stop the thread (it releases the lease) and wait for it."""
        self._stop.set()
        self._thread.join(10)
