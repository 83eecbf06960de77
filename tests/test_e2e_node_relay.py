"""``progress-sim e2e`` against a Node.js relay built to the product's design
(benchmarks/node_relay: ioredis, socket.io 4.8, jsonwebtoken, the six fields forwarded to
a room per user). The correct relay passes: it re-serialises every event, so numbers
arrive as JavaScript writes them (``0.0`` as ``0``) and must still match. Its variants
that misroute, drop or duplicate every fifth event fail with those faults. Issue #19."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from js_package import npm_ci
from relay_support import SECRET

from simulator.e2e import E2EConfig, E2EResult, run_e2e

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NODE_RELAY = Path(__file__).parent.parent / "benchmarks" / "node_relay"
MODELS = ("SIGLIP-LSTM-V4", "MEL-SPECTROGRAM-CNN-V3")


class NodeRelay:
    """benchmarks/node_relay/relay.mjs in its own process, subscribed and listening."""

    def __init__(self, redis_url: str, channel: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(NODE_RELAY / "relay.mjs"), "--channel", channel, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "JWT_SECRET": SECRET, "REDIS_URL": redis_url},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # written once it listens and is subscribed
        if not line:
            _, err = self.proc.communicate(timeout=30)
            pytest.fail(f"the Node relay did not start: {err}")
        self.url: str = json.loads(line)["listening"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def node_relay_packages() -> Path:
    """The relay's npm packages, from its package-lock.json."""
    npm_ci(NODE_RELAY)
    return NODE_RELAY


@pytest.fixture
def start(node_relay_packages: Path, redis_url: str,
          channel: str) -> Iterator[Callable[..., NodeRelay]]:
    """Starts Node relays on this test's channel (given options); stops them after."""
    started: list[NodeRelay] = []

    def run(*args: str) -> NodeRelay:
        relay = NodeRelay(redis_url, channel, *args)
        started.append(relay)
        return relay

    yield run
    for relay in started:
        relay.stop()


def check(redis_url: str, channel: str, url: str) -> E2EResult:
    config = E2EConfig(
        relay_urls=(url,), jwt_secret=SECRET, redis_url=redis_url, channel=channel,
        users=2, sockets_per_user=2, media=4, models=MODELS, seed=7, settle_seconds=1.0,
        late_join=False,  # the product's relay has no catch-up
    )
    return asyncio.run(run_e2e(config))


def test_the_node_relay_passes(
    start: Callable[..., NodeRelay], redis_url: str, channel: str
) -> None:
    """Every event reaches every socket of its user once, in order, numbers and all."""
    relay = start()
    result = check(redis_url, channel, relay.url)
    assert result.ok, result.to_text()
    assert result.report.events > 20
    assert result.report.deliveries == result.report.expected_deliveries


@pytest.mark.parametrize(("fault", "kinds"), [
    ("misroute", {"misrouted", "lost"}),
    ("drop", {"lost"}),
    ("duplicate", {"duplicate"}),
])
def test_a_faulty_node_relay_fails_with_its_fault(
    start: Callable[..., NodeRelay], redis_url: str, channel: str, fault: str, kinds: set[str]
) -> None:
    """Every fifth event misrouted, dropped or sent twice: e2e names that fault only."""
    relay = start("--fault", fault, "--fault-every", "5")
    result = check(redis_url, channel, relay.url)
    assert not result.ok
    assert set(result.report.fault_counts) == kinds, result.to_text()
