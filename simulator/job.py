"""One simulated media: a seeded, timed plan, and the job that plays it through the SDK.

``plan_media`` is pure: from the master seed and the media's index it derives a
``random.Random`` for that media alone and lays out, in simulated seconds from the
media's start, every call a real worker would make through the tracking API (start the
media, queue its models, start each model, report frames or windows, complete or fail).
The same seed and index always give the same plan, whatever else runs alongside.

``MediaJob`` plays a plan one step at a time through ``ProgressPublisher.media()``,
exactly as a worker would; ``simulator.runner`` decides when each step is due. A crashed
media simply stops calling, so no terminal events are published for it.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .catalog import CATALOG, MEDIA_ERRORS, ModelSpec, PhaseStep, ProgressStage

if TYPE_CHECKING:
    from progress_sdk import ProgressPublisher

__all__ = ["MediaJob", "MediaPlan", "Outcome", "PlanOptions", "media_seed", "plan_media"]

Outcome = Literal["completed", "failed", "crashed"]

# A step is a plain tuple because a large run plays millions of them:
# (time, op, model_name, x, y, z), with x/y/z depending on op:
#   start                                  PROCESSING_STARTED
#   queue     x=model names                ANALYSIS_QUEUED per model
#   model                                  ANALYSIS_STARTED
#   track     x=total  z=(event type, phase)  a progress stage begins: model.track() over
#                                          its units reports 0/total (and, from then on,
#                                          elapsed, rate and ETA in data.details)
#   progress  x=done  y=total  z=(event type, phase)  the next unit is done
#   phase     x=event type  y=message      a phase start/complete event
#   complete  x=prediction  y=confidence  z=details
#   fail      x=error message              ANALYSIS_FAILED
#   media_fail x=error message             PROCESSING_FAILED
#   finish                                 PROCESSING_COMPLETED or _FAILED (the SDK decides)
#   crash                                  nothing: the job dies here
Step = tuple[float, str, str, Any, Any, Any]

_VIDEO_NAMES = ("interview", "press_briefing", "vlog", "dashcam", "zoom_call", "news_clip")
_AUDIO_NAMES = ("voicemail", "podcast_cut", "phone_call", "voice_note")
_IMAGE_NAMES = ("portrait", "profile_photo", "id_scan", "group_photo", "screenshot")


@dataclass(frozen=True)
class PlanOptions:
    """What every media of a simulation shares."""

    models: tuple[str, ...]
    seed: int
    users: int = 3
    fail_rate: float = 0.0
    crash_rate: float = 0.0
    user_prefix: str = "user-"
    """User ids are this prefix and a number from 1 (``e2e`` makes them unique per run)."""
    id_salt: str = ""
    """Drawn into the media and run ids, not into what the media do: ``e2e`` makes them
    unique per run, since two checks with one seed at once (the test suite's workers)
    would otherwise write the same snapshot keys, and a late socket's catch-up read the
    other run's media (refused as another user's, or another state)."""

    @property
    def media_fail_rate(self) -> float:
        """A media fails outright (unreadable upload) at a tenth of the model failure rate."""
        return self.fail_rate / 10


@dataclass(frozen=True)
class MediaPlan:
    """Everything one media will do, in simulated seconds from its start."""

    index: int
    media_id: str
    user_id: str
    run_id: str
    filename: str
    models: tuple[str, ...]
    steps: tuple[Step, ...]
    outcome: Outcome
    duration: float
    model_outcomes: dict[str, str] = field(default_factory=dict)
    """model name -> "completed", "failed" or "open" (never finished: a crash)."""


def media_seed(seed: int, index: int) -> str:
    """The seed of media ``index``: independent of every other media's draws."""
    # random.Random seeds a str through SHA-512, stable across runs and Python versions.
    return f"progress-sim:{seed}:{index}"


