"""One accepted event on its way out of the publisher's buffer (``_buffer``): ``Entry``,
its life-cycle states and its overflow rank.

Ranks (the buffer's module doc says why): progress 0, other lifecycle events 1, a model's
terminal event 2, ``PROCESSING_STARTED`` 3 (``START``), the terminal event of a media
whose start was lost here 4 (``ORPHAN_END``), a media's terminal event 5 (``END``).
"""

from __future__ import annotations

import json
from typing import Any

from ._rules import ENVELOPE_V1_FIELDS
from ._timestamps import parse_timestamp
from ._wire import WireEncoder
from .event_types import EVENT_TYPES, MODEL_EVENT_NAMES, PROGRESS_EVENT_NAMES

_ENVELOPE = frozenset(ENVELOPE_V1_FIELDS)

ModelKey = tuple[str, "str | None", str]
ProgressKey = tuple[str, "str | None", str, str]

RANKS = 6
START, ORPHAN_END, END = 3, 4, 5
_LIFECYCLE_RANKS = {row.name: row.overflow_rank for row in EVENT_TYPES.values()
                    if row.overflow_rank > 1}  # the table's ranks 3 and 5 are START and END

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
        "user_id",
        "wire",
    )

    def __init__(self, fields: dict[str, Any], ts: float) -> None:
        media_id: str = fields["media_id"]
        event: str = fields["event"]
        self.media_id = media_id
        self.event = event
        self.user_id: str = fields["user_id"]  # its user channel's (progress_sdk.sharding)
        model = fields["data"].get("model_name")
        self.model_key: ModelKey | None = (
            (media_id, fields.get("run_id"), model)
            if model and event in MODEL_EVENT_NAMES
            else None
        )
        self.progress_key: ProgressKey | None = (
            (*self.model_key, event) if self.model_key and event in PROGRESS_EVENT_NAMES else None
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
        entry.user_id = event["user_id"]
        entry.model_key = entry.progress_key = None
        entry.rank = END
        entry.fields = {k: v for k, v in event.items() if k not in _ENVELOPE} if keep else None
        entry.ts = _epoch(event["timestamp"]) if keep else None
        entry.head = entry.tail = None
        entry.state = QUEUED
        entry.wire = wire
        return entry


def done(item: Any) -> None:
    """Mark a settled item (published or dropped) done, if it is an ``Entry``."""
    if type(item) is Entry:
        item.state = DONE


def _epoch(timestamp: str) -> float | None:
    """``time.time()`` of an event's ISO 8601 UTC ``timestamp`` (``_wire``'s format)."""
    moment = parse_timestamp(timestamp)
    return None if moment is None else moment.timestamp()
