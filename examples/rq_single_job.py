"""The single-job layout: one RQ job runs every model of a media.

    python examples/rq_single_job.py     # REDIS_URL, default redis://127.0.0.1:6379/0

The media and user ids are plain keyword arguments of the job; the decorator takes them
(and `models`) out and passes the job a JobTracking.
"""

from __future__ import annotations

import contextlib
import os
import time

import redis
from rq import Queue

from progress_sdk.rq import JobTracking, TrackingWorker, tracked_job


class NoFaceError(Exception):
    """The model found nothing to analyse."""


@tracked_job
def analyse(tracking: JobTracking, path: str) -> dict[str, str]:
    """Every model of the media; a failed model does not stop the others."""
    for name in tracking.models:
        # Leaving the block completes the model, an exception fails it (ANALYSIS_FAILED);
        # suppress it so the next model still runs.
        with contextlib.suppress(NoFaceError), tracking.model(name) as model:
            for frame in range(1, 41):
                if name == "LIP-FD-V1" and frame == 20:
                    raise NoFaceError(f"no face found in frame {frame} of {path}")
                model.progress(frame, 40)
                time.sleep(0.01)
            model.complete(prediction="REAL", confidence=0.71)
    # Returning ends the media by contract rule 5: PROCESSING_COMPLETED (a model completed).
    return {name: tracking.model(name).state for name in tracking.models}


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    connection = redis.Redis.from_url(url)
    queue = Queue(os.environ.get("EXAMPLE_QUEUE", "progress-example"), connection=connection)
    job = queue.enqueue(
        "rq_single_job.analyse", "/uploads/clip-3.mp4",  # by module: RQ refuses __main__
        media_id="media-3", user_id="user-17", models=["SIGLIP-LSTM-V4", "LIP-FD-V1"],
        filename="clip-3.mp4", job_timeout=600,
    )
    TrackingWorker([queue], connection=connection).work(burst=True, logging_level="ERROR")
    print("model states:", job.return_value())


if __name__ == "__main__":
    main()
