"""Terminal events a full buffer gave up are kept aside and queued again, byte for byte,
once there is room or before their media's next run (``progress_sdk._lost_terminals``)."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from typing import Any

from progress_sdk._buffer import EventBuffer
from progress_sdk._entry import Entry
from progress_sdk._lost_terminals import RECORD_OVERHEAD, LostTerminals
from progress_sdk._wire import WireEncoder

ENCODER = WireEncoder("test-source")


def lifecycle(event: str, media: str, **data: Any) -> Entry:
    body = {"media_id": media, "user_id": "u1", "event": event, "message": "x",
            "data": data, "run_id": f"run-{media}"}
    made = Entry(body, time.time())
    made.serialise(ENCODER, keep=True)
    return made


def wire(item: Any) -> bytes:
    return item if isinstance(item, bytes) else item.finish(ENCODER, keep=False)


def send(buffer: EventBuffer, limit: int = 1000) -> list[bytes]:
    """What the sender does for one batch: queue lost terminal events if there is room,
    take a batch, publish it."""
    buffer.resend_lost()
    batch = [wire(item) for item in buffer.take(limit)]
    buffer.finish_batch()
    return batch


def full_of_terminals(capacity: int = 2, keep_entries: bool = False) -> EventBuffer:
    """A buffer whose starts went out and whose ``capacity`` terminal events wait, then
    one more media ends: the oldest terminal event (m0's) gives way."""
    buffer = EventBuffer(capacity, 0.0, keep_entries=keep_entries)
    for i in range(capacity + 1):
        buffer.accept(lifecycle("PROCESSING_STARTED", f"m{i}"))
        send(buffer)  # on screen
    for i in range(capacity + 1):
        buffer.accept(lifecycle("PROCESSING_COMPLETED", f"m{i}"))
    return buffer


def test_a_lost_terminal_event_goes_out_byte_for_byte_once_there_is_room() -> None:
    """m0's terminal event gives way (counted); the next batch has room for it: it goes
    out with its own seq (no gap), after the events that waited."""
    buffer = full_of_terminals()
    assert (buffer.lost.kept, len(buffer.lost)) == (1, 1)
    first = send(buffer, 1)  # m1's; then there is room for m0's
    rest = send(buffer)
    out = [json.loads(w) for w in first + rest]
    assert [(e["media_id"], e["event"], e["seq"]) for e in out] == [
        ("m1", "PROCESSING_COMPLETED", 2),
        ("m2", "PROCESSING_COMPLETED", 2),
        ("m0", "PROCESSING_COMPLETED", 2),
    ]
    assert out[2]["run_id"] == "run-m0"
    assert (buffer.lost.resent, len(buffer.lost), buffer.lost.abandoned) == (1, 0, 0)
    assert buffer.unsettled(0) is False


def test_a_new_run_of_the_media_sends_the_lost_terminal_event_first() -> None:
    """m0 starts again while its terminal event is aside: the old run ends before the new
    one begins, in seq order."""
    buffer = full_of_terminals()
    send(buffer)  # m1's and m2's go; m0's is aside while the batch was taken
    buffer.accept(lifecycle("PROCESSING_STARTED", "m0"))
    out = [json.loads(w) for w in send(buffer)]
    mine = [(e["event"], e["seq"]) for e in out if e["media_id"] == "m0"]
    assert mine == [("PROCESSING_COMPLETED", 2), ("PROCESSING_STARTED", 3)]


def test_the_start_sends_it_even_into_a_full_buffer_where_another_terminal_gives_way() -> None:
    """No room at the new start: the lost terminal event takes the place of the oldest
    waiting one, which goes aside in its turn (counted once more); all end."""
    buffer = full_of_terminals()
    buffer.accept(lifecycle("PROCESSING_STARTED", "m0"))  # full of m1's and m2's ends
    assert buffer.lost.kept == 2
    ended: dict[str, int] = {}
    while buffer.ready or buffer.lost:
        for raw in send(buffer, 1):
            event = json.loads(raw)
            if event["event"] == "PROCESSING_COMPLETED":
                ended[event["media_id"]] = ended.get(event["media_id"], 0) + 1
    assert ended == {"m0": 1, "m1": 1, "m2": 1}
    lost = buffer.lost
    assert buffer.lost.kept == lost.resent + len(lost) + lost.abandoned == 2


def test_a_batch_hook_sees_the_fields_and_time_of_a_terminal_event_sent_again() -> None:
    """With a batch hook (entries kept), the entry sent again carries its fields without
    the envelope, and the time it was accepted."""
    before = time.time()
    buffer = full_of_terminals(keep_entries=True)
    send(buffer, 1)
    buffer.resend_lost()
    again = [item for item in buffer.take(10) if item.media_id == "m0"]
    assert len(again) == 1 and again[0].seq == 2
    assert again[0].fields == {"media_id": "m0", "user_id": "u1",
                               "event": "PROCESSING_COMPLETED", "message": "x",
                               "data": {}, "run_id": "run-m0"}
    assert again[0].ts is not None and before - 1 <= again[0].ts <= time.time() + 1


def test_past_its_bound_or_at_drain_a_loss_is_abandoned_and_counted() -> None:
    """What is kept aside is bounded in bytes: a loss past it is abandoned. drain()
    (close() gave up) abandons what waits."""
    lost = LostTerminals(max_bytes=2 * (100 + 2 + RECORD_OVERHEAD))
    for media in ("m1", "m2", "m3"):
        lost.keep(media, b"x" * 100)
    assert (len(lost), lost.abandoned, lost.last_abandoned) == (2, 1, "m3")
    assert [m for m, _ in lost.take_oldest(1)] == ["m1"]
    buffer = full_of_terminals()
    assert buffer.drain() == 2 and buffer.lost.abandoned == 1 and not buffer.lost


def test_ten_thousand_records_cost_what_their_bound_says_and_nothing_to_the_collector() -> None:
    """The bound counts each record as its bytes plus RECORD_OVERHEAD: the memory really
    held stays within it; the dict holds only str and bytes, never tracked by the
    garbage collector."""
    sample = wire(lifecycle("PROCESSING_COMPLETED", "0" * 36))
    lost = LostTerminals(max_bytes=1 << 30)
    tracemalloc.start()
    try:
        for i in range(10_000):
            lost.keep(f"{i:036d}", bytes(bytearray(sample)))  # a copy each
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(lost) == 10_000
    assert held <= lost.held_bytes, (held, lost.held_bytes)
    tables = [t for t in gc.get_referents(lost) if isinstance(t, dict)]
    assert len(tables) == 1 and len(tables[0]) == 10_000
    assert not gc.is_tracked(tables[0])
