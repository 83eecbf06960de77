"""Test helpers: capture what job code emits and assert on it, validator included.

``CapturingPublisher`` is a ``ProgressPublisher`` over a ``CapturingTransport``: it
records every event as it went out on the wire, envelope included, before the call that
emitted it returns, and nothing coalesced, so a test sees exactly what the job emitted::

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
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from .contract import LifecycleValidator, Report
from .failures import ErrorMessages
from .publisher import ProgressPublisher
from .transport import Command, Delivery

__all__ = ["CapturedEvents", "CapturingPublisher", "CapturingTransport", "progress_events"]


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

    def append_wire(self, wire: bytes) -> None:
        """Add one event as its wire bytes (what ``CapturingTransport`` does)."""
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


class CapturingTransport:
    """A ``Transport`` that keeps what the sender hands it, in order, and confirms it.

    Like httpx's ``MockTransport``: give it to a real publisher
    (``ProgressPublisher(transport=CapturingTransport())``) to test delivery itself
    (batches, coalescing, flush and close) without Redis. ``handler``, when given, decides
    each batch's ``Delivery`` instead (a Redis that refuses or fails); payloads are
    recorded in ``sent`` only as far as that delivery published them.
    """

    description = "memory://"

    def __init__(self, handler: Callable[[list[bytes]], Delivery] | None = None) -> None:
        self.events = CapturedEvents()
        self.batches = 0
        self._handler = handler

    @property
    def sent(self) -> list[bytes]:
        """Every payload published so far, as bytes."""
        return self.events.raw

    def publish(
        self,
        payloads: list[bytes],
        extra: Sequence[Command] = (),
        channels: Sequence[bytes] | None = None,
    ) -> Delivery:
        """Record ``payloads`` (the sender's thread); ``extra`` commands are ignored."""
        self.batches += 1
        if self._handler is None:
            delivery = Delivery(published=len(payloads), receivers=len(payloads))
        else:
            delivery = self._handler(payloads)
        for payload in payloads[: delivery.published]:
            self.events.append_wire(payload)
        return delivery

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None

    def after_fork_in_child(self) -> None:
        return None


class CapturingPublisher(ProgressPublisher):
    """A ``ProgressPublisher`` whose events end in ``events`` instead of Redis.

    It is the real publisher over a ``CapturingTransport``: validation, the tracking API,
    the buffer and the sender thread, ``seq``, ``source`` and ``timestamp`` are the
    production ones. Each accepted event is flushed before ``emit()`` (or the run's
    call) returns, so ``events`` holds it at once and nothing is coalesced. ``strict``
    is on by default, so bad progress data that production forgives (and counts in
    ``stats().forgiven``) fails the test at the call that sent it; pass ``strict=False``
    to test what production does with it.
    """

    def __init__(
        self,
        channel: str = "media-progress-events",
        *,
        source: str = "capturing-publisher",
        strict: bool = True,
        error_messages: ErrorMessages | None = None,
    ) -> None:
        self.transport = CapturingTransport()
        super().__init__(
            channel=channel,
            source=source,
            strict=strict,
            error_messages=error_messages,
            min_progress_interval=0,
            snapshots=False,
            transport=self.transport,
        )

    @property
    def events(self) -> CapturedEvents:
        """What was published, decoded, in order."""
        return self.transport.events

    def accept(self, fields: dict[str, Any]) -> None:
        """Accept one event as the real publisher does, then wait until it is recorded
        (the ``EventSink`` side of the tracking API; ``emit()`` validates, then calls
        this). Not from a signal handler that interrupted ``emit()``: then the event is
        recorded by the next flush."""
        super().accept(fields)
        self.flush()


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
