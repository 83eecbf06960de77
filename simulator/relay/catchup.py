"""Catch-up: a socket that connects mid-job first learns where each job of its user stands.

Before a new socket joins its user's room, the relay reads the user's snapshots
(``progress_sdk.snapshot``), sends one ``progress_snapshot`` per media, then the live
events that arrived meanwhile minus those a snapshot already covers (by ``seq`` per
source); then the socket joins the room and gets the live stream. No gap: the relay is
subscribed before it reads, and the publisher writes a snapshot before it publishes the
events it covers, so every event newer than the snapshot reaches the relay after the
read. No duplicate: whatever arrived before or during the read is held back for the
socket and filtered by seq; and because the relay may still be working through events
published before the read when the socket joins the room, each socket also keeps its
snapshots' seq per (media, source) and the room emit skips it for an event at or below
(until a newer event of that media and source passes, or a minute went by). Events
without ``seq`` (other producers) cannot be matched and go through.

If Redis cannot be read, the socket gets no snapshot (logged, counted) and the live
stream as before: catch-up never keeps a socket from connecting. The counters
(``CatchUpStats``) are in the relay's ``/healthz`` under ``catch_up``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError, ResponseError

from progress_sdk.cluster import is_cluster
from progress_sdk.snapshot import MediaSnapshot, SnapshotKeys, read_user_async

from .routing import Routed
from .server import Relay

__all__ = ["CatchUp", "CatchUpStats", "install_catch_up", "open_snapshot_reader"]

log = logging.getLogger("progress_sim.relay")

Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]
"""``await emit(socket event, payload, sid)``."""
ReadSnapshots = Callable[[str], Awaitable[list[MediaSnapshot]]]
"""``await read(user_id)``: the user's snapshots."""


@dataclass
class CatchUpStats:
    """What catch-up did since the relay started (``/healthz``, ``catch_up``)."""

    done: int = 0
    """Sockets caught up: their user's snapshots were read and sent."""
    failed: int = 0
    """Sockets that got no snapshot because Redis could not be read when they connected
    (down, unreachable): they got the live stream only, and missed where jobs stood."""
    snapshots_sent: int = 0
    """``progress_snapshot`` packets sent, one per media of a socket's user."""
    held_back: int = 0
    """Live events a socket received after its snapshots instead of before."""
    covered: int = 0
    """Live events not sent because the socket's snapshot already held them."""

    def to_dict(self) -> dict[str, int]:
        """The ``catch_up`` section of ``/healthz``."""
        return dataclasses.asdict(self)


@dataclass
class _Held:
    pending: list[Routed] = field(default_factory=list)


@dataclass
class _Coverage:
    until: float
    seqs: dict[tuple[str, str], int]


# How long after its join a socket's snapshot may still cover an event the relay had not
# dispatched yet: far longer than any backlog of a healthy relay.
_COVERAGE_SECONDS = 60.0


