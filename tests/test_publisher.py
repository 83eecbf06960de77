"""ProgressPublisher's front and sender, with an in-process transport the test controls.

Delivery to a real Redis server is covered in test_publisher_redis.py; here the
transport can be held shut or made to refuse, so buffering, coalescing, throttling and
overflow are checked deterministically.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from progress_sdk import (
    ConfigurationError,
    EventType,
    InvalidEventError,
    ProgressEvent,
    ProgressPublisher,
    PublisherClosedError,
    RedisUnavailableError,
)
from progress_sdk.contract import validate_lines
from progress_sdk.transport import Activity, ConnectFailed, Delivery


class FakeTransport:
    """Records payloads; can be held (publish blocks) or made to refuse connections."""

    description = "fake://"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.open = threading.Event()
        self.open.set()
        self.up = True
        self.entered = threading.Event()

    def publish(self, payloads: list[bytes], extra: object = ()) -> Delivery:
        self.entered.set()
        self.open.wait(10)
        if not self.up:
            raise ConnectFailed("ConnectionError: refused")
        self.sent.extend(payloads)
        return Delivery(published=len(payloads), receivers=len(payloads))

    def check(self) -> None:
        if not self.up:
            raise ConnectFailed("ConnectionError: refused")

    def close(self) -> None:
        pass

    def after_fork_in_child(self) -> None:
        pass

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.sent]


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def publisher(transport: FakeTransport) -> Iterator[ProgressPublisher]:
    pub = ProgressPublisher(channel="unit", transport=transport, min_progress_interval=0)
    yield pub
    transport.open.set()
    transport.up = True
    pub.close(2)


def lifecycle(media: str = "m1", i: int = 0, model: str = "SIGLIP-LSTM-V4") -> dict[str, Any]:
    return {
        "media_id": media,
        "user_id": "u1",
        "event": "AUDIO_EXTRACTION_START",
        "message": f"step {i}",
        "data": {"model_name": model, "details": {"i": i}},
    }


def progress(
    done: int,
    total: int = 100,
    media: str = "m1",
    model: str = "SIGLIP-LSTM-V4",
    event: str = "FRAME_ANALYSIS_PROGRESS",
) -> dict[str, Any]:
    return {
        "media_id": media,
        "user_id": "u1",
        "event": event,
        "message": f"{done}/{total}",
        "data": {"model_name": model, "progress": done, "total": total},
    }


def hold_sender(publisher: ProgressPublisher, transport: FakeTransport) -> None:
    """Make the sender block inside publish() with one event, so later ones wait."""
    transport.open.clear()
    publisher.emit(lifecycle("blocker"))
    assert transport.entered.wait(5)


# -- validation at the call site ---------------------------------------------------


def test_emit_rejects_an_invalid_event_naming_field_and_rule(publisher):
    """A contract violation raises at emit(), naming the field and the rule."""
    bad = progress(150, 100)
    with pytest.raises(InvalidEventError) as info:
        publisher.emit(bad)
    assert "data.progress" in str(info.value) and "bounds" in str(info.value)
    assert publisher.stats().accepted == 0


def test_emit_refuses_envelope_fields_the_publisher_owns(publisher):
    """seq, source, timestamp and schema_version are set by the publisher, not the caller."""
    event = {**lifecycle(), "seq": 7}
    with pytest.raises(InvalidEventError, match="seq: is set by the publisher"):
        publisher.emit(event)


def test_emit_rejects_what_is_not_an_event(publisher):
    """Passing a string or list gives a clear type error."""
    with pytest.raises(InvalidEventError, match="takes a ProgressEvent or a dict"):
        publisher.emit("PROCESSING_STARTED")  # type: ignore[arg-type]


def test_emit_rejects_data_that_is_not_json(publisher):
    """A non-JSON value in details is refused at the call site."""
    event = lifecycle()
    event["data"]["details"] = {"frames": {1, 2}}
    with pytest.raises(InvalidEventError, match="JSON-serialisable"):
        publisher.emit(event)


def test_emit_rejects_an_event_over_64_kib(publisher):
    """Free-form details that would make the event exceed 64 KiB are refused."""
    event = lifecycle()
    event["data"]["details"] = {"blob": "x" * 70_000}
    with pytest.raises(InvalidEventError, match="max_size"):
        publisher.emit(event)


def nested_list(depth: int) -> list[Any]:
    """[[[...]]], ``depth`` levels deep."""
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("x" * 1_000_000, "max_size"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (object(), "json"),
        (nested_list(5000), "depth"),
    ],
    ids=["1MB-string", "inf", "nan", "object", "nested-5000"],
)
def test_emit_refuses_unknown_top_level_keys_the_contract_forbids(
    publisher, transport, value, rule
):
    """An unknown top-level key is checked like details: refused at the call, nothing sent."""
    event = {**lifecycle(), "extra": value}
    del event["data"]["details"]  # no other free-form JSON that would get it measured
    with pytest.raises(InvalidEventError, match=rf"\[{rule}\]"):
        publisher.emit(event)
    assert publisher.stats().accepted == 0
    assert publisher.flush(5)
    assert transport.sent == []


def test_emit_refuses_details_nested_5000_deep(publisher):
    """Deep details raise InvalidEventError naming data.details, not a bare RecursionError."""
    event = lifecycle()
    event["data"]["details"] = {"tree": nested_list(5000)}
    with pytest.raises(InvalidEventError) as info:
        publisher.emit(event)
    assert [(p.field, p.rule) for p in info.value.problems] == [("data.details", "depth")]


def test_accepted_free_json_goes_out_as_strict_json(publisher, transport):
    """Unknown keys that pass the checks are published as JSON any parser reads."""
    publisher.emit({**lifecycle(), "extra": {"depth": nested_list(63), "ratio": 0.5}})
    assert publisher.flush(5)
    (payload,) = transport.sent
    event = json.loads(payload, parse_constant=lambda name: pytest.fail(f"{name} sent"))
    assert event["extra"]["ratio"] == 0.5


def test_a_rejected_event_does_not_disturb_accepted_ones(publisher, transport):
    """Events accepted before and after a bad one are all delivered, numbered without gaps."""
    publisher.emit(lifecycle(i=0))
    with pytest.raises(InvalidEventError):
        publisher.emit({**lifecycle(i=1), "user_id": ""})
    publisher.emit(lifecycle(i=2))
    assert publisher.flush(5)
    events = transport.events()
    assert [e["message"] for e in events] == ["step 0", "step 2"]
    assert [e["seq"] for e in events] == [1, 2]


def test_emit_accepts_a_progress_event_model(publisher, transport):
    """A ProgressEvent is serialised with the envelope the publisher adds."""
    publisher.emit(
        ProgressEvent(
            media_id="m1",
            user_id="u1",
            event=EventType.PROCESSING_STARTED,
            message="Started",
            data={"filename": "a.mp4"},
        )
    )
    assert publisher.flush(5)
    (event,) = transport.events()
    assert event["event"] == "PROCESSING_STARTED" and event["data"] == {"filename": "a.mp4"}
    assert event["schema_version"] == 1 and event["seq"] == 1
    assert event["source"] == publisher.source
    assert event["timestamp"].endswith("Z")


# -- coalescing, throttling, order -------------------------------------------------------


def test_waiting_progress_is_replaced_by_the_newest_without_a_gap(publisher, transport):
    """Progress values of one model that pile up behind a busy sender collapse to the
    latest, and the numbering shows no gap for them."""
    hold_sender(publisher, transport)
    for done in range(1, 101):
        publisher.emit(progress(done))
    transport.open.set()
    assert publisher.flush(5)
    mine = [e for e in transport.events() if e["media_id"] == "m1"]
    assert [e["data"]["progress"] for e in mine] == [100]
    assert [e["seq"] for e in mine] == [1]
    assert publisher.stats().coalesced == 99


def test_lifecycle_events_keep_their_place_among_progress(publisher, transport):
    """A progress value is not moved across a lifecycle event of its model."""
    hold_sender(publisher, transport)
    publisher.emit(progress(10))
    publisher.emit(lifecycle(i=1))
    publisher.emit(progress(20))
    publisher.emit(progress(30))
    transport.open.set()
    assert publisher.flush(5)
    mine = [e for e in transport.events() if e["media_id"] == "m1"]
    assert [(e["event"], e["data"].get("progress")) for e in mine] == [
        ("FRAME_ANALYSIS_PROGRESS", 10),
        ("AUDIO_EXTRACTION_START", None),
        ("FRAME_ANALYSIS_PROGRESS", 30),
    ]


def test_progress_of_other_models_and_types_is_not_merged(publisher, transport):
    """Coalescing is per (media, run, model, event type)."""
    hold_sender(publisher, transport)
    publisher.emit(progress(1, model="A"))
    publisher.emit(progress(1, model="B"))
    publisher.emit(progress(1, model="A", event="VISUALIZATION_GENERATION_PROGRESS"))
    publisher.emit(progress(2, model="A"))
    transport.open.set()
    assert publisher.flush(5)
    got = [
        (e["data"]["model_name"], e["event"][:5], e["data"]["progress"])
        for e in transport.events()
        if e["media_id"] == "m1"
    ]
    assert got == [("A", "FRAME", 1), ("B", "FRAME", 1), ("A", "VISUA", 1), ("A", "FRAME", 2)]


def test_min_interval_delivers_at_most_one_update_per_interval_and_the_latest(transport):
    """Within the per-model interval at most one value goes out at once; the latest value
    is always delivered (flush() sends a held one at once)."""
    with ProgressPublisher(transport=transport, min_progress_interval=60.0) as pub:
        pub.emit(progress(1))
        assert pub.flush(5)
        for done in range(2, 51):
            pub.emit(progress(done))
        pub.emit(progress(7, model="other"))
        assert pub.stats().queued == 2  # one held value per model, none sent yet for SIGLIP
        assert pub.flush(5)
        assert [(e["data"]["model_name"], e["data"]["progress"]) for e in transport.events()] == [
            ("SIGLIP-LSTM-V4", 1),
            ("other", 7),
            ("SIGLIP-LSTM-V4", 50),
        ]
        assert pub.stats().coalesced == 48


def test_held_progress_goes_out_before_the_models_next_lifecycle_event(transport):
    """A throttled value is released ahead of its model's terminal event, in order."""
    with ProgressPublisher(transport=transport, min_progress_interval=60.0) as pub:
        pub.emit(progress(1))
        assert pub.flush(5)
        pub.emit(progress(99))
        assert pub.stats().queued == 1  # held by the throttle
        pub.emit(
            {**lifecycle(), "event": "ANALYSIS_COMPLETED", "data": {"model_name": "SIGLIP-LSTM-V4"}}
        )
        assert pub.flush(5)
        assert [(e["event"], e["data"].get("progress")) for e in transport.events()] == [
            ("FRAME_ANALYSIS_PROGRESS", 1),
            ("FRAME_ANALYSIS_PROGRESS", 99),
            ("ANALYSIS_COMPLETED", None),
        ]


