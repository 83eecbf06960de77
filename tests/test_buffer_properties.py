"""The overflow invariant, held over random emit / overflow / outage / hang sequences.

Every media whose PROCESSING_STARTED was sent gets its terminal event sent. A terminal
event gives way only when the waiting events were all terminal events of media whose
start was sent or in flight (counted in ``terminals_lost``), and then it is kept aside
and queued again, same bytes and seq, once there is room (the harness plays the sender:
``resend_lost`` before each batch) or before its media's next start; and every event
lost before a media's last sent event shows as a gap in its ``seq``. This holds in every
state of the sender, including while a batch is in flight (a connect that hangs), after
it is put back unwritten (no connection), and after it is published in part or cut after
it was written (Redis may have published the rest: consumers may have seen it). "Media"
means a *run* of a media: a run may announce itself more than once (rule 1), and a media
may be analysed again after its terminal event. ``accepted + resent == published +
coalesced + dropped + queued`` after every step.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from progress_sdk import _waiting
from progress_sdk._buffer import EventBuffer
from progress_sdk._entry import DONE, Entry
from progress_sdk._wire import WireEncoder

ENCODER = WireEncoder("prop")
MODEL_EVENTS = ["ANALYSIS_QUEUED", "ANALYSIS_STARTED", "AUDIO_EXTRACTION_START"]
MEDIA = 8
MAX_BATCH = 8
SEGMENT, MIN_DEAD = 4, 1  # the queue's, small so that its segments are rebuilt here


def make(media: str, event: str, model: str | None = None, done: int = 0, run: int = 0) -> Entry:
    data: dict[str, Any] = {}
    if model is not None:
        data["model_name"] = model
    if event == "FRAME_ANALYSIS_PROGRESS":
        data.update(progress=done, total=1000)
    # The run id lets the test tell runs apart on the wire; the buffer tells them apart by
    # order (a start after a terminal event begins another run), as without one.
    fields = {"media_id": media, "user_id": "u", "event": event, "message": "m", "data": data}
    entry = Entry({**fields, "run_id": f"r{run}"}, 0.0)
    if entry.progress_key is None:
        entry.serialise(ENCODER, keep=False)
    return entry


ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.integers(0, MEDIA - 1)),
        st.tuples(st.just("model"), st.integers(0, MEDIA - 1), st.sampled_from(MODEL_EVENTS)),
        st.tuples(st.just("progress"), st.integers(0, MEDIA - 1), st.integers(0, 2)),
        st.tuples(st.just("model_end"), st.integers(0, MEDIA - 1)),
        st.tuples(st.just("end"), st.integers(0, MEDIA - 1)),
        st.tuples(st.just("send"), st.integers(1, MAX_BATCH)),
        st.tuples(st.just("outage"), st.integers(1, MAX_BATCH)),
        # A batch taken and left in flight (a connect that hangs), then written and
        # published, or put back (the connect failed: nothing was written).
        st.tuples(st.just("hang"), st.integers(1, MAX_BATCH)),
        st.tuples(st.just("connected"), st.just(0)),
        st.tuples(st.just("refused"), st.just(0)),
        # The batch in flight: its first n published, the rest put back after the
        # connection was cut (written: Redis may have published them too).
        st.tuples(st.just("cut"), st.integers(0, MAX_BATCH)),
    ),
    max_size=150,
)


# Starts and terminal events only, over fewer media: repeats (rule 1), re-runs and
# overflows of start and terminal events alone are frequent here, rare above.
edge_ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.integers(0, 3)),
        st.tuples(st.just("end"), st.integers(0, 3)),
        st.tuples(st.sampled_from(["send", "outage", "hang", "cut"]), st.integers(0, 4)),
        st.tuples(st.sampled_from(["connected", "refused"]), st.just(0)),
    ),
    max_size=60,
)


def _decoded(item: Any) -> dict[str, Any]:
    wire = item if isinstance(item, bytes) else item.finish(ENCODER, keep=False)
    event: dict[str, Any] = json.loads(wire)
    return event


Run = tuple[str, str]  # (media, run id)


class Harness:
    """Drives one buffer and plays the sender, recording what went out."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer = EventBuffer(capacity, 0.0)
        self.sent: list[dict[str, Any]] = []  # confirmed published
        self.seen: dict[tuple[str, int], dict[str, Any]] = {}  # what consumers may have seen
        self.flight: list[Any] | None = None  # the batch in flight, if any
        self.accepted = 0
        self.done = [0] * MEDIA
        self.run = [0] * MEDIA  # the media's current run
        self.live: set[int] = set()  # media whose current run has not ended
        self.ended: set[Run] = set()
        self.numbered = [0] * MEDIA  # events of each media that took a seq number
        self.end_seq: dict[Run, int] = {}  # the seq each run's terminal event took
        self.terminal_lost_legitimately: set[Run] = set()
        self.terminal_losses = 0  # a terminal event queued again may be lost again
        self.events: dict[int, tuple[str, str, str]] = {}  # id(entry) -> what it is

    def event_of(self, item: Any) -> tuple[str, str, str]:
        """(media, run, event type) of a queued item."""
        if isinstance(item, Entry):
            return self.events[id(item)]
        event = json.loads(item)
        return event["media_id"], event["run_id"], event["event"]

    # -- what the buffer knows as "on screen, or may be": a start of the run seen or in flight

    def start_out(self, run: Run) -> bool:
        start = (*run, "PROCESSING_STARTED")
        seen = ((e["media_id"], e["run_id"], e["event"]) for e in self.seen.values())
        return start in seen or any(self.event_of(item) == start for item in self.flight or [])

    def accept(self, media: int, event: str, model: str | None = None, done: int = 0) -> None:
        buffer, name = self.buffer, f"m{media}"
        entry = make(name, event, model, done, self.run[media])
        self.events[id(entry)] = (name, f"r{self.run[media]}", event)
        before = dict(buffer.waiting())
        coalesced = buffer.coalesced
        lost_count = buffer.lost.kept
        resent = buffer.lost.resent
        buffer.accept(entry)
        self.accepted += 1
        if buffer.coalesced == coalesced:
            self.numbered[media] += 1
            if event == "PROCESSING_COMPLETED":
                self.end_seq[(name, f"r{self.run[media]}")] = self.numbered[media]
        after = {ticket for ticket, _ in buffer.waiting()}
        lost = [item for ticket, item in before.items() if ticket not in after]
        if entry.state == DONE and buffer.coalesced == coalesced:  # dropped at once
            lost.append(entry)
        # A start queues its media's lost terminal event first; one that found no room
        # went back aside (a loss again, by the same ranks).
        queued = int(entry.state != DONE and buffer.coalesced == coalesced)
        needed_losses = buffer.lost.resent - resent - (len(after - before.keys()) - queued)
        for item in lost:
            lost_name, lost_run, lost_event = self.event_of(item)
            if lost_event == "PROCESSING_COMPLETED":
                needed_losses += self.check_terminal_loss((lost_name, lost_run), before)
        assert buffer.lost.kept - lost_count == needed_losses
        self.terminal_losses += needed_losses

    def check_terminal_loss(self, run: Run, before: dict[int, Any]) -> int:
        """A terminal event gave way: legitimate, and counted, only when the buffer was
        full of terminal events of runs that may be on screen; or its run nobody saw (and
        none of its starts is left to open a panel). Returns the losses to be counted."""
        if self.start_out(run):
            assert len(before) >= self.capacity, (run, before)
            for other in before.values():
                *other_run, other_event = self.event_of(other)
                assert other_event == "PROCESSING_COMPLETED", (run, other_event)
                assert self.start_out((other_run[0], other_run[1])), (run, other_run)
            self.terminal_lost_legitimately.add(run)
            return 1
        start = (*run, "PROCESSING_STARTED")
        assert all(self.event_of(item) != start for _, item in self.buffer.waiting()), run
        return 0

    def play(self, op: tuple[Any, ...]) -> None:
        kind, media = op[0], op[1]
        live = media in self.live
        if kind == "start":  # a new run, or a repeat of the live one's start (rule 1)
            if not live and (f"m{media}", f"r{self.run[media]}") in self.ended:
                self.run[media] += 1  # analysed again
            self.live.add(media)
            self.accept(media, "PROCESSING_STARTED")
        elif kind == "model" and live:
            self.accept(media, op[2], "A")
        elif kind == "progress" and live:
            self.done[media] += 1
            self.accept(media, "FRAME_ANALYSIS_PROGRESS", f"M{op[2]}", self.done[media])
        elif kind == "model_end" and live:
            self.accept(media, "ANALYSIS_COMPLETED", "A")
        elif kind == "end" and live:
            self.live.discard(media)
            self.ended.add((f"m{media}", f"r{self.run[media]}"))
            self.accept(media, "PROCESSING_COMPLETED")
        elif self.flight is None and kind in ("send", "outage", "hang"):
            self.buffer.resend_lost()  # as the sender does before each batch
            self.flight = self.buffer.take(op[1])
            if kind == "send":
                self.publish()
            elif kind == "outage":
                self.put_back()
        elif self.flight is not None and kind == "connected":
            self.publish()
        elif self.flight is not None and kind == "refused":
            self.put_back()
        elif self.flight is not None and kind == "cut":
            self.cut(op[1])
        self.check_accounting()

    def show(self, items: list[Any]) -> None:
        for item in items:
            event = _decoded(item)
            self.seen[(event["media_id"], event["seq"])] = event  # a repeat is dropped

    def publish(self) -> None:
        assert self.flight is not None
        self.show(self.flight)
        self.sent += [_decoded(item) for item in self.flight]
        self.flight = None
        self.buffer.finish_batch()

    def put_back(self) -> None:
        assert self.flight is not None
        self.buffer.finish_batch(requeue=self.flight, written=False)
        self.flight = None

    def cut(self, published: int) -> None:
        """The first ``published`` of the batch confirmed; the rest put back after the
        connection was cut, and Redis published them all the same (the worst case)."""
        assert self.flight is not None
        flight, self.flight = self.flight, None
        self.show(flight)
        self.sent += [_decoded(item) for item in flight[:published]]
        self.buffer.finish_batch(requeue=flight[published:], written=True)

    def check_accounting(self) -> None:
        buffer = self.buffer
        dropped = sum(buffer.dropped.values())
        resent = buffer.lost.resent
        assert self.accepted + resent == len(self.sent) + buffer.coalesced + dropped + buffer.queued
        lost = buffer.lost
        assert buffer.lost.kept == lost.resent + len(lost) + lost.abandoned
        # The waiting events, plus the batch in flight (at most one batch over capacity).
        assert buffer.queued <= self.capacity + MAX_BATCH
        # What holds them stays within a few times that, however many were evicted.
        held, most = buffer.footprint(), self.capacity + MAX_BATCH
        assert held.slots <= 3 * most + 4 * SEGMENT, (held, most)
        assert held.starts <= 2 * most and held.media <= MEDIA

    def drain(self) -> None:
        if self.flight is not None:
            self.publish()
        while self.buffer.resend_lost() or self.buffer.ready:
            self.flight = self.buffer.take(1000)
            self.publish()


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 8), program=ops)
# m0's start is sent, then m0's terminal waits with two other media's start and end.
@example(
    4, [("start", 0), ("send", 1), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]
)
# The whole buffer in flight while the connect hangs: the terminal events of the starts
# in flight must find room (issue #17).
@example(
    4,
    [("start", 0), ("start", 1), ("start", 2), ("start", 3), ("hang", 8)]
    + [("end", i) for i in range(4)]
    + [("start", 4), ("end", 4), ("connected", 0)],
)
# The same, the connect failing first: the batch put back is evictable again.
@example(
    4,
    [("start", 0), ("start", 1), ("start", 2), ("start", 3), ("hang", 8), ("refused", 0)]
    + [("start", 4), ("start", 5), ("end", 0), ("end", 4), ("hang", 8)]
    + [("end", i) for i in range(1, 4)]
    + [("connected", 0)],
)
# Media nobody saw end before the media in flight: they must not hold its terminal's place.
@example(
    2,
    [("start", 0), ("hang", 1)]
    + [op for i in range(1, 5) for op in (("start", i), ("end", i))]
    + [("end", 0), ("connected", 0)],
)
def test_every_sent_start_gets_its_terminal_unless_terminals_of_shown_media_filled_it(
    capacity, program
):
    """Terminal events give way only to terminal events of runs that may be on screen,
    when nothing else waits; every loss before a run's terminal event is a gap in its
    media's seq; the accounting is exact after every step."""
    _play_and_check(capacity, program)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 4), program=edge_ops)
