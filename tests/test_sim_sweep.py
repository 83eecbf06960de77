"""``progress-sim sweep``: the sweeper from the command line, against the real Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from click.testing import CliRunner
from snapshot_oracle import fold_each

from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker, read_media
from progress_sdk.sweeper import Sweeper, SweepResult
from simulator.cli import cli


@pytest.mark.redis
def test_sweep_once_fails_stale_media_and_says_which(redis_url: str, channel: str) -> None:
    """`sweep --once` fails each stale media, prints it, and leaves fresh ones alone."""
    keys = SnapshotKeys(f"test-cli-sweep-{uuid.uuid4().hex[:8]}:")
    client = redis.Redis.from_url(redis_url)
    tracker = SnapshotTracker(SnapshotConfig(keys))
    for media_id, at in (("old", time.time() - 100), ("new", time.time())):
        fold_each(tracker, {"media_id": media_id, "user_id": "u", "event": "PROCESSING_STARTED",
                       "data": {}, "seq": 1, "source": "w"}, at)
    for command in tracker.take_commands():
        client.execute_command(*command)
    result = CliRunner().invoke(cli, [
        "--redis-url", redis_url, "--channel", channel, "sweep", "--once",
        "--prefix", keys.prefix, "--stale-after", "50",
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == "failed old: the worker stopped reporting\n"
    old, new = read_media(client, keys, "old"), read_media(client, keys, "new")
    assert old is not None and old.status == "failed"
    assert new is not None and new.status == "running"


def test_sweep_with_unreachable_redis_is_one_error_line() -> None:
    """No Redis: one `error:` line without the password, exit 2, no traceback."""
    result = CliRunner().invoke(
        cli, ["--redis-url", "redis://:s3cret@127.0.0.1:1/0", "sweep", "--once"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot reach Redis")
    assert "s3cret" not in result.output and result.output.count("\n") == 1


def test_sweep_also_says_which_failures_it_published_again(monkeypatch) -> None:
    """A sweep that published a failure again (its first sweeper died after claiming it,
    on a cluster) says so, after the media it failed."""
    monkeypatch.setattr(Sweeper, "sweep", lambda self, now=None: SweepResult(
        True, failed=("m-stale",), events=2, republished=("m-claimed",)))
    monkeypatch.setattr(Sweeper, "release_lease", lambda self: None)
    result = CliRunner().invoke(cli, ["--redis-url", "redis://127.0.0.1:6379/0",
                                      "sweep", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "failed m-stale: the worker stopped reporting",
        "published the failure of m-claimed again: the sweeper that claimed it stopped "
        "before publishing",
    ]


@pytest.mark.redis
def test_sweep_leaves_a_live_workers_quiet_media_unless_stuck_after_says(
    redis_url: str, channel: str
) -> None:
    """A media quiet for 100 s whose owner's liveness key exists: `sweep --once` leaves it
    alone; with `--stuck-after 60` it is failed as stuck, and says so."""
    keys = SnapshotKeys(f"test-cli-sweep-{uuid.uuid4().hex[:8]}:")
    client = redis.Redis.from_url(redis_url)
    tracker = SnapshotTracker(SnapshotConfig(keys), owner="w-live")
    fold_each(tracker, {"media_id": "quiet", "user_id": "u", "event": "PROCESSING_STARTED",
                   "data": {}, "seq": 1, "source": "w-live"}, time.time() - 100)
    for command in tracker.take_commands():
        client.execute_command(*command)
    client.set(keys.alive("w-live"), "1", ex=60)
    base = ["--redis-url", redis_url, "--channel", channel, "sweep", "--once",
            "--prefix", keys.prefix, "--stale-after", "50"]
    result = CliRunner().invoke(cli, base, catch_exceptions=False)
    assert result.exit_code == 0 and result.output == "", result.output
    snap = read_media(client, keys, "quiet")
    assert snap is not None and snap.status == "running" and snap.owner == "w-live"
    result = CliRunner().invoke(cli, [*base, "--stuck-after", "60"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output == "failed quiet: no update for stuck_after, its worker alive\n"
    snap = read_media(client, keys, "quiet")
    assert snap is not None and snap.swept == "stuck" and snap.error is not None
    assert snap.error.startswith("no update for 60 s")


def test_stuck_after_below_its_minimum_is_refused() -> None:
    """`--stuck-after 5` (the guard needs 10 s of room) exits 2 before touching Redis."""
    result = CliRunner().invoke(cli, ["--redis-url", "redis://127.0.0.1:1/0", "sweep",
                                      "--once", "--stuck-after", "5"])
    assert result.exit_code == 2 and "--stuck-after" in result.output
