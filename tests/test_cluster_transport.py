"""ClusterTransport's reading of a master's replies, against scripted connections: which
events were published, refused, or not run and to be sent again."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from redis import exceptions as rx

from progress_sdk.cluster import ClusterTransport

MASTER = ("127.0.0.1", 7000)

# Each transient error reply as redis-py raises it (it drops the code from some texts).
NOT_SERVING_NOW = {
    "BUSY": redis.ResponseError("BUSY Redis is busy running a script."),
    "LOADING": rx.BusyLoadingError("Redis is loading the dataset in memory"),
    "READONLY": rx.ReadOnlyError("You can't write against a read only replica."),
    "TRYAGAIN": rx.TryAgainError("Multiple keys request during rehashing of slot"),
    "MASTERDOWN": rx.MasterDownError("Link with MASTER is down"),
    "CLUSTERDOWN": rx.ClusterDownError("The cluster is down"),
}


class ScriptedConnection:
    """A connection to the one master whose replies are given: an int, or an exception."""

    def __init__(self, replies: Sequence[int | Exception]) -> None:
        self.replies = list(replies)

    def pack_commands(self, commands: Sequence[Any]) -> list[bytes]:
        return [repr(command).encode() for command in commands]

    def send_packed_command(self, data: object, check_health: bool = True) -> None:
        pass

    def read_response(self) -> int:
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def can_read(self) -> bool:
        return False

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass


class OneMaster:
    """A slot map in which one master serves every slot through ``connection``."""

    description = "scripted"

    def __init__(self, connection: ScriptedConnection) -> None:
        pool = SimpleNamespace(get_connection=lambda: connection)
        self._client = SimpleNamespace(connection_pool=pool)

    def refresh(self) -> None:
        pass

    def owner(self, name: object) -> tuple[str, int]:
        return MASTER

    def client(self, address: object, **kwargs: object) -> Any:
        return self._client


def transport_answering(*replies: int | Exception) -> ClusterTransport:
    transport = ClusterTransport("redis://127.0.0.1:7000/0", "ch")
    transport.slots = OneMaster(ScriptedConnection(replies))  # type: ignore[assignment]
    return transport


@pytest.mark.parametrize("code", sorted(NOT_SERVING_NOW))
def test_a_master_not_serving_now_leaves_the_events_to_send_again(code):
    """Every event of the batch answered with a transient error: none was run, none is
    refused; all are sent again (with backoff), as on one server."""
    error = NOT_SERVING_NOW[code]
    delivery = transport_answering(error, error, error).publish([b"a", b"b", b"c"])
    assert (delivery.published, delivery.refused, delivery.not_sent) == (0, 0, 3)
    assert delivery.resend and delivery.unsent is None
    assert delivery.error is not None and f": {code} " in delivery.error


def test_a_transient_error_followed_by_a_published_event_of_its_channel_is_refused():
    """BUSY, then the script ended and the next event went out: the first, sent again,
    would arrive behind the second, so it is refused (the single-server rule)."""
    delivery = transport_answering(NOT_SERVING_NOW["BUSY"], 0).publish([b"a", b"b"])
    assert (delivery.published, delivery.refused, delivery.not_sent) == (1, 1, 0)


def test_a_transient_error_is_resent_when_only_other_channels_went_out_after_it():
    """Shard channels: the event not run is alone on its channel, so it is sent again."""
    delivery = transport_answering(NOT_SERVING_NOW["LOADING"], 0).publish(
        [b"a", b"b"], channels=[b"ch:0", b"ch:1"]
    )
    assert (delivery.published, delivery.refused, delivery.not_sent) == (1, 0, 1)
    assert delivery.unsent == (0,)


def test_a_permanent_error_is_refused():
    """NOPERM (an ACL): sending again cannot help."""
    delivery = transport_answering(rx.NoPermissionError("no permissions"), 0).publish(
        [b"a", b"b"], channels=[b"ch:0", b"ch:1"]
    )
    assert (delivery.published, delivery.refused, delivery.not_sent) == (1, 1, 0)
    assert delivery.error is not None and "NOPERM" in delivery.error


class SelfClosingConnection(ScriptedConnection):
    """Like redis-py's connection: a failed read disconnects it before raising, and
    connect() makes a new socket when it has none."""

    def __init__(self, replies: Sequence[int | Exception]) -> None:
        super().__init__(replies)
        self._sock: object | None = None

    def read_response(self) -> int:
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            self._sock = None
            raise reply
        return reply

    def connect(self) -> None:
        if self._sock is None:
            self._sock = object()

    def disconnect(self) -> None:
        self._sock = None


def test_a_connection_that_closed_itself_on_failing_counts_a_reconnect_when_replaced():
    """redis-py disconnects a connection whose read failed before raising: the new one
    made for the next batch still counts as a reconnect."""
    connection = SelfClosingConnection([redis.ConnectionError("Connection reset by peer"), 1])
    transport = ClusterTransport("redis://127.0.0.1:7000/0", "ch")
    transport.slots = OneMaster(connection)  # type: ignore[assignment]
    first = transport.publish([b"e1"])
    assert first.not_sent == 1 and first.resend
    assert transport.publish([b"e1"]).published == 1
    assert transport.reconnects == 1
