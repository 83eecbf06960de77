"""Catch-up: a socket that connects mid-job first learns where each job of its user stands.

Before a new socket joins its user's room, the relay reads the user's snapshots
(``progress_sdk.snapshot.read_recent_async``: the SDK's reader, which also says whether
each running media's worker holds its liveness key, ``ownerAlive``), sends one
``progress_snapshot`` per media, then the live events that arrived meanwhile minus those
a snapshot already covers (by ``seq`` per source); then the socket joins the room and
gets the live stream. No gap: the relay is subscribed before it reads, and the publisher
writes a snapshot before it publishes the events it covers, so every event newer than
the snapshot reaches the relay after the read. No duplicate: whatever arrived before or
during the read is held back for the socket and filtered by seq; and because the relay
may still be working through events published before the read when the socket joins the
room, each socket also keeps its snapshots' seq per (media, source) and the room emit
skips it for an event at or below (until a newer event of that media and source passes,
or a minute went by). Events without ``seq`` (other producers) cannot be matched and go
through.

The same machinery resyncs sockets already in the room (``resync``, after the relay's
Redis subscription came back: ``resync.py``): while it runs the room emit skips them and
their events are held; a snapshot a socket already has (per media, no seq above what the
socket was known to hold) is not sent again.

Bounded (``CatchUpLimits``): at most ``max_media`` media per socket, the most recently
updated first; read and sent ``chunk`` snapshots at a time, yielding to the event loop
between chunks, never built all at once; abandoned as soon as the socket is gone (its
client left, or the relay ended it); and at most ``per_user`` catch-ups of one user at
once, the others waiting their turn (their live events held meanwhile). Before these
bounds, one user with 3,000 snapshots and 200 sockets that connected and closed at once
grew the relay from 61 MB to 1.36 GB (600k packets built for sockets already gone).

Every snapshot is checked against the socket's user: a media id reused by another user
must not hand this socket the other user's snapshot (``foreign``).

If Redis cannot be read, the socket gets no snapshot (logged, counted) and the live
stream as before: catch-up never keeps a socket from connecting, and the next resync
sends it everything. The counters (``CatchUpStats``) are in ``/healthz`` under
``catch_up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError, ResponseError

from progress_sdk.cluster import is_cluster
from progress_sdk.snapshot import MediaSnapshot, SnapshotKeys, read_recent_async

from .routing import Routed
from .server import Relay

__all__ = [
    "CatchUp",
    "CatchUpLimits",
    "CatchUpStats",
    "install_catch_up",
    "open_snapshot_reader",
]

log = logging.getLogger("progress_sim.relay")

Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]
"""``await emit(socket event, payload, sid)``."""
ReadRecent = Callable[[str, int, int], AsyncGenerator[list[MediaSnapshot], None]]
"""``read(user_id, limit, chunk)``: the user's ``limit`` most recently updated snapshots,
newest first, ``chunk`` at a time."""
Known = Mapping[str, Mapping[str, int]]
"""What a socket already holds: media id -> the last seq per source it got."""

# 500 media: a user's in-flight and recently finished media (snapshots of finished media
# expire after 10 minutes) beyond that are history the panel does not need at once.
DEFAULT_MAX_MEDIA = 500
# Four sockets of one user catch up at once (a user opens a handful of tabs; a reconnect
# storm of hundreds waits its turn instead of all reading and sending at once).
DEFAULT_PER_USER = 4
# Snapshots read (one pipeline) and sent between two yields to the event loop.
DEFAULT_CHUNK = 50


@dataclass(frozen=True)
class CatchUpLimits:
    """How much catch-up may cost (``--catch-up-max-media``, ``--catch-up-per-user``)."""

    max_media: int = DEFAULT_MAX_MEDIA
    per_user: int = DEFAULT_PER_USER
    chunk: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        for name in ("max_media", "per_user", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"catch-up {name} must be at least 1")


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
    truncated: int = 0
    """Catch-ups whose user had more media than ``max_media`` (the oldest not sent)."""
    abandoned: int = 0
    """Catch-ups stopped because their socket left (or was ended) meanwhile."""
    foreign: int = 0
    """Snapshot items not sent because they belong to another user (a reused media id)."""
    waiting: int = 0
    """Now: catch-ups waiting for one of their user's ``per_user`` turns."""
    running: int = 0
    """Now: catch-ups reading or sending."""
    resynced: int = 0
    """Sockets brought up to date after the Redis subscription came back."""
    resync_skipped: int = 0
    """Snapshots a resync did not send because the socket already had them."""

    def to_dict(self) -> dict[str, int]:
        """The ``catch_up`` section of ``/healthz``."""
        return dataclasses.asdict(self)


@dataclass
class _Held:
    pending: deque[Routed] = field(default_factory=deque)


@dataclass
class _Coverage:
    until: float
    seqs: dict[tuple[str, str], int]


@dataclass
class _Turns:
    """One user's catch-up turns (``per_user`` at once) and how many use or await them."""

    semaphore: asyncio.Semaphore
    users: int = 0


