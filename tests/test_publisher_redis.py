"""ProgressPublisher against the real Redis server: delivery, order, outages, forks."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
import weakref
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from tcp_proxy import TcpProxy

from progress_sdk import ProgressPublisher, parse_event
from progress_sdk.contract import validate_lines

pytestmark = pytest.mark.redis


def _event(media_id: str, i: int, model: str = "SIGLIP-LSTM-V4") -> dict[str, object]:
    return {
        "media_id": media_id,
        "user_id": "u-1",
        "event": "ANALYSIS_STARTED" if i == 0 else "AUDIO_EXTRACTION_START",
        "message": f"event {i}",
        "data": {"model_name": model, "details": {"i": i}},
    }


def _decode(messages: list[bytes]) -> list[dict[str, object]]:
    return [json.loads(m) for m in messages]


def test_subscriber_receives_exactly_the_emitted_events_in_order(redis_url, channel, subscriber):
    """Every emitted event arrives once, in emit order, with a strict v1 envelope."""
    with ProgressPublisher(redis_url, channel, min_progress_interval=0) as publisher:
        for i in range(200):
            publisher.emit(_event("m-order", i))
        assert publisher.flush(5)
    received = subscriber.settled()  # flushed: all of it, and anything more
    events = _decode(received)
    assert [e["data"]["details"]["i"] for e in events] == list(range(200))  # type: ignore[index]
    assert [e["seq"] for e in events] == list(range(1, 201))
    for raw in received:
        parse_event(raw, strict=True)
    assert publisher.stats().published == 200


def test_tracking_api_stream_passes_the_validator_end_to_end(redis_url, channel, subscriber):
    """A tracked multi-model run, received over Redis, keeps every lifecycle rule."""
    with ProgressPublisher(redis_url, channel) as publisher:
        with publisher.media("m-e2e", "u-1", filename="clip.mp4", run_id="r-1") as run:
            run.queue(["SIGLIP-LSTM-V4", "LIP-FD-V1"])
            with run.model("SIGLIP-LSTM-V4") as model:
                for i in range(1, 301):
                    model.progress(i, 300)
                model.complete("FAKE", 0.93)
            with pytest.raises(RuntimeError), run.model("LIP-FD-V1"):
                raise RuntimeError("no face found in 40% of frames")
        assert publisher.flush(5)
        sent = publisher.stats().published
    received = subscriber.settled()
    assert len(received) == sent
    report = validate_lines(received, strict=True)
    assert report.ok, report.to_text()
    events = _decode(received)
    assert events[-1]["event"] == "PROCESSING_COMPLETED"
    progress = [e for e in events if e["event"] == "FRAME_ANALYSIS_PROGRESS"]
    assert progress[-1]["data"]["progress"] == 300  # type: ignore[index]  # latest value kept


def test_outage_emit_stays_fast_and_lifecycle_events_arrive_after_recovery(
    redis_url, channel, subscriber
):
    """With Redis cut mid-stream the job never raises, and the buffered lifecycle events
    are delivered once Redis is reachable again. (emit() during the cut, the slowest of
    500 calls, is measured by benchmarks/run_end_bench.py: a few ms on a busy machine.)"""
    target = urlsplit(redis_url)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 6379))
    publisher = ProgressPublisher(proxy.url, channel, min_progress_interval=0)
    try:
        publisher.emit(_event("m-outage", 0))
        assert publisher.flush(5)
        proxy.cut()
        for i in range(1, 501):
            publisher.emit(_event("m-outage", i))
        assert not publisher.flush(0.5)
        stats = publisher.stats()
        assert stats.queued >= 500 and not stats.connected and stats.last_error
        proxy.restore()
        assert publisher.flush(15)
        received = subscriber.settled()
        details = [e["data"]["details"]["i"] for e in _decode(received)]  # type: ignore[index]
        missing = sorted(set(range(501)) - set(details))
        repeated = sorted({i for i in details if details.count(i) > 1})
        assert details == list(range(501)), (
            f"{len(details)} received, missing {missing[:20]}, repeated {repeated[:20]}, "
            f"stats {publisher.stats()}"
        )
        assert publisher.stats().reconnects >= 1
    finally:
        publisher.close(1)
        proxy.close()


def test_close_with_redis_down_returns_within_its_timeout(channel):
    """close() gives up on a refusing server and counts the loss. (It returns within its
    timeout: 0.85 s for 1 s, measured by benchmarks/run_end_bench.py.)"""
    publisher = ProgressPublisher("redis://127.0.0.1:1/0", channel)
    for i in range(10):
        publisher.emit(_event("m-down", i))
    assert publisher.close(timeout=1.0) is False
    stats = publisher.stats()
    assert stats.dropped.get("closed") == 10
    assert publisher.close(timeout=1.0) is False  # idempotent


def test_many_threads_keep_per_media_order(redis_url, channel, subscriber):
    """Eight threads emitting at once: each media's events arrive in its own order,
    numbered 1..n without gaps."""
    per_thread = 250
    with ProgressPublisher(redis_url, channel, min_progress_interval=0) as publisher:

        def work(t: int) -> None:
            for i in range(per_thread):
                publisher.emit(_event(f"m-thread-{t}", i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert publisher.flush(10)
    events = _decode(subscriber.settled())
    assert len(events) == 8 * per_thread
    for t in range(8):
        mine = [e for e in events if e["media_id"] == f"m-thread-{t}"]
        assert [e["data"]["details"]["i"] for e in mine] == list(range(per_thread))  # type: ignore[index]
        assert [e["seq"] for e in mine] == list(range(1, per_thread + 1))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_delivers_its_events_and_parent_pending_is_not_duplicated(
    redis_url, channel, subscriber
):
    """A child forked while the parent has undelivered events sends only its own; the
    parent's go out once, from the parent."""
    target = urlsplit(redis_url)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 6379))
    publisher = ProgressPublisher(proxy.url, channel, min_progress_interval=0)
    try:
        publisher.emit(_event("m-parent", 0))
        assert publisher.flush(5)
        proxy.cut()  # the parent's next events stay pending across the fork
        for i in range(1, 6):
            publisher.emit(_event("m-parent", i))
        proxy.restore()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                for i in range(20):
                    publisher.emit(_event("m-child", i))
                code = 0 if publisher.flush(10) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert publisher.flush(10)
        events = _decode(subscriber.settled())  # a duplicate included
        parent = [e["data"]["details"]["i"] for e in events if e["media_id"] == "m-parent"]
        child = [e["data"]["details"]["i"] for e in events if e["media_id"] == "m-child"]
        assert parent == list(range(6))
        assert child == list(range(20))
        sources = {e["source"] for e in events}
        assert len(sources) == 2  # the child identifies itself as another publisher
    finally:
        publisher.close(1)
        proxy.close()


