"""A socket lives as long as its token, and a user can be cut off.

**Expiry.** A token's ``exp`` used to be checked at the handshake only: a socket kept
open went on getting events for as long as it stayed connected. Now every socket whose
token has an ``exp`` gets a timer at admission; when it fires the relay takes the socket
out of its room at once (no event after that instant), sends it ``session_ended``
``{"reason": "token_expired", "message": ...}`` and disconnects it. Socket.IO clients do
not reconnect by themselves after a server-side disconnect: the page gets a fresh token
(from its API; the relay's panel reads the URL's fragment again) and connects anew.

**Revocation.** Two Redis keys under the relay's snapshot prefix, written by whatever
revokes (``revoke_user``, ``revoke_token``, or any Redis client):

- ``{prefix}revoked:users``, a hash: user id → epoch seconds. Every token of that user
  issued (``iat``) at or before that time is revoked; a token without ``iat`` counts as
  issued before. Tokens issued later work: revoking a user ends the sessions they have,
  not their next login.
- ``{prefix}revoked:tokens``, a sorted set: a token's ``jti``, scored by the token's
  ``exp`` (so ``ZREMRANGEBYSCORE key -inf <now>`` trims what no live token can match;
  ``revoke_token`` does it on each call).

Every node checks a socket at admission (refused as ``revoked``) and, every
``interval`` seconds (default 5), all its sockets at once (a pipeline of ``HMGET`` and
``ZMSCORE`` per 500 sockets); a match is ended with reason ``revoked``. A check that
cannot reach Redis lets the socket in (logged, counted): the next sweep ends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from progress_sdk.snapshot import SnapshotKeys

from .auth import Identity, TokenRefused
from .server import Relay

__all__ = [
    "DEFAULT_REVOCATION_INTERVAL",
    "RevocationKeys",
    "SessionGuard",
    "SessionStats",
    "install_sessions",
    "revoke_token",
    "revoke_user",
]

log = logging.getLogger("progress_sim.relay")

DEFAULT_REVOCATION_INTERVAL = 5.0
# Sockets checked per pipeline in a revocation sweep.
_SWEEP_CHUNK = 500

EXPIRED = "token_expired"
REVOKED = "revoked"
_MESSAGES = {
    EXPIRED: "the token has expired: connect again with a fresh one",
    REVOKED: "the token has been revoked",
}


@dataclass(frozen=True)
class RevocationKeys:
    """Where revocations live: under the relay's snapshot prefix."""

    prefix: str

    @classmethod
    def of(cls, keys: SnapshotKeys) -> RevocationKeys:
        """The revocation keys beside ``keys``' snapshots."""
        return cls(keys.prefix)

    @property
    def users(self) -> str:
        """Hash: user id → epoch seconds before which (``iat``) their tokens are revoked."""
        return f"{self.prefix}revoked:users"

    @property
    def tokens(self) -> str:
        """Sorted set: revoked ``jti``s, scored by the token's ``exp``."""
        return f"{self.prefix}revoked:tokens"


def revoke_user(client: Any, keys: RevocationKeys, user_id: str,
                at: float | None = None) -> None:
    """Revoke every token of ``user_id`` issued at or before ``at`` (default: now)."""
    client.hset(keys.users, user_id, str(time.time() if at is None else at))


def revoke_token(client: Any, keys: RevocationKeys, token_id: str, expires_at: float) -> None:
    """Revoke the token whose ``jti`` is ``token_id`` (it expires at ``expires_at``), and
    forget revoked tokens that have expired anyway."""
    client.zadd(keys.tokens, {token_id: expires_at})
    client.zremrangebyscore(keys.tokens, "-inf", time.time() - 60)


@dataclass
class SessionStats:
    """Token expiry and revocation since the relay started (``/healthz``, ``sessions``)."""

    expired: int = 0
    """Sockets ended at their token's ``exp``."""
    revoked: int = 0
    """Sockets ended because their token or user was revoked."""
    sweeps: int = 0
    """Revocation sweeps over all of the node's sockets."""
    check_errors: int = 0
    """Revocation checks that could not read Redis (the socket stayed)."""

    def to_dict(self) -> dict[str, int]:
        """The ``sessions`` section of ``/healthz``."""
        return dataclasses.asdict(self)


