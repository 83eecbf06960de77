"""The browser package's store (clients/js) on a real connection to a real relay:
``connect(url, token)`` joins mid-run, gets its user's snapshots, then the live events,
and ends with the state the run's own subscriber saw, without a repeat. Issue #19."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
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
        # Not communicate(): it reads the pipe's descriptor and would skip what readline()
        # already took into the text wrapper's buffer (lines cut mid-way, a JSON error).
        with run.stdout:
            out = run.stdout.read()
        run.wait(timeout=120)
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


def line_reader(process: subprocess.Popen[str]) -> Any:
    """A function returning ``process``'s next stdout line as JSON, failing the test after
    a generous 60 s (a hung watcher) instead of blocking."""

    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    out = process.stdout
    def pump() -> None:
        with out:  # closed by this thread at the end, never under its feet
            for line in out:
                lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lambda: json.loads(lines.get(timeout=60))


def test_connect_with_a_token_provider_comes_back_after_the_session_ended(
    js_client: Path, redis_url: str, channel: str
) -> None:
    """The relay ends the session when the first token expires: the store says so
    (``connection: "ended"`` and why), then ``connect`` asks the provider for a fresh token
    and connects again by itself, and a live event shows. #21."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    relay = RelayProcess.cli(redis_url, channel, "--no-sweep")
    watch = None
    try:
        relay.wait_subscribed()
        watch = subprocess.Popen(
            ["node", str(WATCH.parent / "session_watch.mjs"), relay.url, "m-after"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert watch.stdin is not None
        lines = line_reader(watch)
        assert lines() == {"need": 0}
        # Signed as it is used: 8 s is the handshake's margin on a busy machine.
        watch.stdin.write(sign_token(SECRET, user, now=time.time() - 52, expires_in=60) + "\n")
        watch.stdin.flush()
        assert lines() == {"caughtUp": True}
        ended = lines()["ended"]
        assert ended["reason"] == "token_expired" and ended["message"]
        assert lines() == {"need": 1}  # asked for a fresh one, by itself
        watch.stdin.write(sign_token(SECRET, user) + "\n")
        watch.stdin.flush()
        assert lines() == {"connectedAgain": True}
        client = redis.Redis.from_url(redis_url)
        client.publish(channel, json.dumps({
            "media_id": "m-after", "user_id": user, "event": "PROCESSING_STARTED",
            "message": "started", "data": {"filename": "after.mp4"}}))
        client.close()
        assert lines() == {"media": "after.mp4"}
        assert watch.wait(timeout=60) == 0
    finally:
        if watch is not None:
            if watch.poll() is None:
                watch.kill()
            watch.wait()
            assert watch.stdin is not None
            watch.stdin.close()
        relay.stop()
