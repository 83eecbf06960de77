"""Everything the relay relies on inside python-socketio and python-engineio, in one place.

Tested with python-socketio 5.18.1 and python-engineio 4.15.1 (pinned in the ``relay``
extra); ``tests/test_relay_engine_internals.py`` fails when an upgrade changes any of it:

1. **The packet class.** ``JsonPacket`` is python-socketio's ``Packet`` with
   ``uses_binary_events = False`` and orjson as its ``json``: everything the relay emits
   comes from JSON decoding, so it never holds binary attachments, and the default
   packet's recursive scan for them plus the standard ``json`` cost 14 µs per packet
   against 1.4 µs (docs/relay.md, Load). It also tags a ``progress_update`` frame with its
   coalescing key (``KeyedFrame``): python-socketio encodes a room emit once and
   python-engineio wraps the encoded string in its ``MESSAGE`` packet as it is, so the
   key reaches each socket's queue with the frame (0.7 µs per emit, none per socket).
2. **Each Engine.IO socket's queue.** python-engineio gives every socket an unbounded
   ``asyncio.Queue`` from ``server.create_queue()``; everything sent to the socket (every
   emit, catch-up's snapshots, pings, the close packet) is ``put`` there and a writer
   (WebSocket) or the next long-poll GET takes it out (``get``/``get_nowait``, each
   followed by ``task_done``; ``None`` ends the writer). When the browser stops reading,
   uvicorn's send waits for the TCP buffer to drain, the writer waits with it, and the
   queue grows without bound. ``install_backlogs`` makes ``create_queue`` return a
   ``BacklogQueue``: the same queue over a ``backlog.Backlog`` (the stdlib's documented
   ``_init``/``_put``/``_get`` hooks, as ``LifoQueue`` uses them), so superseded progress
   is replaced and a socket past its limit is closed. The writer's ``poll`` takes
   everything queued as one batch (``get``, then ``get_nowait`` until ``QueueEmpty``) and
   holds it while the TCP buffer is full, out of the backlog's reach: ``get_nowait``
   ends a batch (raises ``QueueEmpty``) at ``MAX_BATCH_PACKETS``/``MAX_BATCH_BYTES``, so
   what waits stays counted, replaceable and freed on overflow. A batch ends at
   ``QueueEmpty`` or ``None`` (``poll`` stops at either), and the next one counts afresh:
   no ``get`` override on the way of every packet.
3. **Finding and closing a socket.** ``server.eio.sockets`` (Engine.IO sid → socket),
   ``socket.close(wait=False, abort=False, reason=...)`` (python-socketio passes
   ``reason`` to the ``disconnect`` handlers), ``socket.closing``/``socket.closed``
   (``engine_socket_open``), ``manager.eio_sid_from_sid`` and
   ``manager.basic_leave_room`` (``leave_room_now``).
4. **Writing straight to an idle WebSocket** (``DirectWrites``). python-socketio's room
   emit makes an asyncio task per socket (``AsyncManager.emit``), python-engineio's writer
   wakes per batch through ``asyncio.wait_for`` (a task and a timer in Python 3.11) and
   sends each packet as its own ASGI message, which uvicorn frames and writes: 190 µs of
   relay CPU per event delivered to two sockets at 5k events/s, against 66 µs for the
   Node.js relay (docs/benchmarks.md). So an event is encoded once per room, by the same
   packet classes, into one WebSocket text frame, and that frame is written to each
   socket's transport at once when nothing of the socket's is waiting: it is on
   WebSocket, upgraded and not upgrading, not closing, its writer is parked in ``get`` on
   an empty queue (everything queued before was written, so order holds), and uvicorn's
   protocol (``WebSocketsSansIOProtocol``: ``transport``, ``writable``, ``close_sent``,
   ``disconnected``, ``conn.state``, ``conn.extensions``) is open, writable and has no
   extension (per-message deflate is off, as in the Node.js relay). Otherwise the packet
   goes through the socket's queue as before (``eio.send_packet``). The WebSocket class is
   python-engineio's ASGI ``WebSocket`` (``server._async["websocket"]``, built with the
   socket's bound ``_websocket_handler``), registering its uvicorn protocol while it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

import engineio
import engineio.async_socket
import engineio.packet
import socketio
import socketio.packet
from websockets.protocol import State

from .backlog import Backlog, BacklogLimits, BacklogStats, coalesce_key

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_PACKETS",
    "BacklogQueue",
    "DirectWrites",
    "EncodedEvent",
    "JsonPacket",
    "KeyedFrame",
    "backlog_of",
    "engine_socket_open",
    "install_backlogs",
    "leave_room_now",
    "text_frame",
]

log = logging.getLogger("progress_sim.relay")

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

DISCONNECT_REASON = "backlog over its limit"
"""What the ``disconnect`` handlers get as the reason (with the limit appended)."""


# -- 1. the packet class --------------------------------------------------------------


class _OrjsonCodec:
    """The two functions python-socketio calls on its ``json`` module."""

    @staticmethod
    def dumps(value: Any, **options: Any) -> str:
        # orjson's output is already compact, as socketio asks with separators=(",", ":").
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | bytes, **options: Any) -> Any:
        return orjson.loads(text)


class KeyedFrame(str):
    """An encoded Socket.IO packet that a newer one with the same ``coalesce_key``
    supersedes while both wait for a socket."""

    coalesce_key: Hashable


class JsonPacket(socketio.packet.Packet):  # type: ignore[misc]
    """A Socket.IO packet whose payload is plain JSON (no binary attachments)."""

    uses_binary_events = False
    json = _OrjsonCodec if orjson is not None else json

    def encode(self) -> Any:
        """The packet as python-socketio sends it; a replaceable progress update as a
        ``KeyedFrame``."""
        encoded = super().encode()
        data = self.data
        # Emits are EVENT packets with [name, payload]; only progress_update has a key.
        if data.__class__ is list and len(data) == 2 and data[0] == "progress_update":
            key = coalesce_key("progress_update", data[1])
            if key is not None:
                frame = KeyedFrame(encoded)
                frame.coalesce_key = key
                return frame
        return encoded


# -- 2. the socket queue --------------------------------------------------------------


Overflow = Callable[["BacklogQueue", str], None]

# What one writer's batch (or one long-poll GET's answer) may take out of the backlog. A
# browser that reads a little and stalls again would otherwise have its whole backlog
# taken at once and held outside it, doubling what the limit allows; a healthy socket's
# batches are a few packets (one loop turn's emits).
MAX_BATCH_PACKETS = 1000
MAX_BATCH_BYTES = 256 * 1024


class BacklogQueue(asyncio.Queue[Any]):
    """An Engine.IO socket's queue over a ``Backlog``: bounded, progress coalesced.

    Past a limit the waiting packets are thrown away (counted) and ``on_overflow`` is
    called once; from then on only protocol packets (the close packet, ``None``) are
    taken, so the socket can close while nothing more piles up for it.
    """

    _queue: OrderedDict[int, Any]  # asyncio.Queue's own checks read it (len, truth)
    _getters: deque[asyncio.Future[None]]  # asyncio.Queue's: the readers parked in get
    _backlog: Backlog[Any]

    def __init__(self, limits: BacklogLimits, stats: BacklogStats, on_overflow: Overflow) -> None:
        self._limits = limits
        self._stats = stats
        self._on_overflow = on_overflow
        self._room_waiters: list[asyncio.Future[None]] = []
        self.over_limit: str | None = None
        """``"bytes"`` or ``"events"`` once the socket went over that limit."""
        self.ended = False
        """True once the writer was told to stop (the connection is over)."""
        self._batch_packets = self._batch_bytes = 0
        super().__init__()

    # The stdlib's hooks for the storage (asyncio.Queue calls them, LifoQueue overrides
    # them). Every delivery passes here twice, so the class overrides no more than it must:
    # 2.0 µs per packet put and taken against 1.1 µs for a plain asyncio.Queue, ~2 µs
    # per event on the whole emit path to two sockets (relay_bench.py --micro).
    def _init(self, maxsize: int) -> None:
        self._backlog = Backlog(self._limits, self._stats)
        self._queue = self._backlog.items

    def _put(self, item: Any) -> None:
        data = getattr(item, "data", None)
        backlog = self._backlog
        if data.__class__ is KeyedFrame:
            if backlog.push(item, len(data), data.coalesce_key) is not None:
                self.task_done()  # the replaced packet will never be taken
        else:
            backlog.push(item, len(data) if isinstance(data, (str, bytes)) else 0)
            if item is None:  # the writer's end: no batch of it is under way any more
                self._batch_packets = self._batch_bytes = 0
                self.end()
        if backlog.over and self.over_limit is None:
            self._overflow(backlog.over_limit() or "bytes")

    def _get(self) -> Any:
        backlog = self._backlog
        item = backlog.pop()
        self._batch_packets += 1
        self._batch_bytes += backlog.last_size
        if self._room_waiters and backlog.has_room():
            self._wake_room_waiters()
        return item

    def get_nowait(self) -> Any:
        """The next packet of this batch; ``QueueEmpty`` when none is left or the batch is
        full. ``poll`` takes packets until ``QueueEmpty`` (or ``None``), so each batch
        starts afresh after one."""
        if (not self._queue or self._batch_packets >= MAX_BATCH_PACKETS
                or self._batch_bytes >= MAX_BATCH_BYTES):
            self._batch_packets = self._batch_bytes = 0
            raise asyncio.QueueEmpty
        # asyncio.Queue.get_nowait is this plus waking a putter, and an unbounded queue
        # never has one: one call less per packet.
        return self._get()

    def writer_waiting(self) -> bool:
        """True when nothing waits here and the writer is parked in ``get``: everything
        put before was taken and written, so a packet written past the queue now keeps
        its order."""
        return not self._queue and bool(self._getters) and self.over_limit is None

    def _overflow(self, limit: str) -> None:
        # Inside ``put_nowait``: the packet being put is counted once ``_put`` returns, so
        # it stays (it goes after what is in the TCP buffer, before the close packet).
        self.over_limit = limit
        self._stats.disconnected[limit] += 1
        dropped = self._backlog.clear(keep=1)
        self._stats.discarded += dropped
        for _ in range(dropped):
            self.task_done()
        # From now on messages are thrown away as they come (protocol packets still pass).
        self.put_nowait = self._discard_messages  # type: ignore[method-assign]
        self._wake_room_waiters()
        self._on_overflow(self, limit)

    def _discard_messages(self, item: Any) -> None:
        if _is_message(item):
            self._stats.discarded += 1
        else:
            asyncio.Queue.put_nowait(self, item)

    async def room(self) -> bool:
        """Wait until the backlog is below half its limits; ``False`` if the socket went
        over a limit or its connection ended (nothing sent to it arrives then)."""
        while not self._backlog.has_room() and self.over_limit is None and not self.ended:
            waiter = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            await waiter
        return self.over_limit is None and not self.ended

    def end(self) -> None:
        """The connection is over: a paced sender waiting in ``room`` gives up."""
        self.ended = True
        self._wake_room_waiters()

    def _wake_room_waiters(self) -> None:
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _is_message(item: Any) -> bool:
    kind: object = getattr(item, "packet_type", None)
    return bool(kind == engineio.packet.MESSAGE)


# -- 3. installing, finding and closing ------------------------------------------------


def install_backlogs(sio: socketio.AsyncServer, limits: BacklogLimits, stats: BacklogStats) -> None:
    """Give every Engine.IO socket of ``sio`` from now on a ``BacklogQueue``."""
    eio = sio.eio
    closing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def on_overflow(queue: BacklogQueue, limit: str) -> None:
        socket = next((s for s in list(eio.sockets.values()) if s.queue is queue), None)
        if socket is None:  # already gone: nothing more will be queued for it
            return
        value = limits.max_bytes if limit == "bytes" else limits.max_events
        reason = f"{DISCONNECT_REASON} ({limit}: {value})"
        log.warning("engine.io socket %s: %s; disconnected, it resyncs on reconnect",
                    socket.sid, reason)
        task = asyncio.get_running_loop().create_task(_close(socket, queue, reason))
        closing.add(task)
        task.add_done_callback(closing.discard)

    def create_queue(*args: Any, **kwargs: Any) -> BacklogQueue:
        return BacklogQueue(limits, stats, on_overflow)

    eio.create_queue = create_queue


async def _close(socket: engineio.async_socket.AsyncSocket, queue: BacklogQueue,
                 reason: str) -> None:
    # Not ``wait``: the browser is not reading, so the queue would never drain. The close
    # packet goes out after what is already in the TCP buffer, then ``None`` ends the
    # WebSocket writer, which closes the WebSocket (for a browser that is only slow) or
    # waits on the full TCP buffer until the browser's side goes away (holding at most
    # uvicorn's 64 KiB write buffer and the packets it had already taken).
    await socket.close(wait=False, abort=False, reason=reason)
    queue.put_nowait(None)


def backlog_of(sio: socketio.AsyncServer, sid: str) -> BacklogQueue | None:
    """The backlog queue of Socket.IO socket ``sid``, or ``None`` when it is gone."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    socket = sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
    queue: object = getattr(socket, "queue", None)
    return queue if isinstance(queue, BacklogQueue) else None


