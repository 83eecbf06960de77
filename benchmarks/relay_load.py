"""The load of benchmarks/relay_bench.py: socket clients and a publisher, each in processes
of their own, and what they cost (so a figure shows the load was not the bottleneck).

- ``LoadClients``: the sockets, spread over ``procs`` client processes (a user's sockets
  in one process). Each is a minimal WebSocket + Engine.IO/Socket.IO client on a bare
  ``asyncio.Protocol`` under uvloop: it parses the server's unmasked frames straight out
  of the read buffer, reads the send stamp out of ``"sent":`` without decoding the JSON,
  and takes the clock once per read, not per message. The earlier client on the
  ``websockets`` library cost ~33 µs of CPU per delivery (measured 7 Dec 2026, 30,000
  deliveries), 0.8 core at 12k events/s with two sockets per user; this one costs 13-29
  µs (~2 µs of it the parsing, the rest a read per packet), and its cost is reported
  with every run (``client_us``, ``headroom``).
- ``publish``: one process PUBLISHing valid FRAME_ANALYSIS_PROGRESS events at a rate,
  pipelined every 10 ms, to the contract channel or to ``{channel}:user:{user_id}``; it
  reports what it actually published, over how long, its CPU and how late it ran.

Run as ``python benchmarks/relay_load.py client`` (a plan on stdin) or ``... publish
<json>``; the parent side is the two names above.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import sys
import time
from array import array
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))

# A user's channel, as the publisher and ``progress-sim relay --user-channels`` name it.
from progress_sdk.sharding import user_channel  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "benchmark-secret-that-is-32-bytes-long!"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TICK = 0.01  # the publisher's pacing: one pipeline every 10 ms


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def event_bytes(user: str, seq: int, sent: float, stamp: str, media: str = "") -> bytes:
    """A valid FRAME_ANALYSIS_PROGRESS wire event whose ``data.details.sent`` is ``sent``."""
    import orjson

    return orjson.dumps({
        "media_id": media or f"m-{user}", "user_id": user, "event": "FRAME_ANALYSIS_PROGRESS",
        "message": f"Analyzed {seq % 300 + 1}/300 frames",
        "data": {"model_name": "SIGLIP-LSTM-V4", "progress": seq % 300 + 1, "total": 300,
                 "details": {"sent": sent}},
        "schema_version": 1, "seq": seq, "source": "bench", "timestamp": stamp,
    })


def utc_stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


# -- a client process ---------------------------------------------------------------------


class _Socket(asyncio.Protocol):
    """One Socket.IO client over a WebSocket (EIO=4), counting ``progress_update``s."""

    def __init__(self, host: str, token: str, sink: _Sink) -> None:
        self.host, self.token, self.sink = host, token, sink
        self.buf = bytearray()
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.count = 0
        self.closed = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buf[:end]:
                self.ready.set_exception(RuntimeError(bytes(self.buf[:end]).decode()))
                return
            self.upgraded = True
            del self.buf[:end + 4]
        self._frames(time.time())

    def _frames(self, now: float) -> None:
        buf, pos, size = self.buf, 0, len(self.buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F  # a server's frames are not masked
            head = 2 if length < 126 else 4 if length == 126 else 10
            if size - pos < head:
                break
            if head > 2:
                length = int.from_bytes(buf[pos + 2:pos + head], "big")
            end = pos + head + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:  # servers here send each Engine.IO packet as one text frame
                self._packet(bytes(buf[pos + head:end]), now)
            elif opcode == 9:
                self._send(bytes(buf[pos + head:end]), opcode=10)
            elif opcode == 8:
                self.transport.close()
            pos = end
        del buf[:pos]

    def _packet(self, packet: bytes, now: float) -> None:
        if packet.startswith(b'42["progress_update"'):
            at = packet.rfind(b'"sent":') + 7
            sent = float(packet[at:packet.find(b"}", at)])
            if sent < self.sink.since:  # a warm-up event
                return
            self.count += 1
            self.sink.sent.append(sent)
            self.sink.latency.append(now - sent)
        elif packet == b"2":
            self._send(b"3")
        elif packet.startswith(b"40"):
            self.ready.set_result(None)
        elif packet.startswith(b"0"):
            self._send(b"40" + json.dumps({"token": self.token}).encode())
        elif packet.startswith(b"44") and not self.ready.done():
            self.ready.set_exception(RuntimeError(f"refused: {packet!r}"))

    def _send(self, payload: bytes, opcode: int = 1) -> None:
        size = len(payload)
        head = bytes([0x80 | opcode, 0x80 | size]) if size < 126 else (
            bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big"))
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)


class _Sink:
    """Every delivery of a process: its send stamp and its latency, in arrival order."""

    def __init__(self) -> None:
        self.sent: array[float] = array("d")
        self.latency: array[float] = array("d")
        self.since = 0.0
        """Events sent before this are the warm-up's, not counted."""


