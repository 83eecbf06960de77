"""The tracking API: job code describes its work, the contract's events follow.

::

    with publisher.media(media_id, user_id, filename="clip.mp4", run_id=run_id) as run:
        with run.model("SIGLIP-LSTM-V4") as model:
            for i, frame in enumerate(frames, 1):
                ...
                model.progress(i, len(frames))
            model.complete(prediction="FAKE", confidence=0.93)

Whatever this API emits passes the lifecycle validator. ``publisher.media()`` checks the
ids at once and raises ``InvalidEventError``: that is a programming error, caught before
any work. After the run started, bad progress *data* (a progress of 11/10, a float, a
decreasing value, an oversized message) is repaired, counted in
``stats().forgiven`` and logged once per kind, unless the publisher is ``strict``
(as the testing helpers are by default), which raises ``InvalidEventError`` instead
(``progress_sdk._lenient`` lists the repairs). Calls out of order (progress after
``complete()``) raise ``TrackingError`` in both modes.

An exception leaving a model block emits ``ANALYSIS_FAILED`` with its user-facing text
(``progress_sdk.failures``) and propagates; leaving the media block emits
``PROCESSING_COMPLETED`` if at least one model completed, else ``PROCESSING_FAILED``
(contract rule 5).

The job's own exception always wins: if reporting its failure fails too (the publisher
was closed, say), that is logged and the job's exception leaves the block unchanged.

The objects also work without ``with``: ``start()``, then ``complete()``/``fail()`` on
models and ``finish()``/``fail()`` on the media. A run that job code leaves open (it
raised between ``start()`` and ``finish()``) is ended with ``PROCESSING_FAILED`` when its
publisher is closed or the process exits (``fail_open_runs``), so its panel closes too. A
process killed outright simply stops emitting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from . import _lenient, _rules
from . import defaults as d
from ._free_json import check_free_json
from ._loops import (
    ProgressReport,
    current_model,
    set_current_model,
    timing_details,
    track_progress,
)
from ._open_runs import OpenRun, fail_open_runs, inside_a_run, register_run
from ._run_checks import check_text, failure_data, forgive, message_text
from ._sink import EventSink
from .event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_QUEUED,
    ANALYSIS_STARTED,
    EVENT_TYPES,
    PHASE_EVENT_NAMES,
    PROCESSING_COMPLETED,
    PROCESSING_FAILED,
    PROCESSING_STARTED,
    PROGRESS_EVENT_NAMES,
    normalize_event_name,
)
from .events import EventType
from .exceptions import InvalidEventError, Problem, ProgressSDKError, TrackingError

# fail_open_runs, inside_a_run, current_model and track_progress are defined in modules of
# their own (_open_runs, _loops) and are part of this module's API.
__all__ = [
    "MediaRun",
    "ModelRun",
    "current_model",
    "fail_open_runs",
    "inside_a_run",
    "timing_details",
    "track_progress",
]

logger = logging.getLogger("progress_sdk")

T = TypeVar("T")

_MAX = d.MAX_JSON_INT  # the largest total a reader takes (defaults.MAX_JSON_INT)

_PROGRESS_UNITS = {
    row.name: (row.verb, row.unit)
    for row in EVENT_TYPES.values()
    if row.verb is not None and row.unit is not None
}
_STEP_MESSAGES = {row.name: row.verb for row in EVENT_TYPES.values() if row.phase and row.verb}
_STEP_PHASES = {row.name: row.phase for row in EVENT_TYPES.values() if row.phase is not None}



class MediaRun:
    """One analysis run of one media: ``PROCESSING_STARTED`` … one terminal event."""

    def __init__(
        self,
        publisher: EventSink,
        media_id: str,
        user_id: str,
        *,
        filename: str | None = None,
        run_id: str | None = None,
        message: str | None = None,
        ends_elsewhere: bool = False,
        attempt: tuple[int, int] | None = None,
    ) -> None:
        check_text("media_id", media_id, d.MAX_MEDIA_ID_CHARS, "the media being analysed")
        check_text(
            "user_id",
            user_id,
            d.MAX_USER_ID_CHARS,
            "the relay routes by user_id and drops events without it",
        )
        if run_id is not None:
            check_text("run_id", run_id, d.MAX_RUN_ID_CHARS, "one analysis run of a media")
        if filename is not None:
            check_text("data.filename", filename, d.MAX_FILENAME_CHARS, "shown in the panel")
        if message is not None:
            message_text(message, "")
        self._publisher = publisher
        # Another process publishes this run's terminal event (one job per model: the
        # last model's process ends the media), so close() and exit leave it open.
        self.ends_elsewhere = ends_elsewhere
        # (number, of) when the run is one attempt of a job retried on failure (RQ's
        # Retry): every event says which, in data.details.attempt / attempts.
        self.attempt = attempt
        self.media_id = media_id
        self.user_id = user_id
        self.run_id = run_id
        self.filename = filename
        self._start_message = message
        # Models of one run may report from several threads. Every "check the state,
        # change it, emit" step holds this lock, so no event can slip in after the
        # terminal event it raced with. Re-entrant: finishing the run fails open models.
        self._lock = threading.RLock()
        self._started = False
        self._terminal: str | None = None
        self._models: dict[str, ModelRun] = {}
        self._completed_models = 0
        self._failed_left_open = False  # ended by fail_open_runs, not by job code

    # Events of this run share these fields; a fresh dict per event (the publisher
    # owns what it is given).
    def _emit(self, event: str, message: str, data: dict[str, Any]) -> None:
        fields: dict[str, Any] = {
            "media_id": self.media_id,
            "user_id": self.user_id,
            "event": event,
            "message": message,
            "data": data,
        }
        if self.run_id is not None:
            fields["run_id"] = self.run_id
        if self.attempt is not None:
            details = data.get("details")
            data["details"] = {
                **(details if isinstance(details, dict) else {}),
                "attempt": self.attempt[0], "attempts": self.attempt[1],
            }
        self._publisher.accept(fields)

    def _forgive(self, kind: str, error: InvalidEventError) -> None:
        """Raise ``error`` in strict mode; else count ``kind`` and log its first time."""
        forgive(self._publisher, self.media_id, kind, error)

    def _text(self, given: object, default: str) -> str:
        """The event message: the caller's (repaired unless strict), else ``default``."""
        try:
            return message_text(given, default)
        except InvalidEventError as exc:
            self._forgive("message", exc)
            return _lenient.message_text(given) or default

    def _field(self, field: str, value: object, max_chars: int, what: str, kind: str) -> str | None:
        """An optional short text field, repaired (or ``None``: left out) unless strict."""
        try:
            check_text(field, value, max_chars, what)
        except InvalidEventError as exc:
            self._forgive(kind, exc)
            return _lenient.as_text(value, max_chars)
        assert isinstance(value, str)
        return value

    def _failure(self, error: object) -> tuple[str, dict[str, Any]]:
        """``data`` of a failure event: the user-facing text, and the exception's type."""
        return failure_data(self._publisher, self.media_id, error)

    @property
    def outcome(self) -> str | None:
        """``PROCESSING_COMPLETED``/``PROCESSING_FAILED`` once finished, else None."""
        return self._terminal

    @property
    def swept(self) -> bool:
        """Whether a sweeper ended this run while it was reported (taken for dead or
        stuck; ``progress_sdk.liveness``): its further events are withheld, so the job
        may stop working on it. Learnt when the run's next events are about to go out."""
        check = getattr(self._publisher, "run_swept", None)
        return bool(check(self.media_id)) if callable(check) else False

    def start(self) -> MediaRun:
        """Emit ``PROCESSING_STARTED`` (once; later calls do nothing)."""
        data: dict[str, Any] = {}
        if self.filename is not None:
            data["filename"] = self.filename
        message = message_text(
            self._start_message or None,
            f"Started processing {self.filename}" if self.filename else "Processing started",
        )
        with self._lock:
            if self._started:
                return self
            # Registered before PROCESSING_STARTED goes in: a close() that accepts it then
            # finds the run among those to fail. A refused start (close() began) undoes it;
            # any other exception (a signal handler's SystemExit, KeyboardInterrupt) may
            # come after the event went in, so the run stays open for close() to end.
            self._started = True
            self._register(True)
            try:
                self._emit(PROCESSING_STARTED, message, data)
            except ProgressSDKError:
                self._started = False
                self._register(False)
                raise
        return self

    def _register(self, is_open: bool) -> None:
        """Add this run to, or remove it from, the runs ``fail_open_runs`` ends."""
        if self.ends_elsewhere:
            return
        run = OpenRun(self.media_id, self._fail_left_open, self._lock) if is_open else None
        register_run(self._publisher, id(self), run)

    def _require_open(self, what: str) -> None:
        if not self._started:
            raise TrackingError(
                f"{what} before the media run started: call start() or use "
                f"`with publisher.media(...) as run:` first"
            )
        if self._terminal is not None:
            raise TrackingError(
                f"{what} after media {self.media_id!r} ended with {self._terminal}; "
                "start a new run (publisher.media(...)) to analyse it again"
            )

    def model(self, model_name: str) -> ModelRun:
        """The tracker of one model of this run (``ANALYSIS_STARTED`` on ``start()``).

        Outside strict mode a bad name is converted or clipped, and an empty one gets a
        tracker that emits nothing (no UI row can show a model without a name).
        """
        name = self._field(
            "data.model_name",
            model_name,
            d.MAX_MODEL_NAME_CHARS,
            "the UI groups progress by model_name",
            "model_name",
        )
        with self._lock:
            self._require_open(f"model({model_name!r})")
            if name is None:
                return ModelRun(self, "", detached=True)
            model_name = name
            existing = self._models.get(model_name)
            if existing is not None and existing._state in ("queued", "new"):
                return existing
            if existing is not None:
                raise TrackingError(
                    f"model {model_name!r} was already {existing._state} in this run; "
                    "each model runs once per run"
                )
            tracker = ModelRun(self, model_name)
            self._models[model_name] = tracker
            return tracker

    def queue(self, model_names: Iterable[str]) -> list[ModelRun]:
        """Emit ``ANALYSIS_QUEUED`` for each model; returns their trackers."""
        # Every name is checked before the first event, so a refused call emits nothing.
        trackers = [self.model(name) for name in model_names]
        for tracker in trackers:
            tracker._queue()
        return trackers

    def _model_finished(self, completed: bool) -> None:
        with self._lock:
            if completed:
                self._completed_models += 1

    def _close_open_models(self, reason: str) -> None:
        # Rule 4: the media's terminal event comes after every model's terminal event,
        # and the UI closes its panel only when every row is completed or failed.
        for tracker in list(self._models.values()):
            if tracker._state in ("new",):
                continue  # never announced: no row in the UI, nothing to close
            if tracker._state in ("queued", "started"):
                tracker.fail(reason)

    def finish(self, message: str | None = None) -> str:
        """End the run: ``PROCESSING_COMPLETED`` if a model completed, else ``PROCESSING_FAILED``.

        Models still open are failed first. Returns the terminal event type.
        """
        if message:
            message = self._text(message, "")
        with self._lock:
            self._require_open("finish()")
            self._close_open_models("the media run finished before this model reported a result")
            completed = self._completed_models
            total = sum(1 for m in self._models.values() if m._state != "new")
            if completed:
                event = self._end(
                    PROCESSING_COMPLETED,
                    message_text(
                        message or None, f"Analysis complete: {completed}/{total} models succeeded"
                    ),
                    {},
                )
            else:
                error = "every model failed" if total else "no model was run for this media"
                event = self._end(
                    PROCESSING_FAILED,
                    message_text(message or None, f"Processing failed: {error}"),
                    {"error_message": error},
                )
        self._publisher.run_ended()
        return event

    def fail(self, error: BaseException | str, message: str | None = None) -> str:
        """End the run with ``PROCESSING_FAILED`` (open models are failed first).

        ``error`` is an exception (its user-facing text, see ``progress_sdk.failures``;
        its type goes to ``data.details.error_type``) or the text itself.
        """
        if self._failed_left_open:
            # Already failed when the publisher closed: a job reporting its exception
            # afterwards (`except E as exc: run.fail(exc); raise`) must not get a
            # TrackingError in its place.
            return PROCESSING_FAILED
        error_message, data = self._failure(error)
        message = self._text(message or None, f"Processing failed: {error_message}")
        with self._lock:
            self._require_open("fail()")
            self._close_open_models(f"media processing failed: {error_message}")
            event = self._end(PROCESSING_FAILED, message, data)
        self._publisher.run_ended()
        return event

    def _end(self, event: str, message: str, data: dict[str, Any]) -> str:
        """Emit the terminal event (under _lock); the caller then waits for delivery."""
        self._terminal = event
        if self.filename is not None:
            data["filename"] = self.filename
        # Unregistered only once the event is in: a close() that begins meanwhile finds
        # the run, waits for its lock, then sees it ended. Unregistered first, close()
        # could miss the run and refuse everything before this emit (a panel left open).
        try:
            self._emit(event, message, data)
        finally:
            self._register(False)
        return event

    def hand_over(self) -> None:
        """Leave this run open for another process to continue (the job's next attempt):
        neither ``close()`` nor the exit hook will end it from here."""
        with self._lock:
            self._register(False)
            self.ends_elsewhere = True

    def _fail_left_open(self, reason: str) -> bool:
        """``PROCESSING_FAILED`` for a run job code did not end; False if it had ended."""
        with self._lock:
            if self._terminal is not None or not self._started:
                return False  # ended, or its PROCESSING_STARTED was refused
            self._failed_left_open = True
            self._close_open_models(reason)
            self._end(
                PROCESSING_FAILED, message_text(None, f"Processing failed: {reason}"),
                {"error_message": reason},
            )
            return True

    def __enter__(self) -> MediaRun:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._terminal is not None or not self._started:
            return
        if exc is None:
            self.finish()
            return
        try:
            self.fail(exc)
        except Exception:
            # The job's own exception matters more than our failure to report it: it
            # leaves the block unchanged. A closed publisher has failed the run already.
            logger.exception("progress_sdk: could not report the failure of media %r",
                             self.media_id)


