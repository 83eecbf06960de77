"""The overflow invariant, held over random emit / overflow / outage / hang sequences.

Every media whose PROCESSING_STARTED was sent gets its terminal event sent, unless, when
that terminal event gave way, the waiting events were all terminal events of media whose
start was sent or in flight (counted in ``terminals_lost``); and every event lost before
a media's last sent event shows as a gap in its ``seq``. This holds in every state of the
sender, including while a batch is in flight (a connect that hangs) and after it is put
back; and ``accepted == published + coalesced + dropped + queued`` after every step.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from progress_sdk._buffer import DONE, Entry, EventBuffer
from progress_sdk._wire import WireEncoder

ENCODER = WireEncoder("prop")
MODEL_EVENTS = ["ANALYSIS_QUEUED", "ANALYSIS_STARTED", "AUDIO_EXTRACTION_START"]
MEDIA = 8
MAX_BATCH = 8


def make(media: str, event: str, model: str | None = None, done: int = 0) -> Entry:
    data: dict[str, Any] = {}
    if model is not None:
        data["model_name"] = model
    if event == "FRAME_ANALYSIS_PROGRESS":
        data.update(progress=done, total=1000)
    entry = Entry(
        {"media_id": media, "user_id": "u", "event": event, "message": "m", "data": data}, 0.0
    )
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
    ),
    max_size=150,
)


def _decoded(item: Any) -> dict[str, Any]:
    wire = item if isinstance(item, bytes) else item.finish(ENCODER, keep=False)
    event: dict[str, Any] = json.loads(wire)
    return event


def _event_of(item: Any) -> tuple[str, str]:
    if isinstance(item, Entry):
        return item.media_id, item.event
    event = json.loads(item)
    return event["media_id"], event["event"]


class Harness:
    """Drives one buffer and plays the sender, recording what went out."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer = EventBuffer(capacity, 0.0)
        self.sent: list[dict[str, Any]] = []
        self.flight: list[Any] | None = None  # the batch in flight, if any
        self.accepted = 0
        self.done = [0] * MEDIA
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.numbered = [0] * MEDIA  # events of each media that took a seq number
        self.terminal_lost_legitimately: set[str] = set()

    # -- what the buffer knows as "on screen, or may be": a start sent or in flight --------

    def start_out(self, media: str) -> bool:
        start = (media, "PROCESSING_STARTED")
        return any((e["media_id"], e["event"]) == start for e in self.sent) or any(
            _event_of(item) == start for item in self.flight or []
        )

    def accept(self, entry: Entry, media: int) -> None:
        buffer = self.buffer
        before = dict(buffer.waiting())
        coalesced = buffer.coalesced
        lost_count = buffer.terminals_lost
        buffer.accept(entry)
        self.accepted += 1
        if buffer.coalesced == coalesced:
            self.numbered[media] += 1
        after = {ticket for ticket, _ in buffer.waiting()}
        lost = [item for ticket, item in before.items() if ticket not in after]
        if entry.state == DONE and buffer.coalesced == coalesced:  # dropped at once
            lost.append(entry)
        needed_losses = 0
        for item in lost:
            name, event = _event_of(item)
            if event != "PROCESSING_COMPLETED":
                continue
            if self.start_out(name):
                # A terminal event of a media that may be on screen gives way only when
                # the buffer is full of those.
                needed_losses += 1
                assert len(before) >= self.capacity, (name, before)
                for other in before.values():
                    other_name, other_event = _event_of(other)
                    assert other_event == "PROCESSING_COMPLETED", (name, other_event)
                    assert self.start_out(other_name), (name, other_name)
                self.terminal_lost_legitimately.add(name)
            else:
                # A media nobody saw: its start went too (or never got in).
                assert all(
                    _event_of(item) != (name, "PROCESSING_STARTED") for _, item in buffer.waiting()
                ), name
        assert buffer.terminals_lost - lost_count == needed_losses

    def play(self, op: tuple[Any, ...]) -> None:
        kind, media = op[0], op[1]
        name = f"m{media}"
        live = media in self.started - self.ended
        if kind == "start" and media not in self.started:
            self.started.add(media)
            self.accept(make(name, "PROCESSING_STARTED"), media)
        elif kind == "model" and live:
            self.accept(make(name, op[2], "A"), media)
        elif kind == "progress" and live:
            self.done[media] += 1
            self.accept(make(name, "FRAME_ANALYSIS_PROGRESS", f"M{op[2]}", self.done[media]), media)
        elif kind == "model_end" and live:
            self.accept(make(name, "ANALYSIS_COMPLETED", "A"), media)
        elif kind == "end" and live:
            self.ended.add(media)
            self.accept(make(name, "PROCESSING_COMPLETED"), media)
        elif self.flight is None and kind in ("send", "outage", "hang"):
            self.flight = self.buffer.take(op[1])
            if kind == "send":
                self.publish()
            elif kind == "outage":
                self.put_back()
        elif self.flight is not None and kind == "connected":
            self.publish()
        elif self.flight is not None and kind == "refused":
            self.put_back()
        self.check_accounting()

    def publish(self) -> None:
        assert self.flight is not None
        self.sent += [_decoded(item) for item in self.flight]
        self.flight = None
        self.buffer.finish_batch()

    def put_back(self) -> None:
        assert self.flight is not None
        self.buffer.finish_batch(requeue=self.flight)
        self.flight = None

    def check_accounting(self) -> None:
        buffer = self.buffer
        dropped = sum(buffer.dropped.values())
        assert self.accepted == len(self.sent) + buffer.coalesced + dropped + buffer.queued
        # The waiting events, plus the batch in flight (at most one batch over capacity).
        assert buffer.queued <= self.capacity + MAX_BATCH

    def drain(self) -> None:
        if self.flight is not None:
            self.publish()
        while self.buffer.ready:
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
    """Terminal events give way only to terminal events of media that may be on screen,
    when nothing else waits; every loss before a media's terminal event is a gap in its
    seq; the accounting is exact after every step."""
    harness = Harness(capacity)
    for op in program:
        harness.play(op)
    harness.drain()
    harness.check_accounting()
    sent_by_media: dict[str, list[dict[str, Any]]] = {}
    for event in harness.sent:
        sent_by_media.setdefault(event["media_id"], []).append(event)
    for media, events in sent_by_media.items():
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), media
        index = int(media[1:])
        if (
            events[0]["event"] == "PROCESSING_STARTED"
            and index in harness.ended
            and media not in harness.terminal_lost_legitimately
        ):
            assert events[-1]["event"] == "PROCESSING_COMPLETED", media
        if events[-1]["event"] == "PROCESSING_COMPLETED":
            # Every event of the media that was lost (not replaced) is a gap before it.
            assert events[-1]["seq"] == harness.numbered[index], media
    assert harness.buffer.queued == 0
    assert harness.buffer.terminals_lost == len(harness.terminal_lost_legitimately)
