"""The overflow order of the publisher's buffer (``_buffer``): which waiting event gives
way when the buffer is full.

``OverflowOrder`` keeps, per overflow rank (``_entry``), the tickets of the events that
entered the buffer's queue, each rank in a ``TicketFifo``; ``victim`` finds the oldest one
still waiting, among progress a value that a newer one of its key supersedes first (the
buffer's module doc gives the ranks' reasons).
"""

from __future__ import annotations

import bisect
import json
from array import array
from typing import Any

from ._entry import END, ORPHAN_END, RANKS, START, Entry, ProgressKey
from ._waiting import IN_ARENA, WaitingQueue

# How far eviction looks for a superseded progress value before taking the oldest.
_SUPERSEDED_SCAN = 64


class TicketFifo:
    """Tickets in increasing order, as raw integers in an array: 8 bytes each, and nothing
    the garbage collector has to walk (a deque of ints costs ~36 bytes and a visit each)."""

    __slots__ = ("_head", "_tickets")

    def __init__(self) -> None:
        self._tickets = array("q")
        self._head = 0

    def __len__(self) -> int:
        return len(self._tickets) - self._head

    def __getitem__(self, i: int) -> int:
        return self._tickets[self._head + i]

    def append(self, ticket: int) -> None:
        """Add the newest ticket."""
        self._tickets.append(ticket)

    def popleft(self) -> int:
        """Remove and return the oldest ticket."""
        ticket = self._tickets[self._head]
        self._advance()
        return ticket

    def _advance(self) -> None:
        self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._tickets):
            del self._tickets[: self._head]  # compact now and then: amortised O(1)
            self._head = 0

    def remove_at(self, i: int) -> None:
        """Remove the ``i``-th oldest ticket. Near the front (behind a batch in flight,
        whose tickets stay), the tickets before it move up one: O(i), not O(len)."""
        tickets, head = self._tickets, self._head
        if i * 2 < len(tickets) - head:
            tickets[head + 1 : head + i + 1] = tickets[head : head + i]
            self._advance()
        else:
            del tickets[head + i]

    def pop_newest(self) -> int:
        """Remove and return the newest ticket."""
        return self._tickets.pop()

    def index_from(self, ticket: int) -> int:
        """The position of the oldest ticket not below ``ticket``."""
        return bisect.bisect_left(self._tickets, ticket, self._head) - self._head

    def clear(self) -> None:
        """Remove every ticket."""
        self._tickets = array("q")
        self._head = 0


class OverflowOrder:
    """The tickets of each overflow rank, oldest first (``fifos[rank]``: the buffer
    appends to it for every event it queues)."""

    __slots__ = ("fifos",)

    def __init__(self) -> None:
        self.fifos = tuple(TicketFifo() for _ in range(RANKS))

    def victim(
        self, rank: int, queue: WaitingQueue, pending: dict[ProgressKey, Entry], *,
        popped: int, first_taken: int,
    ) -> int | None:
        """Remove and return the ticket of the oldest waiting event of ``rank``, or None
        (``take_victim``)."""
        return take_victim(self.fifos[rank], queue, pending, progress=rank == 0,
                           popped=popped, first_taken=first_taken)

    def became_orphan(self, ticket: int) -> None:
        """The newest media terminal event (``ticket``) ranks as an orphan's after all:
        it moves to the end of the orphans' order."""
        self.fifos[END].pop_newest()
        self.fifos[ORPHAN_END].append(ticket)

    def starts_settled(self, settled: int) -> list[int]:
        """Remove and return the tickets of the starts below ``settled`` (they left)."""
        starts = self.fifos[START]
        left = []
        while len(starts) and starts[0] < settled:
            left.append(starts.popleft())
        return left

    def clear(self) -> None:
        """Forget every ticket (the buffer was drained)."""
        for fifo in self.fifos:
            fifo.clear()


def take_victim(
    fifo: TicketFifo,
    queue: WaitingQueue,
    pending: dict[ProgressKey, Entry],
    *,
    progress: bool,
    popped: int,
    first_taken: int,
) -> int | None:
    """Remove and return from ``fifo`` the ticket of its oldest event still waiting in
    ``queue`` (with ``progress``, a value superseded in ``pending`` first), or None.
    Tickets from ``popped`` on wait; the batch in flight (from ``first_taken`` to
    ``popped``) is skipped, its tickets staying, for a put-back batch is evictable again."""
    while len(fifo) and fifo[0] < first_taken:
        fifo.popleft()  # settled: no candidate any more
    first = 0 if not len(fifo) or fifo[0] >= popped else fifo.index_from(popped)
    while first < len(fifo) and queue.get(fifo[first]) is None:
        # Evicted along with its start, or settled in a batch put back in part.
        fifo.remove_at(first)
    if first >= len(fifo):
        return None
    if progress:
        # A value that a newer one of its key supersedes goes before the newest.
        for i in range(first, min(len(fifo), first + _SUPERSEDED_SCAN)):
            ticket = fifo[i]
            item = queue.get(ticket)
            if item is not None and pending.get(item.progress_key) is not item:
                fifo.remove_at(i)
                return ticket
    ticket = fifo[first]
    fifo.remove_at(first)
    return ticket


def wire_at(queue: WaitingQueue, ticket: int) -> tuple[str, bytes]:
    """The media and bytes of a waiting lifecycle event, the media parsed back from the
    bytes if it has no entry: in the arena, or put back (a batch taken from the arena is
    put back as bytes)."""
    item: Any = queue.get(ticket)
    if isinstance(item, Entry):
        assert item.wire is not None  # numbered: its bytes are finished
        return item.media_id, item.wire
    wire: bytes = queue.wire(ticket) if item is IN_ARENA else item
    media_id: str = json.loads(wire)["media_id"]
    return media_id, wire
