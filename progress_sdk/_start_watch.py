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

Memory: every table here holds only ``str`` and ``int`` keys and values in plain dicts,
which the garbage collector does not track: 100,000 buffered starts of as many media cost
a full collection nothing (a run object and its list per start cost it 92 ms, measured
on a loaded machine, and 256 more bytes per start: 743 B then, 487 B now, the event's own
bytes included). A run is known by the ticket of its first start here (its *id*). A run
nobody can have seen is kept while a start of it is in the buffer, or until its terminal
event comes once every start was lost here; a run on screen costs one entry (its media
id) until its terminal event comes. ``RecentMedia`` remembers the open runs of at least
the ``MAX_REMEMBERED_MEDIA`` most recently started media, at most twice as many
(measured: 100,000 runs on screen whose terminal events never come here hold 3.8 MB,
200,000 hold 7.7 MB; 9.1 MB for 100,000 in an ``OrderedDict``). A run forgotten on screen
is taken for a new one if it announces itself again (rule 1) after 100,000 other media
started here: only then can its terminal event go with that repeat, uncounted.
"""

from __future__ import annotations

from . import defaults as d

# RecentMedia values besides a run id (a ticket, >= 0): the media's open run may be on
# screen; every start of its open run was lost here.
SHOWN, LOST = -2, -1


class RecentMedia:
    """``media id -> int`` for at least the ``size`` most recently set media and at most
    twice as many: the newest in one plain dict, the generation before in another, which
    goes as a whole when the newest is full. Unlike an ``OrderedDict`` (which the collector
    walks, key by key, at every collection), dicts of strings and ints are never tracked,
    and each operation is O(1) (dropping a generation frees its entries at once: ~1 ms
    for 100,000)."""

    __slots__ = ("_new", "_old", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._new: dict[str, int] = {}
        self._old: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def get(self, media_id: str) -> int | None:
        """The media's value, or None."""
        value = self._new.get(media_id)
        return self._old.get(media_id) if value is None else value

    def set(self, media_id: str, value: int) -> None:
        """Set the media's value; it is now the most recently set."""
        new = self._new
        if media_id not in new:
            if self._old:
                self._old.pop(media_id, None)
            if len(new) >= self.size:
                self._old, new = new, {}
                self._new = new
        new[media_id] = value

    def pop(self, media_id: str) -> int | None:
        """Forget the media; its value, or None."""
        value = self._new.pop(media_id, None)
        if value is None and self._old:
            value = self._old.pop(media_id, None)
        return value

    def clear(self) -> None:
        """Forget every media."""
        self._new = {}
        self._old = {}


class StartWatch:
    """The runs whose starts are in the buffer, and whether anyone can have seen them.

    The buffer reports each start and terminal event it queues or drops, each start it
    evicts, and each start that leaves it (``went_out``); it asks ``lost`` (a terminal
    event then closes a panel that never opened) and learns from ``evicted`` which
    terminal event goes with an evicted start.
    """

    def __init__(self) -> None:
        # media -> its open run: SHOWN, LOST, or the id of one nobody can have seen.
        self._open = RecentMedia(d.MAX_REMEMBERED_MEDIA)
        # id of a run nobody saw, while a start of it is here (waiting or in flight) ->
        # its media; the run's first start is known by its ticket being the id.
        self._media: dict[int, str] = {}
        self._repeats: dict[int, int] = {}  # ticket of a later start of such a run -> id
        self._count: dict[int, int] = {}  # id -> its starts here, when more than one
        self._end: dict[int, int] = {}  # id -> its terminal event's ticket, once accepted

    def started(self, media_id: str, ticket: int | None) -> None:
        """A start entered the queue as ``ticket``, or was dropped on arrival (None)."""
        run = self._open.get(media_id)
        if ticket is not None and run is not None and run >= 0:
            # A repeat of a run nobody saw: unseen while any start of it is here.
            self._repeats[ticket] = run
            self._count[run] = self._count.get(run, 1) + 1
        elif run is None or run == LOST:
            # A new run, or the first start here of one whose others were all lost.
            run = LOST if ticket is None else ticket
            if ticket is not None:
                self._media[ticket] = media_id
        # Otherwise a repeat of a run on screen (nothing hangs on it), or a repeat lost on
        # arrival (its run keeps its starts here): the run is only the most recent now.
        self._open.set(media_id, run)

    def lost(self, media_id: str) -> bool:
        """Whether every start of the media's open run was lost here: its terminal event
        closes a panel that never opened."""
        return self._open.get(media_id) == LOST

    def ended(self, media_id: str, ticket: int | None) -> None:
        """The media's terminal event entered the queue as ``ticket`` (None: dropped); its
        run is closed, and the media's next start begins another."""
        run = self._open.pop(media_id)
        if run is None or run < 0:
            return
        if ticket is not None:
            self._end[run] = ticket  # goes if the run's last start here is evicted
        else:
            self._forget(run)

    def evicted(self, ticket: int) -> int | None:
        """The start at ``ticket`` was evicted; returns the ticket of the terminal event
        that goes with it (its run's, when nobody can have seen that run), or None."""
        run, media_id = self._run_of(ticket)
        if media_id is None:
            return None
        left = self._count.pop(run, 1) - 1
        if left:
            if left > 1:
                self._count[run] = left
            return None  # a repeat of it still waits: the id stays (its ticket is gone)
        del self._media[run]
        end = self._end.pop(run, None)
        if end is None and self._open.get(media_id) == run:
            self._open.set(media_id, LOST)
        return end

    def went_out(self, ticket: int) -> None:
        """The start at ``ticket`` (if it is one) was sent, or may have been: its run may
        be on screen, and its other starts no longer matter."""
        run, media_id = self._run_of(ticket)
        if media_id is None:
            return
        end = self._forget(run)
        if end is None and self._open.get(media_id) == run:
            self._open.set(media_id, SHOWN)

    def clear(self) -> None:
        """Forget everything (the buffer was drained)."""
        self._open.clear()
        self._media.clear()
        self._repeats.clear()
        self._count.clear()
        self._end.clear()

    def remembered(self) -> tuple[int, int]:
        """``(media, starts)``: the media whose open run is remembered, and the starts of
        runs nobody saw still tracked (for tests: both stay bounded)."""
        return len(self._open), len(self._media) + len(self._repeats)

    def _run_of(self, ticket: int) -> tuple[int, str | None]:
        """The id and media of the unseen run whose start is at ``ticket``, now leaving
        (media None: not a start, or its run went out or was closed unseen)."""
        media_id = self._media.get(ticket)
        if media_id is not None:
            return ticket, media_id  # the run's first start
        run = self._repeats.pop(ticket, None)
        if run is None:
            return ticket, None
        return run, self._media.get(run)  # None: the run was forgotten since

    def _forget(self, run: int) -> int | None:
        """Nothing goes with the run's starts any more; returns its terminal's ticket.
        Its repeats' tickets are dropped as they leave (``_run_of``)."""
        del self._media[run]
        self._count.pop(run, None)
        return self._end.pop(run, None)
