"""redis_urls: every URL form redis-py reads a password from is masked; bad URLs are refused."""

from __future__ import annotations

import logging

import pytest

from progress_sdk import ConfigurationError, ProgressPublisher, RedisUnavailableError
from progress_sdk.redis_urls import check_redis_url, mask_url

SECRET = "s3cret-pw"
# A closed port on loopback: connecting fails at once.
DEAD = "127.0.0.1:1"

# Every form redis-py's from_url takes a password from, with the secret in it.
SECRET_URLS = [
    f"redis://:{SECRET}@{DEAD}/0",
    f"redis://user:{SECRET}@{DEAD}/0",
    f"redis://{DEAD}/0?password={SECRET}",
    f"redis://{DEAD}/0?db=0&password={SECRET}&health_check_interval=1",
    f"redis://user@{DEAD}/0?password={SECRET}",
    f"rediss://user:{SECRET}@{DEAD}/0",
    f"rediss://{DEAD}/0?password={SECRET}",
    f"unix://:{SECRET}@/tmp/nowhere.sock?db=0",
    f"unix:///tmp/nowhere.sock?db=0&password={SECRET}",
]
# Passwords with characters a URL parser splits on, left unencoded.
UNENCODED = ["s3cret/pw", "s3cret#pw", "s3cret?pw", "s3/cr#et?pw"]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://user:p%40ss@host/1", "rediss://user:***@host/1"),
        ("unix://:pw@/tmp/redis.sock?db=0", "unix://:***@/tmp/redis.sock?db=0"),
        ("redis://host:6379/0?password=pw", "redis://host:6379/0?password=***"),
        ("redis://host/0?db=1&password=pw&x=1", "redis://host/0?db=1&password=***&x=1"),
        ("redis://host/0?ssl_password=pw", "redis://host/0?ssl_password=***"),
        ("unix:///tmp/r.sock?password=pw&db=2", "unix:///tmp/r.sock?password=***&db=2"),
        ("redis://:p/w#o?rd@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:p@ss@host/0", "redis://user:***@host/0"),
        ("redis://token@host/0", "redis://***@host/0"),
        ("redis://host/0?password=a#b", "redis://host/0?password=***"),
        ("redis://:pa ss@host/0", "redis://:***@host/0"),
        ("user:pw@host:6379", "***@host:6379"),
    ],
)
def test_mask_url_hides_every_secret_and_keeps_the_rest(url: str, masked: str):
    """Credentials before the last @ and secret query values become ***; nothing else changes."""
    assert mask_url(url) == masked


def test_mask_url_masks_urls_inside_longer_texts():
    """A URL quoted in an error message is masked where it stands."""
    text = f"cannot reach 'redis://:{SECRET}@h/0'\nretrying redis://h/0?password={SECRET} soon"
    assert SECRET not in mask_url(text)
    assert mask_url(text).endswith("retrying redis://h/0?password=*** soon")


@pytest.mark.parametrize("url", SECRET_URLS)
def test_good_urls_pass_the_check(url: str):
    """Every form above is one redis-py reads as meant."""
    check_redis_url(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"redis://:{SECRET}@127.0.0.1:notaport/0", "port is not a number"),
        (f"redis://:{SECRET}@127.0.0.1:99999/0", "port is not a number"),
        (f"http://user:{SECRET}@example.invalid/0", "must start with redis://"),
        (f"REDIS://:{SECRET}@h/0", "must start with redis://"),
        ("garbage s3cret", "it is no URL"),
        ("localhost:6379/0", "'localhost:6379/0': it must start with redis://"),
        (f"user:{SECRET}@h:6379", "must start with redis://"),
        (f"redis://h/0?db=notanumber&password={SECRET}", "Invalid value for 'db'"),
        *[(f"redis://:{pw}@h:6379/0", "unencoded") for pw in UNENCODED],
        ("redis://h:6379/0?password=s3cret#pw", "unencoded '#'"),
    ],
)
def test_bad_urls_raise_configuration_error_with_the_password_masked(url: str, why: str):
    """A URL redis-py refuses or would misread is one ConfigurationError saying what to do."""
    with pytest.raises(ConfigurationError, match="use redis://") as info:
        check_redis_url(url)
    assert why in str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("pw", UNENCODED)
def test_a_publisher_refuses_a_password_with_unencoded_characters(pw: str):
    """ProgressPublisher raises ConfigurationError, masked, instead of connecting elsewhere."""
    with pytest.raises(ConfigurationError) as info:
        ProgressPublisher(f"redis://:{pw}@{DEAD}/0", "pw-test")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("url", SECRET_URLS)
def test_no_publisher_message_shows_the_password(url: str, caplog):
    """repr, stats, the outage warning and RedisUnavailableError never show it."""
    with caplog.at_level(logging.DEBUG, logger="progress_sdk"):
        pub = ProgressPublisher(url, "pw-test")
        try:
            with pytest.raises(RedisUnavailableError) as info:
                pub.check_connection()
            pub.emit(
                {"media_id": "m", "user_id": "u", "event": "PROCESSING_STARTED",
                 "message": "x", "data": {}}
            )
            assert not pub.flush(0.3)
            stats = pub.stats()
        finally:
            pub.close(0.2)
    texts = [repr(pub), str(stats), str(info.value), *(r.getMessage() for r in caplog.records)]
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert "***" in repr(pub)
    assert [t for t in texts if SECRET in t] == []
