"""Redis Cluster: telling a cluster node from a single server, and who serves which slot.

A URL of any node of a cluster is enough: ``is_cluster`` asks that node (``INFO cluster``
says ``cluster_enabled:1``), so no separate option is needed. ``SlotMap`` reads the slot
owners and their replicas (``CLUSTER SHARDS``, Redis 7) from whichever known node
answers, remembers every node it heard of so a later refresh still finds one after the
seed node died, and hands out connections to a node with the URL's credentials and TLS settings.
Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) routes a channel by the hash slot of its
name, like a key; ``slot_of`` is that slot.

The publisher's side: ``ClusterTransport`` publishes with ``SPUBLISH``, pipelined per
master; ``DetectingTransport`` decides on first use (on the sender thread, so building a
publisher does no I/O) whether a URL names a cluster node or a single server;
``transport_for`` picks the transport for what ``ProgressPublisher(redis=...)`` was given.
"""

from __future__ import annotations

from ._detecting import DetectingTransport, transport_for
from ._sharded import ClusterTransport
from ._topology import Address, SlotMap, client_for, is_cluster, slot_of

__all__ = [
    "Address",
    "ClusterTransport",
    "DetectingTransport",
    "SlotMap",
    "client_for",
    "is_cluster",
    "slot_of",
    "transport_for",
]
