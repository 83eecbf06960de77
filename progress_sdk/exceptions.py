"""Exceptions raised by progress_sdk.

Every error the SDK raises derives from one base class::

    ProgressSDKError
    ├── InvalidEventError      (also a ValueError) an event breaks the v1 contract
    ├── ConfigurationError     (also a ValueError) a publisher setting is unusable
    ├── TrackingError          (also a RuntimeError) the tracking API used out of order
    ├── PublisherClosedError   emit() after close()
    └── RedisUnavailableError  an explicit connectivity check failed

Delivery problems (Redis down, slow, refusing) never raise into job code: they are
counted in ``ProgressPublisher.stats()`` and logged once per outage.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProgressSDKError(Exception):
    """Base class of every error raised by progress_sdk."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: which field, which rule, and a sentence saying what to do."""

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.rule}]"


class InvalidEventError(ProgressSDKError, ValueError):
    """An event breaks the v1 wire contract; ``problems`` lists each broken rule."""

    def __init__(self, problems: list[Problem], *, event_type: str | None = None) -> None:
        self.problems = problems
        self.event_type = event_type
        what = f"invalid {event_type} event" if event_type else "invalid progress event"
        lines = "; ".join(str(p) for p in problems)
        super().__init__(f"{what}: {lines}")


class ConfigurationError(ProgressSDKError, ValueError):
    """A publisher or CLI setting cannot be used (bad URL, bad size, bad interval)."""


class TrackingError(ProgressSDKError, RuntimeError):
    """The tracking API was used out of order (e.g. progress after a model completed)."""


class PublisherClosedError(ProgressSDKError):
    """emit() was called after the publisher was closed."""


class RedisUnavailableError(ProgressSDKError):
    """An explicit check (``ProgressPublisher.check_connection``) could not reach Redis."""