def test_accepts_an_existing_client_and_pool(redis_url, channel, subscriber):
    """A redis.Redis client or a ConnectionPool can be passed instead of a URL."""
    client = redis.Redis.from_url(redis_url)
    with ProgressPublisher(client, channel) as publisher:
        publisher.emit(_event("m-client", 0))
        assert publisher.flush(5)
    with ProgressPublisher(redis.ConnectionPool.from_url(redis_url), channel) as publisher:
        publisher.emit(_event("m-pool", 0))
        assert publisher.flush(5)
    assert [e["media_id"] for e in _decode(subscriber.settled())] == ["m-client", "m-pool"]
    client.ping()  # the caller's client is not closed by the publisher


def test_events_redis_refuses_are_counted_and_do_not_block_the_rest(redis_url, channel, caplog):
    """An ACL that forbids the channel: every event is refused, counted as rejected, logged
    once, and the sender is not stuck retrying them."""
    admin = redis.Redis.from_url(redis_url)
    user = f"test-noperm-{channel[-12:]}"
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["allowed-only"],
        commands=["+@all"],
    )
    target = urlsplit(redis_url)
    url = f"redis://{user}:pw@{target.hostname}:{target.port or 6379}/0"
    try:
        with caplog.at_level(logging.ERROR, logger="progress_sdk"):
            publisher = ProgressPublisher(url, channel, min_progress_interval=0)
            for i in range(30):
                publisher.emit(_event("m-acl", i))
                if i == 9:
                    assert publisher.flush(5)  # a second batch, a second refusal
            assert publisher.flush(5)
            stats = publisher.stats()
            publisher.close(1)
        assert stats.dropped == {"rejected": 30} and stats.published == 0
        assert "NOPERM" in (stats.last_error or "") or "permission" in (stats.last_error or "")
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1
        assert all("pw@" not in r.getMessage() for r in caplog.records)
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_mid_connect_with_an_explicit_source_delivers_under_its_own(
    redis_url, channel, subscriber
):
    """Forked right after the parent's first emit (its sender may be connecting), the
    child still delivers, within its timeouts, under a source of its own: the same
    (source, media_id, seq) never appears twice."""
    publisher = ProgressPublisher(redis_url, channel, source="worker-3", min_progress_interval=0)
    try:
        publisher.emit(_event("m-shared", 0))
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                publisher.emit(_event("m-shared", 1))
                code = 0 if publisher.flush(5) and publisher.close(2) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        publisher.emit(_event("m-shared", 2))
        assert publisher.flush(5)
        events = _decode(subscriber.settled())
        keys = [(e["source"], e["media_id"], e["seq"]) for e in events]
        assert len(keys) == 3 and len(set(keys)) == 3
        sources = {e["source"] for e in events}
        assert len(sources) == 2 and all(s.startswith("worker-3:") for s in sources)
    finally:
        publisher.close(1)


