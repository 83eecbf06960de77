"""Shard and user channels: which channels an event travels on, for publishers and consumers.

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

User channels (opt-in, ``user_channels=`` / ``MEDIA_PROGRESS_USER_CHANNELS``): each event
also goes to ``<channel>:user:<user_id>`` (``user_channel``), so a relay node subscribes
to the channels of the users connected to it and reads their events only: a second node
adds events/s, not only sockets (docs/relay.md, User channels). The contract channel (or
the shard channels) stays on unless ``contract_channel=False`` /
``MEDIA_PROGRESS_CONTRACT_CHANNEL=0``: the product's relay reads it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from . import defaults as d
from .exceptions import ConfigurationError

__all__ = [
    "UserChannels",
    "channel_for",
    "resolve_shards",
    "resolve_user_channels",
    "router",
    "shard_channels",
    "shard_of",
    "subscribed_channels",
    "user_channel",
    "user_router",
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


def user_channel(channel: str, user_id: str) -> str:
    """The channel of one user's events: ``<channel>:user:<user_id>``, e.g.
    ``media-progress-events:user:u-17`` (publishers and relays both name it here)."""
    return f"{channel}:user:{user_id}"


@dataclass(frozen=True)
class UserChannels:
    """Where a publisher's events go besides their media's channel (``resolve_user_channels``)."""

    on: bool = False
    """Each event is published on its user's channel (``user_channel``)."""
    contract: bool = True
    """Each event is also published on the contract channel (or its media's shard
    channel), in the same batch: what relays like the product's read."""


_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def _flag(value: bool | None, name: str, env: str, default: bool) -> bool:
    if value is None:
        raw = os.environ.get(env, "").strip().lower()
        if not raw:
            return default
        if raw not in _TRUE + _FALSE:
            raise ConfigurationError(
                f"{env}={raw!r} is not a yes/no value; set it to 1 or 0 (true/false, on/off) "
                "or unset it"
            )
        return raw in _TRUE
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True, False or None, got {value!r}")
    return value


def resolve_user_channels(
    user_channels: bool | None, contract_channel: bool | None
) -> UserChannels:
    """The arguments, else ``MEDIA_PROGRESS_USER_CHANNELS`` (off) and
    ``MEDIA_PROGRESS_CONTRACT_CHANNEL`` (on); checked: events must go somewhere."""
    on = _flag(user_channels, "user_channels", d.ENV_USER_CHANNELS, False)
    contract = _flag(contract_channel, "contract_channel", d.ENV_CONTRACT_CHANNEL, True)
    if not on and not contract:
        raise ConfigurationError(
            "the contract channel can be turned off only with user channels on "
            f"(user_channels=True or {d.ENV_USER_CHANNELS}=1): events would go nowhere"
        )
    return UserChannels(on, contract)


def user_router(channel: str) -> Callable[[str], bytes]:
    """user_id -> its channel's name as bytes, for the publisher's sender. Cached: a
    worker's events come from few users (a bounded cache, for a worker that serves many)."""

    @lru_cache(maxsize=4096)
    def route(user_id: str) -> bytes:
        return user_channel(channel, user_id).encode("utf-8", "surrogatepass")

    return route
