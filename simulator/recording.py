"""The recording file: a channel captured as NDJSON, and playing it back.

Format (one JSON object per line, UTF-8; the header is shown folded here)::

    {"progress_sim_recording": 1, "channel": "media-progress-events",
     "started": "2026-11-26T05:00:00.000000Z"}
    {"t": 0.000812, "channel": "media-progress-events", "event": {...the message as published...}}
    {"t": 0.104377, "channel": "media-progress-events", "raw": "not JSON"}

* The first line is a header (optional when reading, so hand-written files work).
* ``t`` is seconds since recording started when the message arrived, non-decreasing.
* ``event`` is the message, decoded, when it is a JSON document; a message that is not
  JSON is kept as text in ``raw`` (undecodable bytes escaped as lone surrogates).
  Replaying re-serialises ``event`` compactly, so key order and values are kept but not
  the original whitespace.
* ``channel`` is where it was captured; ``replay`` publishes to the channel it is given.

A file that breaks these rules is refused before anything is published, with the line
number of the first problem (``RecordingError``).

``read_stream`` also reads plain event NDJSON (``run --json``, ``listen --json``; the
format is detected by ``simulator.streams``): each line is a message, timed by the
events' ``timestamp`` relative to the first one. ``replay`` re-stamps ``timestamp`` with
the time it publishes, unless told to keep the originals, so latency measured by a
listener is the replay's, not the age of the recording.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import redis

from progress_sdk.events import format_timestamp

from .streams import HEADER_KEY, PLAIN, detect_format

__all__ = [
    "FORMAT_VERSION",
    "Recorded",
    "Recorder",
    "RecordingError",
    "at_rate",
    "read_events",
    "read_recording",
    "read_stream",
    "replay",
]

FORMAT_VERSION = 1


class RecordingError(ValueError):
    """A recording file cannot be replayed; ``line`` is the 1-based line at fault."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True)
class Recorded:
    """One captured message."""

    t: float
    channel: str | None
    payload: bytes
    line: int
    event: dict[str, Any] | None = None
    """The message decoded, when it is a JSON object (re-stamped on replay)."""


