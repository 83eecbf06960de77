"""transport: password masking and target descriptions."""

from __future__ import annotations

import pytest
import redis

from progress_sdk.redis_urls import mask_url
from progress_sdk.transport import describe_target


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://user:p%40ss@host/1", "rediss://user:***@host/1"),
        ("unix://:pw@/tmp/redis.sock?db=0", "unix://:***@/tmp/redis.sock?db=0"),
    ],
)
def test_mask_url_hides_the_password_and_keeps_the_rest(url, masked):
    """The password is replaced by *** and nothing else changes."""
    assert mask_url(url) == masked


def test_describe_target_never_shows_a_password():
    """Clients and pools are described by scheme, host, port and db only."""
    pool = redis.ConnectionPool.from_url("redis://u:secret@example:6380/3")
    assert describe_target(pool) == "redis://example:6380/3"
    assert describe_target(redis.Redis(connection_pool=pool)) == "redis://example:6380/3"
    assert "secret" not in describe_target("redis://u:secret@example:6380/3")
    tls = redis.ConnectionPool.from_url("rediss://example:6380/0")
    assert describe_target(tls).startswith("rediss://")
    unix = redis.ConnectionPool.from_url("unix:///tmp/r.sock")
    assert describe_target(unix) == "unix:///tmp/r.sock"
