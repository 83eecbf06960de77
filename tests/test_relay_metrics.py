"""``GET /metrics``: a real relay process scraped over HTTP after real events."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from relay_support import SECRET, Client, RelayProcess, event, wait_until

from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana" / "relay.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(relay: RelayProcess) -> tuple[Samples, set[str], str]:
    """Every sample of ``/metrics`` by (name, labels), the family names, the content type."""
    with urllib.request.urlopen(f"{relay.url}/metrics", timeout=5) as response:
        text = response.read().decode()
        content_type = response.headers["content-type"]
    samples: Samples = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, families, content_type


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def relay(redis_url: str) -> Iterator[tuple[RelayProcess, str]]:
    channel = f"test-relay-metrics-{datetime.now().timestamp()}"
    process = RelayProcess.cli(redis_url, channel)
    process.wait_subscribed()
    yield process, channel
    process.stop()


def test_metrics_move_with_real_events(redis_url: str, relay: tuple[RelayProcess, str]) -> None:
    """Two sockets of one user, events of three types, a repeat, an event after the run's
    end, a message that is not JSON and one from two seconds ago: each counter, the lag
    histogram and the gauges move by what happened, and nothing else does."""
    node, channel = relay
    user = f"u-metrics-{datetime.now().timestamp()}"
    before, _, content_type = scrape(node)
    assert content_type.startswith("text/plain")
    run = {"run_id": "r1", "source": "w1"}
    old = (datetime.now(timezone.utc) - timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    progress = {"model_name": "M", "progress": 1, "total": 3}
    messages = [
        event(user, "m", seq=1, timestamp=old, **run),
        event(user, "m", "FRAME_ANALYSIS_PROGRESS", data=progress, seq=2, **run),
        event(user, "m", "FRAME_ANALYSIS_PROGRESS", data=progress, seq=2, **run),  # repeat
        event(user, "m", "PROCESSING_COMPLETED", seq=3, **run),
        event(user, "m", "FRAME_ANALYSIS_PROGRESS", data=progress, seq=4, **run),  # after end
        b"{not json",
    ]

    received = value(before, "progress_relay_received_total") + len(messages)

    def scrape_once_all_are_in() -> Samples:
        # The last messages come after the one the clients wait for.
        wait_until(lambda: value(scrape(node)[0], "progress_relay_received_total") >= received,
                   what="the relay to take every message")
        return scrape(node)[0]

    async def scenario() -> tuple[tuple[Client, Client], Samples]:
        clients = Client(), Client()
        for client in clients:
            await client.connect(node.url, {"token": sign_token(SECRET, user)})
        publisher = redis.Redis.from_url(redis_url)
        for message in messages:
            publisher.publish(channel, message)
        publisher.close()
        for client in clients:
            await client.wait_for("media_update", 1, timeout=30)
        during = await asyncio.to_thread(scrape_once_all_are_in)
        for client in clients:
            await client.sio.disconnect()
        return clients, during

    clients, during = asyncio.run(scenario())
    for client in clients:
        assert len(client.named("progress_update")) == 3
    assert value(during, "progress_relay_sockets") == value(before, "progress_relay_sockets") + 2

    def delta(name: str, **labels: str) -> float:
        return value(during, name, **labels) - value(before, name, **labels)

    assert delta("progress_relay_received_total") == 6
    for kind in ("PROCESSING_STARTED", "FRAME_ANALYSIS_PROGRESS", "PROCESSING_COMPLETED"):
        assert delta("progress_relay_events_in_total", type=kind) == 1
        assert delta("progress_relay_events_out_total", type=kind) == 2
    assert delta("progress_relay_dropped_total", reason="repeat") == 1
    assert delta("progress_relay_dropped_total", reason="after_terminal") == 1
    assert delta("progress_relay_dropped_total", reason="invalid_json") == 1
    assert delta("progress_relay_dropped_total", reason="schema") == 0
    # Three forwarded events: one two seconds old (the 2.5 s bucket, not the 1 s one), two
    # stamped by nobody (event() sets no timestamp: not observed, counted apart).
    assert delta("progress_relay_event_lag_seconds_count") == 1
    assert delta("progress_relay_event_lag_seconds_bucket", le="1.0") == 0
    assert delta("progress_relay_event_lag_seconds_bucket", le="2.5") == 1
    assert delta("progress_relay_event_lag_seconds_sum") >= 2.0
    assert delta("progress_relay_lag_unparsed_total") == 2
    assert delta("progress_relay_catch_up_done_total") == 2
    assert value(during, "progress_relay_backlog_high_water_events") >= 1
    assert value(during, "progress_relay_redis_connected") == 1

    wait_until(lambda: value(scrape(node)[0], "progress_relay_sockets")
               == value(before, "progress_relay_sockets"), what="the sockets to be gone")


def test_the_dashboard_queries_only_metrics_the_relay_exposes(
    relay: tuple[RelayProcess, str],
) -> None:
    """Every metric a panel of docs/grafana/relay.json queries is one /metrics serves (a
    renamed metric fails here, not on an operator's blank panel)."""
    node, _ = relay
    _, families, _ = scrape(node)
    served = set()
    for name in families:
        served |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    queried = dashboard_metrics(json.loads(DASHBOARD.read_text()))
    assert queried, "the dashboard queries no metric"
    assert queried <= served, sorted(queried - served)


def dashboard_metrics(dashboard: dict[str, object]) -> set[str]:
    """The ``progress_relay_*`` names the dashboard's queries use."""
    names: set[str] = set()
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", ()):
            names |= set(re.findall(r"\bprogress_relay_[a-z_]+", target["expr"]))
    return names
