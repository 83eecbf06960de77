"""``@tracked_job``: an RQ job function gets its tracking context, its lifecycle and its end.

::

    @tracked_job
    def analyse(tracking: JobTracking, path: str) -> None:
        for name in tracking.models:                  # single-job layout: every model
            with tracking.model(name) as model:
                for i in range(1, 301):
                    model.progress(i, 300)
                model.complete("FAKE", 0.93)

    queue.enqueue(analyse, "clip.mp4", media_id="m1", user_id="u1", models=[...])

The job function takes a ``JobTracking`` first. The media and user ids (``run_id``,
``filename``, ``models`` and ``model`` too) come from the job's keyword arguments, which
the decorator takes out, or from ``job.meta["progress_sdk"]`` (``enqueue_media`` puts
them there). With ``model=`` the job runs that one model of the media (the one-job-per-
model layout): the decorator starts it and ends it; the media's terminal event comes
when the last model of the media ends, whichever job or process ends it. Without it the
job runs the whole media (the single-job layout) and ends it by contract rule 5.

Called outside a worker (a test), the job runs the same way without shared state; use
``analyse.with_publisher(CapturingPublisher())(...)`` to capture what it emits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, cast

import redis
from rq import get_current_job

from ..events import EventType
from ..exceptions import TrackingError
from ..failures import describe_error
from ..publisher import ProgressPublisher
from ..tracking import MediaRun, ModelRun, track_progress
from . import settings
from .closing import publish_terminal, retry_job
from .mirror import MetaMirror, snapshot
from .state import RunState

__all__ = ["META_KEY", "JobTracking", "TrackedJob", "TrackedModel", "tracked_job"]

R = TypeVar("R")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)
META_KEY = "progress_sdk"
_ID_KWARGS = ("media_id", "user_id", "run_id", "filename", "models", "model")

log = logging.getLogger("progress_sdk.rq")


class TrackedModel:
    """One model of a tracked job: the ``ModelRun`` API, with the shared state kept."""

    def __init__(self, tracking: JobTracking, model: ModelRun) -> None:
        self._tracking = tracking
        self._model = model
        self.model_name = model.model_name
        model.reporter = self.progress  # a tqdm bar bound to the model mirrors too

    @property
    def state(self) -> str:
        """``new``, ``queued``, ``started``, ``completed`` or ``failed``."""
        return self._model.state

    def start(self) -> TrackedModel:
        """Emit ``ANALYSIS_STARTED`` (once)."""
        if self._model.state != "started":
            self._model.start()
            self._tracking._shared("model start", self._tracking._set_model, self.model_name)
        return self

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
        """``ModelRun.progress``, mirrored (throttled) into ``job.meta["progress"]``."""
        self._model.progress(
            done, total, event=event, phase=phase, message=message, details=details
        )
        self._tracking._mirror_progress(self.model_name, str(event), done, total)

    def track(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        *,
        event: EventType | str = EventType.FRAME_ANALYSIS_PROGRESS,
        phase: str | None = None,
    ) -> Iterator[T]:
        """``ModelRun.track`` (progress with elapsed, rate and ETA in ``data.details``),
        mirrored (throttled) into ``job.meta["progress"]`` like ``progress()``."""
        return track_progress(self.progress, iterable, total, event=event, phase=phase)

    def step(self, event: EventType | str, message: str | None = None) -> None:
        """``ModelRun.step``: a phase event."""
        self._model.step(event, message)

    def complete(
        self,
        prediction: str | None = None,
        confidence: float | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Emit ``ANALYSIS_COMPLETED``; the last model of a media also ends the media."""
        self._model.complete(prediction, confidence, details=details, message=message)
        self._tracking._model_ended(self.model_name, "completed")

    def fail(self, error: BaseException | str, message: str | None = None) -> None:
        """Emit ``ANALYSIS_FAILED``; the last model of a media also ends the media."""
        self._model.fail(error, message)
        self._tracking._model_ended(self.model_name, "failed")

    def __enter__(self) -> TrackedModel:
        return self.start()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._tracking.failed_in_model = exc
        if self._model.state != "started":
            return
        if exc is not None:
            self.fail(exc)
        else:
            self.complete()


