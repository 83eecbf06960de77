"""Which runs nobody can have seen, for the buffer's overflow ranks (``_buffer``).

A full buffer may give up a media's terminal event together with the
``PROCESSING_STARTED`` it follows only if no panel can have opened for that run; and the
terminal event of a run whose start was lost here ranks below those of runs that may be on
screen. Both are judgements about a *run*, not about one start event:

- Rule 1 lets a run announce itself more than once (each job of a one-job-per-model
  layout may): the run is unseen only while *every* start of it is still here (waiting
  or in flight) or was lost here. Keyed by the first start alone, a repeat that went out
  after the first gave way left a panel open whose terminal event had gone with the
  first; and a repeat arriving after the first was published was taken for a run nobody
  saw.
- A terminal event closes the run, and the media's next start begins a new one
  (re-analysis): a terminal event belongs to the run it closes, so evicting the first
  run's start never takes the second run's terminal event.
- A start that went out, or may have, makes its run *shown* for good: published or
  dropped after it was sent (of unknown fate), also from a batch whose tail was put back,
  or put back after its batch was written (a connection cut after Redis forwarded the
  batch: the contract's duplicates). Only a batch put back unwritten (no connection)
  leaves its starts unseen.

Memory: a run nobody can have seen is kept while a start of it is in the buffer, or until
its terminal event comes once every start was lost here; a run on screen costs one entry
(its media id) until its terminal event comes. Both tables keep the
``MAX_REMEMBERED_MEDIA`` most recently started runs (measured: 100,000 runs on screen
whose terminal events never come here hold 9.1 MB). A run forgotten on screen is taken for
a new one if it announces itself again (rule 1) after 100,000 other media started here:
only then can its terminal event go with that repeat, uncounted.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from . import defaults as d


class _Run:
    """One run of a media that nobody can have seen yet, from its first start here to its
    terminal event."""

    __slots__ = ("end", "lost", "media_id", "starts")

    def __init__(self, media_id: str) -> None:
        self.media_id = media_id
        self.starts: list[int] = []  # tickets of its starts waiting or in flight
        self.lost = False  # every start of it was lost here (its terminal not come yet)
        self.end: int | None = None  # its terminal event's ticket, once accepted


class StartWatch:
    """The runs whose starts are in the buffer, and whether anyone can have seen them.

    The buffer reports each start and terminal event it queues or drops, each start it
    evicts, and each start that leaves it (``went_out``, ``settled``); it asks ``lost``
    (a terminal event then closes a panel that never opened) and learns from ``evicted``
    which terminal event goes with an evicted start.
    """

    def __init__(self) -> None:
        # media -> its open run nobody can have seen, least recently started first out.
        self._unseen: OrderedDict[str, _Run] = OrderedDict()
        # media whose open run may be on screen (a start went out), likewise.
        self._shown: OrderedDict[str, None] = OrderedDict()
        # start ticket (waiting or in flight) of a run nobody saw -> that run; oldest first.
        self._starts: OrderedDict[int, _Run] = OrderedDict()

    def started(self, media_id: str, ticket: int | None) -> None:
        """A start entered the queue as ``ticket``, or was dropped on arrival (None)."""
        if media_id in self._shown:  # a repeat of a run on screen: nothing hangs on it
            self._shown.move_to_end(media_id)
            return
        run = self._unseen.get(media_id)
        if run is None:
            run = self._unseen[media_id] = _Run(media_id)
            _trim(self._unseen)
        else:
            self._unseen.move_to_end(media_id)
        if ticket is None:
            run.lost = not run.starts
            return
        run.starts.append(ticket)
        run.lost = False
        self._starts[ticket] = run

    def lost(self, media_id: str) -> bool:
        """Whether every start of the media's open run was lost here: its terminal event
        closes a panel that never opened."""
        run = self._unseen.get(media_id)
        return run is not None and run.lost

    def ended(self, media_id: str, ticket: int | None) -> None:
        """The media's terminal event entered the queue as ``ticket`` (None: dropped); its
        run is closed, and the media's next start begins another."""
        self._shown.pop(media_id, None)
        run = self._unseen.pop(media_id, None)
        if run is None:
            return
        if ticket is not None and run.starts:
            run.end = ticket  # goes if the run's last start here is evicted
        else:
            self._forget(run)

    def evicted(self, ticket: int) -> int | None:
        """The start at ``ticket`` was evicted; returns the ticket of the terminal event
        that goes with it (its run's, when nobody can have seen that run), or None."""
        run = self._starts.pop(ticket, None)
        if run is None:
            return None
        run.starts.remove(ticket)  # a run's starts here: one, or a few repeats
        if run.starts:
            return None
        if run.end is not None:
            return run.end
        run.lost = True
        return None

    def went_out(self, ticket: int) -> None:
        """The start at ``ticket`` (if it is one) was sent, or may have been: its run may
        be on screen, and its other starts no longer matter."""
        run = self._starts.pop(ticket, None)
        if run is None:
            return
        run.starts.remove(ticket)
        self._forget(run)
        media_id = run.media_id
        if run.end is None and self._unseen.get(media_id) is run:
            del self._unseen[media_id]
            self._shown[media_id] = None
            _trim(self._shown)

    def settled(self, before: int) -> None:
        """Every ticket below ``before`` is published or dropped."""
        starts = self._starts
        while starts:
            ticket = next(iter(starts))
            if ticket >= before:
                return
            self.went_out(ticket)

    def clear(self) -> None:
        """Forget everything (the buffer was drained)."""
        self._unseen.clear()
        self._shown.clear()
        self._starts.clear()

    def _forget(self, run: _Run) -> None:
        for start in run.starts:  # nothing goes with them any more
            del self._starts[start]
        run.starts.clear()


def _trim(table: OrderedDict[str, Any]) -> None:
    if len(table) > d.MAX_REMEMBERED_MEDIA:
        table.popitem(last=False)
