"""The two NDJSON stream formats the simulator reads, told apart by their first line.

* **Plain events**: one event (the message as published) per line. ``run --json`` and
  ``listen --json`` write it, and so do other tools (``redis-cli``, a relay's log).
* **Recordings** (``record``): a header line ``{"progress_sim_recording": 1, ...}`` and
  then ``{"t": ..., "channel": ..., "event": {...}}`` or ``{..., "raw": "..."}`` per line
  (``simulator.recording``). A file without its header is still a recording when its
  first line has ``t`` and ``event`` or ``raw``, and no ``event`` type string.

``validate`` and ``replay`` take either, detected, never flagged. This module imports only
the standard library, so ``validate`` stays fast to start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["HEADER_KEY", "MAX_LINE_BYTES", "PLAIN", "RECORDING", "detect_format", "event_lines"]

HEADER_KEY = "progress_sim_recording"
# The longest line worth reading whole. A recording wraps an event of up to
# MAX_EVENT_BYTES with "t" and "channel", and writes it ASCII-escaped: a character of
# two to four UTF-8 bytes becomes a six-byte \uXXXX escape (twelve for a surrogate pair).
MAX_LINE_BYTES = 6 * 64 * 1024 + 1024
PLAIN = "events"
RECORDING = "recording"


def _looks_like_entry(obj: Any) -> bool:
    # A plain event's "event" is its type (a string); a recording entry's is an object.
    if not isinstance(obj, dict):
        return False
    if HEADER_KEY in obj:
        return True
    return "t" in obj and (isinstance(obj.get("event"), dict) or "raw" in obj)


def detect_format(first_line: bytes | str) -> str:
    """``RECORDING`` or ``PLAIN`` for a stream whose first non-blank line is this one."""
    try:
        obj = json.loads(first_line)
    except ValueError:
        return PLAIN
    return RECORDING if _looks_like_entry(obj) else PLAIN


def _recorded_message(line: bytes) -> bytes:
    """The message a recording line holds, as published; blank for the header.

    A line that is not a recording entry is passed on as it is, so the validator reports
    it at its own line number.
    """
    try:
        obj = json.loads(line)
    except ValueError:
        return line
    if not isinstance(obj, dict):
        return line
    if HEADER_KEY in obj:
        return b""
    if isinstance(obj.get("event"), dict):
        return json.dumps(obj["event"], separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogateescape"
        )
    raw = obj.get("raw")
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return line


def event_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The messages of a stream of either format, one per input line (line numbers kept).

    Plain events go through untouched; a recording's header becomes a blank line (which
    the validator skips) and each entry the message it recorded.
    """
    iterator = iter(lines)
    for line in iterator:
        if not line.strip():
            yield line
            continue
        if detect_format(line) == PLAIN:
            yield line
            yield from iterator
            return
        yield _recorded_message(line)
        break
    for line in iterator:
        yield _recorded_message(line) if line.strip() else line
