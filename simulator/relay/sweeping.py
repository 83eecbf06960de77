"""The dead-worker sweeper inside the relay: every node runs it, one acts (a Redis lease).

``progress_sdk.sweeper.Sweeper`` does the work with a blocking Redis client, so each pass
runs in a worker thread and the event loop keeps serving sockets meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis

from progress_sdk import defaults as d
from progress_sdk.snapshot import SnapshotConfig
from progress_sdk.sweeper import Sweeper

from .server import Relay

__all__ = ["install_sweeper"]

log = logging.getLogger("progress_sim.relay")


def install_sweeper(
    relay: Relay,
    config: SnapshotConfig,
    *,
    stale_after: float = d.DEFAULT_SWEEP_STALE_AFTER,
    interval: float = d.DEFAULT_SWEEP_INTERVAL,
    lease: float = d.DEFAULT_SWEEP_LEASE,
) -> Sweeper:
    """Run a ``Sweeper`` every ``interval`` seconds for the relay's life."""
    client = redis.Redis.from_url(relay.config.redis_url, socket_connect_timeout=2.0,
                                  socket_timeout=5.0)
    sweeper = Sweeper(client, channel=relay.config.channel, config=config,
                      stale_after=stale_after, lease=lease)

    async def run() -> None:
        try:
            while True:
                try:
                    result = await asyncio.to_thread(sweeper.sweep)
                except (redis.RedisError, OSError) as exc:
                    log.warning("sweeper: Redis error, retrying: %s", type(exc).__name__)
                else:
                    for media_id in result.failed:
                        log.info("sweeper: media %s stopped reporting; failed it", media_id)
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                await asyncio.to_thread(sweeper.release_lease)

    relay.add_background_task(run)
    return sweeper
