"""Progress coalescing for the publisher's buffer (``_buffer``): which progress value
replaces which, and which is held back.

- **Replace.** A progress value still waiting in the queue (``pending``) or held
  (``held``) is replaced in place by a newer one of the same (media, run, model, event
  type): it keeps its place and its ``seq``. The buffer takes a value out of ``pending``
  once anything else of its model enters the queue after it (the newer value would
  overtake that event) or the sender takes it.
- **Hold.** Each progress key is sent at most once per ``min_interval``; a value that
  comes too soon is held (newer ones replace it) and released when the interval is over
  (``due``), or before its model's next lifecycle event (``release_model``), its media's
  terminal event (``release_media``), or on flush/close.

No threads, no I/O: the buffer calls it under the publisher's lock, with its clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from ._entry import TAKEN, Entry, ModelKey, ProgressKey
from .event_types import PROGRESS_EVENT_NAMES

_PROGRESS = PROGRESS_EVENT_NAMES
# Hold timestamps kept, least recently used first out (a media that never ends must not
# keep its models' entries forever).
MAX_HOLD_MEDIA = 10_000


class ProgressTables(NamedTuple):
    """The sizes of the buffer's progress tables (``EventBuffer.progress_tables``)."""

    replaceable: int  # progress values waiting in the queue, replaced by a newer one
    held: int  # progress values held until their model's interval is over
    timed_media: int  # media whose models' last send times are kept (bounded)
    timed_models: int  # those models


class ProgressCoalescing:
    """The progress tables: replaceable values, held values and last send times."""

    def __init__(self, min_interval: float, clock: Callable[[], float]) -> None:
        self.min_interval = min_interval
        self.clock = clock
        self.coalesced = 0  # values replaced by a newer one
        self.pending: dict[ProgressKey, Entry] = {}  # replaceable waiting progress
        self.held: dict[ProgressKey, Entry] = {}
        self._deadlines: list[tuple[float, int, ProgressKey]] = []
        self._tiebreak = itertools.count()
        self._last_sent_at: OrderedDict[str, dict[ProgressKey, float]] = OrderedDict()

    def admit(self, entry: Entry, key: ProgressKey) -> bool | None:
        """None when ``entry`` is to be queued now; otherwise it was merged into a
        waiting or held value (False) or is held, True if its deadline is the new
        earliest (the sender has to wake up for it)."""
        held = self.held.get(key)
        if held is not None:
            held.replace(entry)
            self.coalesced += 1
            return False
        pending = self.pending.get(key)
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
        return None

    def _sent_now(self, key: ProgressKey, now: float) -> None:
        sent = self._last_sent_at.get(key[0])
        if sent is None:
            sent = self._last_sent_at[key[0]] = {}
            if len(self._last_sent_at) > MAX_HOLD_MEDIA:
                self._last_sent_at.popitem(last=False)
        else:
            self._last_sent_at.move_to_end(key[0])
        sent[key] = now

    def _hold(self, entry: Entry, key: ProgressKey, deadline: float) -> bool:
        # Too soon after the last update of this key: newer values replace this one,
        # and the latest goes out when the interval is over.
        self.held[key] = entry
        earliest = not self._deadlines or deadline < self._deadlines[0][0]
        heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), key))
        return earliest

    def release_model(self, model_key: ModelKey, *, terminal: bool) -> list[Entry]:
        """Before a lifecycle event of the model: its held values, to be queued first
        (so they keep their place, and the model's final numbers are delivered); a
        model's ``terminal`` event also forgets its send times."""
        released = []
        if self.held:
            for progress_event in _PROGRESS:
                held = self.held.pop((*model_key, progress_event), None)
                if held is not None:
                    released.append(held)
        if terminal:
            sent = self._last_sent_at.get(model_key[0])
            if sent:
                for progress_event in _PROGRESS:
                    sent.pop((*model_key, progress_event), None)
        return released

    def release_media(self, media_id: str) -> list[Entry]:
        """Before a media's terminal event: its held values, to be queued first; its
        send times are forgotten."""
        released = []
        if self.held:
            released = [self.held.pop(k) for k in [k for k in self.held if k[0] == media_id]]
        self._last_sent_at.pop(media_id, None)
        return released

    def next_deadline(self) -> float | None:
        """When the earliest held value is due (clock time), or None."""
        return self._deadlines[0][0] if self._deadlines else None

    def due(self, *, everything: bool = False) -> list[Entry]:
        """Take the held values whose interval is over (all of them with
        ``everything``), in deadline order, to be queued; each counts as sent now."""
        deadlines = self._deadlines
        if not deadlines:
            return []
        released = []
        now = self.clock()
        while deadlines and (everything or deadlines[0][0] <= now):
            _, _, key = heapq.heappop(deadlines)
            entry = self.held.pop(key, None)
            if entry is None:
                continue  # already released by a lifecycle event of its model
            self._sent_now(key, now)
            released.append(entry)
        return released

    def taken(self, batch: list[Any]) -> None:
        """The sender took ``batch`` (``Entry`` items and bytes): each entry is
        ``TAKEN``, a progress value among them in flight and no longer replaceable."""
        pending = self.pending
        for item in batch:
            if type(item) is not bytes:
                item.state = TAKEN
                key = item.progress_key
                if key is not None and pending.get(key) is item:
                    del pending[key]

    def evicted(self, entry: Entry) -> None:
        """``entry`` was evicted from the queue: no longer replaceable."""
        key = entry.progress_key
        if key is not None and self.pending.get(key) is entry:
            del self.pending[key]

    def sizes(self) -> ProgressTables:
        """How many models each table holds."""
        remembered = sum(len(models) for models in self._last_sent_at.values())
        return ProgressTables(len(self.pending), len(self.held), len(self._last_sent_at),
                              remembered)

    def clear(self) -> None:
        """Forget every waiting and held value (the buffer was drained); the send
        times stay, bounded."""
        self.held.clear()
        self._deadlines.clear()
        self.pending.clear()
