"""The publisher's side of user channels (issue #18): each event also on
``<channel>:user:<user_id>``, on a real Redis, and the settings that turn it on."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from conftest import Subscriber

from progress_sdk import ConfigurationError, ProgressPublisher
from progress_sdk.sharding import (
    UserChannels,
    channel_for,
    resolve_user_channels,
    user_channel,
)

pytestmark = pytest.mark.redis


def _event(media: str, user: str, i: int) -> dict[str, Any]:
    return {"media_id": media, "user_id": user, "event": "AUDIO_EXTRACTION_START",
            "message": f"e{i}", "data": {"model_name": "SIGLIP-LSTM-V4"}}


def _seen(messages: list[bytes]) -> list[tuple[str, str, int]]:
    events = [json.loads(m) for m in messages]
    return [(e["media_id"], e["message"], e["seq"]) for e in events]


def test_the_user_channel_is_named_after_the_channel_and_the_user():
    """The name other engineers code against."""
    assert user_channel("media-progress-events", "u-17") == "media-progress-events:user:u-17"


def test_user_channels_are_off_unless_asked_and_keep_the_contract_channel(monkeypatch):
    """Arguments first, then MEDIA_PROGRESS_USER_CHANNELS / _CONTRACT_CHANNEL."""
    monkeypatch.delenv("MEDIA_PROGRESS_USER_CHANNELS", raising=False)
    monkeypatch.delenv("MEDIA_PROGRESS_CONTRACT_CHANNEL", raising=False)
    assert resolve_user_channels(None, None) == UserChannels(on=False, contract=True)
    assert resolve_user_channels(True, None) == UserChannels(on=True, contract=True)
    assert resolve_user_channels(True, False) == UserChannels(on=True, contract=False)
    monkeypatch.setenv("MEDIA_PROGRESS_USER_CHANNELS", "1")
    monkeypatch.setenv("MEDIA_PROGRESS_CONTRACT_CHANNEL", "off")
    assert resolve_user_channels(None, None) == UserChannels(on=True, contract=False)
    assert resolve_user_channels(False, True) == UserChannels(on=False, contract=True)


@pytest.mark.parametrize(("user", "contract", "env", "words"), [
    (None, False, {}, "only with user channels on"),
    (False, False, {}, "events would go nowhere"),
    ("yes", None, {}, "user_channels must be True, False or None"),
    (None, 0, {}, "contract_channel must be True, False or None"),
    (None, None, {"MEDIA_PROGRESS_USER_CHANNELS": "maybe"}, "MEDIA_PROGRESS_USER_CHANNELS='maybe'"),
])
def test_bad_user_channel_settings_are_refused_with_the_reason(monkeypatch, user, contract, env,
                                                               words):
    monkeypatch.delenv("MEDIA_PROGRESS_USER_CHANNELS", raising=False)
    monkeypatch.delenv("MEDIA_PROGRESS_CONTRACT_CHANNEL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=words):
        ProgressPublisher(channel="ch", user_channels=user, contract_channel=contract)


def test_each_event_goes_to_its_user_channel_and_the_contract_channel_in_order(
    redis_url: str, channel: str, subscriber: Subscriber
):
    """Two users, two media each, interleaved: every event on the contract channel and on
    its own user's channel only, each channel in emit order."""
    users = {"u-1": Subscriber(redis_url, user_channel(channel, "u-1")),
             "u-2": Subscriber(redis_url, user_channel(channel, "u-2"))}
    try:
        sent = []
        with ProgressPublisher(redis_url, channel, user_channels=True, snapshots=False,
                               batch_size=7) as publisher:
            for i in range(40):
                user, media = ("u-1", f"a{i % 2}") if i % 3 else ("u-2", f"b{i % 2}")
                publisher.emit(_event(media, user, i))
                sent.append((user, media, f"e{i}"))
            assert publisher.flush(10)
            assert publisher.stats().extra_failed == 0
        everything = _seen(subscriber.settled())
        assert [(m, e) for m, e, _ in everything] == [(m, e) for _, m, e in sent]
        for user, sub in users.items():
            mine = _seen(sub.settled())
            assert [(m, e) for m, e, _ in mine] == [(m, e) for u, m, e in sent if u == user]
            assert mine == [x for x in everything if (x[0], x[1]) in {(m, e) for m, e, _ in mine}]
    finally:
        for sub in users.values():
            sub.close()


def test_without_the_contract_channel_events_go_to_user_channels_only(
    redis_url: str, channel: str, subscriber: Subscriber
):
    """contract_channel=False: nothing on the contract channel (nor the shard channels),
    every event on its user's, accounted as published."""
    mine = Subscriber(redis_url, user_channel(channel, "u-9"))
    shard = Subscriber(redis_url, channel_for(channel, 2, "m1"))
    try:
        with ProgressPublisher(redis_url, channel, shards=2, user_channels=True,
                               contract_channel=False, snapshots=False) as publisher:
            for i in range(5):
                publisher.emit(_event("m1", "u-9", i))
            assert publisher.flush(10)
            assert publisher.stats().published == 5
        assert [e for _, e, _ in _seen(mine.settled())] == [f"e{i}" for i in range(5)]
        assert subscriber.settled() == []
        assert shard.settled() == []
    finally:
        mine.close()
        shard.close()


def test_with_shards_the_contract_copy_goes_to_the_media_shard(
    redis_url: str, channel: str
):
    """shards=2 and user channels: each event on its media's shard channel and its user's."""
    shard = Subscriber(redis_url, channel_for(channel, 2, "m1"))
    mine = Subscriber(redis_url, user_channel(channel, "u-3"))
    try:
        with ProgressPublisher(redis_url, channel, shards=2, user_channels=True) as publisher:
            for i in range(3):
                publisher.emit(_event("m1", "u-3", i))
            assert publisher.flush(10)
        assert _seen(shard.settled()) == _seen(mine.settled())
        assert len(_seen(mine.settled())) == 3
    finally:
        shard.close()
        mine.close()


def test_a_refused_user_channel_publish_costs_no_event(redis_url: str, channel: str,
                                                       subscriber: Subscriber):
    """An ACL user that may publish on the contract channel but not on user channels:
    every event still reaches the contract channel, the refusals count as extra_failed."""
    admin = redis.Redis.from_url(redis_url)
    name = f"uc-{channel[-8:]}"
    admin.acl_setuser(name, enabled=True, passwords=["+pw"], commands=["+publish", "+ping",
                      "+info", "+hello", "+auth", "+client", "+select"],
                      channels=[channel], reset_channels=True)
    try:
        url = redis_url.replace("redis://", f"redis://{name}:pw@")
        with ProgressPublisher(url, channel, user_channels=True, snapshots=False) as publisher:
            for i in range(4):
                publisher.emit(_event("m1", "u-1", i))
            assert publisher.flush(10)
            stats = publisher.stats()
        assert (stats.published, stats.extra_failed, dict(stats.dropped)) == (4, 4, {})
        assert len(subscriber.settled()) == 4
    finally:
        admin.acl_deluser(name)
        admin.close()
