"""What ``simulator.relay.engine_internals`` relies on inside python-socketio and
python-engineio (its module doc, points 1-3). A library upgrade that changes any of it
fails here, before it silently unbounds a socket's backlog."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import engineio.async_socket
import engineio.packet
import pytest
import redis
import socketio
import socketio.packet
import websockets.frames
import websockets.streams
from relay_support import SECRET, Client, RelayProcess, event

from simulator.relay import Relay, RelayConfig, sign_token
from simulator.relay.backlog import BacklogLimits, BacklogStats
from simulator.relay.engine_internals import (
    MAX_BATCH_BYTES,
    MAX_BATCH_PACKETS,
    BacklogQueue,
    EncodedEvent,
    JsonPacket,
    KeyedFrame,
    text_frame,
)

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def progress(n: int) -> dict[str, Any]:
    """A ``progress_update`` payload of media m1, model A."""
    return {"mediaId": "m1", "userId": "u", "event": "FRAME_ANALYSIS_PROGRESS", "message": "",
            "data": {"model_name": "A", "progress": n, "total": 100}, "runId": "r1"}


def media(i: int) -> dict[str, Any]:
    """A ``media_update`` payload of 100-odd bytes (the same length for i < 100)."""
    return {"id": f"m{i:02}", "pad": "x" * 100}


class Connected:
    """A relay with one Socket.IO socket registered the way python-engineio and
    python-socketio register a real one (no network: the test plays the writer)."""

    def __init__(self, limits: BacklogLimits | None = None, *, reasons: bool = False) -> None:
        self.relay = Relay(RelayConfig(jwt_secret="x" * 32, backlog=limits or BacklogLimits()))
        self.reasons: list[str] = []
        self.sio = self.relay.sio
        if reasons:  # in place of the relay's own handler
            self.sio.on("disconnect", self._disconnected)
        self.socket: Any = None
        self.sid = ""

    async def _disconnected(self, sid: str, reason: str) -> None:
        self.reasons.append(reason)

    async def connect(self) -> None:
        """Register an Engine.IO socket and connect it to the default namespace."""
        self.socket = engineio.async_socket.AsyncSocket(self.sio.eio, "eio-1")
        self.sio.eio.sockets["eio-1"] = self.socket
        self.sid = await self.sio.manager.connect("eio-1", "/")

    @property
    def queue(self) -> BacklogQueue:
        """The socket's queue."""
        queue = self.socket.queue
        assert isinstance(queue, BacklogQueue)
        return queue


def test_the_tested_library_versions_are_installed_and_pinned() -> None:
    """The relay extra pins the versions this module was tested with, and they are the
    ones installed."""
    text = PYPROJECT.read_text()
    for name in ("python-socketio", "python-engineio", "uvicorn", "websockets"):
        pin = re.search(rf'"{name}==([0-9.]+)"', text)
        assert pin is not None, f"{name} is not pinned in the relay extra"
        assert importlib.metadata.version(name) == pin.group(1)


def test_every_engineio_socket_queue_is_a_backlog_queue_fed_by_the_room_emit() -> None:
    """``create_queue`` makes each socket's queue; a room emit reaches it as one
    ``MESSAGE`` packet per socket whose data is the encoded frame, tagged with its key, so
    a newer progress update replaces the waiting one and ``task_done`` stays balanced."""

    async def scenario() -> None:
        node = Connected()
        await node.connect()
        await node.sio.enter_room(node.sid, "user:u")
        for n in (1, 2, 3):
            await node.sio.emit("progress_update", progress(n), room="user:u")
        await node.sio.emit("media_update", {"id": "m1"}, room="user:u")
        assert node.queue.qsize() == 2
        packets = await node.socket.poll()  # what the WebSocket writer / a long-poll GET does
        assert [p.packet_type for p in packets] == [engineio.packet.MESSAGE] * 2
        frame = packets[0].data
        assert isinstance(frame, KeyedFrame) and '"progress":3' in frame
        assert frame.coalesce_key == ("m1", "r1", "A", "FRAME_ANALYSIS_PROGRESS")
        assert packets[1].data.startswith('2["media_update"')
        await asyncio.wait_for(node.queue.join(), 5)  # every put was taken or replaced
        assert node.relay.backlog.replaced == 2

    asyncio.run(scenario())


