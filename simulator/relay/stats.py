"""The relay's counters, as ``GET /healthz`` reports them."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DROP_REASONS", "RelayStats"]

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
