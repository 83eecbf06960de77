"""WaitingQueue: every waiting ticket reads back its own item and bytes across evictions,
batches taken and put back, and segments rebuilt and merged; what it holds stays bounded."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from progress_sdk import _waiting
from progress_sdk._waiting import IN_ARENA, WaitingQueue

SEGMENT, MIN_DEAD = 8, 2  # patched small so that segments fill and are rebuilt often
WIRE = 10  # bytes of each event in the arena

ops = st.lists(
    st.one_of(
        # n events in the arena, or kept as objects
        st.tuples(st.just("push"), st.integers(1, 12), st.booleans()),
        # n waiting events evicted, from the i-th on (modulo)
        st.tuples(st.just("kill"), st.integers(1, 12), st.integers(0, 1000)),
        # a full buffer: n events in, each evicting one, from the i-th waiting on (modulo)
        st.tuples(st.just("churn"), st.integers(1, 60), st.integers(0, 1000)),
        st.tuples(st.just("take"), st.integers(1, 6), st.just(0)),
        st.tuples(st.sampled_from(["settle", "put_back", "put_back_some"]), st.just(0), st.just(0)),
    ),
    min_size=20,
    max_size=200,
)


class Obj:
    """An event kept as an object (a progress Entry, say)."""


class Arena(bytes):
    """The bytes of an event pushed into the arena (the queue holds IN_ARENA for it)."""


def _read(waiting: tuple[int, Any]) -> tuple[int, Any]:
    """What the queue gives back for a waiting event: an arena's as plain bytes."""
    ticket, item = waiting
    return ticket, bytes(item) if isinstance(item, Arena) else item


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_queue_keeps_every_waiting_event_and_stays_bounded(program: list[Any]) -> None:
    """Against a plain list of the waiting events: the same events in the same order after
    every step, each ticket's own item or bytes; and however many events were evicted,
    at most a few slots and bytes per event ever held at once, plus the thresholds."""
    saved = _waiting.SEGMENT, _waiting.MIN_DEAD
    _waiting.SEGMENT, _waiting.MIN_DEAD = SEGMENT, MIN_DEAD
    try:
        _play(program)
    finally:
        _waiting.SEGMENT, _waiting.MIN_DEAD = saved


def _wire(ticket: int) -> bytes:
    return b"%010d" % ticket


def _play(program: list[Any]) -> None:
    queue = WaitingQueue()
    model: list[tuple[int, Any]] = []  # waiting (ticket, item), oldest first
    out: list[tuple[int, Any]] = []  # the batch taken, not yet settled or put back
    pushed = peak = 0
    for kind, arg, more in program:
        for _ in range(arg if kind in ("push", "churn") else 0):
            item = IN_ARENA if more else Obj()
            queue.push(pushed, item, _wire(pushed) if more else None)
            model.append((pushed, Arena(_wire(pushed)) if more else item))
            pushed += 1
            if kind == "churn":
                ticket, _ = model.pop(more % len(model))
                queue.kill(ticket)
        for _ in range(arg if kind == "kill" and model else 0):
            ticket, item = model.pop(more % len(model))
            held = queue.kill(ticket)
            assert held is (IN_ARENA if isinstance(item, Arena) else item)
            if not model:
                break
        if kind == "take" and not out:
            batch, tickets, after = queue.take(arg)
            for ticket, item in zip(tickets, batch, strict=True):
                assert (ticket, item) == _read(model.pop(0))
                out.append((ticket, item))
            assert (after > tickets[-1]) if tickets else (after == -1 or after > 0)
        elif kind == "settle":
            out = []
        elif kind.startswith("put_back") and out:
            back = out if kind == "put_back" else out[len(out) // 2 :]
            queue.put_back(back)
            model[:0] = back
            out = []
        peak = max(peak, len(model) + len(out))
        _check(queue, model, out, peak)
    assert [t for t, _ in queue.waiting()] == [t for t, _ in model]


def _check(queue: WaitingQueue, model: list[tuple[int, Any]], out: list[Any], peak: int) -> None:
    assert list(queue.waiting()) == [_read(waiting) for waiting in model]
    for ticket, item in model:
        if isinstance(item, Arena):
            assert queue.get(ticket) is IN_ARENA and queue.wire(ticket) == item
        else:
            assert queue.get(ticket) is item
    for ticket, _ in out:
        assert queue.get(ticket) is None  # taken: not waiting
    # Whatever was evicted: within a few times the most events ever held at once (waiting
    # and out), plus the thresholds.
    bound = 3 * peak + 4 * SEGMENT
    assert queue.slots <= bound, (queue.slots, bound)
    assert queue.wire_bytes <= WIRE * bound