def test_stats_count_the_wakeups_of_an_idle_sender_only(transport):
    """stats().sender_wakeups: no event wakes a sender busy sending, an event that finds
    it waiting does, and values that replace a held one do not."""
    with ProgressPublisher(transport=transport, min_progress_interval=60.0) as pub:
        hold_sender(pub, transport)
        for i in range(50):
            pub.emit(lifecycle(i=i))
        assert pub.stats().sender_wakeups == 0
        transport.open.set()
        assert pub.flush(5)
        # The sender goes idle a moment after flush() returns (it needs the lock back):
        # an event emitted before that finds it busy. Nearly always the first does not.
        for i in range(1000):
            pub.emit(lifecycle(i=i))
            assert pub.flush(5)
            if pub.stats().sender_wakeups:
                break
        woken = pub.stats().sender_wakeups
        assert woken > 0
        for done in range(1, 1001):
            pub.emit(progress(done, 1000))
        # At most the first value (sent at once) and the first hold (a new deadline).
        assert pub.stats().sender_wakeups - woken <= 2
        assert pub.stats().coalesced >= 998


def test_the_throttle_releases_on_its_own_timer(transport):
    """Without flush(), the held latest value is sent once the interval passes."""
    with ProgressPublisher(transport=transport, min_progress_interval=0.05) as pub:
        pub.emit(progress(1))
        assert pub.flush(5)
        pub.emit(progress(2))
        deadline = threading.Event()
        for _ in range(100):
            if len(transport.sent) == 2:
                break
            deadline.wait(0.02)
        assert [e["data"]["progress"] for e in transport.events()] == [1, 2]


