"""The publisher against Redis servers of the tests' own that are frozen, killed and cut.

Each test starts its own redis-server on a free loopback port (the shared server is never
stopped), and a subscriber of its own on that server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from own_redis import OwnRedis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tcp_proxy import TcpProxy

from progress_sdk import ProgressPublisher
from progress_sdk.contract import validate_lines

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def server() -> Iterator[OwnRedis]:
    own = OwnRedis().start()
    yield own
    own.kill()


class Collector:
    """Subscribes on its own connection and keeps every message's bytes."""

    def __init__(self, url: str, channel: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.channel = channel
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(channel)
        self.messages: list[bytes] = []
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.05)
            except (redis.RedisError, OSError):
                return
            if message is None:
                continue
            if message["type"] == "subscribe":
                self.subscribed.set()  # Redis confirmed: from now on nothing is missed
            elif message["type"] == "message":
                self.messages.append(message["data"])

    def wait_for(self, count: int, timeout: float = 15) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)

    def settled(self, timeout: float = 30) -> list[bytes]:
        """Every message so far, once a sentinel published now on the same server has
        arrived (then removed): what was published before it, a duplicate included, came
        first (Redis keeps a channel's order). ``timeout`` only bounds a hung test."""
        sentinel = f"settled-{uuid.uuid4().hex}".encode()
        self.client.publish(self.channel, sentinel)
        deadline = time.monotonic() + timeout
        while sentinel not in self.messages:
            assert time.monotonic() < deadline, "the sentinel never arrived"
            time.sleep(0.01)
        self.messages.remove(sentinel)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.client.close()


# finish_flush_timeout of the run-end tests: an end that the stall or the failed connect
# does not cut short hangs the test. How long the ends take is measured, not asserted, by
# benchmarks/run_end_bench.py (frozen: ~50 ms for the first, < 0.1 ms after; killed: ~1 ms).
HOUR = 3600.0


def one_run(publisher: ProgressPublisher, media_id: str) -> None:
    """A short media run; its end (the terminal event) waits, bounded, for delivery."""
    with publisher.media(media_id, "u1") as run, run.model("A") as model:
        model.progress(1, 2)
        model.complete()


def test_a_frozen_redis_costs_each_run_at_most_a_moment_and_loses_nothing(server):
    """Redis frozen (SIGSTOP): the first run's end notices the stall (no reply bytes for
    STALL_NOTICE) instead of waiting its full timeout (an hour); the five runs after it
    do not wait either; after SIGCONT every event arrives once."""
    collector = Collector(server.url, "outage")
    assert collector.subscribed.wait(5)
    publisher = ProgressPublisher(server.url, "outage", finish_flush_timeout=HOUR)
    try:
        one_run(publisher, "warm-up")
        assert publisher.flush(5)
        server.freeze()
        for i in range(6):
            one_run(publisher, f"m{i}")
        server.thaw()
        assert publisher.flush(15)
        stats = publisher.stats()
        assert stats.dropped == {}
        wire = collector.settled()
        assert len(wire) == len(set(wire)) == stats.published == stats.accepted
        report = validate_lines(wire)
        assert not report.violations and not report.lost and not report.incomplete
    finally:
        publisher.close(2)
        collector.close()


# A worker process as RQ's work horse is one: a fresh publisher, one media run, and
# os._exit right after it (no atexit, no close()).
SHORT_LIVED_WORKER = """
import os, sys
from progress_sdk import ProgressPublisher

publisher = ProgressPublisher(sys.argv[1], sys.argv[2])
for media in ("m-first", "m-last"):
    with publisher.media(media, "u1") as run, run.model("A") as model:
        model.progress(1, 2)
        model.complete("REAL", 0.9)
os._exit(0)
"""


