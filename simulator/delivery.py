"""Judge a relay's deliveries against the channel: every event of a user reaches every
socket of that user and no other, in channel order, exactly once.

Pure data in, verdict out (``check_deliveries``), so it is tested without sockets.
``truth`` is what a subscriber of the channel saw, in channel order (a relay subscribes
to the same channel, so it sees the same order); each ``SocketLog`` is what one
Socket.IO client received. Events are matched by content: the six fields the product's
relay forwards (``mediaId``, ``userId``, ``event``, ``message``, ``data``, ``timestamp``),
so a relay that drops ``seq`` is judged as well as one that keeps it; where ``seq`` and
``source`` do arrive they must be the channel's. Values are compared as a JavaScript
consumer reads them (``js_value``): a Node.js relay parses each event and serialises it
again, so ``0.0`` arrives as ``0`` and is the same value.

Each fault names the event (type, media, user, seq, position on the channel):
``misrouted`` (reached a socket of another user), ``lost``, ``duplicate``, ``reordered``,
``unexpected`` (matches nothing on the channel, e.g. altered), and for the media-level
``media_update`` / ``processing_error`` events, ``missing`` or ``duplicate``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from progress_sdk.event_types import PROCESSING_COMPLETED, PROCESSING_FAILED

__all__ = [
    "DeliveryReport",
    "Fault",
    "Received",
    "SocketLog",
    "TruthEvent",
    "check_deliveries",
    "content_key",
    "js_value",
]

ContentKey = tuple[Any, ...]

_FINAL_EVENTS = {PROCESSING_COMPLETED: "media_update", PROCESSING_FAILED: "processing_error"}


def js_value(value: Any) -> Any:
    """``value`` as JavaScript holds it after ``JSON.parse``, hashable: every number a
    double (``0.0`` and ``0`` are one value, as are -0 and 0; an integer beyond 2**53
    rounds as JavaScript rounds it), objects unordered (key order is all a
    ``JSON.stringify`` round trip changes besides numbers). Booleans stay booleans."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        # Tagged, so a number never equals a boolean (True == 1.0 in Python, not in JS);
        # + 0.0 turns -0.0 into 0.0, as JSON.stringify(-0) does.
        return ("n", float(value) + 0.0)
    if isinstance(value, dict):
        return ("{}", frozenset((str(k), js_value(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("[]", tuple(js_value(v) for v in value))
    return ("?", repr(value))


def content_key(update: dict[str, Any]) -> ContentKey:
    """What identifies a ``progress_update`` when only the product relay's six fields
    (camelCase) arrive, compared by value as a JavaScript consumer reads them."""
    return (
        update.get("mediaId"), update.get("userId"), update.get("event"),
        update.get("message"), js_value(update.get("data")), update.get("timestamp"),
    )


@dataclass(frozen=True)
class TruthEvent:
    """One valid event as the channel carried it."""

    position: int
    """1-based place on the channel among the events checked."""
    wire: dict[str, Any]

    @property
    def user_id(self) -> str:
        """The user the event belongs to."""
        return str(self.wire["user_id"])

    @property
    def key(self) -> ContentKey:
        """The event's content key."""
        w = self.wire
        return content_key({
            "mediaId": w["media_id"], "userId": w["user_id"], "event": w["event"],
            "message": w.get("message", ""), "data": w.get("data", {}),
            "timestamp": w.get("timestamp"),
        })

    @property
    def emitted_at(self) -> float | None:
        """The worker's emit time (epoch seconds), from ``timestamp``."""
        stamp = self.wire.get("timestamp")
        if not isinstance(stamp, str):
            return None
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    def describe(self) -> str:
        """The event, named for a person reading a failure."""
        w = self.wire
        seq = f", seq {w['seq']}" if "seq" in w else ""
        return (f"{w['event']} of media {w['media_id']} (user {w['user_id']}{seq}, "
                f"channel #{self.position})")


@dataclass(frozen=True)
class Received:
    """One socket event as a client received it."""

    name: str
    payload: Any
    at: float
    """Arrival, epoch seconds."""


@dataclass
class SocketLog:
    """Everything one socket, connected as ``user_id``, received."""

    user_id: str
    label: str
    """Which socket (user, index, relay), for messages."""
    received: list[Received] = field(default_factory=list)

    def updates(self) -> list[Received]:
        """The ``progress_update`` events, in arrival order."""
        return [r for r in self.received if r.name == "progress_update"]


@dataclass(frozen=True)
class Fault:
    """One delivery fault."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class DeliveryReport:
    """The verdict over all sockets."""

    events: int
    sockets: int
    expected_deliveries: int
    deliveries: int
    faults: list[Fault]
    latencies: list[float]
    """Seconds from each event's emit to its first arrival at each socket of its user."""
    fault_counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """True when nothing was misrouted, lost, duplicated, reordered or altered."""
        return not self.faults


def check_deliveries(
    truth: Sequence[TruthEvent],
    sockets: Iterable[SocketLog],
    *,
    whole_stream: bool = True,
    per_media_order: bool = False,
) -> DeliveryReport:
    """Compare what every socket received with what the channel carried.

    ``whole_stream=False`` when ``truth`` is a window of a longer stream (listening to
    another producer): an event of the socket's own user that matches nothing is taken
    as from outside the window, not as a fault; another user's event still is one.
    ``per_media_order=True`` when the events came over several shard channels: only the
    order of each media's events is defined then (a user's media may be on different
    channels, which no subscriber sees in one order), so only that order is checked.
    """
    by_key: dict[ContentKey, list[TruthEvent]] = defaultdict(list)
    for event in truth:
        by_key[event.key].append(event)
    logs = list(sockets)
    faults: list[Fault] = []
    latencies: list[float] = []
    expected = deliveries = 0
    for log in logs:
        mine = [e for e in truth if e.user_id == log.user_id]
        expected += len(mine)
        deliveries += _check_updates(log, mine, by_key, faults, latencies,
                                     whole_stream=whole_stream,
                                     per_media_order=per_media_order)
        _check_final_events(log, mine, truth, faults)
    return DeliveryReport(
        events=len(truth), sockets=len(logs), expected_deliveries=expected,
        deliveries=deliveries, faults=faults, latencies=latencies,
        fault_counts=Counter(f.kind for f in faults),
    )


def _check_updates(
    log: SocketLog,
    mine: list[TruthEvent],
    by_key: dict[ContentKey, list[TruthEvent]],
    faults: list[Fault],
    latencies: list[float],
    *,
    whole_stream: bool,
    per_media_order: bool = False,
) -> int:
    seen: Counter[int] = Counter()
    lasts: dict[object, TruthEvent] = {}  # per user, or per media with shard channels
    updates = log.updates()
    for item in updates:
        event = _match(item.payload, by_key, seen)
        if event is None:
            owner = item.payload.get("userId") if isinstance(item.payload, dict) else None
            if not whole_stream and owner == log.user_id:
                continue
            faults.append(Fault("unexpected", f"{log.label} received a progress_update that "
                                f"is not on the channel: {_brief(item.payload)}"))
            continue
        seen[event.position] += 1
        scope = event.wire.get("media_id") if per_media_order else None
        last = lasts.get(scope)
        if event.user_id != log.user_id:
            faults.append(Fault("misrouted", f"{event.describe()} reached {log.label}"))
        elif seen[event.position] > 1:
            faults.append(Fault("duplicate", f"{event.describe()} reached {log.label} "
                                f"{seen[event.position]} times"))
        elif last is not None and event.position < last.position:
            faults.append(Fault("reordered", f"{event.describe()} reached {log.label} "
                                f"after {last.describe()}"))
        else:
            emitted = event.emitted_at
            if emitted is not None:
                latencies.append(item.at - emitted)
        if event.user_id == log.user_id and (last is None or event.position > last.position):
            lasts[scope] = event
    for event in mine:
        if not seen[event.position]:
            faults.append(Fault("lost", f"{event.describe()} never reached {log.label}"))
    return len(updates)


def _match(payload: Any, by_key: dict[ContentKey, list[TruthEvent]],
           seen: Counter[int]) -> TruthEvent | None:
    if not isinstance(payload, dict):
        return None
    try:
        key = content_key(payload)
    except (TypeError, ValueError):
        return None
    candidates = by_key.get(key)
    if not candidates:
        return None
    # Identical content on the channel twice (a producer without timestamps): take the
    # first copy this socket has not had yet; the envelope, where forwarded, must agree.
    fresh = [e for e in candidates if not seen[e.position]] or candidates
    for event in fresh:
        if all(js_value(payload.get(camel, event.wire.get(wire))) == js_value(event.wire.get(wire))
               for wire, camel in (("seq", "seq"), ("source", "source"), ("run_id", "runId"))):
            return event
    return None


def _check_final_events(log: SocketLog, mine: list[TruthEvent], truth: Sequence[TruthEvent],
                        faults: list[Fault]) -> None:
    got: Counter[tuple[str, Any]] = Counter()
    for item in log.received:
        if item.name in ("media_update", "processing_error") and isinstance(item.payload, dict):
            media = item.payload.get("mediaId", item.payload.get("id"))
            got[(item.name, media)] += 1
    wanted: Counter[tuple[str, Any]] = Counter(
        (_FINAL_EVENTS[e.wire["event"]], e.wire["media_id"])
        for e in mine if e.wire["event"] in _FINAL_EVENTS
    )
    owners = {e.wire["media_id"]: e.user_id for e in truth}
    for (name, media), count in sorted(got.items(), key=str):
        owner = owners.get(media)
        if owner is not None and owner != log.user_id:
            faults.append(Fault("misrouted", f"{name} of media {media} (user {owner}) "
                                f"reached {log.label}"))
        elif count > wanted[(name, media)]:
            faults.append(Fault("duplicate" if wanted[(name, media)] else "unexpected",
                                f"{name} of media {media} reached {log.label} {count} times, "
                                f"expected {wanted[(name, media)]}"))
    for (name, media), count in sorted(wanted.items(), key=str):
        if got[(name, media)] < count:
            faults.append(Fault("lost", f"{name} of media {media} (user {log.user_id}) never "
                                f"reached {log.label}"))


def _brief(payload: Any) -> str:
    if isinstance(payload, dict):
        return (f"{payload.get('event')} of media {payload.get('mediaId')} "
                f"(user {payload.get('userId')})")
    return repr(payload)[:80]