def plan_media(index: int, options: PlanOptions) -> MediaPlan:
    """Lay out media ``index`` of a simulation; deterministic in (seed, index, options)."""
    rng = random.Random(media_seed(options.seed, index))
    ids = options.id_salt + media_seed(options.seed, index)
    digest = hashlib.blake2b(ids.encode(), digest_size=16).digest()
    media_id = str(uuid.UUID(bytes=digest))
    run_id = f"run-{digest.hex()[-8:]}"
    user_id = f"{options.user_prefix}{rng.randrange(options.users) + 1}"

    models, filename = _pick_media(rng, index, options.models)
    is_fake = rng.random() < 0.5

    steps: list[Step] = [(0.0, "start", "", None, None, None)]
    model_outcomes: dict[str, str] = {}
    if rng.random() < options.media_fail_rate:
        end = rng.uniform(0.2, 1.0)
        steps.append((end, "media_fail", "", rng.choice(MEDIA_ERRORS)(rng), None, None))
        outcome: Outcome = "failed"
    else:
        queued_at = rng.uniform(0.02, 0.1)
        steps.append((queued_at, "queue", "", models, None, None))
        end = queued_at
        for name in models:
            model_steps, ok = _plan_model(CATALOG[name], rng, queued_at, is_fake, options)
            model_outcomes[name] = "completed" if ok else "failed"
            end = max(end, model_steps[-1][0])
            steps.extend(model_steps)
        end += rng.uniform(0.05, 0.3)
        steps.append((end, "finish", "", None, None, None))
        outcome = "completed" if "completed" in model_outcomes.values() else "failed"
        # Models run side by side (one worker job per model); sorted() is stable, so
        # steps at the same instant keep the catalog order.
        steps.sort(key=lambda s: s[0])

    if rng.random() < options.crash_rate:
        cut = rng.uniform(0.05, 0.95) * end
        steps = _crash_at(cut, steps, model_outcomes)
        outcome, end = "crashed", cut

    return MediaPlan(
        index=index,
        media_id=media_id,
        user_id=user_id,
        run_id=run_id,
        filename=filename,
        models=models,
        steps=tuple(steps),
        outcome=outcome,
        duration=end,
        model_outcomes=model_outcomes,
    )


def _pick_media(
    rng: random.Random, index: int, names: tuple[str, ...]
) -> tuple[tuple[str, ...], str]:
    """An image (its image models) or a video or audio file (the others), and its name."""
    av = tuple(n for n in names if CATALOG[n].kind != "image")
    images = tuple(n for n in names if CATALOG[n].kind == "image")
    is_image = bool(images) and (not av or rng.random() < 0.25)
    models = images if is_image else av
    if is_image:
        filename = f"{rng.choice(_IMAGE_NAMES)}_{index:04d}.{rng.choice(('jpg', 'png'))}"
    elif any(CATALOG[n].kind == "video" for n in models):
        filename = f"{rng.choice(_VIDEO_NAMES)}_{index:04d}.mp4"
    else:
        filename = f"{rng.choice(_AUDIO_NAMES)}_{index:04d}.{rng.choice(('wav', 'mp3'))}"
    return models, filename


def _crash_at(cut: float, steps: list[Step], model_outcomes: dict[str, str]) -> list[Step]:
    """The steps of a job that dies at ``cut``; models not finished by then stay open."""
    kept = [s for s in steps if s[0] <= cut or s[1] == "start"]
    kept.append((cut, "crash", "", None, None, None))
    finished = {s[2] for s in kept if s[1] in ("complete", "fail")}
    for name in model_outcomes:
        if name not in finished:
            model_outcomes[name] = "open"
    return kept


