"""progress_sdk.cluster: recognising a cluster node and finding a slot's master."""

from __future__ import annotations

import pytest
import redis

from progress_sdk import ConfigurationError
from progress_sdk.cluster import SlotMap, is_cluster, slot_of

pytestmark = pytest.mark.cluster


def test_a_cluster_node_is_recognised_from_its_url(redis_cluster):
    """Any node's URL, master or replica, is enough to know it is a cluster."""
    for node in redis_cluster.nodes:
        assert is_cluster(node.url)


@pytest.mark.redis
def test_the_single_server_is_not_a_cluster(redis_url):
    """The shared server at REDIS_URL is a plain server."""
    assert not is_cluster(redis_url)


def test_an_unreachable_url_raises_a_redis_error():
    """Nothing listening: the caller gets a redis error to report, not a False."""
    with pytest.raises(redis.ConnectionError):
        is_cluster("redis://127.0.0.1:1/0", timeout=0.5)


def test_slot_map_names_the_master_the_cluster_names(redis_cluster):
    """Read from a replica's URL, the owner of each shard channel is the master the
    cluster itself reports."""
    replica = redis_cluster.replicas()[0]
    slots = SlotMap(replica.url)
    slots.refresh()
    for name in ("media-progress-events", "media-progress-events:0", "media-progress-events:1"):
        assert slots.owner(name) == ("127.0.0.1", redis_cluster.owner(name).port)
    assert len(slots.masters) == 3


def test_slot_of_matches_the_server(redis_cluster):
    """slot_of computes what CLUSTER KEYSLOT says."""
    with redis_cluster.nodes[0].client() as client:
        for name in ("media-progress-events", "a{b}c", "media-progress-events:7"):
            assert slot_of(name) == client.execute_command("CLUSTER", "KEYSLOT", name)


def test_slot_map_refuses_a_unix_socket():
    """A cluster is reached over TCP; a unix:// URL is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="TCP"):
        SlotMap("unix:///tmp/redis.sock")


def test_slot_map_raises_when_no_node_answers():
    """With no node reachable, refresh() says so (a ConnectionError naming the node)."""
    with pytest.raises(redis.ConnectionError, match=r"127\.0\.0\.1:1\b"):
        SlotMap("redis://127.0.0.1:1/0", timeout=0.5).refresh()
