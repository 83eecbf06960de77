"""The relay as a process: real Redis, real relay processes, real Socket.IO clients."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
import redis
import socketio
from relay_support import SECRET, Client, RedisServer, RelayProcess, event

from progress_sdk import ProgressPublisher
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def shared_channel() -> str:
    """One channel for the module's shared relay; each test uses its own user ids."""
    return f"test-relay-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def relay(redis_url: str, shared_channel: str) -> Iterator[RelayProcess]:
    """One relay process for the tests that need nothing special of it."""
    process = RelayProcess.cli(redis_url, shared_channel)
    process.wait_subscribed()
    yield process
    process.stop()


@pytest.fixture
def publish(redis_url: str, shared_channel: str) -> Iterator[redis.Redis]:
    """A plain Redis client to publish raw messages with."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def test_each_user_gets_only_their_own_events_in_camel_case(
    relay: RelayProcess, publish: redis.Redis, shared_channel: str
) -> None:
    """Two users' sockets each receive their own events, camelCase plus seq/source/runId,
    in channel order, and none of the other user's, even after asking to join its room."""
    alice, bob = _user(), _user()

    async def scenario() -> tuple[Client, Client, Client]:
        a1, a2, b = Client(), Client(), Client()
        await a1.connect(relay.url, {"token": sign_token(SECRET, alice)})
        await a2.connect(relay.url, {"token": sign_token(SECRET, alice)})
        await b.connect(relay.url, {"token": sign_token(SECRET, bob)})
        # The relay registers no client events: asking to join alice's room does nothing.
        for name in ("join", "join_room", "enter_room", "subscribe"):
            await b.sio.emit(name, f"user:{alice}")
            await b.sio.emit(name, alice)
        for n in range(1, 6):
            publish.publish(shared_channel, event(alice, "m-a", "PROCESSING_STARTED",
                                                  seq=n, source="w1", run_id="r1",
                                                  timestamp="2026-11-26T05:00:00.123456Z"))
            publish.publish(shared_channel, event(bob, "m-b", seq=n, source="w2"))
        # A last event each (seq 6): the relay forwards a socket's events in order, so
        # one that leaked to the wrong socket would be there before it.
        publish.publish(shared_channel, event(alice, "m-a", seq=6, source="w1"))
        publish.publish(shared_channel, event(bob, "m-b", seq=6, source="w2"))
        for client in (a1, a2, b):
            await client.wait_for("progress_update", 6)
        for client in (a1, a2, b):
            await client.sio.disconnect()
        return a1, a2, b

    a1, a2, b = asyncio.run(scenario())
    for client in (a1, a2):
        updates = client.named("progress_update")
        assert [u["seq"] for u in updates] == [1, 2, 3, 4, 5, 6]
        assert updates[0] == {
            "mediaId": "m-a", "userId": alice, "event": "PROCESSING_STARTED",
            "message": "PROCESSING_STARTED m-a", "data": {},
            "timestamp": "2026-11-26T05:00:00.123456Z", "seq": 1, "source": "w1", "runId": "r1",
        }
    assert [u["userId"] for u in b.named("progress_update")] == [bob] * 6


def test_terminal_events_also_go_out_as_media_update_and_processing_error(
    relay: RelayProcess, publish: redis.Redis, shared_channel: str
) -> None:
    """PROCESSING_COMPLETED adds media_update; PROCESSING_FAILED adds processing_error
    {mediaId, filename, error} with the filename from PROCESSING_STARTED."""
    user = _user()

    async def scenario() -> Client:
        client = Client()
        await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        publish.publish(shared_channel, event(user, "m1", data={"filename": "clip.mp4"}))
        publish.publish(shared_channel, event(user, "m1", "PROCESSING_FAILED"))
        publish.publish(shared_channel, event(user, "m2", data={"filename": "b.wav"}))
        publish.publish(shared_channel, event(user, "m2", "PROCESSING_COMPLETED"))
        await client.wait_for("media_update", 1)
        await client.sio.disconnect()
        return client

    client = asyncio.run(scenario())
    assert client.named("processing_error") == [
        {"mediaId": "m1", "filename": "clip.mp4", "error": "decoder crashed"}
    ]
    [media] = client.named("media_update")
    assert (media["id"], media["filename"], media["status"]) == ("m2", "b.wav", "COMPLETED")
    names = [name for name, _ in client.events]
    assert names.index("processing_error") > 1 and names[-1] == "media_update"


def _token_cases() -> list[tuple[str, object]]:
    now = time.time()
    user = "u-victim"
    return [
        ("missing", None),
        ("missing", {}),
        ("malformed", {"token": "not-a-jwt"}),
        ("malformed", {"token": 12345}),
        ("bad_signature", {"token": sign_token("another-secret-of-at-least-32-bytes!", user)}),
        ("expired", {"token": sign_token(SECRET, user, now=now - 7200, expires_in=60)}),
        ("algorithm", {"token": jwt.encode({"userId": user}, None, algorithm="none")}),
        ("no_user", {"token": sign_token(SECRET, user, claim="sub")}),
    ]


