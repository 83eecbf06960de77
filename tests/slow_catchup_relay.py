"""A correct relay whose catch-up reads its snapshots slowly, for ``e2e``'s own tests: a
busy relay (or Redis) may take a while to catch a late socket up, and the check must wait
for it rather than judge what has not arrived yet.

    python tests/slow_catchup_relay.py REDIS_URL CHANNEL SECRET DELAY

Each catch-up that starts once the relay forwarded events (a socket that joins mid-run)
reads its snapshots DELAY seconds late (the fault injected, not a synchronisation); the
sockets connected before the run are caught up at once. It prints the relay's
``listening on`` line like ``progress-sim relay``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from progress_sdk import defaults as d
from progress_sdk.snapshot import MediaSnapshot, SnapshotKeys
from simulator.relay import Relay, RelayConfig, bind, catchup, serve
from simulator.relay.extras import install_extras


def main() -> None:
    url, channel, secret, delay = sys.argv[1:5]
    relay = Relay(RelayConfig(jwt_secret=secret, redis_url=url, channel=channel))
    read = catchup.read_recent_async

    async def slow_read(*args: Any) -> AsyncIterator[list[MediaSnapshot]]:
        if relay.stats.forwarded:
            await asyncio.sleep(float(delay))
        async for part in read(*args):
            yield part

    catchup.read_recent_async = slow_read  # type: ignore[assignment]
    prefix = os.environ.get(d.ENV_SNAPSHOT_PREFIX, d.DEFAULT_SNAPSHOT_PREFIX)  # as the CLI
    install_extras(relay, SnapshotKeys(prefix), sweep=False)
    serve(relay, bind("127.0.0.1", 0), log_level="warning",
          on_ready=lambda where: print(f"slow catch-up relay: listening on {where}",
                                       file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
