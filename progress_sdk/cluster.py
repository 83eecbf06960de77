"""Redis Cluster: telling a cluster node from a single server, and who serves which slot.

A URL of any node of a cluster is enough: ``is_cluster`` asks that node (``INFO cluster``
says ``cluster_enabled:1``), so no separate option is needed. ``SlotMap`` reads the slot
owners (``CLUSTER SLOTS``) from whichever known node answers, remembers every node it
heard of (masters and replicas) so a later refresh still finds one after the seed node
died, and hands out connections to a node with the URL's credentials and TLS settings.
Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) routes a channel by the hash slot of its
name, like a key; ``slot_of`` is that slot.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from . import defaults as d
from .exceptions import ConfigurationError
from .redis_urls import check_redis_url, mask_url

__all__ = ["Address", "SlotMap", "is_cluster", "slot_of"]

Address = tuple[str, int]


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


class SlotMap:
    """The cluster's slot owners, refreshed on demand from any node that answers."""

    def __init__(self, url: str, *, timeout: float = d.CONNECT_TIMEOUT) -> None:
        pool = _pool_from_url(url)
        kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        if "path" in kwargs:
            raise ConfigurationError("a Redis Cluster is reached over TCP, not a unix socket")
        self.description = mask_url(url)
        self._connection_class = pool.connection_class
        self._kwargs = kwargs
        self._timeout = timeout
        self._known: list[Address] = [(str(kwargs.get("host", "127.0.0.1")),
                                       int(kwargs.get("port", 6379)))]
        self._ranges: list[tuple[int, int, Address]] = []

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
        """Read ``CLUSTER SLOTS`` from the first known node that answers; raises
        ``redis.ConnectionError`` naming the last failure when none does."""
        failure = "no node known"
        for address in list(self._known):
            client = self.client(address)
            try:
                reply = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
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
        ranges: list[tuple[int, int, Address]] = []
        seen: list[Address] = [asked]
        for start, end, master, *replicas in reply:
            owner = self._address(master, asked)
            ranges.append((int(start), int(end), owner))
            for node in (master, *replicas):
                address = self._address(node, asked)
                if address not in seen:
                    seen.append(address)
        self._ranges = sorted(ranges)
        # Nodes just heard of first; older ones kept (a node may be down for a moment).
        self._known = seen + [a for a in self._known if a not in seen]

    @staticmethod
    def _address(node: list[Any], asked: Address) -> Address:
        host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
        # An empty host means "the address you reached me at" (cluster-announce unset).
        return (host or asked[0], int(node[1]))

    def owner(self, name: str | bytes) -> Address | None:
        """The master serving ``name``'s slot as last read (None: not covered / not read)."""
        slot = slot_of(name)
        for start, end, address in self._ranges:
            if start <= slot <= end:
                return address
        return None

    @property
    def masters(self) -> list[Address]:
        """Distinct masters as last read."""
        return sorted({address for _, _, address in self._ranges})
