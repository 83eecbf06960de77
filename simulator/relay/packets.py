"""The relay's Socket.IO packet class: JSON payloads only, encoded with orjson.

Everything the relay emits comes from ``json``/``orjson`` decoding, so it never holds
binary attachments; python-socketio's default packet walks each payload looking for
them (a recursive scan of ``data`` per emit) and encodes with the standard ``json``.
Skipping the scan and encoding with orjson is a measured share of the relay's CPU per
event (docs/relay.md, Load). Python-socketio takes a ``Packet`` subclass as its
``serializer`` for exactly this.
"""

from __future__ import annotations

import json
from typing import Any

import socketio.packet

__all__ = ["JsonPacket"]

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]


class _OrjsonCodec:
    """The two functions python-socketio calls on its ``json`` module."""

    @staticmethod
    def dumps(value: Any, **options: Any) -> str:
        # orjson's output is already compact, as socketio asks with separators=(",", ":").
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | bytes, **options: Any) -> Any:
        return orjson.loads(text)


class JsonPacket(socketio.packet.Packet):  # type: ignore[misc]
    """A Socket.IO packet whose payload is plain JSON (no binary attachments)."""

    uses_binary_events = False
    json = _OrjsonCodec if orjson is not None else json
