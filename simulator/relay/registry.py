"""Which sockets of which users are on this node.

``SocketRegistry`` is the relay's record of its admitted sockets by user (what a routed
event is delivered to, what resync walks) and of those still in their admit hooks; it
keeps the ``sockets``/``users`` gauges of ``RelayStats`` current. No I/O.
"""

from __future__ import annotations

from .stats import RelayStats

__all__ = ["SocketRegistry"]


class SocketRegistry:
    """Sockets by user and users by socket, plus the sockets being admitted."""

    def __init__(self, stats: RelayStats) -> None:
        self._stats = stats
        self._sockets: dict[str, set[str]] = {}  # user id -> sids
        self._user_of: dict[str, str] = {}  # sid -> user id
        self.connecting: dict[str, str] = {}
        """sid -> user id, while the socket's admit hooks run."""

    def add(self, sid: str, user_id: str) -> None:
        """Register an admitted socket."""
        self._user_of[sid] = user_id
        self._sockets.setdefault(user_id, set()).add(sid)
        self._count()

    def remove(self, sid: str) -> str | None:
        """Forget ``sid``; its user, or ``None`` when it was not registered."""
        user_id = self._user_of.pop(sid, None)
        if user_id is None:
            return None
        sids = self._sockets.get(user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._sockets[user_id]
        self._count()
        return user_id

    def users(self) -> frozenset[str]:
        """The users with at least one socket here."""
        return frozenset(self._sockets)

    def sockets_of(self, user_id: str) -> set[str] | None:
        """The registered sids of ``user_id`` (the registry's own set: do not change it)."""
        return self._sockets.get(user_id)

    def registered(self, sid: str) -> str | None:
        """The user of an admitted socket, else None."""
        return self._user_of.get(sid)

    def user_of(self, sid: str) -> str | None:
        """The user of a socket that is admitted or being admitted, else None."""
        return self._user_of.get(sid) or self.connecting.get(sid)

    def _count(self) -> None:
        self._stats.sockets = len(self._user_of)
        self._stats.users = len(self._sockets)
