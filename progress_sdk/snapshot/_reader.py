"""Reading snapshots back from Redis, with a sync or an asyncio client: the only I/O of
the package."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ._codec import decode_text, parse_snapshot
from ._config import SnapshotKeys
from ._fold import owners_of
from ._model import MediaSnapshot

__all__ = ["read_media", "read_recent_async", "read_user", "read_user_async"]


class _SyncRedis(Protocol):
    def hgetall(self, name: str) -> Any: ...
    def zrange(self, name: str, start: int, end: int) -> Any: ...
    def pipeline(self, transaction: bool = ...) -> Any: ...
    def exists(self, *names: str) -> Any: ...


def read_media(client: _SyncRedis, keys: SnapshotKeys, media_id: str) -> MediaSnapshot | None:
    """One media's snapshot, or None when it has none (never started, or expired)."""
    return parse_snapshot(media_id, client.hgetall(keys.media(media_id)))


def read_user(client: _SyncRedis, keys: SnapshotKeys, user_id: str) -> list[MediaSnapshot]:
    """Every snapshot of one user, oldest update first (in-flight and recently finished).

    Index entries whose snapshot expired are removed on the way.
    """
    members = [decode_text(m) for m in client.zrange(keys.user(user_id), 0, -1)]
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for media_id in members:
        pipe.hgetall(keys.media(media_id))
    snapshots, gone = _collect(members, pipe.execute())
    if gone:
        client.zrem(keys.user(user_id), *gone)  # type: ignore[attr-defined]
    owners = _owners(snapshots)
    if owners:
        pipe = client.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(keys.alive(owner))
        _mark_owners(snapshots, owners, pipe.execute())
    return snapshots


async def read_user_async(client: Any, keys: SnapshotKeys, user_id: str) -> list[MediaSnapshot]:
    """``read_user`` for a ``redis.asyncio`` client."""
    members = [decode_text(m) for m in await client.zrange(keys.user(user_id), 0, -1)]
    return await _read_async(client, keys, user_id, members)


async def read_recent_async(
    client: Any, keys: SnapshotKeys, user_id: str, limit: int, chunk: int
) -> AsyncIterator[list[MediaSnapshot]]:
    """The ``limit`` most recently updated snapshots of ``user_id``, newest first, read
    ``chunk`` hashes (one pipeline, then one for their owners' liveness keys) at a time,
    so a reader never holds them all at once (the relay's catch-up and resync). Each is
    read as ``read_user_async`` reads it: expired index entries removed, ``owner_alive``
    set."""
    members = await client.zrevrange(keys.user(user_id), 0, limit - 1)
    ids = [decode_text(m) for m in members]
    for start in range(0, len(ids), chunk):
        yield await _read_async(client, keys, user_id, ids[start:start + chunk])


async def _read_async(
    client: Any, keys: SnapshotKeys, user_id: str, members: list[str]
) -> list[MediaSnapshot]:
    """The snapshots of ``members`` (in their order), their owners marked alive or not."""
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for media_id in members:
        pipe.hgetall(keys.media(media_id))
    snapshots, gone = _collect(members, await pipe.execute())
    if gone:
        await client.zrem(keys.user(user_id), *gone)
    owners = _owners(snapshots)
    if owners:
        pipe = client.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(keys.alive(owner))
        _mark_owners(snapshots, owners, await pipe.execute())
    return snapshots


def _owners(snapshots: list[MediaSnapshot]) -> list[str]:
    return list(dict.fromkeys(
        owner for s in snapshots if not s.terminal for owner in owners_of(s)))


def _mark_owners(snapshots: list[MediaSnapshot], owners: list[str], replies: list[Any]) -> None:
    """Set ``owner_alive`` (the readers check each running media's owners' keys)."""
    alive = {owner for owner, n in zip(owners, replies, strict=True) if n}
    for snapshot in snapshots:
        mine = owners_of(snapshot) if not snapshot.terminal else set()
        if mine:
            snapshot.owner_alive = bool(mine & alive)


def _collect(
    members: list[str], replies: list[Any]
) -> tuple[list[MediaSnapshot], list[str]]:
    snapshots, gone = [], []
    for media_id, fields in zip(members, replies, strict=True):
        snapshot = parse_snapshot(media_id, fields)
        if snapshot is None:
            gone.append(media_id)
        else:
            snapshots.append(snapshot)
    return snapshots, gone
