"""Redis Cluster: telling a cluster node from a single server, and who serves which slot.

A URL of any node of a cluster is enough: ``is_cluster`` asks that node (``INFO cluster``
says ``cluster_enabled:1``), so no separate option is needed. ``SlotMap`` reads the slot
owners and their replicas (``CLUSTER SHARDS``, Redis 7) from whichever known node
answers, remembers every node it heard of so a later refresh still finds one after the
seed node died, and hands out connections to a node with the URL's credentials and TLS settings.
Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) routes a channel by the hash slot of its
name, like a key; ``slot_of`` is that slot.

The publisher's side: ``ClusterTransport`` publishes with ``SPUBLISH``, pipelined per
master; ``DetectingTransport`` decides on first use (on the sender thread, so building a
publisher does no I/O) whether a URL names a cluster node or a single server;
``transport_for`` picks the transport for what ``ProgressPublisher(redis=...)`` was given.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from . import defaults as d
from ._resp import TRANSIENT_ERRORS, Activity
from .exceptions import ConfigurationError
from .redis_urls import check_redis_url, mask_url
from .transport import (
    BatchGuard,
    Command,
    ConnectFailed,
    Delivery,
    RedisTransport,
    Transport,
    closed_by_peer,
)

__all__ = [
    "Address",
    "ClusterTransport",
    "DetectingTransport",
    "SlotMap",
    "client_for",
    "is_cluster",
    "slot_of",
    "transport_for",
]

Address = tuple[str, int]

logger = logging.getLogger("progress_sdk")


def slot_of(name: str | bytes) -> int:
    """The hash slot (0..16383) of a key or shard channel name."""
    return int(key_slot(name.encode() if isinstance(name, str) else name))


def _pool_from_url(url: str) -> redis.ConnectionPool:
    check_redis_url(url)  # ConfigurationError, password masked
    return redis.ConnectionPool.from_url(url)


def is_cluster(url: str, timeout: float = d.CONNECT_TIMEOUT) -> bool:
    """Whether the server at ``url`` is a Redis Cluster node; raises redis errors when it
    cannot be asked."""
    pool = _pool_from_url(url)
    pool.connection_kwargs.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    client = redis.Redis(connection_pool=pool)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    finally:
        client.close()
        pool.disconnect()


def client_for(
    url: str, *, timeout: float = d.CONNECT_TIMEOUT, socket_timeout: float = 5.0
) -> redis.Redis | redis.RedisCluster:
    """A client for ``url``: a ``RedisCluster`` when the node is part of a cluster (every
    command routed to its key's master), else a plain ``Redis``. Asks the node (``INFO
    cluster``), so raises redis errors when it cannot be reached."""
    try:
        cluster = is_cluster(url, timeout)
    except redis.ResponseError:  # INFO not allowed for this user: a plain server
        cluster = False
    if cluster:
        return redis.RedisCluster.from_url(url, socket_connect_timeout=timeout,
                                           socket_timeout=socket_timeout)
    return redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                socket_timeout=socket_timeout)


class SlotMap:
    """The cluster's slot owners, refreshed on demand from any node that answers."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = d.CONNECT_TIMEOUT,
        connection_kwargs: dict[str, Any] | None = None,
        connection_class: type[redis.connection.AbstractConnection] | None = None,
    ) -> None:
        pool = _pool_from_url(url)
        kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        if connection_kwargs is not None:  # a RedisCluster client's: credentials, TLS
            kwargs.update(connection_kwargs)
        if "path" in kwargs:
            raise ConfigurationError("a Redis Cluster is reached over TCP, not a unix socket")
        self.description = mask_url(url)
        # A RedisCluster client's (TLS, say) wins over what the URL says.
        self._connection_class = connection_class or pool.connection_class
        self._kwargs = kwargs
        self._timeout = timeout
        self._known: list[Address] = [(str(kwargs.get("host", "127.0.0.1")),
                                       int(kwargs.get("port", 6379)))]
        self._ranges: list[tuple[int, int, Address, tuple[Address, ...]]] = []

    def client(self, address: Address, *, socket_timeout: float | None = None) -> redis.Redis:
        """A client of one node, without redis-py's retries: a dead node must fail fast
        so the caller can look for the slot's new owner."""
        kwargs = {**self._kwargs, "host": address[0], "port": address[1],
                  "socket_connect_timeout": self._timeout,
                  "socket_timeout": socket_timeout or self._timeout,
                  "retry": Retry(NoBackoff(), 0)}
        pool = redis.ConnectionPool(connection_class=self._connection_class, **kwargs)
        return redis.Redis(connection_pool=pool)

    def refresh(self) -> None:
        """Read ``CLUSTER SHARDS`` from the first known node that answers; raises
        ``redis.ConnectionError`` naming the last failure when none does."""
        failure = "no node known"
        for address in list(self._known):
            client = self.client(address)
            try:
                reply = client.execute_command("CLUSTER", "SHARDS")  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError) as exc:
                failure = f"{address[0]}:{address[1]}: {type(exc).__name__}: {exc}"
                continue
            finally:
                with contextlib.suppress(Exception):
                    client.close()
                    client.connection_pool.disconnect()
            self._learn(reply, address)
            return
        raise redis.ConnectionError(f"no Redis Cluster node answered ({failure})")

    def _learn(self, reply: list[Any], asked: Address) -> None:
        ranges: list[tuple[int, int, Address, tuple[Address, ...]]] = []
        seen: list[Address] = [asked]
        for raw_shard in reply:
            shard = _as_dict(raw_shard)
            master: Address | None = None
            replicas: list[Address] = []
            for raw_node in shard.get("nodes", []):
                node = _as_dict(raw_node)
                if _text(node.get("health")) == "fail":
                    continue
                address = self._address(node, asked)
                if address not in seen:
                    seen.append(address)
                if _text(node.get("role")) == "master":
                    master = address
                else:
                    replicas.append(address)
            bounds = [int(b) for b in shard.get("slots", [])]
            if master is not None:
                for start, end in zip(bounds[::2], bounds[1::2], strict=True):
                    ranges.append((start, end, master, tuple(replicas)))
        self._ranges = sorted(ranges)
        # Nodes just heard of first; older ones kept (a node may be down for a moment).
        self._known = seen + [a for a in self._known if a not in seen]

    @staticmethod
    def _address(node: dict[str, Any], asked: Address) -> Address:
        host = _text(node.get("endpoint"))
        if host in ("", "?"):
            host = _text(node.get("ip")) or asked[0]
        return (host, int(node.get("port") or node.get("tls-port") or 0))

    def _range(self, name: str | bytes) -> tuple[int, int, Address, tuple[Address, ...]] | None:
        slot = slot_of(name)
        for entry in self._ranges:
            if entry[0] <= slot <= entry[1]:
                return entry
        return None

    def owner(self, name: str | bytes) -> Address | None:
        """The master serving ``name``'s slot as last read (None: not covered / not read)."""
        entry = self._range(name)
        return None if entry is None else entry[2]

    def shard(self, name: str | bytes) -> tuple[Address, ...]:
        """Every healthy node of the shard serving ``name``'s slot: its master first, then
        its replicas (empty: not covered / not read)."""
        entry = self._range(name)
        return () if entry is None else (entry[2], *entry[3])

    @property
    def masters(self) -> list[Address]:
        """Distinct masters as last read."""
        return sorted({entry[2] for entry in self._ranges})


