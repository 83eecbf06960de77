"""EventBuffer: order, merging, holding, overflow and numbering, with a clock the test turns."""

from __future__ import annotations

import json
from typing import Any

from progress_sdk import _waiting
from progress_sdk._buffer import EventBuffer
from progress_sdk._coalescing import MAX_HOLD_MEDIA
from progress_sdk._entry import Entry
from progress_sdk._wire import WireEncoder

ENCODER = WireEncoder("test-source")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fields(event: str, media: str = "m1", model: str | None = "A", **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(data)
    if model is not None:
        body["model_name"] = model
    return {"media_id": media, "user_id": "u1", "event": event, "message": "x", "data": body}


def entry(body: dict[str, Any]) -> Entry:
    made = Entry(body, 0.0)
    if made.progress_key is None:
        made.serialise(ENCODER, keep=False)
    return made


def progress(done: int, media: str = "m1", model: str = "A") -> Entry:
    return entry(fields("FRAME_ANALYSIS_PROGRESS", media, model, progress=done, total=9))


def lifecycle(event: str = "ANALYSIS_STARTED", media: str = "m1", model: str | None = "A") -> Entry:
    return entry(fields(event, media, model))


def wire(item: Any) -> bytes:
    return item if isinstance(item, bytes) else item.finish(ENCODER, keep=False)


def taken(buffer: EventBuffer) -> list[tuple[str, int, Any]]:
    batch = buffer.take(1000)
    decoded = [json.loads(wire(item)) for item in batch]
    buffer.finish_batch()
    return [(d["event"], d["seq"], d["data"].get("progress")) for d in decoded]


def test_waiting_progress_is_replaced_in_place_and_only_new_work_wakes_the_sender():
    """A newer value replaces the waiting one (no wake-up, no gap); a lifecycle event
    after it closes the slot, so the next value queues behind it."""
    buffer = EventBuffer(100, 0.0, clock=Clock())
    assert buffer.accept(progress(1)) is True
    assert buffer.accept(progress(2)) is False
    assert buffer.accept(lifecycle("ANALYSIS_COMPLETED")) is True
    assert buffer.accept(progress(3)) is True
    assert buffer.coalesced == 1
    assert taken(buffer) == [
        ("FRAME_ANALYSIS_PROGRESS", 1, 2),
        ("ANALYSIS_COMPLETED", 2, None),
        ("FRAME_ANALYSIS_PROGRESS", 3, 3),
    ]


def test_values_within_the_interval_are_held_and_the_latest_released_when_due():
    """Only the first hold of a key can wake the sender (a new earliest deadline)."""
    clock = Clock()
    buffer = EventBuffer(100, 0.1, clock=clock)
    assert buffer.accept(progress(1)) is True
    taken(buffer)
    assert buffer.accept(progress(2)) is True  # held: a new earliest deadline
    assert buffer.accept(progress(3)) is False  # replaces the held value
    assert buffer.next_deadline() == 100.1
    buffer.release_due()
    assert buffer.ready == 0
    clock.now = 100.1
    buffer.release_due()
    assert taken(buffer) == [("FRAME_ANALYSIS_PROGRESS", 2, 3)]


def test_a_lifecycle_event_releases_its_models_held_value_first():
    """The model's last numbers go out before its terminal event."""
    buffer = EventBuffer(100, 10.0, clock=Clock())
    buffer.accept(progress(1))
    taken(buffer)
    buffer.accept(progress(5))
    buffer.accept(lifecycle("ANALYSIS_COMPLETED"))
    assert [t[0] for t in taken(buffer)] == ["FRAME_ANALYSIS_PROGRESS", "ANALYSIS_COMPLETED"]
    assert buffer.next_deadline() is not None  # a stale deadline, ignored when due
    buffer.release_due(everything=True)
    assert buffer.ready == 0


def test_overflow_evicts_the_oldest_progress_for_lifecycle_and_numbers_show_the_gap():
    """Evicted and refused events take their numbers with them."""
    buffer = EventBuffer(3, 0.0, clock=Clock())
    buffer.accept(progress(1, model="A"))
    buffer.accept(lifecycle(model="B"))
    buffer.accept(progress(1, model="C"))
    assert buffer.accept(progress(1, model="D")) is True  # evicts A's (older) progress
    assert buffer.accept(lifecycle(model="E")) is True  # evicts C's progress
    assert buffer.accept(lifecycle(model="F")) is True  # evicts D's progress
    assert buffer.accept(progress(2, model="G")) is False  # no progress left: dropped
    assert dict(buffer.dropped) == {"buffer_full": 1, "evicted": 3}
    assert [t[1] for t in taken(buffer)] == [2, 5, 6]


def test_terminal_events_are_kept_ahead_of_everything_else():
    """A full buffer gives way progress first, then other lifecycle events, then model
    terminals, oldest first; a media's terminal event displaces them all."""
    buffer = EventBuffer(3, 0.0, clock=Clock())
    buffer.accept(lifecycle("PROCESSING_STARTED", media="m1", model=None))
    buffer.accept(lifecycle("ANALYSIS_STARTED", media="m1"))
    buffer.accept(lifecycle("ANALYSIS_COMPLETED", media="m1"))
    # Evicts m1's start, and m1's terminal event with it (rule 2: a model never started).
    assert buffer.accept(lifecycle("ANALYSIS_STARTED", media="m2")) is True
    assert buffer.accept(progress(1, media="m2")) is True  # the slot that freed
    assert buffer.accept(progress(1, media="m3")) is True  # evicts only progress
    assert buffer.accept(lifecycle("PROCESSING_COMPLETED", media="m1", model=None)) is True
    assert buffer.accept(lifecycle("PROCESSING_COMPLETED", media="m2", model=None)) is True
    assert [t[0] for t in taken(buffer)] == [
        "PROCESSING_STARTED",
        "PROCESSING_COMPLETED",
        "PROCESSING_COMPLETED",
    ]
    assert dict(buffer.dropped) == {"evicted": 5}


def test_the_terminal_event_of_a_media_on_screen_outlives_starts_of_media_nobody_saw():
    """A full buffer gives up the start of a media nobody saw before the terminal event of
    a media whose PROCESSING_STARTED was sent (issue #8's invariant)."""
    buffer = EventBuffer(4, 0.0, clock=Clock())
    buffer.accept(lifecycle("PROCESSING_STARTED", media="m0", model=None))
    assert taken(buffer) == [("PROCESSING_STARTED", 1, None)]  # m0's start is on screen
    # Redis goes away: the buffer fills up.
    buffer.accept(lifecycle("PROCESSING_COMPLETED", media="m0", model=None))
    for media in ("m1", "m2"):
        buffer.accept(lifecycle("PROCESSING_STARTED", media=media, model=None))
        buffer.accept(lifecycle("PROCESSING_COMPLETED", media=media, model=None))
    batch = buffer.take(1000)
    kept = [(e["media_id"], e["event"]) for e in (json.loads(wire(i)) for i in batch)]
    assert ("m0", "PROCESSING_COMPLETED") in kept, kept
    # m1's start, the oldest start, and with it m1's terminal event: nobody saw m1.
    assert dict(buffer.dropped) == {"evicted": 2}
    assert kept == [
        ("m0", "PROCESSING_COMPLETED"),
        ("m2", "PROCESSING_STARTED"),
        ("m2", "PROCESSING_COMPLETED"),
    ]
    assert buffer.lost.kept == 0


def test_a_superseded_progress_value_gives_way_before_the_newest_of_its_model():
    """Of two values of one key, the older goes first, even if another key's is older."""
    buffer = EventBuffer(3, 0.0, clock=Clock())
    buffer.accept(progress(1, model="A"))
    buffer.accept(progress(1, model="B"))
    buffer.accept(lifecycle("ANALYSIS_STARTED", model="B"))  # B's value is now fixed
    assert buffer.accept(progress(2, model="B")) is True  # full: evicts B's first value
    events = taken(buffer)
    assert [(e[0], e[2]) for e in events] == [
        ("FRAME_ANALYSIS_PROGRESS", 1),
        ("ANALYSIS_STARTED", None),
        ("FRAME_ANALYSIS_PROGRESS", 2),
    ]


def test_requeued_events_go_first_unchanged_and_drain_counts_what_is_left():
    """A batch that could not be sent keeps its numbers; close() counts the rest."""
    buffer = EventBuffer(10, 0.0, clock=Clock())
    buffer.accept(lifecycle(model="A"))
    first = buffer.take(10)
    buffer.accept(lifecycle(model="B"))
    assert buffer.queued == 2
    buffer.finish_batch(requeue=first)
    assert taken(buffer) == [("ANALYSIS_STARTED", 1, None), ("ANALYSIS_STARTED", 2, None)]
    buffer.accept(lifecycle(model="C"))
    assert buffer.drain() == 1
    assert buffer.dropped["closed"] == 1 and buffer.queued == 0


def test_flush_waits_for_a_ticket_that_settles_with_its_batch():
    """Held values are queued by flush_target; the target is reached when every event
    before it is settled, evicted ones included."""
    clock = Clock()
    buffer = EventBuffer(10, 1.0, clock=clock)
    buffer.accept(progress(1))
    taken(buffer)
    buffer.accept(lifecycle(model="B"))
    buffer.accept(progress(2))  # held
    target = buffer.flush_target()
    assert buffer.ready == 2 and buffer.settled_through < target
    batch = buffer.take(1)
    buffer.finish_batch(requeue=batch)  # not sent: still short of the target
    assert buffer.settled_through < target
    taken(buffer)
    assert buffer.settled_through >= target


def test_every_per_media_table_is_bounded():
    """Media that never end leave nothing behind past the bounds."""
    buffer = EventBuffer(1000, 1.0, clock=Clock())
    for i in range(MAX_HOLD_MEDIA + 50):
        buffer.accept(progress(1, media=f"m{i}"))
        if buffer.queued == 1000:
            taken(buffer)
    taken(buffer)
    tables = buffer.progress_tables()
    assert tables.timed_media == MAX_HOLD_MEDIA
    assert (tables.replaceable, tables.held) == (0, 0)


# -- the queue of lifecycle bytes ---------------------------------------------------------


def test_lifecycle_events_kept_as_bytes_go_out_in_order_across_put_backs_and_evictions():
    """3,000 lifecycle events through a full buffer while batches are taken, some put back
    (an outage): each goes out once, in order, with its own bytes; evicted ones are gaps."""
    buffer = EventBuffer(500, 0.0)
    sent: list[dict[str, Any]] = []
    for i in range(3_000):
        buffer.accept(lifecycle("ANALYSIS_QUEUED", f"m{i % 7}", model=f"M{i}"))
        if i % 300 == 299:
            batch = buffer.take(200)
            if i % 600 == 299:  # not sent: back to the head, unchanged
                buffer.finish_batch(requeue=batch)
                continue
            sent += [json.loads(item) for item in batch]
            buffer.finish_batch()
    sent += [json.loads(item) for _, item in buffer.waiting()]
    models = [int(event["data"]["model_name"][1:]) for event in sent]
    assert models == sorted(models) and len(set(models)) == len(models)
    evicted = buffer.dropped["evicted"]
    assert evicted and len(sent) + evicted == 3_000
    for media in range(7):
        seqs = [e["seq"] for e in sent if e["media_id"] == f"m{media}"]
        assert seqs == sorted(seqs)


# -- overflow: starts and terminal events across runs, repeats and put-backs ---------------


def start(media: str, run: str | None = None) -> Entry:
    body = fields("PROCESSING_STARTED", media, model=None)
    if run is not None:
        body["run_id"] = run
    return entry(body)


def end(media: str, run: str | None = None) -> Entry:
    body = fields("PROCESSING_COMPLETED", media, model=None)
    if run is not None:
        body["run_id"] = run
    return entry(body)


def sent_events(batch: list[Any]) -> list[tuple[str, str, str | None]]:
    decoded = [json.loads(wire(item)) for item in batch]
    return [(e["media_id"], e["event"][11:], e.get("run_id")) for e in decoded]


def test_a_put_back_terminal_event_that_gives_way_is_counted_not_a_crash():
    """A batch put back holds bytes, not arena placeholders: when its terminal event of a
    media on screen must give way, the loss is counted and named (emit must not raise)."""
    buffer = EventBuffer(2, 0.0)
    for media in ("a", "b", "c"):
        buffer.accept(start(media))
        taken(buffer)  # each start is on screen
    buffer.accept(end("a"))
    buffer.accept(end("b"))
    buffer.finish_batch(requeue=buffer.take(10), written=False)  # the connect failed
    assert buffer.accept(end("c")) is True
    assert buffer.lost.kept == 1 and buffer.lost.last_kept == "a"
    assert dict(buffer.dropped) == {"evicted": 1}
    assert sent_events(buffer.take(10)) == [
        ("b", "COMPLETED", None),
        ("c", "COMPLETED", None),
    ]


def test_evicting_a_finished_run_s_start_leaves_the_next_run_s_terminal_event():
    """A media re-analysed while the buffer waits: the first run's start gives way with
    the first run's terminal event, never with the second run's (whose start goes out)."""
    buffer = EventBuffer(4, 0.0)
    for entry_ in (start("m", "r1"), end("m", "r1"), start("m", "r2"), end("m", "r2")):
        buffer.accept(entry_)
    buffer.accept(start("n"))  # full: the oldest start, r1's, gives way
    out = sent_events(buffer.take(10))
    assert ("m", "STARTED", "r2") in out
    assert ("m", "COMPLETED", "r2") in out, out
    assert buffer.lost.kept == 0


def test_a_repeated_start_still_waiting_keeps_the_terminal_event_of_its_run():
    """Rule 1: a run announced twice. The first announcement gives way; the repeat still
    opens the panel, so the run's terminal event must stay."""
    buffer = EventBuffer(4, 0.0)
    for entry_ in (start("m"), start("n"), start("m"), end("m")):
        buffer.accept(entry_)
    buffer.accept(start("o"))  # full: m's first start, the oldest, gives way
    out = sent_events(buffer.take(10))
    assert ("m", "STARTED", None) in out
    assert ("m", "COMPLETED", None) in out, out


def test_a_repeated_start_after_one_went_out_never_makes_the_run_unseen():
    """Rule 1: the run's first start was published; a repeat that gives way, or is
    dropped on arrival, leaves a panel open all the same: the terminal event ranks as
    that of a media on screen, and its loss is counted."""
    buffer = EventBuffer(2, 0.0)
    buffer.accept(start("m"))
    taken(buffer)  # m is on screen
    buffer.accept(start("m"))  # the repeat
    buffer.accept(end("m"))
    buffer.accept(start("n"))  # full: m's repeat, the oldest start, gives way
    out = sent_events(buffer.take(10))
    assert ("m", "COMPLETED", None) in out, out
    buffer.finish_batch()
    # Dropped on arrival: a buffer full of terminal events of media on screen.
    buffer = EventBuffer(2, 0.0)
    for media in ("m", "a", "b"):
        buffer.accept(start(media))
        taken(buffer)
    buffer.accept(end("a"))
    buffer.accept(end("b"))
    assert buffer.accept(start("m")) is False  # the repeat, dropped
    assert buffer.accept(end("m")) is True  # evicts a's: m's panel is open too
    assert buffer.lost.kept == 1
    assert ("m", "COMPLETED", None) in sent_events(buffer.take(10))


def test_a_start_put_back_after_it_was_written_counts_as_maybe_on_screen():
    """A batch written and then cut (a reset) is put back, but Redis may have published
    it: giving way, its start does not take the terminal event along. Put back unwritten
    (no connection), nobody saw it: the terminal event goes with it."""
    for written in (True, False):
        buffer = EventBuffer(3, 0.0)
        buffer.accept(start("m"))
        buffer.finish_batch(requeue=buffer.take(10), written=written)
        buffer.accept(end("m"))
        buffer.accept(start("n"))
        buffer.accept(start("o"))  # full: m's start, the oldest, gives way
        out = sent_events(buffer.take(10))
        assert (("m", "COMPLETED", None) in out) is written, out


def test_the_runs_the_overflow_ranks_remember_are_bounded(monkeypatch):
    """Runs on screen whose terminal events never come here, and runs whose every start
    was lost, are kept for at least the MAX_REMEMBERED_MEDIA most recently started media
    and at most twice as many; the starts of runs nobody saw are forgotten as they leave
    the buffer."""
    from progress_sdk import defaults

    monkeypatch.setattr(defaults, "MAX_REMEMBERED_MEDIA", 5)
    buffer = EventBuffer(2, 0.0)
    for i in range(50):
        buffer.accept(start(f"shown-{i}"))
        taken(buffer)
    assert 5 <= buffer.footprint().media <= 10
    for i in range(50):  # a full buffer: each start evicts the one before
        buffer.accept(start(f"lost-{i}"))
    held = buffer.footprint()
    assert 5 <= held.media <= 10 and held.starts == 2
    taken(buffer)
    assert buffer.footprint().starts == 0


# -- memory while a batch hangs in flight ----------------------------------------------------


def test_what_the_buffer_holds_stays_bounded_however_long_a_batch_hangs_in_flight():
    """A batch taken and never settled (a frozen Redis behind a client with no timeout)
    while 100,000 lifecycle events overflow a buffer of 1,000: the slots and bytes held
    stay within twice the buffer and the batch, plus a segment (they grew with every
    evicted event: 100,000 slots and 18 MB of bytes); then the batch is put back, and
    everything still waiting goes out in order, each event once."""
    capacity, batch = 1_000, 500
    buffer = EventBuffer(capacity, 0.0)
    for i in range(capacity):
        buffer.accept(lifecycle("ANALYSIS_QUEUED", f"m{i % 7}", model=f"M{i}"))
    flight = buffer.take(batch)
    biggest = 0
    widest = max(len(wire(item)) for item in flight)
    for i in range(capacity, 100_000):
        buffer.accept(lifecycle("ANALYSIS_QUEUED", f"m{i % 7}", model=f"M{i}"))
        if i % 997 == 0:
            biggest = max(biggest, buffer.footprint().slots)
    held = buffer.footprint()
    bound = 2 * (capacity + batch) + _waiting.SEGMENT
    assert max(biggest, held.slots) <= bound
    assert held.wire_bytes <= bound * (widest + 8)
    assert buffer.dropped["evicted"] == 100_000 - capacity - batch
    buffer.finish_batch(requeue=flight, written=False)  # the connect failed at last
    out = [json.loads(wire(item)) for item in buffer.take(10_000)]
    models = [int(event["data"]["model_name"][1:]) for event in out]
    assert models == sorted(models) and len(out) == len(flight) + capacity
    assert models[: len(flight)] == list(range(len(flight)))


def test_what_the_buffer_holds_stays_bounded_through_a_long_outage():
    """Batches taken and put back (Redis refused) while events of every rank overflow the
    buffer: the slots held stay bounded; the terminal events of media on screen survive."""
    capacity = 300
    buffer = EventBuffer(capacity, 0.0)
    for media in range(100):
        buffer.accept(start(f"s{media}"))
    taken(buffer)  # on screen
    for media in range(100):
        buffer.accept(end(f"s{media}"))  # these must survive the outage
    for i in range(60_000):
        if i % 5 == 0:
            buffer.accept(progress(i, media=f"p{i % 50}", model=f"M{i % 3}"))
        else:
            buffer.accept(lifecycle("ANALYSIS_QUEUED", f"q{i % 11}", model=f"M{i}"))
        if i % 1000 == 999:
            # The batch is terminal events only: the sender never takes past them.
            buffer.finish_batch(requeue=buffer.take(50), written=False)
            assert buffer.footprint().slots <= 2 * (capacity + 50) + _waiting.SEGMENT
    out = sent_events(buffer.take(10_000))
    assert sum(1 for media, event, _ in out if event == "COMPLETED") == 100
    assert buffer.lost.kept == 0
