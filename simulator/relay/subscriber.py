"""The relay's one Redis subscription, kept alive across Redis restarts.

``ChannelSubscriber.run`` subscribes to the channel and hands every message to a
callback, in channel order, on the event loop (and calls ``on_subscribed()`` each time a
subscription is confirmed, or a cluster subscription moved a channel to another node, so
the relay can resync its sockets). When the connection fails (Redis
restarted, network cut, a reply that never comes) it counts the error, marks itself
disconnected, waits (capped exponential backoff) and subscribes again, for as long as the
relay runs. Pub/sub is at-most-once: what was published while no connection existed is
gone, which ``/healthz`` makes visible (``redis_connected``, ``redis_errors``).

How the subscription is made is one callable, ``open_pubsub``: the default
(``open_detected_pubsub``) asks the node whether it is part of a Redis Cluster each time
it connects, and opens either a ``redis.asyncio`` client of the one server or sharded
subscriptions on the cluster (``simulator.cluster_subscription.AsyncClusterPubSub``,
which follows failovers and moved slots by itself). Anything with ``subscribe``,
``get_message`` and ``aclose`` will do. Several channels (the plain one and the shard
channels, ``progress_sdk.sharding``) are subscribed at once.

The set can also change while it runs (user channels, ``relay.user_channels``): ``add``
subscribes one more channel and says when Redis confirmed it, ``remove`` unsubscribes
one; each new session subscribes the fixed channels and every added one in one
``SUBSCRIBE`` (one command: all are subscribed before its first confirmation comes, when
``on_subscribed`` runs). SUBSCRIBE and UNSUBSCRIBE commands are written one at a time, in
the order asked, and each checks, once its turn comes, that the channel is still wanted
(or still not), so a user who leaves and comes back at once ends subscribed. On a Redis
Cluster, ``open_detected_pubsub(..., sharded=False)`` gives a pub/sub that can add them
(``cluster_user_pubsub``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from progress_sdk import defaults as d
from progress_sdk.cluster import is_cluster
from progress_sdk.transport import mask_url

from ..cluster_subscription import AsyncClusterPubSub
from . import resp_pubsub
from .cluster_user_pubsub import ClusterUserPubSub
from .stats import RelayStats

__all__ = ["ChannelSubscriber", "PubSubLike", "open_detected_pubsub", "open_redis_pubsub"]

log = logging.getLogger("progress_sim.relay")

# The subscription reads block until a message comes (a read with a timeout costs a
# timer per message: a quarter to a third of the read's CPU, docs/relay.md). A Redis
# that restarts or dies closes the connection, which ends the read at once; a path that
# goes silent
# (a cut cable, a NAT that forgets the flow) is found by TCP keepalive: first probe after
# 10 s idle, then every 5 s, given up after 3 unanswered, so within ~25 s. A frozen Redis
# (SIGSTOP) keeps its connections: nothing is published meanwhile, and reading resumes
# when it does.
KEEPALIVE_OPTIONS = {
    option: value
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, option)
}


class PubSubLike(Protocol):
    """What the subscriber needs of a pub/sub connection (``redis.asyncio.client.PubSub``);
    ``get_message(timeout=None)`` must wait until a message comes."""

    async def subscribe(self, *channels: str) -> Any: ...

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None: ...

    async def aclose(self) -> None: ...


PubSubFactory = Callable[[], Awaitable[PubSubLike]]


def open_redis_pubsub(url: str) -> PubSubFactory:
    """The default ``open_pubsub``: a fresh connection from ``url``, read a chunk at a
    time (``resp_pubsub``) where it can be, else through ``redis.asyncio``."""
    keepalive = {getattr(socket, name): value for name, value in KEEPALIVE_OPTIONS.items()}

    async def open_pubsub() -> PubSubLike:
        if resp_pubsub.supports(url):
            return resp_pubsub.RespPubSub(
                url, connect_timeout=d.CONNECT_TIMEOUT, keepalive_options=keepalive)
        client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=d.CONNECT_TIMEOUT,
            socket_keepalive=True,
            socket_keepalive_options=keepalive,
        )
        # The pubsub owns the client's connection; closing it closes the client too.
        pubsub: PubSubLike = client.pubsub()
        return pubsub

    return open_pubsub


def open_detected_pubsub(url: str, *, sharded: bool = True) -> PubSubFactory:
    """The default ``open_pubsub``: sharded subscriptions when ``url`` names a Redis
    Cluster node (asked at every connection), else ``open_redis_pubsub``'s. Without
    ``sharded`` (channels added while it runs: user channels) a cluster gets a
    ``ClusterUserPubSub`` (one connection per master, whatever the channels)."""
    single = open_redis_pubsub(url)

    async def open_node(address_url: str) -> Any:
        return await open_redis_pubsub(address_url)()

    async def open_pubsub() -> PubSubLike:
        try:
            cluster = await asyncio.to_thread(is_cluster, url)
        except ResponseError:  # INFO not allowed for this user: a plain server
            cluster = False
        if cluster and not sharded:
            return ClusterUserPubSub(url, open_node)
        if cluster:
            return AsyncClusterPubSub(url)
        return await single()

    return open_pubsub


class ChannelSubscriber:
    """Feed ``handle`` every message of ``channel`` (one name or several);
    reconnect forever until cancelled."""

    def __init__(
        self,
        channel: str | Sequence[str],
        handle: Callable[[bytes], Awaitable[None]],
        stats: RelayStats,
        *,
        open_pubsub: PubSubFactory,
        where: str = "Redis",
        backoff_initial: float = d.RECONNECT_BACKOFF_INITIAL,
        backoff_max: float = d.RECONNECT_BACKOFF_MAX,
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        self.channels = [channel] if isinstance(channel, str) else list(channel)
        self.channel = self.channels[0]
        self._handle = handle
        self._stats = stats
        self._open = open_pubsub
        self._where = mask_url(where)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._was_up = False
        self._on_subscribed = on_subscribed
        self.subscribed = asyncio.Event()
        """Set while a subscription is confirmed (tests and start-up wait on it)."""
        self._added: set[str] = set()  # channels added while running (``add``)
        self._unconfirmed: dict[str, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSubLike | None = None  # the session's, once its SUBSCRIBE went out
        self._writing = asyncio.Lock()  # one (UN)SUBSCRIBE at a time, in the order asked
        self._commands: set[asyncio.Task[None]] = set()

    @property
    def added(self) -> frozenset[str]:
        """The channels added (``add``) and not removed since."""
        return frozenset(self._added)

    def add(self, channel: str) -> Awaitable[None]:
        """Subscribe ``channel`` too; the awaitable is done once Redis confirmed it (so a
        read made after it, such as a socket's catch-up, is made with the channel's live
        stream open), or at once when no subscription is up (the next session subscribes
        it, and the relay resyncs its sockets then). Adding a channel already added waits
        for its confirmation still under way, if any."""
        waiting = self._unconfirmed.get(channel)
        if channel in self._added:
            return self._confirmation(waiting[-1] if waiting else None)
        self._added.add(channel)
        confirmed = asyncio.get_running_loop().create_future()
        self._unconfirmed.setdefault(channel, deque()).append(confirmed)
        # A task of its own: the command goes out even if the caller never awaits.
        self._command(self._subscribe(channel, confirmed))
        return self._confirmation(confirmed)

    def remove(self, channel: str) -> None:
        """Unsubscribe ``channel`` (added with ``add``), unless it is added again before
        the command's turn comes."""
        if channel in self._added:
            self._added.discard(channel)
            self._command(self._unsubscribe(channel))

    @staticmethod
    async def _confirmation(confirmed: asyncio.Future[None] | None) -> None:
        if confirmed is not None:
            await asyncio.shield(confirmed)  # other sockets may wait for it too

    def _command(self, command: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(command)
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _subscribe(self, channel: str, confirmed: asyncio.Future[None]) -> None:
        async with self._writing:
            pubsub = self._pubsub
            if pubsub is not None and channel in self._added:
                with contextlib.suppress(RedisError, OSError):  # the session's read sees it
                    await pubsub.subscribe(channel)
                    return  # confirmed when Redis says so (``_control``)
        self._settle(channel, confirmed)

    async def _unsubscribe(self, channel: str) -> None:
        async with self._writing:
            # redis-py's has it; the cluster's, with no channel ever added, has not.
            unsubscribe = getattr(self._pubsub, "unsubscribe", None)
            if unsubscribe is not None and channel not in self._added:
                with contextlib.suppress(RedisError, OSError):
                    await unsubscribe(channel)

    def _settle(self, channel: str, confirmed: asyncio.Future[None] | None = None) -> None:
        """Mark ``confirmed`` (else the oldest waiting confirmation of ``channel``) done."""
        waiting = self._unconfirmed.get(channel)
        if not waiting:
            return
        if confirmed is None:
            confirmed = waiting.popleft()
        elif confirmed in waiting:
            waiting.remove(confirmed)
        if not waiting:
            del self._unconfirmed[channel]
        if not confirmed.done():
            confirmed.set_result(None)

    def _settle_all(self) -> None:
        """The session ended: nobody waits for a confirmation it will not give."""
        for channel in list(self._unconfirmed):
            while channel in self._unconfirmed:
                self._settle(channel)

    async def run(self) -> None:
        """Subscribe and pump messages until cancelled."""
        delay = self._backoff_initial
        while True:
            connects = self._stats.redis_connects
            try:
                await self._session()
            except (RedisError, OSError) as exc:
                if self._stats.redis_connects != connects:
                    delay = self._backoff_initial  # it was up: retry at once, then back off
                self._lost(exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _session(self) -> None:
        pubsub = await self._open()
        try:
            async with self._writing:  # with every added channel, in one SUBSCRIBE
                await pubsub.subscribe(*self.channels, *sorted(self._added))
                self._pubsub = pubsub
            await self._confirmed(pubsub)
            stats, handle = self._stats, self._handle
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None or message.get("type") != "message":
                    if message is not None:
                        self._control(message)
                    continue
                data = message["data"]
                stats.received += 1
                await handle(data if isinstance(data, bytes) else str(data).encode())
        finally:
            self._pubsub = None
            self._settle_all()
            self.subscribed.clear()
            self._stats.redis_connected = False
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _confirmed(self, pubsub: PubSubLike) -> None:
        # Messages published before Redis confirmed the subscription are not ours to
        # see; only after the confirmation is the relay "connected".
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                break
        self._stats.redis_connected = True
        self._stats.redis_connects += 1
        self._was_up = True
        self.subscribed.set()
        if self._on_subscribed is not None:
            # Before the first message of this subscription is handled: what was
            # published while there was none is known to be missing from here on.
            self._on_subscribed()
        log.info("subscribed to %s on %s", ", ".join(map(repr, self.channels)), self._where)

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "resubscribe":
            self._resubscribed()
        elif kind == "subscribe" and self._unconfirmed:
            name = message.get("channel")
            self._settle(name.decode() if isinstance(name, bytes) else str(name))

    def _resubscribed(self) -> None:
        # A cluster subscription moved a channel to another node (a failover, a moved
        # slot) within this session: as after a reconnect, what was published in
        # between may not have reached the relay.
        self._stats.resubscribes += 1
        log.info("a channel was subscribed again on another node")
        if self._on_subscribed is not None:
            self._on_subscribed()

    def _lost(self, exc: BaseException, delay: float) -> None:
        self._stats.redis_errors += 1
        # One warning per outage; the retries after it only at debug level.
        level = logging.WARNING if self._stats.redis_errors == 1 or self._was_up else logging.DEBUG
        self._was_up = False
        log.log(
            level,
            "Redis connection lost or refused (%s: %s); retrying in %.2f s",
            type(exc).__name__, mask_url(str(exc)), delay,
        )
