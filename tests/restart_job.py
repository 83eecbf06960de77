"""A worker process for the resync test: media of several users, each with two models,
reported step by step so the run goes on through a Redis restart.

Usage: ``python tests/restart_job.py REDIS_URL CHANNEL PREFIX MEDIA USER [USER ...]``.
Media ``m-0`` .. ``m-<MEDIA-1>`` go to the users in turn, two at a time (threads); every
fifth media's second model fails. Exit status 0 once every event was flushed.
"""

from __future__ import annotations

import sys
import threading
import time

from progress_sdk import ProgressPublisher
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys

STEPS = 8


def one_media(publisher: ProgressPublisher, n: int, user_id: str) -> None:
    with publisher.media(f"m-{n}", user_id, filename=f"clip-{n}.mp4") as run:
        for name in ("A", "B"):
            with run.model(name) as model:
                for step in range(1, STEPS + 1):
                    model.progress(step, STEPS, phase="frame_analysis")
                    time.sleep(0.02)
                if name == "B" and n % 5 == 4:
                    model.fail("out of memory")
                else:
                    model.complete(prediction="REAL", confidence=0.75)


def main() -> None:
    url, channel, prefix, media = sys.argv[1:5]
    users = sys.argv[5:]
    config = SnapshotConfig(SnapshotKeys(prefix))
    with ProgressPublisher(url, channel, snapshots=config, min_progress_interval=0) as pub:
        for start in range(0, int(media), 2):
            pair = [threading.Thread(target=one_media, args=(pub, n, users[n % len(users)]))
                    for n in range(start, min(start + 2, int(media)))]
            for thread in pair:
                thread.start()
            for thread in pair:
                thread.join()
        sys.exit(0 if pub.flush(60) else 1)


if __name__ == "__main__":
    main()
