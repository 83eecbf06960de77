"""User channels on a Redis Cluster (issue #18): relay processes run with
``--user-channels`` on a cluster node's URL SSUBSCRIBE their users' channels on the
channels' masters (``simulator.relay.cluster_user_pubsub``); publishers with user
channels on SPUBLISH there. Real cluster, real relay processes, real Socket.IO clients,
real publishers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis_cluster import ClusterNode, LocalCluster
from relay_support import SECRET, Client, RelayProcess, wait_until

from progress_sdk import ProgressPublisher
from progress_sdk.sharding import user_channel
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys
from simulator.catchup_check import check_late_join, panel_rows, panel_state
from simulator.relay import sign_token
from simulator.relay.cluster_user_pubsub import ClusterUserPubSub
from simulator.relay.resp_pubsub import RespPubSub
from simulator.relay.subscriber import open_detected_pubsub

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
BUSY_JOB = Path(__file__).with_name("busy_job.py")
STEPS = 30


def _nodes(cluster: LocalCluster, channel: str, count: int, *args: str) -> list[RelayProcess]:
    nodes = [RelayProcess.cli(cluster.url, channel, "--user-channels", "--no-sweep", *args)
             for _ in range(count)]
    for node in nodes:
        node.wait_subscribed()
    return nodes


def _users_on_distinct_masters(cluster: LocalCluster, channel: str, count: int,
                               avoid: int | None = None) -> list[str]:
    """``count`` users whose channels live on ``count`` different masters (none on the
    node of port ``avoid``)."""
    found: dict[int, str] = {}
    while len(found) < count:
        user = f"u-{uuid.uuid4().hex[:8]}"
        port = cluster.owner(user_channel(channel, user)).port
        if port != avoid and port not in found:
            found[port] = user
    return list(found.values())


def _shardnumsub(node: ClusterNode, name: str) -> int:
    with node.client() as client:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", name)
    return int(reply[1])


def _job(publisher: ProgressPublisher, media_id: str, user_id: str, pace: float = 0,
         halfway: Callable[[], None] | None = None) -> None:
    with publisher.media(media_id, user_id, filename=f"{media_id}.mp4") as run, \
            run.model("SIGLIP-LSTM-V4") as model:
        for i in range(1, STEPS + 1):
            model.progress(i, STEPS)
            if halfway is not None and i == STEPS // 2:
                halfway()
            time.sleep(pace)
        model.complete("FAKE", 0.9)


def _ended(client: Client, media_id: str) -> bool:
    """The socket's panel shows ``media_id`` completed, its one model with its verdict."""
    row = panel_rows(panel_state(list(client.events))).get(media_id)
    return row is not None and row[0] == "completed" and [m[1:6] for m in row[2]] == [
        ("completed", STEPS, STEPS, None, "FAKE")]


def _seqs(client: Client, media_id: str) -> list[int]:
    return [u["seq"] for u in client.named("progress_update") if u["mediaId"] == media_id]


