"""Per-event costs the relay chose its way around, each against the library default
(``python benchmarks/relay_bench.py --micro``): packet encoding, subscription reads, the
socket queue and the emit path.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from relay_load import REDIS_URL

HERE = Path(__file__).resolve()


_PAYLOAD = {
    "mediaId": "9b2f0c1e-3c41-4f0e-9d7a-0c1f2e3d4a5b", "userId": "u-17",
    "event": "FRAME_ANALYSIS_PROGRESS", "message": "Analyzed 150/300 frames",
    "data": {"model_name": "SIGLIP-LSTM-V4", "progress": 150, "total": 300,
             "phase": "frame_analysis", "details": {"fps": 29.97, "window": [120, 150]}},
    "timestamp": "2026-11-26T05:00:00.123456Z", "seq": 42, "source": "worker-3:4711:a8f2",
    "runId": "run-0007",
}


def _encode_us(packet_class: Any, repeats: int = 20000) -> float:
    began = time.process_time()
    for _ in range(repeats):
        packet_class(2, namespace="/", data=["progress_update", _PAYLOAD]).encode()
    return (time.process_time() - began) / repeats * 1e6


async def _read_us(blocking: bool, hiredis: bool, messages: int = 20000) -> float:
    import redis
    import redis.asyncio as aioredis
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

    channel = f"bench-read-{uuid.uuid4().hex}"
    parser = _AsyncHiredisParser if hiredis else _AsyncRESP2Parser
    client = aioredis.Redis.from_url(REDIS_URL, parser_class=parser)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
        pass
    publisher = redis.Redis.from_url(REDIS_URL)
    pipe = publisher.pipeline(transaction=False)
    for _ in range(messages):
        pipe.publish(channel, json.dumps(_PAYLOAD))
    pipe.execute()
    publisher.close()
    began, got = time.process_time(), 0
    while got < messages:
        message = await pubsub.get_message(timeout=None if blocking else 1.0)
        if message is not None and message["type"] == "message":
            got += 1
    spent = time.process_time() - began
    await pubsub.aclose()
    await client.aclose()
    return spent / messages * 1e6


async def _queue_us(queue: Any, repeats: int = 50000) -> float:
    """One packet into a socket's queue and out again, as an emit and the writer do."""
    import engineio.packet

    from simulator.relay.engine_internals import JsonPacket

    frame = JsonPacket(2, namespace="/", data=["progress_update", _PAYLOAD]).encode()
    packet = engineio.packet.Packet(engineio.packet.MESSAGE, frame)
    began = time.process_time()
    for _ in range(repeats):  # as python-engineio's poll: get, then get_nowait until empty
        queue.put_nowait(packet)
        await queue.get()
        queue.task_done()
        try:  # noqa: SIM105 - as poll does it; contextlib.suppress would be timed too
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    return (time.process_time() - began) / repeats * 1e6


async def _emit_path_us(bounded: bool, users: int = 250, events: int = 20000) -> float:
    """python-socketio's room emit to 500 sockets (two per user) and python-engineio's
    ``poll`` taking each packet, in one process, no network: per event, on the socket
    queue python-engineio makes or on the relay's."""
    import engineio.async_socket
    import socketio

    from simulator.relay.backlog import BacklogLimits, BacklogStats
    from simulator.relay.engine_internals import JsonPacket, install_backlogs

    sio = socketio.AsyncServer(async_mode="asgi", serializer=JsonPacket)
    if bounded:
        install_backlogs(sio, BacklogLimits(), BacklogStats())
    taken = [0]

    async def writer(socket: Any) -> None:
        while packets := await socket.poll():
            for packet in packets:
                packet.encode()
            taken[0] += len(packets)

    writers = []
    for n in range(users * 2):
        socket = engineio.async_socket.AsyncSocket(sio.eio, f"e{n}")
        sio.eio.sockets[f"e{n}"] = socket
        await sio.enter_room(await sio.manager.connect(f"e{n}", "/"), f"user:{n // 2}")
        writers.append(asyncio.create_task(writer(socket)))
    began = time.process_time()
    for i in range(events):
        payload = dict(_PAYLOAD, seq=i, mediaId=f"m{i % users}")
        await sio.emit("progress_update", payload, room=f"user:{i % users}")
    while taken[0] < 2 * events:
        await asyncio.sleep(0)
    spent = time.process_time() - began
    for socket in sio.eio.sockets.values():
        socket.queue.put_nowait(None)
    await asyncio.gather(*writers)
    return spent / events * 1e6


def _on_relay_loop(coroutine: Any) -> float:
    """Run on uvloop when installed, as the relay does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - depends on the environment
        return float(asyncio.run(coroutine))
    return float(uvloop.run(coroutine))


def micro(repeats: int) -> None:
    """The per-event costs the relay chose its way around, each against the default, and
    what the bounded backlog adds per delivery and per event."""
    import socketio.packet

    sys.path.insert(0, str(HERE.parent.parent))
    from simulator.relay.backlog import BacklogLimits, BacklogStats
    from simulator.relay.engine_internals import BacklogQueue, JsonPacket

    figures: dict[str, list[float]] = {}
    for _ in range(repeats):
        figures.setdefault("encode default Packet", []).append(_encode_us(socketio.packet.Packet))
        figures.setdefault("encode JsonPacket", []).append(_encode_us(JsonPacket))
        plain = asyncio.run(_queue_us(asyncio.Queue()))
        figures.setdefault("socket queue: asyncio.Queue", []).append(plain)
        bounded = BacklogQueue(BacklogLimits(), BacklogStats(), lambda queue, limit: None)
        figures.setdefault("socket queue: BacklogQueue", []).append(
            asyncio.run(_queue_us(bounded)))
        for bounded in (False, True):
            name = f"emit path, 500 sockets: {'BacklogQueue' if bounded else 'asyncio.Queue'}"
            figures.setdefault(name, []).append(_on_relay_loop(_emit_path_us(bounded)))
        for blocking in (False, True):
            for hiredis in (False, True):
                name = (f"read {'blocking' if blocking else 'timeout=1'}, "
                        f"{'hiredis' if hiredis else 'Python parser'}")
                figures.setdefault(name, []).append(asyncio.run(_read_us(blocking, hiredis)))
    print(f"CPU per event, medians of {repeats} interleaved runs (process time, shared machine)")
    for name, values in figures.items():
        print(f"  {name:<36} {statistics.median(values):6.1f} us")
