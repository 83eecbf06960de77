"""The publisher's side of shard channels and of partly failed batches, without Redis:
what it hands the transport, and what it sends again."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from progress_sdk import ProgressPublisher
from progress_sdk.sharding import channel_for
from progress_sdk.transport import Delivery


class ScriptedTransport:
    """Records each call; answers with the scripted deliveries, then with success."""

    description = "scripted://"

    def __init__(self, *script: Any) -> None:
        self.calls: list[tuple[list[bytes], list[bytes] | None]] = []
        self.script = list(script)
        self.gate = threading.Event()  # the first call waits for it
        self.gate.set()
        self.entered = threading.Event()

    def publish(self, payloads: list[bytes], extra: object = (),
                channels: Sequence[bytes] | None = None) -> Delivery:
        if not self.calls:
            self.entered.set()
            self.gate.wait(10)
        self.calls.append((list(payloads), None if channels is None else list(channels)))
        if self.script:
            return self.script.pop(0)(len(payloads))  # type: ignore[no-any-return]
        return Delivery(published=len(payloads), receivers=len(payloads))

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass

    def after_fork_in_child(self) -> None:
        pass


def _event(media: str, i: int) -> dict[str, Any]:
    return {"media_id": media, "user_id": "u", "event": "AUDIO_EXTRACTION_START",
            "message": f"e{i}", "data": {"model_name": "SIGLIP-LSTM-V4"}}


def _messages(payloads: list[bytes]) -> list[str]:
    return [json.loads(p)["message"] for p in payloads]


def test_each_payload_goes_with_its_medias_shard_channel():
    """shards=3: the transport gets, for every payload, the channel of its media."""
    transport = ScriptedTransport()
    with ProgressPublisher(channel="ch", shards=3, transport=transport) as publisher:
        for i, media in enumerate(["a7c3d210", "d0e5f6a8", "9b2f0c1e", "a7c3d210"]):
            publisher.emit(_event(media, i))
        assert publisher.flush(5)
    payloads = [p for call in transport.calls for p in call[0]]
    channels = [c for call in transport.calls for c in call[1] or []]
    assert [channel_for("ch", 3, json.loads(p)["media_id"]).encode() for p in payloads] \
        == channels == [b"ch:0", b"ch:1", b"ch:2", b"ch:0"]


def test_one_shard_passes_no_channels():
    """The default hands the transport no channel list (its own channel is used)."""
    transport = ScriptedTransport()
    with ProgressPublisher(channel="ch", transport=transport) as publisher:
        publisher.emit(_event("m", 0))
        assert publisher.flush(5)
    assert transport.calls[0][1] is None


def _held(transport: ScriptedTransport, publisher: ProgressPublisher, n: int) -> None:
    """Emit n events so that events 1..n-1 form the second batch: the first batch
    (event 0) is held in the transport until they are all accepted."""
    transport.gate.clear()
    publisher.emit(_event("m", 0))
    assert transport.entered.wait(10), "the sender never took the first event"
    for i in range(1, n):
        publisher.emit(_event("m", i))
    transport.gate.set()


def _success(n: int) -> Delivery:
    return Delivery(published=n, receivers=n)


def test_events_left_over_mid_batch_are_sent_again_alone_and_in_order():
    """A batch whose 1st and 3rd events were not sent (their master failed) gets exactly
    those two again, in order; the others are settled and not repeated."""
    def first_and_third_not_sent(n: int) -> Delivery:
        assert n == 4
        return Delivery(published=n - 2, not_sent=2, resend=True, receivers=n - 2,
                        error="ConnectionError: reset", unsent=(0, 2))

    transport = ScriptedTransport(_success, first_and_third_not_sent)
    publisher = ProgressPublisher(channel="ch", transport=transport)
    _held(transport, publisher, 5)
    assert publisher.flush(10)
    publisher.close()
    sent = [_messages(call[0]) for call in transport.calls]
    assert sent == [["e0"], ["e1", "e2", "e3", "e4"], ["e1", "e3"]]
    stats = publisher.stats()
    assert stats.published == 5 and stats.dropped == {}


def test_left_over_events_of_unknown_fate_are_counted_not_resent():
    """Left-over events after a reply timed out are counted as delivery_unknown."""
    def second_timed_out(n: int) -> Delivery:
        return Delivery(published=n - 1, not_sent=1, resend=False, receivers=n - 1,
                        error="TimeoutError", unsent=(0,))

    transport = ScriptedTransport(_success, second_timed_out)
    publisher = ProgressPublisher(channel="ch", transport=transport)
    _held(transport, publisher, 3)
    assert publisher.flush(10)
    publisher.close()
    stats = publisher.stats()
    assert stats.dropped == {"delivery_unknown": 1} and len(transport.calls) == 2
    assert stats.published == 2
