"""The latest progress of a job, mirrored into ``job.meta`` for RQ's own tools.

Polling clients and dashboards that read ``job.meta`` (``rq info``, ``Job.fetch(...).meta``)
see ``meta["progress"]``: the model, event type, ``progress``/``total`` and the time of
the latest progress call. A background thread saves it at most once per interval, so the
job's thread never waits on Redis for it; the last value is saved when the job ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["MetaMirror"]

log = logging.getLogger("progress_sdk.rq")


class MetaMirror:
    """Saves ``job.meta["progress"]`` from a thread, throttled to ``interval`` seconds."""

    def __init__(self, job: Any, interval: float) -> None:
        self._job = job
        self._interval = max(interval, 0.05)
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._wakeup = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._failed = False

    def update(self, snapshot: dict[str, Any]) -> None:
        """Remember the latest progress; cheap, no I/O."""
        with self._lock:
            self._pending = snapshot
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(
                    target=self._run, name="progress-sdk-meta", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            stopping = self._wakeup.wait(self._interval)
            self._save()
            if stopping:
                return

    def _save(self) -> None:
        with self._lock:
            snapshot, self._pending = self._pending, None
        if snapshot is None:
            return
        try:
            self._job.meta["progress"] = snapshot
            self._job.save_meta()
        except Exception as exc:  # a mirror must never break the job
            if not self._failed:
                self._failed = True
                log.warning("cannot mirror progress into job.meta of %s: %s", self._job.id, exc)

    def close(self, timeout: float) -> None:
        """Save the last value (waiting up to ``timeout``) and stop."""
        with self._lock:
            self._stop = True
            thread = self._thread
        if thread is None:
            return
        self._wakeup.set()
        thread.join(timeout)


def snapshot(model: str, event: str, done: int, total: int) -> dict[str, Any]:
    """What the mirror stores for one progress call."""
    return {"model": model, "event": event, "progress": done, "total": total,
            "updated_at": time.time()}
