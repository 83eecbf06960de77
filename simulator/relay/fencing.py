"""One ending per run: nothing of a run goes out after its terminal event.

By the contract (rule 4) a run, (``media_id``, ``run_id``), ends with exactly one
``PROCESSING_COMPLETED`` or ``PROCESSING_FAILED`` and nothing after it. Two ends can still
reach the channel: the sweeper fails a media whose worker fell silent, and the worker,
alive after all, goes on reporting and completes. The first end wins: it is what the
snapshot holds (a terminal snapshot refuses later writes) and what every socket showed;
anything later of that run would contradict it on the screen (a "failed" panel that
moves again, then a ``media_update`` saying completed). So ``RunFence`` remembers the
ended runs and the relay drops their later events, counted under ``after_terminal``.

A ``PROCESSING_STARTED`` of an ended run opens it again, as the contract's validator
reads it: a re-analysis of the media (events without ``run_id`` all belong to one run per
media, so that is the only way to tell a new one).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from progress_sdk.event_types import MEDIA_TERMINAL_NAMES, PROCESSING_STARTED

__all__ = ["MAX_ENDED_RUNS", "TERMINAL_EVENTS", "RunFence"]

TERMINAL_EVENTS = MEDIA_TERMINAL_NAMES

# Ended runs remembered, least recently ended or touched first out (~200 bytes each: the
# key tuple, its two strings and the dict slot). A late event comes seconds to minutes
# after the end (a worker whose step outlasted the sweeper's patience), and a run
# forgotten by then only loses the fence, as before it existed.
MAX_ENDED_RUNS = 100_000


class RunFence:
    """Decides whether an event belongs to a run that already ended (see module doc).

    ``ended`` costs ~0.2 µs per event (one tuple and a dict lookup; measured on the
    2-core test machine, against ~140 µs of relay CPU per event, docs/relay.md)."""

    def __init__(self, capacity: int = MAX_ENDED_RUNS) -> None:
        self._ended: OrderedDict[tuple[str, str | None], str] = OrderedDict()
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._ended)

    def ended(self, obj: dict[str, Any]) -> bool:
        """True when ``obj`` (a valid wire event) comes after its run's end and must not
        go out; otherwise note what it changes (an end, a new start)."""
        run_id = obj.get("run_id")
        key = (obj["media_id"], run_id if isinstance(run_id, str) else None)
        event = obj["event"]
        ended = self._ended
        if key in ended:
            if event == PROCESSING_STARTED:
                del ended[key]  # a re-analysis: the run is open again
                return False
            ended.move_to_end(key)
            return True
        if event in TERMINAL_EVENTS:
            ended[key] = event
            if len(ended) > self._capacity:
                ended.popitem(last=False)
        return False
