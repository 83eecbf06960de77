"""Tests for simulator.runner: scheduling many media in simulated time."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from progress_sdk.testing import CapturingPublisher
from simulator.catalog import PRESETS
from simulator.runner import Simulation, SimulationConfig


def run(config: SimulationConfig) -> tuple[CapturingPublisher, Simulation]:
    publisher = CapturingPublisher()
    simulation = Simulation(publisher, config)
    simulation.result = simulation.run()  # type: ignore[attr-defined]
    return publisher, simulation


TIMING = ("elapsed_seconds", "rate_per_second", "eta_seconds")


def strip(events: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    """Everything but the wall-clock fields (timestamps, the timing track() measures)."""
    kept = []
    for e in events:
        data = dict(e["data"])
        if "details" in data and e["event"].endswith("_PROGRESS"):
            data["details"] = {k: v for k, v in data["details"].items() if k not in TIMING}
        kept.append((e["media_id"], e["user_id"], e["event"], e.get("run_id"), repr(data),
                     e["seq"]))
    return kept


def test_same_seed_gives_the_same_event_sequence_across_media() -> None:
    """Two runs with one seed make identical calls, interleaving included."""
    config = SimulationConfig(
        models=PRESETS["all"], seed=99, media=6, concurrency=4, speed=0, fail_rate=0.2,
        crash_rate=0.2,
    )
    first, _ = run(config)
    second, _ = run(config)
    assert strip(list(first.events)) == strip(list(second.events))
    third, _ = run(SimulationConfig(**{**config.__dict__, "seed": 100}))
    assert strip(list(first.events)) != strip(list(third.events))


def test_run_is_valid_and_counts_outcomes() -> None:
    """The stream keeps the contract; the result counts media by outcome."""
    publisher, simulation = run(
        SimulationConfig(models=PRESETS["all"], seed=4, media=8, concurrency=3, speed=0,
                         fail_rate=0.3, crash_rate=0.25)
    )
    result = simulation.result  # type: ignore[attr-defined]
    assert result.media == 8
    report = publisher.events.assert_valid(allow_incomplete=True)
    assert {f.media_id for f in report.incomplete} == set(result.crashed)
    assert len(publisher.events.of_type("PROCESSING_STARTED")) == 8


def test_concurrency_bounds_media_in_flight() -> None:
    """No more than `concurrency` media are between start and terminal at once."""
    publisher, _ = run(
        SimulationConfig(models=PRESETS["image"], seed=1, media=10, concurrency=2, speed=0)
    )
    open_now, most = set(), 0
    for event in publisher.events:
        if event["event"] == "PROCESSING_STARTED":
            open_now.add(event["media_id"])
        elif event["event"] in ("PROCESSING_COMPLETED", "PROCESSING_FAILED"):
            open_now.discard(event["media_id"])
        most = max(most, len(open_now))
    assert most == 2


def test_models_report_eta_through_track_in_data_details() -> None:
    """Each progress stage is a model.track() loop: it opens at 0/total without timing,
    then every report carries elapsed, rate and an ETA in wall-clock seconds that falls
    to 0 at the last unit, the way the browser panel shows it."""
    config = SimulationConfig(models=("MFF-MOE-V1",), seed=3, media=1, speed=20)
    publisher, simulation = run(config)
    progress = [e["data"] for e in publisher.events if e["event"].endswith("_PROGRESS")]
    assert progress, "the simulated model reported no progress"
    opening = [data for data in progress if data["progress"] == 0]
    assert opening and all("eta_seconds" not in data.get("details", {}) for data in opening)
    later = [data for data in progress if data["progress"] > 0]
    assert later and all(data["details"]["eta_seconds"] >= 0 for data in later)
    assert all(data["details"]["eta_seconds"] == 0 for data in later
               if data["progress"] == data["total"])
    # The ETA is what is left at the rate measured on the wall clock (rounded to 1 ms),
    # and that clock is the run's: no stage took longer than the whole run. Compared
    # within the run, not to a constant, so a loaded machine changes nothing.
    seconds = simulation.result.seconds  # type: ignore[attr-defined]
    for data in later:
        details = data["details"]
        left = (data["total"] - data["progress"]) / details["rate_per_second"]
        assert details["eta_seconds"] == pytest.approx(left, abs=0.0011), data
        assert 0 <= details["elapsed_seconds"] <= seconds, (data, seconds)  # 1 ms steps


def test_speed_paces_steps_against_the_clock() -> None:
    """With speed > 0 the run takes simulated time / speed of wall time."""
    config = SimulationConfig(models=("MFF-MOE-V1",), seed=1, media=1, speed=20)
    _, simulation = run(config)
    result = simulation.result  # type: ignore[attr-defined]
    # Each step waits for its due time, so the run cannot take less than that; how much
    # more is up to the machine's load, so no upper bound (without pacing it takes ~1 ms).
    assert result.simulated_seconds > 1
    assert result.seconds >= result.simulated_seconds / 20


def test_stop_fails_media_in_flight() -> None:
    """stop() ends the run early and fails in-flight media so the stream stays valid."""
    publisher = CapturingPublisher()
    simulation = Simulation(
        publisher,
        SimulationConfig(models=PRESETS["video"], seed=1, media=5, concurrency=2, speed=1),
    )
    threading.Timer(0.3, simulation.stop).start()
    result = simulation.run()
    assert result.outcomes["interrupted"] == 2  # it ended early: two media in flight
    publisher.events.assert_valid()
    assert publisher.events.types()[-1] == "PROCESSING_FAILED"


def test_duration_stops_new_media() -> None:
    """With duration and no media count, media start until the time is up."""
    publisher = CapturingPublisher()
    result = Simulation(
        publisher,
        SimulationConfig(models=("MFF-MOE-V1",), seed=2, media=None, duration=0.3,
                         concurrency=1, speed=10),
    ).run()
    assert 1 <= result.media <= 4
    publisher.events.assert_valid()


@pytest.mark.parametrize(
    "changes",
    [{"media": 0}, {"fail_rate": 1.5}, {"crash_rate": -0.1}, {"speed": -1},
     {"media": None, "duration": None}, {"concurrency": 0}],
)
def test_config_refuses_bad_values(changes: dict[str, object]) -> None:
    """Out-of-range settings raise ValueError."""
    base = {"models": ("MFF-MOE-V1",), "seed": 1}
    with pytest.raises(ValueError):
        SimulationConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_interrupted_media_count_their_models() -> None:
    """After stop(), the summary counts each model of interrupted media as it really ended."""
    publisher = CapturingPublisher()
    simulation = Simulation(
        publisher,
        SimulationConfig(models=PRESETS["video"], seed=1, media=5, concurrency=2, speed=1),
    )
    threading.Timer(0.3, simulation.stop).start()
    result = simulation.run()
    assert result.outcomes["interrupted"] >= 1
    assert result.model_outcomes["completed"] == len(publisher.events.of_type("ANALYSIS_COMPLETED"))
    assert result.model_outcomes["failed"] == len(publisher.events.of_type("ANALYSIS_FAILED"))
    assert result.model_outcomes["failed"] > 0
