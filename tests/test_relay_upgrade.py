"""A browser's Engine.IO upgrade from long-polling to WebSocket while events stream: the
relay's direct writes start only once the WebSocket is the socket's transport, and what
was queued meanwhile goes out first, so the page sees every event once, in order."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid

import pytest
import redis
from relay_support import SECRET, RelayProcess, event
from websockets.sync.client import connect

from simulator.relay import sign_token

pytestmark = pytest.mark.redis


class Polling:
    """An Engine.IO v4 long-polling session, as a browser's client opens it, with a GET
    always pending (a thread) until one answers the NOOP that ends polling."""

    def __init__(self, relay_url: str, token: str) -> None:
        base = relay_url + "/socket.io/?EIO=4&transport=polling"
        self.sid = json.loads(self._request(base)[1:])["sid"]
        self.url = f"{base}&sid={self.sid}"
        self._request(self.url, "40" + json.dumps({"token": token}))
        self.packets: list[str] = []
        self.changed = threading.Condition()
        self._thread = threading.Thread(target=self._keep_polling, daemon=True)
        self._thread.start()

    @staticmethod
    def _request(url: str, body: str | None = None) -> str:
        data = body.encode() if body is not None else None
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as r:
            return str(r.read().decode())

    def _keep_polling(self) -> None:
        while True:
            answer = self._request(self.url).split("\x1e")
            with self.changed:
                self.packets += answer
                self.changed.notify_all()
            if "6" in answer:
                return

    def wait(self, done: str | int) -> None:
        """Until a packet starting with ``done``, or the event of seq ``done``, arrived
        (30 s only bound a hung test)."""
        def arrived() -> bool:
            if isinstance(done, int):
                return done in _seqs(self.packets)
            return any(p.startswith(done) for p in self.packets)

        with self.changed:
            assert self.changed.wait_for(arrived, 30), done

    def ended(self) -> None:
        """Until the pending GET answered the NOOP."""
        self._thread.join(30)
        assert not self._thread.is_alive()


def _seqs(packets: list[str]) -> list[int]:
    prefix = '42["progress_update",'
    return [json.loads(p[2:])[1]["seq"] for p in packets if p.startswith(prefix)]


def test_an_upgrade_mid_stream_keeps_every_event_once_in_order(
    redis_url: str, channel: str
) -> None:
    """The client does what socket.io-client does: a GET always pending, then it opens
    the WebSocket, probes it, lets the pending poll finish, and sends UPGRADE. Events are
    published all along: none is written to the WebSocket before UPGRADE (a GET waiting
    on an empty queue is no WebSocket writer), and the polls then the WebSocket carry
    1..N with no gap, repeat or swap."""
    relay = RelayProcess.cli(redis_url, channel)
    user = f"u-{uuid.uuid4().hex[:8]}"
    publisher = redis.Redis.from_url(redis_url)
    seq = 0

    def publish() -> int:
        nonlocal seq
        seq += 1
        publisher.publish(channel, event(user, f"m{seq}", seq=seq, source="w1"))
        return seq

    try:
        relay.wait_subscribed()
        polling = Polling(relay.url, sign_token(SECRET, user))
        polling.wait('42["caught_up"')
        ws_url = relay.url.replace("http://", "ws://") + (
            f"/socket.io/?EIO=4&transport=websocket&sid={polling.sid}")
        for _ in range(10):  # polling: each event by a GET, the next GET left waiting
            polling.wait(publish())
        with connect(ws_url, open_timeout=30) as ws:
            # Open, not the socket's transport yet: the waiting GET answers the first
            # event, the others wait in the queue (the relay answers GETs with a NOOP now).
            for _ in range(5):
                publish()
            ws.send("2probe")
            assert ws.recv(timeout=30) == "3probe"  # nothing was written to it before
            polling.ended()
            ws.send("5")
            frames: list[str] = []
            for _ in range(50):
                last = publish()
                while last not in _seqs(frames[-1:]):
                    frames.append(str(ws.recv(timeout=30)))
        writes = relay.healthz()["writes"]
    finally:
        publisher.close()
        relay.stop()
    assert _seqs(polling.packets) + _seqs(frames) == list(range(1, seq + 1))
    assert writes["direct"] >= 40  # the WebSocket's events but the queued ones
