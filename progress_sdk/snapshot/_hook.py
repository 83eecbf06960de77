"""``SnapshotHook``: the publisher's snapshot writer, reading each batch back from its
wire bytes."""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..event_types import MEDIA_TERMINAL_NAMES
from ._config import SnapshotConfig
from ._tracker import SnapshotTracker

logger = logging.getLogger("progress_sdk")

if TYPE_CHECKING:
    from ..liveness import Liveness

__all__ = ["SnapshotHook"]


class SnapshotHook:
    """The publisher's snapshot writer (``ProgressPublisher(snapshots=...)``): folds each
    batch into its media's snapshots and returns the writes for the same pipeline.

    It reads the events back from their wire bytes (``orjson``, on the sender thread), so
    the publisher's buffer keeps no fields dict per event for it: a buffered event costs
    the same memory, and the garbage collector the same walks, with snapshots on or off.

    With ``liveness`` (``progress_sdk.liveness``), each media records its owner, and the
    events of runs a sweeper ended are withheld: ``take_withheld`` gives their positions
    in the batch last seen, and they are neither folded nor written.
    """

    def __init__(
        self, config: SnapshotConfig, channel: str | Callable[[str], str] | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.tracker = SnapshotTracker(
            config, channel=channel, owner=liveness.owner if liveness is not None else None
        )
        self.liveness = liveness
        self._epoch = _WireClock()
        self._withheld: list[int] = []

    def __call__(self, payloads: Sequence[bytes]) -> list[tuple[str | bytes, ...]]:
        """``payloads``: a batch's wire events about to be published, in order."""
        liveness = self.liveness
        if liveness is None:
            self.tracker.apply_batch(_decoded(payloads), self._epoch)
            return self.tracker.take_commands()
        events = [_decode_one(payload) for payload in payloads]
        withheld = self._withheld = liveness.withheld(events)
        if withheld:
            gone = set(withheld)
            events = [e for i, e in enumerate(events) if i not in gone]
        kept = [e for e in events if e is not None]
        self.tracker.apply_batch(kept, self._epoch)
        commands = self.tracker.take_commands()
        liveness.wrote(self._written(kept))
        liveness.open = len(self.tracker)
        return commands

    def rewrite_commands(self) -> list[tuple[str | bytes, ...]]:
        """For a server that lost its data (``RedisTransport.on_new_server``, on the
        sender thread, before the batch is written): this publisher's liveness key, then
        every snapshot it holds written whole (``SnapshotTracker.rewrite_commands``). The
        key first: a sweeper must not find the rewritten media of a live worker ownerless."""
        commands = self.tracker.rewrite_commands()
        if commands:
            # Each restart, not once: each is an outage of its own worth a line.
            logger.warning(
                "progress_sdk: reached a Redis other than the one last written to (a "
                "restart, a failover); writing the snapshots of %d media whole again, "
                "in case it lost them", sum(1 for c in commands if c[0] == "EVALSHA"))
        live = self.liveness
        if live is not None and commands:
            ttl = str(max(1, int(live.ttl * 1000)))
            commands.insert(0, ("SET", live.key, "1", "PX", ttl))
        return commands

    def take_withheld(self) -> list[int]:
        """Positions, in the batch last given, of events that must not go out."""
        withheld, self._withheld = self._withheld, []
        return withheld

    def _written(self, events: list[dict[str, Any]]) -> Iterator[tuple[str, float, bool]]:
        last = {event.get("media_id"): event for event in events}
        for media_id, event in last.items():
            if type(media_id) is str:
                terminal = event.get("event") in MEDIA_TERMINAL_NAMES
                yield media_id, self._epoch(event), terminal


def _decode_one(payload: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if type(event) is dict else None


def _decoded(payloads: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    # One at a time: each dict is freed once folded, so a batch of them never adds up to
    # a garbage collection.
    loads = orjson.loads
    for payload in payloads:
        try:
            event = loads(payload)
        except orjson.JSONDecodeError:
            continue  # not one of the publisher's own events: nothing to fold
        if type(event) is dict:
            yield event


class _WireClock:
    """A wire ``timestamp`` (``_wire.TimestampFormatter``'s ``...T12:00:00.123456Z``) back
    to epoch seconds: the seconds part is parsed once per second, as it was formatted."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._prefix = ""
        self._second = 0

    def __call__(self, event: Mapping[str, Any]) -> float:
        stamp = event.get("timestamp")
        if type(stamp) is not str or len(stamp) != 27:
            return time.time()
        prefix = stamp[:19]
        try:
            if prefix != self._prefix:
                parsed = datetime.strptime(prefix, "%Y-%m-%dT%H:%M:%S")
                self._second = calendar.timegm(parsed.timetuple())
                self._prefix = prefix
            # One division of integers, as datetime.timestamp() rounds it.
            return (self._second * 1_000_000 + int(stamp[20:26])) / 1_000_000
        except ValueError:
            return time.time()