# How long after its join a socket's snapshot may still cover an event the relay had not
# dispatched yet: far longer than any backlog of a healthy relay.
_COVERAGE_SECONDS = 60.0


def _has(known: Known | None, snapshot: MediaSnapshot) -> bool:
    """True when a socket holding ``known`` already has everything ``snapshot`` says."""
    if known is None or not snapshot.seqs:
        return False
    seqs = known.get(snapshot.media_id)
    return seqs is not None and all(
        seqs.get(source, -1) >= seq for source, seq in snapshot.seqs.items()
    )


class CatchUp:
    """Sends a joining socket its snapshots, then what it must not miss (see module doc).

    ``on_event`` must see every routed event before it is emitted to a room;
    ``join(sid, user_id)`` must run right before the socket joins its room; ``skip`` is
    the room emit's skip hook; ``is_live(sid)`` says whether the socket is still there.
    """

    def __init__(
        self, emit: Emit, read: ReadRecent, *, is_live: Callable[[str], bool] = lambda _: True,
        limits: CatchUpLimits | None = None,
    ) -> None:
        self._emit = emit
        self._read = read
        self._is_live = is_live
        self.limits = limits or CatchUpLimits()
        self.on_sent: Callable[[str, MediaSnapshot, set[str]], None] | None = None
        """Called with (user id, snapshot, the sids of the plan that hold it now) for
        each snapshot sent (resync's record)."""
        self.on_gap: Callable[[str, list[str]], None] | None = None
        """Called with (user id, sids) when the subscription came back while these
        sockets caught up: what was published meanwhile may have passed them by."""
        self.epoch = 0
        """Bumped by resync at each new subscription."""
        self._held: dict[str, dict[str, _Held]] = {}  # user_id -> sid -> held events
        self._covered: dict[str, dict[str, _Coverage]] = {}  # user_id -> sid -> seqs
        self._turns: dict[str, _Turns] = {}
        self.incomplete: set[str] = set()
        """Sids whose catch-up could not read Redis: a resync sends them everything."""
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

    def release(self, sid: str, user_id: str) -> None:
        """Forget a socket the relay is done with."""
        self.incomplete.discard(sid)
        holding = self._held.get(user_id)
        if holding is not None and holding.pop(sid, None) is not None and not holding:
            del self._held[user_id]
        sockets = self._covered.get(user_id)
        if sockets is not None and sockets.pop(sid, None) is not None and not sockets:
            del self._covered[user_id]

    def join(self, sid: str, user_id: str) -> Awaitable[None]:
        """Hold ``sid``'s events from now on; the awaitable sends its user's snapshots,
        then the held events they do not cover (a join hook: the relay calls it when it
        registers the socket and awaits it before the socket enters its room)."""
        self._hold(user_id, {sid: None})
        return self._catch_up(user_id, {sid: None})

    async def resync(self, user_id: str, plan: dict[str, Known | None]) -> None:
        """Bring sockets of ``user_id`` already in the room up to date: for each sid, the
        snapshots newer than what ``plan[sid]`` says it holds (None: all of them)."""
        self._hold(user_id, plan)
        await self._catch_up(user_id, plan)
        self.stats.resynced += sum(1 for sid in plan if self._is_live(sid))

    def _hold(self, user_id: str, plan: dict[str, Known | None]) -> None:
        holding = self._held.setdefault(user_id, {})
        for sid in plan:
            holding[sid] = _Held()

    def busy(self, user_id: str, sid: str) -> bool:
        """True while ``sid`` catches up (its events held for it)."""
        return sid in self._held.get(user_id, ())

    async def _catch_up(self, user_id: str, plan: dict[str, Known | None]) -> None:
        holding = self._held.setdefault(user_id, {})
        epoch = self.epoch
        waiting = True
        self.stats.waiting += 1
        try:
            async with self._turn(user_id):
                self.stats.waiting -= 1
                waiting = False
                self.stats.running += 1
                try:
                    sent = await self._send_snapshots(user_id, plan)
                    # Events go on arriving while held ones are emitted: round until no
                    # socket has any left; nothing awaits after the last check, so each
                    # socket is in its room (or back in the room emit) before the next.
                    while any(holding[sid].pending for sid in plan if sid in holding):
                        for sid in plan:
                            if sid in holding:
                                await self._send_held(sid, holding[sid], sent[sid])
                finally:
                    self.stats.running -= 1
            for sid in plan:
                self._cover(user_id, sid, sent[sid])
            if self.epoch != epoch and self.on_gap is not None:
                self.on_gap(user_id, [sid for sid in plan if self._is_live(sid)])
        finally:
            if waiting:
                self.stats.waiting -= 1
            for sid in plan:
                holding.pop(sid, None)
            if not holding:
                self._held.pop(user_id, None)

    async def _send_snapshots(
        self, user_id: str, plan: dict[str, Known | None]
    ) -> dict[str, dict[str, dict[str, int]]]:
        """Read and send the snapshots, a chunk at a time; what each sid got."""
        sent: dict[str, dict[str, dict[str, int]]] = {sid: {} for sid in plan}
        if not any(self._is_live(sid) for sid in plan):
            self.stats.abandoned += len(plan)
            return sent
        limits = self.limits
        count = 0
        try:
            reading = self._read(user_id, limits.max_media + 1, limits.chunk)
            async with contextlib.aclosing(reading) as chunks:
                async for chunk in chunks:
                    for snapshot in chunk[: limits.max_media + 1 - count]:
                        count += 1
                        if count > limits.max_media:  # one more than allowed exists
                            self.stats.truncated += 1
                            break
                        await self._send_one(user_id, snapshot, plan, sent)
                    await asyncio.sleep(0)  # paced: the sockets' writers run between chunks
                    if not any(self._is_live(sid) for sid in plan):
                        self.stats.abandoned += len(plan)
                        return sent
        except (RedisError, OSError) as exc:
            self.stats.failed += 1
            self.incomplete.update(plan)
            log.warning("catch-up: cannot read snapshots (%s); live events only",
                        type(exc).__name__)
            return sent
        self.stats.done += 1
        return sent

    async def _send_one(
        self, user_id: str, snapshot: MediaSnapshot, plan: dict[str, Known | None],
        sent: dict[str, dict[str, dict[str, int]]],
    ) -> None:
        if snapshot.user_id != user_id:
            # A media id reused by another user: its snapshot is that user's now.
            self.stats.foreign += 1
            return
        payload: dict[str, Any] | None = None
        holders: set[str] = set()
        for sid, known in plan.items():
            if _has(known, snapshot):
                self.stats.resync_skipped += 1
                holders.add(sid)
                continue
            if not self._is_live(sid):
                continue
            payload = payload or snapshot.to_client()
            await self._emit("progress_snapshot", payload, sid)
            self.stats.snapshots_sent += 1
            sent[sid][snapshot.media_id] = dict(snapshot.seqs)
            holders.add(sid)
        if payload is not None and self.on_sent is not None:
            self.on_sent(user_id, snapshot, holders)

    async def _send_held(self, sid: str, held: _Held, sent: dict[str, dict[str, int]]) -> None:
        pending = held.pending
        while pending:
            routed = pending.popleft()
            seqs = sent.get(str(routed.event.get("media_id")))
            seq, source = routed.event.get("seq"), routed.event.get("source")
            if seqs is not None and type(seq) is int and seq <= seqs.get(str(source), -1):
                self.stats.covered += 1
                continue
            self.stats.held_back += 1
            for name, payload in routed.emits:
                if self._is_live(sid):
                    await self._emit(name, payload, sid)

    def _cover(self, user_id: str, sid: str, sent: dict[str, dict[str, int]]) -> None:
        seqs = {
            (media_id, source): seq
            for media_id, by_source in sent.items()
            for source, seq in by_source.items()
        }
        if seqs and self._is_live(sid):
            until = time.monotonic() + _COVERAGE_SECONDS
            self._covered.setdefault(user_id, {})[sid] = _Coverage(until, seqs)

    def _turn(self, user_id: str) -> _TurnContext:
        turns = self._turns.get(user_id)
        if turns is None:
            turns = self._turns[user_id] = _Turns(asyncio.Semaphore(self.limits.per_user))
        return _TurnContext(self._turns, user_id, turns)


