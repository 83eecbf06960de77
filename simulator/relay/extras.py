"""What the relay adds to the bare delivery path: the page, catch-up, token expiry and
revocation, and the sweeper."""

from __future__ import annotations

from progress_sdk import defaults as d
from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys

from .catchup import CatchUp, CatchUpLimits, install_catch_up
from .page import install_page
from .resync import install_resync
from .server import Relay
from .sessions import DEFAULT_REVOCATION_INTERVAL, install_sessions
from .sweeping import install_sweeper

__all__ = ["install_extras"]


def install_extras(
    relay: Relay,
    keys: SnapshotKeys,
    *,
    catch_up: bool = True,
    sweep: bool = True,
    stale_after: float = d.DEFAULT_SWEEP_STALE_AFTER,
    sweep_interval: float | None = None,
    catch_up_limits: CatchUpLimits | None = None,
    revocation_interval: float = DEFAULT_REVOCATION_INTERVAL,
    stuck_after: float | None = None,
) -> CatchUp | None:
    """Serve the panel at ``/``; send snapshots on connect and resync every socket after
    each new Redis subscription; end sockets at their token's expiry and on revocation;
    run the sweeper."""
    install_page(relay)
    install_sessions(relay, keys, interval=revocation_interval)
    if sweep:
        # Sweep a few times per stale period, so a dead worker's media fails soon after.
        interval = sweep_interval or min(d.DEFAULT_SWEEP_INTERVAL, max(stale_after / 4, 0.1))
        install_sweeper(relay, SnapshotConfig(keys), stale_after=stale_after, interval=interval,
                        stuck_after=stuck_after)
    if not catch_up:
        return None
    caught = install_catch_up(relay, keys, catch_up_limits)
    install_resync(relay, caught)
    return caught
