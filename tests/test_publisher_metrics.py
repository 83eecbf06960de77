"""progress_sdk.metrics: a publisher's stats() as Prometheus metrics, scrape by scrape."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from progress_sdk.metrics import PublisherCollector
from progress_sdk.publisher import PublisherStats
from progress_sdk.testing import CapturingPublisher

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class Fixed:
    """A publisher stand-in whose stats() the test sets."""

    def __init__(self, stats: PublisherStats) -> None:
        self.now = stats

    def stats(self) -> PublisherStats:
        return self.now


def test_each_field_of_stats_is_a_metric_with_the_collectors_labels() -> None:
    """Every counter and gauge of PublisherStats, each dropped reason and forgiven kind,
    under the collector's labels, read anew at each scrape."""
    stats = PublisherStats(
        accepted=10, published=7, coalesced=1, dropped={"buffer_full": 2, "fenced": 1},
        queued=3, reconnects=4, connected=True, last_error=None, no_subscribers=5,
        forgiven={"progress_range": 6}, extra_failed=8, terminals_lost=9, terminals_resent=11,
        terminals_waiting=12, terminals_abandoned=13, fenced_runs=14, sender_wakeups=15,
    )
    source = Fixed(stats)
    registry = CollectorRegistry()
    registry.register(PublisherCollector(source, labels={"worker": "w1"}))
    samples = scrape(registry)
    w1 = (("worker", "w1"),)
    for field in ("accepted", "published", "coalesced", "reconnects", "no_subscribers",
                  "extra_failed", "terminals_lost", "terminals_resent", "terminals_abandoned",
                  "fenced_runs", "sender_wakeups"):
        assert samples[(f"progress_publisher_{field}_total", w1)] == getattr(stats, field)
    assert samples[("progress_publisher_queued", w1)] == 3
    assert samples[("progress_publisher_terminals_waiting", w1)] == 12
    assert samples[("progress_publisher_connected", w1)] == 1
    assert samples[("progress_publisher_dropped_total", (("reason", "buffer_full"), *w1))] == 2
    assert samples[("progress_publisher_dropped_total", (("reason", "fenced"), *w1))] == 1
    assert samples[("progress_publisher_forgiven_total", (("kind", "progress_range"), *w1))] == 6

    source.now = dataclasses.replace(stats, published=70, connected=False, queued=0)
    samples = scrape(registry)
    assert samples[("progress_publisher_published_total", w1)] == 70
    assert samples[("progress_publisher_connected", w1)] == 0
    assert samples[("progress_publisher_queued", w1)] == 0


def test_a_real_publishers_events_show_in_the_next_scrape() -> None:
    """The real publisher (over a capturing transport): what it accepted and published
    since the last scrape moves the counters by as much."""
    publisher = CapturingPublisher()
    registry = CollectorRegistry()
    registry.register(PublisherCollector(publisher))
    try:
        before = scrape(registry)
        for media in ("m1", "m2", "m3"):
            publisher.emit({"event": "PROCESSING_STARTED", "media_id": media, "user_id": "u1",
                            "message": "", "data": {"filename": f"{media}.mp4"}})
        after = scrape(registry)
    finally:
        publisher.close()
    for name in ("progress_publisher_accepted_total", "progress_publisher_published_total"):
        assert after[(name, ())] - before[(name, ())] == 3
    assert after[("progress_publisher_queued", ())] == 0
    assert len(publisher.events) == 3