def _plan_model(
    spec: ModelSpec, rng: random.Random, queued_at: float, is_fake: bool, options: PlanOptions
) -> tuple[list[Step], bool]:
    name = spec.name
    t = queued_at + rng.uniform(0.05, 0.6)  # a worker picks the job up
    started = t
    steps: list[Step] = [(t, "model", name, None, None, None)]
    t += rng.uniform(*spec.load_seconds)
    for stage in spec.stages:
        if isinstance(stage, ProgressStage):
            total = rng.randint(*stage.units)
            per_unit = rng.uniform(*stage.seconds_per_unit)
            kind = (stage.event, stage.phase)
            steps.append((t, "track", name, total, None, kind))
            random_ = rng.random
            for done in range(1, total + 1):
                t += per_unit * (0.8 + 0.4 * random_())
                steps.append((t, "progress", name, done, total, kind))
        elif isinstance(stage, PhaseStep):
            steps.append((t, "phase", name, stage.start, f"{name}: {stage.what} started", None))
            t += rng.uniform(*stage.seconds)
            steps.append((t, "phase", name, stage.complete, f"{name}: {stage.what} done", None))

    if rng.random() < options.fail_rate:
        # Fail somewhere between loading the weights and the last unit. The draw counts
        # the steps that report something, not the "track" markers, so that a seed gives
        # the plans it gave before the markers existed.
        reported = [i for i, s in enumerate(steps) if s[1] != "track"]
        cut = reported[rng.randint(1, len(reported)) - 1] + 1
        del steps[cut:]
        t = steps[-1][0] + rng.uniform(0.01, 0.2)
        steps.append((t, "fail", name, rng.choice(spec.errors)(rng), None, None))
        return steps, False

    correct = rng.random() < spec.accuracy
    says_fake = is_fake == correct
    confidence = round(rng.uniform(0.7, 0.99) if correct else rng.uniform(0.5, 0.75), 4)
    t += rng.uniform(0.02, 0.1)
    details = {"processing_time_s": round(t - started, 3)}
    steps.append(
        (t, "complete", name, "FAKE" if says_fake else "REAL", confidence, details)
    )
    return steps, True


class MediaJob:
    """Plays one ``MediaPlan`` through the SDK's tracking API, one step per ``step()``."""

    __slots__ = (
        "_handles", "_index", "_models", "_publisher", "_run", "_steps", "_units", "crashed",
        "offset", "plan",
    )

    def __init__(self, publisher: ProgressPublisher, plan: MediaPlan, offset: float) -> None:
        self.plan = plan
        self.offset = offset
        """Simulated time at which this media started."""
        self.crashed = False
        self._publisher = publisher
        self._steps = plan.steps
        self._index = 0
        self._run: Any = None
        self._handles: dict[str, Any] = {}
        # model name -> the model.track() iterator of its current progress stage
        self._units: dict[str, Iterator[int]] = {}
        self._models: dict[str, Any] = {}  # every model tracker announced, for model_states()

    def model_states(self) -> list[str]:
        """The state of each model announced so far (``completed``, ``failed``, ...)."""
        return [tracker.state for tracker in self._models.values()]

    @property
    def done(self) -> bool:
        """True when every step has been played."""
        return self._index >= len(self._steps)

    @property
    def next_time(self) -> float:
        """Simulated time of the next step (only valid while not ``done``)."""
        return self.offset + self._steps[self._index][0]

    def step(self) -> None:
        """Make the next call a worker would make."""
        _, op, name, x, y, z = self._steps[self._index]
        self._index += 1
        if op == "progress":
            # A worker's loop takes its next unit: track() reports the one just done.
            next(self._units[name], None)
        elif op == "track":
            # As a real worker loops over its frames: progress with elapsed, rate and
            # ETA in data.details, measured by the SDK (wall clock, so it follows speed).
            units = self._units[name] = self._handles[name].track(
                range(x), event=z[0], phase=z[1]
            )
            next(units)  # the loop starts: 0/total
        elif op == "phase":
            self._handles[name].step(x, message=y)
        elif op == "model":
            self._handles[name] = self._models[name] = self._run.model(name).start()
        elif op == "complete":
            self._units.pop(name, None)
            self._handles.pop(name).complete(prediction=x, confidence=y, details=z)
        elif op == "fail":
            self._units.pop(name, None)
            self._handles.pop(name).fail(x)
        elif op == "start":
            plan = self.plan
            self._run = self._publisher.media(
                plan.media_id, plan.user_id, filename=plan.filename, run_id=plan.run_id
            ).start()
        elif op == "queue":
            for tracker in self._run.queue(list(x)):
                self._models[tracker.model_name] = tracker
        elif op == "finish":
            self._run.finish()
        elif op == "media_fail":
            self._run.fail(x)
        elif op == "crash":
            # Keep the handles: a crashed worker's objects are not finalised either.
            self.crashed = True
        else:  # pragma: no cover - plans are built above
            raise AssertionError(f"unknown step {op!r}")

    def abort(self, reason: str) -> None:
        """Fail the media now (the simulation was interrupted); no-op once it has ended."""
        if self.done or self._run is None:
            return
        self._index = len(self._steps)
        self._run.fail(reason)
