"""A shard channel's reader leaving its node: what the node sent is handed over first."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace
from typing import Any

from simulator.cluster_subscription import _ChannelReader


class SlowPubSub:
    """A subscription whose messages all arrived at once but are read one per poll, as by
    a reader falling behind on a loaded machine."""

    def __init__(self, backlog: int) -> None:
        self.backlog = [f"m{i}".encode() for i in range(backlog)]
        self.started = threading.Event()

    def ssubscribe(self, channel: str) -> None:
        self.channel = channel

    def get_message(self, timeout: float = 0.0) -> dict[str, Any] | None:
        if not self.started.is_set():
            self.started.set()
            return {"type": "ssubscribe"}
        time.sleep(0.002)
        if self.backlog:
            return {"type": "smessage", "data": self.backlog.pop(0)}
        time.sleep(timeout)
        return None

    def close(self) -> None:
        pass


def test_a_reader_dropped_because_its_slot_moved_hands_over_its_backlog_first():
    pubsub = SlowPubSub(200)
    client = SimpleNamespace(pubsub=lambda: pubsub, close=lambda: None,
                             connection_pool=SimpleNamespace(disconnect=lambda: None))
    slots = SimpleNamespace(client=lambda owner, **kwargs: client)
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    reader = _ChannelReader(slots, "ch", ("127.0.0.1", 7000), out)  # type: ignore[arg-type]
    reader.subscribe(timeout=1.0)
    reader.close(drain=True)  # the slot moved while 200 messages waited unread
    got = []
    while not out.empty():
        got.append(out.get())
    assert got == [f"m{i}".encode() for i in range(200)]


def test_a_reader_closed_without_draining_stops_at_once():
    pubsub = SlowPubSub(10_000)
    client = SimpleNamespace(pubsub=lambda: pubsub, close=lambda: None,
                             connection_pool=SimpleNamespace(disconnect=lambda: None))
    slots = SimpleNamespace(client=lambda owner, **kwargs: client)
    reader = _ChannelReader(slots, "ch", ("127.0.0.1", 7000), queue.SimpleQueue())  # type: ignore[arg-type]
    reader.subscribe(timeout=1.0)
    reader.close()
    assert pubsub.backlog  # read one per 2 ms, the 10,000 would take 20 s
