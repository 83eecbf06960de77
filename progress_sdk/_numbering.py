"""``seq`` numbering for the publisher's buffer (``_buffer``): one counter per media.

A number is given when an event enters the queue (a held value when it is released), so
the queue's order is the numbers' order; a replaced event keeps its predecessor's number,
an evicted or dropped one takes its number with it (a gap consumers see).
"""

from __future__ import annotations

from collections import OrderedDict

from . import defaults as d


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