def test_a_worker_that_exits_on_an_exception_fails_the_run_it_left_open(
    redis_url, channel, subscriber
):
    """A real worker process whose start()/finish() job raises out of the process: the
    exit hook ends the run with PROCESSING_FAILED, delivered before the process ends."""
    script = (
        "import sys\n"
        "from progress_sdk import ProgressPublisher\n"
        "publisher = ProgressPublisher(sys.argv[1], sys.argv[2])\n"
        "run = publisher.media('m-exit', 'u1').start()\n"
        "run.model('SIGLIP-LSTM-V4').start().progress(2, 10)\n"
        "raise ValueError('the decoder crashed')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, redis_url, channel],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1 and "the decoder crashed" in result.stderr
    events = _decode(subscriber.settled())  # the script has exited
    assert [e["event"] for e in events] == [
        "PROCESSING_STARTED", "ANALYSIS_STARTED", "FRAME_ANALYSIS_PROGRESS",
        "ANALYSIS_FAILED", "PROCESSING_FAILED",
    ]
    assert "exited before" in str(events[-1]["data"]["error_message"])


def test_a_run_a_daemon_thread_starts_while_the_process_exits_never_stays_open(
    redis_url, channel, subscriber
):
    """A daemon thread keeps starting and ending runs while the main thread exits: the exit
    hook refuses new runs before it fails the open ones, so every PROCESSING_STARTED that
    went out has its terminal event."""
    script = (
        "import sys, threading, time\n"
        "from progress_sdk import ProgressPublisher, PublisherClosedError\n"
        "publisher = ProgressPublisher(sys.argv[1], sys.argv[2], min_progress_interval=0)\n"
        "going = threading.Event()\n"
        "def runs():\n"
        "    i = 0\n"
        "    while True:\n"
        "        i += 1\n"
        "        if i == 50:\n"
        "            going.set()\n"
        "        try:\n"
        "            with publisher.media(f'm-{i}', 'u1'):\n"
        "                time.sleep(0.0005)\n"
        "        except PublisherClosedError:\n"
        "            return\n"
        "        except Exception:\n"
        "            pass\n"
        "threading.Thread(target=runs, daemon=True).start()\n"
        "assert going.wait(60)\n"  # exits with runs going on, however loaded the machine
    )
    for _ in range(3):
        subprocess.run([sys.executable, "-c", script, redis_url, channel],
                       check=True, timeout=60)
    events = _decode(subscriber.settled())  # the scripts have exited: all they sent
    started = {(e["source"], e["media_id"]) for e in events
               if e["event"] == "PROCESSING_STARTED"}
    ended = {(e["source"], e["media_id"]) for e in events
             if e["event"] in ("PROCESSING_COMPLETED", "PROCESSING_FAILED")}
    assert started and started <= ended, sorted(started - ended)[:5]


def test_a_forked_child_closing_its_publisher_does_not_fail_the_parents_runs(
    redis_url, channel, subscriber
):
    """Runs open in the parent at the fork are the parent's: the child's close() leaves
    them alone, so each run gets exactly one terminal event."""
    publisher = ProgressPublisher(redis_url, channel, min_progress_interval=0)
    try:
        run = publisher.media("m-parent", "u1").start()
        model = run.model("SIGLIP-LSTM-V4").start()
        assert publisher.flush(5)
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                code = 0 if publisher.close(5) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        model.complete("REAL", 0.8)
        assert run.finish() == "PROCESSING_COMPLETED"
        assert publisher.flush(5)
        events = _decode(subscriber.settled())  # a terminal event from the child included
        terminals = [e["event"] for e in events if str(e["event"]).startswith("PROCESSING_")]
        assert terminals == ["PROCESSING_STARTED", "PROCESSING_COMPLETED"]
    finally:
        publisher.close(1)


def _lifecycle(media: str, event: str, **data: Any) -> dict[str, Any]:
    return {"media_id": media, "user_id": "u1", "event": event, "message": "m", "data": data}


def test_no_subscribers_counts_every_event_published_to_nobody_with_snapshots_on(redis_url):
    """With nobody subscribed, every published event counts as no_subscribers, snapshots or not."""
    channel = f"nobody-{uuid.uuid4().hex}"
    publisher = ProgressPublisher(redis_url, channel, snapshots=True)
    for i in range(20):
        publisher.emit(_lifecycle(f"m{i}", "PROCESSING_STARTED"))
        publisher.emit(_lifecycle(f"m{i}", "PROCESSING_COMPLETED"))
    assert publisher.close(5)
    stats = publisher.stats()
    assert stats.published == 40
    assert stats.no_subscribers == 40, stats


def test_close_sends_or_counts_what_waits_behind_a_sender_that_died(redis_url):
    """After the sender thread died (here: a batch hook raising SystemExit), close()
    restarts it or counts what waits as dropped: nothing stays 'queued' after close()."""
    calls: list[int] = []

    def hook(source: str, events: Any) -> list[Any]:
        calls.append(len(events))
        if len(calls) == 1:
            raise SystemExit("a hook bug")
        return []

    channel = f"dead-sender-{uuid.uuid4().hex}"
    publisher = ProgressPublisher(
        redis_url, channel, batch_hook=hook, snapshots=False, batch_size=1
    )
    publisher.emit(_lifecycle("m1", "PROCESSING_STARTED"))
    publisher.emit(_lifecycle("m1", "PROCESSING_COMPLETED"))
    # close() comes once the hook has raised (no sleep after it: what the sender does
    # next, die or go on, close() must handle either way).
    deadline = time.monotonic() + 30
    while not calls:
        assert time.monotonic() < deadline, "the sender never called the hook"
        time.sleep(0.01)
    publisher.close(5)
    stats = publisher.stats()
    assert stats.queued == 0, stats
    assert stats.published + stats.dropped_total == 2, stats


def test_accounting_balances_at_every_moment_when_progress_data_breaks_after_emit(redis_url):
    """accepted = published + coalesced + dropped + queued in every stats() snapshot, also
    while the sender drops progress events whose data stopped being JSON after emit()."""
    channel = f"broken-data-{uuid.uuid4().hex}"
    publisher = ProgressPublisher(redis_url, channel, min_progress_interval=0, snapshots=False)
    stop = threading.Event()
    off: list[int] = []

    def balance() -> int:
        s = publisher.stats()
        return s.accepted - (s.published + s.coalesced + s.dropped_total + s.queued)

    def watch() -> None:
        while not stop.is_set():
            if b := balance():
                off.append(b)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(2000):
            details: dict[str, Any] = {"k": 1}
            data = {"model_name": "a", "progress": 1, "total": 2, "details": details}
            publisher.emit(_lifecycle(f"m{i % 50}", "FRAME_ANALYSIS_PROGRESS", **data))
            details["k"] = {1, 2}  # no longer JSON once the sender serialises it
            if i % 20 == 0:
                time.sleep(0.002)
        publisher.flush(5)
    finally:
        stop.set()
        watcher.join()
        publisher.close(2)
    assert off == [], f"{len(off)} snapshots off balance, e.g. {off[:3]}"
_EMIT_AND_RETURN = """
import sys
from progress_sdk import ProgressPublisher

def main():
    publisher = ProgressPublisher(sys.argv[1], sys.argv[2], snapshots=False)
    for i in range(2000):
        publisher.emit({"media_id": f"m{i}", "user_id": "u", "event": "PROCESSING_STARTED",
                        "message": "m", "data": {}})
    # main() returns without close(); the interpreter exits: the exit hook flushes.

main()
"""


def test_events_of_a_publisher_that_went_out_of_scope_are_flushed_at_exit(
    redis_url, channel, subscriber, tmp_path
):
    """A script whose publisher was a local of a function that returned before exit still
    gets its events out at interpreter exit (the documented 2 s exit flush)."""
    script = tmp_path / "job.py"
    script.write_text(_EMIT_AND_RETURN)
    subprocess.run([sys.executable, str(script), redis_url, channel], check=True, timeout=30)
    assert len(subscriber.settled()) == 2000


def test_a_closed_publisher_nobody_references_is_collected(redis_url, channel):
    """What keeps an unreferenced publisher alive for the exit flush (its running sender)
    ends with close(): a closed publisher is not kept in memory, nor its socket open (the
    collection below runs under filterwarnings=error: an unclosed socket's
    ResourceWarning fails the test)."""
    # The garbage of tests that ran before on this worker goes first, its warnings not
    # ours to report: a socket another test left unclosed surfaced here, at the collection
    # below, and failed this test. What this test creates is collected after it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    publisher = ProgressPublisher(redis_url, channel, snapshots=False)
    publisher.emit(_event("m-gc", 0))
    assert publisher.close(5)
    ref = weakref.ref(publisher)
    del publisher
    gc.collect()
    assert ref() is None