# -- overflow and outages ----------------------------------------------------------------


def test_full_buffer_gives_way_progress_first_then_oldest_lifecycle_and_gaps_show(transport):
    """When the buffer is full, the oldest waiting progress gives way first (to progress
    and lifecycle events alike), then the oldest lifecycle event of the lowest rank; a
    media's terminal event is kept; consumers see every loss as a seq gap before it."""
    # buffer_size counts the events waiting, not the batch the sender holds (here the
    # blocker, in flight).
    pub = ProgressPublisher(transport=transport, buffer_size=4, min_progress_interval=0)
    pub.emit({**lifecycle(i=-1), "event": "PROCESSING_STARTED", "data": {}})  # seq 1
    assert pub.flush(5)
    transport.entered.clear()
    hold_sender(pub, transport)
    try:
        pub.emit(lifecycle(i=0))  # seq 2: evicted by lifecycle 4
        pub.emit(progress(5, model="A"))  # seq 3: evicted by C
        pub.emit(lifecycle(i=1))  # seq 4: evicted by the terminal event
        pub.emit(progress(5, model="B"))  # seq 5: evicted by lifecycle 2
        pub.emit(progress(5, model="C"))  # seq 6: evicted by lifecycle 3
        pub.emit(lifecycle(i=2))  # seq 7
        pub.emit(lifecycle(i=3))  # seq 8
        pub.emit(lifecycle(i=4))  # seq 9: no progress left, the oldest step gives way
        pub.emit({**lifecycle(i=5), "event": "PROCESSING_COMPLETED", "data": {}})  # seq 10
        assert pub.stats().dropped == {"evicted": 5}
        transport.open.set()
        assert pub.flush(10)
        events = [e for e in transport.events() if e["media_id"] == "m1"]
        assert [(e["message"], e["seq"]) for e in events] == [
            ("step -1", 1),
            ("step 2", 7),
            ("step 3", 8),
            ("step 4", 9),
            ("step 5", 10),
        ]
        report = validate_lines([json.dumps(e).encode() for e in events])
        assert sum(f.count for f in report.lost) == 5
    finally:
        pub.close(1)


