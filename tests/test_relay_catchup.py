"""Catch-up, the page and the sweeper in real relay processes, with real Socket.IO clients."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from conftest import Subscriber
from relay_support import (
    SECRET,
    Client,
    RedisServer,
    RelayProcess,
    connect_and_close_at_once,
    peak_rss_mb,
    sockets_joining_a_busy_job,
    wait_until,
    write_snapshots,
)
from snapshot_oracle import fold_each

from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker, read_media
from simulator.catchup_check import check_late_join
from simulator.cli import cli
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BUSY_JOB = Path(__file__).with_name("busy_job.py")


@pytest.fixture
def keys() -> SnapshotKeys:
    """A snapshot prefix no other test uses."""
    return SnapshotKeys(f"test-catchup-{uuid.uuid4().hex[:8]}:")


def pairs(client: Client) -> list[tuple[str, Any]]:
    """What a client received, as (socket event, payload)."""
    return list(client.events)


def test_sockets_joining_a_busy_stream_get_snapshots_then_live_events_without_gap_or_dup(
    redis_url: str, channel: str, keys: SnapshotKeys
) -> None:
    """Sockets connecting while a job streams fast each end with the panel of a socket
    there from the start, got their snapshot first, and no seq twice or missing."""
    relay = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", keys.prefix, "--no-sweep")
    user = f"u-{uuid.uuid4().hex[:8]}"
    token = sign_token(SECRET, user)
    try:
        relay.wait_subscribed()

        early, late = sockets_joining_a_busy_job(
            relay.url, token,
            [sys.executable, str(BUSY_JOB), redis_url, channel, keys.prefix, user, "3000"], 5,
            redis_url=redis_url, channel=channel, user_id=user,
        )
        assert len(late) >= 2, "the job ended before sockets could join it"
        joined_mid_run = 0
        for index, client in enumerate(late):
            assert check_late_join(pairs(early), pairs(client), f"late socket {index}") == []
            snapshots = client.named("progress_snapshot")
            joined_mid_run += any(s["status"] == "running" for s in snapshots)
        assert joined_mid_run >= 2
    finally:
        relay.stop()


def test_the_page_and_its_scripts_are_served_without_any_cdn(
    redis_url: str, channel: str
) -> None:
    """GET / is the panel; its scripts, Socket.IO's client included, come from the relay."""
    relay = RelayProcess.cli(redis_url, channel, "--no-sweep")
    try:
        with urllib.request.urlopen(f"{relay.url}/", timeout=5) as response:
            page = response.read().decode()
            assert response.headers["content-type"].startswith("text/html")
        assert '<script src="socket.io.min.js">' in page and "http" not in page.split("<body>")[1]
        with urllib.request.urlopen(f"{relay.url}/socket.io.min.js", timeout=5) as response:
            assert b"Socket.IO v4" in response.read(200)
        with urllib.request.urlopen(f"{relay.url}/panel.js", timeout=5) as response:
            assert b"PC.createProgressStore(" in response.read()
        # The store the page draws from: the browser package's, bundled (clients/js).
        with urllib.request.urlopen(f"{relay.url}/progress-client.js", timeout=5) as response:
            assert b'"progress_snapshot"' in response.read()
    finally:
        relay.stop()


def test_healthz_counts_catch_ups_snapshots_sent_and_catch_ups_redis_refused(
    channel: str, keys: SnapshotKeys
) -> None:
    """A socket whose user has two media in flight counts one catch-up done and two
    snapshots sent; one connecting while Redis is down still connects, gets no snapshot,
    and counts a failed catch-up."""
    server = RedisServer()
    server.start()
    tracker = SnapshotTracker(SnapshotConfig(keys), channel=channel)
    user = f"u-{uuid.uuid4().hex[:8]}"
    for media_id in ("m1", "m2"):
        fold_each(tracker, {"media_id": media_id, "user_id": user, "event": "PROCESSING_STARTED",
                       "data": {}, "seq": 1, "source": "w"}, time.time())
    client = redis.Redis.from_url(server.url)
    for command in tracker.take_commands():
        client.execute_command(*command)
    relay = RelayProcess.cli(server.url, channel, "--snapshot-prefix", keys.prefix,
                             "--no-sweep")
    token = sign_token(SECRET, user)

    async def connect() -> Client:
        socket = Client()
        # connect() returns once caught_up arrived: the relay emits it to the socket after
        # the catch-up's snapshots (and counts), on the same ordered socket.
        await socket.connect(relay.url, {"token": token})
        await socket.sio.disconnect()
        return socket

    try:
        relay.wait_subscribed()
        assert relay.healthz()["catch_up"] == {
            "done": 0, "failed": 0, "snapshots_sent": 0, "held_back": 0, "covered": 0,
            "truncated": 0, "abandoned": 0, "foreign": 0, "waiting": 0, "running": 0,
            "resynced": 0, "resync_skipped": 0,
        }
        caught_up = asyncio.run(connect())
        assert len(caught_up.named("progress_snapshot")) == 2
        health = relay.healthz()["catch_up"]
        assert (health["done"], health["failed"], health["snapshots_sent"]) == (1, 0, 2)
        server.stop()
        late = asyncio.run(connect())
        assert late.refusal is None and late.named("progress_snapshot") == []
        health = relay.healthz()["catch_up"]
        assert (health["done"], health["failed"], health["snapshots_sent"]) == (1, 1, 2)
    finally:
        relay.stop()
        server.stop()


