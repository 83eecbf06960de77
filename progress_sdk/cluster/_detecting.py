"""Choosing the publisher's transport: ``DetectingTransport`` asks a URL's node on first
use (on the sender thread, so building a publisher does no I/O) whether it is part of a
cluster; ``transport_for`` picks the transport for what ``ProgressPublisher(redis=...)``
was given."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import redis

from .._resp import Activity
from ..redis_urls import mask_url
from ..transport import Command, ConnectFailed, Delivery, RedisTransport, Transport
from ._sharded import ClusterTransport
from ._topology import is_cluster

__all__ = ["DetectingTransport", "transport_for"]


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

    @property
    def publish_command(self) -> bytes:
        """What publishes on a channel (an extra command's, a user channel's): the
        chosen transport's (choosing first; may raise ``ConnectFailed``)."""
        chosen = self._choose()
        return chosen.publish_command if isinstance(chosen, ClusterTransport) else b"PUBLISH"

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
    def on_new_server(self) -> Callable[[], Sequence[Command]] | None:
        """The single-server transport's (``RedisTransport.on_new_server``); a cluster
        leaves it unused."""
        return self._single.on_new_server

    @on_new_server.setter
    def on_new_server(self, hook: Callable[[], Sequence[Command]] | None) -> None:
        self._single.on_new_server = hook

    def touch(self) -> None:
        """``RedisTransport.touch`` once a single server was chosen."""
        if self._chosen is self._single:
            self._single.touch()

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
