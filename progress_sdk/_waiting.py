"""The events waiting in the publisher's buffer, by ticket (``_buffer``).

Every event that enters the buffer's queue gets the next *ticket*, and keeps it until it
leaves: the buffer's eviction order, its run tracker and ``flush`` all name events by
ticket. ``WaitingQueue`` holds, in ticket order, one slot per waiting event: an ``Entry``,
the bytes of a batch put back, or the shared ``IN_ARENA`` placeholder of a numbered
lifecycle event whose bytes are in an arena (back to back in a bytearray: no per-event
object, so 100,000 buffered events cost a full garbage collection nothing; kept as
separate ``bytes`` they cost it ~15 ms, the collector visiting each).

An evicted event leaves a dead slot, its bytes staying in the arena. Left there until the
sender took past them, dead slots let a batch that hangs in flight (a frozen Redis behind
a client with no socket timeout) grow memory with every event accepted meanwhile: 66 MB
for 200,000 events into a buffer of 1,000. So the slots are kept in *segments* of up to
``SEGMENT`` consecutive ones, each with its own arena, and a segment whose dead slots
outnumber its live ones (past ``MIN_DEAD``) is rebuilt from its live ones, merged with a
neighbour when both fit in one: amortised O(1) per eviction, and one rebuild copies at
most two segments (~1 ms), never the whole buffer (rebuilding a whole queue of 200,000
slots at once took 110 ms). A ticket is found by bisection over the segments' first
waiting tickets, then by a guess within its segment (right until the segment is rebuilt)
or bisection.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate, compress, repeat
from operator import is_not, sub
from typing import Any

SEGMENT = 1024  # slots a segment is filled with (a batch put back may make a larger one)
MIN_DEAD = 64  # dead slots a segment may keep whatever its live ones: rebuilding costs more


class _InArena:
    """The queue's placeholder for an event whose bytes are in its segment's arena."""

    __slots__ = ()


IN_ARENA = _InArena()


class _Segment:
    """Consecutive slots: those before ``head`` were taken, dead ones are None; ``ends[i]``
    is where slot ``i``'s bytes end in ``data`` (a slot not in the arena ends where the
    one before it did)."""

    __slots__ = ("data", "dead", "ends", "head", "items", "tickets")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.tickets = array("q")
        self.ends = array("q")
        self.data = bytearray()
        self.head = 0
        self.dead = 0

    @property
    def live(self) -> int:
        return len(self.items) - self.head - self.dead

    def find(self, ticket: int) -> int:
        """The slot of a waiting ``ticket`` here, or -1."""
        tickets, head = self.tickets, self.head
        count = len(tickets)
        i = ticket - tickets[0]  # right until the segment is rebuilt
        if head <= i < count and tickets[i] == ticket:
            return i
        i = bisect_left(tickets, ticket, head)
        return i if i < count and tickets[i] == ticket else -1

    def wire(self, i: int) -> bytes:
        ends = self.ends
        return bytes(self.data[ends[i - 1] if i else 0 : ends[i]])

    def add(self, ticket: int, item: Any, wire: bytes | None) -> None:
        if wire is not None:
            self.data += wire
        self.items.append(item)
        self.tickets.append(ticket)
        self.ends.append(len(self.data))

    def copy_live_to(self, other: _Segment) -> None:
        """Append the live waiting slots to ``other``, in C loops over the whole segment
        (measured on a loaded machine: ~1 ms for 2,048 slots, whichever are dead; a
        Python step per run of live ones took 5 ms with every other one dead)."""
        head, data = self.head, self.data
        items = self.items[head:]
        alive = list(map(is_not, items, repeat(None)))
        ends = self.ends[head:]
        starts = array("q", [self.ends[head - 1] if head else 0])
        starts += ends[:-1]
        base = len(other.data)
        other.data += b"".join(compress(map(data.__getitem__, map(slice, starts, ends)), alive))
        lengths = compress(map(sub, ends, starts), alive)
        other.ends += array("q", accumulate(lengths, initial=base))[1:]
        other.items += compress(items, alive)
        other.tickets += array("q", compress(self.tickets[head:], alive))


class WaitingQueue:
    """Waiting events by ticket, oldest first; see the module docstring."""

    __slots__ = ("_firsts", "_segments")

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []  # each segment's first waiting ticket

    @property
    def slots(self) -> int:
        """Slots held, taken and dead ones included (what the queue costs)."""
        return sum(len(segment.items) for segment in self._segments)

    @property
    def wire_bytes(self) -> int:
        """Bytes held in the arenas, those of taken and dead slots included."""
        return sum(len(segment.data) for segment in self._segments)

    def push(self, ticket: int, item: Any, wire: bytes | None = None) -> None:
        """Add the newest event: ``IN_ARENA`` with its ``wire`` bytes, or an object."""
        segments = self._segments
        if not segments or len(segments[-1].items) >= SEGMENT:
            segments.append(_Segment())
            self._firsts.append(ticket)
        segments[-1].add(ticket, item, wire)

    def _locate(self, ticket: int) -> tuple[int, int]:
        """(segment, slot) of a waiting ``ticket`` (dead or not), or (-1, -1)."""
        k = bisect_right(self._firsts, ticket) - 1
        if k < 0:
            return -1, -1
        i = self._segments[k].find(ticket)
        return (k, i) if i >= 0 else (-1, -1)

    def get(self, ticket: int) -> Any:
        """The item of a waiting ``ticket`` (``IN_ARENA`` for bytes in the arena), or
        None when it is not waiting: evicted, taken, or never queued."""
        k, i = self._locate(ticket)
        return None if k < 0 else self._segments[k].items[i]

    def wire(self, ticket: int) -> bytes:
        """The bytes of a waiting ``ticket`` whose item is ``IN_ARENA``."""
        k, i = self._locate(ticket)
        return self._segments[k].wire(i)

    def kill(self, ticket: int) -> Any:
        """Evict a waiting ``ticket``: its slot is dead; returns its item. Rebuilds its
        segment once dead slots outnumber the live ones there."""
        k, i = self._locate(ticket)
        segment = self._segments[k]
        item = segment.items[i]
        segment.items[i] = None
        segment.dead += 1
        if segment.dead > MIN_DEAD and segment.dead > segment.live:
            self._rebuild(k)
        return item

    def take(self, limit: int) -> tuple[list[Any], list[int], int]:
        """Take up to ``limit`` live events, oldest first, passing over dead slots: their
        items (an arena's as bytes), their tickets, and the ticket after the last slot
        taken (-1 if none was)."""
        batch: list[Any] = []
        taken: list[int] = []
        after = -1
        segments = self._segments
        while segments and len(batch) < limit:
            segment = segments[0]
            items, tickets, ends, data = segment.items, segment.tickets, segment.ends, segment.data
            head = i = segment.head
            count, before = len(items), len(batch)
            start = ends[i - 1] if i else 0
            while i < count and len(batch) < limit:
                item, end = items[i], ends[i]
                if item is not None:
                    if item is IN_ARENA:
                        item = bytes(data[start:end])
                    batch.append(item)
                    taken.append(tickets[i])
                start = end
                i += 1
            if i > head:
                segment.dead -= (i - head) - (len(batch) - before)
                items[head:i] = [None] * (i - head)  # nothing kept alive by a taken slot
                segment.head = i
                after = tickets[i - 1] + 1
            if i < count:
                self._firsts[0] = tickets[i]  # below it, the batch may be put back
                break
            del segments[0]  # all taken
            del self._firsts[0]
        return batch, taken, after

    def put_back(self, back: list[tuple[int, Any]]) -> None:
        """Return ``(ticket, item)`` of a batch taken to the head, in order (objects or
        bytes, none in an arena; every waiting ticket is above theirs)."""
        if not back:
            return
        segment = _Segment()
        for ticket, item in back:
            segment.add(ticket, item, None)
        self._segments.insert(0, segment)
        self._firsts.insert(0, back[0][0])

    def waiting(self) -> Iterator[tuple[int, Any]]:
        """``(ticket, item)`` of every live waiting slot, in order, arena bytes read."""
        for segment in self._segments:
            items, tickets = segment.items, segment.tickets
            for i in range(segment.head, len(items)):
                item = items[i]
                if item is not None:
                    yield tickets[i], (segment.wire(i) if item is IN_ARENA else item)

    def items(self) -> list[Any]:
        """The items of the waiting slots, as held (dead ones as None)."""
        return [item for segment in self._segments for item in segment.items[segment.head :]]

    def clear(self) -> None:
        """Forget everything."""
        self._segments = []
        self._firsts = []

    def _rebuild(self, k: int) -> None:
        """Segment ``k`` from its live slots, together with a neighbour if both fit in one
        (so segments stay full enough that their number follows the live events)."""
        segments = self._segments
        low, high, live = k, k + 1, segments[k].live
        if high < len(segments) and live + segments[high].live <= SEGMENT:
            high += 1
        elif low > 0 and segments[low - 1].live + live <= SEGMENT:
            low -= 1
        rebuilt = _Segment()
        for segment in segments[low:high]:
            segment.copy_live_to(rebuilt)
        if rebuilt.items:
            segments[low:high] = [rebuilt]
            self._firsts[low:high] = [rebuilt.tickets[0]]
        else:
            del segments[low:high]
            del self._firsts[low:high]
