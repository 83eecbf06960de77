"""The relay with the client the product's browsers use: Node's socket.io-client.

It connects the way the product's frontend does (``io(url, {auth: {token}})``: HTTP
long-polling first, then the WebSocket upgrade). The package comes from
``tests/node_client/package-lock.json`` (``npm ci``; ``.ci/run`` does it, and so does this
module when it is missing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from js_package import npm_ci
from relay_support import SECRET, RelayProcess, event

from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CLIENT = Path(__file__).parent / "node_client"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with socket.io-client installed next to client.mjs."""
    binary = shutil.which("node")
    if binary is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed (.ci/run installs them)")
    npm_ci(CLIENT)  # under a lock: pytest-xdist's workers may get here at once
    return binary


@pytest.fixture
def relay(redis_url: str, channel: str) -> Iterator[RelayProcess]:
    """``progress-sim relay`` on this test's channel."""
    process = RelayProcess.cli(redis_url, channel)
    process.wait_subscribed()
    yield process
    process.stop()


class NodeClient:
    """client.mjs in its own process; its JSON lines collected as they come."""

    def __init__(self, node: str, url: str, token: str, seconds: float,
                 until_media: str | None = None) -> None:
        argv = [node, str(CLIENT / "client.mjs"), url, token, str(seconds)]
        self.proc = subprocess.Popen([*argv, *([until_media] if until_media else [])],
                                     stdout=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []

    def first(self) -> dict[str, Any]:
        """The next line (the first one: connected, or the refusal)."""
        assert self.proc.stdout is not None
        line: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return line

    def rest(self) -> list[dict[str, Any]]:
        """Every later line, once the client has exited."""
        out, _ = self.proc.communicate(timeout=30)
        return [json.loads(line) for line in out.splitlines() if line]


def test_socket_io_client_gets_its_users_events_over_polling_and_upgrade(
    node: str, relay: RelayProcess, redis_url: str, channel: str
) -> None:
    """socket.io-client connects with auth.token and receives exactly its user's
    progress_update and processing_error events."""
    user = f"u-{uuid.uuid4().hex[:6]}"
    sentinel = f"sentinel-{uuid.uuid4().hex[:6]}"
    # It exits on the sentinel, published last: what the relay sent before has arrived
    # (the 60 s only end a hung test).
    client = NodeClient(node, relay.url, sign_token(SECRET, user), seconds=60.0,
                        until_media=sentinel)
    assert client.first() == {"connected": True}
    assert client.first() == {"name": "caught_up", "payload": {}}  # live from here on
    publisher = redis.Redis.from_url(redis_url)
    publisher.publish(channel, event("someone-else", "m0"))
    publisher.publish(channel, event(user, "m1", data={"filename": "clip.mp4"}, seq=1,
                                     source="w"))
    publisher.publish(channel, event(user, "m1", "PROCESSING_FAILED", seq=2, source="w"))
    publisher.publish(channel, event(user, sentinel))
    publisher.close()
    *lines, last = client.rest()
    assert last["payload"]["mediaId"] == sentinel, last
    assert [(line["name"], line["payload"].get("seq")) for line in lines] == [
        ("progress_update", 1), ("progress_update", 2), ("processing_error", None)
    ]
    assert lines[2]["payload"] == {"mediaId": "m1", "filename": "clip.mp4",
                                   "error": "decoder crashed"}


def test_socket_io_client_sees_why_an_expired_token_is_refused(
    node: str, relay: RelayProcess
) -> None:
    """The refusal reason reaches the client's connect_error."""
    token = sign_token(SECRET, "u-1", now=time.time() - 7200, expires_in=60)
    client = NodeClient(node, relay.url, token, seconds=5.0)
    assert client.first() == {"connect_error": "the token has expired"}
    client.rest()
