"""Resync after a Redis restart: a real relay on its own redis-server, a real publisher
process and real Socket.IO clients that stay connected while Redis goes down and comes
back (issue #17, item 3)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from own_redis import OwnRedis
from redis_cluster import LocalCluster
from relay_support import SECRET, Client, RelayProcess, settle

from progress_sdk.cluster import client_for
from progress_sdk.snapshot import SnapshotKeys, read_user
from simulator.catchup_check import panel_rows, panel_state
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]
JOB = Path(__file__).with_name("restart_job.py")
MEDIA = 36


def duplicates(events: list[tuple[str, Any]]) -> int:
    """progress_update events a socket got although it had them already: a seq at or
    below the last one it got for that media and source, by event or by snapshot."""
    last: dict[tuple[str, str], int] = {}
    repeats = 0
    for name, payload in events:
        if name == "progress_snapshot":
            for source, seq in (payload.get("seqs") or {}).items():
                key = (payload["mediaId"], source)
                last[key] = max(last.get(key, seq), seq)
        elif name == "progress_update" and isinstance(payload.get("seq"), int):
            key = (payload["mediaId"], str(payload.get("source")))
            if payload["seq"] <= last.get(key, -1):
                repeats += 1
            else:
                last[key] = payload["seq"]
    return repeats


def stale_or_missing(client: Client, final: dict[str, tuple[Any, ...]]) -> list[str]:
    """The media whose last state on the socket differs from Redis's final snapshot."""
    shown = panel_rows(panel_state(client.events))
    return sorted(m for m in final if shown.get(m) != final[m])


def run_through(url: str, interrupt: Any) -> tuple[dict[str, list[Client]],
                                                   dict[str, Any], dict[str, Any]]:
    """Three users, two sockets each, connected to a relay on Redis at ``url`` while a worker
    runs 36 media; ``await interrupt(channel, sockets, relay_url)`` once 40 events reached
    the first socket (it may connect more sockets). Returns
    the sockets once each shows every media of its user as Redis holds it at the end (or
    a minute went by), the final rows per user and the relay's /healthz."""
    channel = f"resync-{uuid.uuid4().hex[:8]}"
    keys = SnapshotKeys(f"{channel}:")
    users = [f"u{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    relay = RelayProcess.cli(url, channel, "--snapshot-prefix", keys.prefix, "--no-sweep")

    def final_rows() -> dict[str, Any]:
        reader = client_for(url)
        try:
            return {user: panel_rows({s.media_id: s for s in read_user(reader, keys, user)})
                    for user in users}
        finally:
            reader.close()

    async def scenario() -> dict[str, list[Client]]:
        sockets = {user: [Client(), Client()] for user in users}
        for user, pair in sockets.items():
            for client in pair:
                await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        job = subprocess.Popen([sys.executable, str(JOB), url, channel, keys.prefix,
                                str(MEDIA), *users])
        try:
            await sockets[users[0]][0].wait_for("progress_update", 40, timeout=60)
            await interrupt(channel, sockets, relay.url)
            assert await asyncio.to_thread(job.wait, 120) == 0
        finally:
            if job.poll() is None:
                job.kill()
        final = final_rows()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            stale_or_missing(client, final[user])
            for user, pair in sockets.items() for client in pair
        ):
            await asyncio.sleep(0.1)
        # A repeat the relay sent after the last final row (the job has exited) arrives
        # before a sentinel event published now, so check() sees it.
        await settle(url, [channel], sockets)
        for pair in sockets.values():
            for client in pair:
                await client.sio.disconnect()
        return sockets

    try:
        relay.wait_subscribed()
        sockets = asyncio.run(scenario())
        return sockets, final_rows(), relay.healthz()
    finally:
        relay.stop()


