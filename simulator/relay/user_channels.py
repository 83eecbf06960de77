"""User channels on a relay node (``--user-channels``, issue #18): the node reads only the
events of the users connected to it.

Publishers with ``user_channels=True`` send each event also (or only) to its user's
channel, ``<channel>:user:<user_id>`` (``progress_sdk.sharding.user_channel``). A node run
with ``RelayConfig.user_channels`` does not subscribe to the contract channel: it adds a
user's channel to its subscription (``ChannelSubscriber.add``) when the user's first
socket is registered, and removes it when the last one is gone. So two nodes with the
users split between them each read half of the events, where each read all of them
before (measured in docs/benchmarks.md by relay_bench's two-node layout).

No socket misses an event: its join waits for Redis's confirmation of its user's channel
before catch-up reads the snapshots (the join hooks run after this one, in order), so
every event the snapshots do not hold arrives on the channel after the read, and
catch-up's held events and seq filter drop what both hold. After a reconnect the
subscriber subscribes every current user's channel again, in the session's one
``SUBSCRIBE``, and the relay resyncs its sockets as after any outage.

The subscription always holds one more channel, ``<channel>:relays``, on which nothing is
published: a node without users keeps a confirmed subscription (``redis_connected``, the
reconnects and their resyncs) as a node on the contract channel does.
"""

from __future__ import annotations

from collections.abc import Awaitable

from progress_sdk.sharding import user_channel

from .subscriber import ChannelSubscriber

__all__ = ["UserChannels", "idle_channel"]


def idle_channel(channel: str) -> str:
    """The channel a node with user channels always subscribes to (nothing is published
    on it): ``<channel>:relays``."""
    return f"{channel}:relays"


class UserChannels:
    """Keeps a node's subscription to the channels of the users with a socket on it."""

    def __init__(self, subscriber: ChannelSubscriber, channel: str) -> None:
        self._subscriber = subscriber
        self._channel = channel

    def joined(self, user_id: str) -> Awaitable[None]:
        """A socket of ``user_id`` is registered: its channel is subscribed (now, for
        the user's first socket); the awaitable is done once Redis confirmed it."""
        return self._subscriber.add(user_channel(self._channel, user_id))

    def left(self, user_id: str) -> None:
        """The last socket of ``user_id`` on this node is gone."""
        self._subscriber.remove(user_channel(self._channel, user_id))
