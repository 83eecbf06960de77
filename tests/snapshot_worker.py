"""A plain worker process for the sweeper tests: reports one media until it is killed.

Usage: ``python tests/snapshot_worker.py REDIS_URL CHANNEL PREFIX MEDIA_ID USER_ID``. It
publishes each event and writes its snapshot in one pipeline, snapshot first, as the
publisher does, completes model A, then reports model B's progress forever (a job that
will be SIGKILLed mid-run).
"""

from __future__ import annotations

import json
import sys
import time
from itertools import count

import redis

from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker


def main() -> None:
    url, channel, prefix, media_id, user_id = sys.argv[1:6]
    client = redis.Redis.from_url(url)
    tracker = SnapshotTracker(SnapshotConfig(SnapshotKeys(prefix)))
    seq = count(1)

    def emit(event: str, **data: object) -> None:
        wire = {"media_id": media_id, "user_id": user_id, "event": event, "message": event,
                "data": data, "schema_version": 1, "seq": next(seq), "source": "kill-me",
                "timestamp": "2026-11-26T05:00:00.000000Z"}
        tracker.apply(wire, time.time())
        pipe = client.pipeline(transaction=False)
        for command in tracker.take_commands():
            pipe.execute_command(*command)
        pipe.publish(channel, json.dumps(wire))
        pipe.execute()

    emit("PROCESSING_STARTED", filename="doomed.mp4")
    emit("ANALYSIS_STARTED", model_name="A")
    emit("ANALYSIS_COMPLETED", model_name="A", prediction="REAL", confidence=0.5)
    emit("ANALYSIS_STARTED", model_name="B")
    for i in count(1):
        emit("FRAME_ANALYSIS_PROGRESS", model_name="B", progress=min(i, 10**6), total=10**6)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
