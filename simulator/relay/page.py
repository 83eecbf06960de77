"""The browser panel, served by the relay: ``GET /`` and its four static files.

The files live in ``simulator/web``; the Socket.IO client is the official
``socket.io-client`` build vendored there (``socket.io.min.js``, MIT, see
``vendor/socket.io.LICENSE``), and ``progress-client.js`` is the browser package's store
bundled from ``clients/js`` (``npm run bundle:page``; a test checks it is current), so the
page needs no CDN and no build step at install. The page reads its token from
the URL's fragment (``/#token=...``), which the browser never sends to the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from .http_routes import HttpResponse, Scope
from .server import Relay

__all__ = ["PAGE_FILES", "install_page"]

PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/panel.js": ("panel.js", "text/javascript; charset=utf-8"),
    "/progress-client.js": ("progress-client.js", "text/javascript; charset=utf-8"),
    "/panel.css": ("panel.css", "text/css; charset=utf-8"),
    "/socket.io.min.js": ("vendor/socket.io.min.js", "text/javascript; charset=utf-8"),
}


def install_page(relay: Relay) -> None:
    """Serve the panel at ``/`` (files read once, at install)."""
    web = resources.files("simulator") / "web"
    for path, (name, content_type) in PAGE_FILES.items():
        body = web.joinpath(name).read_bytes()
        relay.add_route(path, _static(body, content_type))


def _static(body: bytes, content_type: str) -> Callable[[Scope], Awaitable[HttpResponse]]:
    response = HttpResponse(200, body, content_type)

    async def handler(scope: Scope) -> HttpResponse:
        return response

    return handler
