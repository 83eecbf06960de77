"""``progress-sim e2e``'s late-joiner check where it used to fail a correct relay: two
checks with one seed at once (the suite's workers share Redis and the snapshot prefix),
and a relay that takes its time to catch the late socket up."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from relay_support import SECRET, RelayProcess

from simulator.e2e import E2EConfig, E2EResult, run_e2e

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MODELS = ("SIGLIP-LSTM-V4", "MEL-SPECTROGRAM-CNN-V3")


def _config(redis_url: str, url: str, channel: str) -> E2EConfig:
    # Played at 10x (about 2 s) rather than as fast as it goes (0.3 s): the late socket
    # then joins early in the run every time, not only when the check polled before the
    # run was over.
    return E2EConfig(
        relay_urls=(url,), jwt_secret=SECRET, redis_url=redis_url, channel=channel,
        users=2, sockets_per_user=2, media=8, models=MODELS, seed=7, settle_seconds=1.0,
        speed=10.0,
    )


def test_two_checks_with_one_seed_at_once_each_see_their_own_media(redis_url: str) -> None:
    """Each run's media ids are its own: with the seed's ids, two runs at once wrote the
    same snapshot hashes, and a late socket's catch-up found the other run's media
    (refused as another user's: a whole media missing) or its state (other rows)."""
    channels = [f"test-progress-{uuid.uuid4().hex}" for _ in range(2)]
    relays = [RelayProcess.cli(redis_url, channel) for channel in channels]

    async def both() -> list[E2EResult]:
        return list(await asyncio.gather(*(
            run_e2e(_config(redis_url, relay.url, channel))
            for relay, channel in zip(relays, channels, strict=True))))

    try:
        for relay in relays:
            relay.wait_subscribed()
        results = asyncio.run(both())
        foreign = [relay.healthz()["catch_up"]["foreign"] for relay in relays]
    finally:
        for relay in relays:
            relay.stop()
    for result in results:
        assert result.late_join is not None, "the late socket never joined: nothing checked"
        assert result.ok, result.to_text()
    assert foreign == [0, 0]


def test_a_late_socket_caught_up_slowly_is_judged_once_caught_up(redis_url: str) -> None:
    """The late socket's catch-up starts 3 s late (a busy relay or Redis, as under a
    loaded machine): the check waits for its ``caught_up`` before the sentinels. It used
    to publish them at once (the late socket mostly joins near the end of a run) and wait
    1 s, and judged a socket that had half its snapshots or none."""
    channel = f"test-progress-{uuid.uuid4().hex}"
    relay = RelayProcess.script("slow_catchup_relay.py", redis_url, channel, SECRET, "3")
    try:
        relay.wait_subscribed()
        result = asyncio.run(run_e2e(_config(redis_url, relay.url, channel)))
    finally:
        relay.stop()
    assert result.late_join is not None, "the late socket never joined: nothing was checked"
    assert result.ok, result.to_text()