def test_two_relay_nodes_run_the_sweeper_and_one_acts(
    redis_url: str, channel: str, keys: SnapshotKeys, subscriber: Subscriber
) -> None:
    """Both nodes sweep; one holds the lease and fails each stale media, once."""
    client = redis.Redis.from_url(redis_url)
    tracker = SnapshotTracker(SnapshotConfig(keys), channel=channel)
    old = time.time() - 60
    for n in range(3):
        for seq, (kind, data) in enumerate([("PROCESSING_STARTED", {}),
                                            ("ANALYSIS_STARTED", {"model_name": "A"})], 1):
            fold_each(tracker, {"media_id": f"dead-{n}", "user_id": "u", "event": kind,
                           "data": data, "seq": seq, "source": "w"}, old)
    for command in tracker.take_commands():
        client.execute_command(*command)
    nodes = [RelayProcess.cli(redis_url, channel, "--snapshot-prefix", keys.prefix,
                              "--stale-after", "1") for _ in range(2)]
    try:
        wait_until(lambda: all(
            (s := read_media(client, keys, f"dead-{n}")) is not None and s.terminal
            for n in range(3)
        ), timeout=20, what="the sweeper to fail the dead media")
        # Both nodes sweep again, a whole pass each begun after the media ended (a pass
        # under way now counts once more when it ends, so two), and whatever those passes
        # published arrives before a sentinel published after them.
        passes = [node.healthz()["sweeper"]["passes"] for node in nodes]
        for node, seen in zip(nodes, passes, strict=True):
            wait_until(lambda node=node, seen=seen: node.healthz()["sweeper"]["passes"]
                       >= seen + 2, timeout=60, what="a node to sweep twice more")
        events = [json.loads(m) for m in subscriber.settled()]
        assert sorted(e["media_id"] for e in events if e["event"] == "PROCESSING_FAILED") == [
            "dead-0", "dead-1", "dead-2",
        ]
        assert len(events) == 6  # ANALYSIS_FAILED for A and PROCESSING_FAILED, per media
        acted = [n for n, node in enumerate(nodes) if "stopped reporting" in node.output]
        assert len(acted) == 1, [node.output for node in nodes]
    finally:
        for node in nodes:
            node.stop()


def test_dev_mode_prints_a_working_page_url_for_each_simulated_user(
    redis_url: str, channel: str
) -> None:
    """`relay --dev` makes up a secret and prints user-1..N URLs whose tokens connect, and
    an `e2e` command line that, run as printed, checks this relay and passes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from simulator.cli import main; main()", "--redis-url",
         redis_url, "--channel", channel, "relay", "--port", "0", "--dev", "--dev-users", "2",
         "--no-sweep"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items() if k != "JWT_SECRET"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert [line.split(":")[0] for line in lines] == ["user-1", "user-2", "e2e"]
        url, token = lines[1].split(" ", 1)[1].split("/#token=")

        async def connect() -> list[Any]:
            client = Client()
            await client.connect(url, {"token": token})
            await client.sio.disconnect()
            return client.events

        asyncio.run(connect())
        command = lines[2].removeprefix("e2e: ")
        assert f"--relay-url {url}" in command and "JWT_SECRET=" in command
        # Run the line as a user pastes it, `progress-sim` being this checkout's CLI.
        script = (f'progress-sim() {{ "{sys.executable}" -c '
                  "'from simulator.cli import main; main()' \"$@\"; }\n"
                  f"{command} --media 2 --users 1 --no-late-join")
        env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "REDIS_URL")}
        checked = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                 timeout=120, env=env, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "verdict: OK" in checked.stdout
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_e2e_line_keeps_given_secrets_and_redis_passwords_out() -> None:
    """A secret the user gave and a password in the Redis URL are never printed."""
    from simulator.relay import RelayConfig
    from simulator.relay_commands import e2e_command

    config = RelayConfig(jwt_secret="the-api-servers-own-secret-of-32-bytes",
                         redis_url="redis://:hunter2@10.0.0.5:6379/0")
    line = e2e_command(config, "http://127.0.0.1:3001", show_secret=False)
    assert line == ('progress-sim --redis-url "$REDIS_URL" e2e --relay-url '
                    "http://127.0.0.1:3001")


def test_e2e_checks_the_late_joiner_and_fails_a_relay_without_catch_up(
    redis_url: str, channel: str, keys: SnapshotKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`progress-sim e2e` passes the relay with catch-up and names the gap without it."""
    monkeypatch.setenv("PROGRESS_SNAPSHOT_PREFIX", keys.prefix)
    verdicts = {}
    for flag in ("--catch-up", "--no-catch-up"):
        relay = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", keys.prefix,
                                 "--no-sweep", flag)
        try:
            relay.wait_subscribed()
            result = CliRunner().invoke(cli, [
                "--redis-url", redis_url, "--channel", channel, "e2e", "--relay-url",
                relay.url, "--jwt-secret", SECRET, "--media", "3", "--users", "1",
                "--speed", "10", "--json",
            ])  # fmt: skip
            verdicts[flag] = (result.exit_code, json.loads(result.stdout))
        finally:
            relay.stop()
    code, report = verdicts["--catch-up"]
    assert code == 0 and report["late_join_faults"] == [], report
    code, report = verdicts["--no-catch-up"]
    assert code == 1 and any("gap" in f or "ends as" in f for f in report["late_join_faults"])