async def _client_main() -> None:
    from simulator.relay import sign_token

    loop = asyncio.get_running_loop()
    plan = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    sink, sockets = _Sink(), []
    for url, user in plan:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        token = sign_token(SECRET, user)
        _, sock = await loop.create_connection(
            lambda h=f"{host}:{port}", t=token: _Socket(h, t, sink), host, int(port))
        sockets.append(sock)
        await asyncio.sleep(0.002)  # no thundering herd of handshakes
    await asyncio.wait_for(asyncio.gather(*(s.ready for s in sockets)), 60)
    print("ready", flush=True)
    cpu = time.process_time()
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if command == "count":
            reply: Any = [sum(s.count for s in sockets), sum(s.count > 0 for s in sockets)]
        elif command.startswith("reset "):  # the measured run's events are sent from then
            del sink.sent[:], sink.latency[:]
            sink.since = float(command.split()[1])
            for sock in sockets:
                sock.count = 0
            cpu, reply = time.process_time(), "ok"
        else:  # stop
            reply = {"sent": base64.b64encode(sink.sent.tobytes()).decode(),
                     "latency": base64.b64encode(sink.latency.tobytes()).decode(),
                     "cpu": time.process_time() - cpu, "closed": sum(s.closed for s in sockets)}
        print(json.dumps(reply), flush=True)
        if command == "stop":
            break
    for sock in sockets:
        sock.transport.abort()


# -- the parent's side --------------------------------------------------------------------


@dataclass
class Deliveries:
    """What the clients received in the measured run, and what it cost them."""

    sent: array[float]
    latency: array[float]
    cpu: list[float]
    """CPU seconds of each client process over the run."""
    closed: int
    """Sockets the relay closed during the run (a backlog past its bound, say)."""


