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
from collections.abc import Iterable
from functools import partial
from types import TracebackType
from typing import Any

from . import defaults as d
from ._loops import (
    current_model,
    timing_details,
    track_progress,
)
from ._model_run import ModelRun, RunLink
from ._open_runs import OpenRun, fail_open_runs, inside_a_run, register_run
from ._run_checks import (
    check_text,
    failure_data,
    forgive,
    message_text,
    repaired_field,
    repaired_text,
)
from ._sink import EventSink
from .event_types import (
    PROCESSING_COMPLETED,
    PROCESSING_FAILED,
    PROCESSING_STARTED,
)
from .exceptions import ProgressSDKError, TrackingError

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
        self._link = RunLink(
            self._lock, self._emit, self._text, self._field,
            partial(failure_data, publisher, media_id), partial(forgive, publisher, media_id),
            self._require_open, self._model_finished,
        )

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

    def _text(self, given: object, default: str) -> str:
        return repaired_text(self._publisher, self.media_id, given, default)

    def _field(self, field: str, value: object, max_chars: int, what: str, kind: str) -> str | None:
        return repaired_field(self._publisher, self.media_id, field, value,
                              max_chars=max_chars, what=what, kind=kind)

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
                return ModelRun(self, self._link, "", detached=True)
            model_name = name
            existing = self._models.get(model_name)
            if existing is not None and existing.state in ("queued", "new"):
                return existing
            if existing is not None:
                raise TrackingError(
                    f"model {model_name!r} was already {existing.state} in this run; "
                    "each model runs once per run"
                )
            tracker = ModelRun(self, self._link, model_name)
            self._models[model_name] = tracker
            return tracker

    def queue(self, model_names: Iterable[str]) -> list[ModelRun]:
        """Emit ``ANALYSIS_QUEUED`` for each model; returns their trackers."""
        # Every name is checked before the first event, so a refused call emits nothing.
        trackers = [self.model(name) for name in model_names]
        for tracker in trackers:
            tracker.queue()
        return trackers

    def _model_finished(self, completed: bool) -> None:
        with self._lock:
            if completed:
                self._completed_models += 1

    def _close_open_models(self, reason: str) -> None:
        # Rule 4: the media's terminal event comes after every model's terminal event,
        # and the UI closes its panel only when every row is completed or failed.
        for tracker in list(self._models.values()):
            if tracker.state in ("new",):
                continue  # never announced: no row in the UI, nothing to close
            if tracker.state in ("queued", "started"):
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
            total = sum(1 for m in self._models.values() if m.state != "new")
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
        error_message, data = failure_data(self._publisher, self.media_id, error)
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
