"""A relay test double with one deliberate fault, for ``e2e``'s own tests.

    python tests/broken_relay.py FAULT NTH REDIS_URL CHANNEL SECRET

FAULT is what happens to the NTH event the relay forwards: ``misroute`` (to another
connected user's room instead), ``drop``, ``duplicate``, ``reorder`` (held back until
after the next one of the same user); or ``six-fields`` (every event trimmed to the
product relay's six fields, no fault) and ``six-fields-drop`` (trimmed, and the NTH
dropped). It prints the relay's ``listening on`` line like ``progress-sim relay``.
"""

from __future__ import annotations

import sys

from simulator.relay import Relay, RelayConfig, Routed, bind, serve, user_room

_SIX = ("mediaId", "userId", "event", "message", "data", "timestamp")


class BrokenRelay(Relay):
    """``Relay`` with a fault in ``forward``, the seam between routing and emitting."""

    def __init__(self, config: RelayConfig, fault: str, nth: int) -> None:
        super().__init__(config)
        self.fault, self.nth = fault, nth
        self.forwarded = 0
        self.held: Routed | None = None

    async def forward(self, routed: Routed) -> None:
        self.forwarded += 1
        if self.fault.startswith("six-fields"):
            routed = Routed(routed.user_id, routed.event, tuple(
                (name, {k: v for k, v in payload.items() if k in _SIX})
                if name == "progress_update" else (name, payload)
                for name, payload in routed.emits
            ))
        if self.forwarded != self.nth or self.fault == "six-fields":
            await super().forward(routed)
            # A reorder is only visible within one user's stream.
            if self.held is not None and self.held.user_id == routed.user_id:
                held, self.held = self.held, None
                await super().forward(held)
            return
        if self.fault == "duplicate":
            await super().forward(routed)
            await super().forward(routed)
        elif self.fault == "misroute":
            other = next(u for u in self.connected_users() if u != routed.user_id)
            for name, payload in routed.emits:
                await self.sio.emit(name, payload, room=user_room(other))
        elif self.fault == "reorder":
            self.held = routed
        # drop, six-fields-drop: nothing


def main() -> None:
    fault, nth, redis_url, channel, secret = sys.argv[1:6]
    relay = BrokenRelay(
        RelayConfig(jwt_secret=secret, redis_url=redis_url, channel=channel), fault, int(nth)
    )
    serve(relay, bind("127.0.0.1", 0), log_level="warning",
          on_ready=lambda url: print(f"broken relay ({fault}): listening on {url}",
                                     file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
