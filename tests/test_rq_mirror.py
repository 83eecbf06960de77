"""The job.meta mirror: throttled saves from a thread, the last value always saved."""

from __future__ import annotations

import threading
from typing import Any

from progress_sdk.rq.mirror import MetaMirror, snapshot


class RecordingJob:
    """Stands in for an rq Job: remembers each save_meta() and the meta it saved."""

    id = "job-1"

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.saved: list[dict[str, Any]] = []
        self.threads: set[str] = set()

    def save_meta(self) -> None:
        self.saved.append(dict(self.meta["progress"]))
        self.threads.add(threading.current_thread().name)


def test_many_progress_calls_make_few_saves_and_the_last_value_is_saved() -> None:
    """A thousand updates within one interval: at most two saves, the last one final."""
    job = RecordingJob()
    mirror = MetaMirror(job, interval=5.0)
    for done in range(1, 1001):
        mirror.update(snapshot("SIGLIP-LSTM-V4", "FRAME_ANALYSIS_PROGRESS", done, 1000))
    mirror.close(2.0)
    assert 1 <= len(job.saved) <= 2
    assert (job.saved[-1]["progress"], job.saved[-1]["total"]) == (1000, 1000)
    assert threading.current_thread().name not in job.threads  # never the job's thread


def test_a_failing_save_never_reaches_the_job() -> None:
    """Redis down for the mirror: updates and close() still return, nothing raises."""

    class BrokenJob(RecordingJob):
        def save_meta(self) -> None:
            raise ConnectionError("Redis is down")

    mirror = MetaMirror(BrokenJob(), interval=0.05)
    for done in range(1, 101):
        mirror.update(snapshot("LIP-FD-V1", "FRAME_ANALYSIS_PROGRESS", done, 100))
    mirror.close(2.0)
