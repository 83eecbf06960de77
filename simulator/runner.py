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
        config = self.config
        options = config.plan_options
        result = SimulationResult()
        heap: list[tuple[float, int, MediaJob]] = []
        stopping = self._stop
        clock = self._clock
        began = clock()
        deadline = None if config.duration is None else began + config.duration
        speed = config.speed
        next_index = 0
        active = 0

        def admit(now: float) -> None:
            nonlocal next_index, active
            while active < config.concurrency and not stopping.is_set():
                if config.media is not None and next_index >= config.media:
                    return
                if deadline is not None and clock() >= deadline:
                    return
                plan = plan_media(next_index, options)
                # Stagger the first wave a little, as uploads do not arrive in lockstep.
                offset = now + (0.1 * next_index if next_index < config.concurrency else 0.0)
                job = MediaJob(self.publisher, plan, offset)
                heapq.heappush(heap, (job.next_time, next_index, job))
                next_index += 1
                active += 1

        def end(job: MediaJob, outcome: str) -> None:
            nonlocal active
            active -= 1
            result.outcomes[outcome] += 1
            plan = job.plan
            if outcome == "crashed":
                result.crashed.append(plan.media_id)
                for value in plan.model_outcomes.values():
                    result.model_outcomes[value] += 1
            elif outcome == "interrupted":
                result.interrupted.append(plan.media_id)
                # What the models really ended as: the plan's outcomes never happened.
                for state in job.model_states():
                    result.model_outcomes[state] += 1
            else:
                for value in plan.model_outcomes.values():
                    result.model_outcomes[value] += 1
            if self._on_media_end is not None:
                self._on_media_end(plan, outcome)

        admit(0.0)
        now = 0.0
        steps = 0
        while heap:
            if stopping.is_set():
                break
            now, index, job = heapq.heappop(heap)
            if speed > 0:
                due = began + now / speed
                # Sleep in short slices so stop() is honoured promptly.
                while not stopping.is_set():
                    wait = due - clock()
                    if wait <= 0:
                        break
                    stopping.wait(min(wait, 0.1))
                if stopping.is_set():
                    heapq.heappush(heap, (now, index, job))
                    break
            # Play this media's steps while it stays first in line, saving heap work.
            rival = heap[0] if heap else None
            while True:
                job.step()
                steps += 1
                if job.done:
                    break
                t = job.next_time
                if rival is not None and (t, index) > (rival[0], rival[1]):
                    break
                if speed > 0 and t > now:
                    break
            if job.done:
                end(job, "crashed" if job.crashed else job.plan.outcome)
                admit(now)
            else:
                heapq.heappush(heap, (job.next_time, index, job))

        for _, _, job in sorted(heap, key=lambda item: item[1]):
            job.abort("simulation interrupted")
            end(job, "interrupted")
        result.steps = steps
        result.seconds = clock() - began
        result.simulated_seconds = now
        return result
