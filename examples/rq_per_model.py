"""The product's layout: one RQ job per model, and a finalizer per media.

Run it with a Redis server at REDIS_URL (default redis://127.0.0.1:6379/0) and, in
another terminal, `progress-sim listen` to watch the events:

    python examples/rq_per_model.py

It enqueues two media of three models each (one model fails, as models do) and runs a
burst TrackingWorker in this process, which forks a work horse per job.
"""

from __future__ import annotations

import os
import time

import redis
from rq import Queue

from progress_sdk.rq import JobTracking, TrackingWorker, enqueue_media, tracked_job

MODELS = ["SIGLIP-LSTM-V4", "LIP-FD-V1", "COLOR-CUES-LSTM-V1"]


@tracked_job
def analyse_model(tracking: JobTracking, path: str) -> str:
    """One model of one media: its ANALYSIS_STARTED went out before this line runs."""
    model = tracking.model()  # the job's model (ids and model name come from job.meta)
    frames = 60
    for frame in range(1, frames + 1):
        if model.model_name == "LIP-FD-V1" and frame == 30:
            raise ValueError(f"no face found in frame {frame} of {path}")  # -> ANALYSIS_FAILED
        model.progress(frame, frames)  # throttled on the wire and in job.meta["progress"]
        time.sleep(0.01)
    model.complete(prediction="FAKE", confidence=0.93)  # returning completes it too
    return model.model_name


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    connection = redis.Redis.from_url(url)
    queue = Queue(os.environ.get("EXAMPLE_QUEUE", "progress-example"), connection=connection)
    for n in (1, 2):
        # RQ refuses functions of __main__: name the job by its module (this file's).
        jobs = enqueue_media(
            queue, "rq_per_model.analyse_model", f"/uploads/clip-{n}.mp4",
            media_id=f"media-{n}", user_id="user-17", models=MODELS,
            run_id=f"run-{time.time_ns()}", filename=f"clip-{n}.mp4",
        )
        print(f"media-{n}: {len(jobs.jobs)} model jobs, finalizer {jobs.finalizer.id}")
    TrackingWorker([queue], connection=connection).work(burst=True, logging_level="ERROR")
    print("finalizer result:", jobs.last.return_value())  # PROCESSING_COMPLETED


if __name__ == "__main__":
    main()