def test_a_worker_restarted_under_the_same_source_name_still_reaches_the_screen(
    relay: RelayProcess, redis_url: str, shared_channel: str
) -> None:
    """A worker process analyses a media, ends, and its replacement, created with the same
    ``source=``, analyses the same media again: the second run's events, numbered from 1
    again, reach the user's socket (not dropped as repeats of the first run's)."""
    user = _user()

    def one_run() -> None:
        publisher = ProgressPublisher(redis_url, shared_channel, source="worker-3",
                                      min_progress_interval=0)
        with publisher, publisher.media("m-again", user) as run, run.model("LIP-FD-V1") as m:
            m.progress(1, 2)

    async def scenario() -> Client:
        client = Client()
        await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        one_run()
        await client.wait_for("media_update", 1)
        one_run()  # the restarted worker
        await client.wait_for("media_update", 2)
        await client.sio.disconnect()
        return client

    client = asyncio.run(scenario())
    updates = client.named("progress_update")
    starts = [u for u in updates if u["event"] == "PROCESSING_STARTED"]
    ends = [u for u in updates if u["event"] == "PROCESSING_COMPLETED"]
    assert len(starts) == 2 and len(ends) == 2, [(u["event"], u["seq"]) for u in updates]
    assert starts[0]["source"] != starts[1]["source"]
    assert all(u["source"].startswith("worker-3:") for u in updates)


def test_every_kind_of_bad_token_is_refused_at_the_handshake(relay: RelayProcess) -> None:
    """Missing, malformed, wrongly signed, expired, alg none and user-less tokens are
    refused with a reason, counted by reason, and never get a socket."""
    before = relay.healthz()["refused"]

    async def attempt(auth: object) -> str | None:
        client = Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(relay.url, auth)
        return client.refusal

    cases = _token_cases()
    reasons = [asyncio.run(attempt(auth)) for _, auth in cases]
    assert all(reasons), reasons
    assert "expired" in str(reasons[5]) and "HS256" in str(reasons[6])
    after = relay.healthz()["refused"]
    for reason in {r for r, _ in cases}:
        expected = sum(1 for r, _ in cases if r == reason)
        assert after.get(reason, 0) - before.get(reason, 0) == expected, reason


def test_events_without_ids_or_failing_the_schema_are_dropped_and_counted(
    relay: RelayProcess, publish: redis.Redis, shared_channel: str
) -> None:
    """Messages without user_id/media_id, not JSON, or breaking the schema are counted
    under their reason, and the relay goes on delivering."""
    user = _user()
    before = relay.healthz()["dropped"]

    async def scenario() -> Client:
        client = Client()
        await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        publish.publish(shared_channel, json.dumps({"media_id": "m", "event": "PROCESSING_STARTED",
                                                    "message": "", "data": {}}))
        publish.publish(shared_channel, json.dumps({"user_id": user, "event": "PROCESSING_STARTED",
                                                    "message": "", "data": {}}))
        publish.publish(shared_channel, b"{not json")
        publish.publish(shared_channel, b"[1, 2]")
        publish.publish(shared_channel, event(user, "m", "FRAME_ANALYSIS_PROGRESS",
                                              data={"model_name": "X", "progress": 9,
                                                    "total": 3}))
        publish.publish(shared_channel, event(user, "m-ok"))
        await client.wait_for("progress_update", 1)
        await client.sio.disconnect()
        return client

    client = asyncio.run(scenario())
    assert [u["mediaId"] for u in client.named("progress_update")] == ["m-ok"]
    after = relay.healthz()["dropped"]
    delta = {reason: after[reason] - before[reason] for reason in after}
    assert delta == {"missing_user_id": 1, "missing_media_id": 1, "invalid_json": 2,
                     "schema": 1, "too_large": 0, "repeat": 0, "after_terminal": 0}


def test_a_runs_events_after_its_first_end_never_reach_a_socket(
    relay: RelayProcess, publish: redis.Redis, shared_channel: str
) -> None:
    """A sweeper fails a run whose worker was only silent; the worker then reports on and
    completes: the socket sees the failure alone (one ending), the worker's three late
    events are counted under after_terminal, and a new run of the media goes through."""
    user = _user()
    worker = {"run_id": "r1", "source": "worker-1"}
    late = [("FRAME_ANALYSIS_PROGRESS", {"model_name": "M", "progress": 2, "total": 3}),
            ("ANALYSIS_COMPLETED", {"model_name": "M", "prediction": "REAL"}),
            ("PROCESSING_COMPLETED", {})]

    async def scenario() -> Client:
        client = Client()
        await client.connect(relay.url, {"token": sign_token(SECRET, user)})
        publish.publish(shared_channel, event(user, "m", seq=1, **worker))
        publish.publish(shared_channel, event(user, "m", "PROCESSING_FAILED", seq=1,
                                              run_id="r1", source="sweeper-1"))
        for seq, (kind, data) in enumerate(late, 2):
            publish.publish(shared_channel, event(user, "m", kind, data=data, seq=seq, **worker))
        publish.publish(shared_channel, event(user, "m", seq=1, run_id="r2", source="worker-2"))
        await client.wait_for("progress_update", 3)
        await client.sio.disconnect()
        return client

    before = relay.healthz()["dropped"]["after_terminal"]
    client = asyncio.run(scenario())
    assert [(u["event"], u["runId"]) for u in client.named("progress_update")] == [
        ("PROCESSING_STARTED", "r1"), ("PROCESSING_FAILED", "r1"), ("PROCESSING_STARTED", "r2"),
    ]
    assert client.named("media_update") == [] and len(client.named("processing_error")) == 1
    assert relay.healthz()["dropped"]["after_terminal"] - before == 3