def test_refused_connections_buffer_events_and_retry(transport, caplog):
    """While Redis refuses, events wait; the outage is logged once; then all arrive."""
    transport.up = False
    with (
        caplog.at_level(logging.WARNING, logger="progress_sdk"),
        ProgressPublisher(transport=transport, min_progress_interval=0) as pub,
    ):
        for i in range(50):
            pub.emit(lifecycle(i=i))
        assert not pub.flush(0.3)
        stats = pub.stats()
        assert stats.queued == 50 and not stats.connected and "refused" in (stats.last_error or "")
        transport.up = True
        assert pub.flush(10)
        assert [e["seq"] for e in transport.events()] == list(range(1, 51))
        assert pub.stats().reconnects == 1
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1


def test_check_connection_raises_one_clear_error(transport):
    """check_connection() turns a refusal into RedisUnavailableError."""
    transport.up = False
    with (
        ProgressPublisher(transport=transport) as pub,
        pytest.raises(RedisUnavailableError, match="cannot reach Redis"),
    ):
        pub.check_connection()


# -- lifecycle of the publisher ----------------------------------------------------------


def test_emit_after_close_raises_and_close_is_idempotent(transport):
    """close() can be called twice; emitting afterwards is a programming error."""
    pub = ProgressPublisher(transport=transport)
    pub.emit(lifecycle())
    assert pub.close(2) is True
    assert pub.close(2) is True
    with pytest.raises(PublisherClosedError):
        pub.emit(lifecycle())
    assert len(transport.sent) == 1