def test_a_node_on_a_cluster_receives_only_the_events_of_its_own_users(
    redis_cluster: LocalCluster,
):
    """Node 0 has two users whose channels live on two masters, node 1 a third user: each
    socket gets its user's media complete and in order, and each node receives exactly
    its users' events (``received``), none of the other node's."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    nodes = _nodes(redis_cluster, channel, 2)
    users = _users_on_distinct_masters(redis_cluster, channel, 3)
    placement = {users[0]: 0, users[1]: 0, users[2]: 1}

    async def scenario() -> tuple[dict[str, Client], list[int]]:
        clients = {user: Client() for user in users}
        for user, client in clients.items():
            await client.connect(nodes[placement[user]].url,
                                 {"token": sign_token(SECRET, user)})
        published = [0, 0]
        for index in (0, 1):
            with ProgressPublisher(redis_cluster.url, channel, user_channels=True,
                                   contract_channel=False, snapshots=False,
                                   min_progress_interval=0) as publisher:
                for user in users:
                    if placement[user] == index:
                        _job(publisher, f"m-{user}", user)
                assert publisher.flush(10)
                published[index] = publisher.stats().published
        for client in clients.values():
            await client.wait_for("media_update", 1, 15)
            await client.sio.disconnect()
        return clients, published

    try:
        clients, published = asyncio.run(scenario())
        received = [node.healthz()["received"] for node in nodes]
    finally:
        for node in nodes:
            node.stop()
    for user, client in clients.items():
        seqs = _seqs(client, f"m-{user}")  # progress steps may be coalesced
        assert seqs == sorted(set(seqs)) and seqs[0] == 1
        assert [m["mediaId"] for m in client.named("media_update")] == [f"m-{user}"]
        assert {u["userId"] for u in client.named("progress_update")} == {user}
    assert min(published) > 0
    assert received == published


def test_a_users_first_socket_joining_mid_run_on_a_cluster_misses_nothing(
    redis_cluster: LocalCluster,
):
    """A worker publishing on user channels only streams one media fast; a socket there
    from the start on node 0 is the reference, and the user's first socket on node 1
    joins mid-run: node 1 SSUBSCRIBEs the channel, catch-up reads after the confirmation,
    and the late socket ends with the reference's panel, nothing missing or twice."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    prefix = f"test-cuc-{uuid.uuid4().hex[:8]}:"
    nodes = _nodes(redis_cluster, channel, 2, "--snapshot-prefix", prefix)
    user = f"u-{uuid.uuid4().hex[:8]}"
    token = {"token": sign_token(SECRET, user)}
    env = {**os.environ, "MEDIA_PROGRESS_USER_CHANNELS": "1",
           "MEDIA_PROGRESS_CONTRACT_CHANNEL": "0"}

    async def scenario() -> tuple[Client, Client]:
        early = Client()
        await early.connect(nodes[0].url, token)
        job = subprocess.Popen([sys.executable, str(BUSY_JOB), redis_cluster.url, channel,
                                prefix, user, "3000"], env=env)
        try:
            await early.wait_for("progress_update", 20, timeout=30)
            late = Client()
            await late.connect(nodes[1].url, token)
            await late.wait_for("progress_update", 20, timeout=30)
            assert await asyncio.to_thread(job.wait, 60) == 0
        finally:
            if job.poll() is None:
                job.kill()
        for client in (early, late):
            await client.wait_for("media_update", 1, timeout=30)
            await client.sio.disconnect()
        return early, late

    try:
        early, late = asyncio.run(scenario())
        assert len(late.named("media_update")) == 1
        assert check_late_join(list(early.events), list(late.events), "late socket") == []
        assert any(s["status"] == "running" for s in late.named("progress_snapshot"))
        assert [n.healthz()["catch_up"]["done"] for n in nodes] == [1, 1]
    finally:
        for node in nodes:
            node.stop()


