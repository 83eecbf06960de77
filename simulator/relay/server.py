"""The relay: one Redis subscription in, a Socket.IO server out, a private room per user.

``Relay`` wires ``ChannelSubscriber`` (Redis), ``EventRouter`` (decode, check, shape)
and a ``socketio.AsyncServer``. Each socket authenticates with a JWT in the handshake's
``auth.token`` and joins its user's room; there is no event a client can send to join
another. Each event goes to its user's room on this node only.

Horizontal scale follows from that: every node subscribes to the channel itself and
emits only to the sockets connected to it (python-socketio's in-memory manager, on
purpose not its Redis manager, which would publish each emit to every node and, with
every node also subscribed to the channel, deliver each event once per node). So a
user's sockets spread over N nodes each get every event exactly once, with no sticky
routing between nodes beyond what Socket.IO's own long-polling needs.

Extension points (for catch-up snapshots, pages and housekeeping):

- ``add_event_hook(fn)``: ``fn(routed)`` for every valid event, before it is emitted,
  on the event loop (keep it quick; it must not raise);
- ``add_join_hook(fn)``: ``fn(sid, user_id)`` is called when a socket is registered
  (connected), and what it returns awaited before the socket joins its room; the room is
  joined right after the last one is done, with no await in between, so a hook
  that also sees every event (``add_event_hook``) can hand the socket what arrived while
  it ran and nothing is lost or doubled (catch-up snapshots, ``catchup``);
- ``add_skip_hook(fn)``: ``fn(routed)`` → sids of the event's room that must not get it
  (a socket whose catch-up snapshot already holds it);
- ``add_admit_hook(fn)``: ``await fn(sid, identity)`` right after the token verified,
  before anything else; raising ``TokenRefused`` refuses the socket (revocation);
- ``add_connect_hook(fn)``: ``await fn(sid, user_id)`` after a socket joined its room;
- ``add_release_hook(fn)``: ``fn(sid, user_id)`` once for every admitted socket when the
  relay is done with it (it disconnected, was ended, or left while connecting);
- ``add_subscribe_hook(fn)``: ``fn()`` each time the Redis subscription is confirmed,
  before its first message is handled (resync after an outage);
- ``add_route(path, handler)``: ``await handler(scope)`` → ``HttpResponse`` for a GET;
- ``add_background_task(fn)``: ``await fn()`` runs for the relay's life;
- ``emit_paced(sid, name, payload)``: emit to one socket once its backlog is below half
  its limits (catch-up's snapshots: a burst paced by the socket, never over its limit);
- ``add_health_section(name, fn)``: ``fn()`` → a dict of counters, shown under ``name``
  in ``/healthz`` (catch-up's) and in ``/metrics`` (``metrics``);
- ``open_pubsub``: how the Redis subscription is made (see ``subscriber``).

``is_live(sid)`` says whether a socket is still there for the relay (its client has not
left and the relay has not ended it); ``cut_off(sid, reason, message)`` takes a socket
out of its room at once, tells it why (``session_ended``) and disconnects it.

A socket's join (the join hooks, its room, the connect hooks) runs in a task of its own
once ``_on_connect`` registered it, not inside the connect handler: see ``_on_connect``
for why (a client that left during a long connect handler stayed registered, a phantom
counted in every delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from progress_sdk import defaults as d
from progress_sdk.sharding import subscribed_channels

from .auth import Identity, TokenRefused, TokenVerifier
from .backlog import BacklogLimits, BacklogStats
from .engine_internals import (
    DirectWrites,
    EncodedEvent,
    JsonPacket,
    backlog_of,
    engine_socket_open,
    install_backlogs,
    leave_room_now,
)
from .hooks import (
    AdmitHook,
    ConnectHook,
    EventHook,
    JoinHook,
    RelayHooks,
    ReleaseHook,
    SkipHook,
    guarded,
)
from .http_routes import HealthSection, HttpResponse, HttpRoutes, RouteHandler
from .registry import SocketRegistry
from .routing import EventRouter, Routed, user_room
from .stats import RelayStats
from .subscriber import ChannelSubscriber, PubSubFactory, open_detected_pubsub
from .user_channels import UserChannels, idle_channel

__all__ = ["HttpResponse", "Relay", "RelayConfig"]

log = logging.getLogger("progress_sim.relay")

@dataclass(frozen=True)
class RelayConfig:
    """What a relay node needs; secrets never appear in its repr."""

    jwt_secret: str = field(repr=False)
    redis_url: str = field(default=d.DEFAULT_REDIS_URL, repr=False)
    channel: str = d.DEFAULT_CHANNEL
    shards: int = d.DEFAULT_SHARDS
    """Also subscribe to ``channel:0`` .. ``channel:<shards-1>`` (progress_sdk.sharding)."""
    user_claim: str = "userId"
    cors_origins: str | list[str] = "*"
    """Origins allowed to connect from a browser (``*``: any; the token is the guard)."""
    backlog: BacklogLimits = field(default_factory=BacklogLimits)
    """What may wait for one socket before it is disconnected (``backlog``)."""
    batch_writes: bool = field(
        default_factory=lambda: os.environ.get("PROGRESS_RELAY_BATCH_WRITES", "1") != "0")
    """Write a socket's frames of one loop turn in one write (off only to measure it)."""
    user_channels: bool = False
    """Read the channels of this node's users instead of the contract (and shard)
    channels (``user_channels``; the publishers must send to them)."""


