"""A plain worker process for the liveness tests.

Usage: ``python tests/liveness_worker.py REDIS_URL CHANNEL PREFIX MODE ARG``, with the
liveness TTL from ``PROGRESS_SDK_LIVENESS_TTL``. Modes:

- ``silent SECONDS``: one media (``quiet-media``); model A reports some progress, then
  its step is silent for SECONDS, then it reports again and the media completes. Prints
  one JSON line at the end: the publisher's ``fenced_runs``, ``dropped`` and whether
  ``run_swept``/``MediaRun.swept`` said the run was ended by a sweeper.
- ``die COUNT``: COUNT media (``dead-0``..), each with a model that reported progress;
  prints ``ready`` once their snapshots are written, then waits for a line on stdin
  and ends with ``os._exit`` (as after SIGKILL or OOM: nothing runs at exit).
"""

from __future__ import annotations

import json
import os
import sys
import time

from progress_sdk import ProgressPublisher
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys


def silent(publisher: ProgressPublisher, seconds: float) -> None:
    run = publisher.media("quiet-media", "u-quiet", filename="quiet.mp4").start()
    model = run.model("A").start()
    for i in range(1, 4):
        model.progress(i, 10)
    publisher.flush(10)
    print("silent", flush=True)
    time.sleep(seconds)  # the job's step: loading weights, a long transcode...
    for i in range(4, 11):
        model.progress(i, 10)
    model.complete(prediction="REAL", confidence=0.9)
    run.finish()
    publisher.flush(10)
    stats = publisher.stats()
    print(json.dumps({"fenced_runs": stats.fenced_runs, "dropped": dict(stats.dropped),
                      "swept": publisher.run_swept("quiet-media")
                      and run.swept}),
          flush=True)


def die(publisher: ProgressPublisher, count: int) -> None:
    for n in range(count):
        run = publisher.media(f"dead-{n}", "u-dead", filename=f"{n}.mp4").start()
        run.model("A").start().progress(1, 10)
    publisher.flush(10)
    print("ready", flush=True)
    sys.stdin.readline()
    os._exit(1)


def main() -> None:
    url, channel, prefix, mode, arg = sys.argv[1:6]
    publisher = ProgressPublisher(url, channel, snapshots=SnapshotConfig(SnapshotKeys(prefix)),
                                  min_progress_interval=0)
    if mode == "silent":
        silent(publisher, float(arg))
    else:
        die(publisher, int(arg))
    publisher.close()


if __name__ == "__main__":
    main()
