"""Resync after a Redis restart that lost every key (no persistence, as production runs
it): a real relay on its own redis-server, a real publisher process with media in flight
and real Socket.IO clients (issue #17, item 3). What Redis lost, the snapshots too, comes
back from the publisher, which rewrites the whole snapshot of every media it still
tracks before its next event reaches the new server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from own_redis import OwnRedis
from relay_support import SECRET, Client, RelayProcess
from tcp_proxy import TcpProxy
from test_relay_resync import MEDIA, check, duplicates, run_through, stale_or_missing

from progress_sdk.cluster import client_for
from progress_sdk.snapshot import SnapshotKeys, read_user
from simulator.catchup_check import panel_rows
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]
SILENT_JOB = Path(__file__).with_name("silent_job.py")


def snapshots_back(url: str, prefix: str, user: str) -> int:
    """How many snapshots of ``user`` Redis holds now."""
    reader = client_for(url)
    try:
        return len(read_user(reader, SnapshotKeys(prefix), user))
    finally:
        reader.close()


def not_whole(final: dict[str, Any]) -> list[str]:
    """The media of the run Redis does not hold as the job reported them: missing, not
    ended, or without both models' rows (held to the job, not to Redis: a snapshot
    rewritten in part would pass a check against Redis alone). A model's failure ends its
    row; the media still completes."""
    rows = {media: row for user_rows in final.values() for media, row in user_rows.items()}
    wrong = [f"m-{n}" for n in range(MEDIA) if f"m-{n}" not in rows]
    for media, (status, _, models) in rows.items():
        failing = int(media[2:]) % 5 == 4
        if status != "completed" or [(m[0], m[1]) for m in models] != [
                ("A", "completed"), ("B", "failed" if failing else "completed")]:
            wrong.append(media)
    return sorted(wrong)


def faults(sockets: dict[str, list[Client]], final: dict[str, Any]) -> dict[str, int]:
    """What the run got wrong: media Redis does not hold whole at the end, and over all
    sockets, media whose last state differs from it, and events received twice."""
    clients = [(client, final[user]) for user, pair in sockets.items() for client in pair]
    return {
        "not_whole_in_redis": len(not_whole(final)),
        "stale_or_missing_on_sockets": sum(len(stale_or_missing(c, rows)) for c, rows in clients),
        "duplicates": sum(duplicates(c.events) for c, _ in clients),
    }


async def restart_empty(server: OwnRedis, channel: str, sockets: dict[str, list[Client]],
                        relay_url: str) -> None:
    """Kill ``server`` and start it again empty; once the worker wrote its snapshots
    back, connect one more socket of the second user and reload the third user's first."""
    server.kill()
    await asyncio.sleep(1.5)  # the outage: the worker goes on, buffering
    server.start()
    users = list(sockets)
    prefix = f"{channel}:"
    # The worker reconnected and wrote again: a socket that connects now, and a page
    # reloaded now, must get every media of their user from the snapshots.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
        [await asyncio.to_thread(snapshots_back, server.url, prefix, user)
         for user in users]
    ):
        await asyncio.sleep(0.05)
    late = Client()
    await late.connect(relay_url, {"token": sign_token(SECRET, users[1])})
    sockets[users[1]].append(late)
    reloaded = sockets[users[2]][0]
    await reloaded.sio.disconnect()
    fresh = Client()
    await fresh.connect(relay_url, {"token": sign_token(SECRET, users[2])})
    sockets[users[2]][0] = fresh


def check_complete(sockets: dict[str, list[Client]], final: dict[str, Any],
                   health: dict[str, Any]) -> None:
    found = faults(sockets, final)
    print("faults after a restart without persistence:", found)
    assert found == dict.fromkeys(found, 0), (found, not_whole(final))
    check(sockets, final)
    assert health["redis_connects"] >= 2 and health["catch_up"]["resynced"] >= 5


