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
from progress_sdk.cluster import client_for
from progress_sdk.snapshot import SnapshotConfig
from progress_sdk.sweeper import Sweeper, SweepResult

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
    stuck_after: float | None = None,
) -> None:
    """Run a ``Sweeper`` every ``interval`` seconds for the relay's life (it fails the
    media of dead workers, by their liveness keys; ``stuck_after``: also those of live
    workers without news that long)."""
    url = relay.config.redis_url
    sweepers: list[Sweeper] = []

    def sweep() -> SweepResult:
        # The client is chosen on the first pass (a RedisCluster on a cluster), not at
        # install: a relay starts while Redis is down.
        if not sweepers:
            sweepers.append(Sweeper(client_for(url), channel=relay.config.channel,
                                    config=config, stale_after=stale_after, lease=lease,
                                    stuck_after=stuck_after))
        return sweepers[0].sweep()

    async def run() -> None:
        try:
            while True:
                try:
                    result = await asyncio.to_thread(sweep)
                except (redis.RedisError, OSError) as exc:
                    log.warning("sweeper: Redis error, retrying: %s", type(exc).__name__)
                else:
                    for level, line in result.notices():
                        log.log(level, "sweeper: %s", line)
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                for sweeper in sweepers:
                    await asyncio.to_thread(sweeper.release_lease)

    relay.add_background_task(run)
