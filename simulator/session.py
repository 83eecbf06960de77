"""One ``progress-sim run``, end to end, usable from Python.

``run_session`` wires the pieces the way production is wired: simulated jobs publish
through a ``ProgressPublisher`` (to a Redis URL, or to an embedded in-process fakeredis
when no URL is given); a subscriber of the same channel, in its own thread, plays the
relay/UI: it measures latency, feeds the lifecycle validator and the panel state, and
writes the events out. ``RunSummary`` says what happened and whether the stream kept the
contract, with the media the simulator crashed on purpose expected as incomplete runs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from progress_sdk import ProgressPublisher, PublisherStats
from progress_sdk.contract import Finding, LifecycleValidator, Report
from progress_sdk.redis_urls import check_redis_url
from progress_sdk.sharding import subscribed_channels

from .listener import ChannelSubscription, Observer, Subscription, latency_percentiles, subscribe
from .panel import PanelState
from .runner import Simulation, SimulationConfig, SimulationResult

__all__ = ["RunSession", "RunSummary", "run_session"]

# After the publisher has flushed, how long the subscriber may go without a new message
# before the events it has not seen are taken as lost.
_SETTLE_IDLE_SECONDS = 3.0


@dataclass
class RunSummary:
    """What a run did (jobs' side), what the publisher did, and what the subscriber saw."""

    config: SimulationConfig
    result: SimulationResult
    stats: PublisherStats
    received: int
    counts: Counter[str]
    latency_p50: float | None
    latency_p99: float | None
    report: Report
    seconds: float
    """Wall-clock time of the whole run, publisher flush included."""
    embedded: bool
    incomplete: set[str] = field(default_factory=set)
    """media_id of every run the validator found without a terminal event."""

    @property
    def crashed(self) -> set[str]:
        """The media the simulator crashed on purpose."""
        return set(self.result.crashed)

    @property
    def unexpected_incomplete(self) -> set[str]:
        """Incomplete runs that were not crashed on purpose (events went missing)."""
        return self.incomplete - self.crashed

    @property
    def missing_incomplete(self) -> set[str]:
        """Crashed media the validator did not see as incomplete."""
        return self.crashed - self.incomplete

    @property
    def undelivered(self) -> int:
        """Events Redis accepted that the subscriber never saw."""
        return max(0, self.stats.published - self.received)

    @property
    def ok(self) -> bool:
        """True when the stream kept the contract and only crashed media are incomplete."""
        return (
            self.report.violation_count == 0
            and not self.unexpected_incomplete
            and not self.missing_incomplete
            and self.undelivered == 0
            and self.report.lost_events <= self.stats.dropped_total
        )

    def to_text(self) -> str:
        """The end-of-run summary for people."""
        return "\n".join(
            [*self._run_lines(), *self._subscriber_lines(), *self._contract_lines()]
        )

    def _run_lines(self) -> list[str]:
        """What ran and how it ended, from the jobs' and the publisher's side."""
        cfg, res, st = self.config, self.result, self.stats
        where = "embedded in-process Redis (fakeredis)" if self.embedded else "Redis"
        speed = "as fast as possible" if cfg.speed == 0 else f"speed x{cfg.speed:g}"
        o, m = res.outcomes, res.model_outcomes
        media = ", ".join(
            f"{o[k]} {k}" for k in ("completed", "failed", "crashed", "interrupted") if o[k]
        ) or "none"
        models = ", ".join(
            f"{m[k]} {label}"
            for k, label in (
                ("completed", "completed"), ("failed", "failed"), ("open", "left open")
            )
            if m[k]
        ) or "none"
        rate = st.accepted / self.seconds if self.seconds > 0 else 0.0
        return [
            f"Simulated {res.media} media (seed {cfg.seed}, {len(cfg.models)} models, "
            f"{speed}, concurrency {cfg.concurrency}) through {where} in {self.seconds:.1f} s",
            f"  media:      {media}",
            f"  models:     {models}",
            f"  publisher:  {st.accepted:,} events accepted ({rate:,.0f}/s), "
            f"{st.published:,} published, {st.coalesced:,} coalesced, "
            f"{st.dropped_total:,} dropped"
            + (f" {dict(st.dropped)}" if st.dropped_total else ""),
        ]

    def _subscriber_lines(self) -> list[str]:
        """What the subscriber received, how late, and of which types."""
        latency = ""
        if self.latency_p50 is not None and self.latency_p99 is not None:
            latency = (
                f"; latency p50 {self.latency_p50 * 1000:.1f} ms, "
                f"p99 {self.latency_p99 * 1000:.1f} ms"
            )
        missed = f" ({self.undelivered:,} never arrived)" if self.undelivered else ""
        lines = [f"  subscriber: {self.received:,} events received{missed}{latency}"]
        if self.counts:
            lines.append(
                "  by type:    "
                + ", ".join(f"{name} {n:,}" for name, n in sorted(self.counts.items()))
            )
        return lines

    def _contract_lines(self) -> list[str]:
        """The verdict on the stream, with the first violations and unexpected runs."""
        rep = self.report
        verdict = "OK" if self.ok else "BROKEN"
        crashed = len(self.crashed)
        parts = [
            f"{rep.violation_count} violations",
            f"{rep.lost_events} events lost",
            f"{len(self.incomplete)} incomplete runs"
            + (f" ({crashed} crashed on purpose)" if crashed else ""),
        ]
        if rep.duplicates:  # a publisher's resend after a connection reset
            parts.append(f"{rep.duplicates} duplicates dropped")
        lines = [f"  contract:   {verdict}: " + ", ".join(parts)]
        lines.extend(f"    {finding}" for finding in rep.violations[:10])
        if rep.violation_count > 10:
            lines.append(f"    … and {rep.violation_count - 10} more violations")
        if self.unexpected_incomplete:
            lines.append(
                "    incomplete but not crashed on purpose: "
                + ", ".join(sorted(self.unexpected_incomplete)[:10])
            )
        if self.missing_incomplete:
            lines.append(
                "    crashed on purpose but not seen as incomplete: "
                + ", ".join(sorted(self.missing_incomplete)[:10])
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        st = self.stats
        return {
            "ok": self.ok,
            "seed": self.config.seed,
            "seconds": round(self.seconds, 3),
            "media": dict(self.result.outcomes),
            "models": dict(self.result.model_outcomes),
            "publisher": {
                "accepted": st.accepted,
                "published": st.published,
                "coalesced": st.coalesced,
                "dropped": dict(st.dropped),
            },
            "received": self.received,
            "counts": dict(sorted(self.counts.items())),
            "latency_ms": {
                "p50": None if self.latency_p50 is None else round(self.latency_p50 * 1000, 3),
                "p99": None if self.latency_p99 is None else round(self.latency_p99 * 1000, 3),
            },
            "crashed": sorted(self.crashed),
            "incomplete": sorted(self.incomplete),
            "violations": [f.to_dict() for f in self.report.violations],
            "violation_count": self.report.violation_count,
            "lost_events": self.report.lost_events,
            "duplicates": self.report.duplicates,
        }


class RunSession:
    """The publisher, the subscriber and the simulation of one run.

    Create, then ``run()``. ``stop()`` may be called from a signal handler. With
    ``redis_url=None`` everything happens in this process on an embedded fakeredis.
    """

    def __init__(
        self,
        config: SimulationConfig,
        *,
        redis_url: str | None,
        channel: str,
        panel: PanelState | None = None,
        on_event: Callable[[bytes, dict[str, Any] | None], None] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        min_progress_interval: float | None = None,
        shards: int = 1,
    ) -> None:
        self.config = config
        self.embedded = redis_url is None
        self._redis_url = redis_url
        if redis_url is None:
            # A CLI dependency (the [sim] extra), imported only when it is used.
            import fakeredis  # noqa: PLC0415

            server = fakeredis.FakeServer()
            pub_target: Any = fakeredis.FakeRedis(server=server)
            self._sub_client: redis.Redis | None = fakeredis.FakeRedis(server=server)
        else:
            check_redis_url(redis_url)  # ConfigurationError, password masked
            pub_target = redis_url
            self._sub_client = None
        # The simulator's process outlives every media run, so a run's end need not wait
        # for delivery (the default does, for workers that exit right after a job).
        # Crashed media (--crash-rate) stand for workers that died: nothing may end their
        # runs, so the publisher leaves runs left open as they are when it closes.
        options: dict[str, Any] = {"finish_flush_timeout": 0, "fail_runs_left_open": False}
        if min_progress_interval is not None:
            options["min_progress_interval"] = min_progress_interval
        self.publisher = ProgressPublisher(pub_target, channel, shards=shards, **options)
        self.channel = channel
        self.channels = subscribed_channels(channel, shards)
        self.observer = Observer(
            validator=LifecycleValidator(strict=True, allow_incomplete=True),
            panel=panel,
            on_event=on_event,
            on_finding=on_finding,
            source=self.publisher.source,
        )
        self.simulation = Simulation(self.publisher, config)
        self._pump_stop = threading.Event()

    def check(self) -> None:
        """Raise ``RedisUnavailableError`` (one line) when Redis cannot be reached."""
        if not self.embedded:
            self.publisher.check_connection()

    def stop(self) -> None:
        """End the simulation early (in-flight media are failed, not abandoned)."""
        self.simulation.stop()

    def run(self) -> RunSummary:
        """Subscribe, simulate, flush, wait for the subscriber to catch up; summarise."""
        began = time.monotonic()
        subscription: ChannelSubscription = (
            Subscription(self._sub_client, self.channels, owns_client=True).open()
            if self._sub_client is not None
            else subscribe(self._redis_url or "", self.channels)
        )
        pump = threading.Thread(
            target=subscription.pump,
            args=(self.observer.handle,),
            kwargs={"stop": self._pump_stop},
            name="progress-sim-subscriber",
            daemon=True,
        )
        pump.start()
        try:
            result = self.simulation.run()
            self.publisher.close(timeout=60.0)
            self._settle()
        finally:
            self._pump_stop.set()
            pump.join(5.0)
            subscription.close()
            self.publisher.close()
        seconds = time.monotonic() - began
        observer = self.observer
        report = observer.report()
        assert report is not None
        pct = latency_percentiles(observer.latencies, 0.5, 0.99)
        p50, p99 = (pct[0], pct[1]) if pct else (None, None)
        return RunSummary(
            config=self.config,
            result=result,
            stats=self.publisher.stats(),
            received=observer.received,
            counts=Counter(observer.counts),
            latency_p50=p50,
            latency_p99=p99,
            report=report,
            seconds=seconds,
            embedded=self.embedded,
            incomplete={f.media_id for f in report.incomplete if f.media_id is not None},
        )

    def _settle(self) -> None:
        # Pub/sub gives no delivery receipt: wait until the subscriber has seen as many
        # events as Redis accepted, or until it has gone quiet for a while.
        published = self.publisher.stats().published
        last_count, last_change = -1, time.monotonic()
        while True:
            received = self.observer.received
            if received >= published:
                return
            now = time.monotonic()
            if received != last_count:
                last_count, last_change = received, now
            elif now - last_change > _SETTLE_IDLE_SECONDS:
                return
            time.sleep(0.01)


def run_session(
    config: SimulationConfig,
    *,
    redis_url: str | None = None,
    channel: str = "media-progress-events",
    **options: Any,
) -> RunSummary:
    """Run one simulation end to end and return its summary (see ``RunSession``)."""
    session = RunSession(config, redis_url=redis_url, channel=channel, **options)
    session.check()
    return session.run()
