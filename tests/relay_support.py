"""Real parts for the relay's tests: relay processes, a private redis-server, and
Socket.IO clients that record what they receive."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import socketio

SECRET = "relay-tests-secret-that-is-32-bytes-or-more"
HERE = Path(__file__).parent
_LISTENING = re.compile(r"listening on (http://\S+)")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


class RelayProcess:
    """A relay in its own process (``progress-sim relay`` or a test double script)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.stop()
            raise AssertionError("relay did not start:\n" + self.output)

    @classmethod
    def cli(cls, redis_url: str, channel: str, *args: str, secret: str = SECRET,
            log_level: str = "info") -> RelayProcess:
        """``progress-sim relay`` on a free port, secret from JWT_SECRET."""
        argv = [sys.executable, "-c", "from simulator.cli import main; main()",
                "--redis-url", redis_url, "--channel", channel, "relay", "--port", "0",
                "--log-level", log_level, *args]
        return cls(argv, env={"JWT_SECRET": secret})

    @classmethod
    def script(cls, name: str, *args: str) -> RelayProcess:
        """A test double from tests/ (it prints the same ``listening on`` line)."""
        return cls([sys.executable, str(HERE / name), *args])

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found and not self._ready.is_set():
                self.url = found.group(1)
                self._ready.set()

    @property
    def output(self) -> str:
        """Everything the relay wrote to stderr so far."""
        return "".join(self.lines)

    def healthz(self) -> dict[str, Any]:
        """GET /healthz."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
            body: dict[str, Any] = json.load(response)
            return body

    def wait_subscribed(self, connects: int = 1) -> None:
        """Wait until the relay's Redis subscription is confirmed (``connects`` times)."""
        wait_until(lambda: self.healthz()["redis_connects"] >= connects
                   and self.healthz()["redis_connected"], what="the relay to subscribe")

    def stop(self) -> None:
        """Terminate the relay and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class RedisServer:
    """A private redis-server on a free port (the test may stop and restart it)."""

    def __init__(self, password: str | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server is not installed (.ci/run installs it)")
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, password included."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port) and wait until it answers."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, what="redis-server to answer")
        client.close()

    def stop(self) -> None:
        """Stop it (a hard kill: what a crash looks like to clients)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Client:
    """A python-socketio client that records every event it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.refusal: str | None = None
        self.caught_up = asyncio.Event()
        self.sio.on("*", self._any)
        self.sio.on("connect_error", self._refused)

    async def _any(self, name: str, payload: Any = None) -> None:
        if name == "caught_up":  # the relay's "live from here on", not a progress event
            self.caught_up.set()
            return
        self.events.append((name, payload))

    async def _refused(self, data: Any = None) -> None:
        self.refusal = data.get("message") if isinstance(data, dict) else str(data)

    async def connect(self, url: str, auth: Any, *, live: bool = True) -> None:
        """Connect over WebSocket with this handshake ``auth`` payload; with ``live``,
        also wait until the relay says the socket is in the live stream (after its
        catch-up), so what is published next reaches it as live events."""
        await self.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
        if live:
            await asyncio.wait_for(self.caught_up.wait(), 60)

    def named(self, name: str) -> list[Any]:
        """Payloads of the events called ``name``, in arrival order."""
        return [payload for event, payload in self.events if event == name]

    async def wait_for(self, name: str, count: int, timeout: float = 10.0) -> list[Any]:
        """Wait until ``count`` events called ``name`` arrived; return their payloads."""
        deadline = time.monotonic() + timeout
        while len(self.named(name)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.named(name)


def event(user_id: str, media_id: str, kind: str = "PROCESSING_STARTED", **fields: Any) -> bytes:
    """One wire event as JSON."""
    data: dict[str, Any] = fields.pop("data", {})
    if kind == "PROCESSING_FAILED":
        data.setdefault("error_message", "decoder crashed")
    obj = {"media_id": media_id, "user_id": user_id, "event": kind,
           "message": f"{kind} {media_id}", "data": data, **fields}
    return json.dumps(obj).encode()


def publish_raw(redis_url: str, channel: str, message: bytes) -> None:
    """PUBLISH ``message`` on ``channel`` (SPUBLISH on a Redis Cluster, where the
    publishers and the relay use shard channels)."""
    from progress_sdk.cluster import client_for

    client = client_for(redis_url)
    try:
        if isinstance(client, redis.RedisCluster):
            client.spublish(channel, message)
        else:
            client.publish(channel, message)
    finally:
        client.close()


async def settle(redis_url: str, channels: list[str], clients: dict[str, list[Client]],
                 timeout: float = 60.0) -> None:
    """Publish a sentinel event of each user (a media of its own) on each of ``channels``
    and wait until every client of ``clients`` (user id -> its sockets) got all of its
    user's, then forget them. A channel, the relay and each socket keep order, so
    whatever was published on those channels before (a duplicate included) has reached
    every client by then: no sleep "for a duplicate to show up". Each client must be
    live (``connect`` returned); ``timeout`` only bounds a hung test."""
    sentinels: dict[str, set[str]] = {user: set() for user in clients}
    for channel in channels:
        for user in clients:
            media_id = f"sentinel-{uuid.uuid4().hex}"
            sentinels[user].add(media_id)
            publish_raw(redis_url, channel, event(user, media_id))

    def seen(client: Client) -> set[str]:
        return {p.get("mediaId") for p in client.named("progress_update")
                if isinstance(p, dict)}

    deadline = time.monotonic() + timeout
    while not all(sentinels[user] <= seen(c) for user, cs in clients.items() for c in cs):
        assert time.monotonic() < deadline, "a sentinel event never reached its sockets"
        await asyncio.sleep(0.02)
    for user, sockets in clients.items():
        for client in sockets:
            client.events = [(name, payload) for name, payload in client.events
                             if not (isinstance(payload, dict)
                                     and payload.get("mediaId") in sentinels[user])]


def sockets_joining_a_busy_job(
    relay_url: str, token: str, job: list[str], joiners: int, *, redis_url: str,
    channel: str, user_id: str,
) -> tuple[Client, list[Client]]:
    """One socket connected before the ``job`` command starts streaming, and up to
    ``joiners`` more connecting 0.3 s apart while it runs; each waits for its media's end,
    then for a sentinel event published on ``channel`` once the job exited (``settle``),
    so a duplicate would have arrived. Returns (the early one, the late ones)."""

    async def scenario() -> tuple[Client, list[Client]]:
        early = Client()
        await early.connect(relay_url, {"token": token})
        process = subprocess.Popen(job)
        late: list[Client] = []
        try:
            await early.wait_for("progress_update", 20)
            while process.poll() is None and len(late) < joiners:
                client = Client()
                await client.connect(relay_url, {"token": token})
                late.append(client)
                await asyncio.sleep(0.3)
            assert await asyncio.to_thread(process.wait, 60) == 0
        finally:
            if process.poll() is None:
                process.kill()
        for client in [early, *late]:
            await client.wait_for("media_update", 1, timeout=20)
        await settle(redis_url, [channel], {user_id: [early, *late]})
        for client in [early, *late]:
            await client.sio.disconnect()
        return early, late

    return asyncio.run(scenario())


class StalledSocket:
    """A Socket.IO client over a raw WebSocket that reads only when told to: it connects
    (Engine.IO open, Socket.IO connect with ``auth``), then leaves everything the relay
    sends in the TCP buffers until ``read_until``, as a browser tab that stopped reading
    does. ``rcvbuf`` shrinks its kernel receive buffer, so the relay's side fills sooner."""

    def __init__(self, url: str, auth: Any, rcvbuf: int | None = None) -> None:
        where = urllib.parse.urlsplit(url)
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((where.hostname, where.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {where.netloc}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise AssertionError(f"no WebSocket upgrade: {head!r}")
        if not self.frame().startswith("0"):
            raise AssertionError("no Engine.IO open packet")
        self.events: list[tuple[str, Any]] = []
        self.closed = False
        self.send("40" + json.dumps(auth))
        # The connect reply comes first from this relay (catch-up follows it); a relay that
        # sends events before it (catch-up inside the connect handler) is read the same.
        while not (reply := self.frame()).startswith("40"):
            if not reply.startswith("42"):
                raise AssertionError(f"Socket.IO connect refused: {reply!r}")
            self._record(reply)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the relay closed the connection")
        self._buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def frame(self) -> str:
        """The next text frame (a close frame raises ``ConnectionError``)."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._take(8))[0]
        payload = self._take(length)
        if first & 0x0F == 0x8:
            raise ConnectionError(f"close frame {payload!r}")
        return payload.decode()

    def send(self, text: str) -> None:
        """Send one masked text frame."""
        data, mask = text.encode(), os.urandom(4)
        size = len(data)
        header = bytes([0x81, 0x80 | size]) if size < 126 else (
            bytes([0x81, 0x80 | 126]) + struct.pack("!H", size))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def read_until(self, done: Callable[[str, Any], bool]) -> None:
        """Read (answering pings) until ``done(name, payload)`` holds for a received
        Socket.IO event, or the relay closes the connection (then ``closed`` is set)."""
        while True:
            try:
                text = self.frame()
            except (ConnectionError, OSError):
                self.closed = True
                return
            if text == "2":
                self.send("3")
            elif text.startswith("42"):
                name, payload = self._record(text)
                if done(name, payload):
                    return

    def _record(self, text: str) -> tuple[str, Any]:
        name, *rest = json.loads(text[2:])
        self.events.append((name, rest[0] if rest else None))
        return self.events[-1]

    def named(self, name: str) -> list[Any]:
        """Payloads of the events called ``name`` read so far, in arrival order."""
        return [payload for event, payload in self.events if event == name]

    def close(self) -> None:
        """Drop the TCP connection."""
        self.sock.close()
def write_snapshots(redis_url: str, prefix: str, user_id: str, count: int,
                    models: int = 3) -> None:
    """``count`` running media of ``user_id`` with ``models`` models each, as a publisher
    writes their snapshots (media ``m-0`` .. ``m-<count-1>``, the last one newest)."""
    from snapshot_oracle import fold_each

    from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker

    tracker = SnapshotTracker(SnapshotConfig(SnapshotKeys(prefix)), channel="unused")
    client = redis.Redis.from_url(redis_url)
    start = time.time() - count
    for n in range(count):
        media = {"media_id": f"m-{n}", "user_id": user_id, "source": "w"}
        fold_each(tracker, {**media, "event": "PROCESSING_STARTED", "seq": 1,
                       "data": {"filename": f"clip-{n}.mp4"}}, start + n)
        for k in range(models):
            fold_each(tracker, {**media, "event": "FRAME_ANALYSIS_PROGRESS", "seq": 2 + k,
                           "data": {"model_name": f"MODEL-{k}", "progress": 5, "total": 10,
                                    "phase": "frame_analysis"}}, start + n)
        if n % 200 == 199 or n == count - 1:
            pipe = client.pipeline(transaction=False)
            for command in tracker.take_commands():
                pipe.execute_command(*command)
            pipe.execute()
    client.close()


def connect_and_close_at_once(relay_url: str, token: str, sockets: int) -> None:
    """``sockets`` clients open a connection at the same moment, send the Socket.IO
    connect (with the token) and close the connection right after, while the relay is
    still connecting them (catch-up): a reload storm. A bare Engine.IO client over
    ``websockets``, so the connect surely went out before the close."""
    import websockets

    ws_url = relay_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"

    async def one() -> None:
        async with websockets.connect(ws_url, compression=None, open_timeout=120) as ws:
            await ws.recv()  # Engine.IO open
            await ws.send("40" + json.dumps({"token": token}))

    async def storm() -> None:
        await asyncio.gather(*(one() for _ in range(sockets)))

    asyncio.run(storm())


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of process ``pid`` so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")
