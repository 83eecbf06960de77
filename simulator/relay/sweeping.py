"""The dead-worker sweeper inside the relay: every node runs it, one acts (a Redis lease).

``progress_sdk.sweeper.Sweeper`` does the work with a blocking Redis client, so each pass
runs in a worker thread and the event loop keeps serving sockets meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass

import redis

from progress_sdk import defaults as d
from progress_sdk.cluster import client_for
from progress_sdk.snapshot import SnapshotConfig
from progress_sdk.sweeper import Sweeper, SweepResult

from .server import Relay

__all__ = ["SweeperStats", "install_sweeper"]

log = logging.getLogger("progress_sim.relay")


@dataclass
class SweeperStats:
    """What a node's sweeper did since the relay started: ``/healthz``'s ``sweeper``
    section (``progress_relay_sweeper_<name>_total`` in ``/metrics``). ``passes`` also
    tells a test or an operator that a pass ran after some moment (wait for it to grow
    by two: the first may have been under way then), not merely that time passed."""

    passes: int = 0
    """Passes finished, whether this node held the lease or not (errors excluded)."""
    led: int = 0
    """Of those, passes this node held the lease in (it acted)."""
    failed: int = 0
    """Media this node's sweeper failed."""
    events: int = 0
    """Failure events it published (republished ones included)."""
    errors: int = 0
    """Passes that met a Redis error (retried at the next interval)."""

    def count(self, result: SweepResult) -> None:
        """Count one finished pass."""
        self.passes += 1
        self.led += result.leader
        self.failed += len(result.failed)
        self.events += result.events

    def to_dict(self) -> dict[str, int]:
        """The ``/healthz`` section."""
        return asdict(self)


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
    workers without news that long), counted in ``/healthz``'s ``sweeper`` section
    (``SweeperStats``)."""
    url = relay.config.redis_url
    sweepers: list[Sweeper] = []
    stats = SweeperStats()
    relay.add_health_section("sweeper", stats.to_dict)

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
                    stats.errors += 1
                    log.warning("sweeper: Redis error, retrying: %s", type(exc).__name__)
                else:
                    for level, line in result.notices():
                        log.log(level, "sweeper: %s", line)
                    stats.count(result)
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                for sweeper in sweepers:
                    await asyncio.to_thread(sweeper.release_lease)

    relay.add_background_task(run)
