"""ModelRun: one model's analysis within a media run (``progress_sdk.tracking``).

A model reaches its run through a ``RunLink`` the run builds from its own methods: the
lock every "check the state, change it, emit" step holds, the run's emit, and its checks
and repairs of job code's input.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import _lenient, _rules
from . import defaults as d
from ._free_json import check_free_json
from ._loops import ProgressReport, set_current_model, track_progress
from ._run_checks import verdict_data
from .event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_QUEUED,
    ANALYSIS_STARTED,
    EVENT_TYPES,
    PHASE_EVENT_NAMES,
    PROGRESS_EVENT_NAMES,
    normalize_event_name,
)
from .events import EventType
from .exceptions import InvalidEventError, Problem, TrackingError

if TYPE_CHECKING:
    from .tracking import MediaRun

__all__ = ["ModelRun", "RunLink"]

logger = logging.getLogger("progress_sdk")


class RunLink(NamedTuple):
    """What a model uses of its media run (``MediaRun`` builds it from its own methods)."""

    lock: threading.RLock
    emit: Callable[[str, str, dict[str, Any]], None]
    text: Callable[[object, str], str]
    field: Callable[[str, object, int, str, str], str | None]
    failure: Callable[[object], tuple[str, dict[str, Any]]]
    forgive: Callable[[str, InvalidEventError], None]
    require_open: Callable[[str], None]
    model_finished: Callable[[bool], None]


T = TypeVar("T")

_MAX = d.MAX_JSON_INT  # the largest total a reader takes (defaults.MAX_JSON_INT)

_PROGRESS_UNITS = {
    row.name: (row.verb, row.unit)
    for row in EVENT_TYPES.values()
    if row.verb is not None and row.unit is not None
}
_STEP_MESSAGES = {row.name: row.verb for row in EVENT_TYPES.values() if row.phase and row.verb}
_STEP_PHASES = {row.name: row.phase for row in EVENT_TYPES.values() if row.phase is not None}



class ModelRun:
    """One model's analysis within a media run."""

    def __init__(
        self, run: MediaRun, link: RunLink, model_name: str, *, detached: bool = False
    ) -> None:
        self.run = run
        self._link = link  # what of its run the model uses (built by the run)
        self.model_name = model_name
        self._state = "new"  # new -> queued -> started -> completed | failed
        # A tracker for a model name that could not be repaired: it keeps the state
        # machine (so job code runs as usual) but emits nothing.
        self._detached = detached
        # Rule 3, per progress event type: progress never decreases, total never changes.
        self._last_progress: dict[str, tuple[int, int]] = {}
        self.reporter: ProgressReport = self.progress
        """What reports this model's progress for a bar bound to it (``current_model``):
        ``progress``, or a wrapper's (RQ's ``TrackedModel`` also mirrors into job.meta)."""

    def _emit(self, event: str, message: str, data: dict[str, Any]) -> None:
        if not self._detached:
            self._link.emit(event, message, {"model_name": self.model_name, **data})

    def queue(self) -> None:
        """Emit ``ANALYSIS_QUEUED`` (once, and only before ``start()``; ``MediaRun.queue``
        does it for several models at once)."""
        with self._link.lock:
            if self._state != "new":
                return
            self._state = "queued"
            self._emit(ANALYSIS_QUEUED, f"{self.model_name} queued", {})

    def start(self, message: str | None = None) -> ModelRun:
        """Emit ``ANALYSIS_STARTED``."""
        text = self._link.text(message or None, f"{self.model_name} analysis started")
        with self._link.lock:
            self._link.require_open(f"{self.model_name}.start()")
            if self._state == "started":
                return self
            if self._state not in ("new", "queued"):
                raise TrackingError(f"model {self.model_name!r} already {self._state}")
            self._state = "started"
            self._emit(ANALYSIS_STARTED, text, {})
        set_current_model(self)
        return self

    def _require_started(self, what: str) -> None:
        if self._state != "started":
            hint = (
                "call start() or use `with run.model(...)` first"
                if self._state in ("new", "queued")
                else "it already ended"
            )
            raise TrackingError(
                f"{self.model_name}.{what} while the model is {self._state}: {hint}"
            )

    def progress(
        self,
        done: int,
        total: int,
        *,
        event: EventType | str = EventType.FRAME_ANALYSIS_PROGRESS,
        phase: str | None = None,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Report ``done`` of ``total`` units (frames by default). Cheap: call it freely;
        the publisher sends at most ~10 updates a second per model, the latest always.

        Outside strict mode bad values are repaired (clamped, converted) or the call is
        skipped, and counted in ``stats().forgiven``; a strict publisher raises
        ``InvalidEventError``.
        """
        name = self._event_name(event, PROGRESS_EVENT_NAMES, "progress")
        if name is None:
            return
        # The checks of the common case are inline: this is the call jobs make per frame.
        if not (
            type(done) is int and type(total) is int and 0 <= done <= total and 0 < total <= _MAX
        ):
            counts = self._counts(name, done, total)
            if counts is None:
                return
            done, total = counts
        data: dict[str, Any] = {"progress": done, "total": total}
        if phase is not None:
            checked = self._link.field(
                "data.phase", phase, d.MAX_PHASE_CHARS, "a short stage name", "phase"
            )
            if checked is not None:
                data["phase"] = checked
        if details is not None:
            kept = self._checked_details(details, name)
            if kept is not None:
                data["details"] = kept
        verb, unit = _PROGRESS_UNITS[name]
        with self._link.lock:
            if self._state != "started":
                self._require_started(f"progress({done}, {total})")
            last = self._last_progress.get(name)
            if last is not None and (done < last[0] or total != last[1]):
                done, total = self._kept_rule_3(name, done, total, last)
                data["progress"], data["total"] = done, total
            default = f"{verb} {done}/{total} {unit}"
            text = default if message is None else self._link.text(message, default)
            # Everything is checked before the rule-3 state is recorded: a refused call
            # has no effect, so the job may retry it with a corrected argument.
            self._last_progress[name] = (done, total)
            self._emit(name, text, data)

    def track(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        *,
        event: EventType | str = EventType.FRAME_ANALYSIS_PROGRESS,
        phase: str | None = None,
    ) -> Iterator[T]:
        """Yield the items of ``iterable`` and report progress as each one is done (tqdm-like).

        ``total`` defaults to ``len(iterable)``. Progress goes out at the start (0) and
        after each item, with ``elapsed_seconds``, ``rate_per_second`` and ``eta_seconds``
        in ``data.details``, through the same coalescing as ``progress()``. Without a
        total (a generator), the contract has no way to draw a bar: the count goes out
        once, when the iterable is exhausted.
        """
        return track_progress(self.progress, iterable, total, event=event, phase=phase)

    def _event_name(self, event: object, allowed: frozenset[str], what: str) -> str | None:
        """The normalised event type, or ``None`` (skip the call) when it is not allowed."""
        if isinstance(event, EventType):
            name = event.value
        else:
            name = normalize_event_name(event) if isinstance(event, str) else str(event)
        if name in allowed:
            return name
        self._link.forgive(
            "event_type",
            InvalidEventError([Problem(
                "event", f"{what}_type",
                f"{event!s} is not a {'phase' if what == 'step' else what} event; use one of "
                + ", ".join(sorted(allowed)),
            )]),
        )
        return None

    def _counts(self, name: str, done: object, total: object) -> tuple[int, int] | None:
        """``(done, total)`` as the contract wants them, repaired, or ``None`` to skip."""
        if type(done) is int and type(total) is int and 0 <= done <= total and 0 < total <= _MAX:
            return done, total
        problems: list[Problem] = []
        _rules.check_data(
            name, {"model_name": self.model_name, "progress": done, "total": total}, problems
        )
        error = InvalidEventError(problems, event_type=name)
        fixed_done, fixed_total = _lenient.as_count(done), _lenient.as_count(total)
        if type(done) is not int or type(total) is not int:
            self._link.forgive("progress_type", error)
        if fixed_done is None or fixed_total is None:
            return None
        if not 0 < fixed_total <= _MAX:
            self._link.forgive("total_range", error)
            return None
        if not 0 <= fixed_done <= fixed_total:
            self._link.forgive("progress_range", error)
        return _lenient.clamp_progress(fixed_done, fixed_total), fixed_total

    def _kept_rule_3(
        self, name: str, done: int, total: int, last: tuple[int, int]
    ) -> tuple[int, int]:
        """Rule 3 broken (``last`` is the previous value): raise, or the repaired value."""
        error = InvalidEventError(
            [
                Problem(
                    "data.progress",
                    "rule_3",
                    f"{name} of {self.model_name} went from {last[0]}/{last[1]} to "
                    f"{done}/{total}; progress must not decrease and total must not "
                    "change (use another progress event type or phase for a new pass)",
                )
            ],
            event_type=name,
        )
        if total != last[1]:
            # A re-estimated total (a decoder's frame count): keep the first total, and
            # the same fraction of it, so the bar neither jumps nor overflows.
            self._link.forgive("total_changed", error)
            done, total = done * last[1] // total, last[1]
        if done < last[0]:
            self._link.forgive("progress_decreased", error)
        return max(done, last[0]), total

    def _checked_details(self, details: object, event: str) -> dict[str, Any] | None:
        problems: list[Problem] = []
        if not isinstance(details, Mapping):
            problems.append(Problem("data.details", "type", "must be a dict of JSON values"))
        else:
            check_free_json({"data": {"details": dict(details)}}, problems)
        if problems:
            self._link.forgive("details", InvalidEventError(problems, event_type=event))
            return None
        assert isinstance(details, Mapping)
        return dict(details)

    def step(self, event: EventType | str, message: str | None = None) -> None:
        """Emit a phase event: ``AUDIO_EXTRACTION_START`` … ``SPECTROGRAM_GENERATION_COMPLETE``."""
        name = self._event_name(event, PHASE_EVENT_NAMES, "step")
        if name is None:
            return
        text = self._link.text(message or None, f"{_STEP_MESSAGES[name]} ({self.model_name})")
        with self._link.lock:
            self._require_started(f"step({name})")
            self._emit(name, text, {"phase": _STEP_PHASES[name]})

    def complete(
        self,
        prediction: str | None = None,
        confidence: float | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Emit ``ANALYSIS_COMPLETED`` with the model's verdict."""
        data = verdict_data(self.model_name, prediction, confidence, self._link.forgive)
        if details is not None:
            kept = self._checked_details(details, ANALYSIS_COMPLETED)
            if kept is not None:
                data["details"] = kept
        verdict = ""
        if "prediction" in data:
            verdict = f": {data['prediction']}"
            if "confidence" in data:
                verdict += f" ({data['confidence']:.0%})"
        text = self._link.text(message, f"{self.model_name} analysis completed{verdict}")
        with self._link.lock:
            self._require_started("complete()")
            self._state = "completed"
            self._emit(ANALYSIS_COMPLETED, text, data)
            if not self._detached:
                self._link.model_finished(True)

    def fail(self, error: BaseException | str, message: str | None = None) -> None:
        """Emit ``ANALYSIS_FAILED``: ``data.error_message`` is ``error``'s user-facing text
        (see ``progress_sdk.failures``), ``data.details.error_type`` its exception type."""
        error_message, data = self._link.failure(error)
        text = self._link.text(message or None, f"{self.model_name} failed: {error_message}")
        with self._link.lock:
            if self._state not in ("queued", "started"):
                raise TrackingError(
                    f"{self.model_name}.fail() while the model is {self._state}: "
                    + ("call start() first" if self._state == "new" else "it already ended")
                )
            self._state = "failed"
            self._emit(ANALYSIS_FAILED, text, data)
            if not self._detached:
                self._link.model_finished(False)

    @property
    def state(self) -> str:
        """``new``, ``queued``, ``started``, ``completed`` or ``failed``."""
        return self._state

    def __enter__(self) -> ModelRun:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "started":
            return
        if exc is None:
            self.complete()
            return
        try:
            self.fail(exc)
        except Exception:
            # As for the media block: the job's exception wins over our reporting of it.
            logger.exception("progress_sdk: could not report the failure of model %r",
                             self.model_name)
