"""The Redis commands that write snapshots: the hash's script for a whole write, plain
commands for progress, and the indexes' updates; each command touches one key, so a
Redis Cluster can route it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ._codec import media_fields, progress_fields
from ._config import SnapshotConfig
from ._model import MediaSnapshot

__all__ = [
    "LOAD_COMMAND",
    "WRITE_SCRIPT",
    "WRITE_SCRIPT_SHA",
    "IndexWrites",
    "index_score",
    "progress_commands",
    "progress_hset",
    "script_write",
    "write_commands",
]

# The hash's write, for a media's first write, its media-level events and its end. The
# hash and its expiry change together, and a write that arrives after a terminal state (a
# worker that resumed after the sweeper gave up on it) is refused. A new run (fresh
# start) replaces the hash whatever it holds: the run before may have ended in the same
# batch, its end never written, and its model rows are not the new run's. The indexes
# are written by commands of their own (``write_commands``): each command touches one
# key, so a Redis Cluster can route it to its key's master (a script's keys must share a
# slot). KEYS: media hash. ARGV: expiry (ms), fresh start (0/1), then field/value pairs.
WRITE_SCRIPT = """
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
else
  local status = redis.call('HGET', KEYS[1], 'status')
  if status and status ~= 'running' then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


WRITE_SCRIPT_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()
# Once per batch instead of the script's text in every call: a no-op for Redis when the
# script is cached, and it makes the batch's EVALSHA calls work after a Redis restart. It
# has no key: on a cluster it runs on every master the batch's writes go to.
LOAD_COMMAND = ("SCRIPT", "LOAD", WRITE_SCRIPT)


def write_commands(
    state: MediaSnapshot,
    config: SnapshotConfig,
    *,
    models: Iterable[str] | None = None,
    fresh: bool = False,
) -> list[tuple[str, ...]]:
    """The commands writing all of ``state`` (rows: only ``models``, when given) to Redis:
    the hash (``EVALSHA``; ``LOAD_COMMAND`` must run before it on the same connection),
    then the in-flight index, then the user's index. The indexes are written even when the
    hash's write is refused: a finished media put back in the in-flight index is dropped
    by the sweeper's next look at it, and a reader fetches each indexed media's hash."""
    indexes = IndexWrites(config)
    indexes.whole(state)
    return [script_write(state, config, models, fresh), *indexes.commands()]


def script_write(
    state: MediaSnapshot, config: SnapshotConfig, models: Iterable[str] | None, fresh: bool
) -> tuple[str, ...]:
    expiry = str(max(1, int(config.ttl * 1000))) if state.terminal else config.inflight_expiry_ms
    pairs = [part for item in media_fields(state, models).items() for part in item]
    return (
        "EVALSHA", WRITE_SCRIPT_SHA, "1", config.keys.media(state.media_id),
        expiry, "1" if fresh else "0", *pairs,
    )  # fmt: skip


class IndexWrites:
    """A batch's index updates, one command per key and kind (a Redis command costs
    about as much as its first member): the in-flight index gains the media written
    whole, loses the finished ones and rescores (``XX``: never re-adds) the others; each
    user's index gains its media written whole and has its expiry pushed back."""

    def __init__(self, config: SnapshotConfig) -> None:
        self.keys = config.keys
        self.index_ttl = str(int(max(config.ttl, config.inflight_ttl) * 1000))
        self.added: list[str] = []
        self.removed: list[str] = []
        self.rescored: list[str] = []
        self.users: dict[str, list[str]] = {}

    def whole(self, state: MediaSnapshot) -> None:
        """``state`` was written whole (the script)."""
        score = index_score(state)
        if state.terminal:
            self.removed.append(state.media_id)
        else:
            self.added += (score, state.media_id)
        if state.user_id:
            user = self.users.setdefault(self.keys.user(state.user_id), [])
            user += (score, state.media_id)

    def commands(self) -> list[tuple[str, ...]]:
        """The writes, after the hashes': a reader drops an indexed media with no hash."""
        inflight = self.keys.inflight
        commands: list[tuple[str, ...]] = []
        if self.removed:
            commands.append(("ZREM", inflight, *self.removed))
        if self.added:
            commands.append(("ZADD", inflight, *self.added))
        if self.rescored:
            commands.append(("ZADD", inflight, "XX", *self.rescored))
        for key, pairs in self.users.items():
            commands += (("ZADD", key, *pairs), ("PEXPIRE", key, self.index_ttl))
        return commands


def progress_commands(
    state: MediaSnapshot, config: SnapshotConfig, models: Iterable[str]
) -> list[tuple[str | bytes, ...]]:
    """The plain commands for a running media whose writer wrote it whole before: its
    updated-at, seq and changed rows, its expiry, its in-flight score. A fifth of the
    script's cost in Redis. ``ZADD XX`` cannot put back a media the sweeper took out, and
    the status is not written, so a worker that resumes cannot reopen a failed media.
    (A tracker writes the expiry only every ``config.refresh_every`` seconds and the
    scores of a batch's media in one ``ZADD``.)"""
    key = config.keys.media(state.media_id)
    return [
        progress_hset(key, state, models),
        ("PEXPIRE", key, config.inflight_expiry_ms),
        ("ZADD", config.keys.inflight, "XX", index_score(state), state.media_id),
    ]


def progress_hset(key: str, state: MediaSnapshot, models: Iterable[str]) -> tuple[str, ...]:
    fields = progress_fields(state, models)
    return ("HSET", key, *(part for item in fields.items() for part in item))


def index_score(state: MediaSnapshot) -> str:
    return str(int(state.updated_at * 1000))