# A terminal event put back (bytes, not the arena's) gives way to another: counted.
@example(
    2,
    [op for i in range(3) for op in (("start", i), ("send", 1))]
    + [("end", 0), ("end", 1), ("outage", 4), ("end", 2)],
)
# A media analysed again: the first run's start goes with the first run's terminal.
@example(4, [("start", 0), ("end", 0), ("start", 0), ("end", 0), ("start", 1)])
# A run announced twice: the first start gives way, the repeat still opens the panel.
@example(4, [("start", 0), ("start", 1), ("start", 0), ("end", 0), ("start", 2)])
# The first start published, the repeat gives way: the panel is open all the same.
@example(2, [("start", 0), ("send", 1), ("start", 0), ("end", 0), ("start", 1)])
# A start cut after it was written (maybe published) then gives way.
@example(3, [("start", 0), ("hang", 1), ("cut", 0), ("end", 0), ("start", 1), ("start", 2)])
def test_the_invariant_holds_for_runs_repeated_starts_re_runs_and_cut_batches(capacity, program):
    """The same, with only starts, terminal events and the sender's moves: a run
    announced twice, a media analysed again, batches cut after they were written."""
    _play_and_check(capacity, program)


def _play_and_check(capacity: int, program: list[tuple[Any, ...]]) -> None:
    saved = _waiting.SEGMENT, _waiting.MIN_DEAD
    _waiting.SEGMENT, _waiting.MIN_DEAD = SEGMENT, MIN_DEAD
    try:
        _play(capacity, program)
    finally:
        _waiting.SEGMENT, _waiting.MIN_DEAD = saved


def _play(capacity: int, program: list[tuple[Any, ...]]) -> None:
    harness = Harness(capacity)
    for op in program:
        harness.play(op)
    harness.drain()
    harness.check_accounting()
    for media in {e["media_id"] for e in harness.sent}:
        seqs = [e["seq"] for e in harness.sent if e["media_id"] == media]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), media
    by_run: dict[Run, list[str]] = {}
    for (media, _), event in sorted(harness.seen.items()):
        run = (media, event["run_id"])
        by_run.setdefault(run, []).append(event["event"])
        if event["event"] == "PROCESSING_COMPLETED":
            # Every event of the media lost before it (not replaced) is a gap before it.
            assert event["seq"] == harness.end_seq[run], run
    for run, events in by_run.items():
        if "PROCESSING_STARTED" in events and run in harness.ended:
            # Its terminal event too, queued again if it had to give way.
            assert "PROCESSING_COMPLETED" in events, (run, events)
    buffer = harness.buffer
    assert buffer.queued == 0 and len(buffer.lost) == 0 and buffer.lost.abandoned == 0
    assert buffer.lost.kept == harness.terminal_losses == buffer.lost.resent
    assert harness.terminal_lost_legitimately <= harness.ended
