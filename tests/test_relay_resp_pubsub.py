"""``RespPubSub`` reads what redis-py's ``PubSub`` reads: the same messages, in the same
order, as the same dicts, from a real Redis server; and fails the way the relay's
subscriber expects of any pub/sub (redis-py's exception types, no password in them)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError
from relay_support import RedisServer

from simulator.relay.resp_pubsub import READ_SIZE, RespPubSub, supports

pytestmark = pytest.mark.redis

MESSAGES: list[bytes] = [
    b"{}",
    b"",  # an empty payload is still a message
    b"line\r\nbreak and \x00 bytes \xff",
    "ünïcode".encode(),
    b"x" * (READ_SIZE + 1000),  # one message over several reads
    *(b'{"n": %d}' % n for n in range(2000)),  # many replies in one read
]


def resp(url: str) -> RespPubSub:
    return RespPubSub(url, connect_timeout=5.0)


async def read(pubsub: Any, count: int) -> list[tuple[str, Any, Any]]:
    """The next ``count`` messages, subscribe confirmations included, as tuples."""
    got: list[tuple[str, Any, Any]] = []
    while len(got) < count:
        message = await asyncio.wait_for(pubsub.get_message(timeout=None), 30)
        if message is not None:
            got.append((message["type"], message["channel"], message["data"]))
    return got


def test_it_reads_every_message_as_redis_py_does(redis_url: str, channel: str) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        ours = resp(redis_url)
        client = aioredis.Redis.from_url(redis_url)
        theirs = client.pubsub()
        try:
            await ours.subscribe(channel, channel + ":b")
            await theirs.subscribe(channel, channel + ":b")
            confirmations = await read(ours, 2), await read(theirs, 2)
            publisher = redis.Redis.from_url(redis_url)
            pipe = publisher.pipeline(transaction=False)
            for n, payload in enumerate(MESSAGES):
                pipe.publish(channel if n % 3 else channel + ":b", payload)
            pipe.execute()
            publisher.close()
            return ([*confirmations[0], *await read(ours, len(MESSAGES))],
                    [*confirmations[1], *await read(theirs, len(MESSAGES))])
        finally:
            await ours.aclose()
            await theirs.aclose()
            await client.aclose()

    ours, theirs = asyncio.run(scenario())
    assert ours == theirs
    assert [data for kind, _, data in ours if kind == "message"] == MESSAGES


def test_an_unsubscribed_channel_is_confirmed_and_left(redis_url: str, channel: str) -> None:
    async def scenario() -> list[Any]:
        ours = resp(redis_url)
        try:
            await ours.subscribe(channel, channel + ":kept")
            await read(ours, 2)
            await ours.unsubscribe(channel)
            got = await read(ours, 1)
            publisher = redis.Redis.from_url(redis_url)
            publisher.publish(channel, b"after")
            publisher.publish(channel + ":kept", b"kept")
            publisher.close()
            return got + await read(ours, 1)
        finally:
            await ours.aclose()

    assert asyncio.run(scenario()) == [
        ("unsubscribe", channel.encode(), 1),
        ("message", (channel + ":kept").encode(), b"kept"),
    ]


def test_it_authenticates_and_a_wrong_password_is_not_in_the_error() -> None:
    server = RedisServer(password="s3cret-pass")
    server.start()
    try:
        async def subscribe(url: str) -> list[Any]:
            ours = resp(url)
            try:
                await ours.subscribe("auth-check")
                return await read(ours, 1)
            finally:
                await ours.aclose()

        assert asyncio.run(subscribe(server.url)) == [("subscribe", b"auth-check", 1)]
        wrong = server.url.replace("s3cret-pass", "not-the-password")
        with pytest.raises(AuthenticationError) as refused:
            asyncio.run(subscribe(wrong))
        assert "not-the-password" not in str(refused.value)
    finally:
        server.stop()


def test_a_server_that_goes_away_is_a_connection_error() -> None:
    server = RedisServer()
    server.start()

    async def scenario() -> None:
        ours = resp(server.url)
        try:
            await ours.subscribe("going-away")
            await read(ours, 1)
            server.stop()
            await asyncio.wait_for(ours.get_message(timeout=None), 30)
        finally:
            await ours.aclose()

    try:
        with pytest.raises(redis.ConnectionError):
            asyncio.run(scenario())
        with pytest.raises(redis.ConnectionError):  # nothing listens there now
            asyncio.run(resp(server.url).subscribe("refused"))
    finally:
        server.stop()


def test_only_plain_tcp_urls_are_read_this_way() -> None:
    assert supports("redis://127.0.0.1:6379/0")
    assert supports("redis://user:p%40ss@host:1234")
    assert not supports("rediss://host:6380")
    assert not supports("unix:///run/redis.sock")


def test_a_url_with_options_is_left_to_redis_py() -> None:
    """redis-py reads options from the query string (a password among them) that this
    reader would go without: such a URL is redis-py's."""
    assert not supports("redis://127.0.0.1:6379/0?password=secret")
    assert not supports("redis://127.0.0.1:6379?protocol=3")


def test_a_server_that_is_not_redis_is_a_connection_error() -> None:
    """What is not RESP (here an HTTP server's answer) is a connection error, as from
    redis-py, which the subscriber retries; not hiredis's ProtocolError."""

    async def scenario() -> None:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ours = resp(f"redis://127.0.0.1:{port}")
        try:
            await ours.subscribe("anything")
            await asyncio.wait_for(ours.get_message(timeout=None), 30)
        finally:
            await ours.aclose()
            server.close()
            await server.wait_closed()

    with pytest.raises(redis.ConnectionError, match="not a Redis reply"):
        asyncio.run(scenario())