class _TurnContext:
    """``async with``: one of a user's catch-up turns; the user's entry goes with its
    last user (a relay with many users keeps no semaphore per user ever seen)."""

    def __init__(self, table: dict[str, _Turns], user_id: str, turns: _Turns) -> None:
        self._table, self._user_id, self._turns = table, user_id, turns
        turns.users += 1

    async def __aenter__(self) -> None:
        try:
            await self._turns.semaphore.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._turns.semaphore.release()
        self._leave()

    def _leave(self) -> None:
        self._turns.users -= 1
        if not self._turns.users:
            self._table.pop(self._user_id, None)


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


def install_catch_up(
    relay: Relay, keys: SnapshotKeys, limits: CatchUpLimits | None = None
) -> CatchUp:
    """Give every socket of ``relay`` its snapshots from Redis before the live stream."""
    client = open_snapshot_reader(relay.config.redis_url)

    async def emit(name: str, payload: dict[str, Any], sid: str) -> None:
        # Paced by the socket's backlog: a user with thousands of snapshots must not take
        # a new socket over its limit (docs/relay.md, Backlog).
        await relay.emit_paced(sid, name, payload)

    async def read(
        user_id: str, limit: int, chunk: int
    ) -> AsyncGenerator[list[MediaSnapshot], None]:
        async for part in read_recent_async(await client(), keys, user_id, limit, chunk):
            yield part

    catch_up = CatchUp(emit, read, is_live=relay.is_live, limits=limits)
    relay.add_event_hook(catch_up.on_event)
    relay.add_join_hook(catch_up.join)
    relay.add_skip_hook(catch_up.skip)
    relay.add_release_hook(catch_up.release)
    relay.add_health_section("catch_up", catch_up.stats.to_dict)
    return catch_up
