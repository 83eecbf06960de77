"""A plain worker process for the sweeper tests: reports one media until it is killed.

Usage: ``python tests/snapshot_worker.py REDIS_URL CHANNEL PREFIX MEDIA_ID USER_ID``. It
publishes through ``ProgressPublisher`` with snapshots under PREFIX, completes model A,
then reports model B's progress forever (a job that will be SIGKILLed mid-run).
"""

from __future__ import annotations

import sys
import time
from itertools import count

from progress_sdk import ProgressPublisher
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys


def main() -> None:
    url, channel, prefix, media_id, user_id = sys.argv[1:6]
    publisher = ProgressPublisher(url, channel, snapshots=SnapshotConfig(SnapshotKeys(prefix)),
                                  min_progress_interval=0.02)
    run = publisher.media(media_id, user_id, filename="doomed.mp4").start()
    with run.model("A") as model:
        model.complete(prediction="REAL", confidence=0.5)
    model = run.model("B").start()
    for i in count(1):
        model.progress(min(i, 10**6), 10**6)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
