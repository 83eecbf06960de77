"""Sharded pub/sub on a Redis Cluster: ``SSUBSCRIBE`` each channel on a node of the shard
serving its slot, and follow the cluster when that changes.

A shard channel's messages reach every node of its shard (the master and its replicas),
so each channel is subscribed on a replica when there is one: when the master dies, that
replica (or a sibling it then follows) is promoted and the subscription carries on without
a gap. A channel is moved only when its own node is lost.

Each channel has its own connection and reader thread, feeding one queue that ``pump``
drains on the caller's thread (so ``handle`` runs on one thread, as ``Observer`` wants,
and a channel's messages keep their order). A channel is moved when its reader fails
(its node died), when the server unsubscribes it (``sunsubscribe``: its slot migrated
away) or when the periodic look at ``CLUSTER SHARDS`` no longer counts its node in the
slot's shard: the old connection is read to its end (what the old node had sent, a
lagging reader may not have read yet) and closed first, then the channel is subscribed on
the new shard, so it is never read twice and its messages keep their order. Until a node
of the shard answers the channel is retried every ``RETRY_INTERVAL``; if no node at all
has answered for ``GIVE_UP_AFTER`` seconds, ``pump`` raises ``redis.ConnectionError``.

Messages published while a channel had no live subscription are not seen (pub/sub keeps
nothing); the lifecycle validator reports them as sequence gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis

from progress_sdk.cluster import Address, SlotMap

from .pumping import Polled, pump_messages

__all__ = ["AsyncClusterPubSub", "ClusterSubscription"]

_log = logging.getLogger(__name__)

RETRY_INTERVAL = 0.1
REFRESH_INTERVAL = 1.0
GIVE_UP_AFTER = 30.0
_POLL = 0.2
# A reader leaving a node reads until a poll this long comes back empty, for at most
# _DRAIN_PATIENCE seconds in all.
_DRAIN_POLL = 0.05
_DRAIN_PATIENCE = 5.0


class _ChannelReader:
    """One channel's subscription on one node, read on its own thread into ``out``."""

    def __init__(self, slots: SlotMap, channel: str, owner: Address, out: queue.SimpleQueue[Any]):
        self.channel = channel
        self.owner = owner
        self._client = slots.client(owner, socket_timeout=_POLL + 5.0)
        # redis 5's pubsub() has no annotations (an untyped call under strict mypy), redis 8's
        # has: through Any, both versions check clean.
        self._pubsub: Any = cast(Any, self._client).pubsub()
        self._out = out
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, timeout: float) -> None:
        """SSUBSCRIBE and wait for the confirmation; raises redis errors (MOVED included)."""
        self._pubsub.ssubscribe(self.channel)
        deadline = time.monotonic() + timeout
        while True:
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None and message.get("type") == "ssubscribe":
                break
            if time.monotonic() > deadline:
                raise redis.TimeoutError(f"no confirmation of SSUBSCRIBE {self.channel}")
        self._thread = threading.Thread(
            target=self._read, name=f"progress-ssubscribe-{self.channel}", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                draining = self._draining.is_set()
                message = self._pubsub.get_message(timeout=_DRAIN_POLL if draining else _POLL)
                if message is None:
                    if draining:
                        return  # read to the end: the node sends this channel no more
                    continue
                kind = message.get("type")
                if kind == "smessage":
                    self._out.put(message["data"])
                elif kind == "sunsubscribe":  # the slot left this node
                    self._out.put(self)
                    return
        except Exception as exc:  # a dead node or a cut connection: move the channel
            if not self._stop.is_set():
                _log.info("shard channel %s lost its node (%s)", self.channel, exc)
                self._out.put(self)

    def close(self, *, drain: bool = False) -> None:
        """Stop reading and disconnect; with ``drain``, first hand over what was already
        sent to this node (its slot moved: nothing more comes, and what a reader lagging
        behind has not read yet would otherwise be lost)."""
        (self._draining if drain else self._stop).set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(_DRAIN_PATIENCE if drain else _POLL + 1.0)
        self._stop.set()
        with contextlib.suppress(Exception):
            self._pubsub.close()
        with contextlib.suppress(Exception):
            self._client.close()
            self._client.connection_pool.disconnect()


class ClusterSubscription:
    """Sharded subscriptions to ``channels`` on the cluster that ``url``'s node is part
    of; ``open()``, then ``pump()``, then ``close()`` (the interface of
    ``simulator.listener.Subscription``)."""

    def __init__(self, url: str, channels: Sequence[str],
                 on_resubscribe: Callable[[], None] | None = None) -> None:
        self.channels = list(dict.fromkeys(channels))
        self._on_resubscribe = on_resubscribe
        """Called (on the subscription's thread) each time a channel is subscribed again
        after ``open()``: what was published to it in between did not reach us."""
        self._opened = False
        self.description = ""
        self._slots = SlotMap(url)
        self.description = self._slots.description
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._readers: dict[str, _ChannelReader] = {}
        self._pending: set[str] = set(self.channels)
        self._next_refresh = 0.0
        self._last_contact = time.monotonic()
        self.moves = 0
        """Channels subscribed again on another node since ``open()``."""

    def open(self, timeout: float = 5.0) -> ClusterSubscription:
        """Subscribe every channel and wait for the confirmations; raises redis errors
        when the cluster cannot be reached or a channel's slot is not served."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._maintain(force_refresh=True)
            if not self._pending:
                self._opened = True
                return self
            if time.monotonic() > deadline:
                self.close()
                raise redis.ConnectionError(problem or "shard channels not subscribed")
            time.sleep(RETRY_INTERVAL)

    def _maintain(self, *, force_refresh: bool = False) -> str:
        """Re-read the slot map when due, move channels whose owner changed and subscribe
        the pending ones. Returns the last problem met ('' when none)."""
        now = time.monotonic()
        if not (force_refresh or self._pending or now >= self._next_refresh):
            return ""
        try:
            self._slots.refresh()
        except redis.RedisError as exc:
            if now - self._last_contact > GIVE_UP_AFTER:
                raise redis.ConnectionError(
                    f"no Redis Cluster node answered for {GIVE_UP_AFTER:.0f} s: {exc}"
                ) from exc
            return str(exc)
        self._last_contact = now
        self._next_refresh = now + REFRESH_INTERVAL
        for channel, reader in list(self._readers.items()):
            shard = self._slots.shard(channel)
            # No shard (a failover under way: the master failed, no replica promoted
            # yet) is no reason to leave a replica that is about to be promoted.
            if shard and reader.owner not in shard:
                self._drop(reader, drain=True)
        problem = ""
        for channel in sorted(self._pending):
            problem = self._subscribe(channel) or problem
        return problem

    def _subscribe(self, channel: str) -> str:
        nodes = self._slots.shard(channel)
        if not nodes:
            return f"the slot of {channel} is served by no node"
        problem = ""
        # A replica first: its subscriptions live on when it is promoted, so a failover
        # of the master costs this channel nothing (SPUBLISH reaches the whole shard).
        for node in (*nodes[1:], nodes[0]):
            reader = _ChannelReader(self._slots, channel, node, self._queue)
            try:
                reader.subscribe(timeout=2.0)
            except (redis.RedisError, OSError) as exc:
                reader.close()
                problem = f"SSUBSCRIBE {channel} on {node[0]}:{node[1]}: {exc}"
                continue
            self._readers[channel] = reader
            self._pending.discard(channel)
            if self._opened and self._on_resubscribe is not None:
                self._on_resubscribe()
            return ""
        return problem

    def _drop(self, reader: _ChannelReader, *, drain: bool = False) -> None:
        # Drained before the channel is subscribed again elsewhere: the old node's
        # messages are all queued before the new node's, so the order holds.
        if self._readers.get(reader.channel) is reader:
            del self._readers[reader.channel]
            self._pending.add(reader.channel)
            self.moves += 1
        reader.close(drain=drain)

    def pump(
        self,
        handle: Callable[[bytes], bool],
        *,
        stop: threading.Event | None = None,
        count: int | None = None,
        timeout: float | None = None,
        idle: Callable[[], bool] | None = None,
    ) -> int:
        """Feed messages to ``handle`` until ``stop`` is set, ``count`` messages were kept
        or ``timeout`` seconds passed; ``idle`` is asked after each quiet poll whether to
        stop. Returns the number kept."""
        return pump_messages(self._receive, handle, stop, count, timeout, idle, self._poll)

    def _poll(self) -> float:
        # While a channel waits for a node, wake up to retry it every RETRY_INTERVAL.
        return RETRY_INTERVAL if self._pending else 0.1

    def _receive(self, wait: float) -> bytes | str | Polled:
        """The next message of any channel; keeps the subscriptions up meanwhile."""
        try:
            item = self._queue.get(timeout=wait)
        except queue.Empty:
            self._maintain()
            return Polled.QUIET
        if isinstance(item, _ChannelReader):  # its channel lost its node or slot
            self._drop(item)
            self._maintain(force_refresh=True)
            return Polled.OTHER
        if time.monotonic() >= self._next_refresh:  # a busy channel never goes quiet
            self._maintain()
        message: bytes | str = item
        return message

    def close(self) -> None:
        """Unsubscribe everything and release the connections."""
        for reader in list(self._readers.values()):
            reader.close()
        self._readers.clear()
        self._pending = set(self.channels)


class AsyncClusterPubSub:
    """``ClusterSubscription`` for asyncio code (the relay, ``e2e``): the face of a
    ``redis.asyncio`` PubSub (``subscribe``, ``get_message``, ``aclose``).

    The subscription runs on a thread of its own and hands messages to the event loop;
    ``get_message`` returns ``{"type": "subscribe", ...}`` once per channel after
    ``subscribe``, then ``{"type": "message", "channel": None, "data": payload}``, a
    ``{"type": "resubscribe", ...}`` each time a channel was subscribed again on another
    node (a failover, a moved slot: what was published meanwhile may be missing), and
    raises ``redis.ConnectionError`` once the cluster has been unreachable for good.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._subscription: ClusterSubscription | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def subscribe(self, *channels: str) -> None:
        """Subscribe every channel (waits for the confirmations on a worker thread)."""
        loop = asyncio.get_running_loop()
        again = {"type": "resubscribe", "channel": None, "data": None}

        def resubscribed() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._queue.put_nowait, again)

        subscription = ClusterSubscription(self.url, channels, on_resubscribe=resubscribed)
        self._subscription = await asyncio.to_thread(subscription.open)
        for n, channel in enumerate(subscription.channels, 1):
            self._queue.put_nowait({"type": "subscribe", "channel": channel, "data": n})
        self._thread = threading.Thread(
            target=self._pump, args=(loop,), name="progress-cluster-pubsub", daemon=True
        )
        self._thread.start()

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._subscription is not None
        put = self._queue.put_nowait

        def hand_over(payload: bytes) -> bool:
            loop.call_soon_threadsafe(put, {"type": "message", "channel": None, "data": payload})
            return True

        try:
            self._subscription.pump(hand_over, stop=self._stop)
        except Exception as exc:  # the cluster is gone: the caller reconnects
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(put, exc)

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds (``None``: wait for one,
        as redis-py's ``PubSub.get_message`` does; the relay reads that way)."""
        if timeout is None:
            item = await self._queue.get()
        else:
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout or 0.001)
            except (asyncio.TimeoutError, TimeoutError):
                return None
        if isinstance(item, Exception):
            raise item
        if ignore_subscribe_messages and item["type"] == "subscribe":
            return None
        message: dict[str, Any] = item
        return message

    async def aclose(self) -> None:
        """Stop the thread and close every connection."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        if self._subscription is not None:
            await asyncio.to_thread(self._subscription.close)
