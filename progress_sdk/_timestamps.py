"""The contract's reading of an ISO 8601 timestamp, shared by the rules, their fast
path and the pydantic models."""

from __future__ import annotations

from datetime import datetime


def parse_timestamp(value: str) -> datetime | None:
    """Parse an ISO 8601 timestamp (Python 3.10 does not take a trailing ``Z``)."""
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
