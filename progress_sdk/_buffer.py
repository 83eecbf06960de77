"""The publisher's buffer: what waits to be sent, in what order, and what gives way.

No threads and no I/O: the publisher calls it under its own lock, and the clock is
injected, so every policy here is unit-tested deterministically.

- **Order.** Events leave in the order they were accepted, except that a progress event
  still waiting is replaced in place by a newer one of the same (media, run, model, event
  type) when nothing else of that model was accepted after it (lifecycle events keep
  their place relative to the progress around them).
- **Hold.** Each progress key is sent at most once per ``min_interval``; a value that
  comes too soon is held (newer ones replace it) and released when the interval is over,
  or before its model's next lifecycle event, or on flush/close.
- **Numbering.** ``seq`` counts per media and is assigned when an event enters the queue
  (a held value when it is released), so the queue's order is the numbers' order; a
  replaced event takes its predecessor's number and leaves no gap, while an evicted or
  refused one takes its number with it, which consumers see as a gap.
- **Overflow.** ``capacity`` counts the events waiting; the batch the sender holds is
  not counted, and cannot be evicted: once the connection is up it may be written already
  (partly, or read by Redis), and what Redis may have published cannot be taken back. So a
  connect that hangs with the whole buffer in flight leaves the buffer's full capacity to
  the events accepted meanwhile, under the same ranks; at most ``capacity`` plus one batch
  is held. A batch put back waits again, evictable like any waiting event; if it had
  been written before its connection failed, Redis may have published it, so its starts
  count as maybe on screen (``finish_batch``'s ``written``). Events rank: progress, then other
  lifecycle events, then a model's terminal event, then a media's ``PROCESSING_STARTED``,
  then the terminal event of a media whose start was lost here (an *orphan*: no panel
  opened for it), then a media's terminal event. When full, a newcomer evicts the oldest
  waiting event of the lowest rank present, if that rank is not above its own (among
  progress, a value a newer one of its key supersedes goes first); otherwise the newcomer
  is dropped. A start ranks below a terminal event because the terminal may belong to a
  media already on screen, whose panel would stay open forever without it, while a start
  that gives way only keeps a panel from opening; the last start of a run evicted while
  the run's terminal event waits behind it takes that terminal event with it (a run
  nobody saw, which would otherwise hold a terminal's place). What counts is the *run*:
  rule 1 lets it announce itself more than once, and a re-analysis of the media is
  another run (``_start_watch``). So a media's terminal event is only ever lost when the
  waiting events are all terminal events of runs someone may have seen, counted in
  ``terminals_lost``; and every loss before it shows as a gap in its ``seq``. Such a
  terminal event is not lost for good: its bytes are kept aside (``_lost_terminals``) and
  queued again, same ``seq``, once the buffer has room (``resend_lost``), or right before
  the media's next ``PROCESSING_STARTED``.
- **Memory.** Without a batch hook or shard routing, a numbered lifecycle event is kept
  as its bytes alone, back to back with the others in a bytearray (``_waiting``): no
  per-event object, so a full garbage collection costs the same with 100,000 events
  buffered as with none; progress events stay ``Entry`` objects so a newer value can
  replace them. An evicted event's slot and bytes go once dead slots outnumber the live
  ones in its segment of the queue, so what is held stays within about twice
  ``capacity`` and one batch however long a batch hangs in flight.

Positions: every event that enters the queue gets the next *ticket*, kept until it
leaves; the queue holds the waiting ones in ticket order (``WaitingQueue``), tickets below
``popped`` were taken, below ``settled`` are published or dropped, and ``flush`` waits
for a ticket.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from . import defaults as d
from ._lost_terminals import LostTerminals
from ._rules import ENVELOPE_V1_FIELDS
from ._start_watch import StartWatch
from ._timestamps import parse_timestamp
from ._waiting import IN_ARENA, WaitingQueue
from ._wire import WireEncoder
from .event_types import (
    EVENT_TYPES,
    MEDIA_TERMINAL_NAMES,
    MODEL_EVENT_NAMES,
    MODEL_TERMINAL_NAMES,
    PROGRESS_EVENT_NAMES,
)

_PROGRESS = PROGRESS_EVENT_NAMES
_MODEL_EVENTS = MODEL_EVENT_NAMES
_MODEL_TERMINALS = MODEL_TERMINAL_NAMES
_MEDIA_TERMINALS = MEDIA_TERMINAL_NAMES
_ENVELOPE = frozenset(ENVELOPE_V1_FIELDS)

ModelKey = tuple[str, "str | None", str]
ProgressKey = tuple[str, "str | None", str, str]

# Overflow ranks (see the module doc): progress 0, other lifecycle events 1, a model's
# terminal event 2, PROCESSING_STARTED 3, the terminal event of a media whose start was
# lost here 4, a media's terminal event 5.
_RANKS = 6
_START, _ORPHAN_END, _END = 3, 4, 5
_LIFECYCLE_RANKS = {row.name: row.overflow_rank for row in EVENT_TYPES.values()
                    if row.overflow_rank > 1}  # the table's ranks 3 and 5 are _START and _END

# Entry.state: waiting in the buffer; taken by the sender (numbered); evicted (its number
# becomes a gap); published or dropped. flush() waits for entries to be DEAD or DONE.
QUEUED, TAKEN, DEAD, DONE = 0, 1, 2, 3


class Entry:
    """One accepted event on its way out: its bytes, and what the buffer needs to merge,
    hold and evict it. Mutable so a newer progress value can take an older one's place.

    A lifecycle event is serialised when accepted (on the caller's thread, outside the
    lock), in two parts around its ``seq`` (``head``/``tail``), and keeps only its
    finished ``wire`` bytes once numbered: lifecycle events are what accumulates while
    Redis is away. A progress event keeps its ``fields`` and is serialised when the
    sender takes it (``finish``): most are replaced before that, and at most one per
    model and progress type waits in the queue. ``fields``/``ts`` of lifecycle events are
    kept only for a batch hook (``keep``).
    """

    __slots__ = (
        "event",
        "fields",
        "head",
        "media_id",
        "model_key",
        "progress_key",
        "rank",
        "seq",
        "state",
        "tail",
        "ts",
        "wire",
    )

    def __init__(self, fields: dict[str, Any], ts: float) -> None:
        media_id: str = fields["media_id"]
        event: str = fields["event"]
        self.media_id = media_id
        self.event = event
        model = fields["data"].get("model_name")
        self.model_key: ModelKey | None = (
            (media_id, fields.get("run_id"), model) if model and event in _MODEL_EVENTS else None
        )
        self.progress_key: ProgressKey | None = (
            (*self.model_key, event) if self.model_key and event in _PROGRESS else None
        )
        # What gives way first when the buffer is full (see the module doc).
        self.rank = 0 if self.progress_key is not None else _LIFECYCLE_RANKS.get(event, 1)
        self.fields: dict[str, Any] | None = fields
        self.ts: float | None = ts
        self.head: bytes | None = None
        self.tail: bytes | None = None
        self.seq = 0  # assigned when it enters the queue
        self.state = QUEUED
        self.wire: bytes | None = None

    def serialise(self, encoder: WireEncoder, *, keep: bool) -> None:
        """Serialise now, all but ``seq`` (lifecycle events, on the caller's thread).
        Raises TypeError/ValueError for fields that are not JSON."""
        assert self.fields is not None and self.ts is not None
        self.head, self.tail = encoder.parts(self.fields, self.ts)
        if not keep:
            self.fields = self.ts = None

    def number(self, seq: int) -> None:
        """Give the entry its ``seq`` (and finish its bytes if they were made)."""
        self.seq = seq
        if self.head is not None:
            self.wire = b"%b%d%b" % (self.head, seq, self.tail)  # type: ignore[str-format]
            self.head = self.tail = None

    def finish(self, encoder: WireEncoder, *, keep: bool) -> bytes:
        """The finished bytes, serialising a progress event now (the sender's thread).
        Raises TypeError/ValueError for fields that are no longer JSON."""
        if self.wire is None:
            assert self.fields is not None and self.ts is not None
            self.wire = encoder.encode(self.fields, self.seq, self.ts)
            if not keep:
                self.fields = self.ts = None
        return self.wire

    def replace(self, newer: Entry) -> None:
        """Take a newer value of the same progress key, keeping this one's place (and
        ``seq``: a replaced value leaves no gap)."""
        self.fields, self.ts = newer.fields, newer.ts

    @classmethod
    def resent(cls, wire: bytes, *, keep: bool) -> Entry:
        """A lost media terminal event sent again (``_lost_terminals``): numbered already,
        its bytes finished; ``fields``/``ts`` read back from them for a batch hook."""
        event = json.loads(wire)
        entry = cls.__new__(cls)
        entry.media_id, entry.event, entry.seq = event["media_id"], event["event"], event["seq"]
        entry.model_key = entry.progress_key = None
        entry.rank = _END
        entry.fields = {k: v for k, v in event.items() if k not in _ENVELOPE} if keep else None
        entry.ts = _epoch(event["timestamp"]) if keep else None
        entry.head = entry.tail = None
        entry.state = QUEUED
        entry.wire = wire
        return entry


class SeqNumbers:
    """Per-media sequence counters, least recently used first out."""

    def __init__(self) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()

    def next(self, media_id: str) -> int:
        """The media's next number."""
        last = self._last
        seq = last.get(media_id, 0) + 1
        last[media_id] = seq
        last.move_to_end(media_id)
        if len(last) > d.MAX_REMEMBERED_MEDIA:
            last.popitem(last=False)
        return seq


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


class Footprint(NamedTuple):
    """What the buffer holds for the events it counts (``EventBuffer.footprint``)."""

    slots: int  # queue positions, evicted events' included until they are compacted away
    wire_bytes: int  # bytes in the arena, likewise
    media: int  # media whose open run the overflow ranks remember
    starts: int  # starts of runs nobody saw that the overflow ranks track


class ProgressTables(NamedTuple):
    """The sizes of the buffer's progress tables (``EventBuffer.progress_tables``)."""

    replaceable: int  # progress values waiting in the queue, replaced by a newer one
    held: int  # progress values held until their model's interval is over
    timed_media: int  # media whose models' last send times are kept (bounded)
    timed_models: int  # those models


# How far eviction looks for a superseded progress value before taking the oldest.
_SUPERSEDED_SCAN = 64
# Hold timestamps kept, least recently used first out (a media that never ends must not
# keep its models' entries forever).
_MAX_HOLD_MEDIA = 10_000


class EventBuffer:
    """Accepted events waiting for the sender; see the module docstring."""

    def __init__(
        self,
        capacity: int,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        keep_entries: bool = False,
    ) -> None:
        self.capacity = capacity
        self.min_interval = min_interval
        self.clock = clock
        self.keep_entries = keep_entries  # a batch hook or shard routing needs them
        self.coalesced = 0
        self.dropped: Counter[str] = Counter()  # evicted, buffer_full, closed
        # Terminal events lost to overflow (dropped or evicted) whose media's start went
        # out or may go out: each is a panel that may stay open. Counted in dropped too.
        self.terminals_lost = 0
        self.last_terminal_lost: str | None = None  # the media of the latest one
        self.lost = LostTerminals()  # their bytes, until they can be queued again
        self._resent_through = 0  # the ticket after the last terminal event queued again
        self.in_flight: list[Any] = []  # the live events of the batch the sender holds
        self._taken: list[Any] = []  # that batch's items (= in_flight)
        self._taken_tickets: list[int] = []  # and their tickets
        self._taken_start = 0  # the first ticket taken in that batch
        self._queue = WaitingQueue()
        self._popped = 0  # tickets from here on wait (or left); below, taken or settled
        self._pushed = 0
        self._settled = 0  # every ticket below this is published or dropped
        self._live = 0  # events in the queue (not evicted)
        self._by_rank = tuple(TicketFifo() for _ in range(_RANKS))
        self._pending: dict[ProgressKey, Entry] = {}  # replaceable waiting progress
        self._held: dict[ProgressKey, Entry] = {}
        self._deadlines: list[tuple[float, int, ProgressKey]] = []
        self._tiebreak = itertools.count()
        self._last_sent_at: OrderedDict[str, dict[ProgressKey, float]] = OrderedDict()
        self._seq = SeqNumbers()
        self._starts = StartWatch()

    # -- accepting ------------------------------------------------------------------

    def accept(self, entry: Entry) -> bool:
        """Take one event. True when the sender has new work now (a queued event or a new
        earliest hold deadline); False when it was merged, held behind an earlier
        deadline, or dropped."""
        if entry.progress_key is not None:
            return self._accept_progress(entry, entry.progress_key)
        return self._accept_lifecycle(entry)

    def _accept_progress(self, entry: Entry, key: ProgressKey) -> bool:
        held = self._held.get(key)
        if held is not None:
            held.replace(entry)
            self.coalesced += 1
            return False
        pending = self._pending.get(key)
        if pending is not None:
            pending.replace(entry)
            self.coalesced += 1
            return False
        if self.min_interval > 0:
            now = self.clock()
            sent = self._last_sent_at.get(key[0])
            last = None if sent is None else sent.get(key)
            if last is not None and now - last < self.min_interval:
                return self._hold(entry, key, last + self.min_interval)
            self._sent_now(key, now)
        return self._enqueue(entry)

    def _sent_now(self, key: ProgressKey, now: float) -> None:
        sent = self._last_sent_at.get(key[0])
        if sent is None:
            sent = self._last_sent_at[key[0]] = {}
            if len(self._last_sent_at) > _MAX_HOLD_MEDIA:
                self._last_sent_at.popitem(last=False)
        else:
            self._last_sent_at.move_to_end(key[0])
        sent[key] = now

    def _hold(self, entry: Entry, key: ProgressKey, deadline: float) -> bool:
        # Too soon after the last update of this key: newer values replace this one,
        # and the latest goes out when the interval is over.
        self._held[key] = entry
        earliest = not self._deadlines or deadline < self._deadlines[0][0]
        heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), key))
        return earliest

    def _accept_lifecycle(self, entry: Entry) -> bool:
        model_key = entry.model_key
        event = entry.event
        if model_key is not None:
            # Held progress of this model goes out first, so it keeps its place before
            # the lifecycle event (and the model's final numbers are delivered).
            if self._held:
                for progress_event in _PROGRESS:
                    held = self._held.pop((*model_key, progress_event), None)
                    if held is not None:
                        self._enqueue(held)
            if event in _MODEL_TERMINALS:
                sent = self._last_sent_at.get(entry.media_id)
                if sent:
                    for progress_event in _PROGRESS:
                        sent.pop((*model_key, progress_event), None)
        elif event in _MEDIA_TERMINALS:
            media_id = entry.media_id
            if self._held:
                for key in [k for k in self._held if k[0] == media_id]:
                    self._enqueue(self._held.pop(key))
            self._last_sent_at.pop(media_id, None)
        if entry.rank < _START:
            return self._enqueue(entry)
        return self._accept_media_edge(entry)

    def _accept_media_edge(self, entry: Entry) -> bool:
        """A media's start or terminal event, tracked for the overflow ranks."""
        starts, media_id = self._starts, entry.media_id
        if entry.rank == _START:
            if self.lost and (wire := self.lost.take(media_id)) is not None:
                self._resend(wire)  # the run before ends first
            queued = self._enqueue(entry)
            starts.started(media_id, self._pushed - 1 if queued else None)
            return queued
        orphan = starts.lost(media_id)
        if orphan:
            entry.rank = _ORPHAN_END
        queued = self._enqueue(entry)
        if queued and not orphan and starts.lost(media_id):
            # It made room by evicting its own media's start: an orphan after all. Its
            # ticket is the newest, so it moves to the end of the orphans' order.
            self._by_rank[_END].pop_newest()
            self._by_rank[_ORPHAN_END].append(self._pushed - 1)
        starts.ended(media_id, self._pushed - 1 if queued else None)
        return queued

    def _enqueue(self, entry: Entry) -> bool:
        # The batch in flight does not count (the module doc says why); put back, it
        # may hold the buffer over capacity until sent, each newcomer evicting one.
        if self._live >= self.capacity and not self._make_room(entry):
            return False
        if not entry.seq:  # a lost terminal event queued again keeps its own
            entry.number(self._seq.next(entry.media_id))
        model_key = entry.model_key
        if model_key is not None:
            # Whatever of this model waits can no longer be replaced: the newer value
            # would overtake this event.
            pending = self._pending
            if pending:
                for progress_event in _PROGRESS:
                    pending.pop((*model_key, progress_event), None)
            if entry.progress_key is not None:
                pending[entry.progress_key] = entry
        if self.keep_entries or entry.progress_key is not None:
            self._queue.push(self._pushed, entry)
        else:
            self._queue.push(self._pushed, IN_ARENA, entry.wire)
        self._by_rank[entry.rank].append(self._pushed)
        self._pushed += 1
        self._live += 1
        return True

    def _make_room(self, entry: Entry) -> bool:
        """Full: evict the oldest waiting event of the lowest rank not above the
        newcomer's. False if ``entry`` itself is dropped."""
        for rank in range(entry.rank + 1):
            ticket = self._victim(rank)
            if ticket is not None:
                if rank == _END:
                    self._count_lost_terminal(*self._wire_at(ticket))
                self._evict(ticket)
                if rank == _START:
                    end = self._starts.evicted(ticket)
                    if end is not None and self._is_waiting(end):
                        self._evict(end)  # a media nobody saw: its terminal goes too
                return True
        # Nothing may give way: the newcomer is dropped. Its seq number goes with it, so
        # the media's next event shows the gap.
        self.dropped["buffer_full"] += 1
        if not entry.seq:
            entry.number(self._seq.next(entry.media_id))
        entry.state = DONE
        if entry.rank == _END:
            assert entry.wire is not None  # a lifecycle event: serialised when accepted
            self._count_lost_terminal(entry.media_id, entry.wire)
        return False

    def _count_lost_terminal(self, media_id: str, wire: bytes) -> None:
        self.terminals_lost += 1
        self.last_terminal_lost = media_id
        self.lost.keep(media_id, wire)

    def resend_lost(self) -> int:
        """Queue lost terminal events again while there is room (the sender, before each
        batch), the oldest losses first; returns how many."""
        room = self.capacity - self._live
        if room <= 0 or not self.lost:
            return 0
        taken = self.lost.take_oldest(room)
        for _, wire in taken:
            self._resend(wire)
        return len(taken)

    def _resend(self, wire: bytes) -> None:
        # Through the overflow ranks like any terminal event: if the buffer is full
        # again, it (or another) goes back to ``lost``, counted once more.
        self._enqueue(Entry.resent(wire, keep=self.keep_entries))
        self._resent_through = self._pushed

    def unsettled(self, target: int) -> bool:
        """Whether ``flush`` must wait on: a ticket below ``target`` is not settled yet,
        or a lost terminal event waits to be queued again or to go out."""
        return self.settled_through < max(target, self._resent_through) or bool(self.lost)

    def _is_waiting(self, ticket: int) -> bool:
        return ticket >= self._popped and self._queue.get(ticket) is not None

    def _wire_at(self, ticket: int) -> tuple[str, bytes]:
        """The media and bytes of a waiting lifecycle event, the media parsed back from
        the bytes if it has no entry: in the arena, or put back (a batch taken from the
        arena is put back as bytes)."""
        item = self._queue.get(ticket)
        if isinstance(item, Entry):
            assert item.wire is not None  # numbered: its bytes are finished
            return item.media_id, item.wire
        wire = self._queue.wire(ticket) if item is IN_ARENA else item
        media_id: str = json.loads(wire)["media_id"]
        return media_id, wire

    def _victim(self, rank: int) -> int | None:
        """Remove and return the ticket of the oldest waiting event of ``rank`` (among
        progress, a superseded value first), or None. The batch in flight is skipped:
        its tickets stay, for a put-back batch is evictable again."""
        fifo = self._by_rank[rank]
        queue, popped, first_taken = self._queue, self._popped, self._taken_start
        while len(fifo) and fifo[0] < first_taken:
            fifo.popleft()  # settled: no candidate any more
        first = 0 if not len(fifo) or fifo[0] >= popped else fifo.index_from(popped)
        while first < len(fifo) and queue.get(fifo[first]) is None:
            # Evicted along with its start, or settled in a batch put back in part.
            fifo.remove_at(first)
        if first >= len(fifo):
            return None
        if rank == 0:
            # A value that a newer one of its key supersedes goes before the newest.
            for i in range(first, min(len(fifo), first + _SUPERSEDED_SCAN)):
                ticket = fifo[i]
                item = queue.get(ticket)
                if item is not None and self._pending.get(item.progress_key) is not item:
                    fifo.remove_at(i)
                    return ticket
        ticket = fifo[first]
        fifo.remove_at(first)
        return ticket

    def _evict(self, ticket: int) -> None:
        item = self._queue.kill(ticket)
        self._live -= 1
        self.dropped["evicted"] += 1
        if isinstance(item, Entry):
            item.state = DEAD
            if item.progress_key is not None and self._pending.get(item.progress_key) is item:
                del self._pending[item.progress_key]

    # -- held values ----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the earliest held value is due (clock time), or None."""
        return self._deadlines[0][0] if self._deadlines else None

    def progress_tables(self) -> ProgressTables:
        """How many models each progress table holds, for tests and debugging: the
        hold timestamps stay bounded, the others empty once everything is taken."""
        remembered = sum(len(models) for models in self._last_sent_at.values())
        return ProgressTables(len(self._pending), len(self._held), len(self._last_sent_at),
                              remembered)

    def release_due(self, *, everything: bool = False) -> None:
        """Queue the held values whose interval is over (all of them with ``everything``)."""
        deadlines = self._deadlines
        if not deadlines:
            return
        now = self.clock()
        while deadlines and (everything or deadlines[0][0] <= now):
            _, _, key = heapq.heappop(deadlines)
            entry = self._held.pop(key, None)
            if entry is None:
                continue  # already released by a lifecycle event of its model
            self._sent_now(key, now)
            self._enqueue(entry)

    # -- the sender's side ------------------------------------------------------------

    @property
    def ready(self) -> int:
        """Events waiting that the sender can take now (held values excluded)."""
        return self._live

    @property
    def queued(self) -> int:
        """Events waiting, held and in flight: not yet published or dropped."""
        return self._live + len(self._held) + len(self.in_flight)

    def waiting(self) -> list[tuple[int, Any]]:
        """``(ticket, item)`` of every event waiting in the queue, in order, as ``take``
        would return them (held and in-flight events excluded); for tests and debugging."""
        return list(self._queue.waiting())

    def footprint(self) -> Footprint:
        """What is held, for tests and debugging: each figure stays bounded."""
        media, starts = self._starts.remembered()
        return Footprint(self._queue.slots, self._queue.wire_bytes, media, starts)

    def take(self, limit: int) -> list[Any]:
        """Take up to ``limit`` waiting events in order: ``bytes`` or ``Entry`` items,
        in flight until ``finish_batch``."""
        self._taken_start = self._popped
        # Evicted events are passed over (their numbers are gaps); an arena's come as bytes.
        batch, tickets, after = self._queue.take(limit)
        if after >= 0:
            self._popped = after
        pending = self._pending
        for item in batch:
            if type(item) is not bytes:
                item.state = TAKEN
                key = item.progress_key
                if key is not None and pending.get(key) is item:
                    del pending[key]
        self._live -= len(batch)
        self._taken = self.in_flight = batch
        self._taken_tickets = tickets
        return batch

    def finish_batch(self, requeue: list[Any] | None = None, *, written: bool = True) -> None:
        """The batch in flight is settled (published or dropped, as the sender counted),
        except ``requeue``: those go back to the head, unchanged and ahead of everything
        (no longer replaceable; still evictable, by rank, like any waiting event).
        ``written``: the batch reached a connection, so Redis may have published what is
        put back (its starts count as maybe on screen); False only when nothing of it
        can have been (no connection)."""
        if requeue:
            keep = {id(item) for item in requeue}
            back = []
            for ticket, item in zip(self._taken_tickets, self._taken, strict=True):
                kept = id(item) in keep
                if written or not kept:
                    self._starts.went_out(ticket)
                if kept:
                    back.append((ticket, item))
                    if type(item) is not bytes:
                        item.state = QUEUED
            self._queue.put_back(back)
            self._popped = self._taken_start
            self._live += len(requeue)
            for item in self._taken:
                if id(item) not in keep:
                    _done(item)
        else:
            for item in self._taken:
                _done(item)
            self._settled = self._taken_start = self._popped
            # The starts of the batch went out (every ticket below it left earlier).
            starts = self._by_rank[_START]
            while len(starts) and starts[0] < self._settled:
                self._starts.went_out(starts.popleft())
        self._taken = self.in_flight = []
        self._taken_tickets = []

    def drain(self) -> int:
        """Drop everything waiting or held (close() gave up); returns how many."""
        lost = self._live + len(self._held)
        if lost:
            self.dropped["closed"] += lost
        for item in (*self._queue.items(), *self._held.values()):
            _done(item)
        self._popped = self._pushed
        if not self.in_flight:
            self._taken_start = self._popped
        self._queue.clear()
        self._held.clear()
        self._deadlines.clear()
        self._pending.clear()
        for fifo in self._by_rank:
            fifo.clear()
        self._starts.clear()
        self.lost.abandon_all()
        self._live = 0
        return lost

    def flush_target(self) -> int:
        """Queue every held value; the ticket ``flush`` waits for (``settled_through``)."""
        self.release_due(everything=True)
        return self._pushed

    @property
    def settled_through(self) -> int:
        """Every ticket below this is published or dropped."""
        if not self._live and not self.in_flight:
            return self._pushed
        return self._settled


def _epoch(timestamp: str) -> float | None:
    """``time.time()`` of an event's ISO 8601 UTC ``timestamp`` (``_wire``'s format)."""
    moment = parse_timestamp(timestamp)
    return None if moment is None else moment.timestamp()


def _done(item: Any) -> None:
    if type(item) is Entry:
        item.state = DONE
