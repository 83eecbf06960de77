"""A publisher's ``stats()`` as Prometheus metrics (the ``metrics`` extra: prometheus-client).

Job code's install stays light: nothing here is imported by the publisher, and
prometheus-client is only needed by whoever imports this module.

    from prometheus_client import REGISTRY, start_http_server
    from progress_sdk.metrics import PublisherCollector

    REGISTRY.register(PublisherCollector(publisher, labels={"worker": "w1"}))
    start_http_server(9108)  # or serve prometheus_client.generate_latest() yourself

Each scrape calls ``stats()`` once (a lock held for a few microseconds; no I/O). Names,
all prefixed ``progress_publisher_`` (counters end in ``_total``): ``accepted``,
``published``, ``coalesced``, ``dropped{reason}``, ``reconnects``, ``no_subscribers``,
``forgiven{kind}``, ``extra_failed``, ``terminals_lost``, ``terminals_resent``,
``terminals_abandoned``, ``fenced_runs``, ``sender_wakeups``; gauges ``queued``,
``connected`` (1 or 0) and ``terminals_waiting``. docs/publisher.md, Metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "progress_sdk.metrics needs prometheus-client: pip install 'progress-sdk[metrics]'"
    ) from exc

from .publisher import PublisherStats

__all__ = ["PREFIX", "PublisherCollector"]

PREFIX = "progress_publisher_"

_COUNTERS = {
    "accepted": "Events emit() accepted, and lost terminal events queued again.",
    "published": "Events Redis confirmed as published.",
    "coalesced": "Progress events replaced by a newer value of the same model before sending.",
    "reconnects": "New connections to Redis after the first.",
    "no_subscribers": "Events published while nobody was subscribed to the channel.",
    "extra_failed": "Extra commands written with the events (snapshot writes) that failed.",
    "terminals_lost": "Media terminal events a full buffer gave up (kept aside, see resent).",
    "terminals_resent": "Lost terminal events queued again, byte for byte.",
    "terminals_abandoned": "Lost terminal events that will not be sent.",
    "fenced_runs": "Media runs a sweeper ended while this publisher still reported them.",
    "sender_wakeups": "Times an event or a flush woke the idle sender thread.",
}
_GAUGES = {
    "queued": "Events waiting to be sent now.",
    "terminals_waiting": "Lost terminal events kept aside, waiting for room in the buffer.",
}


class _HasStats(Protocol):
    def stats(self) -> PublisherStats: ...


class PublisherCollector(Collector):
    """Exposes ``publisher.stats()`` at each scrape; ``labels`` (e.g. a worker's name) are
    added to every sample, so several publishers can share one registry."""

    def __init__(self, publisher: _HasStats, labels: Mapping[str, str] | None = None) -> None:
        self._publisher = publisher
        self._labels = dict(labels or {})

    def collect(self) -> Iterator[Metric]:
        stats = self._publisher.stats()
        names, values = list(self._labels), list(self._labels.values())
        for field, doc in _COUNTERS.items():
            family = CounterMetricFamily(PREFIX + field, doc, labels=names)
            family.add_metric(values, getattr(stats, field))
            yield family
        for field, doc in _GAUGES.items():
            gauge = GaugeMetricFamily(PREFIX + field, doc, labels=names)
            gauge.add_metric(values, getattr(stats, field))
            yield gauge
        connected = GaugeMetricFamily(PREFIX + "connected",
                                      "1 when the last attempt to reach Redis succeeded.",
                                      labels=names)
        connected.add_metric(values, 1 if stats.connected else 0)
        yield connected
        yield self._by(PREFIX + "dropped", "Events lost, by reason.", "reason", stats.dropped)
        yield self._by(PREFIX + "forgiven", "Bad progress data repaired or skipped, by kind.",
                       "kind", stats.forgiven)

    def _by(self, name: str, doc: str, label: str, counts: Mapping[str, int]) -> Metric:
        family = CounterMetricFamily(name, doc, labels=[*self._labels, label])
        for key, count in sorted(counts.items()):
            family.add_metric([*self._labels.values(), key], count)
        return family
