"""transport: password masking, target descriptions, what a batch's replies mean."""

from __future__ import annotations

import pytest
import redis

from progress_sdk import _resp
from progress_sdk._resp import Tally
from progress_sdk.redis_urls import mask_url
from progress_sdk.transport import _answered_delivery, _broken_delivery, describe_target


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


BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT."


def _tally(*replies: str | int) -> Tally:
    tally = Tally()
    for reply in replies:
        if isinstance(reply, str):
            tally.add(True, 0, reply)
        else:
            tally.add(False, reply, "")
    return tally


def test_publishes_redis_answered_busy_to_the_end_are_not_sent_and_safe_to_resend():
    """BUSY from some event to the end of the batch: those events were not run; they go
    back for a later attempt instead of being counted as rejected."""
    delivery = _answered_delivery(4, _tally(1, 1, BUSY, "LOADING Redis is loading"))
    assert (delivery.published, delivery.refused, delivery.not_sent) == (2, 0, 2)
    assert delivery.resend and "BUSY" in (delivery.error or "")


@pytest.mark.parametrize(
    "error", ["TRYAGAIN x", "MASTERDOWN x", "CLUSTERDOWN x", "READONLY You can't write"]
)
def test_every_transient_refusal_of_a_whole_batch_is_resent(error):
    """Each transient error prefix leaves the whole batch to be sent again."""
    delivery = _answered_delivery(3, _tally(error, error, error))
    assert (delivery.published, delivery.refused, delivery.not_sent) == (0, 0, 3)


@pytest.mark.parametrize(
    "error", ["NOPERM this user has no permissions", "WRONGTYPE x", "ERR unknown", "BUSYKEY x"]
)
def test_permanent_refusals_stay_rejected(error):
    """A permanent error reply is final: refused, never sent again."""
    delivery = _answered_delivery(3, _tally(1, error, error))
    assert (delivery.published, delivery.refused, delivery.not_sent) == (1, 2, 0)


def test_a_transient_refusal_followed_by_published_events_stays_refused():
    """BUSY, then published events (the script ended mid-batch): resending the refused one
    would put it behind later events of its media, which consumers drop; it is counted."""
    delivery = _answered_delivery(4, _tally(BUSY, BUSY, 1, 1))
    assert (delivery.published, delivery.refused, delivery.not_sent) == (2, 2, 0)


def test_extras_refused_busy_with_the_whole_batch_leave_every_event_to_resend():
    """A snapshot write (extra command) and every PUBLISH after it answered BUSY: all the
    events are resent (the batch hook writes its commands again)."""
    tally = _tally(BUSY)
    tally.extra_errors = tally.errors
    for _ in range(3):
        tally.add(True, 0, BUSY)
    delivery = _answered_delivery(3, tally)
    assert (delivery.published, delivery.refused, delivery.not_sent) == (0, 0, 3)
    assert delivery.extra_failed == 1


def test_a_reset_after_transient_refusals_resends_them_with_the_unanswered():
    """BUSY replies, then the connection reset: the BUSY ones join the unanswered tail."""
    delivery = _broken_delivery(5, 0, _tally(1, BUSY), ConnectionResetError("reset"))
    assert (delivery.published, delivery.refused, delivery.not_sent) == (1, 0, 4)
    assert delivery.resend


def test_a_timeout_after_transient_refusals_resends_nothing():
    """After a reply timed out the tail is of unknown fate: nothing of it is resent."""
    delivery = _broken_delivery(5, 0, _tally(1, BUSY), TimeoutError("timed out"))
    assert (delivery.published, delivery.refused, delivery.not_sent) == (1, 1, 3)
    assert not delivery.resend


def test_a_distant_redis_gets_four_of_its_answer_times_and_a_freeze_does_not_widen_that(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How long no byte may move before a run's end stops waiting: the stall notice, or
    four of the shortest recent answer times of a Redis far away; one answer that came
    only after a freeze is not its usual time."""
    clock = [100.0]
    monkeypatch.setattr(_resp.time, "monotonic", lambda: clock[0])
    activity = _resp.Activity()
    assert activity.patience(0.05) == 0.05  # nothing measured yet
    for wait in (0.2, 0.25, 5.0):  # two answers from afar, then one after a freeze
        activity.wrote()
        clock[0] += wait
        activity.answered()
        activity.answered()  # more bytes of the same answer: not another sample
    assert activity.patience(0.05) == pytest.approx(0.8)
    activity.connected(handshake=0.01)  # a new connection, quick to make
    assert activity.patience(0.05) == 0.05