def test_a_users_sockets_on_two_relays_each_get_every_event_once(
    redis_url: str, channel: str
) -> None:
    """Horizontal scale: two relay processes on one channel; a user's sockets on both,
    and a second user's on one, each receive each of their events exactly once."""
    nodes = [RelayProcess.cli(redis_url, channel) for _ in range(2)]
    try:
        for node in nodes:
            node.wait_subscribed()
        user, other = _user(), _user()

        async def scenario() -> list[Client]:
            clients = [Client() for _ in range(5)]
            await clients[0].connect(nodes[0].url, {"token": sign_token(SECRET, user)})
            await clients[1].connect(nodes[1].url, {"token": sign_token(SECRET, user)})
            await clients[2].connect(nodes[1].url, {"token": sign_token(SECRET, user)})
            await clients[3].connect(nodes[0].url, {"token": sign_token(SECRET, other)})
            await clients[4].connect(nodes[1].url, {"token": sign_token(SECRET, other)})
            client = redis.Redis.from_url(redis_url)
            # Seq 21 last: each socket gets its events in order, so a duplicate of an
            # earlier one would be there before it.
            for n in range(1, 22):
                client.publish(channel, event(user, "m1", seq=n, source="w"))
                client.publish(channel, event(other, "m2", seq=n, source="w"))
            client.close()
            for c in clients:
                await c.wait_for("progress_update", 21)
            for c in clients:
                await c.sio.disconnect()
            return clients

        clients = asyncio.run(scenario())
        for index, c in enumerate(clients):
            owner = user if index < 3 else other
            updates = c.named("progress_update")
            assert [(u["userId"], u["seq"]) for u in updates] == [
                (owner, n) for n in range(1, 22)
            ], index
        health = [node.healthz() for node in nodes]
        assert [h["received"] for h in health] == [42, 42]
    finally:
        for node in nodes:
            node.stop()


def test_the_relay_survives_a_redis_restart_and_logs_no_secret(channel: str) -> None:
    """Redis killed and restarted: the relay reconnects and delivers again; its debug log
    holds neither the Redis password nor any client token."""
    password = f"pw-{uuid.uuid4().hex}"
    server = RedisServer(password=password)
    server.start()
    relay = RelayProcess.cli(server.url, channel, log_level="debug")
    user = _user()
    token = sign_token(SECRET, user)
    try:
        relay.wait_subscribed()

        async def scenario() -> Client:
            client = Client()
            await client.connect(relay.url, {"token": token})
            publisher = redis.Redis.from_url(server.url)
            publisher.publish(channel, event(user, "before"))
            await client.wait_for("progress_update", 1)
            server.stop()
            await asyncio.to_thread(
                lambda: _wait(lambda: not relay.healthz()["redis_connected"])
            )
            server.start()
            await asyncio.to_thread(relay.wait_subscribed, 2)
            publisher = redis.Redis.from_url(server.url)
            publisher.publish(channel, event(user, "after"))
            publisher.close()
            await client.wait_for("progress_update", 2)
            await client.sio.disconnect()
            return client

        client = asyncio.run(scenario())
        assert [u["mediaId"] for u in client.named("progress_update")] == ["before", "after"]
        assert relay.healthz()["redis_errors"] >= 1
    finally:
        relay.stop()
        server.stop()
    log = relay.output
    assert "subscribed to" in log and "retrying" in log
    assert password not in log
    assert token not in log and token.split(".")[2] not in log


def _wait(predicate: object) -> None:
    from relay_support import wait_until

    wait_until(predicate)  # type: ignore[arg-type]


def test_the_user_claim_is_configurable(redis_url: str, channel: str) -> None:
    """--user-claim sub: the user id comes from that claim, and tokens without it are
    refused."""
    relay = RelayProcess.cli(redis_url, channel, "--user-claim", "sub")
    try:
        relay.wait_subscribed()

        async def scenario() -> Client:
            client, refused = Client(), Client()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect(relay.url, {"token": sign_token(SECRET, "u-1")})
            await client.connect(relay.url, {"token": sign_token(SECRET, "u-1", claim="sub")})
            redis.Redis.from_url(redis_url).publish(channel, event("u-1", "m"))
            await client.wait_for("progress_update", 1)
            await client.sio.disconnect()
            return client

        assert len(asyncio.run(scenario()).named("progress_update")) == 1
    finally:
        relay.stop()
