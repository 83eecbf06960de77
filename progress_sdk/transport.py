"""Delivery to Redis: one connection, owned by the publisher's sender thread.

Batches go out with protocol pipelining (every PUBLISH of a batch written at once, then
the replies read), which is what a non-transactional redis-py pipeline does; the
connection is driven directly so that the two ways a batch can fail stay apart:

- ``ConnectFailed``: no connection could be made, nothing was written. The batch is
  kept and sent again once Redis answers.
- ``DeliveryUnknown``: the connection failed after bytes were written; ``confirmed``
  events got their reply. When the connection was closed or reset (a restart, a cut
  proxy), Redis had almost certainly not processed the rest, so the publisher sends them
  again (``retry``): the buffered lifecycle events must arrive once Redis is back. When
  a reply timed out, Redis may well have published them, and pub/sub is at-most-once,
  so they are counted as lost rather than sent twice (a repeated ``seq`` is a contract
  error; a gap is reported as loss).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis

from . import defaults as d
from .exceptions import ConfigurationError

_SECRET_IN_URL = re.compile(r"(?<=://)([^/@]*)@")


def mask_url(url: str) -> str:
    """Hide the password (and user-only secret) in a Redis URL, for logs and reprs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _SECRET_IN_URL.sub("***@", url)
    if parts.password is None and not (parts.username and "@" in parts.netloc):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username if parts.password is not None else None
    auth = f"{user}:***" if user else ":***" if parts.password is not None else "***"
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))


class Transport(Protocol):
    """Where a publisher's sender thread delivers serialised events."""

    description: str

    def publish(self, payloads: list[bytes]) -> int:
        """Deliver in order; return receivers. Raise ConnectFailed, DeliveryUnknown or
        Rejected."""

    def check(self) -> None:
        """Raise ConnectFailed if the destination cannot be reached."""

    def close(self) -> None:
        """Release connections."""

    def after_fork_in_child(self) -> None:
        """Drop state inherited from the parent process."""


class ConnectFailed(Exception):
    """No connection to Redis; nothing of the batch was written."""


class Rejected(Exception):
    """Redis answered some PUBLISH commands with an error (an ACL denying the channel,
    say): those events will never be accepted; the others of the batch were published."""

    def __init__(self, message: str, rejected: int, receivers: int) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.receivers = receivers


class DeliveryUnknown(Exception):
    """The connection broke mid-batch; ``confirmed`` events are known to be published."""

    def __init__(
        self, message: str, confirmed: int, receivers: int, *, retry: bool, rejected: int = 0
    ) -> None:
        super().__init__(message)
        self.confirmed = confirmed  # replies read, refusals (``rejected``) included
        self.receivers = receivers
        self.retry = retry
        self.rejected = rejected


def describe_target(target: object) -> str:
    """A password-free description of where events go, for reprs and log lines."""
    if isinstance(target, str):
        return mask_url(target)
    pool = target.connection_pool if isinstance(target, redis.Redis) else target
    if isinstance(pool, redis.ConnectionPool):
        kwargs: dict[str, Any] = pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
        return (
            f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        )
    return type(target).__name__


class RedisTransport:
    """Publishes batches of serialised events to one channel over one connection."""

    def __init__(self, target: str | redis.Redis | redis.ConnectionPool, channel: str) -> None:
        self.channel = channel
        self.description = describe_target(target)
        if isinstance(target, str):
            try:
                self.pool = redis.ConnectionPool.from_url(
                    target,
                    socket_timeout=d.SOCKET_TIMEOUT,
                    socket_connect_timeout=d.CONNECT_TIMEOUT,
                )
            except ValueError as exc:
                raise ConfigurationError(
                    f"unusable Redis URL {mask_url(target)!r}: {exc}; use redis://host:port/db, "
                    "rediss:// for TLS or unix:///path/to/socket"
                ) from None
            self._owns_pool = True
        elif isinstance(target, redis.Redis):
            self.pool = target.connection_pool
            self._owns_pool = False
        elif isinstance(target, redis.ConnectionPool):
            self.pool = target
            self._owns_pool = False
        else:
            raise ConfigurationError(
                f"redis= must be a URL string, a redis.Redis client or a redis.ConnectionPool, "
                f"got {type(target).__name__}"
            )
        self._conn: Any = None
        self._pid = os.getpid()
        self._channel_bytes = channel.encode()

    def _connection(self) -> Any:
        conn = self._conn
        if conn is None:
            try:
                conn = self.pool.get_connection()
            except (redis.RedisError, OSError) as exc:
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
            self._conn = conn
            return conn
        try:
            # A server that restarted or a proxy that was cut closes our socket; it then
            # reads as "ready" (EOF). Reconnect before writing, so a batch is not written
            # into a dead socket and wrongly reported as of unknown fate.
            if conn.can_read():
                conn.disconnect()
            conn.connect()
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        return conn

    def publish(self, payloads: list[bytes]) -> int:
        """PUBLISH every payload, in order. Returns the summed receiver counts.

        Raises ConnectFailed (nothing written) or DeliveryUnknown (partly confirmed).
        """
        conn = self._connection()
        channel = self._channel_bytes
        confirmed = 0
        receivers = 0
        rejected: list[str] = []
        try:
            # One buffer, one sendall: redis-py would send the packed chunks (~6 KB each)
            # one by one, and each socket call gives up the interpreter lock, which a
            # busy job thread then holds for up to 5 ms (sys.getswitchinterval()) before
            # the sender gets it back: ~70 ms per batch of 500 instead of a few.
            packed = b"".join(conn.pack_commands([("PUBLISH", channel, p) for p in payloads]))
            conn.send_packed_command([packed], check_health=False)
            for _ in payloads:
                try:
                    receivers += int(conn.read_response())
                except redis.ResponseError as exc:
                    # An error reply: the connection is fine, this command was refused.
                    rejected.append(str(exc))
                confirmed += 1
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()
            timed_out = isinstance(exc, (redis.TimeoutError, TimeoutError))
            raise DeliveryUnknown(
                f"{type(exc).__name__}: {exc}",
                confirmed,
                receivers,
                retry=not timed_out,
                rejected=len(rejected),
            ) from exc
        if rejected:
            raise Rejected(f"ResponseError: {rejected[0]}", len(rejected), receivers)
        return receivers

    def check(self) -> None:
        """Connect and PING on a separate pooled connection (the sender's stays its own,
        since this runs on the caller's thread); raises ConnectFailed with the reason."""
        try:
            redis.Redis(connection_pool=self.pool).ping()
        except (redis.RedisError, OSError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Return the connection; disconnect the pool if the transport made it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                self.pool.release(conn)
        if self._owns_pool:
            with contextlib.suppress(Exception):
                self.pool.disconnect()

    def after_fork_in_child(self) -> None:
        """Forget the parent's connection and pool without touching their sockets."""
        # The sockets are shared with the parent: closing them here would cut its
        # connections. The parent's pool is replaced, not reused: redis-py resets a pool
        # in the child under the pool's lock, which the parent's sender may have held at
        # the moment of the fork (while connecting), and then the child waits forever.
        self._conn = None
        self._pid = os.getpid()
        old = self.pool
        try:
            self.pool = type(old)(
                connection_class=old.connection_class,
                max_connections=old.max_connections,
                **old.connection_kwargs,
            )
        except Exception:  # an exotic pool: keep it; redis-py resets it on first use
            return
        self._owns_pool = True
