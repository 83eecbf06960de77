"""Token expiry and revocation in a real relay process, with real Socket.IO clients: a
socket is ended at its token's exp, or when its user or token is revoked in Redis, and
gets nothing after that (issue #17, item 6)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import socketio
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from relay_support import SECRET, Client, RelayProcess, event, wait_until

from simulator.cli import cli
from simulator.relay import sign_token
from simulator.relay.sessions import RevocationKeys, revoke_user

pytestmark = [pytest.mark.redis, pytest.mark.slow]
SOCKET_SCHEMA = json.loads(
    (Path(__file__).parent.parent / "docs" / "schema" / "socket-events.v1.json").read_text()
)


def schema_problems(definition: str, payload: Any) -> list[str]:
    """What docs/schema/socket-events.v1.json finds wrong with one socket payload."""
    schema = {**SOCKET_SCHEMA["$defs"][definition], "$defs": SOCKET_SCHEMA["$defs"]}
    return [error.message for error in Draft202012Validator(schema).iter_errors(payload)]


@pytest.fixture
def prefix() -> str:
    """A snapshot (and revocation) prefix no other test uses."""
    return f"test-sessions-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def relay(redis_url: str, channel: str, prefix: str) -> Iterator[RelayProcess]:
    """A relay that checks revocations every 0.2 s."""
    process = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", prefix, "--no-sweep",
                               "--revocation-interval", "0.2")
    process.wait_subscribed()
    yield process
    process.stop()


class Stream:
    """Publishes an event for each user every 20 ms until stopped (a busy job)."""

    def __init__(self, redis_url: str, channel: str, users: list[str]) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._channel, self._users = channel, users
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.wait(0.02):
            seq += 1
            for user in self._users:
                self._client.publish(self._channel, event(user, "m", seq=seq, source="w"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()


class Timed(Client):
    """A client that also notes when each event arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[str, float]] = []

    async def _any(self, name: str, payload: Any = None) -> None:
        self.arrivals.append((name, time.time()))
        await super()._any(name, payload)


def after_the_end(client: Timed) -> list[str]:
    """What the client received after session_ended (must be nothing)."""
    names = [name for name, _ in client.events]
    return names[names.index("session_ended") + 1:] if "session_ended" in names else names


