"""A long outage overflows the buffer with terminal events of media on screen: each lost
terminal event is kept aside and sent again once Redis is back, so every media whose
PROCESSING_STARTED a subscriber saw also ends on the channel, once, in seq order, and the
counts say what happened. A real publisher, its own redis-server behind a TCP proxy that
refuses or hangs connections, and a real subscriber."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from own_redis import OwnRedis
from tcp_proxy import TcpProxy

from progress_sdk import ProgressPublisher
from progress_sdk.contract import validate_lines
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, read_user

pytestmark = pytest.mark.redis

MEDIA = 60
BUFFER = 20
TERMINALS = ("PROCESSING_COMPLETED", "PROCESSING_FAILED")


@pytest.fixture
def server() -> Iterator[OwnRedis]:
    own = OwnRedis().start()
    yield own
    own.kill()


class Subscriber:
    """Every message of a channel, on a connection of its own (not through the proxy)."""

    def __init__(self, url: str, channel: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.subscribe(channel)
        self.messages: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                self.messages.append(message["data"])

    def events(self) -> list[dict[str, object]]:
        return [json.loads(m) for m in list(self.messages)]

    def wait(self, done: object, what: str, timeout: float = 60.0) -> None:
        """Wait for ``done()``; the deadline only fails a hung test."""
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()


def open_panels(events: list[dict[str, object]]) -> tuple[set[object], Counter[object]]:
    """The media whose start the subscriber saw, and how many terminal events each got."""
    started = {e["media_id"] for e in events if e["event"] == "PROCESSING_STARTED"}
    ends = Counter(e["media_id"] for e in events if e["event"] in TERMINALS)
    return started, ends


@pytest.mark.parametrize("outage", ["refused", "hanging"])
def test_every_started_media_ends_after_an_outage_that_overflowed_with_terminal_events(
    server: OwnRedis, outage: str
) -> None:
    """60 media start and are seen; Redis goes away (connections refused, or accepted and
    hung with a batch in flight); all 60 end with a model each, three times what the
    buffer holds: terminal events are lost to the overflow and counted. Back, every
    media's terminal event reaches the subscriber exactly once, with the type the job
    ended it with, its snapshot says so, and the stream validates without violation."""
    channel = f"lost-{uuid.uuid4().hex[:8]}"
    keys = SnapshotKeys(f"test-lost-{uuid.uuid4().hex[:8]}:")
    proxy = TcpProxy(("127.0.0.1", server.port))
    subscriber = Subscriber(server.url, channel)
    subscriber.wait(lambda: subscriber.pubsub.subscribed, "the subscription")
    publisher = ProgressPublisher(
        proxy.url, channel, buffer_size=BUFFER, batch_size=BUFFER, min_progress_interval=0,
        finish_flush_timeout=0, snapshots=SnapshotConfig(keys),
    )
    user = f"u-{uuid.uuid4().hex[:6]}"
    try:
        runs = [publisher.media(f"m{i:02d}", user, filename=f"m{i:02d}.mp4") for i in range(MEDIA)]
        for i, run in enumerate(runs):
            run.start()
            if i % 10 == 9:  # every start goes out: each a panel on screen
                assert publisher.flush(30)
        subscriber.wait(lambda: len(open_panels(subscriber.events())[0]) == MEDIA, "the starts")
        proxy.cut()
        if outage == "hanging":
            proxy.hang_connects()
            proxy.restore()
        for i, run in enumerate(runs):
            with run.model("A") as model:
                model.progress(1, 2)
                if i % 3 == 0:
                    model.fail(RuntimeError("model crashed"))
            if i % 5 == 0:
                run.fail(RuntimeError("the job gave up"))
            else:
                run.finish()
        during = publisher.stats()
        assert during.terminals_lost > 0 and during.terminals_waiting > 0, during
        if outage == "hanging":
            proxy.release_connects()
        else:
            proxy.restore()
        assert publisher.flush(60)

        def all_ended() -> bool:
            started, ends = open_panels(subscriber.events())
            return len(started) == MEDIA and set(ends) == started

        subscriber.wait(all_ended, "a terminal event of every started media")
        stats = publisher.stats()
        subscriber.wait(lambda: len(subscriber.messages) >= stats.published, "every event")
    finally:
        publisher.close(5)
        subscriber.close()
        proxy.close()
    events = subscriber.events()
    started, ends = open_panels(events)
    assert ends == Counter(dict.fromkeys(started, 1))  # exactly one each
    ended_as = {e["media_id"]: e["event"] for e in events if e["event"] in TERMINALS}
    assert ended_as == {run.media_id: run.outcome for run in runs}
    # The counts: every loss sent again, none waiting or abandoned, nothing unaccounted.
    assert stats.terminals_lost > 0
    assert stats.terminals_resent == stats.terminals_lost
    assert (stats.terminals_waiting, stats.terminals_abandoned) == (0, 0)
    assert stats.accepted == stats.published + stats.coalesced + stats.dropped_total
    assert stats.dropped["evicted"] + stats.dropped.get("buffer_full", 0) >= stats.terminals_lost
    # One terminal event per run (rule 4), seq rising per media (rule 6), none left open.
    # The overflow took the model events first (they rank lowest), which shows as gaps;
    # a PROCESSING_COMPLETED whose model's completion was among them is reported under
    # rule 5 by a validator that cannot see the lost events (as it was before).
    report = validate_lines(subscriber.messages, strict=True)
    assert report.incomplete_count == 0 and report.duplicates == 0, report.to_dict()
    assert set(report.violations_by_rule) <= {"rule 5"}, report.to_dict()
    gapped = {f.media_id for f in report.lost}
    assert {f.media_id for f in report.violations} <= gapped
    assert report.lost_events > 0
    # The snapshots agree: no media left running.
    snapshots = read_user(redis.Redis.from_url(server.url), keys, user)
    assert Counter(s.status for s in snapshots) == Counter(
        "completed" if run.outcome == "PROCESSING_COMPLETED" else "failed" for run in runs
    )
