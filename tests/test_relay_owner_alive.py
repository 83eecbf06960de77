"""The relay's snapshots say whether each running media's worker is alive (``ownerAlive``),
read from the liveness keys by the same reader the SDK's ``read_user_async`` uses: on
connect (catch-up) and after the relay's subscription came back (resync). A real relay
process, its own redis-server and a real Socket.IO client."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis
from own_redis import OwnRedis
from relay_support import SECRET, Client, RelayProcess, wait_until
from snapshot_oracle import fold_each

from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker, read_user
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def write(client: redis.Redis, keys: SnapshotKeys, owner: str, *events: dict[str, Any]) -> None:
    """Fold ``events`` into their snapshots as a publisher named ``owner`` would write
    them (without publishing anything)."""
    tracker = SnapshotTracker(SnapshotConfig(keys), channel="unused", owner=owner)
    for event in events:
        fold_each(tracker, event, time.time())
    for command in tracker.take_commands():
        client.execute_command(*command)


def started(user: str, media_id: str, seq: int = 1) -> dict[str, Any]:
    return {"media_id": media_id, "user_id": user, "event": "PROCESSING_STARTED",
            "data": {"filename": f"{media_id}.mp4"}, "seq": seq, "source": "w"}


def analyzing(user: str, media_id: str, seq: int) -> dict[str, Any]:
    return {"media_id": media_id, "user_id": user, "event": "ANALYSIS_STARTED",
            "data": {"model_name": "M"}, "seq": seq, "source": "w"}


def latest(client: Client) -> dict[str, Any]:
    """mediaId -> the last progress_snapshot the socket got for it."""
    return {s["mediaId"]: s for s in client.named("progress_snapshot")}


def test_catch_up_and_resync_say_which_owners_are_alive() -> None:
    """Three media of one user: one whose worker holds its liveness key, one whose worker
    is gone, one finished. The socket's snapshots say True, False and None, as
    ``read_user`` does; after a cut of the relay's subscription, the resync's snapshots
    (a changed media and a new one) say it too."""
    server = OwnRedis().start()
    admin = redis.Redis(port=server.port)
    keys = SnapshotKeys(f"test-alive-{uuid.uuid4().hex[:8]}:")
    user = f"u-{uuid.uuid4().hex[:8]}"
    alive, gone = f"alive-{uuid.uuid4().hex[:6]}", f"gone-{uuid.uuid4().hex[:6]}"
    admin.set(keys.alive(alive), "1", px=600_000)
    write(admin, keys, alive, started(user, "m-live"), analyzing(user, "m-live", 2))
    write(admin, keys, gone, started(user, "m-gone"), analyzing(user, "m-gone", 2))
    write(admin, keys, alive, started(user, "m-done"), {
        "media_id": "m-done", "user_id": user, "event": "PROCESSING_FAILED",
        "data": {"error_message": "x"}, "seq": 2, "source": "w"})
    expected = {s.media_id: s.owner_alive for s in read_user(admin, keys, user)}
    assert expected == {"m-live": True, "m-gone": False, "m-done": None}
    relay = RelayProcess.cli(server.url, "ch-" + uuid.uuid4().hex[:8], "--snapshot-prefix",
                             keys.prefix, "--no-sweep")
    socket = Client()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        await socket.connect(relay.url, {"token": sign_token(SECRET, user)})
        on_connect = latest(socket)
        # Meanwhile (not published): m-live moves on, a new media of the gone worker.
        write(admin, keys, alive, started(user, "m-live"), analyzing(user, "m-live", 2),
              {"media_id": "m-live", "user_id": user, "event": "FRAME_ANALYSIS_PROGRESS",
               "data": {"model_name": "M", "progress": 1, "total": 2}, "seq": 3,
               "source": "w"})
        write(admin, keys, gone, started(user, "m-new"), analyzing(user, "m-new", 2))
        resynced = relay.healthz()["catch_up"]["resynced"]
        admin.client_kill_filter(_type="pubsub")
        await asyncio.to_thread(wait_until, lambda: relay.healthz()["catch_up"]["resynced"]
                                > resynced, 60.0, "the relay's resync")
        await socket.wait_for("progress_snapshot", len(on_connect) + 2, 60.0)
        after = socket.named("progress_snapshot")[len(on_connect):]
        await socket.sio.disconnect()
        return on_connect, {s["mediaId"]: s for s in after}

    try:
        relay.wait_subscribed()
        on_connect, resync = asyncio.run(scenario())
    finally:
        relay.stop()
        admin.close()
        server.kill()
    assert {m: s["ownerAlive"] for m, s in on_connect.items()} == expected
    assert {m: s["ownerAlive"] for m, s in resync.items()} == {"m-live": True, "m-new": False}
    assert resync["m-live"]["seq"] == 3
