"""RQ integration benchmark: what @tracked_job costs a job, against hand-written tracking.

One command, against the local Redis (REDIS_URL or redis://127.0.0.1:6379/0, RQ's keys in
database 15):

    python benchmarks/rq_bench.py [--jobs 30] [--frames 300] [--rounds 3]

Both variants run one model of a media in a forked work horse of the same
``TrackingWorker``, reporting ``--frames`` progress values:

- baseline: the job calls the tracking API itself (``publisher.media(...)``, ``start()``,
  ``model(...)``, ``progress``, ``complete``, ``finish()``), as job code did before;
- tracked: ``@tracked_job`` in the per-model layout (``enqueue_media``): shared state in
  Redis at the start and end of the model, a flush at the model's end, the job.meta mirror.

Figures: RQ's own job duration (``ended_at - started_at``, in the horse), median per
variant per round; jobs of the two variants alternate in the queue, rounds repeat. A
subscriber in another process counts the events received. Timings on a shared
machine are noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import uuid
from typing import Any

import redis
from rq import Queue

from progress_sdk import ProgressPublisher
from progress_sdk.rq import JobTracking, TrackingWorker, enqueue_media, tracked_job

MODEL = "SIGLIP-LSTM-V4"
_PUBLISHER: ProgressPublisher | None = None


def baseline_job(media_id: str, frames: int) -> None:
    """Hand-written tracking of one model, one run (the single-model equivalent)."""
    global _PUBLISHER  # noqa: PLW0603 - one publisher per horse, as job code keeps it
    if _PUBLISHER is None:
        _PUBLISHER = ProgressPublisher()
    with _PUBLISHER.media(media_id, "u-bench", run_id=f"run-{media_id}") as run:
        run.queue([MODEL])
        with run.model(MODEL) as model:
            for frame in range(1, frames + 1):
                model.progress(frame, frames)
            model.complete("FAKE", 0.9)


@tracked_job
def tracked(tracking: JobTracking, frames: int) -> None:
    """The same work through @tracked_job (per-model layout)."""
    model = tracking.model()
    for frame in range(1, frames + 1):
        model.progress(frame, frames)
    model.complete("FAKE", 0.9)


def _count(url: str, channel: str, ready: Any, stop: Any, result: Any) -> None:
    pubsub = redis.Redis.from_url(url).pubsub()
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=2)
    ready.set()
    count = 0
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "message":
            count += 1
    result.put(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="jobs per variant per round")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    url = base.rsplit("/", 1)[0] + "/15"
    channel = f"bench-rq-{uuid.uuid4().hex}"
    os.environ.update(REDIS_URL=url, MEDIA_PROGRESS_CHANNEL_NAME=channel,
                      PROGRESS_SDK_RQ_PREFIX=f"bench-rq:{uuid.uuid4().hex}")
    ready, stop, result = mp.Event(), mp.Event(), mp.Queue()
    counter = mp.Process(target=_count, args=(url, channel, ready, stop, result))
    counter.start()
    ready.wait(10)
    connection = redis.Redis.from_url(url)
    announcer = ProgressPublisher(url, channel)
    medians: dict[str, list[float]] = {"baseline": [], "tracked": []}
    for _ in range(options.rounds):
        queue = Queue(f"bench-rq-{uuid.uuid4().hex}", connection=connection)
        jobs: dict[str, list[Any]] = {"baseline": [], "tracked": []}
        for i in range(options.jobs):
            media_id = f"bench-{uuid.uuid4().hex[:8]}-{i}"
            jobs["baseline"].append(
                queue.enqueue("rq_bench.baseline_job", media_id, options.frames)
            )
            enqueued = enqueue_media(
                queue, "rq_bench.tracked", options.frames, media_id=media_id + "t",
                user_id="u-bench", models=[MODEL], publisher=announcer,
            )
            jobs["tracked"].append(enqueued.jobs[MODEL])
        TrackingWorker([queue], connection=connection).work(burst=True, logging_level="ERROR")
        for name, variant in jobs.items():
            durations = []
            for job in variant:
                job.refresh()
                durations.append((job.ended_at - job.started_at).total_seconds())
            medians[name].append(statistics.median(durations))
        queue.delete(delete_jobs=True)
    announcer.close()
    time.sleep(0.5)
    stop.set()
    received = result.get(timeout=10)
    counter.join(10)
    b, t = statistics.median(medians["baseline"]), statistics.median(medians["tracked"])
    print(f"job duration, median of {options.rounds} round medians ({options.jobs} jobs each, "
          f"{options.frames} progress calls per job):")
    print(f"  baseline (hand-written tracking): {b * 1000:7.2f} ms  "
          f"rounds {[round(m * 1000, 2) for m in medians['baseline']]}")
    print(f"  @tracked_job (per-model layout): {t * 1000:7.2f} ms  "
          f"rounds {[round(m * 1000, 2) for m in medians['tracked']]}")
    print(f"  ratio tracked/baseline: {t / b:.2f}  (difference {1000 * (t - b):+.2f} ms per job)")
    print(f"subscriber (another process) received {received} events")


if __name__ == "__main__":
    main()
