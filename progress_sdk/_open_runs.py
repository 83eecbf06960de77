"""The media runs started and not yet ended, per sink: what ``close()`` and the exit
hook end with ``PROCESSING_FAILED`` (``fail_open_runs``), so no panel stays open."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import NamedTuple

from ._sink import EventSink

__all__ = ["OpenRun", "fail_open_runs", "inside_a_run", "register_run"]

logger = logging.getLogger("progress_sdk")


class OpenRun(NamedTuple):
    """What the registry keeps of an open run."""

    media_id: str
    fail_left_open: Callable[[str], bool]
    """Ends the run with PROCESSING_FAILED and the reason; False if it had ended."""
    lock: threading.RLock
    """The run's lock, held while it changes."""


# Runs started and not yet ended, per sink, for fail_open_runs. Strong references: a run
# job code dropped without ending it must still be failed at close or exit.
_open_runs: weakref.WeakKeyDictionary[EventSink, dict[int, OpenRun]] = (
    weakref.WeakKeyDictionary()
)
# Re-entrant: a signal handler calling close() (fail_open_runs) may interrupt the main
# thread while it holds this lock to register a run; a plain lock deadlocked there.
_open_runs_lock = threading.RLock()


def _forget_parent_runs() -> None:
    # A forked child's runs are its own: failing the parent's from the child would send
    # a second terminal event for runs the parent may still complete. The lock is new
    # too: another thread of the parent may have held it at the fork.
    global _open_runs_lock  # noqa: PLW0603 - the child needs a fresh lock
    _open_runs_lock = threading.RLock()
    _open_runs.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_runs)


def fail_open_runs(sink: EventSink, reason: str) -> int:
    """End every run of ``sink`` still open with ``PROCESSING_FAILED``; returns how many.

    ``ProgressPublisher.close()`` and the exit hook call it before they flush, so a media
    whose job never ended its run (it raised between ``start()`` and ``finish()``, or was
    still running when the worker shut down) ends on its user's screen with ``reason``
    instead of staying open. Never raises: it runs on the way out.
    """
    with _open_runs_lock:
        runs = list(_open_runs.pop(sink, {}).values())
    failed = 0
    for run in runs:
        try:
            failed += run.fail_left_open(reason)
        except Exception:
            logger.exception("progress_sdk: could not fail media %r left open", run.media_id)
    return failed


def inside_a_run(sink: EventSink) -> bool:
    """Whether this thread is inside one of ``sink``'s open runs' locked sections (a
    signal handler interrupted it there): ``close()`` can then neither end that run (it
    is in the middle of a change, its end maybe) nor wait for it (on its own thread)."""
    with _open_runs_lock:
        runs = list(_open_runs.get(sink, {}).values())
    # RLock._is_owned is what threading.Condition itself asks; typeshed omits it.
    return any(run.lock._is_owned() for run in runs)  # type: ignore[attr-defined]


def register_run(sink: EventSink, key: int, run: OpenRun | None) -> None:
    """Add a run of ``sink`` (under ``key``) to the runs ``fail_open_runs`` ends, or
    remove it (``run`` None)."""
    with _open_runs_lock:
        if run is not None:
            _open_runs.setdefault(sink, {})[key] = run
        else:
            _open_runs.get(sink, {}).pop(key, None)
