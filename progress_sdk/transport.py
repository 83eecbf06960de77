"""Delivery to Redis: one connection, owned by the publisher's sender thread.

Batches go out with protocol pipelining (every PUBLISH of a batch written at once, then
the replies read). ``publish`` reports what happened as a value, ``Delivery``:

- ``published``: events Redis confirmed; ``refused``: events Redis answered with an
  error (an ACL, a wrong type): sending them again cannot help.
- ``not_sent``: events at the end of the batch without a reply, or that Redis answered
  with a transient error (BUSY, LOADING, READONLY...: not run now, see
  ``_resp.TRANSIENT_ERRORS``). ``resend`` says whether they are safe to send again: no
  connection could be made (nothing written), the connection was closed or reset (a
  restart, a cut proxy) and Redis had almost certainly not processed them, or Redis said
  it did not run them. When a reply timed out, Redis may well have published them, and
  pub/sub is at-most-once, so ``resend`` is False: they are counted as lost rather than
  sent twice (a repeated ``seq`` is a contract error; a gap is reported as loss).

Exceptions are for the exceptional (a bug); ``ConnectFailed`` is what ``check`` raises.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from . import defaults as d
from ._resp import Activity, ReplyReader, Tally, frame_command, frame_publishes, send_all
from .exceptions import ConfigurationError
from .redis_urls import check_redis_url, mask_url

# mask_url is re-exported: code that describes a transport masks with it from here;
# Activity too: a transport of another module reports its progress with it.
__all__ = [
    "Activity",
    "BatchGuard",
    "Command",
    "ConnectFailed",
    "Delivery",
    "RedisTransport",
    "Transport",
    "closed_by_peer",
    "describe_target",
    "mask_url",
]

Command = Sequence[bytes | str | int | float]
"""A Redis command as its arguments, e.g. ``(b"SET", key, value)``."""


@dataclass(frozen=True)
class Delivery:
    """What became of a batch of events handed to ``Transport.publish``."""

    published: int
    """Events Redis confirmed (the first replies of the batch, refusals aside)."""
    refused: int = 0
    """Events Redis answered with an error: sending them again cannot help."""
    not_sent: int = 0
    """Events at the end of the batch that got no reply or a transient error reply."""
    resend: bool = True
    """Whether the ``not_sent`` events certainly were not processed (safe to send again)."""
    receivers: int = 0
    """Subscribers that received the published events, summed."""
    error: str | None = None
    """Why not everything was published: the first error, password-free."""
    extra_failed: int = 0
    """Extra commands of the batch (``Transport.publish``'s ``extra``) that failed."""
    extra_error: str | None = None
    """Why the first failed extra command failed (its error reply, or the connection's
    error), password-free."""
    unsent: tuple[int, ...] | None = None
    """Positions in the batch of the ``not_sent`` events when they are not simply its
    last ones (a Redis Cluster batch spans masters, and one master may fail alone)."""
    written: bool = True
    """Whether the batch was written to a connection. A ``not_sent`` event of a written
    batch may have been published all the same (a connection cut after Redis forwarded
    it: the contract's duplicates), so the buffer counts its start as maybe on screen;
    False only when no connection could be made."""

    @classmethod
    def nothing_sent(cls, count: int, error: str) -> Delivery:
        """No connection: none of ``count`` events was written."""
        return cls(published=0, not_sent=count, resend=True, error=error, written=False)


class Transport(Protocol):
    """Where a publisher's sender thread delivers serialised events.

    A transport may also have an ``activity`` attribute (an ``Activity``) that its
    ``publish`` keeps up to date: then a run's end judges a stall by bytes that stopped
    moving on a working connection, not by how long the call has taken (the sender's
    ``stalled``). Without one, a call that takes longer than the stall notice is taken
    for a stall.
    """

    description: str

    def publish(
        self,
        payloads: list[bytes],
        extra: Sequence[Command] = (),
        channels: Sequence[bytes] | None = None,
    ) -> Delivery:
        """Run ``extra`` commands, then PUBLISH ``payloads`` in order, in the same batch
        (the extras' replies are not events); ``channels``, when given, names each
        payload's channel (shard channels). May raise ``ConnectFailed`` (nothing
        written)."""

    def check(self) -> None:
        """Raise ConnectFailed if the destination cannot be reached."""

    def close(self) -> None:
        """Release connections."""

    def after_fork_in_child(self) -> None:
        """Drop state inherited from the parent process."""


class ConnectFailed(Exception):
    """No connection to Redis; nothing of the batch was written."""


def _broken_delivery(events: int, extras: int, tally: Tally, exc: BaseException) -> Delivery:
    """The connection failed after the batch was written, ``tally.replies`` replies in."""
    if tally.replies < extras:
        tally.extra_errors = tally.errors
    answered = max(0, tally.replies - extras)
    extra_failed = tally.extra_errors + max(0, extras - tally.replies)
    if tally.extra_errors:
        extra_error: str | None = mask_url(tally.first_error)
    else:
        extra_error = mask_url(f"{type(exc).__name__}: {exc}") if extra_failed else None
    timed_out = isinstance(exc, (redis.TimeoutError, TimeoutError))
    # Answered with a transient error right before the reset: not run, resent with the rest
    # (after a timeout the rest is of unknown fate, so they stay refused).
    not_run = 0 if timed_out else min(tally.transient_tail(), answered)
    refused = max(0, tally.errors - tally.extra_errors) - not_run
    return Delivery(
        published=answered - refused - not_run,
        refused=refused,
        not_sent=events - answered + not_run,
        resend=not timed_out,
        receivers=tally.receivers,
        error=mask_url(f"{type(exc).__name__}: {exc}"),
        extra_failed=extra_failed,
        extra_error=extra_error,
    )


def _answered_delivery(events: int, tally: Tally) -> Delivery:
    """Every reply of the batch read. Events whose PUBLISH Redis answered with a transient
    error (``_resp.TRANSIENT_ERRORS``: BUSY, LOADING...) from some point to the end of the
    batch were not run: not sent, safe to send again. Earlier ones cannot be: later events
    of the same media went out, and consumers drop an event older than the last they saw;
    they are refused, like every permanent error (NOPERM, WRONGTYPE, ERR...)."""
    not_run = min(tally.transient_tail(), events)
    refused = max(0, tally.errors - tally.extra_errors) - not_run
    return Delivery(
        published=events - refused - not_run,
        refused=refused,
        not_sent=not_run,
        resend=True,
        receivers=tally.receivers,
        error=mask_url(f"ResponseError: {tally.first_error}") if tally.errors else None,
        extra_failed=tally.extra_errors,
        # The extras come first: their first error is the batch's first.
        extra_error=mask_url(tally.first_error) if tally.extra_errors else None,
    )


def closed_by_peer(conn: Any) -> bool:
    """Whether an idle connection was closed by the other side (a restarted server, a cut
    proxy), so the batch is written to a new one, not into a dead socket where it would
    be reported as of unknown fate. redis-py reads such a socket as "ready" (EOF), or
    raises while looking (hiredis)."""
    try:
        return bool(conn.can_read())
    except (redis.ConnectionError, OSError):
        return True


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


class BatchGuard:
    """Keeps ``close()`` (on a caller's thread) from taking connections from under a batch
    in progress (on the sender's): close() after giving up on a sender stuck on a slow
    Redis would otherwise hand a connection with replies still on their way back to a
    pool, maybe the user's own, whose next user reads them as its answers. A close() that
    comes during a batch is done by the batch when it is over. (If it comes just as the
    batch ends, after the batch looked, the sender's own exit, which follows a close(),
    closes the transport.)"""

    def __init__(self) -> None:
        self._in_use = threading.Lock()
        self._close_pending = False

    @contextlib.contextmanager
    def batch(self, close: Callable[[], None]) -> Iterator[None]:
        """Around one batch: ``close`` runs at its end if close() was asked meanwhile."""
        with self._in_use:
            try:
                yield
            finally:
                if self._close_pending:
                    self._close_pending = False
                    close()

    def close(self, close: Callable[[], None]) -> None:
        """Run ``close`` now, or at the end of the batch in progress."""
        if not self._in_use.acquire(blocking=False):
            self._close_pending = True
            return
        try:
            self._close_pending = False
            close()
        finally:
            self._in_use.release()


class RedisTransport:
    """Publishes batches of serialised events to one channel over one connection."""

    def __init__(self, target: str | redis.Redis | redis.ConnectionPool, channel: str) -> None:
        self.channel = channel
        self.description = describe_target(target)
        if isinstance(target, str):
            check_redis_url(target)
            self.pool = redis.ConnectionPool.from_url(
                target,
                socket_timeout=d.SOCKET_TIMEOUT,
                socket_connect_timeout=d.CONNECT_TIMEOUT,
            )
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
        self._guard = BatchGuard()
        self.reconnects = 0
        """Connections made after the first (a restart, a cut, a failed batch), whether
        or not a batch failed first: what ``stats().reconnects`` reports."""
        self._made = 0  # connections made
        self.on_new_server: Callable[[], Sequence[Command]] | None = None
        """The commands to write first on a connection to a server other than the last
        one a batch was written to whole (a restart, a failover): the publisher's
        snapshots, rewritten whole (``SnapshotHook.rewrite_commands``)."""
        self._server: str | None = None  # the run_id a batch with those commands reached
        self._pid = os.getpid()
        self._channel_bytes = channel.encode()
        self.activity = Activity()

    def _connection(self) -> Any:
        conn = self._conn
        if conn is None:
            try:
                conn = self.pool.get_connection()
            except (redis.RedisError, OSError) as exc:
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
            self._conn = conn
            self._count_connection()
            return conn
        try:
            before = getattr(conn, "_sock", None)
            if before is not None and closed_by_peer(conn):
                conn.disconnect()
            conn.connect()  # a no-op while connected
            if getattr(conn, "_sock", None) is not before:
                self._count_connection()
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        return conn

    def publish(
        self,
        payloads: list[bytes],
        extra: Sequence[Command] = (),
        channels: Sequence[bytes] | None = None,
    ) -> Delivery:
        """Run the ``extra`` commands, then PUBLISH every payload in order on the
        transport's channel (or each on its ``channels`` entry), in one write; see
        ``Delivery``."""
        with self._guard.batch(self._disconnect):
            return self._publish(payloads, extra, channels)

    def _publish(
        self, payloads: list[bytes], extra: Sequence[Command], channels: Sequence[bytes] | None
    ) -> Delivery:
        asked, made = time.monotonic(), self._made
        try:
            conn = self._connection()
        except ConnectFailed as exc:
            return Delivery.nothing_sent(len(payloads), mask_url(str(exc)))
        # Connecting (TCP, AUTH/HELLO/SELECT) is over: from here on a stall is a lack of
        # bytes moving, not the time the call has taken.
        self.activity.connected(time.monotonic() - asked if self._made != made else None)
        server: str | None = None
        if self._made != made and self.on_new_server is not None:
            try:
                extra, server = self._after_new_connection(conn, extra)
            except (redis.RedisError, OSError) as exc:
                conn.disconnect()
                error = mask_url(f"{type(exc).__name__}: {exc}")
                return Delivery.nothing_sent(len(payloads), error)
        sock = getattr(conn, "_sock", None)
        tally = Tally()
        try:
            # One buffer, one write: each socket call gives up the interpreter lock,
            # which a busy job thread then holds for up to 5 ms (sys.getswitchinterval())
            # before the sender gets it back.
            if isinstance(sock, socket.socket):
                self._publish_framed(sock, payloads, extra, channels, tally)
            else:  # a connection without a plain socket (fakeredis): the generic client
                self._publish_generic(conn, payloads, extra, channels, tally)
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()
            return _broken_delivery(len(payloads), len(extra), tally, exc)
        except BaseException:
            # A bug left the batch's replies unread: they may still arrive, and whoever
            # uses this connection next (job code, if the pool is the user's) would read
            # them as its own answers. Disconnected, it reconnects on its next use.
            conn.disconnect()
            raise
        delivery = _answered_delivery(len(payloads), tally)
        if server is not None and not delivery.extra_failed:
            self._server = server
        if delivery.not_sent:
            # Not serving now: the retry connects afresh, which after a failover behind a
            # proxy or DNS name (READONLY) reaches the new master.
            conn.disconnect()
        return delivery

    def _publish_framed(
        self,
        sock: socket.socket,
        payloads: list[bytes],
        extra: Sequence[Command],
        channels: Sequence[bytes] | None,
        tally: Tally,
    ) -> None:
        # RESP framed here and replies counted in bulk: redis-py's per-command packing
        # and per-reply parsing cost more than the rest of the sender together.
        parts = [frame_command(command) for command in extra]
        if channels is None:
            parts += frame_publishes(self._channel_bytes, payloads)
        else:
            pairs = zip(channels, payloads, strict=True)
            parts += (frame_command((b"PUBLISH", c, p)) for c, p in pairs)
        send_all(sock, b"".join(parts), d.REPLY_PATIENCE, self.activity)
        reader = ReplyReader(sock, patience=d.REPLY_PATIENCE, activity=self.activity)
        reader.read_others(len(extra), tally)
        tally.extra_errors = tally.errors
        reader.read_publishes(len(payloads), tally)

    def _publish_generic(
        self,
        conn: Any,
        payloads: list[bytes],
        extra: Sequence[Command],
        channels: Sequence[bytes] | None,
        tally: Tally,
    ) -> None:
        targets = channels if channels is not None else [self._channel_bytes] * len(payloads)
        pairs = zip(targets, payloads, strict=True)
        commands: list[Any] = [*extra, *(("PUBLISH", c, p) for c, p in pairs)]
        conn.send_packed_command([b"".join(conn.pack_commands(commands))], check_health=False)
        self.activity.wrote()
        for i in range(len(commands)):
            try:
                # Every reply is read, the extras' too (their replies are not counts).
                reply = conn.read_response()
                self.activity.answered()
                tally.add(False, int(reply) if i >= len(extra) else 0, "")
            except redis.ResponseError as exc:
                # An error reply: the connection is fine, this command was refused.
                self.activity.answered()
                tally.add(True, 0, str(exc))
            if i + 1 == len(extra):
                tally.extra_errors = tally.errors

    def _after_new_connection(
        self, conn: Any, extra: Sequence[Command]
    ) -> tuple[Sequence[Command], str | None]:
        """``extra``, after ``on_new_server``'s commands when the server just reached is
        not the one the last batch was written to whole; and the server's run_id (None:
        the same server, nothing to write). A restarted Redis without persistence lost
        every key, and the snapshot writes since the publisher's last whole write are of
        changed fields alone. One INFO per new connection; a server that does not say
        its run_id (INFO refused by an ACL) counts as a new one every time."""
        if self._made == 1:  # the first connection: nothing was written before
            self._server = self._run_id(conn)
            return extra, None
        server = self._run_id(conn)
        if server is not None and server == self._server:
            return extra, None
        assert self.on_new_server is not None
        return [*self.on_new_server(), *extra], server or ""

    def touch(self) -> None:
        """Between batches (the sender's liveness timer, while media are open): when the
        connection was closed by its server (a restart), connect again and, on another
        server, write ``on_new_server``'s commands. So a silent publisher's snapshots are
        back within a liveness refresh of a restart, not at its next event. Nothing is
        sent on a connection that is still open."""
        if self._conn is not None and self.on_new_server is not None:
            self.publish([])

    @staticmethod
    def _run_id(conn: Any) -> str | None:
        try:
            conn.send_command("INFO", "server", check_health=False)
            info = conn.read_response()
        except redis.ResponseError:
            return None
        text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("run_id:"):
                return line[len("run_id:"):].strip()
        return None

    def _count_connection(self) -> None:
        if self._made:
            self.reconnects += 1
        self._made += 1

    def check(self) -> None:
        """Connect and PING on a separate pooled connection (the sender's stays its own,
        since this runs on the caller's thread); raises ConnectFailed with the reason."""
        try:
            redis.Redis(connection_pool=self.pool).ping()
        except (redis.RedisError, OSError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Return the connection; disconnect the pool if the transport made it. During a
        batch (another thread's publish), the connection is left to that thread, which
        closes it when the batch is over."""
        self._guard.close(self._disconnect)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Every reply of its batches was read (or it was disconnected), so the pool,
            # maybe the user's own, can hand it out to anyone.
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
        self._guard = BatchGuard()  # the parent's sender may have held it
        self.reconnects = 0  # the child's publisher counts afresh
        self._made = 0
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
