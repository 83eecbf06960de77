"""A reference relay: Redis channel in, Socket.IO out, one private room per user.

Needs the ``relay`` extra (python-socketio, uvicorn, websockets, PyJWT). See
``docs/relay.md``; the pieces, each in its module:

- ``auth``: ``TokenVerifier`` (the handshake's JWT), ``sign_token``;
- ``routing``: ``EventRouter`` (decode, check, shape into socket events);
- ``subscriber``: ``ChannelSubscriber`` (the Redis subscription, reconnecting);
  ``user_channels``: a node's subscriptions to its users' channels (``--user-channels``);
  ``resp_pubsub``: the subscription's connection, read a chunk at a time;
  ``cluster_user_pubsub``: user channels on a Redis Cluster (SSUBSCRIBE per master);
- ``backlog``: ``BacklogLimits`` (what may wait for one socket: progress coalesced,
  disconnected past the limit); ``engine_internals``: the one module that relies on
  python-socketio's, python-engineio's and uvicorn's internals (each socket's queue,
  frames written straight to idle WebSockets);
- ``server``: ``Relay`` (the Socket.IO server and its extension points); ``registry``:
  its sockets by user; ``hooks``: the hooks extensions add; ``http_routes``: its GET
  routes, ``/healthz``, ``/metrics``;
- ``serving``: ``bind`` and ``serve`` (uvicorn);
- ``stats``: ``RelayStats``;
- ``logs``: ``configure_logging`` (no token or password in any line).
"""

from __future__ import annotations

from .auth import TokenRefused, TokenVerifier, sign_token
from .backlog import BacklogLimits
from .http_routes import HttpResponse
from .logs import configure_logging, redact
from .routing import EventRouter, Routed, progress_update, user_room
from .server import Relay, RelayConfig
from .serving import bind, serve
from .stats import RelayStats
from .subscriber import ChannelSubscriber, open_redis_pubsub

__all__ = [
    "BacklogLimits",
    "ChannelSubscriber",
    "EventRouter",
    "HttpResponse",
    "Relay",
    "RelayConfig",
    "RelayStats",
    "Routed",
    "TokenRefused",
    "TokenVerifier",
    "bind",
    "configure_logging",
    "open_redis_pubsub",
    "progress_update",
    "redact",
    "serve",
    "sign_token",
    "user_room",
]