def check(sockets: dict[str, list[Client]], final: dict[str, Any]) -> None:
    """Every media of each user final on each of its sockets, and no event twice."""
    assert sum(len(rows) for rows in final.values()) == MEDIA
    assert all(row[0] in ("completed", "failed") for rows in final.values()
               for row in rows.values())
    stale = {f"{user}/{n}": stale_or_missing(client, final[user])
             for user, pair in sockets.items() for n, client in enumerate(pair)}
    assert all(not media for media in stale.values()), stale
    assert [duplicates(client.events) for pair in sockets.values() for client in pair] == [
        0 for pair in sockets.values() for _ in pair
    ]


def test_sockets_connected_through_a_redis_restart_end_with_every_media_final(
    tmp_path: Path,
) -> None:
    """Redis is killed mid-run and started again (its data kept, as a persistent Redis
    does); the worker buffers meanwhile, and one more socket connects during the outage.
    Every socket ends with every media of its user in its final state, none stale or
    missing, and no event twice: what the relay missed while it had no subscription, and
    what the late socket could not read, came from the snapshots after it resubscribed."""
    server = OwnRedis("--appendonly", "yes", "--appendfsync", "always",
                      "--dir", str(tmp_path)).start()

    async def restart(channel: str, sockets: dict[str, list[Client]], relay_url: str
                     ) -> None:
        server.kill()
        # A socket that connects during the outage gets no snapshot (Redis cannot be
        # read), only the live stream: the resync must send it everything.
        user = next(iter(sockets))
        late = Client()
        await late.connect(relay_url, {"token": sign_token(SECRET, user)})
        sockets[user].append(late)
        await asyncio.sleep(1.5)  # the outage: the worker goes on, buffering
        server.start()

    try:
        sockets, final, health = run_through(server.url, restart)
    finally:
        server.kill()
    check(sockets, final)
    assert health["redis_connects"] >= 2 and health["catch_up"]["resynced"] >= 7
    assert health["catch_up"]["failed"] >= 1  # the socket that connected during the outage


def test_sockets_stay_complete_when_the_relays_subscription_is_cut_again_and_again() -> None:
    """The relay's own subscription is cut five times mid-run (CLIENT KILL TYPE pubsub:
    a failover or a cut path as the relay sees it) while the worker's connection stays:
    the events published before each resubscribe never reach the relay, and every
    socket still ends complete, without a duplicate."""
    server = OwnRedis().start()
    admin = redis.Redis(port=server.port)

    async def cut_five_times(channel: str, sockets: dict[str, list[Client]], relay_url: str
                     ) -> None:
        for _ in range(5):
            admin.client_kill_filter(_type="pubsub")
            await asyncio.sleep(0.3)  # the stream goes on between two cuts

    try:
        sockets, final, health = run_through(server.url, cut_five_times)
    finally:
        admin.close()
        server.kill()
    check(sockets, final)
    assert health["redis_connects"] >= 6 and health["catch_up"]["resynced"] >= 6


@pytest.mark.cluster
def test_sockets_stay_complete_when_a_cluster_node_the_relay_reads_from_dies(
    redis_cluster: LocalCluster,
) -> None:
    """On a Redis Cluster the relay reads the channel from a replica of its shard; that
    replica is killed mid-run and the relay subscribes again on the master within the
    same connection: it resyncs, and every socket ends complete without a duplicate."""
    replicas: list[Any] = []

    async def kill_the_replica(channel: str, sockets: dict[str, list[Client]],
                               relay_url: str) -> None:
        (replica,) = redis_cluster.replicas_of(redis_cluster.owner(channel))
        replicas.append(replica)
        assert replica.process is not None
        replica.process.kill()
        await asyncio.to_thread(replica.process.wait, 5)

    try:
        sockets, final, health = run_through(redis_cluster.url, kill_the_replica)
    finally:
        for replica in replicas:
            redis_cluster.revive(replica)
    check(sockets, final)
    assert health["resubscribes"] >= 1 and health["catch_up"]["resynced"] >= 6
