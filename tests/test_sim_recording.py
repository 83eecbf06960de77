"""Tests for simulator.recording: the NDJSON recording format, reading and replaying."""

from __future__ import annotations

import io
import json
import threading

import fakeredis
import pytest

from simulator.recording import Recorder, RecordingError, read_recording, replay


def test_round_trip_keeps_events_raw_messages_and_order() -> None:
    """What the recorder writes reads back as the same payloads, in order, with times."""
    times = iter([0.0, 0.5, 1.25, 2.0])
    buffer = io.StringIO()
    recorder = Recorder(buffer, "chan", clock=lambda: next(times))
    payloads = [b'{"media_id":"m","event":"PROCESSING_STARTED","data":{}}', b"not json \xff"]
    recorder.write(payloads[0])
    recorder.write(payloads[1])
    header, *lines = buffer.getvalue().splitlines()
    assert json.loads(header)["progress_sim_recording"] == 1
    assert json.loads(lines[0])["event"]["event"] == "PROCESSING_STARTED"
    entries = list(read_recording(io.StringIO(buffer.getvalue())))
    assert [e.payload for e in entries] == payloads
    assert [e.t for e in entries] == [0.5, 1.25]
    assert entries[0].channel == "chan"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('{"t": 0, "event": {}}\n\n{oops\n', 3, "not a JSON document"),
        ('[1, 2]\n', 1, "JSON object"),
        ('{"t": -1, "event": {}}\n', 1, '"t"'),
        ('{"t": "soon", "event": {}}\n', 1, '"t"'),
        ('{"t": 2, "event": {}}\n{"t": 1, "event": {}}\n', 2, "back in time"),
        ('{"t": 0}\n', 1, '"event" object or a "raw" string'),
        ('{"t": 0, "event": {}, "raw": "x"}\n', 1, "not both"),
        ('{"t": 0, "channel": 5, "event": {}}\n', 1, '"channel"'),
        ('{"progress_sim_recording": 9}\n', 1, "format 9"),
        ('{"t": 0, "event": {}}\n{"progress_sim_recording": 1}\n', 2, "header"),
    ],
)
def test_malformed_lines_are_refused_with_their_number(text: str, line: int, words: str) -> None:
    """Every malformed line is reported as 'line N: what is wrong'."""
    with pytest.raises(RecordingError) as info:
        list(read_recording(io.StringIO(text)))
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert words in str(info.value)


def test_header_is_optional() -> None:
    """A hand-written file without a header reads fine."""
    (entry,) = read_recording(io.StringIO('{"t": 0.1, "event": {"a": 1}}\n'))
    assert entry.payload == b'{"a":1}'


def collect(sub: object, count: int) -> list[int]:
    got: list[int] = []
    for _ in range(100):
        message = sub.get_message(timeout=0.05)  # type: ignore[attr-defined]
        if message is not None:
            got.append(json.loads(message["data"])["n"])
        if len(got) == count:
            break
    return got


class FakeTime(threading.Event):
    """replay()'s clock and stop event: waiting advances the clock, nothing sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0.0
        return False


class TimedClient:
    """A client whose pipelines note the (fake) time each PUBLISH went out at."""

    def __init__(self, client: fakeredis.FakeRedis, time_: FakeTime) -> None:
        self.client, self.time = client, time_
        self.sent_at: list[float] = []

    def pipeline(self, transaction: bool = False) -> object:
        pipe = self.client.pipeline(transaction=transaction)
        publish = pipe.publish

        def timed(channel: str, payload: bytes) -> object:
            self.sent_at.append(self.time.now)
            return publish(channel, payload)

        pipe.publish = timed  # type: ignore[method-assign]
        return pipe


@pytest.mark.parametrize("speed", [0, 4])
def test_replay_publishes_in_order_with_timing(speed: float) -> None:
    """replay() publishes every entry, in order, spaced by t / speed (0: no waiting); on
    a fake clock, so a busy machine cannot change what is checked."""
    server = fakeredis.FakeServer()
    sub = fakeredis.FakeRedis(server=server).pubsub(ignore_subscribe_messages=True)
    sub.subscribe("c")
    text = "".join(f'{{"t": {i * 0.1}, "event": {{"n": {i}}}}}\n' for i in range(5))
    entries = list(read_recording(io.StringIO(text)))
    fake = FakeTime()
    client = TimedClient(fakeredis.FakeRedis(server=server), fake)
    assert replay(client, "c", entries, speed=speed, stop=fake, clock=fake.clock) == 5  # type: ignore[arg-type]
    due = [i * 0.1 / speed if speed else 0.0 for i in range(5)]
    assert all(sent >= at - 1e-9 for sent, at in zip(client.sent_at, due, strict=True))
    # Each one goes out within one wait step (0.1 s of the fake clock) of its time.
    assert all(sent < at + 0.1 for sent, at in zip(client.sent_at, due, strict=True))
    assert collect(sub, 5) == [0, 1, 2, 3, 4]


def test_replay_honours_speed_and_stop() -> None:
    """With speed 1 a stop() before the last entry is due leaves it unpublished."""
    server = fakeredis.FakeServer()
    entries = list(read_recording(io.StringIO('{"t": 0, "event": {}}\n{"t": 30, "event": {}}\n')))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert replay(fakeredis.FakeRedis(server=server), "c", entries, speed=1, stop=stop) == 1
