"""User channels on a Redis Cluster (``--user-channels``, issue #18): one pub/sub over
the cluster's masters, channels added and removed while it runs.

A publisher with user channels on sends each user's copy with ``SPUBLISH`` (sharded
pub/sub), which reaches only the nodes of the shard serving the channel's slot.
``ClusterUserPubSub`` offers what ``ChannelSubscriber`` needs of a pub/sub
(``subscribe``, ``unsubscribe``, ``get_message``, ``aclose``): it reads the slot map
once (``progress_sdk.cluster.SlotMap``), sends each channel's ``SSUBSCRIBE`` to its
slot's master over one connection per master that has channels (not one per channel, as
``simulator.cluster_subscription`` does for a few shard channels: a node has one channel
per connected user), and merges what the masters push into one stream, in the order it
arrives (a channel lives on one node, so its own order is kept).

Topology changes are not followed here: a node connection that fails, a ``sunsubscribe``
the relay did not ask for (the slot moved away), or a refused command (``MOVED``) ends
the whole pub/sub with ``redis.ConnectionError``. ``ChannelSubscriber`` then opens a new
one, from a fresh slot map, subscribes every current user's channel again, and the relay
resyncs its sockets, as after a single Redis restarts. Messages come out as redis-py's
dicts: ``smessage`` as ``message``, ``ssubscribe`` as ``subscribe``, an asked-for
``sunsubscribe`` as ``unsubscribe``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import RedisError

from progress_sdk.cluster import Address, SlotMap

__all__ = ["ClusterUserPubSub", "NodePubSub", "node_url"]

_TYPES = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


class NodePubSub(Protocol):
    """A pub/sub connection to one node that speaks sharded pub/sub (``RespPubSub``,
    redis-py's ``PubSub``)."""

    async def ssubscribe(self, *channels: str) -> Any: ...

    async def sunsubscribe(self, *channels: str) -> Any: ...

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None: ...

    async def aclose(self) -> None: ...


def node_url(url: str, address: Address) -> str:
    """``url`` with its host and port replaced by ``address`` (credentials, scheme and
    options kept: every node of a cluster takes the same)."""
    parts = urlsplit(url)
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{address[1]}" if credentials else f"{host}:{address[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClusterUserPubSub:
    """Sharded subscriptions to any number of channels, one connection per master."""

    def __init__(self, url: str, open_node: Callable[[str], Awaitable[Any]]) -> None:
        self._url = url
        self._open_node = open_node
        self._slots: SlotMap | None = None
        self._nodes: dict[Address, NodePubSub] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._reading: set[Address] = set()
        self._where: dict[str, Address] = {}  # channel -> the master it is subscribed on
        self._leaving: Counter[str] = Counter()  # SUNSUBSCRIBEs not answered yet
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._failure: BaseException | None = None

    async def subscribe(self, *channels: str) -> None:
        """``SSUBSCRIBE`` each channel on its slot's master; each confirmation comes as a
        ``subscribe`` message. Raises (and ends the stream) when a node cannot be
        reached or a slot has no master."""
        try:
            slots = await self._slot_map()
            by_node: dict[Address, list[str]] = defaultdict(list)
            for channel in channels:
                owner = slots.owner(channel)
                if owner is None:
                    raise redis.ConnectionError(f"no master serves the slot of {channel!r}")
                by_node[owner].append(channel)
            for owner, names in by_node.items():
                node = await self._node(owner)
                for name in names:  # one per command: channels of two slots are CROSSSLOT
                    self._where[name] = owner
                    await node.ssubscribe(name)
                if owner not in self._reading:  # once connected: the read opens none
                    self._reading.add(owner)
                    self._readers.append(asyncio.create_task(self._read(owner, node)))
        except (RedisError, OSError) as exc:
            raise self._fail(exc) from None

    async def unsubscribe(self, *channels: str) -> None:
        """``SUNSUBSCRIBE`` each channel where it was subscribed (unknown ones: nothing)."""
        try:
            for channel in channels:
                owner = self._where.pop(channel, None)
                if owner is not None:
                    self._leaving[channel] += 1
                    await self._nodes[owner].sunsubscribe(channel)
        except (RedisError, OSError) as exc:
            raise self._fail(exc) from None

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: float | None = 0.0) -> dict[str, Any] | None:
        """The next message of any node; waits up to ``timeout`` seconds (``None``: until
        one comes), then ``None``. Raises ``redis.ConnectionError`` once a node failed."""
        if self._failure is not None:
            raise self._error(self._failure)
        if timeout is None:
            item = await self._queue.get()
        else:
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except asyncio.TimeoutError:
                return None
        if isinstance(item, BaseException):
            self._failure = item
            raise self._error(item)
        if ignore_subscribe_messages and item["type"] != "message":
            return None
        return item

    async def aclose(self) -> None:
        """Stop the readers and close every node connection."""
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            with contextlib.suppress(RedisError, OSError):
                await node.aclose()

    async def _slot_map(self) -> SlotMap:
        if self._slots is None:
            slots = SlotMap(self._url)
            await asyncio.to_thread(slots.refresh)
            self._slots = slots
        return self._slots

    async def _node(self, address: Address) -> NodePubSub:
        node = self._nodes.get(address)
        if node is None:
            node = await self._open_node(node_url(self._url, address))
            self._nodes[address] = node
        return node

    async def _read(self, address: Address, node: NodePubSub) -> None:
        """Feed the queue with ``node``'s pushes until it fails."""
        try:
            while True:
                message = await node.get_message(timeout=None)
                if message is not None:
                    self._accept(address, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure ends the stream
            self._fail(exc)

    def _accept(self, address: Address, message: dict[str, Any]) -> None:
        kind = _TYPES.get(_text(message.get("type")))
        if kind is None:
            return
        channel = _text(message.get("channel"))
        if kind == "unsubscribe":
            if self._leaving[channel] <= 0:
                # The node gave the slot away (a failover, a migration): start over.
                raise redis.ConnectionError(
                    f"{address[0]}:{address[1]} no longer serves {channel!r}")
            self._leaving[channel] -= 1
            if not self._leaving[channel]:
                del self._leaving[channel]
        self._queue.put_nowait({**message, "type": kind})

    def _fail(self, exc: BaseException) -> redis.ConnectionError:
        """Queue the stream's end (once) and return it as a ``ConnectionError``."""
        error = self._error(exc)
        if self._failure is None:
            self._queue.put_nowait(error)
        return error

    @staticmethod
    def _error(exc: BaseException) -> redis.ConnectionError:
        if isinstance(exc, redis.ConnectionError):
            return exc
        # A MOVED or CLUSTERDOWN reply, a broken reader: the subscriber reconnects.
        error = redis.ConnectionError(f"cluster pub/sub ended: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
