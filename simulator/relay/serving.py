"""Run a ``Relay`` under uvicorn on a socket it binds itself.

Binding first lets ``--port 0`` pick a free port and report the real one before the
first request (tests and scripts read the ``listening on`` line), and lets several relay
processes share one port with ``reuse_port`` where the kernel balances between them.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn
import uvicorn.config

from .server import Relay

__all__ = ["bind", "serve"]

# The sans-I/O websockets protocol where uvicorn has it (it deprecates the older one).
_WS_PROTOCOL = (
    "websockets-sansio" if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS else "websockets"
)

log = logging.getLogger("progress_sim.relay")


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(
    relay: Relay,
    sock: socket.socket,
    *,
    log_level: str = "info",
    event_loop: str = "auto",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready(url)`` once the relay accepts sockets.

    ``event_loop``: ``auto`` (uvloop when installed, as the relay extra does), ``uvloop``
    or ``asyncio``.
    """
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    async def ready() -> None:
        if on_ready is not None:
            on_ready(url)

    relay.add_background_task(ready)
    config = uvicorn.Config(
        relay.asgi_app(),
        log_level=log_level,
        loop=event_loop,
        # The access log prints request lines, query strings included; a client that put
        # its token in the URL would see it logged. The relay logs what matters itself.
        access_log=False,
        log_config=None,
        lifespan="on",
        ws=_WS_PROTOCOL,
        ws_ping_interval=None,
        # Off, as in the Node.js relay (socket.io's perMessageDeflate defaults to false):
        # a browser offers it on every connection, and compressing each small frame costs
        # more CPU than it saves bytes; it also keeps frames writable as encoded once per
        # room (engine_internals, point 4).
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])
