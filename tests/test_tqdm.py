"""progress_sdk.tqdm: an unchanged ``for x in tqdm(items)`` loop reports its model's
progress as ``model.track()`` does, with tqdm's own bar kept or turned off."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from progress_sdk.testing import CapturingPublisher
from progress_sdk.tqdm import tqdm, trange

MODEL = "SIGLIP-LSTM-V4"


def progress(publisher: CapturingPublisher, model: str = MODEL) -> list[dict[str, Any]]:
    return [e["data"] for e in publisher.events.of_type("FRAME_ANALYSIS_PROGRESS")
            if e["data"]["model_name"] == model]


def test_a_tqdm_loop_reports_as_model_track_does() -> None:
    """Same counts, the same details keys, ETA 0 at the end; the bar still draws."""
    bar_out = io.StringIO()
    with_tqdm, with_track = CapturingPublisher(), CapturingPublisher()
    with with_tqdm.media("m1", "u1") as run, run.model(MODEL):
        seen = list(tqdm(range(12), file=bar_out))
    with with_track.media("m1", "u1") as run, run.model(MODEL) as model:
        list(model.track(range(12)))
    assert seen == list(range(12))
    ours, theirs = progress(with_tqdm), progress(with_track)
    assert [(d["progress"], d["total"]) for d in ours] == [
        (d["progress"], d["total"]) for d in theirs] == [(n, 12) for n in range(13)]
    assert [sorted(d["details"]) for d in ours] == [sorted(d["details"]) for d in theirs]
    assert ours[-1]["details"]["eta_seconds"] == 0
    assert "12/12" in bar_out.getvalue()  # tqdm's own bar, unchanged
    with_tqdm.events.assert_valid()


def test_disable_turns_the_bar_off_and_keeps_the_reporting() -> None:
    """tqdm's disable=True: nothing drawn, every item still counted."""
    bar_out = io.StringIO()
    publisher = CapturingPublisher()
    with publisher.media("m1", "u1") as run, run.model(MODEL):
        for _ in tqdm(["a", "b", "c"], file=bar_out, disable=True):
            pass
    assert bar_out.getvalue() == ""
    assert [d["progress"] for d in progress(publisher)] == [0, 1, 2, 3]


def test_outside_any_model_it_is_plain_tqdm() -> None:
    """No current model: the loop runs and draws, nothing is emitted, nothing raises."""
    publisher = CapturingPublisher()
    bar_out = io.StringIO()
    assert sum(tqdm(range(5), file=bar_out)) == 10
    assert "5/5" in bar_out.getvalue()
    with publisher.media("m1", "u1") as run:
        run.model(MODEL).start().complete()
        list(tqdm(range(3), file=bar_out))  # the model ended: not current any more
    assert progress(publisher) == []


def test_manual_updates_generators_and_other_event_types() -> None:
    """bar.update(n) reports its count; a generator's count goes out at the end as its
    total; event= and phase= choose what the progress is, and model= which model."""
    publisher = CapturingPublisher()
    with publisher.media("m1", "u1") as run:
        audio = run.model("MEL-SPECTROGRAM-CNN-V3").start()
        with run.model(MODEL):
            with tqdm(total=10, file=io.StringIO()) as bar:
                bar.update(3)
                bar.update(7)
            list(tqdm((n for n in range(4)), file=io.StringIO(), phase="visualization",
                      event="VISUALIZATION_GENERATION_PROGRESS"))
            list(trange(6, model=audio, event="WINDOW_PROCESSING_PROGRESS",
                        file=io.StringIO()))
        audio.complete()
    assert [d["progress"] for d in progress(publisher)] == [0, 3, 10]
    (generated,) = publisher.events.of_type("VISUALIZATION_GENERATION_PROGRESS")
    assert (generated["data"]["progress"], generated["data"]["total"]) == (4, 4)
    assert generated["data"]["phase"] == "visualization"
    windows = publisher.events.of_type("WINDOW_PROCESSING_PROGRESS")
    assert [e["data"]["progress"] for e in windows] == list(range(7))
    assert {e["data"]["model_name"] for e in windows} == {"MEL-SPECTROGRAM-CNN-V3"}
    publisher.events.assert_valid()


def test_each_thread_reports_to_the_model_it_runs() -> None:
    """Two threads, a model each: each bar reports to its own thread's model."""
    publisher = CapturingPublisher()
    models = [MODEL, "LIP-FD-V1"]
    with publisher.media("m1", "u1") as run:
        ready = threading.Barrier(2)

        def analyse(name: str, count: int) -> None:
            with run.model(name):
                ready.wait(10)  # both models started before either loop runs
                list(tqdm(range(count), file=io.StringIO()))

        threads = [threading.Thread(target=analyse, args=(name, 5 + i))
                   for i, name in enumerate(models)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    for i, name in enumerate(models):
        assert [d["progress"] for d in progress(publisher, name)] == list(range(6 + i))


def test_lenient_rules_hold_as_for_model_track() -> None:
    """A bar whose count runs past its total is clamped, as progress() repairs it, and
    the job's loop never sees an error."""
    publisher = CapturingPublisher(strict=False)
    with (publisher.media("m1", "u1") as run, run.model(MODEL),
          tqdm(total=3, file=io.StringIO()) as bar):
        bar.update(5)
    assert [d["progress"] for d in progress(publisher)] == [0, 3]


@pytest.mark.parametrize("layout", ["per-model", "single"])
def test_a_tracked_rq_job_reports_through_its_tracker(layout: str) -> None:
    """In an RQ job the bar reports through TrackedModel (which mirrors into job.meta)."""
    from progress_sdk.rq import JobTracking, tracked_job

    @tracked_job
    def analyse(tracking: JobTracking) -> None:
        for name in ([tracking.model_name] if tracking.model_name else tracking.models):
            with tracking.model(name):
                for _ in tqdm(range(4), disable=True):
                    pass

    publisher = CapturingPublisher()
    ids: dict[str, Any] = {"media_id": "m1", "user_id": "u1"}
    ids.update({"model": MODEL} if layout == "per-model" else {"models": [MODEL]})
    analyse.with_publisher(publisher)(**ids)
    assert [d["progress"] for d in progress(publisher)] == [0, 1, 2, 3, 4]


def test_without_the_extra_the_import_says_what_to_install() -> None:
    """No tqdm installed: the ImportError names the extra to install."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tqdm'] = None\n"
            "try:\n    import progress_sdk.tqdm\nexcept ImportError as exc:\n    print(exc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "pip install 'progress-sdk[tqdm]'" in result.stdout
