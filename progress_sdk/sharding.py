"""Shard channels: which channel a media's events travel on, for publishers and consumers.

With ``shards`` = 1 (the default) every event goes to the one channel (``media-progress-
events``, what the product's relay subscribes to). With ``shards`` = N > 1 a media's
events go to ``<channel>:<k>`` where ``k`` is a stable hash of its ``media_id`` modulo N,
so all events of one media share a channel and keep their order, while a Redis Cluster
serves the N channels from different nodes (sharded pub/sub places a channel by the hash
slot of its name). Consumers subscribe to every shard channel and to the plain one, so a
fleet that is half-way through changing ``shards`` is still seen whole.

The names carry no ``{hash tag}``: ``media-progress-events:0``, ``:1`` and ``:2`` land on
three different masters of a cluster whose slots were split evenly by ``redis-cli --cluster
create``, where the tagged ``...:{0}``, ``:{1}``, ``:{2}`` put two of three on one master.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

from . import defaults as d
from .exceptions import ConfigurationError

__all__ = [
    "channel_for",
    "resolve_shards",
    "router",
    "shard_channels",
    "shard_of",
    "subscribed_channels",
]


def resolve_shards(shards: int | None) -> int:
    """The shard count: the argument, else ``MEDIA_PROGRESS_SHARDS``, else 1; checked."""
    if shards is None:
        raw = os.environ.get(d.ENV_SHARDS, "").strip()
        if not raw:
            return d.DEFAULT_SHARDS
        try:
            shards = int(raw)
        except ValueError:
            raise ConfigurationError(
                f"{d.ENV_SHARDS}={raw!r} is not a whole number; set it to the number of "
                f"shard channels (1 to {d.MAX_SHARDS}) or unset it"
            ) from None
    if isinstance(shards, bool) or not isinstance(shards, int) or not (
        1 <= shards <= d.MAX_SHARDS
    ):
        raise ConfigurationError(
            f"shards must be a whole number from 1 to {d.MAX_SHARDS}, got {shards!r}"
        )
    return shards


def shard_of(media_id: str, shards: int) -> int:
    """The shard (0..shards-1) of a media: CRC-32 of its UTF-8 id, the same in every
    process and Python version (``hash()`` is salted per process)."""
    return zlib.crc32(media_id.encode("utf-8", "surrogatepass")) % shards if shards > 1 else 0


def shard_channels(channel: str, shards: int) -> list[str]:
    """The channels events are published on: ``[channel]`` for one shard, else
    ``channel:0`` .. ``channel:<shards-1>``."""
    if shards <= 1:
        return [channel]
    return [f"{channel}:{k}" for k in range(shards)]


def channel_for(channel: str, shards: int, media_id: str) -> str:
    """The channel the events of ``media_id`` are published on."""
    if shards <= 1:
        return channel
    return f"{channel}:{shard_of(media_id, shards)}"


def subscribed_channels(channel: str, shards: int) -> list[str]:
    """What a consumer subscribes to: the plain channel and every shard channel."""
    names = shard_channels(channel, shards)
    return names if names == [channel] else [channel, *names]


def router(channel: str, shards: int) -> Callable[[str], bytes] | None:
    """media_id -> its channel's name as bytes, for the publisher's sender; None for one
    shard (every event on ``channel``)."""
    if shards <= 1:
        return None
    names = [name.encode() for name in shard_channels(channel, shards)]

    def route(media_id: str) -> bytes:
        return names[zlib.crc32(media_id.encode("utf-8", "surrogatepass")) % shards]

    return route
