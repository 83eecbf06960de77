"""A worker process for the catch-up tests: one media, two models, a fast stream.

Usage: ``python tests/busy_job.py REDIS_URL CHANNEL PREFIX USER_ID STEPS``. Every progress
step goes out (no coalescing interval), a short pause between steps keeps the stream
running long enough for sockets to join it mid-way.
"""

from __future__ import annotations

import sys
import time

from progress_sdk import ProgressPublisher
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys


def main() -> None:
    url, channel, prefix, user_id, steps = sys.argv[1:6]
    total = int(steps)
    config = SnapshotConfig(SnapshotKeys(prefix))
    with (
        ProgressPublisher(url, channel, snapshots=config, min_progress_interval=0) as pub,
        pub.media("busy", user_id, filename="busy.mp4") as run,
    ):
        with run.model("A") as model:
            for i in range(1, total + 1):
                model.progress(i, total)
                time.sleep(0.0005)
            model.complete(prediction="REAL", confidence=0.5)
        with run.model("B") as model:
            for i in range(1, total // 2 + 1):
                model.progress(i, total // 2, phase="windows")
                time.sleep(0.0005)
            model.fail("out of memory")


if __name__ == "__main__":
    main()
