"""Tests for simulator.job: seeded media plans and playing them through the tracking API."""

from __future__ import annotations

from progress_sdk.testing import CapturingPublisher
from simulator.catalog import PRESETS
from simulator.job import MediaJob, PlanOptions, plan_media

ALL = PRESETS["all"]


def play(publisher: CapturingPublisher, options: PlanOptions, index: int) -> MediaJob:
    job = MediaJob(publisher, plan_media(index, options), 0.0)
    while not job.done:
        job.step()
    return job


def test_same_seed_and_index_give_the_same_plan() -> None:
    """A plan depends only on (seed, index, options)."""
    options = PlanOptions(models=ALL, seed=42, fail_rate=0.3, crash_rate=0.2)
    assert plan_media(5, options) == plan_media(5, options)
    assert plan_media(5, options) != plan_media(6, options)
    assert plan_media(5, options) != plan_media(5, PlanOptions(models=ALL, seed=43))


def test_plan_steps_are_in_time_order_and_start_first() -> None:
    """Steps are sorted by simulated time and PROCESSING_STARTED comes first."""
    plan = plan_media(0, PlanOptions(models=ALL, seed=1))
    times = [s[0] for s in plan.steps]
    assert times == sorted(times)
    assert plan.steps[0][1] == "start"
    assert plan.steps[-1][1] == "finish"


def test_media_kind_matches_models() -> None:
    """Image media run the image models; video media run video and audio models."""
    options = PlanOptions(models=ALL, seed=3)
    kinds = set()
    for index in range(40):
        plan = plan_media(index, options)
        if plan.filename.endswith((".jpg", ".png")):
            assert set(plan.models) == set(PRESETS["image"])
            kinds.add("image")
        else:
            assert plan.filename.endswith(".mp4")
            assert set(plan.models) == set(PRESETS["video"]) | set(PRESETS["audio"])
            kinds.add("video")
    assert kinds == {"image", "video"}


def test_audio_only_selection_names_audio_files() -> None:
    """With only audio models the media are audio files."""
    plan = plan_media(0, PlanOptions(models=PRESETS["audio"], seed=1))
    assert plan.filename.endswith((".wav", ".mp3"))


def test_users_spread_over_the_given_count() -> None:
    """user ids are user-1 … user-N."""
    options = PlanOptions(models=PRESETS["image"], seed=9, users=4)
    users = {plan_media(i, options).user_id for i in range(60)}
    assert users == {"user-1", "user-2", "user-3", "user-4"}


def test_played_plan_is_a_valid_stream() -> None:
    """A media played through the tracking API keeps every contract rule."""
    publisher = CapturingPublisher()
    options = PlanOptions(models=ALL, seed=11, fail_rate=0.3)
    for index in range(6):
        play(publisher, options, index)
    publisher.events.assert_valid()
    assert "ANALYSIS_FAILED" in publisher.events.types()


def test_failures_carry_realistic_error_messages() -> None:
    """With fail_rate 1 every model fails with a non-empty error and the media fails."""
    publisher = CapturingPublisher()
    job = play(publisher, PlanOptions(models=PRESETS["video"], seed=2, fail_rate=1.0), 0)
    failures = publisher.events.of_type("ANALYSIS_FAILED")
    assert job.plan.outcome == "failed"
    assert failures and all(e["data"]["error_message"] for e in failures)
    assert publisher.events.types()[-1] == "PROCESSING_FAILED"
    publisher.events.assert_valid()


def test_crashed_media_stop_without_terminal_events() -> None:
    """A crashed media emits no terminal event, so the validator sees an incomplete run."""
    publisher = CapturingPublisher()
    job = play(publisher, PlanOptions(models=PRESETS["audio"], seed=5, crash_rate=1.0), 0)
    assert job.crashed and job.plan.outcome == "crashed"
    types = publisher.events.types()
    assert "PROCESSING_COMPLETED" not in types and "PROCESSING_FAILED" not in types
    report = publisher.events.validate()
    assert report.violation_count == 0
    assert [f.media_id for f in report.incomplete] == [job.plan.media_id]


def test_abort_fails_the_media_and_its_open_models() -> None:
    """abort() ends an in-flight media with PROCESSING_FAILED, keeping the stream valid."""
    publisher = CapturingPublisher()
    job = MediaJob(publisher, plan_media(0, PlanOptions(models=PRESETS["video"], seed=1)), 0.0)
    for _ in range(30):
        job.step()
    job.abort("simulation interrupted")
    assert job.done
    assert publisher.events.types()[-1] == "PROCESSING_FAILED"
    publisher.events.assert_valid()
