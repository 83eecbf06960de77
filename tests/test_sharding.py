"""progress_sdk.sharding: how media are spread over shard channels."""

from __future__ import annotations

import pytest

from progress_sdk import ConfigurationError
from progress_sdk.cluster import slot_of
from progress_sdk.sharding import (
    channel_for,
    resolve_shards,
    shard_channels,
    shard_of,
    subscribed_channels,
)


def test_one_shard_keeps_every_media_on_the_plain_channel():
    """The default publishes where the product's relay listens: the channel itself."""
    assert channel_for("media-progress-events", 1, "9b2f0c1e") == "media-progress-events"
    assert shard_channels("media-progress-events", 1) == ["media-progress-events"]
    assert subscribed_channels("media-progress-events", 1) == ["media-progress-events"]


def test_a_media_always_maps_to_the_same_shard_in_any_process():
    """The shard is CRC-32 of the media id, not Python's per-process salted hash()."""
    assert shard_of("9b2f0c1e", 3) == 2
    assert shard_of("a7c3d210", 3) == 0
    assert shard_of("d0e5f6a8", 3) == 1
    assert channel_for("ch", 3, "9b2f0c1e") == "ch:2"


def test_media_spread_over_all_shards():
    """A thousand media ids use every one of 8 shards, none more than twice its share."""
    counts = [0] * 8
    for i in range(1000):
        counts[shard_of(f"media-{i}", 8)] += 1
    assert min(counts) > 0
    assert max(counts) < 250


def test_consumers_subscribe_to_every_shard_and_the_plain_channel():
    """A fleet half-way through changing its shard count is still seen whole."""
    assert subscribed_channels("ch", 3) == ["ch", "ch:0", "ch:1", "ch:2"]


def test_three_shard_channels_fall_in_three_thirds_of_the_slot_space():
    """With the default names, 3 shards land on 3 masters of an evenly split cluster."""
    thirds = {slot_of(name) * 3 // 16384 for name in shard_channels("media-progress-events", 3)}
    assert thirds == {0, 1, 2}


def test_shards_come_from_the_argument_then_the_environment(monkeypatch):
    """Explicit argument, then MEDIA_PROGRESS_SHARDS, then 1."""
    monkeypatch.delenv("MEDIA_PROGRESS_SHARDS", raising=False)
    assert resolve_shards(None) == 1
    monkeypatch.setenv("MEDIA_PROGRESS_SHARDS", "4")
    assert resolve_shards(None) == 4
    assert resolve_shards(2) == 2


@pytest.mark.parametrize("bad", [0, -1, 1025, True, 2.0, "3"])
def test_bad_shard_counts_are_refused_with_the_range(bad):
    """Anything but a whole number from 1 to 1024 is a ConfigurationError saying so."""
    with pytest.raises(ConfigurationError, match="from 1 to 1024"):
        resolve_shards(bad)


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    """MEDIA_PROGRESS_SHARDS=three says which variable to fix."""
    monkeypatch.setenv("MEDIA_PROGRESS_SHARDS", "three")
    with pytest.raises(ConfigurationError, match="MEDIA_PROGRESS_SHARDS"):
        resolve_shards(None)