def test_the_writer_takes_a_bounded_batch_and_the_rest_stays_in_the_backlog() -> None:
    """python-engineio's ``poll`` (the WebSocket writer, a long-poll GET) takes packets
    until ``QueueEmpty``; the queue ends a batch at its packet or byte cap, so a stalled
    writer never holds the backlog outside its bounds; the next poll goes on in order."""

    async def scenario() -> None:
        node = Connected(BacklogLimits(max_bytes=10**9, max_events=10**6))
        await node.connect()
        for i in range(MAX_BATCH_PACKETS + 10):
            await node.sio.emit("media_update", media(i % 100), to=node.sid)
        first = await node.socket.poll()
        assert len(first) == MAX_BATCH_PACKETS and node.queue.qsize() == 10
        assert len(await node.socket.poll()) == 10
        big = {"pad": "x" * (MAX_BATCH_BYTES // 4)}
        for _ in range(10):
            await node.sio.emit("media_update", big, to=node.sid)
        batch = await node.socket.poll()
        assert len(batch) == 4 and sum(len(p.data) for p in batch) >= MAX_BATCH_BYTES
        assert len(await node.socket.poll()) == 4 and len(await node.socket.poll()) == 2
        # The writer's end right where a batch fills: the next poll ends the writer.
        for i in range(MAX_BATCH_PACKETS - 1):
            await node.sio.emit("media_update", media(i % 100), to=node.sid)
        node.queue.put_nowait(None)
        assert len(await node.socket.poll()) == MAX_BATCH_PACKETS - 1
        assert await node.socket.poll() == []

    asyncio.run(scenario())


@pytest.mark.parametrize("limit", ["bytes", "events"])
def test_a_socket_over_its_limit_is_closed_with_the_reason_and_its_packets_freed(
    limit: str,
) -> None:
    """Past either limit the queue is emptied but for the packet being put,
    python-engineio's ``close`` runs the ``disconnect`` handlers with the reason, the
    close packet and ``None`` (the writer's end) still get through, later messages do
    not, and the socket leaves the manager."""
    limits = (BacklogLimits(max_bytes=1000, max_events=100) if limit == "bytes"
              else BacklogLimits(max_bytes=10**6, max_events=5))

    async def scenario() -> Connected:
        node = Connected(limits, reasons=True)
        await node.connect()
        for i in range(20):
            await node.sio.emit("media_update", media(i), to=node.sid)
        for _ in range(500):
            if node.reasons:
                break
            await asyncio.sleep(0.01)
        await node.sio.emit("media_update", {"id": "late"}, to=node.sid)
        packets = await node.socket.poll()
        # The packet that crossed the limit was being put: it stays, nothing older does.
        assert [p.packet_type for p in packets] == [engineio.packet.MESSAGE,
                                                     engineio.packet.CLOSE]
        assert await node.socket.poll() == []  # None: the writer ends
        assert node.socket.closed and not node.sio.manager.is_connected(node.sid, "/")
        return node

    node = asyncio.run(scenario())
    value = limits.max_bytes if limit == "bytes" else limits.max_events
    assert node.reasons == [f"backlog over its limit ({limit}: {value})"]
    backlog = node.relay.backlog.to_dict()
    assert backlog["disconnected"] == {"bytes": int(limit == "bytes"),
                                       "events": int(limit == "events")}
    # Every frame is as long; the one that crossed the limit emptied the queue.
    frame = len(JsonPacket(socketio.packet.EVENT, data=["media_update", media(0)]).encode())
    over = limits.max_bytes // frame + 1 if limit == "bytes" else limits.max_events + 1
    assert backlog["high_water_events"] == over and backlog["high_water_bytes"] == over * frame
    assert backlog["discarded"] >= over - 1


def test_emit_paced_waits_for_the_writer_to_take_the_backlog_below_half() -> None:
    """A paced emit (catch-up) waits while the backlog is over half its limits and goes
    once the writer took enough; it sends nothing to a socket that is gone."""

    async def scenario() -> None:
        node = Connected(BacklogLimits(max_bytes=10**6, max_events=4))
        await node.connect()
        for i in range(3):
            assert await node.relay.emit_paced(node.sid, "progress_snapshot", {"n": i})
        paced = asyncio.create_task(node.relay.emit_paced(node.sid, "progress_snapshot",
                                                          {"n": 3}))
        for _ in range(20):  # every chance to run: it must still be waiting
            await asyncio.sleep(0)
        assert not paced.done() and node.queue.qsize() == 3
        node.queue.get_nowait()
        node.queue.task_done()
        assert await asyncio.wait_for(paced, 5) is True
        assert node.queue.qsize() == 3
        assert await node.relay.emit_paced("no-such-sid", "progress_snapshot", {}) is False
        # A socket that leaves (here a long-polling one: no writer to end) frees a waiter.
        stuck = asyncio.create_task(node.relay.emit_paced(node.sid, "progress_snapshot", {}))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not stuck.done()
        await node.sio.disconnect(node.sid)
        assert await asyncio.wait_for(stuck, 5) is False

    asyncio.run(scenario())


def test_a_packet_larger_than_the_limit_closes_its_socket_once() -> None:
    """One packet over ``max_bytes`` overflows the backlog by itself; the close packet
    and ``None`` that follow still pass, later messages are discarded, and the socket is
    counted and closed once."""
    overflows: list[str] = []
    stats = BacklogStats()

    async def scenario() -> BacklogQueue:
        queue = BacklogQueue(BacklogLimits(max_bytes=100, max_events=10), stats,
                             lambda _, limit: overflows.append(limit))
        queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, "x" * 500))
        queue.put_nowait(engineio.packet.Packet(engineio.packet.CLOSE))
        queue.put_nowait(None)
        queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, "late"))
        return queue

    queue = asyncio.run(scenario())
    assert overflows == ["bytes"] and stats.disconnected["bytes"] == 1
    assert queue.qsize() == 3 and stats.discarded == 1 and queue.ended


