"""User channels (issue #18): relay processes run with ``--user-channels`` read only the
channels of their own users, ``<channel>:user:<id>``; real Redis, real relay processes,
real Socket.IO clients, real publishers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from own_redis import OwnRedis
from relay_support import SECRET, Client, RelayProcess, event, wait_until

from progress_sdk.sharding import user_channel
from simulator.catchup_check import check_late_join
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BUSY_JOB = Path(__file__).with_name("busy_job.py")


def _user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def _numsub(client: redis.Redis, name: str) -> int:
    return int(client.pubsub_numsub(name)[0][1])


def _nodes(url: str, channel: str, count: int, *args: str) -> list[RelayProcess]:
    nodes = [RelayProcess.cli(url, channel, "--user-channels", "--no-sweep", *args)
             for _ in range(count)]
    for node in nodes:
        node.wait_subscribed()
    return nodes


def test_each_node_reads_only_the_events_of_its_own_users(redis_url: str, channel: str):
    """Alice on node 0, Bob on node 1, Carol on both: each socket gets its user's events,
    in order, once; each node receives its users' events and no other (``received``),
    and the contract channel, published to as well, reaches neither."""
    nodes = _nodes(redis_url, channel, 2)
    alice, bob, carol = _user(), _user(), _user()
    placement = [(alice, 0), (bob, 1), (carol, 0), (carol, 1)]
    try:
        async def scenario() -> list[Client]:
            clients = [Client() for _ in placement]
            for client, (user, node) in zip(clients, placement, strict=True):
                await client.connect(nodes[node].url, {"token": sign_token(SECRET, user)})
            publisher = redis.Redis.from_url(redis_url)
            for n in range(1, 11):  # seq 10 last: a duplicate or leak would come before it
                for user in (alice, bob, carol):
                    raw = event(user, f"m-{user}", seq=n, source="w")
                    assert publisher.publish(channel, raw) == 0  # no node reads it
                    publisher.publish(user_channel(channel, user), raw)
            publisher.close()
            for client in clients:
                await client.wait_for("progress_update", 10)
            for client in clients:
                await client.sio.disconnect()
            return clients

        clients = asyncio.run(scenario())
        for client, (user, _) in zip(clients, placement, strict=True):
            assert [(u["userId"], u["seq"]) for u in client.named("progress_update")] == [
                (user, n) for n in range(1, 11)]
        health = [node.healthz() for node in nodes]
        assert [h["received"] for h in health] == [20, 20]
        assert [h["no_local_socket"] for h in health] == [0, 0]
    finally:
        for node in nodes:
            node.stop()


def test_a_users_first_socket_on_a_node_joining_mid_run_misses_nothing(
    redis_url: str, channel: str
):
    """A worker publishing on user channels only (the contract channel off) streams one
    media fast; a socket there from the start on node 0 is the reference, and the user's
    first socket on node 1, then on node 2, joins mid-run: each node subscribes the
    user's channel as it joins, and each late socket ends with the reference's panel,
    its snapshot first, no event missing or twice (catch-up read after the subscription
    was confirmed, held events filtered by seq). Node 2's Redis confirms a new
    subscription 0.3 s late (a test double): a catch-up that did not wait for it would
    miss the events of those 0.3 s."""
    prefix = f"test-uc-{uuid.uuid4().hex[:8]}:"
    nodes = _nodes(redis_url, channel, 2, "--snapshot-prefix", prefix)
    nodes.append(RelayProcess.script("slow_subscribe_relay.py", redis_url, channel, prefix,
                                     SECRET, "0.3"))
    user = _user()
    token = {"token": sign_token(SECRET, user)}
    env = {**os.environ, "MEDIA_PROGRESS_USER_CHANNELS": "1",
           "MEDIA_PROGRESS_CONTRACT_CHANNEL": "0"}

    async def scenario() -> tuple[Client, list[Client]]:
        early = Client()
        await early.connect(nodes[0].url, token)
        job = subprocess.Popen([sys.executable, str(BUSY_JOB), redis_url, channel, prefix,
                                user, "3000"], env=env)
        late: list[Client] = []
        try:
            await early.wait_for("progress_update", 20, timeout=30)
            for node in nodes[1:]:
                client = Client()
                await client.connect(node.url, token)
                late.append(client)
                await client.wait_for("progress_update", 20, timeout=30)
            assert await asyncio.to_thread(job.wait, 60) == 0
        finally:
            if job.poll() is None:
                job.kill()
        for client in [early, *late]:
            await client.wait_for("media_update", 1, timeout=30)
        for client in [early, *late]:
            await client.sio.disconnect()
        return early, late

    try:
        early, late = asyncio.run(scenario())
        for index, client in enumerate(late):
            assert len(client.named("media_update")) == 1
            assert check_late_join(list(early.events), list(client.events),
                                   f"late socket {index}") == []
            assert any(s["status"] == "running" for s in client.named("progress_snapshot"))
        assert [n.healthz()["catch_up"]["done"] for n in nodes] == [1, 1, 1]
    finally:
        for node in nodes:
            node.stop()


def test_the_last_socket_leaving_unsubscribes_the_users_channel(redis_url: str, channel: str):
    """Two sockets of one user: the channel stays subscribed while one is left, and is
    unsubscribed (PUBSUB NUMSUB 0) once both are gone; a socket coming back subscribes it
    again and gets the user's events."""
    (node,) = _nodes(redis_url, channel, 1)
    user = _user()
    name = user_channel(channel, user)
    admin = redis.Redis.from_url(redis_url)
    token = {"token": sign_token(SECRET, user)}
    try:
        async def scenario() -> Client:
            first, second = Client(), Client()
            await first.connect(node.url, token)
            await second.connect(node.url, token)
            assert _numsub(admin, name) == 1
            await first.sio.disconnect()
            await asyncio.to_thread(wait_until, lambda: node.healthz()["sockets"] == 1)
            assert admin.publish(name, event(user, "m", seq=1, source="w")) == 1
            await second.wait_for("progress_update", 1)
            await second.sio.disconnect()
            await asyncio.to_thread(wait_until, lambda: _numsub(admin, name) == 0,
                                    what="the channel to be unsubscribed")
            back = Client()
            await back.connect(node.url, token)
            assert admin.publish(name, event(user, "m", seq=2, source="w")) == 1
            await back.wait_for("progress_update", 1)
            await back.sio.disconnect()
            return back

        back = asyncio.run(scenario())
        assert [u["seq"] for u in back.named("progress_update")] == [2]
        wait_until(lambda: _numsub(admin, name) == 0, what="the channel to be unsubscribed")
        assert node.healthz()["received"] == 2
    finally:
        admin.close()
        node.stop()


