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
- **Overflow.** ``capacity`` counts waiting and in-flight events. When full, the oldest
  waiting progress event is evicted to make room for a lifecycle event; otherwise the
  newcomer is dropped.
- **Numbering.** ``seq`` counts per media and is assigned when an event enters the queue
  (a held value when it is released), so the queue's order is the numbers' order; a
  replaced event takes its predecessor's number and leaves no gap, while an evicted or
  refused one takes its number with it, which consumers see as a gap.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

from . import _rules
from . import defaults as d
from ._wire import WireEncoder

_PROGRESS = _rules.PROGRESS_EVENT_NAMES
_MODEL_EVENTS = _rules.MODEL_EVENT_NAMES
_MODEL_TERMINALS = frozenset({"ANALYSIS_COMPLETED", "ANALYSIS_FAILED"})
_MEDIA_TERMINALS = frozenset({"PROCESSING_COMPLETED", "PROCESSING_FAILED"})

ModelKey = tuple[str, "str | None", str]
ProgressKey = tuple[str, "str | None", str, str]

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


class EventBuffer:
    """Accepted events waiting for the sender; see the module docstring."""

    def __init__(
        self,
        capacity: int,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.min_interval = min_interval
        self.clock = clock
        self.coalesced = 0
        self.dropped: Counter[str] = Counter()  # evicted, buffer_full, closed
        self.in_flight: list[Entry] = []  # the batch the sender holds
        self._queue: deque[Entry] = deque()
        self._live = 0  # entries in _queue that are not dead
        self._progress_fifo: deque[Entry] = deque()  # eviction candidates, oldest first
        self._pending: dict[ProgressKey, Entry] = {}
        self._last_of_model: dict[ModelKey, Entry] = {}
        self._held: dict[ProgressKey, Entry] = {}
        self._deadlines: list[tuple[float, int, ProgressKey]] = []
        self._tiebreak = itertools.count()
        self._last_sent_at: dict[ProgressKey, float] = {}
        self._seq = SeqNumbers()

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
        if pending is not None and self._last_of_model.get(entry.model_key) is pending:  # type: ignore[arg-type]
            pending.replace(entry)
            self.coalesced += 1
            return False
        if self.min_interval > 0:
            now = self.clock()
            last = self._last_sent_at.get(key)
            if last is not None and now - last < self.min_interval:
                return self._hold(entry, key, last + self.min_interval)
            self._last_sent_at[key] = now
        return self._enqueue(entry)

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
            if event in _MODEL_TERMINALS and self._last_sent_at:
                for progress_event in _PROGRESS:
                    self._last_sent_at.pop((*model_key, progress_event), None)
        elif event in _MEDIA_TERMINALS and (self._held or self._last_sent_at):
            media_id = entry.media_id
            for key in [k for k in self._held if k[0] == media_id]:
                self._enqueue(self._held.pop(key))
            for key in [k for k in self._last_sent_at if k[0] == media_id]:
                del self._last_sent_at[key]
        return self._enqueue(entry)

    def _enqueue(self, entry: Entry) -> bool:
        # In-flight events count: a batch that fails to send comes back to the buffer.
        if self._live + len(self.in_flight) >= self.capacity and not self._make_room(entry):
            return False
        entry.number(self._seq.next(entry.media_id))
        self._queue.append(entry)
        self._live += 1
        if entry.model_key is not None:
            self._last_of_model[entry.model_key] = entry
        if entry.progress_key is not None:
            self._pending[entry.progress_key] = entry
            self._progress_fifo.append(entry)
        return True

    def _make_room(self, entry: Entry) -> bool:
        """Full: evict the oldest waiting progress for a lifecycle event. False if
        ``entry`` itself is dropped."""
        if entry.progress_key is None:
            fifo = self._progress_fifo
            while fifo:
                victim = fifo.popleft()
                if victim.state != QUEUED:
                    continue
                victim.state = DEAD
                self._live -= 1
                self.dropped["evicted"] += 1
                if self._pending.get(victim.progress_key) is victim:  # type: ignore[arg-type]
                    del self._pending[victim.progress_key]  # type: ignore[arg-type]
                return True
        # Nothing to evict (or a progress event itself): the newcomer is dropped. Its
        # seq number goes with it, so the media's next event shows the gap.
        self.dropped["buffer_full"] += 1
        self._seq.next(entry.media_id)
        entry.state = DONE
        return False

    # -- held values ----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the earliest held value is due (clock time), or None."""
        return self._deadlines[0][0] if self._deadlines else None

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
            self._last_sent_at[key] = now
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

    def take(self, limit: int) -> list[Entry]:
        """Take up to ``limit`` waiting events in order; they are in flight until
        ``settle``d or ``requeue``d."""
        batch: list[Entry] = []
        queue = self._queue
        while queue and len(batch) < limit:
            entry = queue.popleft()
            if entry.state == DEAD:
                continue  # evicted: its number is a gap
            self._live -= 1
            entry.state = TAKEN
            if entry.model_key is not None and self._last_of_model.get(entry.model_key) is entry:
                del self._last_of_model[entry.model_key]
            if entry.progress_key is not None and self._pending.get(entry.progress_key) is entry:
                del self._pending[entry.progress_key]
            batch.append(entry)
        fifo = self._progress_fifo
        # Progress entries leave in the order they entered, so the ones just taken sit at
        # the head of the eviction list.
        while fifo and fifo[0].state != QUEUED:
            fifo.popleft()
        self.in_flight = batch
        return batch

    def requeue(self, batch: list[Entry]) -> None:
        """Put taken entries back at the head: they go out first, unchanged (not
        replaceable any more)."""
        for entry in batch:
            entry.state = QUEUED
        self._queue.extendleft(reversed(batch))
        self._live += len(batch)
        self.in_flight = []

    def settle(self, entries: list[Entry]) -> None:
        """Mark ``entries`` as published or dropped (the sender counts which)."""
        for entry in entries:
            entry.state = DONE

    def settled_batch(self) -> None:
        """The in-flight batch is fully settled."""
        self.in_flight = []

    def drain(self) -> int:
        """Drop everything waiting or held (close() gave up); returns how many."""
        lost = self._live + len(self._held)
        if lost:
            self.dropped["closed"] += lost
        for entry in (*self._queue, *self._held.values()):
            entry.state = DONE
        self._queue.clear()
        self._held.clear()
        self._deadlines.clear()
        self._pending.clear()
        self._last_of_model.clear()
        self._progress_fifo.clear()
        self._live = 0
        return lost

    def outstanding(self) -> list[Entry]:
        """The entries standing for every event accepted so far and not yet settled, about
        in the order they will settle (for flush)."""
        return [
            *self.in_flight,
            *(e for e in self._queue if e.state != DEAD),
            *self._held.values(),
        ]