class JobTracking:
    """What a tracked job knows about its media run; passed as the job's first argument."""

    def __init__(
        self,
        publisher: ProgressPublisher,
        ids: Mapping[str, Any],
        job: Any = None,
        state: RunState | None = None,
    ) -> None:
        self.publisher = publisher
        self.media_id: str = ids["media_id"]
        self.user_id: str = ids["user_id"]
        self.run_id: str | None = ids.get("run_id")
        self.filename: str | None = ids.get("filename")
        self.model_name: str | None = ids.get("model")
        models = list(ids.get("models") or [])
        if self.model_name is not None and self.model_name not in models:
            models.append(self.model_name)
        self.models: tuple[str, ...] = tuple(models)
        self.layout = "per-model" if self.model_name is not None else "single"
        self.job = job
        self._state = state
        self.attempt, self.attempts = self._attempt()
        """This run's attempt and how many RQ allows (``Retry(max=N)``: N + 1); 1 and 1
        without retries."""
        # A model job's run ends in whichever process ends the media's last model.
        self.run = MediaRun(
            publisher, self.media_id, self.user_id, filename=self.filename,
            run_id=self.run_id, ends_elsewhere=self.layout == "per-model",
            attempt=(self.attempt, self.attempts) if self.attempts > 1 else None,
        )
        self.failed_in_model: BaseException | None = None
        self._run_key = state.run_key(self.media_id, self.run_id) if state else None
        self._trackers: dict[str, TrackedModel] = {}
        self._settings = settings.current()
        self._mirror = MetaMirror(job, self._settings.meta_interval) if job is not None else None
        self._state_failed = False

    def _attempt(self) -> tuple[int, int]:
        retries_left = getattr(self.job, "retries_left", None)
        if self._state is None or not isinstance(retries_left, int):
            return 1, 1
        try:
            attempts = self._state.attempts(self.job.id, retries_left)
        except redis.RedisError as exc:  # the job runs anyway; its attempt is unknown
            log.warning("job %s: cannot read its attempt from the shared state (%s)",
                        self.job.id, exc)
            return 1, 1
        return max(attempts - retries_left, 1), max(attempts, 1)

    @property
    def will_retry(self) -> bool:
        """Whether RQ runs this job again if it fails now (``Retry`` attempts left)."""
        retries_left = getattr(self.job, "retries_left", None)
        return self._state is not None and isinstance(retries_left, int) and retries_left > 0

    def model(self, name: str | None = None) -> TrackedModel:
        """The tracker of model ``name`` (in a model job: of the job's model, by default)."""
        if name is None or name == self.model_name:
            if self.model_name is None:
                raise TrackingError(
                    "model() needs a model name in a job that runs the whole media; "
                    "iterate over tracking.models"
                )
            name = self.model_name
        elif self.model_name is not None:
            raise TrackingError(
                f"this job runs model {self.model_name!r} of media {self.media_id!r}, "
                f"not {name!r}: enqueue one job per model (enqueue_media)"
            )
        tracker = self._trackers.get(name)
        if tracker is None:
            tracker = TrackedModel(self, self.run.model(name))
            self._trackers[name] = tracker
        return tracker

    # -- shared state: a failing write is logged, never raised into the job ----------

    def _shared(self, what: str, write: Callable[..., object], *args: Any) -> Any:
        if self._state is None:
            return None
        try:
            return write(*args)
        except redis.RedisError as exc:
            if not self._state_failed:
                self._state_failed = True
                log.warning(
                    "job %s: cannot record %s in the shared state (%s); a crash of this "
                    "job may then go unreported", getattr(self.job, "id", "?"), what, exc,
                )
            return None

    def _set_model(self, name: str) -> None:
        assert self._state is not None and self._run_key is not None
        self._state.set_model(self._run_key, name, "started")

    def _end_model(self, name: str, outcome: str) -> None:
        assert self._state is not None and self._run_key is not None
        _, claimed = self._state.end_model(
            self._run_key, name, outcome, claim=self.layout == "per-model"
        )
        if claimed:
            publish_terminal(
                self.publisher, self._state, self._run_key,
                delivery_timeout=self._settings.delivery_timeout,
            )

    def _model_ended(self, name: str, outcome: str) -> None:
        # The event goes out before the shared state says the model ended: the media's
        # terminal event, which another process may publish as soon as the state says
        # so, must not overtake it (a Redis outage shorter than delivery_timeout keeps
        # the order), and a horse killed in between has its model failed again (a
        # duplicate the UI shrugs off) rather than never closed.
        if self._state is not None:
            self.publisher.flush(self._settings.delivery_timeout)
        self._shared("the model's end", self._end_model, name, outcome)

    def _mirror_progress(self, model: str, event: str, done: int, total: int) -> None:
        if self._mirror is not None:
            self._mirror.update(snapshot(model, event, done, total))

    # -- the job's lifecycle ------------------------------------------------------------

    def _record(self) -> None:
        assert self._state is not None and self.job is not None
        if self.attempt > 1:
            self._state.reopen_job(self.job.id)  # the previous attempt left it closed
        key = self._state.record_run(
            media_id=self.media_id, user_id=self.user_id, run_id=self.run_id,
            filename=self.filename, layout=self.layout, models=list(self.models),
            fresh=self.layout == "single",  # a single job is the whole run
        )
        role = "model" if self.layout == "per-model" else "single"
        self._state.record_job(self.job.id, run_key=key, role=role, model=self.model_name)

    def _open(self) -> None:
        """Announce the run (and in a model job, start its model)."""
        self.run.start()
        if self.layout == "single":
            self.run.queue(self.models)
        self._shared("the run", self._record)
        if self.model_name is not None:
            self.model().start()

    def _retry(self, error: BaseException) -> None:
        """The job failed with attempts left: queue its model(s) again, end nothing."""
        assert self._state is not None and self.job is not None
        reason, _ = describe_error(error, self.publisher.error_messages)
        # The run goes on in the next attempt's process: not failed by close() or exit.
        self.run.hand_over()
        try:
            self.publisher.flush(self._settings.delivery_timeout)
            self._shared(
                "the retry", functools.partial(
                    retry_job, attempt=self.attempt + 1, attempts=self.attempts,
                    delivery_timeout=self._settings.delivery_timeout,
                ), self.publisher, self._state, self.job.id, reason,
            )
        finally:
            if self._mirror is not None:
                self._mirror.close(1.0)

    def _close(self, error: BaseException | None) -> None:
        """End what the job left open, by rule 5, and wait (bounded) for delivery."""
        try:
            if self.layout == "per-model":
                tracker = self.model()
                if tracker.state == "started" and error is not None:
                    tracker.fail(error)
                elif tracker.state == "started":
                    tracker.complete()
            elif self.run.outcome is None:
                if error is None or error is self.failed_in_model:
                    self.run.finish()
                else:
                    self.run.fail(error)
                if self._run_key is not None and self.run.outcome is not None:
                    self._shared(
                        "the media's end", self._terminal_sent, self.run.outcome
                    )
        finally:
            self.publisher.flush(self._settings.delivery_timeout)
            if self._mirror is not None:
                self._mirror.close(1.0)
            if self.job is not None:
                self._shared("the job's end", self._close_job)

    def _terminal_sent(self, outcome: str) -> None:
        assert self._state is not None and self._run_key is not None
        if self._state.claim_terminal(self._run_key):
            self._state.terminal_sent(self._run_key, outcome)

    def _close_job(self) -> None:
        assert self._state is not None and self.job is not None
        self._state.close_job(self.job.id)


