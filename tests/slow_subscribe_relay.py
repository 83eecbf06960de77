"""A relay on user channels whose Redis takes its time to subscribe a channel added
while it runs, for the user-channel tests: a socket's catch-up must still wait for the
subscription, or what is published in between is lost to it.

    python tests/slow_subscribe_relay.py REDIS_URL CHANNEL SNAPSHOT_PREFIX SECRET DELAY

Each SUBSCRIBE after the session's first is written DELAY seconds late (a busy or distant
Redis confirming late). It prints the relay's ``listening on`` line like ``progress-sim
relay``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from progress_sdk.snapshot import SnapshotKeys
from simulator.relay import Relay, RelayConfig, bind, serve
from simulator.relay.extras import install_extras
from simulator.relay.subscriber import PubSubLike, open_redis_pubsub


class SlowSubscribe:
    """A redis-py pubsub whose SUBSCRIBE commands after the first are written late."""

    def __init__(self, pubsub: Any, delay: float) -> None:
        self._pubsub, self._delay, self._first = pubsub, delay, True

    async def subscribe(self, *channels: str) -> Any:
        if not self._first:
            await asyncio.sleep(self._delay)  # the fault injected, not a synchronisation
        self._first = False
        return await self._pubsub.subscribe(*channels)

    def unsubscribe(self, *channels: str) -> Any:
        return self._pubsub.unsubscribe(*channels)

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: float | None = 0.0) -> dict[str, Any] | None:
        message: dict[str, Any] | None = await self._pubsub.get_message(
            ignore_subscribe_messages, timeout)
        return message

    async def aclose(self) -> None:
        await self._pubsub.aclose()


def main() -> None:
    url, channel, prefix, secret, delay = sys.argv[1:6]
    opened = open_redis_pubsub(url)

    async def open_pubsub() -> PubSubLike:
        return SlowSubscribe(await opened(), float(delay))

    relay = Relay(RelayConfig(jwt_secret=secret, redis_url=url, channel=channel,
                              user_channels=True), open_pubsub=open_pubsub)
    install_extras(relay, SnapshotKeys(prefix), sweep=False)
    serve(relay, bind("127.0.0.1", 0), log_level="warning",
          on_ready=lambda where: print(f"slow-subscribe relay: listening on {where}",
                                       file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
