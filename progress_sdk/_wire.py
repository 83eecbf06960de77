"""The bytes of an event on the wire: its fields as compact JSON plus the envelope.

The envelope (``schema_version``, ``seq``, ``source``, ``timestamp``) is appended as text
to the serialised fields: cheaper than building a second dict and serialising it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
# One encoder for every event: json.dumps with keyword arguments builds a new one per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class TimestampFormatter:
    """ISO 8601 UTC with microseconds; the seconds part is formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = int((ts - second) * 1_000_000)
        return f"{self._prefix}.{min(micros, 999_999):06d}Z"


class WireEncoder:
    """Serialises events of one ``source``. Not thread-safe: one per sending thread."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._source_json = json.dumps(source)
        self._format_ts = TimestampFormatter()

    def encode(self, fields: dict[str, Any], seq: int, ts: float) -> bytes:
        """The event's bytes. Raises TypeError/ValueError for data that is not JSON."""
        body = _ENCODE(fields)
        text = (
            f'{body[:-1]},"schema_version":1,"seq":{seq},"source":{self._source_json},'
            f'"timestamp":"{self._format_ts(ts)}"}}'
        )
        try:
            return text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (say, from a badly decoded filename) is no UTF-8, and
            # strict parsers (orjson) refuse even its \u escape: send U+FFFD instead.
            return _SURROGATE.sub("\ufffd", text).encode()
