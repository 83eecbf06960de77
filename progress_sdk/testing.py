"""Test helpers: capture what job code emits and assert on it, validator included.

``CapturingPublisher`` is a ``ProgressPublisher`` that records every event synchronously
in memory, with the envelope it would have on the wire and nothing coalesced, so a test
sees exactly what the job emitted::

    from progress_sdk.testing import CapturingPublisher

    def test_my_job_reports_every_model():
        publisher = CapturingPublisher()
        run_my_job(publisher, media_id="m1", user_id="u1")
        assert publisher.events.types()[0] == "PROCESSING_STARTED"
        publisher.events.assert_valid()      # contract rules 1-6, strict v1 envelope

With pytest, the ``progress_events`` fixture (registered by this package's pytest plugin)
gives a fresh ``CapturingPublisher`` per test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, overload

from ._buffer import SeqNumbers
from ._wire import WireEncoder
from .contract import LifecycleValidator, Report
from .failures import ErrorMessages
from .publisher import ProgressPublisher, PublisherStats
from .transport import ConnectFailed, Delivery

__all__ = ["CapturedEvents", "CapturingPublisher", "progress_events"]


class CapturedEvents(Sequence[dict[str, Any]]):
    """The events a ``CapturingPublisher`` recorded, as decoded wire objects, in order."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._events[index]

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._events)

    def __repr__(self) -> str:
        return f"CapturedEvents({self.types()!r})"

    def _append(self, wire: bytes) -> None:
        self.raw.append(wire)
        self._events.append(json.loads(wire))

    def types(self) -> list[str]:
        """The ``event`` of each captured event, in order."""
        return [e["event"] for e in self._events]

    def of_type(self, event: str) -> list[dict[str, Any]]:
        """The captured events of one type."""
        return [e for e in self._events if e["event"] == str(event)]

    def for_model(self, model_name: str) -> list[dict[str, Any]]:
        """The captured events about one model."""
        return [e for e in self._events if e["data"].get("model_name") == model_name]

    def validate(self, *, strict: bool = True) -> Report:
        """Run the lifecycle validator over the captured events."""
        validator = LifecycleValidator(strict=strict)
        for position, wire in enumerate(self.raw, start=1):
            validator.feed(wire, position)
        return validator.finish()

    def assert_valid(self, *, strict: bool = True, allow_incomplete: bool = False) -> Report:
        """Fail with the validator's report unless the events keep the contract."""
        report = self.validate(strict=strict)
        if report.violations or (report.incomplete and not allow_incomplete) or report.lost:
            hint = "assert_valid(allow_incomplete=True) accepts them"
            raise AssertionError(
                f"captured events break the contract:\n{report.to_text(allow_hint=hint)}"
            )
        return report

    def clear(self) -> None:
        """Forget everything captured so far."""
        self._events.clear()
        self.raw.clear()


class _NoTransport:
    description = "memory"

    def publish(
        self, payloads: list[bytes], extra: object = (), channels: object = None
    ) -> Delivery:
        raise ConnectFailed("CapturingPublisher records events in memory; it has no sender")

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None

    def after_fork_in_child(self) -> None:
        return None


class CapturingPublisher(ProgressPublisher):
    """A ``ProgressPublisher`` that records events in ``events`` instead of sending them.

    Validation, the tracking API, ``seq``, ``source`` and ``timestamp`` behave as in the
    real publisher; delivery is synchronous and nothing is coalesced or dropped.
    ``strict`` is on by default, so bad progress data that production forgives (and
    counts in ``stats().forgiven``) fails the test at the call that sent it; pass
    ``strict=False`` to test what production does with it.
    """

    def __init__(
        self,
        channel: str = "media-progress-events",
        *,
        source: str = "capturing-publisher",
        strict: bool = True,
        error_messages: ErrorMessages | None = None,
    ) -> None:
        super().__init__(
            channel=channel,
            source=source,
            strict=strict,
            error_messages=error_messages,
            _transport=_NoTransport(),
        )
        self.events = CapturedEvents()
        self._capture_lock = threading.Lock()
        self._numbers = SeqNumbers()
        self._recorded = 0
        self._capture_encoder = WireEncoder(self.source)

    def _instance_source(self) -> str:
        # Exactly as given, so tests can compare it: nothing captured here reaches a
        # consumer that a restarted worker's seq numbers could confuse.
        return self._explicit_source or "capturing-publisher"

    def accept(self, fields: dict[str, Any]) -> None:
        """Record one event at once, numbered and with its envelope (the ``EventSink``
        side of the tracking API; ``emit()`` validates, then calls this)."""
        with self._capture_lock:
            # As the real publisher: while close() fails the runs left open, only their
            # events go in; a new run's PROCESSING_STARTED does not.
            self._refuse_if_closing(fields["event"])
            seq = self._numbers.next(fields["media_id"])
            self._recorded += 1
            self.events._append(self._capture_encoder.encode(fields, seq, time.time()))

    def run_ended(self) -> None:
        """Nothing to wait for: every event is recorded when accepted."""

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever pending: True at once."""
        return True

    def stats(self) -> PublisherStats:
        """Every accepted event counts as published."""
        with self._capture_lock:
            count = self._recorded
        return PublisherStats(
            accepted=count,
            published=count,
            coalesced=0,
            dropped={},
            queued=0,
            reconnects=0,
            connected=True,
            last_error=None,
            no_subscribers=0,
            forgiven=dict(super().stats().forgiven),
        )


try:
    import pytest
except ImportError:  # pragma: no cover - job installs without pytest
    pass
else:

    @pytest.fixture
    def progress_events() -> Iterator[CapturingPublisher]:
        """A fresh CapturingPublisher; its ``events`` hold what the code under test emitted."""
        publisher = CapturingPublisher()
        yield publisher
        publisher.close()
