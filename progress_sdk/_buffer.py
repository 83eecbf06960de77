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
  another run (``_start_watch``). Likewise a model whose start (queued or started) was
  dropped or evicted loses the rest of that attempt, its terminal event included, until
  its next start (rule 2, ``_model_starts``). So a media's terminal event is only ever lost when the
  waiting events are all terminal events of runs someone may have seen, counted in
  ``lost.kept``; and every loss before it shows as a gap in its ``seq``. Such a
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

Modules: an accepted event and its rank are ``_entry``; the progress replace and hold
tables ``_coalescing``; the eviction order ``_overflow``; ``seq`` ``_numbering``; the
runs nobody saw ``_start_watch``; the models whose start was lost ``_model_starts``;
the lost terminal events ``_lost_terminals``; the queue's slots ``_waiting``. This
module is the queue and its positions.

Positions: every event that enters the queue gets the next *ticket*, kept until it
leaves; the queue holds the waiting ones in ticket order (``WaitingQueue``), tickets below
``popped`` were taken, below ``settled`` are published or dropped, and ``flush`` waits
for a ticket.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

from ._coalescing import ProgressCoalescing, ProgressTables
from ._entry import DEAD, DONE, END, ORPHAN_END, QUEUED, START, Entry, done
from ._lost_terminals import LostTerminals
from ._model_starts import ModelStarts
from ._numbering import SeqNumbers
from ._overflow import OverflowOrder, wire_at
from ._start_watch import StartWatch
from ._waiting import IN_ARENA, WaitingQueue
from .event_types import MEDIA_TERMINAL_NAMES, MODEL_TERMINAL_NAMES, PROGRESS_EVENT_NAMES

_PROGRESS = PROGRESS_EVENT_NAMES
_MODEL_TERMINALS = MODEL_TERMINAL_NAMES
_MEDIA_TERMINALS = MEDIA_TERMINAL_NAMES

__all__ = ["EventBuffer", "Footprint", "ProgressTables"]


