"""What the relay's extensions hooked onto it (``Relay.add_*_hook``, its background
tasks), and how each kind is called: a failing hook is logged, never allowed to strand a
socket or the relay, and a failing task is restarted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from .auth import Identity
from .routing import Routed

__all__ = [
    "AdmitHook",
    "ConnectHook",
    "EventHook",
    "JoinHook",
    "RelayHooks",
    "ReleaseHook",
    "SkipHook",
    "guarded",
]

log = logging.getLogger("progress_sim.relay")

ConnectHook = Callable[[str, str], Awaitable[None]]
AdmitHook = Callable[[str, Identity], Awaitable[None]]
JoinHook = Callable[[str, str], Awaitable[None]]
ReleaseHook = Callable[[str, str], None]
EventHook = Callable[[Routed], None]
SkipHook = Callable[[Routed], Iterable[str]]


@dataclass
class RelayHooks:
    """The hooks of one relay node, in the order they were added (docs: ``server``)."""

    admit: list[AdmitHook] = field(default_factory=list)
    release: list[ReleaseHook] = field(default_factory=list)
    subscribe: list[Callable[[], None]] = field(default_factory=list)
    connect: list[ConnectHook] = field(default_factory=list)
    join: list[JoinHook] = field(default_factory=list)
    skip: list[SkipHook] = field(default_factory=list)
    event: list[EventHook] = field(default_factory=list)

    async def connected(self, sid: str, user_id: str) -> None:
        """Await every connect hook for a socket that joined its room."""
        for hook in self.connect:
            try:
                await hook(sid, user_id)
            except Exception:
                # The socket stays connected and gets live events; a failing extra (a
                # snapshot, say) is logged, not allowed to strand the socket.
                log.exception("connect hook %r failed for socket %s", hook, sid)

    def released(self, sid: str, user_id: str) -> None:
        """Call every release hook for a socket the relay is done with."""
        for hook in self.release:
            try:
                hook(sid, user_id)
            except Exception:
                log.exception("release hook %r failed for socket %s", hook, sid)

    def subscribed(self) -> None:
        """Call every subscribe hook: the Redis subscription was (re)confirmed."""
        for hook in self.subscribe:
            try:
                hook()
            except Exception:
                log.exception("subscribe hook %r failed", hook)


async def guarded(task: Callable[[], Awaitable[None]]) -> None:
    """Run ``await task()`` until it returns or is cancelled."""
    # A bug in one task must not end it silently: it is logged and restarted.
    while True:
        try:
            await task()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay task %s failed; restarting it", task)
            await asyncio.sleep(1.0)
