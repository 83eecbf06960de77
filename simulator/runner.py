"""Schedule many simulated media through one publisher, in simulated time.

``Simulation`` keeps up to ``concurrency`` media in flight and plays their steps in order
of simulated time on the calling thread: a single-threaded, discrete-event scheduler.
With ``speed`` > 0 it waits until each step is due (simulated seconds / speed of wall
time); with ``speed == 0`` it plays them back to back as fast as it can.

Determinism: each media's plan comes from its own seeded RNG (``simulator.job``), and
steps are ordered by (simulated time, media index), never by wall-clock accidents. So
the same seed and options give the same sequence of tracking calls, across media too,
at any speed and any concurrency. Only what depends on the wall clock differs between
runs: timestamps, the publisher's ``source``, the timing in progress events'
``data.details`` (``elapsed_seconds``, ``rate_per_second``, ``eta_seconds``: the models
loop over their units with ``model.track()``, which measures the wall clock, so the ETA
follows ``speed`` as a browser sees it), which progress updates the publisher coalesces
(it merges updates that come faster than ``min_progress_interval``; run with that set to
0 to publish every call), and with ``duration``, how many media get started.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .job import MediaJob, MediaPlan, PlanOptions, plan_media

if TYPE_CHECKING:
    from progress_sdk import ProgressPublisher

__all__ = ["Simulation", "SimulationConfig", "SimulationResult"]


@dataclass(frozen=True)
class SimulationConfig:
    """How many media, how fast, and how they behave."""

    models: tuple[str, ...]
    seed: int
    media: int | None = 3
    """How many media to run; ``None`` runs until ``duration`` has passed."""
    users: int = 3
    concurrency: int = 3
    speed: float = 1.0
    fail_rate: float = 0.0
    crash_rate: float = 0.0
    duration: float | None = None
    """Wall-clock seconds after which no new media starts (in-flight ones finish)."""
    user_prefix: str = "user-"
    id_salt: str = ""
    """Drawn into media and run ids only (``PlanOptions.id_salt``)."""

    def __post_init__(self) -> None:
        if self.media is None and self.duration is None:
            raise ValueError("give media, duration, or both")
        if self.media is not None and self.media < 1:
            raise ValueError(f"media must be >= 1, got {self.media}")
        if self.concurrency < 1 or self.users < 1:
            raise ValueError("concurrency and users must be >= 1")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        for name in ("fail_rate", "crash_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")

    @property
    def plan_options(self) -> PlanOptions:
        """The part every media's plan depends on."""
        return PlanOptions(
            models=self.models,
            seed=self.seed,
            users=self.users,
            fail_rate=self.fail_rate,
            crash_rate=self.crash_rate,
            user_prefix=self.user_prefix,
            id_salt=self.id_salt,
        )


@dataclass
class SimulationResult:
    """What the simulation did, from the jobs' side (not what a subscriber saw)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    """completed / failed / crashed / interrupted -> number of media."""
    model_outcomes: Counter[str] = field(default_factory=Counter)
    crashed: list[str] = field(default_factory=list)
    """media_id of every media that crashed on purpose."""
    interrupted: list[str] = field(default_factory=list)
    steps: int = 0
    """Tracking calls made (PROCESSING_STARTED, each progress report, ...)."""
    seconds: float = 0.0
    """Wall-clock time spent playing steps."""
    simulated_seconds: float = 0.0

    @property
    def media(self) -> int:
        """Media started."""
        return sum(self.outcomes.values())


class Simulation:
    """Plays ``config.media`` media through ``publisher``; ``run()`` blocks until done.

    ``stop()`` (from any thread, e.g. a Ctrl-C handler) ends the run early: no new media
    start and the ones in flight are failed with PROCESSING_FAILED "simulation
    interrupted", so the stream stays valid. ``on_media_end`` is called with each plan
    and its outcome as it ends.
    """

    def __init__(
        self,
        publisher: ProgressPublisher,
        config: SimulationConfig,
        *,
        on_media_end: Callable[[MediaPlan, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.config = config
        self._on_media_end = on_media_end
        self._clock = clock
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask ``run()`` to wind down; safe from any thread or a signal handler."""
        self._stop.set()

    def run(self) -> SimulationResult:
        """Play the whole simulation and return what happened."""
        playback = _Playback(
            self.publisher, self.config, self._clock, self._stop, self._on_media_end
        )
        return playback.play()


