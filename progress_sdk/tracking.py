"""The tracking API: job code describes its work, the contract's events follow.

::

    with publisher.media(media_id, user_id, filename="clip.mp4", run_id=run_id) as run:
        with run.model("SIGLIP-LSTM-V4") as model:
            for i, frame in enumerate(frames, 1):
                ...
                model.progress(i, len(frames))
            model.complete(prediction="FAKE", confidence=0.93)

Each call validates its arguments on the spot (``InvalidEventError``) and refuses to
break the lifecycle rules (``TrackingError``), so whatever this API emits passes the
lifecycle validator. An exception leaving a model block emits ``ANALYSIS_FAILED`` with its
message and propagates; leaving the media block emits ``PROCESSING_COMPLETED`` if at
least one model completed, else ``PROCESSING_FAILED`` (contract rule 5).

The objects also work without ``with``: ``start()``, then ``complete()``/``fail()`` on
models and ``finish()``/``fail()`` on the media. A job that dies simply stops emitting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _rules
from . import defaults as d
from .events import EventType
from .exceptions import InvalidEventError, Problem, TrackingError

if TYPE_CHECKING:
    from .publisher import ProgressPublisher

__all__ = ["MediaRun", "ModelRun"]

_PROGRESS_UNITS = {
    "FRAME_ANALYSIS_PROGRESS": ("Analyzed", "frames"),
    "WINDOW_PROCESSING_PROGRESS": ("Processed", "windows"),
    "VISUALIZATION_GENERATION_PROGRESS": ("Generated visualization", "steps"),
}
_STEP_MESSAGES = {
    "AUDIO_EXTRACTION_START": "Extracting audio",
    "AUDIO_EXTRACTION_COMPLETE": "Audio extracted",
    "SPECTROGRAM_GENERATION_START": "Generating spectrogram",
    "SPECTROGRAM_GENERATION_COMPLETE": "Spectrogram generated",
}
_STEP_PHASES = {
    "AUDIO_EXTRACTION_START": "audio_extraction",
    "AUDIO_EXTRACTION_COMPLETE": "audio_extraction",
    "SPECTROGRAM_GENERATION_START": "spectrogram_generation",
    "SPECTROGRAM_GENERATION_COMPLETE": "spectrogram_generation",
}


def _check_text(field: str, value: object, max_chars: int, what: str) -> None:
    problems: list[Problem] = []
    _rules._check_str(problems, field, value, max_chars, required=True, what=what)
    if problems:
        raise InvalidEventError(problems)


def _failure_text(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        text = str(error).strip()
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        text = error
    if len(text) > d.MAX_ERROR_MESSAGE_CHARS:
        text = text[: d.MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return text


def _message(given: object, default: str) -> str:
    """The event's ``message``: the caller's, checked on the spot, else ``default``.

    ``default`` may embed an error text of up to MAX_ERROR_MESSAGE_CHARS, which with its
    prefix can pass MAX_MESSAGE_CHARS: it is clipped, never refused, because it is built
    on the way out of a failing block, where raising would hide the job's own exception.
    """
    if given is None:
        if len(default) > d.MAX_MESSAGE_CHARS:
            default = default[: d.MAX_MESSAGE_CHARS - 1] + "…"
        return default
    if not isinstance(given, str):
        problem = Problem(
            "message", "type", f"must be a string, got {type(given).__name__}: text for people"
        )
    elif len(given) > d.MAX_MESSAGE_CHARS:
        problem = Problem(
            "message",
            "max_length",
            f"is {len(given)} characters, at most {d.MAX_MESSAGE_CHARS} allowed: shorten it",
        )
    else:
        return given
    raise InvalidEventError([problem])


class MediaRun:
    """One analysis run of one media: ``PROCESSING_STARTED`` … one terminal event."""

    def __init__(
        self,
        publisher: ProgressPublisher,
        media_id: str,
        user_id: str,
        *,
        filename: str | None = None,
        run_id: str | None = None,
        message: str | None = None,
    ) -> None:
        _check_text("media_id", media_id, d.MAX_MEDIA_ID_CHARS, "the media being analysed")
        _check_text(
            "user_id",
            user_id,
            d.MAX_USER_ID_CHARS,
            "the relay routes by user_id and drops events without it",
        )
        if run_id is not None:
            _check_text("run_id", run_id, d.MAX_RUN_ID_CHARS, "one analysis run of a media")
        if filename is not None:
            _check_text("data.filename", filename, d.MAX_FILENAME_CHARS, "shown in the panel")
        if message is not None:
            _message(message, "")
        self._publisher = publisher
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
        self._publisher._accept(fields)

    @property
    def outcome(self) -> str | None:
        """``PROCESSING_COMPLETED``/``PROCESSING_FAILED`` once finished, else None."""
        return self._terminal

    def start(self) -> MediaRun:
        """Emit ``PROCESSING_STARTED`` (once; later calls do nothing)."""
        data: dict[str, Any] = {}
        if self.filename is not None:
            data["filename"] = self.filename
        message = _message(
            self._start_message or None,
            f"Started processing {self.filename}" if self.filename else "Processing started",
        )
        with self._lock:
            if self._started:
                return self
            self._started = True
            self._emit("PROCESSING_STARTED", message, data)
        return self

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
        """The tracker of one model of this run (``ANALYSIS_STARTED`` on ``start()``)."""
        _check_text(
            "data.model_name",
            model_name,
            d.MAX_MODEL_NAME_CHARS,
            "the UI groups progress by model_name",
        )
        with self._lock:
            self._require_open(f"model({model_name!r})")
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
            _message(message, "")
        with self._lock:
            self._require_open("finish()")
            self._close_open_models("the media run finished before this model reported a result")
            completed = self._completed_models
            total = sum(1 for m in self._models.values() if m._state != "new")
            if completed:
                event = self._end(
                    "PROCESSING_COMPLETED",
                    _message(
                        message or None, f"Analysis complete: {completed}/{total} models succeeded"
                    ),
                    {},
                )
            else:
                error = "every model failed" if total else "no model was run for this media"
                event = self._end(
                    "PROCESSING_FAILED",
                    _message(message or None, f"Processing failed: {error}"),
                    {"error_message": error},
                )
        self._publisher._flush_after_run()
        return event

    def fail(self, error: BaseException | str, message: str | None = None) -> str:
        """End the run with ``PROCESSING_FAILED`` (open models are failed first)."""
        error_message = _failure_text(error)
        _check_text(
            "data.error_message",
            error_message,
            d.MAX_ERROR_MESSAGE_CHARS,
            "say what went wrong; the UI shows it",
        )
        message = _message(message or None, f"Processing failed: {error_message}")
        with self._lock:
            self._require_open("fail()")
            self._close_open_models(f"media processing failed: {error_message}")
            event = self._end("PROCESSING_FAILED", message, {"error_message": error_message})
        self._publisher._flush_after_run()
        return event

    def _end(self, event: str, message: str, data: dict[str, Any]) -> str:
        """Emit the terminal event (under _lock); the caller then waits for delivery."""
        self._terminal = event
        if self.filename is not None:
            data["filename"] = self.filename
        self._emit(event, message, data)
        return event

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
        if exc is not None:
            self.fail(exc)
        else:
            self.finish()


class ModelRun:
    """One model's analysis within a media run."""

    def __init__(self, run: MediaRun, model_name: str) -> None:
        self.run = run
        self.model_name = model_name
        self._state = "new"  # new -> queued -> started -> completed | failed
        # Rule 3, per progress event type: progress never decreases, total never changes.
        self._last_progress: dict[str, tuple[int, int]] = {}

    def _emit(self, event: str, message: str, data: dict[str, Any]) -> None:
        self.run._emit(event, message, {"model_name": self.model_name, **data})

    def _queue(self) -> None:
        with self.run._lock:
            if self._state != "new":
                return
            self._state = "queued"
            self._emit("ANALYSIS_QUEUED", f"{self.model_name} queued", {})

    def start(self, message: str | None = None) -> ModelRun:
        """Emit ``ANALYSIS_STARTED``."""
        text = _message(message or None, f"{self.model_name} analysis started")
        with self.run._lock:
            self.run._require_open(f"{self.model_name}.start()")
            if self._state == "started":
                return self
            if self._state not in ("new", "queued"):
                raise TrackingError(f"model {self.model_name!r} already {self._state}")
            self._state = "started"
            self._emit("ANALYSIS_STARTED", text, {})
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
        the publisher sends at most ~10 updates a second per model, the latest always."""
        name = event.value if isinstance(event, EventType) else _rules.normalize_event_name(event)
        if name not in _rules.PROGRESS_EVENT_NAMES:
            raise InvalidEventError(
                [
                    Problem(
                        "event",
                        "progress_type",
                        f"{event!s} is not a progress event; use one of "
                        + ", ".join(sorted(_rules.PROGRESS_EVENT_NAMES)),
                    )
                ]
            )
        if type(done) is not int or type(total) is not int or total <= 0 or not 0 <= done <= total:
            problems: list[Problem] = []
            _rules.check_data(
                name, {"model_name": self.model_name, "progress": done, "total": total}, problems
            )
            raise InvalidEventError(
                problems
                or [
                    Problem(
                        "data.progress", "bounds", f"0 <= progress <= total, got {done}/{total}"
                    )
                ],
                event_type=name,
            )
        data: dict[str, Any] = {"progress": done, "total": total}
        if phase is not None:
            _check_text("data.phase", phase, d.MAX_PHASE_CHARS, "a short stage name")
            data["phase"] = phase
        if details is not None:
            data["details"] = self._checked_details(details, name)
        verb, unit = _PROGRESS_UNITS[name]
        text = _message(message, f"{verb} {done}/{total} {unit}")
        with self.run._lock:
            self._require_started(f"progress({done}, {total})")
            self._check_rule_3(name, done, total)
            # Everything is checked before the rule-3 state is recorded: a refused call
            # has no effect, so the job may retry it with a corrected argument.
            self._last_progress[name] = (done, total)
            self._emit(name, text, data)

    def _check_rule_3(self, name: str, done: int, total: int) -> None:
        last = self._last_progress.get(name)
        if last is not None and (done < last[0] or total != last[1]):
            raise InvalidEventError(
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

    def _checked_details(self, details: Mapping[str, Any], event: str) -> dict[str, Any]:
        problems: list[Problem] = []
        if not isinstance(details, Mapping):
            problems.append(Problem("data.details", "type", "must be a dict of JSON values"))
        else:
            _rules.check_json_size({"data": {"details": dict(details)}}, problems)
        if problems:
            raise InvalidEventError(problems, event_type=event)
        return dict(details)

    def step(self, event: EventType | str, message: str | None = None) -> None:
        """Emit a phase event: ``AUDIO_EXTRACTION_START`` … ``SPECTROGRAM_GENERATION_COMPLETE``."""
        name = event.value if isinstance(event, EventType) else str(event)
        if name not in _rules.PHASE_EVENT_NAMES:
            raise InvalidEventError(
                [
                    Problem(
                        "event",
                        "phase_type",
                        f"{name} is not a phase event; use one of "
                        + ", ".join(sorted(_rules.PHASE_EVENT_NAMES)),
                    )
                ]
            )
        text = _message(message or None, f"{_STEP_MESSAGES[name]} ({self.model_name})")
        with self.run._lock:
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
        data: dict[str, Any] = {}
        if prediction is not None:
            data["prediction"] = prediction
        if confidence is not None:
            data["confidence"] = confidence
        problems: list[Problem] = []
        _rules.check_data("ANALYSIS_COMPLETED", {"model_name": self.model_name, **data}, problems)
        if problems:
            raise InvalidEventError(problems, event_type="ANALYSIS_COMPLETED")
        if details is not None:
            data["details"] = self._checked_details(details, "ANALYSIS_COMPLETED")
        verdict = ""
        if prediction is not None:
            verdict = f": {prediction}"
            if confidence is not None:
                verdict += f" ({confidence:.0%})"
        text = _message(message, f"{self.model_name} analysis completed{verdict}")
        with self.run._lock:
            self._require_started("complete()")
            self._state = "completed"
            self._emit("ANALYSIS_COMPLETED", text, data)
            self.run._model_finished(True)

    def fail(self, error: BaseException | str, message: str | None = None) -> None:
        """Emit ``ANALYSIS_FAILED`` with ``error`` as ``data.error_message``."""
        error_message = _failure_text(error)
        _check_text(
            "data.error_message",
            error_message,
            d.MAX_ERROR_MESSAGE_CHARS,
            "say what went wrong; the UI shows it",
        )
        text = _message(message or None, f"{self.model_name} failed: {error_message}")
        with self.run._lock:
            if self._state not in ("queued", "started"):
                raise TrackingError(
                    f"{self.model_name}.fail() while the model is {self._state}: "
                    + ("call start() first" if self._state == "new" else "it already ended")
                )
            self._state = "failed"
            self._emit("ANALYSIS_FAILED", text, {"error_message": error_message})
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
        if exc is not None:
            self.fail(exc)
        else:
            self.complete()
