"""Tests for simulator.pumping: the rules by which a subscription's pump stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from simulator.pumping import Polled, pump_messages


def receiving(items: Iterable[bytes | str | Polled]) -> Callable[[float], bytes | str | Polled]:
    """A ``receive`` that returns ``items`` in turn, then stays quiet."""
    pending = list(items)

    def receive(wait: float) -> bytes | str | Polled:
        return pending.pop(0) if pending else Polled.QUIET

    return receive


def test_count_stops_after_that_many_kept_messages_and_str_arrives_as_bytes() -> None:
    """Messages the handler turns down do not count; a str payload is handed over encoded."""
    seen: list[bytes] = []

    def handle(payload: bytes) -> bool:
        seen.append(payload)
        return payload != b"skip"

    kept = pump_messages(receiving([b"a", b"skip", "b", b"c"]), handle, None, 2, None, None,
                         lambda: 0.1)
    assert (kept, seen) == (2, [b"a", b"skip", b"b"])


def test_idle_is_asked_after_a_quiet_poll_only() -> None:
    """Something that is not a message (a confirmation) is passed over without asking idle."""
    asked: list[int] = []

    def idle() -> bool:
        asked.append(1)
        return True

    kept = pump_messages(receiving([Polled.OTHER, b"a", Polled.QUIET, b"late"]),
                         lambda payload: True, None, None, None, idle, lambda: 0.1)
    assert (kept, len(asked)) == (1, 1)


def test_stop_and_timeout_end_the_pump_and_cap_the_wait() -> None:
    """A set stop ends it before receiving; a timeout caps each wait at what is left."""
    stop = threading.Event()
    stop.set()
    assert pump_messages(receiving([b"a"]), lambda payload: True, stop, None, None, None,
                         lambda: 0.1) == 0
    waits: list[float] = []

    def receive(wait: float) -> Polled:
        waits.append(wait)
        time.sleep(wait)
        return Polled.QUIET

    assert pump_messages(receive, lambda payload: True, None, None, 0.05, None,
                         lambda: 0.1) == 0
    assert 0 < waits[0] <= 0.05 and all(0 <= wait <= 0.05 for wait in waits), waits
