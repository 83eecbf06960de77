"""Progress of loops: ``ModelRun.track``'s loop, its timing details, and the model a
progress bar that is not handed one reports to (``current_model``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from .events import EventType

if TYPE_CHECKING:
    from .tracking import ModelRun

__all__ = ["ProgressReport", "current_model", "set_current_model", "timing_details",
           "track_progress"]

T = TypeVar("T")


def timing_details(done: int, total: int | None, elapsed: float) -> dict[str, float]:
    """``data.details`` of a tracked loop: elapsed seconds, items a second, seconds left.

    Rate and ETA are left out until they can be estimated (nothing done yet).
    """
    details = {"elapsed_seconds": round(elapsed, 3)}
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        details["rate_per_second"] = round(rate, 3)
        if total is not None:
            details["eta_seconds"] = round(max(0, total - done) / rate, 3)
    return details



ProgressReport = Callable[..., None]
"""A model's ``progress(done, total, *, event, phase, details)``."""

# The model this thread (or asyncio task) started last: what a progress bar that is not
# handed a model reports to (progress_sdk.tqdm). A context variable, so two threads each
# running a model each get their own.
_current: ContextVar[ModelRun | None] = ContextVar("progress_sdk_current_model", default=None)


def set_current_model(model: ModelRun) -> None:
    """``model`` is the one this thread (or task) started last."""
    _current.set(model)


def current_model() -> ModelRun | None:
    """The model this thread (or task) started last, while it runs; else ``None``.

    A model ended from another thread (``close()`` failing open runs) is not current any
    more, although that thread could not reset this one's context.
    """
    model = _current.get()
    return model if model is not None and model.state == "started" else None


def track_progress(
    progress: ProgressReport, iterable: Iterable[T], total: int | None, *,
    event: EventType | str, phase: str | None,
) -> Iterator[T]:
    """``ModelRun.track``'s loop, reporting through ``progress`` (a wrapper such as RQ's
    ``TrackedModel`` passes its own, which also mirrors into ``job.meta``). ``total``
    defaults to ``len(iterable)``, taken at once."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return _tracked(progress, iterable, total, event, phase)


def _tracked(
    progress: ProgressReport, iterable: Iterable[T], total: int | None,
    event: EventType | str, phase: str | None,
) -> Iterator[T]:
    clock = time.monotonic
    began = clock()
    done = 0
    if total:
        progress(0, total, event=event, phase=phase, details=timing_details(0, total, 0))
    for item in iterable:
        yield item
        done += 1
        if total:
            progress(done, total, event=event, phase=phase,
                     details=timing_details(done, total, clock() - began))
    if total is None and done:
        progress(done, done, event=event, phase=phase,
                 details=timing_details(done, done, clock() - began))
