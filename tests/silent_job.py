"""A worker process whose media goes silent mid-run: for the late resync test.

Usage: ``python tests/silent_job.py REDIS_URL CHANNEL PREFIX USER``. Media ``m-0``: model A
completes, model B reports 1 of 4; prints ``ready`` and waits for a line on stdin (the
silence: nothing reaches Redis), then reports B to its end. Exit status 0 once every
event was flushed. Run it with PROGRESS_SDK_LIVENESS_TTL=off to keep it off Redis while
silent.
"""

from __future__ import annotations

import sys

from progress_sdk import ProgressPublisher
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys


def main() -> None:
    url, channel, prefix, user = sys.argv[1:5]
    config = SnapshotConfig(SnapshotKeys(prefix))
    with ProgressPublisher(url, channel, snapshots=config, min_progress_interval=0) as pub:
        with pub.media("m-0", user, filename="clip-0.mp4") as run:
            with run.model("A") as model:
                model.progress(1, 1)
                model.complete(prediction="REAL", confidence=0.75)
            with run.model("B") as model:
                model.progress(1, 4)
                pub.flush(30)
                print("ready", flush=True)
                sys.stdin.readline()
                for step in range(2, 5):
                    model.progress(step, 4)
                model.complete(prediction="FAKE", confidence=0.5)
        sys.exit(0 if pub.flush(60) else 1)


if __name__ == "__main__":
    main()
