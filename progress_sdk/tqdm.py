"""A drop-in ``tqdm`` whose loops also report their model's progress (the ``tqdm`` extra).

::

    from progress_sdk.tqdm import tqdm        # instead of: from tqdm import tqdm

    with run.model("SIGLIP-LSTM-V4") as model:
        for frame in tqdm(frames):            # unchanged: the bar draws as before, and
            analyse(frame)                    # the model reports done/total, rate, ETA

A bar is bound to the model its thread started last and that still runs
(``progress_sdk.tracking.current_model``; ``model=`` names another), and reports as
``model.track()`` does: 0 of ``total`` when it starts, then the count after each item, with
``elapsed_seconds``, ``rate_per_second`` and ``eta_seconds`` in ``data.details``, through
the model's ``progress()``: the same coalescing (a few updates a second reach Redis, the
latest always) and the same lenient repairs. Without a total (a generator), the count goes
out when the bar closes. ``disable=True`` turns tqdm's own bar off; the reporting stays.
Outside any model it is plain tqdm.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

try:
    from tqdm import std
except ImportError as exc:  # job code without the extra: say which one
    raise ImportError(
        "progress_sdk.tqdm needs tqdm: pip install 'progress-sdk[tqdm]'", name=exc.name
    ) from exc

from .events import EventType
from .tracking import ModelRun, current_model, timing_details

__all__ = ["tqdm", "trange"]

T = TypeVar("T")


class tqdm(std.tqdm):  # type: ignore[type-arg]
    """``tqdm.tqdm`` that also reports progress to a model (see the module doc).

    Extra keyword arguments: ``model`` (default: the current model), ``event`` (the
    progress event type, default ``FRAME_ANALYSIS_PROGRESS``) and ``phase``.
    """

    def __init__(
        self,
        iterable: Any = None,
        *args: Any,
        model: ModelRun | None = None,
        event: EventType | str = EventType.FRAME_ANALYSIS_PROGRESS,
        phase: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(iterable, *args, **kwargs)
        self._sdk_model = model if model is not None else current_model()
        self._sdk_event = event
        self._sdk_phase = phase
        self._sdk_began = time.monotonic()
        self._sdk_done = -1  # the last count reported
        self._sdk_report(int(self.n))

    def __iter__(self) -> Iterator[Any]:
        # tqdm's own loop counts in a local variable and updates self.n only when it
        # redraws; model.track() reports after each item, and so does this.
        done = int(self.n)
        for item in super().__iter__():
            yield item
            done += 1
            self._sdk_report(done)

    def update(self, n: float | None = 1) -> bool | None:
        """tqdm's ``update`` (manual bars: ``bar.update(10)``), reported to the model."""
        shown: bool | None = super().update(n)
        self._sdk_report(int(self.n))
        return shown

    def close(self) -> None:
        """Close the bar; a bar without a total reports its count now, as the total."""
        model, done = self._sdk_model, int(self.n)
        self._sdk_model = None  # a closed bar reports nothing more (close may repeat)
        if model is not None and not self.total and done > self._sdk_done and done > 0:
            self._sdk_send(model, done, done)
        super().close()

    def _sdk_report(self, done: int) -> None:
        model = self._sdk_model
        total = int(self.total or 0)
        if model is None or total <= 0 or done <= self._sdk_done:
            return
        self._sdk_send(model, min(done, total), total)

    def _sdk_send(self, model: ModelRun, done: int, total: int) -> None:
        if model.state != "started":
            self._sdk_model = None  # the model ended: the bar goes on, unbound
            return
        self._sdk_done = done
        model.reporter(
            done, total, event=self._sdk_event, phase=self._sdk_phase,
            details=timing_details(done, total, time.monotonic() - self._sdk_began),
        )


def trange(*args: int, **kwargs: Any) -> tqdm:
    """``tqdm(range(*args), **kwargs)``, as ``tqdm.trange``."""
    return tqdm(range(*args), **kwargs)