def _socket_server(cors_origins: str | list[str]) -> socketio.AsyncServer:
    # Socket.IO's and Engine.IO's own loggers stay off: they would print handshake
    # payloads, tokens included.
    return socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=cors_origins,
        logger=False,
        engineio_logger=False,
        serializer=JsonPacket,
    )


class Relay:
    """One relay node. ``asgi_app()`` is what an ASGI server (uvicorn) runs."""

    def __init__(self, config: RelayConfig, *, open_pubsub: PubSubFactory | None = None) -> None:
        self.config = config
        self.stats = RelayStats()
        self.verifier = TokenVerifier(config.jwt_secret, claim=config.user_claim)
        self.router = EventRouter(self.stats)
        self.sio = _socket_server(config.cors_origins)
        # Every packet for a socket waits in its bounded backlog (``backlog``).
        self.backlog = BacklogStats()
        install_backlogs(self.sio, config.backlog, self.backlog)
        # Events written straight to idle WebSockets, encoded once per room.
        self.writes = DirectWrites(self.sio, batch=config.batch_writes)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self._hooks = RelayHooks()
        users = config.user_channels  # then the node's users' channels (``user_channels``)
        self.subscriber = ChannelSubscriber(
            [idle_channel(config.channel)] if users
            else subscribed_channels(config.channel, config.shards), self.deliver, self.stats,
            open_pubsub=open_pubsub or open_detected_pubsub(config.redis_url, sharded=not users),
            where=config.redis_url, on_subscribed=self._hooks.subscribed,
        )
        self._user_channels = UserChannels(self.subscriber, config.channel) if users else None
        self._registry = SocketRegistry(self.stats)
        self._ended: dict[str, tuple[str, str]] = {}  # sid -> (reason, message)
        self._cut: set[str] = set()  # cut off, until python-socketio disconnected them
        self._background: list[Callable[[], Awaitable[None]]] = [self.subscriber.run]
        self._tasks: list[asyncio.Task[None]] = []
        self._joining: set[asyncio.Task[None]] = set()
        self._http = HttpRoutes(self.stats)
        self._http.sections["backlog"] = self.backlog.to_dict
        self._http.sections["writes"] = self.writes.to_dict

    # -- extension points -------------------------------------------------------------

    def add_admit_hook(self, hook: AdmitHook) -> None:
        """Await ``hook(sid, identity)`` before a socket is let in (it may refuse it)."""
        self._hooks.admit.append(hook)

    def add_release_hook(self, hook: ReleaseHook) -> None:
        """Call ``hook(sid, user_id)`` when the relay is done with an admitted socket."""
        self._hooks.release.append(hook)

    def add_subscribe_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` each time the Redis subscription is confirmed."""
        self._hooks.subscribe.append(hook)

    def add_connect_hook(self, hook: ConnectHook) -> None:
        """Await ``hook(sid, user_id)`` after each socket joined its user's room."""
        self._hooks.connect.append(hook)

    def add_join_hook(self, hook: JoinHook) -> None:
        """Call ``hook(sid, user_id)`` when a socket is registered and await what it
        returns before the socket joins its user's room."""
        self._hooks.join.append(hook)

    def add_skip_hook(self, hook: SkipHook) -> None:
        """Leave the sids ``hook(routed)`` returns out of that event's room emit."""
        self._hooks.skip.append(hook)

    def add_event_hook(self, hook: EventHook) -> None:
        """Call ``hook(routed)`` for every valid event, before it is emitted."""
        self._hooks.event.append(hook)

    def add_route(self, path: str, handler: RouteHandler) -> None:
        """Answer ``GET path`` with ``await handler(scope)``."""
        self._http.routes[path] = handler

    def add_health_section(self, name: str, section: HealthSection) -> None:
        """Show ``section()`` under ``name`` in every ``/healthz`` answer."""
        self._http.sections[name] = section

    def add_background_task(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``await task()`` from start to stop (cancelled at stop)."""
        self._background.append(task)

    def connected_users(self) -> frozenset[str]:
        """The users with at least one socket on this node."""
        return self._registry.users()

    def user_sockets(self, user_id: str) -> frozenset[str]:
        """The sids of ``user_id``'s sockets on this node."""
        return frozenset(self._registry.sockets_of(user_id) or ())

    def has_sockets(self, user_id: str) -> bool:
        """True when ``user_id`` has a socket on this node (per event: no set built)."""
        return self._registry.sockets_of(user_id) is not None

    def user_of(self, sid: str) -> str | None:
        """The user of a socket that is connected or connecting, else None."""
        return self._registry.user_of(sid)

    def is_live(self, sid: str) -> bool:
        """True while ``sid`` is connected or connecting, its client has not left, and
        the relay has not ended it: whether sending it anything still makes sense."""
        if sid in self._ended or self._registry.user_of(sid) is None:
            return False
        return engine_socket_open(self.sio, sid)

    def cut_off(self, sid: str, reason: str, message: str) -> bool:
        """Stop sending ``sid`` anything, now, without awaiting (out of its room and
        unregistered), then tell it why (``session_ended`` with ``reason`` and
        ``message``) and disconnect it in a task. A socket still being admitted is
        refused with ``message`` instead. False when ``sid`` is not the relay's."""
        if sid in self._ended or self.user_of(sid) is None:
            return False
        self._ended[sid] = (reason, message)
        user_id = self._registry.registered(sid)
        if user_id is None:
            return True  # still in its admit hooks: _on_connect refuses it
        leave_room_now(self.sio, sid, user_room(user_id))
        self._cut.add(sid)
        self._unregister(sid)
        self.stats.ended[reason] += 1
        task = asyncio.create_task(self._say_goodbye(sid, reason, message))
        self._joining.add(task)
        task.add_done_callback(self._joining.discard)
        return True

    async def _say_goodbye(self, sid: str, reason: str, message: str) -> None:
        await self.send(sid, "session_ended", {"reason": reason, "message": message})
        await self.sio.disconnect(sid)

    # -- life -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the Redis subscription and the background tasks."""
        for task in self._background:
            self._tasks.append(asyncio.create_task(guarded(task)))

    async def stop(self) -> None:
        """Cancel the background tasks and the joins under way."""
        for task in [*self._tasks, *self._joining]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def asgi_app(self) -> socketio.ASGIApp:
        """The ASGI application: Socket.IO at ``/socket.io/``, the routes elsewhere."""
        return socketio.ASGIApp(
            self.sio, other_asgi_app=self._http, on_startup=self.start, on_shutdown=self.stop
        )

    # -- events -----------------------------------------------------------------------

    async def deliver(self, raw: bytes) -> None:
        """Route one channel message to its user's sockets on this node."""
        routed = self.router.route(raw)
        if routed is None:
            return
        stats = self.stats
        event = routed.event
        kind = event["event"]
        stats.events_in[kind] += 1
        for hook in self._hooks.event:
            hook(routed)
        sockets = self._registry.sockets_of(routed.user_id)
        if not sockets:
            stats.no_local_socket += 1
            return
        stats.forwarded += 1
        stats.deliveries += len(sockets)
        stats.events_out[kind] += len(sockets)
        await self.forward(routed)
        stats.lag.observe_timestamp(event.get("timestamp"), time.time())

    async def forward(self, routed: Routed) -> None:
        """Emit one routed event to its room (a test double overrides this)."""
        targets = self.writes.room(routed.room, {s for h in self._hooks.skip for s in h(routed)})
        for name, payload in routed.emits:
            event = EncodedEvent(name, payload)  # once for the room, as python-socketio does
            for eio_sid in targets:
                await self.writes.send(eio_sid, event)

    async def send(self, sid: str, name: str, payload: dict[str, Any]) -> bool:
        """Emit to socket ``sid`` alone, in order with everything sent to it before (no
        task in between, unlike ``sio.emit``); ``False`` when it is gone."""
        eio_sid = self.writes.engine_sid(sid)
        if eio_sid is not None:
            await self.writes.send(eio_sid, EncodedEvent(name, payload))
        return eio_sid is not None

    async def emit_paced(self, sid: str, name: str, payload: dict[str, Any]) -> bool:
        """Emit to socket ``sid`` once its backlog has room; ``False`` (nothing sent) when
        the socket is gone or went over its limit (it resyncs when it reconnects)."""
        queue = backlog_of(self.sio, sid)
        if queue is None or not await queue.room() or sid in self._cut:
            return False
        return await self.send(sid, name, payload)

    # -- sockets ----------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        user_id = (await self._admit(sid, auth)).user_id
        if sid in self._ended or not engine_socket_open(self.sio, sid):
            # The client left (or the relay ended it) while the admit hooks ran.
            ended = self._ended.pop(sid, None)
            self._release(sid, user_id)
            if ended is not None:
                self.stats.ended[ended[0]] += 1
                raise socketio.exceptions.ConnectionRefusedError(ended[1])
            self.stats.left_while_connecting += 1
            return False
        self._registry.add(sid, user_id)
        self.stats.connects += 1
        log.debug("socket %s connected as user %r", sid, user_id)
        # The join (catch-up) runs after this handler returned, not in it: python-socketio
        # reads a WebSocket's next packet only once the handler returned (its Engine.IO
        # server runs handlers inline), so a client that closed meanwhile was noticed only
        # after a whole catch-up, sent to nobody; and the socket is connected for
        # python-socketio only then, so a close handled meanwhile (polling) never reached
        # _on_disconnect. The hooks are called here and awaited in the task: what one does
        # before its first await (catch-up holds the user's events for the socket) is done
        # before the next event is delivered, which may come before the task first runs.
        joins = [hook(sid, user_id) for hook in self._hooks.join]
        if self._user_channels is not None:  # catch-up reads once the channel is live
            joins.insert(0, self._user_channels.joined(user_id))
        if not joins:  # straight into the room, as nothing has to come first
            await self._join(sid, user_id, joins)
            return True
        task = asyncio.create_task(self._join(sid, user_id, joins))
        self._joining.add(task)
        task.add_done_callback(self._joining.discard)
        return True

    async def _admit(self, sid: str, auth: Any) -> Identity:
        """The socket's identity once the token and every admit hook accept it; raises
        python-socketio's refusal (counted by reason) otherwise."""
        try:
            identity = self.verifier.identify(auth)
            self._registry.connecting[sid] = identity.user_id
            try:
                for admit in self._hooks.admit:
                    await admit(sid, identity)
            finally:
                del self._registry.connecting[sid]
        except TokenRefused as refused:
            self.stats.refused[refused.reason] += 1
            log.info("refused a socket: %s", refused)
            raise socketio.exceptions.ConnectionRefusedError(str(refused)) from None
        return identity

    async def _join(self, sid: str, user_id: str, joins: list[Awaitable[None]]) -> None:
        try:
            while joins:
                try:
                    await joins.pop(0)
                except Exception:
                    # The socket still joins its room and gets live events.
                    log.exception("join hook failed for socket %s", sid)
        finally:
            for join in joins:  # cancelled (the relay stops): never started, closed
                if asyncio.iscoroutine(join):
                    join.close()
        if not self.is_live(sid):
            return
        # Does not suspend (python-socketio's in-memory manager): no event can slip
        # between the last join hook and the room.
        await self.sio.enter_room(sid, user_room(user_id))
        # The socket is in the live stream from here on: the acknowledged connect no
        # longer says so, since the join runs after it.
        await self.send(sid, "caught_up", {})
        await self._hooks.connected(sid, user_id)

    async def _on_disconnect(self, sid: str, *reason: Any) -> None:
        queue = backlog_of(self.sio, sid)
        if queue is not None:  # a paced emit still waiting for this socket gives up
            queue.end()
        self._cut.discard(sid)
        user_id = self._registry.registered(sid)
        if user_id is not None:
            log.debug("socket %s of user %r disconnected: %s", sid, user_id,
                      reason[0] if reason else "unknown")
        self._unregister(sid)

    def _unregister(self, sid: str) -> None:
        user_id = self._registry.remove(sid)
        if user_id is None:
            return
        if self._user_channels is not None and self._registry.sockets_of(user_id) is None:
            self._user_channels.left(user_id)
        self.stats.disconnects += 1
        self._release(sid, user_id)

    def _release(self, sid: str, user_id: str) -> None:
        self._ended.pop(sid, None)
        self._hooks.released(sid, user_id)

    # -- HTTP -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body: the node's counters and every health section's."""
        return self._http.health()