def test_a_reload_storm_leaves_no_phantom_socket_and_a_bounded_relay(
    redis_url: str, channel: str, keys: SnapshotKeys
) -> None:
    """One user with 3,000 snapshots; 200 sockets connect and close at once, twice (the
    issue's scenario: 1.36 GB and 7, then 44 phantom sockets before). Every socket that
    left while being connected is refused with nothing registered, catch-ups stop with
    their socket, and the relay's peak RSS stays under 400 MB."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    write_snapshots(redis_url, keys.prefix, user, 3000)
    relay = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", keys.prefix, "--no-sweep")
    token = sign_token(SECRET, user)

    def settled() -> bool:
        health = relay.healthz()
        busy = health["catch_up"]["running"] + health["catch_up"]["waiting"]
        return busy == 0 and health["sockets"] == 0

    try:
        relay.wait_subscribed()
        for _ in range(2):
            connect_and_close_at_once(relay.url, token, 200)
            wait_until(settled, timeout=120, what="catch-ups to end and no socket left")
        probe = asyncio.run(_probe(relay.url, token))
        wait_until(settled, timeout=60, what="the probe's catch-up to end")
        health = relay.healthz()
        peak = peak_rss_mb(relay.proc.pid)
    finally:
        relay.stop()
    assert len(probe.named("progress_snapshot")) == 500  # --catch-up-max-media's default
    assert [s["mediaId"] for s in probe.named("progress_snapshot")[:2]] == ["m-2999", "m-2998"]
    assert health["sockets"] == 0 and health["users"] == 0
    assert health["connects"] == health["disconnects"]
    assert health["catch_up"]["abandoned"] > 0
    assert health["catch_up"]["snapshots_sent"] < 200 * 500  # far from 2 x 200 x 3,000
    assert peak <= 400, f"relay peak RSS {peak:.0f} MB"


async def _probe(url: str, token: str) -> Client:
    """One more socket of the user, caught up in full, then closed."""
    client = Client()
    await client.connect(url, {"token": token})
    await client.wait_for("progress_snapshot", 500, timeout=60)
    await client.sio.disconnect()
    return client


def test_a_snapshot_of_another_user_is_never_sent_when_a_media_id_was_reused(
    redis_url: str, channel: str, keys: SnapshotKeys
) -> None:
    """User A analysed media "m-reused"; then user B's job used the same media id, and
    the snapshot is B's now (A's index still lists it). A's socket gets A's other media
    only, nothing naming B (counted as foreign); B's socket gets its own."""
    alice, bob = (f"u-{uuid.uuid4().hex[:8]}" for _ in range(2))
    client = redis.Redis.from_url(redis_url)
    for user, media in ((alice, "m-mine"), (alice, "m-reused"), (bob, "m-reused")):
        tracker = SnapshotTracker(SnapshotConfig(keys), channel=channel)
        fold_each(tracker, {"media_id": media, "user_id": user, "event": "PROCESSING_STARTED",
                       "data": {"filename": f"{user}.mp4"}, "seq": 1, "source": user},
                      time.time())
        for command in tracker.take_commands():
            client.execute_command(*command)
    relay = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", keys.prefix, "--no-sweep")

    async def snapshots(user: str) -> list[Any]:
        socket = Client()
        await socket.connect(relay.url, {"token": sign_token(SECRET, user)})
        await socket.sio.disconnect()
        return socket.named("progress_snapshot")

    try:
        relay.wait_subscribed()
        mine, theirs = asyncio.run(snapshots(alice)), asyncio.run(snapshots(bob))
        foreign = relay.healthz()["catch_up"]["foreign"]
    finally:
        relay.stop()
        client.close()
    assert [(s["mediaId"], s["userId"]) for s in mine] == [("m-mine", alice)]
    assert [(s["mediaId"], s["userId"]) for s in theirs] == [("m-reused", bob)]
    assert foreign == 1