def test_sockets_end_complete_after_a_redis_restart_that_lost_every_key() -> None:
    """Redis is killed mid-run and started again empty. Sockets that stayed connected,
    one that connects after the restart and a page reloaded after it each end with
    every media of their user final, none stale or missing, and no event twice."""
    server = OwnRedis().start()

    async def interrupt(channel: str, sockets: dict[str, list[Client]],
                        relay_url: str) -> None:
        await restart_empty(server, channel, sockets, relay_url)

    try:
        sockets, final, health = run_through(server.url, interrupt)
    finally:
        server.kill()
    check_complete(sockets, final, health)


def test_sockets_that_stayed_end_complete_when_others_joined_before_the_relay_resubscribed(
) -> None:
    """As above, but the relay subscribes again only once the late socket and the
    reloaded page caught up from the snapshots the worker wrote back (its SUBSCRIBE is
    held at a proxy; its reads pass): what they read, the user's sockets that stayed
    connected never got live, and the resync still sends it to them. Before the fix the
    late sockets' snapshots counted as held by every socket of their user: 16 media
    stale on the sockets that stayed (as in the loaded suite, where the relay's
    reconnect backoff made it subscribe after the late sockets joined)."""
    server = OwnRedis().start()
    proxy = TcpProxy(("127.0.0.1", server.port))

    async def interrupt(channel: str, sockets: dict[str, list[Client]],
                        relay_url: str) -> None:
        proxy.hold_subscribes()
        try:
            await restart_empty(server, channel, sockets, relay_url)
        finally:
            proxy.release_subscribes()

    try:
        sockets, final, health = run_through(proxy.url, interrupt)
    finally:
        proxy.close()
        server.kill()
    check_complete(sockets, final, health)


def test_a_socket_that_joins_before_a_silent_worker_reconnects_is_resynced_late() -> None:
    """Redis restarts empty while a worker's media is silent (liveness off: nothing of
    it reaches Redis until its next event). A socket that joins then reads no snapshot;
    the worker then goes on and rewrites the media whole. The relay's late pass sends the
    socket the whole snapshot, so it ends with the media as Redis holds it (with its
    first model's row, which no live event carried after the restart)."""
    server = OwnRedis().start()
    channel = f"late-{uuid.uuid4().hex[:8]}"
    prefix, user = f"{channel}:", f"u-{uuid.uuid4().hex[:6]}"
    relay = RelayProcess.cli(server.url, channel, "--snapshot-prefix", prefix, "--no-sweep")
    env = {**os.environ, "PROGRESS_SDK_LIVENESS_TTL": "off"}
    job = subprocess.Popen([sys.executable, str(SILENT_JOB), server.url, channel, prefix, user],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    async def scenario() -> Client:
        assert job.stdout is not None and job.stdin is not None
        assert await asyncio.to_thread(job.stdout.readline) == "ready\n"
        server.kill()
        server.start()
        await asyncio.to_thread(relay.wait_subscribed, 2)
        socket = Client()
        await socket.connect(relay.url, {"token": sign_token(SECRET, user)})
        assert socket.named("progress_snapshot") == []  # Redis had nothing of it yet
        job.stdin.write("go\n")
        job.stdin.flush()
        assert await asyncio.to_thread(job.wait, 60) == 0
        final = panel_rows({s.media_id: s for s in await asyncio.to_thread(
            read_all, server.url, prefix, user)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stale_or_missing(socket, final):
            await asyncio.sleep(0.1)
        await socket.sio.disconnect()
        socket.final = final  # type: ignore[attr-defined]
        return socket

    try:
        relay.wait_subscribed()
        socket = asyncio.run(scenario())
    finally:
        if job.poll() is None:
            job.kill()
        job.wait(10)
        for pipe in (job.stdin, job.stdout):
            if pipe is not None:
                pipe.close()
        relay.stop()
        server.kill()
    final = socket.final  # type: ignore[attr-defined]
    assert [row[0] for row in final.values()] == ["completed"]
    assert [m[:2] for m in final["m-0"][2]] == [("A", "completed"), ("B", "completed")]
    assert stale_or_missing(socket, final) == [] and duplicates(socket.events) == 0


def read_all(url: str, prefix: str, user: str) -> list[Any]:
    reader = client_for(url)
    try:
        return read_user(reader, SnapshotKeys(prefix), user)
    finally:
        reader.close()