@pytest.mark.parametrize(("delay", "seconds"), [("connect_delay", 0.3), ("reply_delay", 0.15)])
def test_a_process_that_exits_right_after_its_runs_over_a_slow_path_delivers_them(
    server, delay, seconds
):
    """A fresh process's first publish call connects (TCP, handshake, the cluster
    question), which can take far longer than the stall notice (a loaded machine), and a
    distant Redis answers every batch later than it: neither is a stall, so each run's end
    waits for delivery and the last PROCESSING_COMPLETED arrives although the process
    ends with os._exit right after."""
    proxy = TcpProxy(("127.0.0.1", server.port))
    setattr(proxy, delay, seconds)  # each new connection's first bytes, or every answer
    collector = Collector(server.url, "short-lived")
    assert collector.subscribed.wait(5)
    try:
        subprocess.run(
            [sys.executable, "-c", SHORT_LIVED_WORKER, proxy.url, "short-lived"],
            check=True,
            timeout=60,
        )
        wire = collector.settled()  # the process has exited: all it published, and no more
        events = [(json.loads(m)["media_id"], json.loads(m)["event"]) for m in wire]
        assert events and events[-1] == ("m-last", "PROCESSING_COMPLETED"), events
        report = validate_lines(wire)
        assert not report.violations and not report.lost and not report.incomplete
    finally:
        collector.close()
        proxy.close()


def test_a_killed_and_restarted_redis_gets_every_buffered_event(server):
    """Events accepted while Redis is down are delivered once it is back, in order."""
    # The publisher goes through a proxy that stays cut until the new subscriber is in:
    # what the publisher sends the moment the server is back must have a listener.
    proxy = TcpProxy(("127.0.0.1", server.port))
    publisher = ProgressPublisher(proxy.url, "restart", min_progress_interval=0)
    try:
        one_run(publisher, "before")
        assert publisher.flush(5)
        proxy.cut()
        server.kill()
        for i in range(3):
            one_run(publisher, f"during-{i}")
        assert publisher.stats().queued > 0
        server.start()
        collector = Collector(server.url, "restart")
        assert collector.subscribed.wait(5)
        proxy.restore()
        assert publisher.flush(15)
        stats = publisher.stats()
        wire = collector.settled()
        collector.close()
        assert stats.dropped == {}
        assert len(wire) == 15  # 3 runs of 5 events
        assert not validate_lines(wire).violations
    finally:
        publisher.close(2)
        proxy.close()


def test_a_batch_cut_after_forwarding_is_resent_byte_identical(server):
    """A proxy forwards a batch, then resets the connection before the replies: the
    events without a reply are sent again, unchanged, so consumers can drop the repeats
    by (source, media_id, seq); nothing is lost and nothing else is repeated."""
    proxy = TcpProxy(("127.0.0.1", server.port))
    collector = Collector(server.url, "cut")
    assert collector.subscribed.wait(5)
    publisher = ProgressPublisher(proxy.url, "cut", min_progress_interval=0)
    try:
        one_run(publisher, "before")
        assert publisher.flush(5)
        proxy.hold_replies = True  # Redis gets the next batch; we never see its replies
        one_run(publisher, "cut-run")
        deadline = time.monotonic() + 5
        while len(collector.messages) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.cut()
        proxy.hold_replies = False
        proxy.restore()
        assert publisher.flush(15)
        wire = collector.settled()
        unique = list(dict.fromkeys(wire))
        assert len(unique) == 10
        repeats = [w for w in wire if wire.count(w) > 1]
        assert repeats, "the cut batch was not sent again"
        keys = {(e["source"], e["media_id"], e["seq"]) for e in map(json.loads, wire)}
        assert len(keys) == len(unique)  # a repeat is the same bytes under the same key
        assert publisher.stats().dropped == {}
    finally:
        publisher.close(2)
        collector.close()
        proxy.close()


