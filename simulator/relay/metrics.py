"""``GET /metrics``: the relay's counters in Prometheus's text format (prometheus-client).

Nothing is counted twice: the collector reads, at scrape time, the same body
``/healthz`` shows (``Relay.health()``: the node's ``RelayStats`` and every health
section, catch-up's, the backlogs', the sessions'...), so the per-event cost stays the
plain ``int`` and ``Counter`` increments the relay already made, plus one lag
observation per forwarded event (``stats.LagHistogram``).

Names (all prefixed ``progress_relay_``; counters end in ``_total``):

- ``received_total``: messages taken off the channel;
  ``events_in_total{type}``: valid events by event type;
  ``events_out_total{type}``: deliveries (one per socket) by event type;
  ``forwarded_total``, ``no_local_socket_total``;
- ``dropped_total{reason}``: messages not forwarded (``stats.DROP_REASONS``), packets
  thrown away with an over-limit socket's backlog (``backlog_overflow``) and snapshot
  items of another user (``catch_up_foreign``);
- ``event_lag_seconds``: histogram, from an event's ``timestamp`` to its emit;
- ``sockets``, ``users``, ``redis_connected`` (gauges); ``connects_total``,
  ``disconnects_total``, ``refused_total{reason}``, ``ended_total{reason}``...;
- each health section's counters as ``<section>_<name>_total`` (a nested count as a
  ``kind`` label) and its levels as gauges: ``catch_up_done_total``,
  ``catch_up_waiting``, ``backlog_high_water_bytes``, ``backlog_high_water_events``,
  ``backlog_disconnected_total{kind}``, ``sessions_expired_total``...

docs/grafana/relay.json is a dashboard over these names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .stats import DROP_REASONS, LAG_BUCKETS, LagHistogram

__all__ = ["CONTENT_TYPE", "PREFIX", "RelayCollector", "render"]

PREFIX = "progress_relay_"
Health = Callable[[], Mapping[str, Any]]
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Health-section values that are levels, not totals since start.
_GAUGES = frozenset({
    ("catch_up", "waiting"), ("catch_up", "running"),
    ("backlog", "high_water_bytes"), ("backlog", "high_water_events"),
})
# Node-level counters of /healthz, with their help text.
_COUNTERS = {
    "received": "Messages taken off the Redis channel.",
    "forwarded": "Valid events with at least one socket of their user on this node.",
    "no_local_socket": "Valid events whose user has no socket on this node.",
    "delivered": "Socket.IO packets of events queued, one per socket (the fan-out).",
    "connects": "Sockets connected.",
    "disconnects": "Sockets gone.",
    "left_while_connecting": "Sockets whose client left while the relay connected them.",
    "redis_connects": "Redis subscriptions made.",
    "redis_errors": "Redis subscription errors.",
    "resubscribes": "Channels a cluster subscription moved within a connection.",
    "lag_unparsed": "Forwarded events whose timestamp could not be read (no lag observed).",
}
_LABELLED = {"refused": "Handshakes refused, by reason.", "ended": "Sockets ended, by reason."}
_NODE_MAPPINGS = frozenset({"dropped", "events_in", "events_out", *_LABELLED})
# Not counted by the router but lost all the same: (section, key) -> drop reason.
_OTHER_DROPS = {("backlog", "discarded"): "backlog_overflow",
                ("catch_up", "foreign"): "catch_up_foreign"}


class RelayCollector(Collector):
    """Turns ``health()`` (``Relay.health``) and ``lag`` into metric families."""

    def __init__(self, health: Health, lag: LagHistogram) -> None:
        self._health = health
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        body = self._health()
        yield from _node(body)
        yield _drops(body)
        yield _lag(self._lag)
        for section, values in body.items():
            if isinstance(values, Mapping) and section not in _NODE_MAPPINGS:
                yield from _section(section, values)


def render(health: Health, lag: LagHistogram) -> bytes:
    """The text exposition of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(health, lag))
    return generate_latest(registry)


def _node(body: Mapping[str, Any]) -> Iterator[Metric]:
    for name, doc in _COUNTERS.items():
        yield CounterMetricFamily(PREFIX + name, doc, value=body[name])
    for name, doc in _LABELLED.items():
        yield _labelled(PREFIX + name, doc, "reason", body[name])
    yield _labelled(PREFIX + "events_in", "Valid events, by event type.", "type",
                    body["events_in"])
    yield _labelled(PREFIX + "events_out", "Deliveries (one per socket), by event type.",
                    "type", body["events_out"])
    yield GaugeMetricFamily(PREFIX + "sockets", "Sockets connected now.", value=body["sockets"])
    yield GaugeMetricFamily(PREFIX + "users", "Users with a socket here now.", value=body["users"])
    yield GaugeMetricFamily(PREFIX + "redis_connected", "1 while subscribed to Redis.",
                            value=1 if body["redis_connected"] else 0)
    yield GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since the node started.",
                            value=body["uptime_seconds"])
    info = GaugeMetricFamily(PREFIX + "info", "The node's name.", labels=["node"])
    info.add_metric([str(body["node"])], 1)
    yield info


def _drops(body: Mapping[str, Any]) -> Metric:
    counts = {reason: body["dropped"].get(reason, 0) for reason in DROP_REASONS}
    for (section, key), reason in _OTHER_DROPS.items():
        values = body.get(section)
        if isinstance(values, Mapping):
            counts[reason] = values.get(key, 0)
    return _labelled(PREFIX + "dropped", "Events not delivered, by reason.", "reason", counts)


def _lag(lag: LagHistogram) -> Metric:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*LAG_BUCKETS, float("inf")), lag.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return HistogramMetricFamily(
        PREFIX + "event_lag_seconds",
        "Seconds from a forwarded event's timestamp to its emit.",
        buckets=buckets,
        sum_value=lag.sum,
    )


def _section(section: str, values: Mapping[str, Any]) -> Iterator[Metric]:
    for key, value in values.items():
        name = f"{PREFIX}{section}_{key}"
        doc = f"/healthz {section}.{key}"
        if isinstance(value, Mapping):
            yield _labelled(name, doc, "kind", value)
        elif isinstance(value, bool):
            yield GaugeMetricFamily(name, doc, value=int(value))
        elif isinstance(value, (int, float)):
            family = GaugeMetricFamily if (section, key) in _GAUGES else CounterMetricFamily
            yield family(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, counts: Mapping[str, Any]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([str(key)], value)
    return family