def _key_of(command: Command) -> bytes | str | None:
    """The key a command is routed by: ``EVAL``/``EVALSHA``'s first key, else its first
    argument; None for a command without one (``SCRIPT LOAD``, ``EVAL`` of no key)."""
    name = str(command[0].decode() if isinstance(command[0], bytes) else command[0]).upper()
    if name in ("SCRIPT", "FUNCTION", "PING"):
        return None
    if name in ("EVAL", "EVALSHA", "FCALL"):
        index = 3 if int(command[2]) > 0 else None
    else:
        index = 1 if len(command) > 1 else None
    if index is None:
        return None
    key = command[index]
    return key if isinstance(key, (bytes, str)) else str(key)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)


def _as_dict(value: Any) -> dict[str, Any]:
    """A CLUSTER SHARDS map, whether redis-py gave a dict or a flat key/value list."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    return {_text(k): v for k, v in zip(value[::2], value[1::2], strict=True)}


# -- publishing ----------------------------------------------------------------------------

_NOT_RUN = TRANSIENT_ERRORS | {"MOVED", "ASK"}
"""Error reply codes meaning the node did not run the command: the slot is served
elsewhere (``MOVED``, ``ASK``), or the node cannot serve it now (``BUSY``, ``LOADING``,
``READONLY``...: ``_resp.TRANSIENT_ERRORS``, the single-server rule). Safe to send again
once the slot map is read afresh, unless a later event of its channel was published
(``_keep_order``)."""

_OK, _REFUSED, _RESEND, _UNKNOWN = 0, 1, 2, 3

# redis-py raises an error reply as an exception named after the reply's first word, and
# drops that word from the text; subclasses come before their base classes here.
_ERROR_CODES: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.MovedError, "MOVED"),
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.ClusterCrossSlotError, "CROSSSLOT"),
)

# What read_response raises for an error reply: the connection itself is fine (LOADING
# comes as a ConnectionError subclass).
_REPLY_ERRORS = (redis.ResponseError, redis.exceptions.BusyLoadingError)


def _reply_text(exc: Exception) -> str:
    """An error reply's text as Redis wrote it (``MOVED 3999 host:port``)."""
    text = str(exc)
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return text if text.split(" ", 1)[0] == code else f"{code} {text}"
    return text