class Recorder:
    """Writes a header, then one line per message with its arrival time."""

    def __init__(self, stream: IO[str], channel: str, clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self._channel = channel
        self._clock = clock
        self._t0 = clock()
        self.count = 0
        header = {
            HEADER_KEY: FORMAT_VERSION,
            "channel": channel,
            "started": format_timestamp(time.time()),
        }
        stream.write(json.dumps(header) + "\n")
        stream.flush()

    def write(self, payload: bytes, event: Any = None) -> None:
        """Record one message (``event`` is its decoded form, when already parsed)."""
        t = round(self._clock() - self._t0, 6)
        line: dict[str, Any] = {"t": t, "channel": self._channel}
        if event is None:
            try:
                event = json.loads(payload)
            except ValueError:
                event = None
        if event is None:
            line["raw"] = payload.decode("utf-8", "surrogateescape")
        else:
            line["event"] = event
        # ensure_ascii keeps lone surrogates (from undecodable bytes) writable as UTF-8.
        self._stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.count += 1
        # Each line is flushed so a recording killed by Ctrl-C or SIGTERM is complete.
        self._stream.flush()


def read_stream(stream: IO[str]) -> Iterator[Recorded]:
    """Yield the messages of a recording or of plain event NDJSON (detected)."""
    numbered = enumerate(stream, start=1)
    for number, text in numbered:
        if text.strip():
            lines = itertools.chain([(number, text)], numbered)
            if detect_format(text) == PLAIN:
                yield from read_events(lines)
            else:
                yield from read_recording(lines)
            return


def _timestamp(event: dict[str, Any] | None) -> datetime | None:
    value = event.get("timestamp") if event is not None else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def read_events(lines: Iterable[tuple[int, str]]) -> Iterator[Recorded]:
    """Yield plain NDJSON messages, timed by their ``timestamp`` from the first one.

    A line without a usable timestamp, or one earlier than the line before (events of
    several sources interleave), keeps the time of the line before: order is kept.
    """
    first: datetime | None = None
    last_t = 0.0
    for number, text in lines:
        line = text.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        event = obj if isinstance(obj, dict) else None
        stamp = _timestamp(event)
        if stamp is not None:
            first = first or stamp
            last_t = max(last_t, (stamp - first).total_seconds())
        yield Recorded(last_t, None, line.encode("utf-8", "surrogateescape"), number, event)


def at_rate(entries: list[Recorded], rate: float) -> list[Recorded]:
    """The same messages, spaced evenly at ``rate`` a second."""
    return [dataclasses.replace(e, t=i / rate) for i, e in enumerate(entries)]


def read_recording(stream: IO[str] | Iterable[tuple[int, str]]) -> Iterator[Recorded]:
    """Yield the messages of a recording; raises ``RecordingError`` at the first bad line.

    ``stream`` is a text stream, or (line number, text) pairs.
    """
    last_t = 0.0
    seen_entry = False
    numbered: Iterable[tuple[int, str]] = (
        enumerate(stream, start=1) if hasattr(stream, "read") else stream  # type: ignore[arg-type]
    )
    for number, text in numbered:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise RecordingError(number, f"not a JSON document ({exc})") from None
        if not isinstance(obj, dict):
            raise RecordingError(number, f"expected a JSON object, got {type(obj).__name__}")
        if HEADER_KEY in obj:
            if seen_entry:
                raise RecordingError(number, "a header line in the middle of the recording")
            if obj[HEADER_KEY] != FORMAT_VERSION:
                raise RecordingError(
                    number,
                    f"recording format {obj[HEADER_KEY]!r}; this version reads "
                    f"{FORMAT_VERSION}",
                )
            continue
        seen_entry = True
        t = obj.get("t")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise RecordingError(number, f'"t" must be a number of seconds >= 0, got {t!r}')
        if t < last_t:
            raise RecordingError(
                number, f'"t" goes back in time ({t} after {last_t}); lines must be in order'
            )
        last_t = float(t)
        channel = obj.get("channel")
        if channel is not None and not isinstance(channel, str):
            raise RecordingError(number, f'"channel" must be a string, got {channel!r}')
        if "event" in obj and "raw" in obj:
            raise RecordingError(number, 'give "event" or "raw", not both')
        if "event" in obj:
            payload = json.dumps(obj["event"], separators=(",", ":"), ensure_ascii=False)
        elif isinstance(obj.get("raw"), str):
            payload = obj["raw"]
        else:
            raise RecordingError(number, 'expected an "event" object or a "raw" string')
        event = obj.get("event") if isinstance(obj.get("event"), dict) else None
        yield Recorded(
            float(t), channel, payload.encode("utf-8", "surrogateescape"), number, event
        )


def _restamped(entry: Recorded, now: float) -> bytes:
    """The payload with ``timestamp`` set to ``now``, when the event carries one."""
    if entry.event is None or "timestamp" not in entry.event:
        return entry.payload
    event = {**entry.event, "timestamp": format_timestamp(now)}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape"
    )


def replay(
    client: redis.Redis,
    channel: str,
    entries: list[Recorded],
    *,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    restamp: bool = True,
) -> int:
    """Publish ``entries`` to ``channel`` with their recorded spacing divided by ``speed``
    (0: as fast as possible). ``restamp`` sets each event's ``timestamp`` (where it has
    one) to the time it is published. Returns the number published."""
    stop = stop or threading.Event()
    began = clock()
    published = 0
    i = 0
    while i < len(entries) and not stop.is_set():
        if speed > 0:
            due = began + entries[i].t / speed
            wait = due - clock()
            if wait > 0:
                stop.wait(min(wait, 0.1))
                continue
        # Everything already due goes out in one round trip, in order.
        now = clock()
        pipe = client.pipeline(transaction=False)
        batch = 0
        while i < len(entries) and batch < 1000 and (
            speed == 0 or began + entries[i].t / speed <= now
        ):
            payload = _restamped(entries[i], time.time()) if restamp else entries[i].payload
            pipe.publish(channel, payload)
            i += 1
            batch += 1
        pipe.execute()
        published += batch
    return published
