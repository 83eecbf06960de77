"""close() racing job threads, and close()/stats() called from a signal handler.

Issue #8: every media whose ``PROCESSING_STARTED`` went out gets a terminal event, and
nothing the publisher does blocks or crashes the job, a worker's SIGTERM handler included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from signal_locks import LockPoints

from progress_sdk import ProgressPublisher, PublisherClosedError, TrackingError
from progress_sdk.testing import CapturingPublisher, CapturingTransport

TERMINAL = ("PROCESSING_COMPLETED", "PROCESSING_FAILED")


def lifecycle(transport: CapturingTransport) -> Counter[tuple[str, str]]:
    """(media_id, START or END) -> how many went out."""
    seen: Counter[tuple[str, str]] = Counter()
    for event in transport.events:
        if event["event"] == "PROCESSING_STARTED":
            seen[event["media_id"], "START"] += 1
        elif event["event"] in TERMINAL:
            seen[event["media_id"], "END"] += 1
    return seen


def unended(transport: CapturingTransport) -> list[str]:
    """Media whose PROCESSING_STARTED went out without exactly one terminal event."""
    seen = lifecycle(transport)
    started = {media for media, kind in seen if kind == "START"}
    return sorted(m for m in started if seen[m, "START"] != 1 or seen[m, "END"] != 1)


def hook_accept(
    publisher: ProgressPublisher,
    before: Callable[[dict[str, Any]], None] | None = None,
    after: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Wrap this publisher's accept() (what emit() and the tracking API hand events to)
    to play a race around it: composition, no subclass."""
    accept = publisher.accept

    def hooked(fields: dict[str, Any]) -> None:
        if before is not None:
            before(fields)
        accept(fields)
        if after is not None:
            after(fields)

    publisher.accept = hooked  # type: ignore[method-assign]


class StartsAMediaWhileClosing:
    """Plays a worker thread that starts a media just as close() fails the runs left
    open: hooked after the publisher's accept()."""

    def __init__(self, publisher: ProgressPublisher) -> None:
        self.late_run = publisher.media("late", "u1")
        self.late_start: BaseException | None = None
        hook_accept(publisher, after=self.after_accept)

    def after_accept(self, fields: dict[str, Any]) -> None:
        if fields["event"] == "PROCESSING_FAILED" and fields["media_id"] == "left-open":
            try:
                self.late_run.start()
            except PublisherClosedError as exc:
                self.late_start = exc


def test_a_media_started_while_close_fails_open_runs_is_refused():
    """A run that starts after close() began is refused at PROCESSING_STARTED: accepted,
    it would be missed by close() and its terminal event refused afterwards."""
    transport = CapturingTransport()
    publisher = ProgressPublisher(
        channel="close-race", transport=transport, finish_flush_timeout=0
    )
    race = StartsAMediaWhileClosing(publisher)
    publisher.media("left-open", "u1").start()
    publisher.close(2)
    refused_terminal = None
    if race.late_start is None:  # accepted: the job must still be able to end it
        try:
            race.late_run.finish()
        except PublisherClosedError as exc:
            refused_terminal = exc
    assert refused_terminal is None
    assert isinstance(race.late_start, PublisherClosedError)
    assert unended(transport) == []
    assert lifecycle(transport)["left-open", "END"] == 1


def test_the_capturing_publisher_refuses_a_media_started_while_closing_too():
    """CapturingPublisher keeps the same order: the run left open is failed and recorded,
    the late start is refused."""
    publisher = CapturingPublisher()
    race = StartsAMediaWhileClosing(publisher)
    publisher.media("left-open", "u1").start()
    publisher.close()
    assert isinstance(race.late_start, PublisherClosedError)
    assert publisher.events.types() == ["PROCESSING_STARTED", "PROCESSING_FAILED"]
    publisher.events.assert_valid()


