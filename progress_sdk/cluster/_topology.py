"""Redis Cluster topology: telling a cluster node from a single server, and who serves
which slot.

A URL of any node of a cluster is enough: ``is_cluster`` asks that node (``INFO cluster``
says ``cluster_enabled:1``), so no separate option is needed. ``SlotMap`` reads the slot
owners and their replicas (``CLUSTER SHARDS``, Redis 7) from whichever known node
answers, remembers every node it heard of so a later refresh still finds one after the
seed node died, and hands out connections to a node with the URL's credentials and TLS
settings. Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) routes a channel by the hash slot
of its name, like a key; ``slot_of`` is that slot.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from .. import defaults as d
from ..exceptions import ConfigurationError
from ..redis_urls import check_redis_url, mask_url

__all__ = ["Address", "SlotMap", "client_for", "is_cluster", "slot_of", "text_of"]

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
                if text_of(node.get("health")) == "fail":
                    continue
                address = self._address(node, asked)
                if address not in seen:
                    seen.append(address)
                if text_of(node.get("role")) == "master":
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
        host = text_of(node.get("endpoint"))
        if host in ("", "?"):
            host = text_of(node.get("ip")) or asked[0]
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


def text_of(value: object) -> str:
    """A reply's string, bytes decoded; "" for None."""
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)


def _as_dict(value: Any) -> dict[str, Any]:
    """A CLUSTER SHARDS map, whether redis-py gave a dict or a flat key/value list."""
    if isinstance(value, dict):
        return {text_of(k): v for k, v in value.items()}
    return {text_of(k): v for k, v in zip(value[::2], value[1::2], strict=True)}
