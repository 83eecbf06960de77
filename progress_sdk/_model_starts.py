"""Which models' starts a full buffer lost, for the buffer's overflow ranks (``_buffer``).

Rule 2 of the contract: a model's progress and terminal event need its
``ANALYSIS_STARTED`` (or ``ANALYSIS_QUEUED``) first. A model start ranks with the other
lifecycle events, below its own terminal event, so a full buffer can drop or evict the
start and keep what follows it: a model terminal event for a model nobody saw start. As
for a media's start (``_start_watch``), the start takes its attempt with it: a model
whose last start was lost here is *lost* until its next start (a retry, rule 2's
attempts) enters the queue, and its events meanwhile are dropped; a start evicted while
its terminal event waits behind it takes that terminal event along. A media's own
terminal event is never affected (every started media must still end).

Cost: per queued event, one test of ``lost`` for emptiness (the rest runs only while a
model is lost); per model lifecycle event one call here (a dict store for a start, a
pop for a terminal event); per evicted lifecycle event, its bytes parsed back.

Memory: ``_open`` holds a model from its start to its terminal event, ``_end`` a start
whose terminal event came while the start still waited, ``lost`` a model from its lost
start to its terminal event or next start. Models that never end would stay, so each
table keeps at most ``MAX_REMEMBERED_MEDIA`` (100,000) entries: past that, the entries
of starts that left the queue go, and ``lost`` forgets its oldest (a model forgotten
there sends the rest of its attempt, as before this table existed).
"""

from __future__ import annotations

import json
from typing import TypeVar

from . import defaults as d
from ._entry import Entry, ModelKey
from ._overflow import wire_at
from ._waiting import WaitingQueue
from .event_types import ANALYSIS_QUEUED, ANALYSIS_STARTED, MODEL_TERMINAL_NAMES

_K = TypeVar("_K")
# A model's first event of an attempt (rule 2: ANALYSIS_QUEUED is optional).
MODEL_STARTS = frozenset((ANALYSIS_QUEUED, ANALYSIS_STARTED))


class ModelStarts:
    """The buffer reports each model start it queues or drops (``started``), each model
    terminal event it queues (``ended``) and each model start it evicts (``evicted``);
    ``lost`` holds the models whose events are to be dropped."""

    __slots__ = ("_end", "_open", "limit", "lost")

    def __init__(self, limit: int = d.MAX_REMEMBERED_MEDIA) -> None:
        self.limit = limit
        self._open: dict[ModelKey, int] = {}  # model -> ticket of its latest start
        self._end: dict[int, int] = {}  # ticket of a waiting start -> its terminal's
        self.lost: dict[ModelKey, None] = {}  # insertion order: oldest first

    def accepted(self, entry: Entry, ticket: int | None, popped: int) -> None:
        """A model's lifecycle event entered the queue as ``ticket``, or was dropped
        (None); tickets below ``popped`` were taken."""
        key, event = entry.model_key, entry.event
        assert key is not None
        if event in MODEL_STARTS:
            self.started(key, ticket, popped)
        elif ticket is not None and event in MODEL_TERMINAL_NAMES:
            self.ended(key, ticket, popped)

    def refuses(self, entry: Entry) -> bool:
        """Whether ``entry`` goes with its model's lost start: any event of a lost model
        but a new start (its terminal event also ends the attempt here)."""
        key = entry.model_key
        if key not in self.lost or entry.event in MODEL_STARTS:
            return False
        if entry.event in MODEL_TERMINAL_NAMES:
            del self.lost[key]
        return True

    def evicting(self, queue: WaitingQueue, ticket: int) -> int | None:
        """The waiting lifecycle event at ``ticket`` is being evicted: if it is a model
        start, ``evicted``'s answer. An overflow path only: an event in the arena is parsed
        back from its bytes."""
        item = queue.get(ticket)
        if isinstance(item, Entry):
            if item.model_key is None or item.event not in MODEL_STARTS:
                return None
            return self.evicted(item.model_key, ticket)
        event = json.loads(wire_at(queue, ticket)[1])
        if event["event"] not in MODEL_STARTS:
            return None
        key = (event["media_id"], event.get("run_id"), event["data"]["model_name"])
        return self.evicted(key, ticket)

    def started(self, key: ModelKey, ticket: int | None, popped: int) -> None:
        """A model start entered the queue as ``ticket`` (a new attempt: the model is no
        longer lost), or was dropped (None: the model is lost)."""
        if ticket is None:
            self._open.pop(key, None)
            self._mark(key)
            return
        if self.lost:
            self.lost.pop(key, None)
        self._open[key] = ticket
        if len(self._open) > self.limit:
            self._trim(popped)

    def ended(self, key: ModelKey, ticket: int, popped: int) -> None:
        """The model's terminal event entered the queue as ``ticket``; tickets below
        ``popped`` were taken."""
        start = self._open.pop(key, None)
        if start is not None and start >= popped:  # the start still waits
            self._end[start] = ticket
            if len(self._end) > self.limit:
                self._trim(popped)

    def evicted(self, key: ModelKey, ticket: int) -> int | None:
        """The model start at ``ticket`` was evicted; returns the ticket of its terminal
        event if that waits behind it (it goes too), else marks the model lost unless a
        later start of it is in the queue."""
        end = self._end.pop(ticket, None)
        if end is not None:
            return end
        if self._open.get(key) == ticket:
            del self._open[key]
            self._mark(key)
        return None

    def _mark(self, key: ModelKey) -> None:
        lost = self.lost
        lost[key] = None
        if len(lost) > self.limit:
            del lost[next(iter(lost))]

    def _trim(self, popped: int) -> None:
        # Starts taken (below ``popped``) can no longer be evicted: forgotten. If more
        # than half the limit still wait, the oldest go too. Amortised O(1): a trim
        # leaves at most half the limit.
        half = self.limit // 2
        self._open = _newest({k: t for k, t in self._open.items() if t >= popped}, half)
        self._end = _newest({s: e for s, e in self._end.items() if s >= popped}, half)

    def clear(self) -> None:
        """Forget everything (the buffer was drained)."""
        self._open.clear()
        self._end.clear()
        self.lost.clear()


def _newest(table: dict[_K, int], size: int) -> dict[_K, int]:
    """``table`` without its oldest entries beyond ``size``."""
    excess = len(table) - size
    if excess <= 0:
        return table
    return dict(list(table.items())[excess:])
