"""Reading NDJSON: lines of a binary stream in bounded memory, and a whole stream's report."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

from .. import defaults as d
from ._report import Report
from ._validator import LifecycleValidator

__all__ = ["read_lines", "validate_lines"]


def read_lines(
    stream: IO[bytes], max_bytes: int = d.MAX_EVENT_BYTES, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """Yield the lines of a binary stream (without their newline) in bounded memory.

    A line longer than ``max_bytes`` is yielded cut to ``max_bytes + 1`` bytes (enough
    for the validator to report it as too large without parsing it) and the rest of it
    is skipped, so a multi-gigabyte line without a newline cannot exhaust memory. The
    stream is read in chunks: a readline() call per line would cost a tenth of the
    validator's time.
    """
    limit = max_bytes + 1
    pending = b""  # the start of a line whose newline has not been read yet
    skipping = False  # the current line was too long: it was yielded cut, skip its rest
    while chunk := stream.read(chunk_size):
        parts = chunk.split(b"\n")
        rest = parts.pop()
        for part in parts:
            if skipping:
                skipping = False
                continue
            line = pending + part if pending else part
            pending = b""
            yield line if len(line) <= limit else line[:limit]
        if not skipping and rest:
            pending += rest
            if len(pending) > limit:
                yield pending[:limit]
                pending, skipping = b"", True
    if pending:
        yield pending


def validate_lines(
    lines: Iterable[bytes | str],
    strict: bool = False,
    *,
    allow_incomplete: bool = False,
) -> Report:
    """Validate NDJSON lines (blank lines are skipped); findings name 1-based line numbers."""
    validator = LifecycleValidator(strict, allow_incomplete=allow_incomplete)
    feed = validator.feed
    for number, line in enumerate(lines, start=1):
        if line and not line.isspace():
            feed(line, number)
    return validator.finish()