class LoadClients:
    """``plan`` (url, user) sockets over ``procs`` client processes, up and connected."""

    def __init__(self, plan: list[tuple[str, str]], procs: int) -> None:
        by_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for url, user in plan:
            by_user[user].append((url, user))
        shares: list[list[tuple[str, str]]] = [[] for _ in range(procs)]
        for n, sockets in enumerate(by_user.values()):
            shares[n % procs].extend(sockets)
        self.sockets = len(plan)
        self.procs = [subprocess.Popen(
            [sys.executable, str(HERE), "client"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True) for share in shares if share]
        try:
            for proc, share in zip(self.procs, shares, strict=False):
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(share) + "\n")
                proc.stdin.flush()
            for proc in self.procs:
                if self._read(proc) != "ready":
                    raise RuntimeError("a client process did not get its sockets up")
        except BaseException:
            self.kill()
            raise

    def _ask(self, command: str) -> list[Any]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
        return [json.loads(self._read(proc)) for proc in self.procs]

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client process {proc.pid} ended (exit {proc.wait()})")
        return line.strip()

    def counts(self) -> tuple[int, int]:
        """Deliveries so far, and sockets that got at least one."""
        replies = self._ask("count")
        return sum(r[0] for r in replies), sum(r[1] for r in replies)

    def warm_up(self, publish_round: Callable[[], None], limit: float = 30.0) -> None:
        """``publish_round()`` (one event per user) until every socket got one: the relays
        have every socket in its room and subscribed; then the measured run starts."""
        deadline = time.monotonic() + limit
        while self.counts()[1] < self.sockets:
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up: sockets without an event after {limit:g} s")
            publish_round()
            time.sleep(0.2)
        self._ask(f"reset {time.time()!r}")

    def drain(self, expected: int, stall: float, limit: float) -> tuple[int, float]:
        """Wait until ``expected`` deliveries arrived, none arrived for ``stall`` s, or
        ``limit`` s passed (a relay that fell behind ends the trial in bounded time).
        Returns the deliveries counted and the seconds waited."""
        began = time.monotonic()
        last, last_change = -1, began
        while True:
            got, _ = self.counts()
            now = time.monotonic()
            if got != last:
                last, last_change = got, now
            if got >= expected or now - last_change > stall or now - began > limit:
                return got, now - began
            time.sleep(0.05)

    def stop(self) -> Deliveries:
        """End the run: every delivery's stamps and the processes' CPU."""
        replies = self._ask("stop")
        for proc in self.procs:
            proc.wait(30)
            assert proc.stdout is not None and proc.stdin is not None
            proc.stdout.close()
            proc.stdin.close()
        sent, latency = array("d"), array("d")
        for reply in replies:
            sent.frombytes(base64.b64decode(reply["sent"]))
            latency.frombytes(base64.b64decode(reply["latency"]))
        return Deliveries(sent, latency, [r["cpu"] for r in replies],
                          sum(r["closed"] for r in replies))

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


# -- the publisher ------------------------------------------------------------------------


def publish(channel: str, users: list[str], rate: int, seconds: float, *,
            per_user: bool, timeout: float) -> dict[str, float]:
    """Run the publisher process; its report (``published``, ``seconds``, ``cpu``,
    ``late_max_ms``: how far behind its schedule a tick began at worst)."""
    spec = json.dumps({"channel": channel, "users": users, "rate": rate,
                       "seconds": seconds, "per_user": per_user})
    out = subprocess.run([sys.executable, str(HERE), "publish", spec], capture_output=True,
                         text=True, timeout=timeout, check=True).stdout
    report: dict[str, float] = json.loads(out)
    return report


def warm_up_publisher(channel: str, users: list[str], per_user: bool) -> Callable[[], None]:
    """A function that publishes one warm-up event per user (media ``w-<user>``, its
    ``sent`` before the measured run's, so the clients do not count it)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    rounds = itertools.count(1)

    def publish_round() -> None:
        seq, now = next(rounds), time.time()
        pipe = client.pipeline(transaction=False)
        for user in users:
            pipe.publish(user_channel(channel, user) if per_user else channel,
                         event_bytes(user, seq, now, utc_stamp(now), media=f"w-{user}"))
        pipe.execute()

    return publish_round


def _publish_main(spec: dict[str, Any]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    channel, users, rate = spec["channel"], spec["users"], spec["rate"]
    channels = [user_channel(channel, u) if spec["per_user"] else channel for u in users]
    per_tick = max(1, round(rate * TICK))
    total = int(rate * spec["seconds"])
    sent, late_max, began, cpu = 0, 0.0, time.monotonic(), time.process_time()
    while sent < total:
        late_max = max(late_max, time.monotonic() - (began + sent / rate))
        pipe = client.pipeline(transaction=False)
        now = time.time()
        stamp = utc_stamp(now)
        for _ in range(min(per_tick, total - sent)):
            n = sent % len(users)
            sent += 1
            pipe.publish(channels[n], event_bytes(users[n], sent, now, stamp))
        pipe.execute()
        delay = began + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"published": sent, "seconds": time.monotonic() - began,
                      "cpu": time.process_time() - cpu, "late_max_ms": late_max * 1000}),
          flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "client":
        import uvloop

        uvloop.run(_client_main())
    else:
        _publish_main(json.loads(sys.argv[2]))
