"""A redis-server of the test's own on a free loopback port, to kill, freeze and restart
without touching the shared server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import redis


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


class OwnRedis:
    """``start()``/``kill()``/``freeze()``/``thaw()`` one redis-server process."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.options = options  # more redis-server options, e.g. --busy-reply-threshold
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"own redis-server on port {self.port} did not start")

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def bytes_unread(self) -> int:
        """Bytes clients sent this server that it has not read yet: the receive queues
        of its connections (/proc/net/tcp, Linux). While it is frozen the sum only
        grows, and it grows exactly when a client's command reaches the server: what a
        test waits on to know a command went out, instead of sleeping."""
        total = 0
        with open("/proc/net/tcp") as table:
            next(table)  # the header
            for line in table:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if state == "01" and int(local.split(":")[1], 16) == self.port:
                    total += int(queues.split(":")[1], 16)
        return total

    def wait_unread_above(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``bytes_unread()`` exceeds ``count`` (a command reached the frozen
        server); ``timeout`` only bounds a hung test."""
        deadline = time.monotonic() + timeout
        while self.bytes_unread() <= count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no more bytes reached redis-server :{self.port}")
            time.sleep(0.005)

    def kill(self) -> None:
        if self.proc is not None:
            self.thaw()
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