class CatchUp:
    """Sends a joining socket its snapshots, then what it must not miss (see module doc).

    ``on_event`` must see every routed event before it is emitted to a room;
    ``join(sid, user_id)`` must run right before the socket joins its room.
    """

    def __init__(self, emit: Emit, read: ReadSnapshots) -> None:
        self._emit = emit
        self._read = read
        self._held: dict[str, dict[str, _Held]] = {}  # user_id -> sid -> held events
        self._covered: dict[str, dict[str, _Coverage]] = {}  # user_id -> sid -> seqs
        self.stats = CatchUpStats()

    def on_event(self, routed: Routed) -> None:
        """Hold ``routed`` for each socket of its user that is still catching up."""
        for held in self._held.get(routed.user_id, {}).values():
            held.pending.append(routed)

    def skip(self, routed: Routed) -> list[str]:
        """The sids of ``routed``'s room that must not get it from the room: those whose
        snapshot already holds it, and those catching up (they get it from ``join``,
        even if they enter the room between two emits of one event)."""
        held = list(self._held.get(routed.user_id, ()))
        sockets = self._covered.get(routed.user_id)
        if not sockets:
            return held
        seq, source = routed.event.get("seq"), routed.event.get("source")
        key = (str(routed.event.get("media_id")), str(source))
        now, skip = time.monotonic(), []
        for sid, coverage in list(sockets.items()):
            covered = coverage.seqs.get(key)
            if covered is not None and type(seq) is int:
                if seq <= covered:
                    skip.append(sid)
                    self.stats.covered += 1
                else:  # past the snapshot: later events of this pair are all newer
                    del coverage.seqs[key]
            if not coverage.seqs or now > coverage.until:
                del sockets[sid]
        if not sockets:
            del self._covered[routed.user_id]
        return held + skip

    async def join(self, sid: str, user_id: str) -> None:
        """Send ``sid`` its user's snapshots, then the held events they do not cover."""
        held = self._held.setdefault(user_id, {})[sid] = _Held()
        try:
            snapshots = await self._snapshots(user_id)
            for snapshot in snapshots.values():
                await self._emit("progress_snapshot", snapshot.to_client(), sid)
                self.stats.snapshots_sent += 1
            # Events go on arriving while the emits are awaited: drain until none is
            # left, then return without awaiting, so the room is joined before the next.
            while held.pending:
                routed = held.pending.pop(0)
                known = snapshots.get(str(routed.event.get("media_id")))
                if known is not None and known.covers(routed.event):
                    self.stats.covered += 1
                    continue
                self.stats.held_back += 1
                for name, payload in routed.emits:
                    await self._emit(name, payload, sid)
            seqs = {
                (media_id, source): seq
                for media_id, snap in snapshots.items()
                for source, seq in snap.seqs.items()
            }
            if seqs:
                until = time.monotonic() + _COVERAGE_SECONDS
                self._covered.setdefault(user_id, {})[sid] = _Coverage(until, seqs)
        finally:
            sockets = self._held[user_id]
            del sockets[sid]
            if not sockets:
                del self._held[user_id]

    async def _snapshots(self, user_id: str) -> dict[str, MediaSnapshot]:
        try:
            snapshots = {s.media_id: s for s in await self._read(user_id)}
        except (RedisError, OSError) as exc:
            self.stats.failed += 1
            log.warning("catch-up: cannot read snapshots (%s); live events only",
                        type(exc).__name__)
            return {}
        self.stats.done += 1
        return snapshots


def open_snapshot_reader(url: str) -> Callable[[], Awaitable[Any]]:
    """``await client()``: a ``redis.asyncio`` client for ``url``, chosen on first use (a
    ``RedisCluster`` when the node is part of a cluster, so each key is read on its
    master); asked again after a failed attempt."""
    chosen: list[Any] = []

    async def client() -> Any:
        if not chosen:
            try:
                cluster = await asyncio.to_thread(is_cluster, url)
            except ResponseError:  # INFO not allowed for this user: a plain server
                cluster = False
            kind = redis.asyncio.RedisCluster if cluster else redis.asyncio.Redis
            chosen.append(kind.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0))
        return chosen[0]

    return client


def install_catch_up(relay: Relay, keys: SnapshotKeys) -> CatchUp:
    """Give every socket of ``relay`` its snapshots from Redis before the live stream."""
    client = open_snapshot_reader(relay.config.redis_url)

    async def emit(name: str, payload: dict[str, Any], sid: str) -> None:
        # Paced by the socket's backlog: a user with thousands of snapshots must not take
        # a new socket over its limit (docs/relay.md, Backlog).
        await relay.emit_paced(sid, name, payload)

    async def read(user_id: str) -> list[MediaSnapshot]:
        return await read_user_async(await client(), keys, user_id)

    catch_up = CatchUp(emit, read)
    relay.add_event_hook(catch_up.on_event)
    relay.add_join_hook(catch_up.join)
    relay.add_skip_hook(catch_up.skip)
    relay.add_health_section("catch_up", catch_up.stats.to_dict)
    return catch_up