def engine_socket_open(sio: socketio.AsyncServer, sid: str) -> bool:
    """True while the Engine.IO socket under Socket.IO socket ``sid`` exists and is
    neither closing nor closed: whether its client is still there, even while a
    Socket.IO handler of it runs (python-socketio counts it connected only afterwards)."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    socket = sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
    return socket is not None and not (socket.closed or socket.closing)


def leave_room_now(sio: socketio.AsyncServer, sid: str, room: str) -> None:
    """Take ``sid`` out of ``room`` without awaiting: from a timer callback, before any
    other task can emit to the room (``AsyncManager.leave_room`` awaits nothing but is a
    coroutine; its synchronous body is the base manager's ``basic_leave_room``)."""
    sio.manager.basic_leave_room(sid, "/", room)


# -- 4. writing straight to an idle WebSocket ------------------------------------------


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, final WebSocket text frame (RFC 6455 section 5.2):
    what a server sends when no extension was negotiated."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class EncodedEvent:
    """A socket event encoded once for every socket it goes to: the Engine.IO packet
    for a socket's queue, and the same packet as a WebSocket frame."""

    __slots__ = ("_plain", "frame", "packet")

    def __init__(self, name: str, payload: Any) -> None:
        encoded = JsonPacket(socketio.packet.EVENT, namespace="/", data=[name, payload]).encode()
        self.packet = engineio.packet.Packet(engineio.packet.MESSAGE, data=encoded)
        """The packet; a progress update's is replaceable (``KeyedFrame``)."""
        self.frame = text_frame(self.packet.encode().encode())
        self._plain: engineio.packet.Packet | None = None

    def plain(self) -> engineio.packet.Packet:
        """The packet, never replaced by a newer one while it waits."""
        if self._plain is None:
            data = self.packet.data
            self._plain = (self.packet if data.__class__ is not KeyedFrame else
                           engineio.packet.Packet(engineio.packet.MESSAGE, data=str(data)))
        return self._plain


class DirectWrites:
    """The open WebSockets of a server's Engine.IO sockets, and ``write``, which writes a
    frame straight to one when nothing of that socket's is waiting (module doc, 4)."""

    def __init__(self, sio: socketio.AsyncServer, *, batch: bool = True) -> None:
        self._eio = sio.eio
        self._manager = sio.manager
        self._open: dict[str, tuple[Any, Any]] = {}  # eio sid -> (socket, uvicorn protocol)
        self._batch = batch
        self._turn: dict[str, list[bytes]] = {}  # eio sid -> frames of this loop turn
        self.written = 0
        """Frames written straight to a WebSocket."""
        self.queued = 0
        """Packets that went through a socket's queue (``send`` found it busy)."""
        self.writes = 0
        """Transport writes the ``written`` frames took (one per socket per loop turn)."""
        base = sio.eio._async["websocket"]
        # A copy: the drivers' table is python-engineio's module-level dict, shared by
        # every server of the process.
        sio.eio._async = dict(sio.eio._async, websocket=self._websocket_class(base))

    def _websocket_class(self, base: type) -> type:
        writes = self

        class DirectWebSocket(base):  # type: ignore[misc]
            async def __call__(self, environ: dict[str, Any]) -> Any:
                socket = getattr(self.handler, "__self__", None)
                protocol = getattr(environ.get("asgi.send"), "__self__", None)
                sid = writes._attach(socket, protocol)
                try:
                    return await super().__call__(environ)
                finally:
                    if sid is not None:
                        writes._open.pop(sid, None)

        return DirectWebSocket

    def _attach(self, socket: Any, protocol: Any) -> str | None:
        # Only uvicorn's sans-I/O protocol is known to here (serving.py picks it).
        if socket is None or not all(
            hasattr(protocol, name)
            for name in ("transport", "writable", "close_sent", "disconnected", "conn")
        ):
            return None
        self._open[socket.sid] = (socket, protocol)
        return str(socket.sid)

    def write(self, eio_sid: str, frame: bytes) -> bool:
        """Write ``frame`` to the WebSocket of ``eio_sid`` (at the end of this loop turn,
        with the socket's other frames of the turn, in one write); ``False`` (nothing
        written) when it must go through the socket's queue."""
        turn = self._turn.get(eio_sid)
        if turn is not None:  # the socket was writable this turn, and nothing was queued
            turn.append(frame)  # for it since: everything sent to it came here
            return True
        entry = self._open.get(eio_sid)
        if entry is None:
            return False
        socket, protocol = entry
        if (not socket.upgraded or socket.upgrading or socket.closing or socket.closed
                or not socket.queue.writer_waiting()):
            return False
        if (protocol.close_sent or protocol.disconnected or not protocol.writable.is_set()
                or protocol.conn.state is not State.OPEN or protocol.conn.extensions):
            return False
        if not self._batch:
            protocol.transport.write(frame)
            self.written += 1
            self.writes += 1
            return True
        if not self._turn:
            # Before anything this turn wakes a writer: a packet queued after these
            # frames (a ping, python-socketio's disconnect) still goes out after them.
            asyncio.get_running_loop().call_soon(self._write_turn)
        self._turn[eio_sid] = [frame]
        return True

    def _write_turn(self) -> None:
        # One write per socket per loop turn: a write to a loopback TCP socket costs
        # 15-25 µs of system time, the relay's largest cost per delivery.
        turn, self._turn = self._turn, {}
        for eio_sid, frames in turn.items():
            entry = self._open.get(eio_sid)
            protocol = entry[1] if entry is not None else None
            if (protocol is None or protocol.close_sent or protocol.disconnected
                    or protocol.conn.state is not State.OPEN):
                continue  # closing or gone meanwhile: as for what waited in its queue
            protocol.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            self.written += len(frames)
            self.writes += 1

    def to_dict(self) -> dict[str, int]:
        """The counters, for ``/healthz``."""
        return {"direct": self.written, "queued": self.queued, "writes": self.writes}

    def room(self, room: str, skip: set[str]) -> list[str]:
        """The Engine.IO sids of ``room``'s Socket.IO sockets, but those in ``skip``."""
        return [eio_sid for sid, eio_sid in self._manager.get_participants("/", room)
                if sid not in skip]

    def engine_sid(self, sid: str) -> str | None:
        """The Engine.IO sid under Socket.IO socket ``sid``; ``None`` when it is gone."""
        eio_sid: str | None = self._manager.eio_sid_from_sid(sid, "/")
        return eio_sid

    async def send(self, eio_sid: str, event: EncodedEvent) -> None:
        """``event`` to one Engine.IO socket: written now when it can be, else queued
        (python-engineio's ``send_packet``, which does not suspend on its unbounded
        queue, so what is sent in a row arrives in that order)."""
        if self.write(eio_sid, event.frame):
            return
        self.queued += 1
        entry = self._open.get(eio_sid)
        # Replaceable only while the browser is not reading (uvicorn's buffer is full),
        # as the backlog is meant to be; a WebSocket that reads but whose writer has not
        # had its turn yet (events that came in one read) gets every update.
        backed_up = entry is None or not entry[1].writable.is_set()
        await self._eio.send_packet(eio_sid, event.packet if backed_up else event.plain())
