"""The relay's counters, as ``GET /healthz`` reports them (and ``/metrics``, ``metrics``)."""

from __future__ import annotations

import os
import socket
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["DROP_REASONS", "LAG_BUCKETS", "LagHistogram", "RelayStats"]

LAG_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
"""Upper bounds (seconds) of the lag histogram's buckets: a healthy relay sits in the
low milliseconds, a backed-up one in seconds (issue #18 saw 2.1 s at 12k events/s)."""


class LagHistogram:
    """Seconds from an event's ``timestamp`` to its emit, as cumulative-ready bucket counts.

    Kept here rather than as a prometheus-client ``Histogram``: the relay observes on the
    event loop only, so it needs no lock, and ``/metrics`` turns it into a histogram at
    scrape time. Measured by benchmarks/relay_metrics_bench.py (Python 3.11, on a shared
    2-core machine at load average 14.6, so upper bounds): ``observe_timestamp``, its
    ISO 8601 parse included, 3.1 us per forwarded event (about what prometheus-client's
    ``Histogram.observe`` costs without any parse, 3.0 us); the in/out ``Counter``
    increments 1.1 us, where ``labels().inc()`` twice costs 10.5 us. Against the
    relay's ~135 us per event (issue #18), metrics add about 3%.
    """

    __slots__ = ("counts", "sum", "unparsed")

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.unparsed = 0
        """Events whose timestamp could not be read (not observed)."""

    def observe_timestamp(self, stamp: Any, now: float) -> None:
        """Observe ``now`` minus the event's ISO 8601 ``stamp`` (a clock ahead of the
        relay's gives a negative lag, counted in the first bucket)."""
        if not isinstance(stamp, str):
            self.unparsed += 1
            return
        try:
            if stamp[-1:] in ("Z", "z"):  # Python 3.10 does not take a trailing Z
                stamp = stamp[:-1] + "+00:00"
            seconds = now - datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            self.unparsed += 1
            return
        self.counts[bisect_left(LAG_BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        """Events observed."""
        return sum(self.counts)

DROP_REASONS = (
    "too_large", "invalid_json", "missing_user_id", "missing_media_id", "schema", "repeat",
    "after_terminal",
)
"""Why a channel message was not forwarded (the keys of ``dropped``)."""


@dataclass
class RelayStats:
    """What one relay node did since it started. Updated on the event loop only."""

    node: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    started: float = field(default_factory=time.time)
    received: int = 0
    """Messages taken off the channel."""
    forwarded: int = 0
    """Valid events with at least one socket of their user on this node."""
    no_local_socket: int = 0
    """Valid events whose user has no socket on this node (another node serves them)."""
    deliveries: int = 0
    """``progress_update`` packets queued, one per socket (the fan-out)."""
    events_in: Counter[str] = field(default_factory=Counter)
    """Valid events (checked, not repeats, not after their run's end), by event type."""
    events_out: Counter[str] = field(default_factory=Counter)
    """Deliveries by event type: each forwarded event once per socket of its user here."""
    lag: LagHistogram = field(default_factory=LagHistogram)
    """From a forwarded event's ``timestamp`` to its emit (the relay's clock)."""
    dropped: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    """Handshakes refused, by reason (``auth.REFUSAL_REASONS``)."""
    connects: int = 0
    disconnects: int = 0
    left_while_connecting: int = 0
    """Sockets whose client left while the relay was still connecting them (catch-up):
    refused with nothing registered."""
    ended: Counter[str] = field(default_factory=Counter)
    """Sockets the relay ended, by reason (``token_expired``, ``revoked``)."""
    sockets: int = 0
    users: int = 0
    redis_connected: bool = False
    redis_connects: int = 0
    redis_errors: int = 0
    resubscribes: int = 0
    """Channels a cluster subscription moved to another node within a connection."""

    def drop(self, reason: str) -> None:
        """Count one message not forwarded."""
        self.dropped[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        """The ``/healthz`` body."""
        return {
            "status": "ok" if self.redis_connected else "degraded",
            "node": self.node,
            "uptime_seconds": round(time.time() - self.started, 3),
            "redis_connected": self.redis_connected,
            "redis_connects": self.redis_connects,
            "redis_errors": self.redis_errors,
            "resubscribes": self.resubscribes,
            "received": self.received,
            "forwarded": self.forwarded,
            "delivered": self.deliveries,
            "no_local_socket": self.no_local_socket,
            "events_in": dict(sorted(self.events_in.items())),
            "events_out": dict(sorted(self.events_out.items())),
            "lag_unparsed": self.lag.unparsed,
            "dropped": {reason: self.dropped[reason] for reason in DROP_REASONS},
            "dropped_total": sum(self.dropped.values()),
            "sockets": self.sockets,
            "users": self.users,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "left_while_connecting": self.left_while_connecting,
            "refused": dict(sorted(self.refused.items())),
            "ended": dict(sorted(self.ended.items())),
        }
