"""A pub/sub connection to one Redis server, read a chunk at a time.

redis-py's ``PubSub.get_message`` reads and parses one reply per call, through its
connection's retry and parser layers: 6.7 µs per message with hiredis, blocking
(``relay_bench.py --micro``), a tenth of the relay's CPU per event once the send path
writes frames straight to the WebSockets. ``RespPubSub`` reads whatever the socket has
(up to 64 KiB), lets hiredis parse every reply in it at once and hands them out one by
one from a deque. It speaks only what the relay needs: ``AUTH`` (RESP2), ``SUBSCRIBE``,
``UNSUBSCRIBE`` (and ``SSUBSCRIBE``/``SUNSUBSCRIBE`` on a cluster node) and their pushes,
over plain TCP; ``pubsub_for_url`` picks redis-py's client for anything else (TLS, a
Unix socket, no hiredis).

Failures are redis-py's exception types, as the subscriber expects of any pub/sub: a
refused or lost connection is ``redis.ConnectionError``, a reply error (a wrong password)
``redis.ResponseError`` or ``redis.AuthenticationError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

try:
    import hiredis
except ImportError:  # pragma: no cover - depends on the environment
    hiredis = None  # type: ignore[assignment]

__all__ = ["RespPubSub", "supports"]

READ_SIZE = 64 * 1024
_PUSH_TYPES = {b"message": "message", b"subscribe": "subscribe", b"unsubscribe": "unsubscribe",
               # Sharded pub/sub on a cluster node (``cluster_user_pubsub``).
               b"smessage": "smessage", b"ssubscribe": "ssubscribe",
               b"sunsubscribe": "sunsubscribe"}


def supports(url: str) -> bool:
    """True when ``RespPubSub`` can serve ``url`` (``redis://`` over TCP, hiredis here).
    Not with a query string: redis-py reads options there (``?password=``,
    ``?protocol=3``, timeouts) that this reader would silently go without (a password
    left out is a subscription refused at every retry)."""
    parts = urlsplit(url)
    return hiredis is not None and parts.scheme == "redis" and not parts.query


def _command(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class RespPubSub:
    """``subscribe``/``unsubscribe``/``get_message``/``aclose`` over one TCP connection,
    as ``redis.asyncio``'s ``PubSub`` offers them (``get_message`` returns the same
    dicts: ``type``, ``pattern``, ``channel``, ``data``)."""

    def __init__(self, url: str, *, connect_timeout: float,
                 keepalive_options: Mapping[int, int] | None = None) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        # As redis-py reads a URL: percent-escapes undone, an empty user is no user.
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password is not None else None
        self._connect_timeout = connect_timeout
        self._keepalive = dict(keepalive_options or {})
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader() if hiredis is not None else None
        self._pending: deque[dict[str, Any]] = deque()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), self._connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisConnectionError(
                f"cannot connect to {self._host}:{self._port}: {exc or 'timed out'}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in self._keepalive.items():
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
        self._reader, self._writer = reader, writer
        if self._password is not None:
            await self._authenticate(reader, writer)
        return reader, writer

    async def _authenticate(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        parts = ("AUTH", self._username, self._password) if self._username else (
            "AUTH", self._password)
        writer.write(_command(*(part for part in parts if part is not None)))
        reply = await self._reply(reader)
        if isinstance(reply, Exception):
            # The server's words ("WRONGPASS ...", "invalid password") never hold the
            # password itself.
            raise AuthenticationError(str(reply))

    async def _reply(self, reader: asyncio.StreamReader) -> Any:
        while (reply := self._gets()) is False:
            await self._fill(reader)
        return reply

    def _gets(self) -> Any:
        """The next parsed reply, ``False`` when none is complete yet."""
        assert self._parser is not None
        try:
            return self._parser.gets()
        except hiredis.ProtocolError as exc:
            raise self._not_redis(exc) from None

    def _not_redis(self, exc: Exception) -> RedisConnectionError:
        # Not Redis on the other end (a proxy's or an HTTP server's answer): a broken
        # connection for the subscriber, which reconnects, as redis-py reports it; not
        # hiredis's own error, which ended the subscriber's task.
        return RedisConnectionError(f"not a Redis reply from {self._host}:{self._port}: {exc}")

    async def _fill(self, reader: asyncio.StreamReader) -> None:
        try:
            chunk = await reader.read(READ_SIZE)
        except OSError as exc:
            raise RedisConnectionError(f"connection to Redis lost: {exc}") from None
        if not chunk:
            raise RedisConnectionError("connection closed by the Redis server")
        assert self._parser is not None
        self._parser.feed(chunk)

    async def subscribe(self, *channels: str) -> None:
        """Ask for ``channels``; each confirmation comes as a ``subscribe`` message."""
        _, writer = await self._connection()
        writer.write(_command("SUBSCRIBE", *channels))

    async def unsubscribe(self, *channels: str) -> None:
        """Stop ``channels``; each comes back as an ``unsubscribe`` message."""
        _, writer = await self._connection()
        writer.write(_command("UNSUBSCRIBE", *channels))

    async def ssubscribe(self, *channels: str) -> None:
        """``SSUBSCRIBE`` (one slot's channels); confirmed by ``ssubscribe`` messages."""
        _, writer = await self._connection()
        writer.write(_command("SSUBSCRIBE", *channels))

    async def sunsubscribe(self, *channels: str) -> None:
        """``SUNSUBSCRIBE``; each comes back as an ``sunsubscribe`` message."""
        _, writer = await self._connection()
        writer.write(_command("SUNSUBSCRIBE", *channels))

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: float | None = 0.0) -> dict[str, Any] | None:
        """The next message; waits for one up to ``timeout`` seconds (``None``: until
        one comes), then ``None``."""
        pending = self._pending
        while not pending:
            reader, _ = await self._connection()
            self._parse_all()  # what a read that timed out had already fed the parser
            if pending:
                break
            if timeout is None:
                await self._fill(reader)
            else:
                try:
                    await asyncio.wait_for(self._fill(reader), timeout)
                except asyncio.TimeoutError:
                    return None
            self._parse_all()
        message = pending.popleft()
        if ignore_subscribe_messages and message["type"] != "message":
            return None
        return message

    def _parse_all(self) -> None:
        assert self._parser is not None
        gets, pending = self._parser.gets, self._pending  # per message: no wrapper call
        try:
            while (reply := gets()) is not False:
                if isinstance(reply, Exception):
                    raise ResponseError(str(reply))
                if isinstance(reply, list) and len(reply) == 3:
                    kind = _PUSH_TYPES.get(reply[0])
                    if kind is not None:
                        pending.append({"type": kind, "pattern": None,
                                        "channel": reply[1], "data": reply[2]})
        except hiredis.ProtocolError as exc:
            raise self._not_redis(exc) from None

    async def aclose(self) -> None:
        """Close the connection (the next call connects again)."""
        writer, self._reader, self._writer = self._writer, None, None
        self._pending.clear()
        if self._parser is not None:
            self._parser = hiredis.Reader()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, RedisConnectionError):
                await writer.wait_closed()