class TrackedJob(Protocol[R_co]):
    """A tracked job function: call it as RQ does, or ``with_publisher(p)(...)`` in tests."""

    def __call__(self, *args: Any, **kwargs: Any) -> R_co: ...

    def with_publisher(self, publisher: ProgressPublisher) -> Callable[..., R_co]: ...


def _ids(kwargs: dict[str, Any], job: Any) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    meta = getattr(job, "meta", None) or {}
    if isinstance(meta.get(META_KEY), Mapping):
        ids.update(meta[META_KEY])
    for name in _ID_KWARGS:
        if name in kwargs:
            ids[name] = kwargs.pop(name)
    if not ids.get("media_id") or not ids.get("user_id"):
        raise TrackingError(
            "a tracked job needs media_id and user_id: pass them as keyword arguments "
            "(queue.enqueue(job, ..., media_id=..., user_id=...)) or enqueue it with "
            "progress_sdk.rq.enqueue_media"
        )
    return ids


def _run_job(
    func: Callable[..., R], publisher: ProgressPublisher | None, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    job = get_current_job()
    ids = _ids(kwargs, job)
    config = settings.current()
    state = (
        RunState(job.connection, prefix=config.prefix, ttl=config.state_ttl)
        if job is not None else None
    )
    tracking = JobTracking(publisher or settings.default_publisher(), ids, job, state)
    try:
        tracking._open()
        result = func(tracking, *args, **kwargs)
    except BaseException as exc:
        if tracking.will_retry and isinstance(exc, Exception):
            tracking._retry(exc)  # RQ runs the job again: its model(s) are not done
        else:
            tracking._close(exc)
        raise
    tracking._close(None)
    return result


def tracked_job(func: Callable[..., R]) -> TrackedJob[R]:
    """Make ``func(tracking, *args, **kwargs)`` a tracked RQ job (see the module doc)."""

    @functools.wraps(func)
    def job(*args: Any, **kwargs: Any) -> R:
        return _run_job(func, None, args, kwargs)

    def with_publisher(publisher: ProgressPublisher) -> Callable[..., R]:
        def call(*args: Any, **kwargs: Any) -> R:
            return _run_job(func, publisher, args, kwargs)

        return call

    job.with_publisher = with_publisher  # type: ignore[attr-defined]
    return cast("TrackedJob[R]", job)