def _keep_order(outcomes: list[int], names: Sequence[bytes]) -> None:
    """Refuse, instead of resending, an event not run when a later event of its channel
    was published: sent again, it would arrive behind that one, and consumers drop an
    event older than the last they saw of its media (the single-server rule, per channel:
    a channel's events all go to one master, in order)."""
    published_later: set[bytes] = set()
    for i in range(len(outcomes) - 1, -1, -1):
        if outcomes[i] == _OK:
            published_later.add(names[i])
        elif outcomes[i] == _RESEND and names[i] in published_later:
            outcomes[i] = _REFUSED


class ClusterTransport:
    """Publishes batches with ``SPUBLISH`` on a Redis Cluster, pipelined per master.

    A batch's events are grouped by the master serving their channel's slot; every
    group is written at once (one buffer per master), then the replies are read. Before
    writing, a connection to every master concerned must be up: if one cannot be made,
    nothing is written and the whole batch waits (an outage, as on one server), since a
    dead master's slots move to its replica within seconds. A ``MOVED``/``ASK`` reply, one
    that says the node cannot serve now (``BUSY``, ``LOADING``, ``READONLY``,
    ``TRYAGAIN``, ``MASTERDOWN``, ``CLUSTERDOWN``: as on one server), or a connection
    closed or reset mid-batch, means not published: those events are sent again (with
    backoff) after the slot map is read afresh, unless a later event of their channel was
    published (then they are refused, as on one server). A reply that timed out leaves
    its events of unknown fate (counted as lost, never sent twice). When the events left
    over are not the last of the batch, ``Delivery.unsent`` lists them, so the sender
    puts back exactly those.

    A batch hook's extra commands (snapshots) are routed by their key (each touches one
    key, or keys of one slot; one without a key, such as ``SCRIPT LOAD``, runs first on
    every master the others go to) and pipelined per master like the events, in a round trip
    of their own before the events': a media's snapshot lives on its key's master while
    its events go to the channel's, and a relay that reads the snapshot after subscribing
    must find it written before the events it covers were published. An extra that
    fails is counted (``Delivery.extra_failed``), never resent; the events go out anyway.
    """

    def __init__(self, target: str | redis.RedisCluster, channel: str) -> None:
        if isinstance(target, redis.RedisCluster):
            node = target.get_default_node() or target.get_nodes()[0]  # type: ignore[no-untyped-call]
            node_pool = node.redis_connection.connection_pool
            kwargs = node_pool.connection_kwargs
            url = f"redis://{node.host}:{node.port}/0"
            self.slots = SlotMap(url, connection_kwargs=kwargs,
                                 connection_class=node_pool.connection_class)
        else:
            self.slots = SlotMap(target)
        self.description = f"Redis Cluster via {self.slots.description}"
        self.channel = channel
        self._channel_bytes = channel.encode()
        self._conns: dict[Address, Any] = {}
        self._owners: dict[bytes, Address] = {}
        self._stale = True
        self._guard = BatchGuard()
        self.activity = Activity()  # see Transport: how a run's end tells a stall
        self.reconnects = 0
        """Connections made in place of one lost (a restart, a cut, a failover: to the
        new master), whether or not a batch failed first: what ``stats().reconnects``
        reports."""
        # Connections (by id) lost and not replaced yet; a set, since a batch may find the
        # same connection failing more than once (its write, then its read).
        self._lost: set[int] = set()

    def publish(
        self,
        payloads: list[bytes],
        extra: Sequence[Command] = (),
        channels: Sequence[bytes] | None = None,
    ) -> Delivery:
        """SPUBLISH every payload on its channel (``channels``, else the transport's
        channel), pipelined per master; see the class docstring and ``Delivery``."""
        with self._guard.batch(self._disconnect):
            return self._publish(payloads, extra, channels)

    def _publish(
        self, payloads: list[bytes], extra: Sequence[Command], channels: Sequence[bytes] | None
    ) -> Delivery:
        names = channels if channels is not None else [self._channel_bytes] * len(payloads)
        try:
            groups = self._route(names)
            conns = {owner: self._connection(owner) for owner in groups}
        except ConnectFailed as exc:
            self._stale = True
            return Delivery.nothing_sent(len(payloads), mask_url(str(exc)))
        self.activity.connected()
        extra_errors: list[str] = []
        extra_failed = self._run_extras(extra, extra_errors) if extra else 0
        outcomes = [_RESEND] * len(payloads)
        receivers = 0
        errors: list[str] = []
        for owner, indices in groups.items():
            commands = [(b"SPUBLISH", names[i], payloads[i]) for i in indices]
            self._write(conns[owner], commands)
        for owner, indices in groups.items():
            receivers += self._read(conns[owner], owner, indices, outcomes, errors)
        _keep_order(outcomes, names)
        extra_error = mask_url(extra_errors[0]) if extra_errors else None
        return self._delivery(outcomes, receivers, errors, extra_failed, extra_error)

    def _run_extras(self, extra: Sequence[Command], errors: list[str]) -> int:
        """Write ``extra`` pipelined per master of each command's key and read every
        reply; the number that failed (error reply, no master, connection lost), and
        why in ``errors``."""
        groups: dict[Address, list[Command]] = {}
        keyless: list[Command] = []
        failed = 0
        for command in extra:
            key = _key_of(command)
            owner = None if key is None else self.slots.owner(key)
            if key is None:
                keyless.append(command)
            elif owner is None:
                failed += 1
                errors.append(f"no master serves the slot of {_text(key)!r}")
                self._stale = True
            else:
                groups.setdefault(owner, []).append(command)
        # A command without a key (SCRIPT LOAD) runs first on every master concerned.
        groups = {owner: [*keyless, *commands] for owner, commands in groups.items()}
        conns: dict[Address, Any] = {}
        for owner, commands in groups.items():
            try:
                conns[owner] = self._connection(owner)
                self.activity.connected()  # a master only the extras go to
            except ConnectFailed as exc:
                failed += len(commands)
                errors.append(str(exc))
                self._stale = True
                continue
            self._write(conns[owner], commands)
        for owner, conn in conns.items():
            failed += self._read_extras(conn, owner, len(groups[owner]), errors)
        return failed

    def _read_extras(self, conn: Any, owner: Address, count: int, errors: list[str]) -> int:
        failed = 0
        for n in range(count):
            try:
                conn.read_response()
                self.activity.answered()
            except _REPLY_ERRORS as exc:
                self.activity.answered()
                failed += 1
                text = _reply_text(exc)
                errors.append(f"{text} ({owner[0]}:{owner[1]})")
                if text.split(" ", 1)[0] in _NOT_RUN:
                    self._stale = True
            except (redis.RedisError, OSError) as exc:
                self._lose(conn)  # the events' pipeline reconnects to this master
                errors.append(f"{type(exc).__name__}: {exc} ({owner[0]}:{owner[1]})")
                self._stale = True
                return failed + count - n
        return failed

    def _route(self, names: Sequence[bytes]) -> dict[Address, list[int]]:
        """Indices of the batch per master; reads the slot map first when stale."""
        if self._stale:
            try:
                self.slots.refresh()
            except (redis.RedisError, OSError) as exc:
                raise ConnectFailed(str(exc)) from exc
            self._owners.clear()
            self._stale = False
        groups: dict[Address, list[int]] = {}
        for i, name in enumerate(names):
            owner = self._owners.get(name)
            if owner is None:
                owner = self.slots.owner(name)
                if owner is None:
                    self._stale = True
                    raise ConnectFailed(f"no master serves the slot of {name.decode()!r}")
                self._owners[name] = owner
            groups.setdefault(owner, []).append(i)
        return groups

    def _connection(self, owner: Address) -> Any:
        conn = self._conns.get(owner)
        try:
            if conn is None:
                conn = self.slots.client(owner).connection_pool.get_connection()
                self._conns[owner] = conn
                before = None
            else:
                before = getattr(conn, "_sock", None)
                if before is not None and closed_by_peer(conn):  # a restart or a cut
                    self._lose(conn)
            conn.connect()  # a no-op while connected
            if getattr(conn, "_sock", None) is not before and self._lost:
                self.reconnects += 1
                self._lost.pop()
        except (redis.RedisError, OSError) as exc:
            if conn is not None:
                conn.disconnect()
            raise ConnectFailed(f"{owner[0]}:{owner[1]}: {type(exc).__name__}: {exc}") from exc
        return conn

    def _lose(self, conn: Any) -> None:
        """Disconnect a connection that failed; the next one made replaces it. Counted
        whatever its state: redis-py disconnects a connection whose call failed before
        raising, so by now it may well look as if it was never connected."""
        self._lost.add(id(conn))
        conn.disconnect()

    def _write(self, conn: Any, commands: Sequence[Command]) -> None:
        try:
            conn.send_packed_command([b"".join(conn.pack_commands(commands))],
                                     check_health=False)
            self.activity.wrote()
        except (redis.RedisError, OSError):
            self._lose(conn)  # its replies fail to read below: not published, resend

    def _read(self, conn: Any, owner: Address, indices: list[int], outcomes: list[int],
              errors: list[str]) -> int:
        receivers = 0
        for n, i in enumerate(indices):
            try:
                receivers += int(conn.read_response())
                self.activity.answered()
                outcomes[i] = _OK
            except _REPLY_ERRORS as exc:
                self.activity.answered()
                text = _reply_text(exc)
                errors.append(f"{owner[0]}:{owner[1]}: {text}")
                not_run = text.split(" ", 1)[0] in _NOT_RUN
                outcomes[i] = _RESEND if not_run else _REFUSED
                self._stale = self._stale or not_run
            except (redis.RedisError, OSError) as exc:
                self._lose(conn)
                self._stale = True
                errors.append(f"{owner[0]}:{owner[1]}: {type(exc).__name__}: {exc}")
                fate = _UNKNOWN if isinstance(exc, (redis.TimeoutError, TimeoutError)) \
                    else _RESEND
                for j in indices[n:]:
                    outcomes[j] = fate
                break
        return receivers

    @staticmethod
    def _delivery(outcomes: list[int], receivers: int, errors: list[str],
                  extra: int, extra_error: str | None) -> Delivery:
        published = outcomes.count(_OK)
        # SPUBLISH counts only the master's own subscribers; consumers subscribe on
        # replicas (to outlive a failover), so the count says nothing: not reported.
        receivers = published
        refused = outcomes.count(_REFUSED)
        resend = [i for i, o in enumerate(outcomes) if o == _RESEND]
        unknown = [i for i, o in enumerate(outcomes) if o == _UNKNOWN]
        # A batch with both (one master timed out, another was reset: rare) sends none
        # again: nothing is published twice, and what is lost is counted.
        left = sorted(resend + unknown)
        error = mask_url(errors[0]) if errors else None
        if not left:
            return Delivery(published=published, refused=refused, receivers=receivers,
                            error=error, extra_failed=extra, extra_error=extra_error)
        tail = list(range(len(outcomes) - len(left), len(outcomes)))
        return Delivery(
            published=published, refused=refused, not_sent=len(left), resend=not unknown,
            receivers=receivers, error=error, extra_failed=extra, extra_error=extra_error,
            unsent=None if left == tail else tuple(left),
        )

    def check(self) -> None:
        """Read the slot map and PING every master; raises ConnectFailed with the reason."""
        try:
            self.slots.refresh()
            for owner in self.slots.masters:
                client = self.slots.client(owner)
                try:
                    client.ping()
                finally:
                    client.close()
                    client.connection_pool.disconnect()
        except (redis.RedisError, OSError) as exc:
            raise ConnectFailed(mask_url(f"{type(exc).__name__}: {exc}")) from exc

    def close(self) -> None:
        """Close every connection (left to the thread publishing a batch, if any, which
        closes them when it is over)."""
        self._guard.close(self._disconnect)

    def _disconnect(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            with contextlib.suppress(Exception):
                conn.disconnect()

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections without touching their sockets."""
        self._conns = {}
        self._guard = BatchGuard()  # the parent's sender may have held it
        self.reconnects = 0  # the child's publisher counts afresh
        self._lost = set()
        self._stale = True


class DetectingTransport:
    """The transport of a URL, chosen on first use: ``ClusterTransport`` when the node
    says it is part of a cluster, else ``RedisTransport``. The URL is checked at once
    (``ConfigurationError``); the question is asked on the sender thread, and while it
    cannot be asked the batch waits, as in any outage."""

    def __init__(self, url: str, channel: str) -> None:
        self._single = RedisTransport(url, channel)  # checks the URL; no I/O
        self._url = url
        self._channel = channel
        self._chosen: RedisTransport | ClusterTransport | None = None
        self._choosing = threading.Lock()
        self.description = self._single.description

    @property
    def activity(self) -> Activity:
        """The chosen transport's (see Transport); while choosing, the single-server
        one's, which says the call is still connecting."""
        return (self._chosen or self._single).activity

    def _choose(self) -> RedisTransport | ClusterTransport:
        # check_connection() (the caller's thread) may race the sender's first batch.
        with self._choosing:
            return self._chosen or self._decide()

    def _decide(self) -> RedisTransport | ClusterTransport:
        if self._chosen is None:
            try:
                cluster = is_cluster(self._url)
            except redis.ResponseError:  # INFO not allowed for this user: a plain server
                cluster = False
            except (redis.RedisError, OSError) as exc:
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
            if cluster:
                self._single.close()
                chosen: RedisTransport | ClusterTransport = ClusterTransport(
                    self._url, self._channel
                )
                self.description = chosen.description
            else:
                chosen = self._single
            self._chosen = chosen
        return self._chosen

    def publish(
        self,
        payloads: list[bytes],
        extra: Sequence[Command] = (),
        channels: Sequence[bytes] | None = None,
    ) -> Delivery:
        """Publish through the chosen transport (choosing first)."""
        try:
            transport = self._choose()
        except ConnectFailed as exc:
            return Delivery.nothing_sent(len(payloads), mask_url(str(exc)))
        return transport.publish(payloads, extra, channels)

    @property
    def reconnects(self) -> int:
        """The chosen transport's reconnects (see its ``reconnects``)."""
        chosen = self._chosen
        if isinstance(chosen, ClusterTransport):
            return chosen.reconnects
        return self._single.reconnects

    def check(self) -> None:
        """Choose, then check the chosen transport; raises ConnectFailed."""
        self._choose().check()

    def close(self) -> None:
        """Close the chosen transport (or the single-server one, not chosen yet)."""
        (self._chosen or self._single).close()

    def after_fork_in_child(self) -> None:
        """Let the chosen transport forget the parent's connections."""
        self._choosing = threading.Lock()  # the parent's sender may have held it
        (self._chosen or self._single).after_fork_in_child()


def transport_for(
    target: str | redis.Redis | redis.ConnectionPool | redis.RedisCluster, channel: str
) -> Transport:
    """The transport for what a publisher was given: a ``RedisCluster`` client publishes
    on its cluster, a URL is asked on first use, a client or pool is one server."""
    if isinstance(target, redis.RedisCluster):
        return ClusterTransport(target, channel)
    if isinstance(target, str):
        return DetectingTransport(target, channel)
    return RedisTransport(target, channel)