def test_a_socket_is_ended_at_its_tokens_exp_and_gets_nothing_after_it(
    relay: RelayProcess, redis_url: str, channel: str
) -> None:
    """A token expiring in 3 s: the socket gets its user's live events until then, then
    session_ended (token_expired) at exp, not before, and nothing after; it is
    disconnected and unregistered. A socket with a longer token goes on receiving."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    expires = int(time.time()) + 3
    short = sign_token(SECRET, user, now=expires - 3600, expires_in=3600)
    stream = Stream(redis_url, channel, [user])

    async def scenario() -> tuple[Timed, Timed]:
        ending, staying = Timed(), Timed()
        await ending.connect(relay.url, {"token": short})
        await staying.connect(relay.url, {"token": sign_token(SECRET, user)})
        while ending.sio.connected and time.time() < expires + 30:
            await asyncio.sleep(0.05)
        count = len(staying.named("progress_update"))
        await staying.wait_for("progress_update", count + 10)
        await staying.sio.disconnect()
        return ending, staying

    try:
        ending, staying = asyncio.run(scenario())
    finally:
        stream.stop()
    ended = [payload for name, payload in ending.events if name == "session_ended"]
    assert ended and ended[0]["reason"] == "token_expired" and "expired" in ended[0]["message"]
    assert schema_problems("SessionEnded", ended[0]) == []
    assert ending.caught_up.is_set() and schema_problems("CaughtUp", {}) == []
    assert after_the_end(ending) == []
    assert len(ending.named("progress_update")) > 10  # it was live until then
    at = next(t for name, t in ending.arrivals if name == "session_ended")
    assert at >= expires - 0.1  # not cut early
    assert not ending.sio.connected and staying.named("session_ended") == []
    health = relay.healthz()
    assert health["sessions"]["expired"] == 1 and health["ended"] == {"token_expired": 1}
    assert health["sockets"] == 0


def test_revoking_a_user_ends_their_sockets_and_refuses_their_old_tokens(
    relay: RelayProcess, redis_url: str, channel: str, prefix: str
) -> None:
    """revoke_user ends every socket of the user on the next sweep (reason revoked) and
    refuses a handshake with a token issued before; a token issued after it connects, and
    another user's socket is untouched."""
    alice, bob = (f"u-{uuid.uuid4().hex[:8]}" for _ in range(2))
    old = sign_token(SECRET, alice, now=time.time() - 10)
    client = redis.Redis.from_url(redis_url)
    stream = Stream(redis_url, channel, [alice, bob])

    async def scenario() -> tuple[Timed, Timed, Client, Client]:
        a, b = Timed(), Timed()
        await a.connect(relay.url, {"token": old})
        await b.connect(relay.url, {"token": sign_token(SECRET, bob)})
        await a.wait_for("progress_update", 5)
        revoke_user(client, RevocationKeys(prefix), alice, at=time.time() - 5)
        await a.wait_for("session_ended", 1)
        refused, fresh = Client(), Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(relay.url, {"token": old})
        await fresh.connect(relay.url, {"token": sign_token(SECRET, alice)})
        await fresh.wait_for("progress_update", 3)
        count = len(b.named("progress_update"))
        await b.wait_for("progress_update", count + 5)
        for socket in (b, fresh):
            await socket.sio.disconnect()
        return a, b, refused, fresh

    try:
        a, b, refused, fresh = asyncio.run(scenario())
    finally:
        stream.stop()
        client.close()
    assert [p["reason"] for p in a.named("session_ended")] == ["revoked"]
    assert schema_problems("SessionEnded", a.named("session_ended")[0]) == []
    assert after_the_end(a) == []
    assert refused.refusal == "the token has been revoked"
    assert len(fresh.named("progress_update")) >= 3 and b.named("session_ended") == []
    health = relay.healthz()
    assert health["ended"] == {"revoked": 1} and health["refused"] == {"revoked": 1}


def test_revoking_one_token_ends_only_the_sockets_that_use_it(
    relay: RelayProcess, redis_url: str, channel: str, prefix: str
) -> None:
    """`progress-sim revoke --token-id` (by jti) ends the socket of that token; the same
    user's socket with another token stays; the revoked token cannot connect again."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    stolen = sign_token(SECRET, user, token_id="jti-stolen")
    mine = sign_token(SECRET, user, token_id="jti-mine")
    client = redis.Redis.from_url(redis_url)

    async def scenario() -> tuple[Client, Client, Client]:
        thief, owner, again = Client(), Client(), Client()
        await thief.connect(relay.url, {"token": stolen})
        await owner.connect(relay.url, {"token": mine})
        revoked = await asyncio.to_thread(CliRunner().invoke, cli, [
            "--redis-url", redis_url, "revoke", "--token-id", "jti-stolen",
            "--token-expires", str(time.time() + 3600), "--snapshot-prefix", prefix,
        ])  # fmt: skip
        assert revoked.exit_code == 0, revoked.output
        await thief.wait_for("session_ended", 1)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await again.connect(relay.url, {"token": stolen})
        client.publish(channel, event(user, "m1", seq=1, source="w"))
        await owner.wait_for("progress_update", 1)
        await owner.sio.disconnect()
        return thief, owner, again

    try:
        thief, owner, again = asyncio.run(scenario())
    finally:
        client.close()
    assert [p["reason"] for p in thief.named("session_ended")] == ["revoked"]
    assert again.refusal == "the token has been revoked"
    assert owner.named("session_ended") == [] and len(owner.named("progress_update")) == 1
    wait_until(lambda: relay.healthz()["sockets"] == 0, what="the sockets to be gone")
