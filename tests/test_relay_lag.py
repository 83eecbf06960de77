"""The relay's lag histogram (stats.LagHistogram) and its exposition (metrics.render)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

from simulator.relay.metrics import render
from simulator.relay.stats import LAG_BUCKETS, LagHistogram, RelayStats

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def stamp(seconds_ago: float, *, z: bool = True) -> str:
    text = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return text.replace("+00:00", "Z") if z else text


def test_each_lag_lands_in_the_first_bucket_that_holds_it() -> None:
    """Bounds are inclusive (Prometheus's le); a clock ahead gives the first bucket; past the
    last bound is +Inf; Z and +00:00 read alike; no or bad timestamps are counted apart."""
    lag = LagHistogram()
    now = NOW.timestamp()
    for seconds, z in ((0.0005, True), (0.001, False), (0.003, True), (-2.0, True),
                       (45.0, False), (120.0, True)):
        lag.observe_timestamp(stamp(seconds, z=z), now)
    for bad in (None, 17, "yesterday", ""):
        lag.observe_timestamp(bad, now)
    expected = [0] * (len(LAG_BUCKETS) + 1)
    expected[0] = 3  # -2 s, 0.5 ms, 1 ms
    expected[LAG_BUCKETS.index(0.005)] = 1
    expected[LAG_BUCKETS.index(60.0)] = 1
    expected[-1] = 1  # 120 s
    assert lag.counts == expected
    assert lag.count == 6 and lag.unparsed == 4
    assert abs(lag.sum - (0.0005 + 0.001 + 0.003 - 2.0 + 45.0 + 120.0)) < 1e-6


def test_render_gives_a_cumulative_histogram_and_every_drop_reason() -> None:
    """Buckets add up (le), every reason is a sample even at 0, the backlog's discarded
    packets count as a drop, a high-water mark is a gauge and a nested count a label."""
    stats = RelayStats()
    stats.drop("repeat")
    stats.events_in["PROCESSING_STARTED"] += 2
    now = NOW.timestamp()
    for seconds in (0.002, 0.2, 3.0):
        stats.lag.observe_timestamp(stamp(seconds), now)
    backlog = {"discarded": 5, "high_water_events": 9, "disconnected": {"bytes": 1}}

    def health() -> dict[str, object]:
        return {**stats.to_dict(), "backlog": backlog}

    text = render(health, stats.lag).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    lag = "progress_relay_event_lag_seconds"
    assert samples[(f"{lag}_bucket", (("le", "0.0025"),))] == 1
    assert samples[(f"{lag}_bucket", (("le", "0.25"),))] == 2
    assert samples[(f"{lag}_bucket", (("le", "+Inf"),))] == 3
    assert samples[(f"{lag}_count", ())] == 3
    drops = {labels[0][1]: value for (name, labels), value in samples.items()
             if name == "progress_relay_dropped_total"}
    assert drops["repeat"] == 1 and drops["backlog_overflow"] == 5
    assert sum(drops.values()) == 6 and "schema" in drops
    assert samples[("progress_relay_events_in_total", (("type", "PROCESSING_STARTED"),))] == 2
    assert families["progress_relay_backlog_high_water_events"].type == "gauge"
    assert samples[("progress_relay_backlog_disconnected_total", (("kind", "bytes"),))] == 1