def _is_revoked(identity: Identity, user_since: Any, token_score: Any) -> bool:
    if token_score is not None:
        return True
    if user_since is None:
        return False
    try:
        since = float(user_since)
    except (TypeError, ValueError):
        return True  # unreadable: revoked rather than let through
    return identity.issued_at is None or identity.issued_at <= since


class SessionGuard:
    """Ends sockets at their token's ``exp`` and when revoked (see module doc)."""

    def __init__(
        self, relay: Relay, keys: RevocationKeys, client: Callable[[], Awaitable[Any]],
        *, interval: float = DEFAULT_REVOCATION_INTERVAL,
    ) -> None:
        self._relay = relay
        self._keys = keys
        self._client = client
        self.interval = interval
        self._identities: dict[str, Identity] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.stats = SessionStats()

    async def admit(self, sid: str, identity: Identity) -> None:
        """An admit hook: refuse a revoked token, start the socket's expiry timer."""
        try:
            revoked = await self._revoked([identity])
        except (RedisError, OSError) as exc:
            self.stats.check_errors += 1
            log.warning("revocation check failed (%s); letting the socket in",
                        type(exc).__name__)
            revoked = [False]
        if revoked[0]:  # counted by the relay under refused["revoked"]
            raise TokenRefused(REVOKED, _MESSAGES[REVOKED])
        self._identities[sid] = identity
        if identity.expires_at is not None:
            delay = max(0.0, identity.expires_at - time.time())
            loop = asyncio.get_running_loop()
            self._timers[sid] = loop.call_later(delay, self._expire, sid)

    def release(self, sid: str, user_id: str) -> None:
        """A release hook: the socket is gone; so is its timer."""
        self._identities.pop(sid, None)
        timer = self._timers.pop(sid, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, sid: str) -> None:
        # On the loop, at exp: cut_off takes the socket out of its room before anything
        # else runs, so no event reaches it after its token expired.
        self._timers.pop(sid, None)
        if self._relay.cut_off(sid, EXPIRED, _MESSAGES[EXPIRED]):
            self.stats.expired += 1

    async def run(self) -> None:
        """A background task: sweep the node's sockets every ``interval`` seconds."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:
                self.stats.check_errors += 1
                log.warning("revocation sweep failed (%s); retrying", type(exc).__name__)

    async def sweep(self) -> None:
        """End every socket of this node whose token or user is revoked now."""
        self.stats.sweeps += 1
        sockets = list(self._identities.items())
        for start in range(0, len(sockets), _SWEEP_CHUNK):
            part = sockets[start:start + _SWEEP_CHUNK]
            verdicts = await self._revoked([identity for _, identity in part])
            for (sid, _), revoked in zip(part, verdicts, strict=True):
                if revoked and self._relay.cut_off(sid, REVOKED, _MESSAGES[REVOKED]):
                    self.stats.revoked += 1

    async def _revoked(self, identities: Sequence[Identity]) -> list[bool]:
        client = await self._client()
        users = [identity.user_id for identity in identities]
        token_ids = [identity.token_id for identity in identities]
        pipe = client.pipeline(transaction=False)
        pipe.hmget(self._keys.users, users)
        named = [token_id for token_id in token_ids if token_id is not None]
        if named:
            pipe.zmscore(self._keys.tokens, named)
        replies = await pipe.execute()
        scores = iter(replies[1] if named else ())
        return [
            _is_revoked(identity, since, next(scores) if token_id is not None else None)
            for identity, since, token_id in zip(identities, replies[0], token_ids, strict=True)
        ]


def install_sessions(
    relay: Relay, keys: SnapshotKeys, *, interval: float = DEFAULT_REVOCATION_INTERVAL,
    client: Callable[[], Awaitable[Any]] | None = None,
) -> SessionGuard:
    """End ``relay``'s sockets at their token's expiry and on revocation."""
    from .catchup import open_snapshot_reader  # noqa: PLC0415 - one Redis client recipe

    guard = SessionGuard(relay, RevocationKeys.of(keys),
                         client or open_snapshot_reader(relay.config.redis_url),
                         interval=interval)
    relay.add_admit_hook(guard.admit)
    relay.add_release_hook(guard.release)
    relay.add_background_task(guard.run)
    relay.add_health_section("sessions", guard.stats.to_dict)
    return guard