class Footprint(NamedTuple):
    """What the buffer holds for the events it counts (``EventBuffer.footprint``)."""

    slots: int  # queue positions, evicted events' included until they are compacted away
    wire_bytes: int  # bytes in the arena, likewise
    media: int  # media whose open run the overflow ranks remember
    starts: int  # starts of runs nobody saw that the overflow ranks track



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
        self.clock = clock
        self.keep_entries = keep_entries  # a batch hook or shard routing needs them
        self.dropped: Counter[str] = Counter()  # evicted, buffer_full, closed
        # Terminal events lost to overflow (dropped or evicted) whose media's start went
        # out or may go out: each is a panel that may stay open. Counted in dropped too
        # and in ``lost.kept``; their bytes wait there until they can be queued again.
        self.lost = LostTerminals()
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
        self._ranks = OverflowOrder()
        self._by_rank = self._ranks.fifos  # one lookup fewer per event in _enqueue
        self._progress = ProgressCoalescing(min_interval, clock)
        # The coalescing tables themselves, not copies (they are only ever cleared, never
        # rebound): _enqueue and take read them for every event, one lookup fewer.
        self._pending = self._progress.pending
        self._held = self._progress.held
        self._seq = SeqNumbers()
        self._starts = StartWatch()
        self._models = ModelStarts()
        self._lost_models = self._models.lost  # only ever cleared, never rebound

    # -- accepting ------------------------------------------------------------------

    def accept(self, entry: Entry) -> bool:
        """Take one event. True when the sender has new work now (a queued event or a new
        earliest hold deadline); False when it was merged, held behind an earlier
        deadline, or dropped."""
        key = entry.progress_key
        if key is not None:
            verdict = self._progress.admit(entry, key)
            if verdict is not None:
                return verdict  # merged or held
            return self._enqueue(entry)
        return self._accept_lifecycle(entry)

    def _accept_lifecycle(self, entry: Entry) -> bool:
        model_key = entry.model_key
        # Held progress of the model (or media) goes out first, so it keeps its place
        # before the lifecycle event (and the model's final numbers are delivered).
        if model_key is not None:
            terminal = entry.event in _MODEL_TERMINALS
            if self._held or terminal:
                for held in self._progress.release_model(model_key, terminal=terminal):
                    self._enqueue(held)
        elif entry.event in _MEDIA_TERMINALS:
            for held in self._progress.release_media(entry.media_id):
                self._enqueue(held)
        if entry.rank >= START:
            return self._accept_media_edge(entry)
        queued = self._enqueue(entry)
        if model_key is not None:  # a model's lifecycle event (rule 2: _model_starts)
            self._models.accepted(entry, self._pushed - 1 if queued else None, self._popped)
        return queued

    def _accept_media_edge(self, entry: Entry) -> bool:
        """A media's start or terminal event, tracked for the overflow ranks."""
        starts, media_id = self._starts, entry.media_id
        if entry.rank == START:
            if self.lost and (wire := self.lost.take(media_id)) is not None:
                self._resend(wire)  # the run before ends first
            queued = self._enqueue(entry)
            starts.started(media_id, self._pushed - 1 if queued else None)
            return queued
        orphan = starts.lost(media_id)
        if orphan:
            entry.rank = ORPHAN_END
        queued = self._enqueue(entry)
        if queued and not orphan and starts.lost(media_id):
            # It made room by evicting its own media's start: an orphan after all. Its
            # ticket is the newest, so it moves to the end of the orphans' order.
            self._ranks.became_orphan(self._pushed - 1)
        starts.ended(media_id, self._pushed - 1 if queued else None)
        return queued

    def _enqueue(self, entry: Entry) -> bool:
        # The batch in flight does not count (the module doc says why); put back, it
        # may hold the buffer over capacity until sent, each newcomer evicting one.
        if self._live >= self.capacity and not self._make_room(entry):
            return False
        if self._lost_models and self._models.refuses(entry):
            return self._make_room(entry, refused=True)  # its model's start was lost
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

    def _make_room(self, entry: Entry, *, refused: bool = False) -> bool:
        """Full: evict the oldest waiting event of the lowest rank not above the
        newcomer's. False if ``entry`` itself is dropped (at once if ``refused``)."""
        for rank in range(0 if refused else entry.rank + 1):
            ticket = self._ranks.victim(rank, self._queue, self._pending,
                                        popped=self._popped, first_taken=self._taken_start)
            if ticket is not None:
                if rank == END:
                    self.lost.keep(*wire_at(self._queue, ticket))
                end = (self._models.evicting(self._queue, ticket) if rank == 1
                       else self._starts.evicted(ticket) if rank == START else None)
                self._evict(ticket)
                # A run nobody saw, or a model start (rule 2): its waiting terminal goes too.
                if end is not None and end >= self._popped and self._queue.get(end) is not None:
                    self._evict(end)
                return True
        # Nothing may give way: the newcomer is dropped. Its seq number goes with it, so
        # the media's next event shows the gap.
        self.dropped["buffer_full"] += 1
        if not entry.seq:
            entry.number(self._seq.next(entry.media_id))
        entry.state = DONE
        if entry.rank == END:
            assert entry.wire is not None  # a lifecycle event: serialised when accepted
            self.lost.keep(entry.media_id, entry.wire)
        return False

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

    def _evict(self, ticket: int) -> None:
        item = self._queue.kill(ticket)
        self._live -= 1
        self.dropped["evicted"] += 1
        if isinstance(item, Entry):
            item.state = DEAD
            self._progress.evicted(item)

    # -- held values ----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the earliest held value is due (clock time), or None."""
        return self._progress.next_deadline()

    def progress_tables(self) -> ProgressTables:
        """How many models each progress table holds, for tests and debugging: the
        hold timestamps stay bounded, the others empty once everything is taken."""
        return self._progress.sizes()

    def release_due(self, *, everything: bool = False) -> None:
        """Queue the held values whose interval is over (all of them with ``everything``)."""
        for entry in self._progress.due(everything=everything):
            self._enqueue(entry)

    @property
    def coalesced(self) -> int:
        """Progress values replaced by a newer one."""
        return self._progress.coalesced

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
        self._progress.taken(batch)
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
                    done(item)
        else:
            for item in self._taken:
                done(item)
            self._settled = self._taken_start = self._popped
            # The starts of the batch went out (every ticket below it left earlier).
            for ticket in self._ranks.starts_settled(self._settled):
                self._starts.went_out(ticket)
        self._taken = self.in_flight = []
        self._taken_tickets = []

    def drain(self) -> int:
        """Drop everything waiting or held (close() gave up); returns how many."""
        lost = self._live + len(self._held)
        if lost:
            self.dropped["closed"] += lost
        for item in (*self._queue.items(), *self._held.values()):
            done(item)
        self._popped = self._pushed
        if not self.in_flight:
            self._taken_start = self._popped
        self._queue.clear()
        self._progress.clear()
        self._ranks.clear()
        self._starts.clear()
        self._models.clear()
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
