"""Sentinel events: how ``e2e`` knows every socket got all the relay sent it, without
waiting "a moment for duplicates" or "quiet for a while".

Once its simulation is over, ``e2e`` publishes one sentinel event per user on each
channel it watches (a ``PROCESSING_STARTED`` of a media of its own). A channel delivers
in the order Redis ran the publishes, a relay forwards a channel's events in order, and
a socket receives in order, so a socket that has its user's sentinels has everything the
relay sent it before them: a duplicate or a stray event included, and what has not
arrived is lost, however slow the machine. The sentinels are then taken out of what the
check judges (the ground truth never records them). Not used with ``--listen``: there
the users are real and their panels would show the sentinel media.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from progress_sdk.cluster import client_for
from progress_sdk.event_types import PROCESSING_STARTED
from progress_sdk.events import format_timestamp

from .delivery import SocketLog

__all__ = ["Sentinels"]


class Sentinels:
    """The sentinel events of one check: one per (user, channel), media ids that start
    with ``e2e-<tag>-sentinel-``."""

    def __init__(self, tag: str, users: list[str], channels: list[str]) -> None:
        self.prefix = f"e2e-{tag}-sentinel-"
        self.channels = channels
        self.of_user = {user: [f"{self.prefix}{i}-{n}" for n in range(len(channels))]
                        for i, user in enumerate(users)}
        self.seen_on_channel: set[str] = set()
        """Sentinels the ground truth's own subscription got (it ignores them otherwise)."""

    def is_sentinel(self, obj: dict[str, Any]) -> bool:
        """Whether a decoded channel message is one of these sentinels."""
        media_id = obj.get("media_id")
        return isinstance(media_id, str) and media_id.startswith(self.prefix)

    def publish(self, redis_url: str) -> None:
        """Publish every sentinel (blocking: run it in a thread), SPUBLISH on a cluster."""
        client = client_for(redis_url)
        stamp, source = format_timestamp(time.time()), self.prefix.rstrip("-")
        try:
            for n, channel in enumerate(self.channels):
                for user, media in self.of_user.items():
                    payload = json.dumps({
                        "media_id": media[n], "user_id": user, "event": PROCESSING_STARTED,
                        "message": "e2e sentinel", "data": {}, "seq": 1, "source": source,
                        "timestamp": stamp,
                    })
                    if isinstance(client, redis.RedisCluster):
                        client.spublish(channel, payload)
                    else:
                        client.publish(channel, payload)
        finally:
            client.close()

    def arrived(self, log: SocketLog) -> bool:
        """Whether the socket got every sentinel of its user."""
        got = {r.payload.get("mediaId") for r in log.received
               if r.name == "progress_update" and isinstance(r.payload, dict)}
        return set(self.of_user.get(log.user_id, ())) <= got

    def complete(self, logs: list[SocketLog]) -> bool:
        """Whether each socket and the ground truth got their sentinels."""
        everything = {m for media in self.of_user.values() for m in media}
        return everything <= self.seen_on_channel and all(map(self.arrived, logs))

    def strip(self, logs: Iterable[SocketLog]) -> None:
        """Take the sentinels out of what the sockets received."""
        for log in logs:
            log.received[:] = [
                r for r in log.received
                if not (isinstance(r.payload, dict)
                        and str(r.payload.get("mediaId", "")).startswith(self.prefix))
            ]