def test_flush_with_nothing_pending_is_immediate(transport):
    """flush() on an idle publisher returns True without starting anything."""
    with ProgressPublisher(transport=transport) as pub:
        assert pub.flush(0) is True


def test_seq_is_per_media(publisher, transport):
    """Each media has its own sequence starting at 1."""
    for media in ("a", "b", "a", "b", "a"):
        publisher.emit(lifecycle(media))
    assert publisher.flush(5)
    assert [(e["media_id"], e["seq"]) for e in transport.events()] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("b", 2),
        ("a", 3),
    ]


# -- configuration -------------------------------------------------------------------------


def test_configuration_comes_from_arguments_then_environment_then_defaults(monkeypatch):
    """Explicit arguments win over REDIS_URL / MEDIA_PROGRESS_CHANNEL_NAME, which win
    over the defaults."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MEDIA_PROGRESS_CHANNEL_NAME", raising=False)
    default = ProgressPublisher()
    assert default.channel == "media-progress-events"
    assert "127.0.0.1:6379" in repr(default)
    monkeypatch.setenv("REDIS_URL", "redis://envhost:6390/2")
    monkeypatch.setenv("MEDIA_PROGRESS_CHANNEL_NAME", "env-channel")
    from_env = ProgressPublisher()
    assert from_env.channel == "env-channel" and "envhost:6390" in repr(from_env)
    explicit = ProgressPublisher("redis://arghost:6391/0", "arg-channel")
    assert explicit.channel == "arg-channel" and "arghost:6391" in repr(explicit)
    for pub in (default, from_env, explicit):
        pub.close(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buffer_size": 0}, "buffer_size must be an integer >= 1"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1"),
        ({"min_progress_interval": -0.1}, "min_progress_interval must be a number >= 0"),
        ({"channel": ""}, "channel must be a non-empty string"),
        ({"source": " "}, "source must be a non-empty string"),
        ({"redis": "http://example.com"}, "unusable Redis URL"),
        ({"redis": 42}, "redis= must be a URL string"),
    ],
)
def test_bad_settings_raise_configuration_error(kwargs, message):
    """Each unusable setting is named, with what to do instead."""
    with pytest.raises(ConfigurationError, match=message):
        ProgressPublisher(**kwargs)


def test_passwords_never_appear_in_repr_stats_or_logs(caplog):
    """A password in the URL is masked in repr, last_error and every log line."""
    url = "redis://user:s3cret-pw@127.0.0.1:1/0"
    with caplog.at_level(logging.DEBUG, logger="progress_sdk"):
        pub = ProgressPublisher(url, "pw-test")
        assert "s3cret-pw" not in repr(pub)
        pub.emit(lifecycle())
        assert not pub.flush(0.5)
        stats = pub.stats()
        pub.close(0.5)
    assert "s3cret-pw" not in str(stats)
    assert caplog.records and all("s3cret-pw" not in r.getMessage() for r in caplog.records)
    assert "***" in repr(pub)


# -- the end of a media run ----------------------------------------------------------------


def test_the_end_of_a_media_run_waits_until_its_events_are_sent(transport):
    """Leaving the media block returns only once its events are out, so a worker that
    exits with os._exit right after the job loses nothing."""
    with ProgressPublisher(transport=transport) as pub:
        with pub.media("m-end", "u1") as run, run.model("A") as model:
            model.complete("REAL", 0.8)
        assert [e["event"] for e in transport.events()][-1] == "PROCESSING_COMPLETED"


class FlowingActivity(Activity):
    """An ``Activity`` whose bytes move without a break once ``flowing`` is set: ``moved``
    reads as the present. Ticking ``progressed()`` from the sender thread every 10 ms
    instead made a starved thread (two CPU hogs on two cores: load 8-16) look like a
    stall: a gap of more than STALL_NOTICE between two ticks, and the run's end stopped
    waiting."""

    __slots__ = ("flowing",)

    def __init__(self) -> None:
        super().__init__()
        self.flowing = False

    @property  # type: ignore[override]
    def moved(self) -> float:
        return time.monotonic() if self.flowing else float(Activity.moved.__get__(self))

    @moved.setter
    def moved(self, value: float) -> None:
        Activity.moved.__set__(self, value)


class SlowTransport(FakeTransport):
    """Reports its progress as RedisTransport does: each publish call connects for
    ``connecting`` s, then exchanges for ``exchanging`` s with its bytes moving all along
    (``flowing``, from its first exchange on), or none at all while ``frozen`` (a frozen
    Redis: written, never answered)."""

    def __init__(self, connecting: float = 0.0, exchanging: float = 0.0,
                 flowing: bool = False) -> None:
        super().__init__()
        self.activity = FlowingActivity()
        self.connecting, self.exchanging, self.flowing = connecting, exchanging, flowing
        self.frozen = threading.Event()

    def publish(self, payloads: list[bytes], extra: object = ()) -> Delivery:
        time.sleep(self.connecting)
        self.activity.connected()
        while self.frozen.is_set():
            time.sleep(0.01)
        # Never cleared: the few bytecodes between the exchange's end and the sender
        # leaving the call would be a window for a starved thread to look stalled again.
        self.activity.flowing = self.flowing
        time.sleep(self.exchanging)  # the exchange's length, not a synchronisation
        return super().publish(payloads, extra)


def terminal_events(transport: FakeTransport) -> int:
    ends = ("PROCESSING_COMPLETED", "PROCESSING_FAILED")
    return sum(e["event"] in ends for e in transport.events())


@pytest.mark.parametrize(
    ("connecting", "exchanging"),
    [(0.3, 0.0), (0.0, 0.3)],
    ids=["a slow connect", "a long exchange whose bytes keep moving"],
)
def test_the_end_of_a_run_waits_for_a_slow_publish_call_that_is_not_stalled(
    connecting, exchanging
):
    """A publish call that takes six times the stall notice is not a stall while it is
    connecting (bounded by the connect timeout) or while its bytes keep moving: the run's
    end waits for it, so a process that ends with os._exit right after loses nothing."""
    transport = SlowTransport(connecting, exchanging, flowing=True)
    with ProgressPublisher(transport=transport, min_progress_interval=0) as pub:
        with pub.media("m-slow", "u1") as run, run.model("A") as model:
            model.complete("REAL", 0.8)
        assert terminal_events(transport) == 1


def test_a_connection_that_moves_no_bytes_costs_only_the_first_run_end_a_moment():
    """Connected, but nothing written or received for STALL_NOTICE: the run's end stops
    waiting (with an hour of finish_flush_timeout: a wait the stall does not cut short
    hangs the test), and the runs after it do not wait for the frozen connection either.
    How long each end takes is measured by benchmarks/run_end_bench.py (about 50 ms for
    the first, under 0.1 ms for the next five), not asserted here."""
    transport = SlowTransport()
    pub = ProgressPublisher(transport=transport, min_progress_interval=0,
                            finish_flush_timeout=3600)
    transport.frozen.set()
    for i in range(6):
        pub.media(f"m{i}", "u1").start().finish()
    assert terminal_events(transport) == 0
    transport.frozen.clear()
    assert pub.close(5)
    assert terminal_events(transport) == 6


def test_the_end_of_a_run_does_not_wait_while_redis_is_known_down(transport):
    """During a known outage the run's end costs nothing: events stay buffered."""
    transport.up = False
    # An hour: an end that waited for delivery would hang the test (its cost, ~0.1 ms,
    # is measured by benchmarks/run_end_bench.py).
    with ProgressPublisher(transport=transport, finish_flush_timeout=3600) as pub:
        run = pub.media("m-down", "u1").start()
        for _ in range(200):  # until the sender has failed once
            if pub.stats().last_error:
                break
            threading.Event().wait(0.01)
        run.finish()
        assert pub.stats().queued == 2
        transport.up = True
        assert pub.flush(10)