def test_threads_starting_and_ending_runs_while_close_runs_leave_no_panel_open():
    """Four threads start and finish media in a loop while another thread closes the
    publisher (with runs left open for it to fail): every PROCESSING_STARTED accepted gets
    exactly one terminal event, and no terminal event is refused (a run close() already
    failed answers TrackingError)."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads finely: the race is narrow
    try:
        for attempt in range(10):
            hammer_a_closing_publisher(attempt)
    finally:
        sys.setswitchinterval(switch_interval)


def hammer_a_closing_publisher(attempt: int) -> None:
    transport = CapturingTransport()
    publisher = ProgressPublisher(
        channel="close-race", transport=transport, finish_flush_timeout=0
    )
    for i in range(100):
        publisher.media(f"left-open-{i}", "u1").start()
    refused_terminals: list[str] = []
    go = threading.Barrier(5)

    def work(t: int) -> None:
        go.wait()
        for i in range(10_000):
            run = publisher.media(f"m{attempt}-{t}-{i}", "u1")
            try:
                run.start()
            except PublisherClosedError:
                return  # refused at the start: nothing went out for it
            try:
                with run.model("M") as model:
                    model.progress(1, 2)
                run.finish()
            except TrackingError:
                pass  # close() failed the run first: its terminal event went out
            except PublisherClosedError:
                refused_terminals.append(run.media_id)
                return

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    go.wait()
    publisher.close(5)
    for thread in threads:
        thread.join(10)
    assert refused_terminals == []
    assert unended(transport) == []
    stats = publisher.stats()
    assert stats.accepted == stats.published + stats.coalesced + stats.dropped_total


class ClosesWhileATerminalEventGoesIn:
    """Plays close() on another thread arriving just as a job thread's finish() hands in
    its terminal event: hooked before accept(), it lets that close() go as far as it can
    first (to its end, or until it waits for the run being ended)."""

    def __init__(self, publisher: ProgressPublisher) -> None:
        self.publisher = publisher
        self.closer: threading.Thread | None = None
        self.close_went_far = threading.Event()
        hook_accept(publisher, before=self.before_accept)

    def before_accept(self, fields: dict[str, Any]) -> None:
        if fields["event"] in TERMINAL and self.closer is None:
            self.closer = threading.Thread(target=self.close_then_say, args=(5,))
            self.closer.start()
            assert self.close_went_far.wait(10)

    def close_then_say(self, timeout: float) -> None:
        self.publisher.close(timeout)
        self.close_went_far.set()


def test_a_terminal_event_handed_in_as_close_begins_goes_out():
    """A run ending on one thread while another closes the publisher: close() either
    fails the run or waits for its terminal event, which is never refused (the run left
    close()'s list of open runs only after its terminal event was accepted)."""
    transport = CapturingTransport()
    publisher = ProgressPublisher(
        channel="close-end-race", transport=transport, finish_flush_timeout=0
    )
    race = ClosesWhileATerminalEventGoesIn(publisher)
    points = LockPoints()
    points.install()  # the run's own lock, probed
    try:
        run = publisher.media("ending", "u1")
    finally:
        points.uninstall()
    # close() waits for the run's lock from there (this thread holds it in finish()).
    points.other_thread_takes = race.close_went_far.set
    run.start()
    try:
        outcome: str | BaseException = run.finish()
    except PublisherClosedError as exc:
        outcome = exc
    assert race.closer is not None
    race.closer.join(10)
    assert outcome == "PROCESSING_FAILED"
    assert unended(transport) == []


def interrupt_after_the_start(fields: dict[str, Any]) -> None:
    """Plays a SIGTERM handler that raises SystemExit (as docs/publisher.md advises) and
    runs just after a run's PROCESSING_STARTED went in, before start() returns."""
    if fields["event"] == "PROCESSING_STARTED":
        raise SystemExit("SIGTERM")


def test_a_start_interrupted_after_its_event_went_in_is_still_ended_by_close():
    """An exception that interrupts start() after its PROCESSING_STARTED was accepted
    leaves the run among the open ones: close() (or the exit hook) ends it."""
    transport = CapturingTransport()
    publisher = ProgressPublisher(
        channel="interrupted-start", transport=transport, finish_flush_timeout=0
    )
    hook_accept(publisher, after=interrupt_after_the_start)
    with pytest.raises(SystemExit), publisher.media("m1", "u1"):
        pass
    assert publisher.close(2) is True
    assert lifecycle(transport) == {("m1", "START"): 1, ("m1", "END"): 1}


class ClosedByAHandlerInsideARunsEnd:
    """Plays a signal handler calling close() on the job's own thread while finish() is
    handing in its terminal event (the run has marked itself ended, the event is not in
    yet: the few microseconds it is serialised)."""

    def __init__(self, publisher: ProgressPublisher) -> None:
        self.publisher = publisher
        self.handler_result: bool | None = None
        hook_accept(publisher, before=self.before_accept)

    def before_accept(self, fields: dict[str, Any]) -> None:
        if fields["event"] in TERMINAL and self.handler_result is None:
            self.handler_result = self.publisher.close(2)


def test_close_from_a_handler_inside_a_runs_end_holds_back_and_the_end_goes_out():
    """close() from a handler that interrupted a run's end on the same thread cannot end
    that run (it is ending) nor wait for it (it would wait on its own thread): it refuses
    new runs and returns False at once, the terminal event goes in, and a later close()
    sends everything."""
    transport = CapturingTransport()
    publisher = ProgressPublisher(
        channel="handler-in-run-end", transport=transport, finish_flush_timeout=0
    )
    handler = ClosedByAHandlerInsideARunsEnd(publisher)
    with publisher.media("m1", "u1"):
        pass
    assert handler.handler_result is False
    with pytest.raises(PublisherClosedError):
        publisher.media("m2", "u1").start()
    assert publisher.close(2) is True
    assert lifecycle(transport) == {("m1", "START"): 1, ("m1", "END"): 1}


# -- signal handlers ------------------------------------------------------------------

def run_signal_job(script: str, what: str) -> dict[str, Any]:
    """Run a job script (``{tests}`` in it: this directory) in a process of its own, where
    a real signal can hit it; what it printed as JSON. A hang fails the test as a deadlock
    of ``what``."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", script.format(tests=str(Path(__file__).parent))],
            check=False, capture_output=True, text=True, timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} deadlocked")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


SIGNAL_JOB = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from signal_locks import LockPoints
    from test_publisher_close import unended
    from progress_sdk.testing import CapturingTransport
    from progress_sdk import ProgressPublisher
    import signal

    transport = CapturingTransport()
    points = LockPoints()
    points.install()  # the locks the publisher makes for itself, and only those
    publisher = ProgressPublisher(channel="signal", transport=transport)
    points.uninstall()
    seen = {{"locks": points.made}}

    def on_signal(signum, frame):
        seen["inside"] = points.fired
        stats = publisher.stats()
        seen["stats_accepted"] = stats.accepted
        seen["flush"] = publisher.flush(1)
        seen["close"] = publisher.close(1)
        seen["second_close"] = publisher.close(0.2)

    signal.signal(signal.SIGUSR1, on_signal)
    accept = publisher.accept  # what emit() and the tracking API hand each event to
    # The first event (the run's PROCESSING_STARTED) is interrupted as it lets the
    # publisher's lock go the first time: it is in by then.
    points.only, points.fire_at = "let go", 1

    def accept_interrupted(fields):
        seen.setdefault("inside_accept", fields["event"])
        points.watching = True
        try:
            accept(fields)
        finally:
            points.watching = False

    publisher.accept = accept_interrupted
    with publisher.media("m1", "u1") as run:
        with run.model("M") as model:
            model.progress(1, 1)
    seen["final_close"] = publisher.close(2)
    seen["unended"] = unended(transport)
    seen["events"] = len(transport.sent)
    print(json.dumps(seen))
    """
)



