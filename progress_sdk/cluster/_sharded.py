"""``ClusterTransport``: the publisher's transport for a Redis Cluster, ``SPUBLISH``
pipelined per master."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis

from .._resp import Activity
from ..redis_urls import mask_url
from ..transport import BatchGuard, Command, ConnectFailed, Delivery, closed_by_peer
from ._outcomes import (
    NOT_RUN,
    OK,
    REFUSED,
    REPLY_ERRORS,
    RESEND,
    UNKNOWN,
    delivery_of,
    keep_order,
    key_of,
    reply_text,
)
from ._topology import Address, SlotMap, text_of

__all__ = ["ClusterTransport"]


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

    publish_command = b"SPUBLISH"
    """What publishes on a channel here (an extra command's, e.g. a user channel's)."""

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
        outcomes = [RESEND] * len(payloads)
        receivers = 0
        errors: list[str] = []
        for owner, indices in groups.items():
            commands = [(b"SPUBLISH", names[i], payloads[i]) for i in indices]
            self._write(conns[owner], commands)
        for owner, indices in groups.items():
            receivers += self._read(conns[owner], owner, indices, outcomes, errors)
        keep_order(outcomes, names)
        extra_error = mask_url(extra_errors[0]) if extra_errors else None
        return delivery_of(outcomes, receivers, errors, extra_failed, extra_error)

    def _run_extras(self, extra: Sequence[Command], errors: list[str]) -> int:
        """Write ``extra`` pipelined per master of each command's key and read every
        reply; the number that failed (error reply, no master, connection lost), and
        why in ``errors``."""
        groups: dict[Address, list[Command]] = {}
        keyless: list[Command] = []
        failed = 0
        for command in extra:
            key = key_of(command)
            owner = None if key is None else self.slots.owner(key)
            if key is None:
                keyless.append(command)
            elif owner is None:
                failed += 1
                errors.append(f"no master serves the slot of {text_of(key)!r}")
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
            except REPLY_ERRORS as exc:
                self.activity.answered()
                failed += 1
                text = reply_text(exc)
                errors.append(f"{text} ({owner[0]}:{owner[1]})")
                if text.split(" ", 1)[0] in NOT_RUN:
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
                outcomes[i] = OK
            except REPLY_ERRORS as exc:
                self.activity.answered()
                text = reply_text(exc)
                errors.append(f"{owner[0]}:{owner[1]}: {text}")
                not_run = text.split(" ", 1)[0] in NOT_RUN
                outcomes[i] = RESEND if not_run else REFUSED
                self._stale = self._stale or not_run
            except (redis.RedisError, OSError) as exc:
                self._lose(conn)
                self._stale = True
                errors.append(f"{owner[0]}:{owner[1]}: {type(exc).__name__}: {exc}")
                fate = UNKNOWN if isinstance(exc, (redis.TimeoutError, TimeoutError)) \
                    else RESEND
                for j in indices[n:]:
                    outcomes[j] = fate
                break
        return receivers

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