def test_an_unexpected_sender_error_loses_one_batch_not_the_sender(transport, caplog):
    """A bug surfacing in delivery costs the batch it hit (counted), never later events."""
    failures = [RuntimeError("boom")]
    real_publish = transport.publish

    def flaky(payloads: list[bytes], extra: object = ()) -> int:
        if failures:
            raise failures.pop()
        return real_publish(payloads)

    transport.publish = flaky  # type: ignore[method-assign]
    with (
        caplog.at_level(logging.ERROR, logger="progress_sdk"),
        ProgressPublisher(transport=transport) as pub,
    ):
        pub.emit(lifecycle(i=0))
        assert pub.flush(5)
        pub.emit(lifecycle(i=1))
        assert pub.flush(5)
        stats = pub.stats()
    assert stats.dropped == {"sender_error": 1} and stats.published == 1
    assert [e["message"] for e in transport.events()] == ["step 1"]
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


def test_data_changed_after_emit_does_not_change_what_goes_out(publisher, transport):
    """An event is serialised when emit() accepts it: job code mutating nested details
    afterwards (even into something non-JSON) changes nothing, and nothing is lost."""
    hold_sender(publisher, transport)
    details: dict[str, Any] = {"ok": 1}
    event = lifecycle(i=1)
    event["data"]["details"] = details
    publisher.emit(lifecycle(i=0))
    publisher.emit(event)
    publisher.emit(lifecycle(i=2))
    details["bad"] = {1, 2}  # a set: not JSON
    transport.open.set()
    assert publisher.flush(5)
    mine = [e for e in transport.events() if e["media_id"] == "m1"]
    assert [(e["message"], e["seq"]) for e in mine] == [("step 0", 1), ("step 1", 2), ("step 2", 3)]
    assert mine[1]["data"]["details"] == {"ok": 1}
    assert publisher.stats().dropped == {}