def test_a_redis_restart_subscribes_every_users_channel_again(channel: str):
    """Redis is killed and started again with the node's users connected: the node
    subscribes both users' channels again in its new session, and their sockets get the
    events published after the restart."""
    server = OwnRedis().start()
    (node,) = _nodes(server.url, channel, 1)
    users = [_user(), _user()]
    try:
        async def scenario() -> list[Client]:
            clients = [Client() for _ in users]
            for client, user in zip(clients, users, strict=True):
                await client.connect(node.url, {"token": sign_token(SECRET, user)})
            server.kill()
            server.start()
            await asyncio.to_thread(node.wait_subscribed, 2)
            admin = redis.Redis(port=server.port)
            assert [_numsub(admin, user_channel(channel, u)) for u in users] == [1, 1]
            for user in users:
                # A media of each user: the relay drops a repeated (source, media, seq).
                admin.publish(user_channel(channel, user),
                              event(user, f"m-{user}", seq=1, source="w"))
            admin.close()
            for client in clients:
                await client.wait_for("progress_update", 1)
                await client.sio.disconnect()
            return clients

        clients = asyncio.run(scenario())
        assert [[u["userId"] for u in c.named("progress_update")] for c in clients] == [
            [u] for u in users]
    finally:
        node.stop()
        server.kill()
