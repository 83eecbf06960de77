"""What waits for one socket: a bounded FIFO that coalesces superseded progress.

A socket whose browser stops reading (a frozen tab, a dead network path that TCP has not
noticed yet) must not grow the relay: before this bound, one such socket at 1,000
events/s of 4 KB grew the relay by 4 MB/s until the ping timeout ~45 s later. So each
socket's packets wait in a ``Backlog``:

- a ``progress_update`` that a newer one of the same (media, run, model, progress event)
  supersedes is taken out and the newer one goes to the back, so what reaches the socket
  is always a subsequence of the channel, in order (replacing in place would move the
  newer one ahead of events published between the two, and break ``seq`` order);
- every other packet (lifecycle events, ``media_update``, ``processing_error``,
  ``progress_snapshot``, protocol packets) is kept as it is, never replaced;
- past ``BacklogLimits.max_bytes`` or ``max_events`` waiting, ``push`` says so and the
  caller disconnects the socket: the browser's Socket.IO client reconnects by itself and
  catch-up resyncs it from the snapshots, which is cheaper for everyone than holding an
  unbounded history for it.

No I/O and no library here: ``engine_internals`` puts a ``Backlog`` behind each
Engine.IO socket's queue, and the same policy works for any other writer.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from progress_sdk import defaults as d
from progress_sdk.events import EventType

__all__ = [
    "Backlog",
    "BacklogLimits",
    "BacklogStats",
    "coalesce_key",
]

T = TypeVar("T")

_PROGRESS_EVENTS = frozenset(e.value for e in EventType if e.is_progress)


def coalesce_key(name: str, payload: Any) -> Hashable | None:
    """What makes a socket packet replaceable by a newer one with the same key:
    ``progress_update`` of a progress event, by (media, run, model, event) (the
    publisher's own coalescing key); ``None`` for everything else."""
    if name != "progress_update" or not isinstance(payload, dict):
        return None
    event = payload.get("event")
    if event not in _PROGRESS_EVENTS:
        return None
    data = payload.get("data")
    model = data.get("model_name") if isinstance(data, dict) else None
    return (payload.get("mediaId"), payload.get("runId"), model, event)


@dataclass(frozen=True)
class BacklogLimits:
    """How much may wait for one socket before it is disconnected."""

    max_bytes: int = d.DEFAULT_RELAY_MAX_BACKLOG_BYTES
    """Encoded frame characters waiting (≈ bytes: the relay's payloads are mostly ASCII)."""
    max_events: int = d.DEFAULT_RELAY_MAX_BACKLOG_EVENTS
    """Packets waiting."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_events < 1:
            raise ValueError("backlog limits must be at least 1")

    @property
    def resume_bytes(self) -> int:
        """Below this, a paced sender (catch-up) may add more: half the limit."""
        return self.max_bytes // 2

    @property
    def resume_events(self) -> int:
        """Below this many packets, a paced sender may add more."""
        return self.max_events // 2


@dataclass
class BacklogStats:
    """What the backlogs of all sockets did (``/healthz``, ``backlog``)."""

    replaced: int = 0
    """``progress_update`` packets taken out because a newer one of theirs came."""
    disconnected: Counter[str] = field(default_factory=Counter)
    """Sockets disconnected for their backlog, by limit (``bytes``, ``events``)."""
    discarded: int = 0
    """Packets thrown away with an over-limit socket's backlog (it resyncs on reconnect)."""
    high_water_bytes: int = 0
    """The most bytes one socket had waiting."""
    high_water_events: int = 0
    """The most packets one socket had waiting."""

    def to_dict(self) -> dict[str, Any]:
        """The ``backlog`` section of ``/healthz``."""
        body = dataclasses.asdict(self)
        body["disconnected"] = {limit: self.disconnected[limit] for limit in ("bytes", "events")}
        return body


class Backlog(Generic[T]):
    """The packets waiting for one socket, oldest first (see the module doc)."""

    __slots__ = (
        "_high_bytes", "_high_events", "_latest", "_max_bytes", "_max_events", "_next",
        "bytes", "items", "last_size", "limits", "over", "stats",
    )

    def __init__(self, limits: BacklogLimits, stats: BacklogStats) -> None:
        self.limits = limits
        self.stats = stats
        self.bytes = 0
        self.last_size = 0
        """The size of the item ``pop`` returned last."""
        self.over = False
        """Whether a limit was exceeded after the last ``push``."""
        self.items: OrderedDict[int, tuple[T, int, Hashable | None]] = OrderedDict()
        """What waits, by arrival number: (item, size, key). Read only; ``len(items)`` is
        the count (a C call, where ``len(backlog)`` is a Python one: asyncio.Queue asks
        several times per packet)."""
        self._latest: dict[Hashable, int] = {}
        self._next = 0
        self._max_bytes, self._max_events = limits.max_bytes, limits.max_events
        # The stats' marks as this backlog last saw them: shared by every socket, so
        # another socket may have raised them since (checked when passed).
        self._high_bytes, self._high_events = stats.high_water_bytes, stats.high_water_events

    def __len__(self) -> int:
        return len(self.items)

    def push(self, item: T, size: int, key: Hashable | None = None) -> T | None:
        """Add ``item`` (``size`` bytes) at the back; return the waiting item it replaced
        (same ``key``), if any. ``over`` says whether a limit is exceeded now."""
        replaced = None
        items = self.items
        number = self._next
        self._next = number + 1
        if key is not None:
            latest = self._latest
            older = latest.get(key)
            if older is not None:
                replaced, old_size, _ = items.pop(older)
                self.bytes -= old_size
                self.stats.replaced += 1
            latest[key] = number
        items[number] = (item, size, key)
        waiting = self.bytes = self.bytes + size
        count = len(items)
        # Every packet of every socket passes here: the high-water marks are written only
        # when passed, and the limits are read from this object, not ``limits``.
        if waiting > self._high_bytes or count > self._high_events:
            self._raise_high_water(waiting, count)
        self.over = waiting > self._max_bytes or count > self._max_events
        return replaced

    def _raise_high_water(self, waiting: int, count: int) -> None:
        stats = self.stats
        stats.high_water_bytes = self._high_bytes = max(stats.high_water_bytes, waiting)
        stats.high_water_events = self._high_events = max(stats.high_water_events, count)

    def pop(self) -> T:
        """Take the oldest item (``IndexError`` when there is none)."""
        try:
            number, (item, size, key) = self.items.popitem(last=False)
        except KeyError:
            raise IndexError("pop from an empty backlog") from None
        self.bytes -= size
        self.last_size = size
        if key is not None and self._latest.get(key) == number:
            del self._latest[key]
        return item

    def over_limit(self) -> str | None:
        """``"bytes"`` or ``"events"`` when that limit is exceeded, else ``None``."""
        if self.bytes > self.limits.max_bytes:
            return "bytes"
        if len(self.items) > self.limits.max_events:
            return "events"
        return None

    def has_room(self) -> bool:
        """True when a paced sender may add more (below half of both limits)."""
        return (self.bytes <= self.limits.resume_bytes
                and len(self.items) <= self.limits.resume_events)

    def clear(self, keep: int = 0) -> int:
        """Drop everything but the newest ``keep`` items; return how many were dropped."""
        dropped = max(0, len(self.items) - keep)
        for _ in range(dropped):
            self.pop()
        return dropped
