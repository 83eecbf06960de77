"""Snapshots: folding events into a media's current state, and keeping it in Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from snapshot_oracle import fold_each

from progress_sdk import defaults as d
from progress_sdk.exceptions import ConfigurationError
from progress_sdk.snapshot import (
    WRITE_SCRIPT_SHA,
    MediaSnapshot,
    ModelSnapshot,
    SnapshotConfig,
    SnapshotKeys,
    SnapshotTracker,
    apply_event,
    copy_snapshot,
    fold_event,
    media_fields,
    parse_snapshot,
    read_media,
    read_user,
)

SOURCE = "w1:42:ab"


def ev(event: str, seq: int, *, media: str = "m1", source: str = SOURCE, **data: Any) -> dict:
    """A wire event as the publisher sends it."""
    out = {
        "media_id": media, "user_id": "u1", "event": event, "message": event,
        "data": data, "schema_version": 1, "seq": seq, "source": source,
        "timestamp": "2026-11-26T05:00:00.000000Z", "run_id": "r1",
    }  # fmt: skip
    return out


def fold(*events: dict, start: float = 100.0) -> MediaSnapshot:
    """The snapshot after applying ``events`` one second apart."""
    state = None
    for i, event in enumerate(events):
        state = apply_event(state, event, start + i)
    assert state is not None
    return state


def test_processing_started_opens_a_running_snapshot_with_filename_user_and_run() -> None:
    """PROCESSING_STARTED opens a running snapshot that knows the file, user, run and seq."""
    s = fold(ev("PROCESSING_STARTED", 1, filename="clip.mp4"))
    assert (s.status, s.filename, s.user_id, s.run_id) == ("running", "clip.mp4", "u1", "r1")
    assert (s.seq, s.source, dict(s.seqs), s.started_at, s.updated_at) == (
        1, SOURCE, {SOURCE: 1}, 100.0, 100.0,
    )
    assert not s.terminal and s.models == {}


def test_each_model_event_kind_sets_its_row() -> None:
    """Queued, started, progress, phase, completed and failed each leave their mark."""
    s = fold(ev("PROCESSING_STARTED", 1), ev("ANALYSIS_QUEUED", 2, model_name="A"))
    assert s.models["A"].status == "queued"
    s = apply_event(s, ev("ANALYSIS_STARTED", 3, model_name="A"), 110)
    assert s.models["A"].status == "analyzing"
    s = apply_event(s, ev("FRAME_ANALYSIS_PROGRESS", 4, model_name="A", progress=30, total=300,
                          phase="frame_analysis", details={"eta_seconds": 12.5}), 111)
    a = s.models["A"]
    assert (a.status, a.progress, a.total, a.phase, a.eta_seconds) == (
        "analyzing", 30, 300, "frame_analysis", 12.5,
    )
    s = apply_event(s, ev("AUDIO_EXTRACTION_START", 5, model_name="A"), 112)
    assert (s.models["A"].phase, s.models["A"].progress) == ("audio_extraction", 30)
    s = apply_event(s, ev("ANALYSIS_COMPLETED", 6, model_name="A", prediction="FAKE",
                          confidence=0.9), 113)
    a = s.models["A"]
    assert (a.status, a.prediction, a.confidence, a.progress, a.eta_seconds) == (
        "completed", "FAKE", 0.9, 300, None,
    )
    s = apply_event(s, ev("ANALYSIS_STARTED", 7, model_name="B"), 114)
    s = apply_event(s, ev("ANALYSIS_FAILED", 8, model_name="B", error_message="OOM"), 115)
    assert (s.models["B"].status, s.models["B"].error) == ("failed", "OOM")
    assert (s.seq, s.updated_at, s.status) == (8, 115, "running")


def test_media_terminal_events_set_the_media_status() -> None:
    """PROCESSING_COMPLETED completes the media; PROCESSING_FAILED fails it with its error."""
    done = fold(ev("PROCESSING_STARTED", 1), ev("PROCESSING_COMPLETED", 2))
    assert done.status == "completed" and done.terminal and done.error is None
    failed = fold(ev("PROCESSING_STARTED", 1), ev("PROCESSING_FAILED", 2, error_message="bad"))
    assert (failed.status, failed.error) == ("failed", "bad")


def test_apply_event_leaves_the_given_snapshot_unchanged() -> None:
    """apply_event works on a copy; fold_event (the publisher's path) changes in place."""
    before = fold(ev("PROCESSING_STARTED", 1), ev("ANALYSIS_STARTED", 2, model_name="A"))
    kept = copy_snapshot(before)
    after = apply_event(before, ev("ANALYSIS_FAILED", 3, model_name="A", error_message="x"), 9)
    assert before == kept and after.models["A"].status == "failed"
    assert fold_event(before, ev("PROCESSING_COMPLETED", 4), 10) is before
    assert before.status == "completed"


def test_the_read_side_alias_completes_a_model() -> None:
    """ANALYSIS_COMPLETE (other producers) completes the row like ANALYSIS_COMPLETED."""
    s = fold(ev("PROCESSING_STARTED", 1), ev("ANALYSIS_COMPLETE", 2, model_name="A"))
    assert s.models["A"].status == "completed"


def test_a_new_run_after_a_terminal_event_starts_a_fresh_snapshot() -> None:
    """PROCESSING_STARTED after the terminal event (re-analysis) forgets the old rows."""
    s = fold(ev("PROCESSING_STARTED", 1), ev("ANALYSIS_STARTED", 2, model_name="A"),
             ev("PROCESSING_COMPLETED", 3), ev("PROCESSING_STARTED", 4))
    assert s.status == "running" and s.models == {} and s.seq == 4


def test_seq_is_kept_per_source_and_covers_only_what_was_applied() -> None:
    """Two publishers of one media keep a seq each; covers() says what a snapshot holds."""
    s = fold(ev("PROCESSING_STARTED", 1), ev("ANALYSIS_STARTED", 1, model_name="B", source="w2"),
             ev("ANALYSIS_STARTED", 2, model_name="A"))
    assert dict(s.seqs) == {SOURCE: 2, "w2": 1}
    assert s.covers(ev("X", 2)) and not s.covers(ev("X", 3))
    assert s.covers(ev("X", 1, source="w2")) and not s.covers(ev("X", 1, source="w3"))
    assert not s.covers({"media_id": "m1", "event": "X"})  # no seq: cannot tell


def test_malformed_fields_are_ignored_like_the_ui_does() -> None:
    """Wrong types in data leave the row as it was instead of breaking the snapshot."""
    s = fold(ev("PROCESSING_STARTED", 1), ev("FRAME_ANALYSIS_PROGRESS", 2, model_name="A",
                                             progress="5", total=0, phase=3))
    assert s.models["A"] == ModelSnapshot(status="analyzing", updated_at=101.0)
    s = apply_event(s, {"media_id": "m1", "event": "ANALYSIS_STARTED", "data": "x"}, 102)
    assert set(s.models) == {"A"}


def test_hash_fields_round_trip_through_parse_snapshot() -> None:
    """What media_fields writes, parse_snapshot reads back unchanged."""
    s = fold(ev("PROCESSING_STARTED", 1, filename="a.wav"),
             ev("WINDOW_PROCESSING_PROGRESS", 2, model_name="A", progress=3, total=9),
             ev("ANALYSIS_FAILED", 3, model_name="B", error_message="é ✗"))
    assert parse_snapshot("m1", media_fields(s)) == s
    encoded = {k.encode(): v.encode() for k, v in media_fields(s).items()}
    assert parse_snapshot("m1", encoded) == s
    assert parse_snapshot("m1", {}) is None


def test_client_payload_is_camel_case_with_seq() -> None:
    """The progress_snapshot payload is camelCase like progress_update and carries seq."""
    s = fold(ev("PROCESSING_STARTED", 1), ev("ANALYSIS_STARTED", 2, model_name="A"))
    out = s.to_client()
    assert out["mediaId"] == "m1" and out["userId"] == "u1" and out["seq"] == 2
    assert out["seqs"] == {SOURCE: 2} and out["updatedAt"].endswith("Z")
    assert out["models"] == [{
        "modelName": "A", "status": "analyzing", "progress": None, "total": None,
        "phase": None, "prediction": None, "confidence": None, "error": None,
        "etaSeconds": None,
    }]  # fmt: skip


def test_tracker_writes_only_changed_models_and_forgets_finished_media() -> None:
    """A batch's writes carry the touched rows only; a finished media is then dropped."""
    tracker = SnapshotTracker(SnapshotConfig())
    fold_each(tracker, ev("PROCESSING_STARTED", 1), 1.0)
    fold_each(tracker, ev("ANALYSIS_STARTED", 2, model_name="A"), 1.0)
    fold_each(tracker, ev("ANALYSIS_STARTED", 3, model_name="B"), 1.0)
    load, first, *indexes = tracker.take_commands()
    assert load[:2] == ("SCRIPT", "LOAD") and first[0] == "EVALSHA"
    assert [c[0] for c in indexes] == ["ZADD", "ZADD", "PEXPIRE"]
    assert {"model:A", "model:B"} <= set(first)
    fold_each(tracker, ev("FRAME_ANALYSIS_PROGRESS", 4, model_name="B", progress=1, total=2), 2.0)
    light = tracker.take_commands()  # a running media written before: plain commands
    assert [c[0] for c in light] == ["HSET", "ZADD"]  # its expiry was just written
    assert "model:B" in light[0] and "model:A" not in light[0] and "status" not in light[0]
    fold_each(tracker, ev("PROCESSING_FAILED", 5, error_message="x"), 3.0)
    final = tracker.take_commands()
    assert [c[0] for c in final] == ["SCRIPT", "EVALSHA", "ZREM", "ZADD", "PEXPIRE"]
    assert len(tracker) == 0 and tracker.take_commands() == []


def test_a_running_media_s_expiry_is_pushed_back_once_per_refresh_interval() -> None:
    """Not in every batch: every refresh_every seconds (a tenth of the in-flight TTL, at
    most a minute), to the in-flight TTL plus that, so it never expires sooner than the
    in-flight TTL after the last write."""
    config = SnapshotConfig(inflight_ttl=50.0)
    clock = [0.0]
    tracker = SnapshotTracker(config, clock=lambda: clock[0])
    fold_each(tracker, ev("PROCESSING_STARTED", 1), 1.0)
    assert tracker.take_commands()[1][4] == "55000"  # EVALSHA's expiry argument
    written = []
    for seq, now in enumerate([1.0, 4.9, 5.0, 6.0, 9.9, 10.0], start=2):
        clock[0] = now
        event = ev("FRAME_ANALYSIS_PROGRESS", seq, model_name="A", progress=1, total=2)
        fold_each(tracker, event, now)
        expiry = [c for c in tracker.take_commands() if c[0] == "PEXPIRE"]
        if expiry:
            assert expiry == [("PEXPIRE", config.keys.media("m1"), "55000")]
            written.append(now)
    assert written == [5.0, 10.0]
    assert SnapshotConfig().refresh_every == d.SNAPSHOT_EXPIRY_REFRESH_MAX


def test_a_batch_s_running_media_share_one_in_flight_index_write() -> None:
    """One ZADD XX carries the scores of every running media a batch touched."""
    config = SnapshotConfig()
    tracker = SnapshotTracker(config)
    for media in ("a", "b", "c"):
        fold_each(tracker, ev("PROCESSING_STARTED", 1, media=media), 1.0)
    tracker.take_commands()
    for media, now in (("a", 2.0), ("b", 3.0), ("c", 4.5)):
        fold_each(tracker, ev("FRAME_ANALYSIS_PROGRESS", 2, media=media, model_name="A",
                         progress=1, total=2), now)  # fmt: skip
    commands = tracker.take_commands()
    assert [c[0] for c in commands] == ["HSET", "HSET", "HSET", "ZADD"]
    assert commands[-1] == (
        "ZADD", config.keys.inflight, "XX", "2000", "a", "3000", "b", "4500", "c",
    )


def test_a_batch_writes_each_index_once_after_every_hash() -> None:
    """Media started, finished and progressing in one batch: one command per index and
    kind, after the hashes (a reader drops an indexed media whose hash it cannot find)."""
    config = SnapshotConfig()
    keys = config.keys
    tracker = SnapshotTracker(config)
    for media in ("done", "busy"):
        fold_each(tracker, ev("PROCESSING_STARTED", 1, media=media), 1.0)
    tracker.take_commands()
    fold_each(tracker, ev("PROCESSING_COMPLETED", 2, media="done"), 2.0)
    fold_each(tracker, ev("ANALYSIS_STARTED", 2, media="busy", model_name="A"), 2.0)
    for media in ("new1", "new2"):
        fold_each(tracker, ev("PROCESSING_STARTED", 1, media=media), 3.0)
    commands = tracker.take_commands()
    assert [c[0] for c in commands] == [
        "SCRIPT", "EVALSHA", "HSET", "EVALSHA", "EVALSHA", "ZREM", "ZADD", "ZADD", "ZADD",
        "PEXPIRE",
    ]  # fmt: skip
    assert commands[5:9] == [
        ("ZREM", keys.inflight, "done"),
        ("ZADD", keys.inflight, "3000", "new1", "3000", "new2"),
        ("ZADD", keys.inflight, "XX", "2000", "busy"),
        ("ZADD", keys.user("u1"), "2000", "done", "3000", "new1", "3000", "new2"),
    ]


def test_every_write_touches_one_key_so_a_cluster_can_route_it() -> None:
    """Hash, in-flight index and user index are written by separate commands, one key
    each (a Redis Cluster refuses a script whose keys span hash slots)."""
    config = SnapshotConfig()
    tracker = SnapshotTracker(config)
    fold_each(tracker, ev("PROCESSING_STARTED", 1), 1.0)
    _, *commands = tracker.take_commands()
    assert commands[0][:3] == ("EVALSHA", WRITE_SCRIPT_SHA, "1")
    keys = [c[3] if c[0] == "EVALSHA" else c[1] for c in commands]
    user = config.keys.user("u1")
    assert keys == [config.keys.media("m1"), config.keys.inflight, user, user]


def test_tracker_is_bounded() -> None:
    """At most max_media snapshots are remembered, least recently updated first out."""
    config = SnapshotConfig()
    tracker = SnapshotTracker(config, max_media=2)
    for media in ("a", "b", "c"):
        fold_each(tracker, ev("PROCESSING_STARTED", 1, media=media), 1.0)
    written = [c[3] for c in tracker.take_commands() if c[0] == "EVALSHA"]
    assert len(tracker) == 2 and written == [config.keys.media("b"), config.keys.media("c")]


def test_config_refuses_unusable_ttls_and_keys_follow_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TTL must be a positive number; the prefix comes from the argument, then the env."""
    for bad in (0, -1, float("nan"), "5"):
        with pytest.raises(ConfigurationError, match="positive number of seconds"):
            SnapshotConfig(ttl=bad)  # type: ignore[arg-type]
    monkeypatch.setenv(d.ENV_SNAPSHOT_PREFIX, "env:")
    assert SnapshotKeys.from_env().media("m") == "env:media:m"
    assert SnapshotKeys.from_env("x:").user("u") == "x:user:u"
    monkeypatch.delenv(d.ENV_SNAPSHOT_PREFIX)
    keys = SnapshotKeys.from_env()
    assert (keys.inflight, keys.sweeper_lease) == ("progress:inflight", "progress:sweeper")


# -- real Redis -----------------------------------------------------------------------------


@pytest.fixture
def config(redis_url: str) -> SnapshotConfig:
    """Snapshot settings under a prefix no other test uses."""
    return SnapshotConfig(SnapshotKeys(f"test-snap-{uuid.uuid4().hex[:8]}:"), ttl=1.0)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    """A client of the real Redis server."""
    return redis.Redis.from_url(redis_url)


def write(client: redis.Redis, tracker: SnapshotTracker, *events: dict) -> None:
    """Apply ``events`` as one batch and run the commands the tracker makes."""
    now = time.time()
    for event in events:
        fold_each(tracker, event, now)
    for command in tracker.take_commands():
        client.execute_command(*command)


@pytest.mark.redis
def test_redis_holds_the_snapshot_after_every_kind_of_event(
    client: redis.Redis, config: SnapshotConfig
) -> None:
    """After each event written, reading Redis back gives the snapshot folded in memory."""
    tracker = SnapshotTracker(config)
    events = [
        ev("PROCESSING_STARTED", 1, filename="v.mp4"),
        ev("ANALYSIS_QUEUED", 2, model_name="A"),
        ev("ANALYSIS_STARTED", 3, model_name="A"),
        ev("FRAME_ANALYSIS_PROGRESS", 4, model_name="A", progress=5, total=10, phase="f"),
        ev("VISUALIZATION_GENERATION_PROGRESS", 5, model_name="A", progress=1, total=2),
        ev("ANALYSIS_STARTED", 6, model_name="B"),
        ev("AUDIO_EXTRACTION_START", 7, model_name="B"),
        ev("AUDIO_EXTRACTION_COMPLETE", 8, model_name="B"),
        ev("SPECTROGRAM_GENERATION_START", 9, model_name="B"),
        ev("SPECTROGRAM_GENERATION_COMPLETE", 10, model_name="B"),
        ev("WINDOW_PROCESSING_PROGRESS", 11, model_name="B", progress=2, total=4),
        ev("ANALYSIS_COMPLETED", 12, model_name="A", prediction="REAL", confidence=0.7),
        ev("ANALYSIS_FAILED", 13, model_name="B", error_message="OOM"),
    ]
    expected: MediaSnapshot | None = None
    for event in events:
        write(client, tracker, event)
        got = read_media(client, config.keys, "m1")
        assert got is not None
        expected = apply_event(expected, event, got.updated_at)
        seq = event["seq"]
        assert (got.status, got.seq, dict(got.seqs)) == ("running", seq, {SOURCE: seq})
        assert {k: (m.status, m.progress, m.total, m.phase, m.prediction, m.error)
                for k, m in got.models.items()} == {
            k: (m.status, m.progress, m.total, m.phase, m.prediction, m.error)
            for k, m in expected.models.items()
        }  # fmt: skip
    assert client.zscore(config.keys.inflight, "m1") is not None
    assert [s.media_id for s in read_user(client, config.keys, "u1")] == ["m1"]
    write(client, tracker, ev("PROCESSING_COMPLETED", 14))
    final = read_media(client, config.keys, "m1")
    assert final is not None and final.status == "completed" and final.seq == 14
    assert client.zscore(config.keys.inflight, "m1") is None  # no longer in flight
    assert [s.status for s in read_user(client, config.keys, "u1")] == ["completed"]


@pytest.mark.redis
def test_a_finished_snapshot_expires_after_its_ttl_and_leaves_the_user_index(
    client: redis.Redis, config: SnapshotConfig
) -> None:
    """The terminal event sets the TTL; once expired, the user's index forgets the media."""
    tracker = SnapshotTracker(config)
    write(client, tracker, ev("PROCESSING_STARTED", 1), ev("ANALYSIS_STARTED", 2, model_name="A"))
    ttl_running = client.pttl(config.keys.media("m1"))
    assert ttl_running > config.ttl * 1000  # in flight: the long expiry
    write(client, tracker, ev("ANALYSIS_COMPLETED", 3, model_name="A"),
          ev("PROCESSING_COMPLETED", 4))
    assert 0 < client.pttl(config.keys.media("m1")) <= 1000
    deadline = time.monotonic() + 5
    while client.exists(config.keys.media("m1")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_media(client, config.keys, "m1") is None
    assert read_user(client, config.keys, "u1") == []
    assert client.zcard(config.keys.user("u1")) == 0


@pytest.mark.redis
def test_a_write_after_the_terminal_state_is_refused_unless_it_starts_a_new_run(
    client: redis.Redis, config: SnapshotConfig
) -> None:
    """A worker that reports after its media was failed cannot reopen it; a new run can."""
    write(client, SnapshotTracker(config), ev("PROCESSING_STARTED", 1),
          ev("ANALYSIS_STARTED", 2, model_name="A"), ev("PROCESSING_FAILED", 3, error_message="x"))
    late = SnapshotTracker(config)  # another process, e.g. a resumed zombie worker
    write(client, late, ev("FRAME_ANALYSIS_PROGRESS", 9, model_name="A", progress=1, total=2))
    got = read_media(client, config.keys, "m1")
    assert got is not None and got.status == "failed" and got.seq == 3
    write(client, SnapshotTracker(config), ev("PROCESSING_STARTED", 10, filename="again.mp4"))
    again = read_media(client, config.keys, "m1")
    assert again is not None and again.status == "running" and again.models == {}
    assert again.filename == "again.mp4"


@pytest.mark.redis
@pytest.mark.parametrize("fold_by", ["event", "batch"])
def test_a_run_that_ends_and_starts_again_within_one_batch_leaves_no_old_rows(
    client: redis.Redis, config: SnapshotConfig, fold_by: str
) -> None:
    """The old run's end was never written when the new run's start comes in the same
    batch: the new run's snapshot still holds only its own models (a reloading browser
    would show the old run's rows as this run's)."""
    tracker = SnapshotTracker(config)
    write(client, tracker, ev("PROCESSING_STARTED", 1), ev("ANALYSIS_STARTED", 2, model_name="A"))
    batch = [ev("ANALYSIS_COMPLETED", 3, model_name="A", prediction="real", confidence=0.9),
             ev("PROCESSING_COMPLETED", 4), ev("PROCESSING_STARTED", 5, filename="again.mp4"),
             ev("ANALYSIS_STARTED", 6, model_name="B")]  # fmt: skip
    if fold_by == "event":
        write(client, tracker, *batch)
    else:
        tracker.apply_batch(batch, lambda event: time.time())
        for command in tracker.take_commands():
            client.execute_command(*command)
    again = read_media(client, config.keys, "m1")
    assert again is not None and again.status == "running" and again.seq == 6
    assert set(again.models) == {"B"} and again.filename == "again.mp4"