# -- 4. writing straight to an idle WebSocket ------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_is_what_websockets_serializes_for_a_server(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    frame = websockets.frames.Frame(websockets.frames.Opcode.TEXT, payload)
    assert text_frame(payload) == frame.serialize(mask=False, extensions=[])


def test_an_encoded_event_is_the_packet_python_socketio_sends() -> None:
    """The frame carries the Engine.IO MESSAGE of the Socket.IO EVENT, as a room emit
    encodes it; the queued packet of a progress update is replaceable, its plain twin
    is not."""
    event = EncodedEvent("progress_update", progress(7))
    reader = websockets.streams.StreamReader()
    reader.feed_data(event.frame)
    reader.feed_eof()
    parsed = websockets.frames.Frame.parse(reader.read_exact, mask=False)
    try:
        next(parsed)
    except StopIteration as done:
        text = done.value.data.decode()
    assert text == event.packet.encode() == "4" + JsonPacket(
        socketio.packet.EVENT, namespace="/", data=["progress_update", progress(7)]).encode()
    decoded = socketio.packet.Packet(encoded_packet=text[1:])
    assert decoded.packet_type == socketio.packet.EVENT
    assert decoded.data == ["progress_update", progress(7)]
    assert isinstance(event.packet.data, KeyedFrame)
    assert type(event.plain().data) is str and event.plain().encode() == text
    media_update = EncodedEvent("media_update", {"id": "m1"})
    assert media_update.plain() is media_update.packet


def test_the_queue_says_the_writer_waits_only_when_nothing_is_pending() -> None:
    """``writer_waiting``: empty and a reader parked in ``get``; not while a packet
    waits, nor while the writer holds a batch it took (no reader parked)."""

    async def scenario() -> None:
        node = Connected()
        await node.connect()
        queue = node.queue
        assert not queue.writer_waiting()  # nobody reads yet
        reader = asyncio.ensure_future(node.socket.poll())
        await asyncio.sleep(0)  # the reader runs up to its get
        await asyncio.sleep(0)
        assert queue.writer_waiting()
        queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, data="2[1]"))
        assert not queue.writer_waiting()
        assert [p.data for p in await reader] == ["2[1]"]
        assert not queue.writer_waiting()  # taken, and the writer is sending it

    asyncio.run(scenario())


class LongPolling:
    """An Engine.IO v4 long-polling client over plain HTTP: what a browser falls back to
    when WebSockets are blocked."""

    def __init__(self, relay_url: str, token: str) -> None:
        base = relay_url + "/socket.io/?EIO=4&transport=polling"
        opened = self._request(base)
        self.url = base + "&sid=" + json.loads(opened[1:])["sid"]
        self._request(self.url, "40" + json.dumps({"token": token}))
        self.packets: list[str] = []

    @staticmethod
    def _request(url: str, body: str | None = None) -> str:
        data = body.encode() if body is not None else None
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            return str(r.read().decode())

    def poll(self) -> None:
        """One GET: the packets waiting, or the next ones to come."""
        self.packets += self._request(self.url).split("\x1e")

    def named(self, name: str) -> list[Any]:
        prefix = f'42["{name}",'
        return [json.loads(p[2:])[1] for p in self.packets if p.startswith(prefix)]


@pytest.mark.redis
def test_live_events_are_written_straight_to_websockets_and_queued_for_polling(
    redis_url: str, channel: str
) -> None:
    """A WebSocket gets live events written to it directly, a long-polling socket of the
    same user through its queue; both get every event, in order."""
    relay = RelayProcess.cli(redis_url, channel)
    user = f"u-{uuid.uuid4().hex[:8]}"
    try:
        relay.wait_subscribed()
        polling = LongPolling(relay.url, sign_token(SECRET, user))
        while not any(p.startswith('42["caught_up"') for p in polling.packets):
            polling.poll()

        async def websocket() -> Client:
            ws = Client()
            await ws.connect(relay.url, {"token": sign_token(SECRET, user)})
            publisher = redis.Redis.from_url(redis_url)
            pipe = publisher.pipeline(transaction=False)
            for n in range(1, 201):
                pipe.publish(channel, event(user, f"m{n}", seq=n, source="w1"))
            pipe.execute()
            publisher.close()
            await ws.wait_for("progress_update", 200, timeout=60)
            await ws.sio.disconnect()
            return ws

        ws = asyncio.run(websocket())
        while len(polling.named("progress_update")) < 200:
            polling.poll()
        writes = relay.healthz()["writes"]
    finally:
        relay.stop()
    for updates in (ws.named("progress_update"), polling.named("progress_update")):
        assert [u["seq"] for u in updates] == list(range(1, 201))
    assert writes["direct"] >= 1  # the WebSocket's, at least the first one
    assert 1 <= writes["writes"] <= writes["direct"]  # a loop turn's frames in one write
    assert writes["queued"] >= 200  # every one of the long-polling socket's
