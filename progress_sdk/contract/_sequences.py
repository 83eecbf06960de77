"""Rule 6 and duplicates: the last ``seq`` of each (source, media_id), seq gaps (lost
events), and exact repeats of an event already seen (a publisher's resend).

The validator's fast path advances a pair whose next seq arrives itself (``table`` and
``REPEAT_MASK``); everything else comes here.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from typing import Any

from ._report import Finding, Tally

__all__ = ["MAX_SEQUENCES", "REPEAT_MASK", "REPEAT_WINDOW", "Sequence", "Sequences"]

# Sized for a relay that sees thousands of media an hour: seq repeats arrive within
# seconds, far inside 10,000 publishers' media. ~700 bytes a pair with its digests.
MAX_SEQUENCES = 10_000
# Exact repeats are recognised among the last 32 events of each (source, media_id): a
# publisher resends what its cut connection left unanswered, a batch's events of one
# media, at once. A power of two (the slot is ``seq & REPEAT_MASK``); 256 bytes a pair.
REPEAT_WINDOW = 32
REPEAT_MASK = REPEAT_WINDOW - 1
_NO_DIGESTS = array("q", bytes(8 * REPEAT_WINDOW))


class Sequence:
    """The last seq of a (source, media_id) pair and digests of its recent events."""

    __slots__ = ("digests", "last")

    def __init__(self, last: int, digest: int) -> None:
        self.last = last
        # Slot ``seq & REPEAT_MASK`` holds the digest of event ``seq``; a slot reused by a
        # later seq holds that event's digest, which cannot match (the seq is in the bytes).
        self.digests = _NO_DIGESTS[:]
        self.digests[last & REPEAT_MASK] = digest

    def copies(self, seq: int, digest: int) -> bool:
        """Whether the event ``seq`` with ``digest`` is among the pair's recent events."""
        # 0 is an empty slot (and a dict that cannot be serialised has no digest).
        return seq <= self.last and digest != 0 and self.digests[seq & REPEAT_MASK] == digest


class Sequences:
    """The pairs' sequences, least recently seen first, at most ``max_sequences``."""

    __slots__ = ("max_sequences", "table", "tally")

    def __init__(self, tally: Tally, max_sequences: int) -> None:
        self.tally = tally
        self.max_sequences = max_sequences
        self.table: OrderedDict[tuple[str, str], Sequence] = OrderedDict()

    def repeats(self, obj: dict[str, Any], digest: int) -> bool:
        """True (and counted) when ``obj`` is an exact repeat of an event already seen.

        For the general path, which asks before it reports the event's own findings; the
        accepted path learns it from ``check``. The identity must be usable, as for the
        lifecycle rules.
        """
        media_id = obj.get("media_id")
        run_id = obj.get("run_id")
        seq = obj.get("seq")
        source = obj.get("source")
        if (
            type(media_id) is not str
            or (run_id is not None and type(run_id) is not str)
            or type(seq) is not int
            or type(source) is not str
        ):
            return False
        seen = self.table.get((source, media_id))
        if seen is None or not seen.copies(seq, digest):
            return False
        self.table.move_to_end((source, media_id))
        self.tally.report.duplicates += 1
        return True

    def check(  # noqa: PLR0917
        self,
        key: tuple[str, str],
        seq: int,
        seen: Sequence | None,
        digest: int,
        pos: int,
        findings: list[Finding],
    ) -> bool:
        """Rule 6 for a seq that is not the next of its pair; True for an exact repeat."""
        table = self.table
        if seen is None:
            table[key] = Sequence(seq, digest)
            if len(table) > self.max_sequences:
                table.popitem(last=False)
            return False
        table.move_to_end(key)
        if seen.copies(seq, digest):
            self.tally.report.duplicates += 1
            return True
        last = seen.last
        source, media_id = key
        if seq <= last:
            what = "repeats" if seq == last else "decreases from"
            findings.append(
                self.tally.violation(
                    "rule 6",
                    pos,
                    f"seq {seq} {what} {last}; expected a seq greater than {last} "
                    "(strictly increasing per source and media_id)",
                    media_id=media_id,
                    source=source,
                )
            )
            return False  # keep the highest seq seen, so one stray event is reported once
        seen.last = seq
        seen.digests[seq & REPEAT_MASK] = digest
        findings.append(self.tally.lost(source, media_id, last, seq, pos))
        return False
