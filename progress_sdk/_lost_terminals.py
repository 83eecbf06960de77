"""Terminal events a full buffer gave up, kept aside until they can be sent again.

The buffer (``_buffer``) gives up a media's terminal event only when every waiting event
is such a terminal event (a long outage in which more media ended than ``buffer_size``
holds). The media's start went out, so its panel is open, and its worker is alive, so no
sweeper ends it: without the terminal event the panel would stay open for good. So the
buffer hands the event's finished bytes here, and takes them back:

- once it has room again (the sender asks at each batch, ``EventBuffer.resend_lost``),
  the oldest losses first;
- at once, ahead of it, when the media starts a new run (``PROCESSING_STARTED``), so the
  old run ends before the new one begins.

The event goes out byte for byte, with its own ``seq`` and timestamp: consumers see no
gap for it, and if Redis had published it before it was lost (a batch put back after it
was written, then evicted), the copy is an exact duplicate, which consumers drop by
(``source``, ``media_id``, ``seq``) and the validator counts as one. Contract rules 4 and
6 hold either way: one terminal event per run, ``seq`` rising per media.

Bounded by bytes (``MAX_LOST_TERMINAL_BYTES``, each record counted as its bytes plus
``RECORD_OVERHEAD``): a loss past the bound is *abandoned*, counted and logged, and its
panel stays open while the worker lives. Memory: one ``dict`` of ``str`` to ``bytes``,
which the garbage collector does not track (measured: 10,000 terminal events of the
tracking API, 350 B each with 36-character media ids, hold 4.9 MB: 103 B a record over
the event's and the id's own lengths).
"""

from __future__ import annotations

from itertools import islice

from . import defaults as d

# What a record costs besides the event's and the media id's lengths: the bytes and str
# objects' headers and the dict's slot (measured: 103 B on CPython 3.11); 160 covers the
# slack of a dict that just grew its table.
RECORD_OVERHEAD = 160


class LostTerminals:
    """``media id -> the lost terminal event's bytes``, oldest loss first.

    Counters: ``kept`` (losses recorded: the publisher's ``terminals_lost``; the media of
    the latest one is ``last_kept``), ``resent`` (taken back into the queue), ``abandoned``
    (past the bound, or still here when the buffer was drained), so that
    ``kept == resent + len(self) + abandoned`` at all times."""

    __slots__ = (
        "_bytes", "_wire", "abandoned", "kept", "last_abandoned", "last_kept", "max_bytes",
        "resent",
    )

    def __init__(self, max_bytes: int = d.MAX_LOST_TERMINAL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._wire: dict[str, bytes] = {}
        self._bytes = 0
        self.kept = 0
        self.last_kept: str | None = None  # the media of the latest loss
        self.resent = 0
        self.abandoned = 0
        self.last_abandoned: str | None = None  # the media of the latest one

    def __len__(self) -> int:
        return len(self._wire)

    @property
    def held_bytes(self) -> int:
        """What the records count against ``max_bytes``."""
        return self._bytes

    def keep(self, media_id: str, wire: bytes) -> None:
        """Record a lost terminal event (a newer loss of the same media replaces the
        older: the run it ended is over either way)."""
        self.kept += 1
        self.last_kept = media_id
        older = self._wire.pop(media_id, None)
        if older is not None:
            self._bytes -= _cost(media_id, older)
            self.abandoned += 1  # superseded: it will not be sent
        cost = _cost(media_id, wire)
        if self._bytes + cost > self.max_bytes:
            self.abandoned += 1
            self.last_abandoned = media_id
            return
        self._wire[media_id] = wire
        self._bytes += cost

    def take(self, media_id: str) -> bytes | None:
        """The media's lost terminal event, to be sent now; None if there is none."""
        wire = self._wire.pop(media_id, None)
        if wire is not None:
            self._bytes -= _cost(media_id, wire)
            self.resent += 1
        return wire

    def take_oldest(self, count: int) -> list[tuple[str, bytes]]:
        """Up to ``count`` records, oldest loss first, to be sent now. One scan from the
        dict's start per call (popping one at a time from the front would rescan the
        deleted slots each time: quadratic)."""
        taken = [(m, self._wire[m]) for m in islice(self._wire, count)]
        for media_id, wire in taken:
            del self._wire[media_id]
            self._bytes -= _cost(media_id, wire)
        self.resent += len(taken)
        return taken

    def abandon_all(self) -> int:
        """Give up every record (the buffer was drained: close() gave up); how many."""
        count = len(self._wire)
        if count:
            self.abandoned += count
            self.last_abandoned = next(reversed(self._wire))
        self._wire = {}
        self._bytes = 0
        return count


def _cost(media_id: str, wire: bytes) -> int:
    return len(wire) + len(media_id) + RECORD_OVERHEAD
