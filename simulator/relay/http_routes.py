"""A relay node's HTTP side: its GET routes, ``/healthz`` and ``/metrics``.

Everything that is not Socket.IO reaches ``HttpRoutes`` (``socketio.ASGIApp``'s
``other_asgi_app``). ``/healthz`` is the node's counters plus every health section an
extra added (catch-up's, the backlog's); ``/metrics`` renders the same counters in
Prometheus's format at scrape time (``metrics``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .metrics import CONTENT_TYPE, render
from .stats import RelayStats

__all__ = ["HealthSection", "HttpResponse", "HttpRoutes", "RouteHandler", "Scope"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RouteHandler = Callable[[Scope], Awaitable["HttpResponse"]]
HealthSection = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class HttpResponse:
    """What an extra HTTP route answers."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> HttpResponse:
        """A JSON response."""
        return cls(status, json.dumps(value, indent=2).encode() + b"\n")


class HttpRoutes:
    """The ASGI app for a node's GET routes; ``/healthz`` and ``/metrics`` built in."""

    def __init__(self, stats: RelayStats) -> None:
        self._stats = stats
        self.routes: dict[str, RouteHandler] = {
            "/healthz": self._healthz, "/metrics": self._metrics,
        }
        self.sections: dict[str, HealthSection] = {}

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body: the node's counters and every health section's."""
        body = self._stats.to_dict()
        for name, section in self.sections.items():
            body[name] = section()
        return body

    async def _healthz(self, scope: Scope) -> HttpResponse:
        return HttpResponse.json(self.health())

    async def _metrics(self, scope: Scope) -> HttpResponse:
        return HttpResponse(200, render(self.health, self._stats.lag), CONTENT_TYPE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        handler = self.routes.get(scope["path"])
        if handler is None:
            response = HttpResponse.json({"error": "not found"}, status=404)
        elif scope["method"] not in ("GET", "HEAD"):
            response = HttpResponse.json({"error": "method not allowed"}, status=405)
        else:
            response = await handler(scope)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type.encode()),
                    (b"content-length", str(len(response.body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
