"""The browser package's store (clients/js) on a real connection to a real relay:
``connect(url, token)`` joins mid-run, gets its user's snapshots, then the live events,
and ends with the state the run's own subscriber saw, without a repeat. Issue #19."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from relay_support import SECRET, RelayProcess, wait_until

from progress_sdk.snapshot import MediaSnapshot, apply_event
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WATCH = Path(__file__).parent / "node_client" / "store_watch.mjs"
USER = "user-1"


def truth(ndjson: str) -> dict[str, Any]:
    """Each media's final state as the run's own subscriber saw it."""
    panel: dict[str, MediaSnapshot] = {}
    for line in ndjson.splitlines():
        event = json.loads(line)
        panel[event["media_id"]] = apply_event(panel.get(event["media_id"]), event, 0.0)
    return {media_id: (snap.status, {name: (m.status, m.progress, m.prediction, m.error)
                                     for name, m in snap.models.items()})
            for media_id, snap in panel.items()}  # fmt: skip


def shown(state: dict[str, Any]) -> dict[str, Any]:
    """The same view of the store's state."""
    return {media_id: (m["status"], {name: (r["status"], r["progress"], r["prediction"],
                                            r["error"]) for name, r in m["models"].items()})
            for media_id, m in state["media"].items()}  # fmt: skip


def test_connect_joins_mid_run_and_ends_with_the_runs_state(
    js_client: Path, redis_url: str, channel: str
) -> None:
    """Joined after the run's first events: snapshots, then live, the same final state."""
    prefix = f"test-jsrelay-{uuid.uuid4().hex[:8]}:"
    relay = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", prefix, "--no-sweep")
    run = None
    try:
        relay.wait_subscribed()
        run = subprocess.Popen(
            [sys.executable, "-c", "from simulator.cli import main; main()", "--redis-url",
             redis_url, "--channel", channel, "run", "--users", "1", "--media", "2",
             "--concurrency", "2", "--speed", "5", "--seed", "4", "--fail-rate", "0.3",
             "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PROGRESS_SNAPSHOT_PREFIX": prefix},
        )  # fmt: skip
        assert run.stdout is not None
        first = run.stdout.readline()  # the run has begun: the watcher joins mid-run
        watch = subprocess.Popen(["node", str(WATCH), relay.url, sign_token(SECRET, USER), "2"],
                                 stdout=subprocess.PIPE, text=True)
        out, _ = run.communicate(timeout=120)
        got, _ = watch.communicate(timeout=60)
        lines = [json.loads(line) for line in got.splitlines()]
        assert lines[0] == {"connected": True}
        state = lines[-1]["state"]
        assert shown(state) == truth(first + out)
        assert state["counters"]["snapshots"] >= 1  # it did join mid-run
        wait_until(lambda: relay.healthz()["sockets"] == 0, what="the watcher to leave")
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.communicate()
        relay.stop()