def test_a_lone_surrogate_goes_out_as_a_replacement_character(publisher, transport):
    """Text that cannot be UTF-8 (a lone surrogate) still goes out, as U+FFFD."""
    publisher.emit({**lifecycle(), "message": "file \udcff.mp4"})
    assert publisher.flush(5)
    (raw,) = transport.sent
    raw.decode("utf-8")  # valid UTF-8 on the wire
    assert json.loads(raw)["message"] == "file \ufffd.mp4"


def test_flush_waits_for_its_own_events_not_for_totals_others_move(publisher, transport):
    """Coalescing by another thread settles nothing of this caller's: flush() still waits
    for the events accepted before it."""
    hold_sender(publisher, transport)
    publisher.emit(lifecycle(i=0))
    publisher.emit(progress(1, 200, model="other"))

    def other_thread() -> None:
        for done in range(2, 200):  # each replaces the waiting value: 198 coalesced
            publisher.emit(progress(done, 200, model="other"))

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert publisher.stats().coalesced == 198
    assert publisher.flush(0.3) is False  # nothing of ours has gone out yet
    transport.open.set()
    assert publisher.flush(5) is True
    assert any(e["message"] == "step 0" for e in transport.events())


def test_sequence_counters_are_remembered_least_recently_used_first_out(
    publisher, transport, monkeypatch
):
    """Counters of media not seen for a long while are forgotten (bounded memory); the
    ones in use continue their sequence."""
    from progress_sdk import defaults

    monkeypatch.setattr(defaults, "MAX_REMEMBERED_MEDIA", 2)
    for media in ("a", "b", "a", "c", "b", "a"):
        publisher.emit(lifecycle(media))
        assert publisher.flush(5)
    assert [(e["media_id"], e["seq"]) for e in transport.events()] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("c", 1),
        ("b", 1),
        ("a", 1),
    ]


