"""The relay on a Redis Cluster: sharded subscriptions, Socket.IO clients, and a master
killed mid-run while the publisher keeps emitting."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from redis_cluster import LocalCluster
from relay_support import SECRET, Client, RelayProcess, settle

from progress_sdk import ProgressPublisher
from progress_sdk.sharding import shard_channels, shard_of
from simulator.relay import sign_token

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

STEPS = 40


def _relay(cluster: LocalCluster, channel: str, shards: int) -> RelayProcess:
    argv = [sys.executable, "-c", "from simulator.cli import main; main()",
            "--redis-url", cluster.url, "--channel", channel, "--shards", str(shards),
            "relay", "--port", "0", "--log-level", "info"]
    relay = RelayProcess(argv, env={"JWT_SECRET": SECRET})
    relay.wait_subscribed()
    return relay


def _job(publisher: ProgressPublisher, media_id: str, user_id: str, pace: float,
         halfway: Callable[[], None] | None = None) -> None:
    """A media analysed by one model, reporting every step (paced); ``halfway()`` is
    called after half the steps (it may block the job)."""
    with publisher.media(media_id, user_id, filename=f"{media_id}.mp4") as run, \
            run.model("SIGLIP-LSTM-V4") as model:
        for i in range(1, STEPS + 1):
            model.progress(i, STEPS)
            if halfway is not None and i == STEPS // 2:
                halfway()
            time.sleep(pace)
        model.complete("FAKE", 0.9)


def _media_for_every_shard(shards: int, per_shard: int) -> list[str]:
    found: dict[int, list[str]] = {k: [] for k in range(shards)}
    n = 0
    while any(len(v) < per_shard for v in found.values()):
        media = f"m-{uuid.uuid4().hex[:6]}-{n}"
        n += 1
        if len(found[shard_of(media, shards)]) < per_shard:
            found[shard_of(media, shards)].append(media)
    return [m for ms in found.values() for m in ms]


def _seqs(client: Client, media_id: str) -> list[int]:
    return [u["seq"] for u in client.named("progress_update") if u["mediaId"] == media_id]


def test_relay_on_a_cluster_delivers_every_shard_to_its_users(redis_cluster):
    """A relay given a node's URL and --shards 3 delivers media from all three shards to
    their users' sockets only, each media complete and in order."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    relay = _relay(redis_cluster, base, 3)
    media = _media_for_every_shard(3, 2)
    users = {m: f"u-{i % 2}-{base}" for i, m in enumerate(media)}

    async def scenario() -> dict[str, Client]:
        clients = {u: Client() for u in set(users.values())}
        for user, client in clients.items():
            await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        with ProgressPublisher(redis_cluster.url, base, shards=3) as publisher:
            jobs = [threading.Thread(target=_job, args=(publisher, m, users[m], 0))
                    for m in media]
            for job in jobs:
                job.start()
            for job in jobs:
                job.join()
            assert publisher.flush(10)
        for user, client in clients.items():
            mine = [m for m in media if users[m] == user]
            await client.wait_for("media_update", len(mine), 15)
        for client in clients.values():
            await client.sio.disconnect()
        return clients

    try:
        clients = asyncio.run(scenario())
    finally:
        relay.stop()
    for m in media:
        client = clients[users[m]]
        seqs = _seqs(client, m)
        assert seqs == sorted(set(seqs)) and seqs[0] == 1
        assert any(u["mediaId"] == m for u in client.named("media_update"))
        other = next(c for u, c in clients.items() if u != users[m])
        assert _seqs(other, m) == []


def test_a_master_killed_mid_run_costs_only_counted_events(redis_cluster):
    """A master serving a shard channel is killed while media are being published; its
    replica is promoted, the publisher resumes and every media reaches its user complete,
    in order, without repeats; whatever did not arrive is counted by the publisher."""
    base = f"t-{uuid.uuid4().hex[:8]}"
    relay = _relay(redis_cluster, base, 3)
    media = _media_for_every_shard(3, 2)
    users = {m: f"u-{i % 3}-{base}" for i, m in enumerate(media)}
    victim = redis_cluster.owner(shard_channels(base, 3)[0])

    async def scenario() -> tuple[dict[str, Client], ProgressPublisher]:
        clients = {u: Client() for u in set(users.values())}
        for user, client in clients.items():
            await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        publisher = ProgressPublisher(redis_cluster.url, base, shards=3,
                                      min_progress_interval=0)
        # Mid-run: every job waits halfway until the master is dead, so each media has
        # started, none has ended, and each publishes its second half during the
        # fail-over (the bounds only end a hung test).
        halfway, killed = threading.Barrier(len(media) + 1), threading.Event()

        def pause() -> None:
            halfway.wait(60)
            killed.wait(60)

        jobs = [threading.Thread(target=_job, args=(publisher, m, users[m], 0.05, pause))
                for m in media]
        for job in jobs:
            job.start()
        try:
            await asyncio.to_thread(halfway.wait, 60)
            await asyncio.to_thread(redis_cluster.fail_over, victim, on_killed=killed.set)
        finally:
            killed.set()
        for job in jobs:
            await asyncio.to_thread(job.join)
        assert await asyncio.to_thread(publisher.flush, 20)
        publisher.close()
        for user, client in clients.items():
            mine = [m for m in media if users[m] == user]
            await client.wait_for("media_update", len(mine), 20)
        # A repeat the relay let through, if any, arrives before a sentinel per shard.
        await settle(redis_cluster.url, shard_channels(base, 3),
                     {user: [client] for user, client in clients.items()})
        for client in clients.values():
            await client.sio.disconnect()
        return clients, publisher

    try:
        clients, publisher = asyncio.run(scenario())
        health = relay.healthz()
    finally:
        relay.stop()
        redis_cluster.revive(victim)
    stats = publisher.stats()
    missing = 0
    for m in media:
        client = clients[users[m]]
        seqs = _seqs(client, m)
        assert seqs == sorted(set(seqs)), f"{m}: repeated or out of order: {seqs}"
        assert any(u["mediaId"] == m for u in client.named("media_update")), f"{m} never ended"
        missing += seqs[-1] - len(seqs)
    assert missing <= stats.dropped_total, (missing, stats)
    assert stats.accepted == stats.published + stats.coalesced + stats.dropped_total
    assert stats.reconnects >= 1  # the outage happened and was noticed
    assert health["redis_connected"]


def test_e2e_over_the_cluster_passes_two_relay_nodes(redis_cluster):
    """`progress-sim e2e --shards 3` on a cluster: its ground truth subscribes to every
    shard, two relay nodes deliver each event to every socket of its user once, in order."""
    from click.testing import CliRunner

    from simulator.cli import cli

    base = f"t-{uuid.uuid4().hex[:8]}"
    nodes = [_relay(redis_cluster, base, 3) for _ in range(2)]
    try:
        result = CliRunner().invoke(cli, [
            "--redis-url", redis_cluster.url, "--channel", base, "--shards", "3",
            "e2e", "--jwt-secret", SECRET, "--relay-url", nodes[0].url,
            "--relay-url", nodes[1].url, "--users", "3", "--media", "6",
            "--models", "SIGLIP-LSTM-V4", "--settle", "1", "--json",
        ])
    finally:
        for node in nodes:
            node.stop()
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["ok"] is True and verdict["published"] > 30
