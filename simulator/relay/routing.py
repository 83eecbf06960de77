"""From one channel message to the socket events of one user's room.

``EventRouter.route`` decodes and checks a message (the contract's per-event rules,
lenient about the envelope as readers must be) and returns what the relay emits:
``progress_update`` in the product relay's camelCase shape plus ``seq``, ``source`` and
``runId``; after ``PROCESSING_COMPLETED`` also ``media_update``, after
``PROCESSING_FAILED`` also ``processing_error``. Anything else is dropped and counted by
reason (a repeat of an event already forwarded too, and an event of a run that already
ended, ``fencing``); nothing here raises on bad input.
No I/O: the server emits what it returns.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from progress_sdk import defaults as d
from progress_sdk.contract import check_event
from progress_sdk.event_types import PROCESSING_COMPLETED, PROCESSING_FAILED, PROCESSING_STARTED

from .fencing import RunFence
from .stats import RelayStats

__all__ = ["EventRouter", "RepeatFilter", "Routed", "progress_update", "user_room"]

try:  # orjson (the sim and relay extras install it) parses an event ~3x faster.
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

# Filenames of media in flight, from PROCESSING_STARTED, for media_update and
# processing_error (the terminal events do not carry it). Bounded: a media whose start
# was evicted just gets no filename.
MAX_REMEMBERED_FILENAMES = 10_000

_OPTIONAL = (("seq", "seq"), ("source", "source"), ("run_id", "runId"))

# The last seq of this many (source, media_id) pairs, least recently seen first out
# (~150 bytes each). A publisher resends the unconfirmed tail of a batch after a
# connection reset, and those copies come within seconds.
MAX_REMEMBERED_SEQUENCES = 100_000


class RepeatFilter:
    """Spots events already seen: a ``seq`` not above the last one of its (``source``,
    ``media_id``). By the contract (rule 6) seq only rises on the channel, so what does
    not is a publisher's resend after a connection reset (identical bytes), or a
    producer breaking the rule; either way the UI must not get it twice. Events without
    ``source``/``seq`` (other producers) are never repeats."""

    def __init__(self, capacity: int = MAX_REMEMBERED_SEQUENCES) -> None:
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._capacity = capacity

    def is_repeat(self, obj: dict[str, Any]) -> bool:
        """True when ``obj`` was seen already; otherwise remember it."""
        seq, source = obj.get("seq"), obj.get("source")
        if not isinstance(seq, int) or not isinstance(source, str):
            return False
        key = (source, obj["media_id"])
        last = self._last.get(key)
        if last is not None and seq <= last:
            return True
        self._last[key] = seq
        self._last.move_to_end(key)
        if len(self._last) > self._capacity:
            self._last.popitem(last=False)
        return False


def user_room(user_id: str) -> str:
    """The private room of a user. Prefixed so no user id can name a socket's own room
    (Socket.IO puts every socket in a room named by its sid)."""
    return f"user:{user_id}"


def progress_update(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``progress_update`` payload of a valid wire event."""
    payload = {
        "mediaId": obj["media_id"],
        "userId": obj["user_id"],
        "event": obj["event"],
        "message": obj.get("message", ""),
        "data": obj.get("data", {}),
        "timestamp": obj.get("timestamp"),
    }
    for wire, camel in _OPTIONAL:
        value = obj.get(wire)
        if value is not None:
            payload[camel] = value
    return payload


@dataclass(frozen=True)
class Routed:
    """What to emit for one event: to ``room``, each (socket event, payload) in order."""

    user_id: str
    event: dict[str, Any]
    """The decoded wire event (snake_case)."""
    emits: tuple[tuple[str, dict[str, Any]], ...]

    @property
    def room(self) -> str:
        """The user's private room."""
        return user_room(self.user_id)


class EventRouter:
    """Decode, check and shape channel messages; counts drops in ``stats``."""

    def __init__(self, stats: RelayStats) -> None:
        self.stats = stats
        self._filenames: OrderedDict[str, str] = OrderedDict()
        self._repeats = RepeatFilter()
        self._fence = RunFence()

    def route(self, raw: bytes | str) -> Routed | None:
        """The emits for one message, or ``None`` when it is dropped (and counted)."""
        if len(raw) > d.MAX_EVENT_BYTES:
            # Over the contract's limit: not parsed at all (a huge message would cost
            # every relay node the time to read it).
            self.stats.drop("too_large")
            return None
        try:
            obj = _loads(raw)
        except (ValueError, RecursionError):
            self.stats.drop("invalid_json")
            return None
        if not isinstance(obj, dict):
            self.stats.drop("invalid_json")
            return None
        # The ids first: an event nobody can be routed to is the product relay's silent
        # drop, counted under its own name.
        user_id, media_id = obj.get("user_id"), obj.get("media_id")
        if not isinstance(user_id, str) or not user_id.strip():
            self.stats.drop("missing_user_id")
            return None
        if not isinstance(media_id, str) or not media_id.strip():
            self.stats.drop("missing_media_id")
            return None
        event, problems = check_event(obj)
        if problems or event is None:
            self.stats.drop("schema")
            return None
        if self._repeats.is_repeat(obj):
            self.stats.drop("repeat")
            return None
        if self._fence.ended(obj):
            self.stats.drop("after_terminal")
            return None
        return Routed(user_id, obj, self._emits(event, obj))

    def _emits(self, event: str, obj: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
        update = progress_update(obj)
        media_id: str = obj["media_id"]
        data: dict[str, Any] = obj.get("data") or {}
        if event == PROCESSING_STARTED:
            filename = data.get("filename")
            if isinstance(filename, str):
                self._remember(media_id, filename)
            return (("progress_update", update),)
        if event == PROCESSING_COMPLETED:
            media = {
                "id": media_id,
                "mediaId": media_id,
                "userId": obj["user_id"],
                "filename": self._filenames.pop(media_id, None),
                "status": "COMPLETED",
                "runId": obj.get("run_id"),
            }
            return (("progress_update", update), ("media_update", media))
        if event == PROCESSING_FAILED:
            error = {
                "mediaId": media_id,
                "filename": self._filenames.pop(media_id, None),
                "error": data.get("error_message") or obj.get("message", ""),
            }
            return (("progress_update", update), ("processing_error", error))
        return (("progress_update", update),)

    def _remember(self, media_id: str, filename: str) -> None:
        names = self._filenames
        names[media_id] = filename
        names.move_to_end(media_id)
        if len(names) > MAX_REMEMBERED_FILENAMES:
            names.popitem(last=False)
