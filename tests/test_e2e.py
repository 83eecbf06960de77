"""``progress-sim e2e`` against real relay processes: right ones pass, each broken one
fails naming the event."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from relay_support import SECRET, RelayProcess

from simulator.cli import cli
from simulator.e2e import E2EConfig, E2EResult, run_e2e

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MODELS = ("SIGLIP-LSTM-V4", "MEL-SPECTROGRAM-CNN-V3")


def _check(redis_url: str, channel: str, *urls: str, **options: object) -> E2EResult:
    config = E2EConfig(
        relay_urls=urls, jwt_secret=SECRET, redis_url=redis_url, channel=channel,
        users=2, sockets_per_user=2, media=4, models=MODELS, seed=7, settle_seconds=1.0,
        **options,  # type: ignore[arg-type]
    )
    return asyncio.run(run_e2e(config))


@pytest.fixture
def relay(redis_url: str, channel: str) -> Iterator[RelayProcess]:
    """``progress-sim relay`` on this test's channel."""
    process = RelayProcess.cli(redis_url, channel)
    process.wait_subscribed()
    yield process
    process.stop()


def test_a_correct_relay_passes_with_latency(
    relay: RelayProcess, redis_url: str, channel: str
) -> None:
    """Every event reaches every socket of its user once, in order; latency is reported;
    a socket that joins mid-run is caught up (at speed 0 the run often ended before the
    late socket's turn, and its check was skipped)."""
    result = _check(redis_url, channel, relay.url, speed=10.0)
    assert result.ok, result.to_text()
    assert result.late_join == [], result.to_text()  # checked, and right
    report = result.report
    assert report.events > 20 and report.deliveries == report.expected_deliveries
    assert report.sockets == 6  # two users and the bystander, two sockets each
    assert result.latency_ms() is not None and len(report.latencies) == report.deliveries


def test_a_correct_relay_passes_across_two_nodes(redis_url: str, channel: str) -> None:
    """With two relay processes each user has a socket on each; still exactly once."""
    nodes = [RelayProcess.cli(redis_url, channel) for _ in range(2)]
    try:
        for node in nodes:
            node.wait_subscribed()
        result = _check(redis_url, channel, nodes[0].url, nodes[1].url)
        assert result.ok, result.to_text()
        assert all(node.healthz()["forwarded"] > 0 for node in nodes)
    finally:
        for node in nodes:
            node.stop()


def _broken(redis_url: str, channel: str, fault: str, nth: int = 12) -> RelayProcess:
    process = RelayProcess.script("broken_relay.py", fault, str(nth), redis_url, channel, SECRET)
    process.wait_subscribed()
    return process


def test_a_relay_forwarding_only_the_six_product_fields_passes(
    redis_url: str, channel: str
) -> None:
    """Without seq/source/runId, events are matched by content and order (the product's
    relay has no catch-up either, so the late-joiner check is off)."""
    relay = _broken(redis_url, channel, "six-fields")
    try:
        result = _check(redis_url, channel, relay.url, late_join=False)
    finally:
        relay.stop()
    assert result.ok, result.to_text()


@pytest.mark.parametrize(
    ("fault", "kinds"),
    [
        ("misroute", {"misrouted", "lost"}),
        ("drop", {"lost"}),
        ("duplicate", {"duplicate"}),
        ("reorder", {"reordered"}),
        ("six-fields-drop", {"lost"}),
    ],
)
def test_a_broken_relay_fails_naming_the_event(
    redis_url: str, channel: str, fault: str, kinds: set[str]
) -> None:
    """One event misrouted, dropped, duplicated or reordered: the check fails and names
    that event (type, media, user, channel position)."""
    relay = _broken(redis_url, channel, fault)
    try:
        result = _check(redis_url, channel, relay.url)
    finally:
        relay.stop()
    assert not result.ok
    assert set(result.report.fault_counts) == kinds, result.to_text()
    for fault_found in result.report.faults:
        assert "of media" in fault_found.message and "channel #" in fault_found.message
    # The faulty event is named: the same event in every message about it.
    named = {f.message.split(" reached")[0].split(" never")[0] for f in result.report.faults}
    assert len(named) == 1 or fault == "reorder", result.to_text()


def test_the_cli_exit_code_is_the_verdict(
    relay: RelayProcess, redis_url: str, channel: str
) -> None:
    """Exit 0 and an OK report for a correct relay; 1 and the fault for a broken one."""
    args = ["--redis-url", redis_url, "--channel", channel, "e2e", "--jwt-secret", SECRET,
            "--users", "2", "--media", "2", "--models", MODELS[0], "--settle", "1"]
    good = CliRunner().invoke(cli, [*args, "--relay-url", relay.url, "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.output)["ok"] is True
    broken = _broken(redis_url, channel, "drop", nth=3)
    try:
        bad = CliRunner().invoke(cli, [*args, "--relay-url", broken.url])
    finally:
        broken.stop()
    assert bad.exit_code == 1, bad.output
    assert "verdict: BROKEN: 2 lost" in bad.output  # one event, at both sockets of its user
    assert "never reached socket 1 of user" in bad.output


def test_listen_mode_checks_another_producers_users(
    relay: RelayProcess, redis_url: str, channel: str
) -> None:
    """--listen with --user: no simulation; the named users' events are checked. A
    publisher's resend after a reset (seq 3 and 4 again) is one event each: the relay
    forwards it once and the check expects it once."""
    import threading

    import redis

    user = f"ext-{uuid.uuid4().hex[:6]}"
    listening = threading.Event()

    def produce() -> None:
        client = redis.Redis.from_url(redis_url)
        # Events before the check's sockets are live are outside its window: start when
        # it says it listens (the bound only ends a hung test).
        if not listening.wait(60):
            return
        for n in (1, 2, 3, 4, 3, 4, 5):
            client.publish(channel, json.dumps({
                "media_id": "m", "user_id": user, "event": "PROCESSING_STARTED",
                "message": "s", "data": {}, "seq": n, "source": "ext"}))
        client.close()

    thread = threading.Thread(target=produce)
    thread.start()
    result = _check(redis_url, channel, relay.url, listen_seconds=2.0, watch_users=(user,),
                    on_listening=listening.set)
    thread.join()
    assert listening.is_set(), "the check never started listening"
    assert result.ok, result.to_text()
    assert result.report.events == 5 and result.report.deliveries == 10
    assert relay.healthz()["dropped"]["repeat"] == 2


def test_listening_ignores_the_users_events_outside_its_window_but_not_misroutes() -> None:
    """A window of a longer stream: an own-user event not in it is no fault; another
    user's is."""
    from simulator.delivery import Received, SocketLog, check_deliveries

    log = SocketLog("a", "socket of a")
    for user in ("a", "b"):
        log.received.append(Received("progress_update", {
            "mediaId": "m", "userId": user, "event": "PROCESSING_STARTED", "message": "",
            "data": {}, "timestamp": None}, 0.0))
    report = check_deliveries([], [log], whole_stream=False)
    assert dict(report.fault_counts) == {"unexpected": 1}
    assert "(user b)" in report.faults[0].message