def test_a_redis_killed_while_the_sender_idles_costs_a_run_end_a_moment(server):
    """The sender learns of a dead server only when the run's end asks it to send: the
    wait stops as soon as it fails to connect, not at its timeout (an hour)."""
    publisher = ProgressPublisher(server.url, "killed", finish_flush_timeout=HOUR)
    try:
        one_run(publisher, "warm-up")
        assert publisher.flush(5)
        server.kill()
        for i in range(3):
            one_run(publisher, f"m{i}")
        assert publisher.stats().queued > 0 and publisher.stats().dropped == {}
    finally:
        publisher.close(0.5)


def test_a_redis_frozen_shorter_than_the_reply_patience_loses_no_large_batch(server):
    """Redis frozen for 7 s (under REPLY_PATIENCE, 60 s) while a batch larger than the
    socket buffers is being written: nothing is counted as lost."""
    publisher = ProgressPublisher(server.url, "big", snapshots=False)
    try:
        publisher.emit(lifecycle("warm"))
        assert publisher.flush(5)
        server.freeze()
        unread = server.bytes_unread()
        publisher.emit(lifecycle("first"))
        server.wait_unread_above(unread)  # its batch went out: the sender waits on replies
        for i in range(1000):
            publisher.emit(lifecycle(f"m{i}", details={"blob": "x" * 40_000}))
        server.thaw()  # the first reply comes; the next batch (~20 MB) starts going out
        time.sleep(0.002)
        server.freeze()
        time.sleep(7)
        server.thaw()
        assert publisher.flush(60)
        stats = publisher.stats()
        assert stats.dropped == {}, stats
        assert stats.published == 1002
    finally:
        publisher.close(2)


def lifecycle(media: str, **data: Any) -> dict[str, Any]:
    """A PROCESSING_STARTED event of ``media`` as emit() takes it."""
    return {
        "media_id": media,
        "user_id": "u1",
        "event": "PROCESSING_STARTED",
        "message": "m",
        "data": data,
    }


def test_a_second_close_during_the_first_returns_the_first_calls_result(server):
    """close() called while another thread's close() is still flushing returns that
    call's result, not True before anything was delivered."""
    publisher = ProgressPublisher(server.url, "close-twice")
    publisher.emit(lifecycle("warm"))
    assert publisher.flush(5)
    server.freeze()
    publisher.emit(lifecycle("m1"))
    publisher.emit({**lifecycle("m1"), "event": "PROCESSING_COMPLETED"})
    results: dict[str, bool] = {}
    first = threading.Thread(target=lambda: results.__setitem__("first", publisher.close(1)))
    first.start()
    # The first close() has begun (closed is set at its first step) and flushes for about
    # a second to the frozen server; the second waits for it (its bound only ends a hung
    # test), so it must return the first's result, not its own.
    deadline = time.monotonic() + 30
    while not publisher.closed:
        assert time.monotonic() < deadline, "the first close() never began"
        time.sleep(0.005)
    results["second"] = publisher.close(30)
    first.join()
    assert results["first"] is False  # Redis frozen: m1's events were not delivered
    assert results["second"] == results["first"], results


def ev(media: str, event: str, **data: object) -> dict[str, object]:
    return {"media_id": media, "user_id": "u1", "event": event, "message": "m", "data": data}


def test_a_busy_redis_delays_the_events_but_does_not_reject_them():
    """While another client's long script makes Redis answer BUSY (a transient state), a
    media's start and terminal are delivered once it is over, not counted as rejected."""
    server = OwnRedis("--busy-reply-threshold", "100").start()
    port = server.port
    publisher = None
    try:
        publisher = ProgressPublisher(f"redis://127.0.0.1:{port}/0", "busy", snapshots=False)
        publisher.emit(ev("warm", "PROCESSING_STARTED"))
        assert publisher.flush(5)
        script = (
            "local s = tonumber(redis.call('TIME')[1]) "
            "while tonumber(redis.call('TIME')[1]) - s < 3 do end return 1"
        )
        threading.Thread(target=lambda: redis.Redis(port=port).eval(script, 0), daemon=True).start()
        probe = redis.Redis(port=port)
        for _ in range(200):  # until Redis answers BUSY
            try:
                probe.ping()
                time.sleep(0.01)
            except redis.RedisError:
                break
        publisher.emit(ev("m1", "PROCESSING_STARTED"))
        publisher.emit(ev("m1", "PROCESSING_COMPLETED"))
        assert publisher.flush(10)
        stats = publisher.stats()
        assert stats.dropped == {} and stats.published == 3, stats
    finally:
        if publisher is not None:
            publisher.close(1)
        server.kill()


