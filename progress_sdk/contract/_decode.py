"""Decoding one wire event for the validator: JSON as the relay reads it, and digests.

orjson is used when installed (it parses a typical event three times faster, which is
most of the validator's time: docs/benchmarks.md); otherwise the standard library's C
scanner, called directly.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from typing import Any, Literal

from ..exceptions import ConfigurationError

__all__ = [
    "DECODE_ERRORS",
    "JsonDecoder",
    "brief",
    "decoder_named",
    "digest_of",
    "loads",
    "size",
    "stdlib_loads",
]

JsonDecoder = Literal["auto", "orjson", "stdlib"]


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON does not, and neither does the relay's
    # JSON.parse, so an event holding them never reaches the UI.
    raise ValueError(f"{name} is not valid JSON")


# The standard library's C scanner, called directly: json.loads(bytes) would also sniff
# the encoding (the wire is UTF-8 by contract) and go through two wrapper functions,
# which costs about a third of its time on a typical event.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scan_once: Any = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type, unused-ignore]
_JSON_SPACE = " \t\n\r"


def stdlib_loads(raw: bytes | str) -> Any:
    """``json.loads`` for one UTF-8 event, with json's own error for anything unusual."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:  # leading whitespace, or no JSON value at all
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _DECODER.decode(text)  # raises "Extra data"
    return obj


try:
    # Both reject what JSON does not allow (NaN, Infinity, invalid UTF-8, a BOM). They
    # differ only at the edges: orjson also rejects lone surrogate escapes and reads
    # integers beyond 64 bits as floats.
    import orjson

    _orjson_loads: Any = orjson.loads
    loads: Any = _orjson_loads

    def _canonical(obj: dict[str, Any]) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)

except ImportError:  # pragma: no cover - depends on the environment
    _orjson_loads = None
    loads = stdlib_loads

    def _canonical(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decoder_named(name: JsonDecoder) -> Callable[[bytes | str], Any]:
    """The decoder a validator's ``json_decoder`` names: ``auto`` (orjson when installed,
    else the standard library), ``orjson`` or ``stdlib``."""
    if name == "auto":
        return loads  # type: ignore[no-any-return]
    if name == "stdlib":
        return stdlib_loads
    if name == "orjson":
        if _orjson_loads is None:
            raise ConfigurationError("json_decoder='orjson' needs orjson: pip install orjson")
        return _orjson_loads  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"json_decoder must be 'auto', 'orjson' or 'stdlib', got {name!r}"
    )


# orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError comes
# from the standard library on deeply nested arrays.
DECODE_ERRORS = (ValueError, RecursionError)


def digest_of(obj: dict[str, Any]) -> int:
    """A digest of a decoded event's content (keys sorted); 0 when it cannot be made."""
    try:
        return hash(_canonical(obj))
    except (TypeError, ValueError, RecursionError):  # orjson's JSONEncodeError is a TypeError
        return 0


def size(raw: bytes | str) -> int:
    """The UTF-8 size of a line, in bytes."""
    return len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)


def brief(exc: BaseException) -> str:
    """What a decoding error says, in a few words."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    return str(exc)[:200]
