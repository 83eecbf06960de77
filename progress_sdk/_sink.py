"""The internal interface between the tracking API and whatever publishes its events.

``tracking.MediaRun`` builds events that are valid by construction and hands them to an
``EventSink``; ``ProgressPublisher`` is one (it buffers and sends), and
``testing.CapturingPublisher`` is another (it records synchronously). Neither side
reaches into the other's private state, and ``tracking`` imports no publisher.
"""

from __future__ import annotations

from typing import Any, Protocol

from .failures import ErrorMessages


class EventSink(Protocol):
    """Where the tracking API puts the events it builds."""

    strict: bool
    """Raise on bad progress data (True) or repair, count and log it once (False)."""
    error_messages: ErrorMessages
    """The text users read for an exception type (``progress_sdk.failures``)."""

    def count_forgiven(self, kind: str) -> int:
        """Count one repair of bad progress data; returns the kind's new total."""

    def accept(self, fields: dict[str, Any]) -> None:
        """Take one event's wire fields, already validated and without an envelope.

        The sink owns ``fields`` from now on (the caller builds a fresh dict per event).
        Never does network I/O; raises ``PublisherClosedError`` after ``close()``, and
        ``InvalidEventError`` for fields that cannot be serialised (which the tracking
        API's checks rule out).
        """

    def run_ended(self) -> None:
        """A media run has just accepted its terminal event: wait, briefly and bounded,
        for the run's events to be delivered (see ``ProgressPublisher.run_ended``)."""
