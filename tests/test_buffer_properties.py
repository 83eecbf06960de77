"""The overflow invariant, held over random emit / overflow / outage sequences.

Every media whose PROCESSING_STARTED was sent gets its terminal event sent, unless the
buffer held nothing but terminal events when that terminal event gave way; and
every event lost before a media's last sent event shows as a gap in its ``seq``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from progress_sdk._buffer import Entry, EventBuffer
from progress_sdk._wire import WireEncoder

ENCODER = WireEncoder("prop")
MODEL_EVENTS = ["ANALYSIS_QUEUED", "ANALYSIS_STARTED", "AUDIO_EXTRACTION_START"]


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
        st.tuples(st.just("start"), st.integers(0, 5)),
        st.tuples(st.just("model"), st.integers(0, 5), st.sampled_from(MODEL_EVENTS)),
        st.tuples(st.just("progress"), st.integers(0, 5), st.integers(0, 2)),
        st.tuples(st.just("model_end"), st.integers(0, 5)),
        st.tuples(st.just("end"), st.integers(0, 5)),
        st.tuples(st.just("send"), st.integers(1, 8)),
        st.tuples(st.just("outage"), st.integers(1, 8)),
    ),
    max_size=120,
)


class Harness:
    """Drives one buffer and plays the sender, recording what went out."""

    def __init__(self, capacity: int) -> None:
        self.buffer = EventBuffer(capacity, 0.0)
        self.sent: list[dict[str, Any]] = []
        self.done = [0] * 6
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.numbered = [0] * 6  # events of each media that took a seq number
        self.terminal_lost_legitimately: set[str] = set()

    def accept(self, entry: Entry, media: int) -> None:
        buffer = self.buffer
        waiting = buffer.waiting()
        only_terminals_before = all(_is_terminal(item) for _, item in waiting)
        terminals_before = {ticket: i for ticket, i in waiting if _is_terminal(i)}
        coalesced = buffer.coalesced
        buffer.accept(entry)
        if buffer.coalesced == coalesced:
            self.numbered[media] += 1
        after = {ticket for ticket, _ in buffer.waiting()}
        lost = [t for key, t in terminals_before.items() if key not in after]
        if entry.state == 3 and _is_terminal(entry):  # DONE at once: it was dropped
            lost.append(entry)
        for item in lost:
            # A terminal event gives way only to another, when nothing else waits.
            assert only_terminals_before and _is_terminal(entry), entry.event
            self.terminal_lost_legitimately.add(_media_of(item))

    def play(self, op: tuple[Any, ...]) -> None:
        kind, media = op[0], op[1]
        name = f"m{media}"
        if kind == "start" and media not in self.started:
            self.started.add(media)
            self.accept(make(name, "PROCESSING_STARTED"), media)
        elif kind == "model" and media in self.started - self.ended:
            self.accept(make(name, op[2], "A"), media)
        elif kind == "progress" and media in self.started - self.ended:
            self.done[media] += 1
            self.accept(make(name, "FRAME_ANALYSIS_PROGRESS", f"M{op[2]}", self.done[media]), media)
        elif kind == "model_end" and media in self.started - self.ended:
            self.accept(make(name, "ANALYSIS_COMPLETED", "A"), media)
        elif kind == "end" and media in self.started - self.ended:
            self.ended.add(media)
            self.accept(make(name, "PROCESSING_COMPLETED"), media)
        elif kind == "send":
            self.send(op[1])
        elif kind == "outage":
            batch = self.buffer.take(op[1])
            self.buffer.finish_batch(requeue=batch)

    def send(self, limit: int) -> None:
        batch = self.buffer.take(limit)
        for item in batch:
            wire = item if isinstance(item, bytes) else item.finish(ENCODER, keep=False)
            self.sent.append(json.loads(wire))
        self.buffer.finish_batch()

    def drain(self) -> None:
        while self.buffer.ready:
            self.send(1000)


def _media_of(item: Any) -> str:
    return item.media_id if isinstance(item, Entry) else str(json.loads(item)["media_id"])


def _is_terminal(item: Any) -> bool:
    event = item.event if isinstance(item, Entry) else json.loads(item)["event"]
    return event == "PROCESSING_COMPLETED"


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 8), program=ops)
# m0's start is sent, then m0's terminal waits with two other media's start and end.
@example(
    4, [("start", 0), ("send", 1), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]
)
def test_every_sent_start_gets_its_terminal_unless_only_terminals_were_waiting(capacity, program):
    """Terminal events give way to nothing but other terminal events, and every loss
    before a media's terminal event is a gap in its seq."""
    harness = Harness(capacity)
    for op in program:
        harness.play(op)
    harness.drain()
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