def test_the_last_socket_leaving_sunsubscribes_on_the_channels_master(
    redis_cluster: LocalCluster,
):
    """Two sockets of one user: the channel stays subscribed on its master while one is
    left, and is unsubscribed (PUBSUB SHARDNUMSUB 0) once both are gone; a socket coming
    back subscribes it again and gets the user's events."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    (node,) = _nodes(redis_cluster, channel, 1)
    user = f"u-{uuid.uuid4().hex[:8]}"
    name = user_channel(channel, user)
    master = redis_cluster.owner(name)
    token = {"token": sign_token(SECRET, user)}

    def publish(media: str) -> None:
        with ProgressPublisher(redis_cluster.url, channel, user_channels=True,
                               contract_channel=False, snapshots=False,
                               min_progress_interval=0) as publisher:
            _job(publisher, media, user)
            assert publisher.flush(10)

    async def scenario() -> Client:
        first, second = Client(), Client()
        await first.connect(node.url, token)
        await second.connect(node.url, token)
        assert _shardnumsub(master, name) == 1
        await first.sio.disconnect()
        await asyncio.to_thread(wait_until, lambda: node.healthz()["sockets"] == 1)
        assert _shardnumsub(master, name) == 1
        await asyncio.to_thread(publish, "m-1")
        await second.wait_for("media_update", 1)
        await second.sio.disconnect()
        await asyncio.to_thread(wait_until, lambda: _shardnumsub(master, name) == 0,
                                what="the channel to be unsubscribed")
        back = Client()
        await back.connect(node.url, token)
        assert _shardnumsub(master, name) == 1
        await asyncio.to_thread(publish, "m-2")
        await back.wait_for("media_update", 1)
        await back.sio.disconnect()
        return back

    try:
        back = asyncio.run(scenario())
        assert {u["mediaId"] for u in back.named("progress_update")} == {"m-2"}
        wait_until(lambda: _shardnumsub(master, name) == 0, what="the channel to be unsubscribed")
    finally:
        node.stop()


def test_a_master_killed_mid_run_ends_with_every_socket_right(redis_cluster: LocalCluster):
    """Three users on one node, their channels on three masters; one master (not the node
    the relay was given) is killed while their media are half done. The relay subscribes
    everything again from a fresh slot map, resyncs its sockets, and every media reaches
    its user complete: in order, without repeats, ended."""
    channel = f"t-{uuid.uuid4().hex[:8]}"
    prefix = f"test-cuc-{uuid.uuid4().hex[:8]}:"
    seed = redis_cluster.url
    (node,) = _nodes(redis_cluster, channel, 1, "--snapshot-prefix", prefix)
    seed_port = int(seed.rsplit(":", 1)[1].split("/")[0])
    users = _users_on_distinct_masters(redis_cluster, channel, 2, avoid=seed_port)
    victim = redis_cluster.owner(user_channel(channel, users[0]))
    connects = node.healthz()["redis_connects"]

    async def scenario() -> dict[str, Client]:
        clients = {user: Client() for user in users}
        for user, client in clients.items():
            await client.connect(node.url, {"token": sign_token(SECRET, user)})
        publisher = ProgressPublisher(seed, channel, user_channels=True, contract_channel=False,
                                      snapshots=SnapshotConfig(SnapshotKeys(prefix)),
                                      min_progress_interval=0)
        # Every job waits halfway until the master is dead (the bounds only end a hung
        # test): each media has started, none has ended.
        halfway, killed = threading.Barrier(len(users) + 1), threading.Event()

        def pause() -> None:
            halfway.wait(60)
            killed.wait(60)

        jobs = [threading.Thread(target=_job, args=(publisher, f"m-{u}", u, 0.02, pause))
                for u in users]
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
        # What was published before the relay subscribed again reaches the sockets as
        # the resync's snapshots, not live: each socket's panel shows its media ended.
        for user, client in clients.items():
            await asyncio.to_thread(wait_until, lambda c=client, u=user: _ended(c, f"m-{u}"),
                                    30, "every media to end on its socket")
            await client.sio.disconnect()
        return clients

    try:
        clients = asyncio.run(scenario())
        health = node.healthz()
    finally:
        node.stop()
        redis_cluster.revive(victim)
    for user, client in clients.items():
        seqs = _seqs(client, f"m-{user}")
        assert seqs == sorted(set(seqs)), f"{user}: repeated or out of order: {seqs}"
        assert set(panel_rows(panel_state(list(client.events)))) == {f"m-{user}"}
    assert health["redis_connected"]
    assert health["redis_connects"] > connects  # the lost master was noticed


def test_a_sunsubscribe_the_relay_did_not_ask_for_ends_the_cluster_pubsub(
    redis_cluster: LocalCluster,
):
    """The pub/sub a user-channel node opens on a cluster confirms each channel as a
    ``subscribe`` message and an asked-for SUNSUBSCRIBE as ``unsubscribe``; a
    ``sunsubscribe`` push it did not ask for (what a node that gave the slot away sends)
    ends it with ``redis.ConnectionError``, so the subscriber starts over."""
    name = f"t-{uuid.uuid4().hex[:8]}:user:u"

    async def scenario() -> list[dict[str, object]]:
        detected = await open_detected_pubsub(redis_cluster.url, sharded=False)()
        assert isinstance(detected, ClusterUserPubSub)
        await detected.aclose()
        opened: list[RespPubSub] = []

        async def open_node(url: str) -> RespPubSub:
            opened.append(RespPubSub(url, connect_timeout=2))
            return opened[-1]

        pubsub = ClusterUserPubSub(redis_cluster.url, open_node)
        seen: list[dict[str, object]] = []
        try:
            await pubsub.subscribe(name)
            while (message := await pubsub.get_message(timeout=5)) is not None:
                seen.append(message)
                if message["type"] == "subscribe":
                    break
            await pubsub.unsubscribe(name)
            seen.append(await pubsub.get_message(timeout=5) or {})
            await pubsub.subscribe(name)
            seen.append(await pubsub.get_message(timeout=5) or {})
            # On the node's connection, not asked through the pub/sub's unsubscribe.
            assert len(opened) == 1
            await opened[0].sunsubscribe(name)
            with pytest.raises(redis.ConnectionError):
                await pubsub.get_message(timeout=5)
        finally:
            await pubsub.aclose()
        return seen

    seen = asyncio.run(scenario())
    assert [(m.get("type"), m.get("channel")) for m in seen] == [
        ("subscribe", name.encode()), ("unsubscribe", name.encode()),
        ("subscribe", name.encode())]
