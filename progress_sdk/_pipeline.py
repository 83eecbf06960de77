"""The parts a publisher's front shares with its sender thread: the buffer, the encoder,
liveness, the snapshot hook and the ``Sender``. Made when the publisher is created, and
afresh in a forked child (the parent's pending events stay the parent's)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis

from . import defaults as d
from ._buffer import EventBuffer
from ._sender import BatchHook, Sender, UserRoute
from ._wire import WireEncoder
from .cluster import client_for
from .liveness import Liveness
from .sharding import UserChannels, router, user_router
from .snapshot import SnapshotConfig, SnapshotHook
from .transport import Transport

__all__ = ["Pipeline", "PipelineConfig", "build_pipeline", "liveness_client"]


@dataclass(frozen=True)
class PipelineConfig:
    """What the front was configured with that its pipeline needs."""

    transport: Transport
    channel: str
    shards: int
    buffer_size: int
    min_progress_interval: float
    batch_size: int
    batch_hook: BatchHook | None
    snapshots: SnapshotConfig | None
    liveness_client: Callable[[], Any] | None
    users: UserChannels = field(default_factory=UserChannels)


class Pipeline(NamedTuple):
    """One generation of the shared parts (``build_pipeline``)."""

    buffer: EventBuffer
    encoder: WireEncoder
    liveness: Liveness | None
    sender: Sender
    keep_fields: bool
    """Whether serialised events keep their fields (a batch hook is given them)."""


def build_pipeline(
    config: PipelineConfig, source: str, settled: threading.Condition, *, keep_alive: object
) -> Pipeline:
    """The parts for events numbered under ``source``; ``settled``'s lock guards them."""
    route = router(config.channel, config.shards)
    users = (UserRoute(user_router(config.channel), config.users.contract)
             if config.users.on else None)
    # A batch hook is given each event's fields: then they are kept after serialising;
    # a hook, shard routing and user channels need each event's media_id or user_id:
    # then every event keeps its Entry (otherwise a lifecycle event is kept as its bytes
    # alone). Snapshots read the events back from their bytes and need neither.
    keep_fields = config.batch_hook is not None
    buffer = EventBuffer(
        config.buffer_size,
        config.min_progress_interval,
        keep_entries=keep_fields or route is not None or users is not None,
    )
    encoder = WireEncoder(source)
    liveness = _new_liveness(config, source)
    hook = None
    if config.snapshots is not None:
        # A fresh hook per sender, so a forked child starts without its parent's.
        hook = SnapshotHook(
            config.snapshots,
            config.channel if route is None else lambda media_id: route(media_id).decode(),
            liveness,
        )
        if hasattr(config.transport, "on_new_server"):
            # A server that lost its data gets every snapshot whole again.
            config.transport.on_new_server = hook.rewrite_commands
    sender = Sender(
        buffer,
        settled,
        config.transport,
        encoder,
        batch_size=config.batch_size,
        name=f"progress-sdk-sender-{config.channel}",
        source=source,
        batch_hook=config.batch_hook,
        wire_hook=hook,
        route=route,
        users=users,
        keep_alive=keep_alive,
        liveness=liveness,
        withheld=hook.take_withheld if hook is not None and liveness else None,
    )
    return Pipeline(buffer, encoder, liveness, sender, keep_fields)


def _new_liveness(config: PipelineConfig, source: str) -> Liveness | None:
    snapshots = config.snapshots
    if snapshots is None or snapshots.liveness_ttl is None or config.liveness_client is None:
        return None
    return Liveness(source, snapshots.keys.alive(source), snapshots.keys.media,
                    snapshots.liveness_ttl, config.liveness_client)


def liveness_client(target: object) -> Callable[[], Any]:
    """Makes the client of the liveness key and guards (on the sender thread). Never on a
    pool the job's code shares: the sender may hold the pool's lock when a worker forks
    (RQ's work horse), and the child would then wait on it forever."""
    if isinstance(target, str):
        return lambda: client_for(target, socket_timeout=d.SOCKET_TIMEOUT)
    pool = target.connection_pool if isinstance(target, redis.Redis) else target
    if isinstance(pool, redis.ConnectionPool):
        return lambda: redis.Redis(connection_pool=type(pool)(
            connection_class=pool.connection_class, **pool.connection_kwargs))
    return lambda: target  # a RedisCluster client