class ModelRun:
    """One model's analysis within a media run."""

    def __init__(self, run: MediaRun, model_name: str, *, detached: bool = False) -> None:
        self.run = run
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
            self.run._emit(event, message, {"model_name": self.model_name, **data})

    def _queue(self) -> None:
        with self.run._lock:
            if self._state != "new":
                return
            self._state = "queued"
            self._emit(ANALYSIS_QUEUED, f"{self.model_name} queued", {})

    def start(self, message: str | None = None) -> ModelRun:
        """Emit ``ANALYSIS_STARTED``."""
        text = self.run._text(message or None, f"{self.model_name} analysis started")
        with self.run._lock:
            self.run._require_open(f"{self.model_name}.start()")
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
            checked = self.run._field(
                "data.phase", phase, d.MAX_PHASE_CHARS, "a short stage name", "phase"
            )
            if checked is not None:
                data["phase"] = checked
        if details is not None:
            kept = self._checked_details(details, name)
            if kept is not None:
                data["details"] = kept
        verb, unit = _PROGRESS_UNITS[name]
        with self.run._lock:
            if self._state != "started":
                self._require_started(f"progress({done}, {total})")
            last = self._last_progress.get(name)
            if last is not None and (done < last[0] or total != last[1]):
                done, total = self._kept_rule_3(name, done, total, last)
                data["progress"], data["total"] = done, total
            default = f"{verb} {done}/{total} {unit}"
            text = default if message is None else self.run._text(message, default)
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
        self.run._forgive(
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
            self.run._forgive("progress_type", error)
        if fixed_done is None or fixed_total is None:
            return None
        if not 0 < fixed_total <= _MAX:
            self.run._forgive("total_range", error)
            return None
        if not 0 <= fixed_done <= fixed_total:
            self.run._forgive("progress_range", error)
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
            self.run._forgive("total_changed", error)
            done, total = done * last[1] // total, last[1]
        if done < last[0]:
            self.run._forgive("progress_decreased", error)
        return max(done, last[0]), total

    def _checked_details(self, details: object, event: str) -> dict[str, Any] | None:
        problems: list[Problem] = []
        if not isinstance(details, Mapping):
            problems.append(Problem("data.details", "type", "must be a dict of JSON values"))
        else:
            check_free_json({"data": {"details": dict(details)}}, problems)
        if problems:
            self.run._forgive("details", InvalidEventError(problems, event_type=event))
            return None
        assert isinstance(details, Mapping)
        return dict(details)

    def step(self, event: EventType | str, message: str | None = None) -> None:
        """Emit a phase event: ``AUDIO_EXTRACTION_START`` … ``SPECTROGRAM_GENERATION_COMPLETE``."""
        name = self._event_name(event, PHASE_EVENT_NAMES, "step")
        if name is None:
            return
        text = self.run._text(message or None, f"{_STEP_MESSAGES[name]} ({self.model_name})")
        with self.run._lock:
            self._require_started(f"step({name})")
            self._emit(name, text, {"phase": _STEP_PHASES[name]})

    def _verdict(self, prediction: object, confidence: object) -> dict[str, Any]:
        """``data`` of ANALYSIS_COMPLETED: prediction and confidence, repaired unless strict."""
        data: dict[str, Any] = {}
        if prediction is not None:
            data["prediction"] = prediction
        if confidence is not None:
            data["confidence"] = confidence
        problems: list[Problem] = []
        _rules.check_data(ANALYSIS_COMPLETED, {"model_name": self.model_name, **data}, problems)
        if not problems:
            return data
        error = InvalidEventError(problems, event_type=ANALYSIS_COMPLETED)
        fields = {problem.field for problem in problems}
        if "data.prediction" in fields:
            self.run._forgive("prediction", error)
            data.pop("prediction")
            fixed = _lenient.as_text(prediction, d.MAX_PREDICTION_CHARS)
            if fixed is not None:
                data["prediction"] = fixed
        if "data.confidence" in fields:
            self.run._forgive("confidence", error)
            data.pop("confidence")
            fraction = _lenient.as_fraction(confidence)
            if fraction is not None:
                data["confidence"] = fraction
        return data

    def complete(
        self,
        prediction: str | None = None,
        confidence: float | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Emit ``ANALYSIS_COMPLETED`` with the model's verdict."""
        data = self._verdict(prediction, confidence)
        if details is not None:
            kept = self._checked_details(details, ANALYSIS_COMPLETED)
            if kept is not None:
                data["details"] = kept
        verdict = ""
        if "prediction" in data:
            verdict = f": {data['prediction']}"
            if "confidence" in data:
                verdict += f" ({data['confidence']:.0%})"
        text = self.run._text(message, f"{self.model_name} analysis completed{verdict}")
        with self.run._lock:
            self._require_started("complete()")
            self._state = "completed"
            self._emit(ANALYSIS_COMPLETED, text, data)
            if not self._detached:
                self.run._model_finished(True)

    def fail(self, error: BaseException | str, message: str | None = None) -> None:
        """Emit ``ANALYSIS_FAILED``: ``data.error_message`` is ``error``'s user-facing text
        (see ``progress_sdk.failures``), ``data.details.error_type`` its exception type."""
        error_message, data = self.run._failure(error)
        text = self.run._text(message or None, f"{self.model_name} failed: {error_message}")
        with self.run._lock:
            if self._state not in ("queued", "started"):
                raise TrackingError(
                    f"{self.model_name}.fail() while the model is {self._state}: "
                    + ("call start() first" if self._state == "new" else "it already ended")
                )
            self._state = "failed"
            self._emit(ANALYSIS_FAILED, text, data)
            if not self._detached:
                self.run._model_finished(False)

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