def test_close_giving_up_on_a_frozen_redis_leaves_the_users_pool_answering_right(server):
    """close() gives up on a sender waiting for a frozen Redis's replies to a batch: the
    user's own client, on the same pool, then gets the answers to its own commands, not
    the publisher's PUBLISH replies."""
    # No retries: redis-py would hide a reply read by the wrong thread behind a retry.
    client = redis.Redis(port=server.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    key = f"pool-{time.monotonic_ns()}"
    publisher = ProgressPublisher(client, "pool", snapshots=False)
    publisher.emit(lifecycle("warm"))
    assert publisher.flush(5)
    server.freeze()
    unread = server.bytes_unread()
    publisher.emit(lifecycle("m1"))
    server.wait_unread_above(unread)  # the sender wrote the batch and waits for replies
    assert not publisher.flush(0)
    assert publisher.close(timeout=0.2) is False
    answers: list[object] = []

    def job_code() -> None:  # its commands go out while Redis is still frozen
        try:
            answers.extend([client.set(key, "v"), client.get(key), client.incr(key + ":n")])
        except redis.RedisError as exc:
            answers.append(exc)

    unread = server.bytes_unread()
    job = threading.Thread(target=job_code)
    job.start()
    server.wait_unread_above(unread)  # its first command reached the frozen server
    server.thaw()
    job.join(10)
    client.close()
    assert answers == [True, b"v", 1]


def test_a_restart_between_two_batches_is_one_reconnect_and_no_outage(server, caplog):
    """Redis restarted while the sender idles: the next batch goes out at once on a new
    connection (no failed attempt, no backoff, no outage warning), and stats().reconnects
    counts that connection."""
    publisher = ProgressPublisher(server.url, "reconnects", snapshots=False)
    try:
        publisher.emit(lifecycle("before"))
        assert publisher.flush(5)
        assert publisher.stats().reconnects == 0
        server.kill()
        server.start()
        publisher.emit(lifecycle("after"))
        assert publisher.flush(5)
        stats = publisher.stats()
        assert stats.dropped == {} and stats.published == 2
        assert stats.reconnects == 1
        assert stats.last_error is None
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
    finally:
        publisher.close(2)


def _runs_left_open(messages: list[bytes]) -> list[str]:
    """Media whose PROCESSING_STARTED arrived and whose terminal event did not."""
    started: set[str] = set()
    ended: set[str] = set()
    for raw in messages:
        event = json.loads(raw)
        if event["event"] == "PROCESSING_STARTED":
            started.add(event["media_id"])
        elif event["event"] in ("PROCESSING_COMPLETED", "PROCESSING_FAILED"):
            ended.add(event["media_id"])
    return sorted(started - ended)


@pytest.mark.parametrize("unseen_first", [True, False])
def test_a_hanging_connect_with_the_whole_buffer_in_flight_leaves_no_started_media_open(
    server, unseen_first
):
    """Issue 17: a connect that hangs (accepted, never answered) rather than refused, with
    a buffer of 50 whose every event is in the batch in flight, while 300 media run: the
    batch cannot be evicted (once connected it may be written), so it does not count
    against the buffer, and the terminal events of its 50 started media find room, also
    when 250 media nobody saw end first. Every media shown as started ends."""
    proxy = TcpProxy(("127.0.0.1", server.port))
    proxy.hang_connects()
    collector = Collector(server.url, "hang")
    assert collector.subscribed.wait(5)
    # A short handshake timeout: the first attempt (one batch of the first events) fails
    # and the next takes the whole buffer; later attempts may fail and put it back too.
    pool = redis.ConnectionPool.from_url(proxy.url, socket_timeout=1, socket_connect_timeout=1)
    publisher = ProgressPublisher(
        pool,
        "hang",
        buffer_size=50,
        min_progress_interval=0,
        finish_flush_timeout=0,
        snapshots=False,
    )
    try:
        shown = [publisher.media(f"shown-{i}", "u1") for i in range(50)]
        for run in shown:
            run.start()
        deadline = time.monotonic() + 30  # fails a hung test only
        while proxy.accepted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.accepted >= 2  # the second attempt, with all 50 starts, hangs

        def end_shown() -> None:
            for run in shown:
                with run.model("A") as model:
                    model.progress(1, 2)
                run.finish()

        if not unseen_first:
            end_shown()
        for i in range(250):
            one_run(publisher, f"unseen-{i}")
        if unseen_first:
            end_shown()
        proxy.release_connects()
        assert publisher.flush(30)
        stats = publisher.stats()
        wire = collector.settled()
        assert len(wire) == stats.published
        assert _runs_left_open(wire) == []
        assert {f"shown-{i}" for i in range(50)} <= {json.loads(m)["media_id"] for m in wire}
        assert stats.terminals_lost == 0
        assert stats.accepted == stats.published + stats.coalesced + stats.dropped_total
        # The terminal event's seq counts every event of its media, the lost ones too
        # (start, model start, progress, model end, end): consumers see the gaps.
        ends = [json.loads(m) for m in wire if b'"PROCESSING_COMPLETED"' in m]
        assert {e["seq"] for e in ends if e["media_id"].startswith("shown-")} == {5}
    finally:
        publisher.close(2)
        collector.close()
        proxy.close()


def test_a_start_published_before_a_cut_keeps_its_terminal_event_through_an_overflow(server):
    """Issue 17: Redis publishes a batch, then the connection is cut before its reply: the
    batch is put back, but its start is on screen. When the outage that follows overflows
    the buffer, that start may give way (it went out already); its terminal event must
    not go with it, as it would with a start nobody saw."""
    proxy = TcpProxy(("127.0.0.1", server.port))
    collector = Collector(server.url, "cutstart")
    assert collector.subscribed.wait(5)
    publisher = ProgressPublisher(
        proxy.url,
        "cutstart",
        buffer_size=2,
        min_progress_interval=0,
        finish_flush_timeout=0,
        snapshots=False,
    )
    try:
        one_run(publisher, "before")  # connected
        assert publisher.flush(15)
        before = len(collector.settled())
        proxy.hold_replies = True  # Redis publishes the start; its reply never comes back
        seen = publisher.media("seen", "u1")
        seen.start()
        collector.wait_for(before + 1)
        assert len(collector.settled()) == before + 1
        assert b'"PROCESSING_STARTED"' in collector.messages[before]
        proxy.cut()  # reset: the start is put back; then connects are refused
        proxy.hold_replies = False
        deadline = time.monotonic() + 30  # fails a hung test only
        while "refused" not in (publisher.stats().last_error or "").lower():
            assert time.monotonic() < deadline, publisher.stats()
            time.sleep(0.01)
        with seen.model("A") as model:
            model.progress(1, 2)
        seen.finish()
        for i in range(20):  # media nobody sees: their starts fill the buffer
            one_run(publisher, f"unseen-{i}")
        proxy.restore()
        assert publisher.flush(30)
        stats = publisher.stats()
        # The start's first copy was published but not confirmed: one more than counted.
        wire = collector.settled()
        assert len(wire) == stats.published + 1
        assert _runs_left_open(wire) == []
        assert b'"PROCESSING_COMPLETED"' in b"".join(m for m in wire if b'"seen"' in m)
        assert stats.terminals_lost == 0
    finally:
        publisher.close(2)
        collector.close()
        proxy.close()