def test_close_stats_and_flush_from_a_signal_handler_that_interrupts_emit_return():
    """A SIGUSR1 handler runs while the main thread's emit() holds the publisher's lock:
    stats() gives a snapshot, flush() and close() return False at once instead of
    deadlocking, and a later close() sends everything (the run ends on screen)."""
    seen = run_signal_job(SIGNAL_JOB, "close()/stats() in a handler interrupting emit()")
    assert seen["locks"] >= 1  # the publisher's lock is a threading.RLock: probed
    assert (seen["inside_accept"], seen["inside"]) == ("PROCESSING_STARTED", "let go")
    assert seen["stats_accepted"] == 1
    assert (seen["flush"], seen["close"], seen["second_close"]) == (False, False, False)
    assert seen["final_close"] is True
    assert seen["unended"] == []
    assert seen["events"] == 5


SIGNAL_DURING_START = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from signal_locks import LockPoints

    points = LockPoints()
    points.install()  # before progress_sdk is imported: its module-level locks too
    import json, signal
    from progress_sdk.testing import CapturingTransport
    from progress_sdk import ProgressPublisher, PublisherClosedError

    def start_a_run(fire_at):
        transport = CapturingTransport()
        publisher = ProgressPublisher(channel="signal-start", transport=transport)
        seen = {{}}
        signal.signal(signal.SIGUSR1, lambda *_: seen.setdefault("close", publisher.close(1)))
        run = publisher.media("m1", "u1")
        points.passed, points.fire_at, points.watching = 0, fire_at, True
        try:
            run.start()
        except PublisherClosedError:
            seen["start_refused"] = True
        finally:
            points.watching = False
        seen["points"], seen["inside"] = points.passed, points.fired
        points.fired = None
        if "start_refused" not in seen:
            seen["finish"] = run.finish()
        seen["final_close"] = publisher.close(2)
        seen["events"] = [json.loads(p)["event"] for p in transport.sent]
        return seen

    points_in_a_start = start_a_run(None)["points"]
    print(json.dumps([start_a_run(k) for k in range(1, points_in_a_start + 1)]))
    """
)


def test_close_from_a_signal_handler_at_any_lock_a_runs_start_holds() -> None:
    """A SIGTERM-style handler calls close() at each point where the main thread's
    run.start() takes or lets go a lock of progress_sdk's (the run's own, the registry of
    open runs', the publisher's): close() never deadlocks, and either the start is
    refused and nothing went out for the media, or the run starts and ends once."""
    seen = run_signal_job(SIGNAL_DURING_START, "close() in a handler interrupting a start")
    assert len(seen) >= 4  # each of three locks taken and let go at least once
    for point, outcome in enumerate(seen, start=1):
        assert outcome["inside"] in ("take", "let go"), point
        assert outcome["final_close"] is True, point
        if outcome.get("start_refused"):
            assert outcome["events"] == [], point
        else:
            # No model ran: the run's end is PROCESSING_FAILED, whoever ends it.
            assert outcome["events"] == ["PROCESSING_STARTED", "PROCESSING_FAILED"], point
    # Both ways a close() from a handler ends: at once, when the thread holds what it
    # would wait for; in full, when it holds only the registry's lock or a run's not yet
    # registered (the start that follows is then refused).
    assert {o["close"] for o in seen} == {True, False}
    assert any(o["close"] and o.get("start_refused") for o in seen)