def test_a_sender_thread_that_dies_is_restarted_by_the_next_event(transport, caplog):
    """Even an error no batch guard catches (here a BaseException from the transport)
    costs only its batch, counted as sender_error; the next emit() starts a new thread
    and delivery goes on; accounting stays exact."""
    calls = []
    real_publish = transport.publish

    def dies_once(payloads: list[bytes], *args: object) -> Delivery:
        calls.append(len(payloads))
        if len(calls) == 1:
            raise SystemExit("a bug that ends the thread")
        return real_publish(payloads)

    transport.publish = dies_once  # type: ignore[method-assign]
    with (
        caplog.at_level(logging.ERROR, logger="progress_sdk"),
        ProgressPublisher(transport=transport, min_progress_interval=0) as pub,
    ):
        pub.emit(lifecycle(i=0))
        deadline = time.monotonic() + 5
        while pub.stats().dropped.get("sender_error") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pub.stats().dropped == {"sender_error": 1}
        pub.emit(lifecycle(i=1))
        assert pub.flush(5)
        stats = pub.stats()
        assert [e["message"] for e in transport.events()] == ["step 1"]
        assert stats.accepted == stats.published + stats.dropped_total + stats.queued == 2
    assert "restarts it" in caplog.text


@pytest.mark.parametrize("finish", ["flush", "close"])
def test_what_waits_behind_a_sender_that_died_goes_out_on_flush_or_close(transport, finish):
    """A sender thread that died with events queued is restarted by flush() and close(),
    not only by the next emit(): nothing stays queued behind it."""
    dying, queued = threading.Event(), threading.Event()
    real_publish = transport.publish
    senders: list[threading.Thread] = []

    def dies_once(payloads: list[bytes], *args: object) -> Delivery:
        if not dying.is_set():
            senders.append(threading.current_thread())
            dying.set()
            assert queued.wait(30)  # the next events are accepted meanwhile
            raise SystemExit("a bug that ends the thread")
        return real_publish(payloads)

    transport.publish = dies_once  # type: ignore[method-assign]
    pub = ProgressPublisher(transport=transport, min_progress_interval=0, batch_size=1)
    pub.emit(lifecycle(i=0))
    assert dying.wait(5)
    sender = senders[0]
    pub.emit(lifecycle(i=1))
    pub.emit(lifecycle(i=2))
    queued.set()
    sender.join(30)  # the thread has ended
    assert not sender.is_alive() and pub.stats().dropped == {"sender_error": 1}
    if finish == "flush":
        assert pub.flush(5)
    pub.close(5)
    stats = pub.stats()
    assert [e["message"] for e in transport.events()] == ["step 1", "step 2"]
    assert (stats.published, stats.dropped, stats.queued) == (2, {"sender_error": 1}, 0)


def test_accounting_is_exact_at_every_moment_close_included(transport):
    """accepted == published + coalesced + dropped + queued whenever stats() is read:
    while threads emit, while the sender is mid-batch, and after a close() that gave up
    with a batch still in flight (it stays counted as queued, then as closed)."""
    pub = ProgressPublisher(transport=transport, buffer_size=50, min_progress_interval=0.01)

    def balanced() -> None:
        s = pub.stats()
        assert s.accepted == s.published + s.coalesced + s.dropped_total + s.queued, s

    def work(t: int) -> None:
        for i in range(200):
            pub.emit(progress(i, total=200, model=f"M{t}") if i % 3 else lifecycle(f"m{t}", i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        balanced()
    for thread in threads:
        thread.join()
    balanced()
    transport.open.clear()  # the next batch hangs in flight
    pub.emit(lifecycle("last", 0))
    assert transport.entered.wait(5)
    pub.emit(lifecycle("last", 1))
    assert pub.close(0.3) is False
    balanced()
    transport.open.set()  # the hung batch completes after close() gave up
    deadline = time.monotonic() + 5
    while pub.stats().queued and time.monotonic() < deadline:
        time.sleep(0.01)
    balanced()
    assert pub.stats().queued == 0