class _Playback:
    """One ``Simulation.run``: the media in flight, a heap of them by simulated time."""

    def __init__(
        self,
        publisher: ProgressPublisher,
        config: SimulationConfig,
        clock: Callable[[], float],
        stopping: threading.Event,
        on_media_end: Callable[[MediaPlan, str], None] | None,
    ) -> None:
        self.publisher = publisher
        self.config = config
        self.options = config.plan_options
        self.clock = clock
        self.stopping = stopping
        self.on_media_end = on_media_end
        self.began = clock()
        self.deadline = None if config.duration is None else self.began + config.duration
        self.result = SimulationResult()
        # (simulated time of its next step, media index, job): ties go to the lower index.
        self.heap: list[tuple[float, int, MediaJob]] = []
        self.next_index = 0
        self.active = 0

    def play(self) -> SimulationResult:
        heap = self.heap
        self.admit(0.0)
        now = 0.0
        while heap and not self.stopping.is_set():
            now, index, job = heapq.heappop(heap)
            if not self.wait_until(now):
                heapq.heappush(heap, (now, index, job))
                break
            self.result.steps += self.take_turn(job, index, now)
            if job.done:
                self.end(job, "crashed" if job.crashed else job.plan.outcome)
                self.admit(now)
            else:
                heapq.heappush(heap, (job.next_time, index, job))
        for _, _, job in sorted(heap, key=lambda item: item[1]):
            job.abort("simulation interrupted")
            self.end(job, "interrupted")
        self.result.seconds = self.clock() - self.began
        self.result.simulated_seconds = now
        return self.result

    def admit(self, now: float) -> None:
        """Start media until ``concurrency`` are in flight, unless no more may start."""
        config = self.config
        while self.active < config.concurrency and not self.stopping.is_set():
            index = self.next_index
            if config.media is not None and index >= config.media:
                return
            if self.deadline is not None and self.clock() >= self.deadline:
                return
            plan = plan_media(index, self.options)
            # Stagger the first wave a little, as uploads do not arrive in lockstep.
            offset = now + (0.1 * index if index < config.concurrency else 0.0)
            job = MediaJob(self.publisher, plan, offset)
            heapq.heappush(self.heap, (job.next_time, index, job))
            self.next_index += 1
            self.active += 1

    def wait_until(self, now: float) -> bool:
        """Wait until simulated time ``now`` is due; False if stopped meanwhile."""
        speed = self.config.speed
        if speed <= 0:
            return True
        due = self.began + now / speed
        stopping = self.stopping
        # Sleep in short slices so stop() is honoured promptly.
        while not stopping.is_set():
            wait = due - self.clock()
            if wait <= 0:
                break
            stopping.wait(min(wait, 0.1))
        return not stopping.is_set()

    def take_turn(self, job: MediaJob, index: int, now: float) -> int:
        """Play ``job``'s steps while it stays first in line (saving heap work); how many."""
        rival = self.heap[0] if self.heap else None
        paced = self.config.speed > 0
        steps = 0
        while True:
            job.step()
            steps += 1
            if job.done:
                return steps
            t = job.next_time
            if rival is not None and (t, index) > (rival[0], rival[1]):
                return steps
            if paced and t > now:
                return steps

    def end(self, job: MediaJob, outcome: str) -> None:
        """Count a media that ended (``outcome``) and its models; tell ``on_media_end``."""
        self.active -= 1
        result = self.result
        result.outcomes[outcome] += 1
        plan = job.plan
        if outcome == "interrupted":
            result.interrupted.append(plan.media_id)
            # What the models really ended as: the plan's outcomes never happened.
            for state in job.model_states():
                result.model_outcomes[state] += 1
        else:
            if outcome == "crashed":
                result.crashed.append(plan.media_id)
            for value in plan.model_outcomes.values():
                result.model_outcomes[value] += 1
        if self.on_media_end is not None:
            self.on_media_end(plan, outcome)
